//! Event time: reading a row's event time from its column, in any
//! timestamp unit, as nanoseconds. What the watermark makes of it is in
//! [`watermark`](crate::watermark).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, TimeUnit, TimestampNanosecondType};

use crate::error::{Result, RuntimeError};
use crate::message::EventTime;

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
