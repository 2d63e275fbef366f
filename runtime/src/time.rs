//! Event time: reading a row's event time from its column, in any
//! timestamp unit, as nanoseconds. What the watermark makes of it is in
//! [`watermark`](crate::watermark).

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, TimeUnit, TimestampNanosecondType};

use crate::error::{Result, RuntimeError};

/// Event time in nanoseconds since the Unix epoch (UTC).
pub type EventTime = i64;

/// `duration` in nanoseconds, saturating at `i64::MAX` (about 292 years):
/// durations are user input (`SET allowed_lateness = ...`), and
/// `as_nanos() as i64` would wrap a huge one to a negative value.
pub fn duration_nanos(duration: Duration) -> i64 {
    i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX)
}

/// Reads an event-time column of any timestamp unit (or date) as nanoseconds.
pub fn event_times(column: &ArrayRef) -> Result<Vec<Option<EventTime>>> {
    let nanos = match column.data_type() {
        DataType::Timestamp(TimeUnit::Nanosecond, None) => Arc::clone(column),
        DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64 => {
            cast(column, &DataType::Timestamp(TimeUnit::Nanosecond, None))?
        }
        other => {
            return Err(RuntimeError::user(format!("event-time column must be a TIMESTAMP, found {other}")));
        }
    };
    Ok(nanos.as_primitive::<TimestampNanosecondType>().iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_durations_saturate_instead_of_wrapping() {
        assert_eq!(duration_nanos(Duration::from_millis(5)), 5_000_000);
        assert_eq!(duration_nanos(Duration::from_secs(u64::MAX)), i64::MAX);
        assert_eq!(duration_nanos(Duration::from_nanos(u64::MAX)), i64::MAX);
    }
}
