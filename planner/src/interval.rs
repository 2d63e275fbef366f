//! `INTERVAL '...' <unit>` literals in nanoseconds: window sizes, session
//! gaps, WATERMARK delays, EMIT EVERY periods.

use datafusion::sql::sqlparser::ast::{DateTimeField, Expr, Spanned, Value};

use crate::error::{PlanError, Result};

/// The length of an `INTERVAL '...' <unit>` literal in nanoseconds.
pub fn interval_nanos(expr: &Expr) -> Result<i64> {
    let invalid = || PlanError::invalid("expected an interval such as INTERVAL '2' SECOND").at(expr.span());
    let Expr::Interval(interval) = expr else {
        return Err(invalid());
    };
    let text = match interval.value.as_ref() {
        Expr::Value(value) => match &value.value {
            Value::SingleQuotedString(text) | Value::Number(text, _) => text.clone(),
            _ => return Err(invalid()),
        },
        _ => return Err(invalid()),
    };
    let (amount, unit) = match &interval.leading_field {
        Some(field) => (text.trim().to_string(), unit_nanos_of_field(field).ok_or_else(invalid)?),
        None => {
            let mut parts = text.split_whitespace();
            let amount = parts.next().ok_or_else(invalid)?.to_string();
            let unit = parts.next().and_then(unit_nanos_of_word).ok_or_else(invalid)?;
            if parts.next().is_some() {
                return Err(
                    PlanError::unsupported("compound intervals are not supported; use one unit").at(expr.span())
                );
            }
            (amount, unit)
        }
    };
    let nanos = scaled(&amount, unit).ok_or_else(invalid)?;
    if nanos.unsigned_abs() > u128::from(MAX_INTERVAL_NANOS.unsigned_abs()) {
        return Err(PlanError::invalid(format!(
            "the interval {expr} is too long: intervals are at most {MAX_INTERVAL_DAYS} days"
        ))
        .at(expr.span()));
    }
    i64::try_from(nanos).map_err(|_| invalid())
}

/// The longest interval a query or a stream declares (window sizes,
/// slides, steps and offsets, session gaps, WATERMARK delays, EMIT
/// periods, interval-join bounds): 365 days, as the server's duration
/// settings. Nanosecond times near it stay far from `i64` overflow (about
/// 292 years), so window arithmetic on them cannot wrap.
pub const MAX_INTERVAL_DAYS: i64 = 365;

/// [`MAX_INTERVAL_DAYS`] in nanoseconds.
pub const MAX_INTERVAL_NANOS: i64 = MAX_INTERVAL_DAYS * 86_400 * SECOND;

/// `amount` (a decimal such as `2`, `-1.5`, `.25`) times `unit`
/// nanoseconds, rounded to a whole nanosecond; exact below `i128::MAX`
/// (larger values saturate), `None` when it is no decimal.
fn scaled(amount: &str, unit: i64) -> Option<i128> {
    let (negative, digits) = match amount.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, amount.strip_prefix('+').unwrap_or(amount)),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |text: &str| text.bytes().all(|byte| byte.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !all_digits(whole) || !all_digits(fraction) {
        return None;
    }
    let decimal = |text: &str| {
        text.bytes().fold(0i128, |value, digit| value.saturating_mul(10).saturating_add(i128::from(digit - b'0')))
    };
    let mut nanos = decimal(whole).saturating_mul(i128::from(unit));
    // Units are below 10^15 ns, so digits past the 18th change nothing.
    let fraction = &fraction[..fraction.len().min(18)];
    if !fraction.is_empty() {
        let scale = 10i128.pow(fraction.len() as u32);
        let part = decimal(fraction) * i128::from(unit);
        nanos = nanos.saturating_add((part + scale / 2) / scale);
    }
    Some(if negative { -nanos } else { nanos })
}

const SECOND: i64 = 1_000_000_000;

fn unit_nanos_of_field(field: &DateTimeField) -> Option<i64> {
    Some(match field {
        DateTimeField::Nanosecond | DateTimeField::Nanoseconds => 1,
        DateTimeField::Microsecond | DateTimeField::Microseconds => 1_000,
        DateTimeField::Millisecond | DateTimeField::Milliseconds => 1_000_000,
        DateTimeField::Second | DateTimeField::Seconds => SECOND,
        DateTimeField::Minute | DateTimeField::Minutes => 60 * SECOND,
        DateTimeField::Hour | DateTimeField::Hours => 3600 * SECOND,
        DateTimeField::Day | DateTimeField::Days => 86_400 * SECOND,
        DateTimeField::Week(_) | DateTimeField::Weeks => 7 * 86_400 * SECOND,
        _ => return None,
    })
}

fn unit_nanos_of_word(word: &str) -> Option<i64> {
    Some(match word.to_ascii_lowercase().trim_end_matches('s') {
        "nanosecond" | "n" => 1,
        "microsecond" | "u" => 1_000,
        "millisecond" | "m" => 1_000_000,
        "second" | "sec" => SECOND,
        "minute" | "min" => 60 * SECOND,
        "hour" | "h" => 3600 * SECOND,
        "day" | "d" => 86_400 * SECOND,
        "week" | "w" => 7 * 86_400 * SECOND,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;
    use crate::dialect::SluiceDialect;

    fn interval(sql: &str) -> Result<i64> {
        let expr = Parser::new(&SluiceDialect::default()).try_with_sql(sql)?.parse_expr()?;
        interval_nanos(&expr)
    }

    #[test]
    fn intervals() {
        assert_eq!(interval("INTERVAL '2' SECOND").unwrap(), 2 * SECOND);
        assert_eq!(interval("INTERVAL '1.5' MINUTE").unwrap(), 90 * SECOND);
        assert_eq!(interval("INTERVAL '10 seconds'").unwrap(), 10 * SECOND);
        assert_eq!(interval("INTERVAL '250' MILLISECOND").unwrap(), SECOND / 4);
        assert!(interval("5").is_err());
        assert_eq!(interval("INTERVAL '-5' SECOND").unwrap(), -5 * SECOND);
        assert_eq!(interval("INTERVAL '.5' SECOND").unwrap(), SECOND / 2);
        assert_eq!(interval("INTERVAL '0.0000000015' SECOND").unwrap(), 2);
        assert!(interval("INTERVAL 'x' SECOND").is_err());
        assert!(interval("INTERVAL '1e3' SECOND").is_err());
    }

    #[test]
    fn huge_intervals_are_errors_with_the_limit_and_a_position() {
        assert_eq!(interval("INTERVAL '365' DAY").unwrap(), MAX_INTERVAL_NANOS);
        assert_eq!(interval("INTERVAL '52' WEEK").unwrap(), 52 * 7 * 86_400 * SECOND);
        for sql in [
            "INTERVAL '366' DAY",
            "INTERVAL '-366' DAY",
            "INTERVAL '99999999999999999999' DAY",
            "INTERVAL '9223372036854775807' NANOSECOND",
            "INTERVAL '999999999999999999999999999999999999999999' SECOND",
        ] {
            let error = interval(&format!("\n  {sql}")).unwrap_err();
            assert!(error.message.contains("at most 365 days"), "{sql}: {}", error.message);
            assert_eq!((error.line, error.column), (Some(2), Some(12)), "{sql}");
        }
    }
}
