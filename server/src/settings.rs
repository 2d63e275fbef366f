//! Per-request settings (`SET name = value` and the `settings` of a request
//! body) and their reading into the runtime's [`QuerySettings`].
//!
//! Every number here comes from a user, so every conversion is checked:
//! durations are at most [`MAX_DURATION`], whole numbers must fit.

use std::collections::BTreeMap;
use std::time::Duration;

use sluice_runtime::QuerySettings;

use crate::error::EngineError;

/// Per-request settings, from the request body and `SET` statements.
pub type Settings = BTreeMap<String, String>;

/// The `settings` object of a JSON request: strings as they are, other
/// values (numbers, booleans) as their JSON text.
pub fn from_json(settings: BTreeMap<String, serde_json::Value>) -> Settings {
    settings
        .into_iter()
        .map(|(name, value)| (name, value.as_str().map(str::to_string).unwrap_or_else(|| value.to_string())))
        .collect()
}

/// The longest duration a setting takes: 365 days. Longer epochs,
/// timeouts, lateness or state lifetimes mean a mistake, and would overflow
/// the nanosecond and timer arithmetic downstream.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// The most threads (`parallelism`) or key groups (`max_parallelism`) a
/// query may ask for.
pub const MAX_PARALLELISM: usize = 1024;

/// Every setting [`settings_from`] reads (psql's `SET` passes these to the
/// engine).
pub const NAMES: &[&str] = &[
    "allowed_lateness",
    "checkpoint_interval",
    "epoch_interval",
    "epoch_interval_ms",
    "idle_timeout",
    "late_rows_to",
    "max_lag",
    "max_parallelism",
    "parallelism",
    "retained_rows",
    "state_ttl",
    "subscriber_queue",
];

/// Reads query settings; unknown names and bad values are errors.
/// (`late_rows_to` names a stream and is resolved by the engine.)
pub fn settings_from(settings: &Settings) -> Result<QuerySettings, EngineError> {
    let mut query = QuerySettings::default();
    for (name, value) in settings {
        let duration = || {
            parse_duration(value, name == "epoch_interval_ms").map_err(|problem| {
                EngineError::invalid(match problem {
                    DurationError::Malformed => {
                        format!("{name} must be a duration such as '500ms' or '5s', not {value:?}")
                    }
                    DurationError::TooLong => format!(
                        "{name} = {value:?} is too long: durations are at most {} days",
                        MAX_DURATION.as_secs() / 86_400
                    ),
                })
            })
        };
        // Zero turns an optional duration off.
        let optional = || duration().map(|duration| (!duration.is_zero()).then_some(duration));
        match name.as_str() {
            "epoch_interval" | "epoch_interval_ms" => query.epoch_interval = duration()?,
            "idle_timeout" => query.idle_timeout = optional()?,
            "allowed_lateness" => query.allowed_lateness = optional()?,
            "checkpoint_interval" => query.checkpoint_interval = optional()?,
            "state_ttl" => query.state_ttl = optional()?,
            "max_lag" => query.max_lag = optional()?,
            "retained_rows" => {
                query.retained_rows = value.parse().map_err(|_| {
                    EngineError::invalid(format!("retained_rows must be a whole number, not {value:?}"))
                })?;
            }
            "subscriber_queue" => {
                query.subscriber_queue = value.parse().ok().filter(|events| *events > 0).ok_or_else(|| {
                    EngineError::invalid(format!(
                        "subscriber_queue must be a whole number of events above 0, not {value:?}"
                    ))
                })?;
            }
            "parallelism" | "max_parallelism" => {
                let threads =
                    value.parse().ok().filter(|threads| (1..=MAX_PARALLELISM).contains(threads)).ok_or_else(|| {
                        EngineError::invalid(format!(
                            "{name} must be a whole number from 1 to {MAX_PARALLELISM}, not {value:?}"
                        ))
                    })?;
                if name == "parallelism" {
                    query.parallelism = threads;
                } else {
                    query.max_parallelism = threads;
                }
            }
            // Resolved against the catalog by `Engine::query_settings`.
            "late_rows_to" => {}
            other => {
                let known: Vec<&str> = NAMES.iter().copied().filter(|name| *name != "epoch_interval_ms").collect();
                return Err(EngineError::invalid(format!("unknown setting {other:?}; known: {}", known.join(", "))));
            }
        }
    }
    Ok(query)
}

/// Why a duration setting was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurationError {
    /// Not a number with a known unit.
    Malformed,
    /// Longer than [`MAX_DURATION`].
    TooLong,
}

/// `100ms`, `1s`, `0`, `2.5s`, or a bare number of milliseconds; at most
/// [`MAX_DURATION`].
pub fn parse_duration(text: &str, bare_is_millis: bool) -> Result<Duration, DurationError> {
    let text = text.trim().to_ascii_lowercase();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| DurationError::Malformed)?;
    let millis = match unit.trim() {
        "" if bare_is_millis || number == 0.0 => number,
        "" => number,
        "ms" => number,
        "s" | "sec" | "second" | "seconds" => number * 1000.0,
        "m" | "min" | "minute" | "minutes" => number * 60_000.0,
        "h" | "hour" | "hours" => number * 3_600_000.0,
        _ => return Err(DurationError::Malformed),
    };
    if !(millis.is_finite() && millis >= 0.0) {
        return Err(DurationError::Malformed);
    }
    // Compared before converting: `Duration::from_secs_f64` panics on
    // values it cannot hold.
    if millis > MAX_DURATION.as_millis() as f64 {
        return Err(DurationError::TooLong);
    }
    Duration::try_from_secs_f64(millis / 1000.0).map_err(|_| DurationError::TooLong)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("100ms", false), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("1s", false), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("0", false), Ok(Duration::ZERO));
        assert_eq!(parse_duration("10", true), Ok(Duration::from_millis(10)));
        assert_eq!(parse_duration("fast", false), Err(DurationError::Malformed));
        assert_eq!(parse_duration("365 days", false), Err(DurationError::Malformed));
    }

    /// Every name psql passes on is one the engine reads.
    #[test]
    fn every_named_setting_is_read() {
        for name in NAMES {
            let settings: Settings = [(name.to_string(), "no such value".to_string())].into_iter().collect();
            let error = settings_from(&settings).map(|_| ()).err();
            // late_rows_to is resolved by the engine; the others reject the value.
            if *name != "late_rows_to" {
                let message = error.map(|error| error.message).unwrap_or_default();
                assert!(!message.starts_with("unknown setting"), "{name}: {message}");
                assert!(!message.is_empty(), "{name} took a bad value");
            }
        }
    }

    /// Used to panic in `Duration::from_secs_f64` (issue 13).
    #[test]
    fn huge_durations_are_refused_not_panics() {
        assert_eq!(parse_duration("99999999999999999999999h", false), Err(DurationError::TooLong));
        assert_eq!(parse_duration("1e400", false), Err(DurationError::Malformed));
        assert_eq!(parse_duration("8761h", false), Err(DurationError::TooLong));
        assert_eq!(parse_duration("8760h", false), Ok(MAX_DURATION));
        for name in [
            "epoch_interval",
            "epoch_interval_ms",
            "idle_timeout",
            "allowed_lateness",
            "checkpoint_interval",
            "state_ttl",
        ] {
            let settings: Settings = [(name.to_string(), "99999999999999999999999h".to_string())].into_iter().collect();
            let error = settings_from(&settings).unwrap_err();
            assert!(error.message.contains("at most 365 days"), "{name}: {}", error.message);
        }
    }
}
