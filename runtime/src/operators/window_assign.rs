//! Window assignment: appends `window_start`, `window_end` and `window_time`
//! to each row, from its event time.
//!
//! # Algorithm
//!
//! A tumbling window of `size` aligned to the Unix epoch (plus `offset`)
//! holds the rows with `start <= ts < start + size`:
//!
//! ```text
//!   ts:      |--a--b----|-c--------|---d--e---|
//!   window:  [0, 10)    [10, 20)   [20, 30)
//! ```
//!
//! `window_time` is `window_end - 1ns`, the largest event time inside the
//! window, so that a windowed result can serve as event time downstream.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, TimestampNanosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::error::Result;
use crate::message::{Message, StreamBatch};
use crate::operator::Operator;
use crate::time::event_times;

pub const WINDOW_START: &str = "window_start";
pub const WINDOW_END: &str = "window_end";
pub const WINDOW_TIME: &str = "window_time";

/// How rows are assigned to windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// Fixed-size, non-overlapping windows; sizes and offsets in nanoseconds.
    Tumble { size: i64, offset: i64 },
}

impl WindowKind {
    /// The start of the window holding event time `ts`.
    pub fn window_start(&self, ts: i64) -> i64 {
        match *self {
            WindowKind::Tumble { size, offset } => ts - (ts - offset).rem_euclid(size),
        }
    }

    pub fn size(&self) -> i64 {
        match *self {
            WindowKind::Tumble { size, .. } => size,
        }
    }
}

#[derive(Debug, Clone)]
pub struct WindowAssignSpec {
    pub kind: WindowKind,
    /// Index of the event-time column in the input.
    pub time_column: usize,
    /// The input schema plus the three window columns.
    pub output_schema: SchemaRef,
}

impl WindowAssignSpec {
    pub fn new(kind: WindowKind, time_column: usize, input_schema: &Schema) -> Self {
        let timestamp = DataType::Timestamp(TimeUnit::Nanosecond, None);
        let mut fields: Vec<Field> = input_schema
            .fields()
            .iter()
            .map(|field| field.as_ref().clone())
            .collect();
        for name in [WINDOW_START, WINDOW_END, WINDOW_TIME] {
            fields.push(Field::new(name, timestamp.clone(), false));
        }
        Self {
            kind,
            time_column,
            output_schema: Arc::new(Schema::new(fields)),
        }
    }
}

pub struct WindowAssign {
    spec: WindowAssignSpec,
}

impl WindowAssign {
    pub fn new(spec: WindowAssignSpec) -> Self {
        Self { spec }
    }
}

impl Operator for WindowAssign {
    fn on_batch(&mut self, _port: usize, batch: StreamBatch, out: &mut Vec<Message>) -> Result<()> {
        let times = event_times(batch.rows.column(self.spec.time_column))?;
        let size = self.spec.kind.size();
        // Sources drop rows without an event time, so a null cannot reach here.
        let starts: Vec<i64> = times
            .iter()
            .map(|ts| self.spec.kind.window_start(ts.unwrap_or_default()))
            .collect();
        let ends: Vec<i64> = starts
            .iter()
            .map(|start| start.saturating_add(size))
            .collect();
        let window_times: Vec<i64> = ends.iter().map(|end| end - 1).collect();
        let mut columns: Vec<ArrayRef> = batch.rows.columns().to_vec();
        for values in [starts, ends, window_times] {
            columns.push(Arc::new(TimestampNanosecondArray::from(values)));
        }
        let rows = RecordBatch::try_new(self.spec.output_schema.clone(), columns)?;
        out.push(Message::Batch(StreamBatch {
            rows,
            ops: batch.ops,
        }));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tumble_assigns_half_open_windows() {
        let kind = WindowKind::Tumble {
            size: 10,
            offset: 0,
        };
        assert_eq!(kind.window_start(0), 0);
        assert_eq!(kind.window_start(9), 0);
        assert_eq!(kind.window_start(10), 10);
        assert_eq!(kind.window_start(-1), -10);
    }

    #[test]
    fn tumble_respects_offset() {
        let kind = WindowKind::Tumble {
            size: 10,
            offset: 3,
        };
        assert_eq!(kind.window_start(3), 3);
        assert_eq!(kind.window_start(12), 3);
        assert_eq!(kind.window_start(13), 13);
    }
}
