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
//!
//! For HOP and CUMULATE a row belongs to several windows; here it gets the
//! bounds of its *pane* (see [`WindowKind::pane_size`]), and the pane
//! window aggregate turns panes into windows.

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

/// How rows are assigned to windows. Sizes and offsets in nanoseconds;
/// windows are aligned to the Unix epoch plus `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// Fixed-size, non-overlapping windows.
    Tumble { size: i64, offset: i64 },
    /// Windows of `size` starting every `slide`; a row is in `size / slide`
    /// of them. Evaluated from panes of `gcd(size, slide)`.
    Hop { size: i64, slide: i64, offset: i64 },
    /// Windows growing by `step` from the start of each `max_size` period:
    /// `[S, S+step)`, `[S, S+2·step)`, ..., `[S, S+max_size)`.
    Cumulate { step: i64, max_size: i64, offset: i64 },
    /// Per key, rows closer than `gap` to each other share a window. Window
    /// assignment gives each row `[ts, ts + gap)`; the session operator
    /// merges them.
    Session { gap: i64 },
}

fn align_down(ts: i64, every: i64, offset: i64) -> i64 {
    ts - (ts - offset).rem_euclid(every)
}

pub fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 { a.abs() } else { gcd(b, a % b) }
}

impl WindowKind {
    /// The unit rows are assigned to: the window for TUMBLE, a pane for HOP
    /// and CUMULATE.
    pub fn pane_size(&self) -> i64 {
        match *self {
            WindowKind::Tumble { size, .. } => size,
            WindowKind::Hop { size, slide, .. } => gcd(size, slide),
            WindowKind::Cumulate { step, .. } => step,
            WindowKind::Session { gap } => gap,
        }
    }

    fn offset(&self) -> i64 {
        match *self {
            WindowKind::Tumble { offset, .. }
            | WindowKind::Hop { offset, .. }
            | WindowKind::Cumulate { offset, .. } => offset,
            WindowKind::Session { .. } => 0,
        }
    }

    /// The start of the pane holding event time `ts` (for TUMBLE, of its window).
    pub fn pane_start(&self, ts: i64) -> i64 {
        if let WindowKind::Session { .. } = self {
            return ts;
        }
        align_down(ts, self.pane_size(), self.offset())
    }

    /// The longest window.
    pub fn size(&self) -> i64 {
        match *self {
            WindowKind::Tumble { size, .. } | WindowKind::Hop { size, .. } => size,
            WindowKind::Cumulate { max_size, .. } => max_size,
            WindowKind::Session { gap } => gap,
        }
    }

    /// Distance between consecutive window ends.
    pub fn end_step(&self) -> i64 {
        match *self {
            WindowKind::Tumble { size, .. } => size,
            WindowKind::Hop { slide, .. } => slide,
            WindowKind::Cumulate { step, .. } => step,
            WindowKind::Session { gap } => gap,
        }
    }

    /// The first window end after `ts`.
    pub fn first_end_after(&self, ts: i64) -> i64 {
        align_down(ts, self.end_step(), self.offset()) + self.end_step()
    }

    /// The start of the window that ends at `end`.
    pub fn start_of_window_ending(&self, end: i64) -> i64 {
        match *self {
            WindowKind::Tumble { size, .. } | WindowKind::Hop { size, .. } => end - size,
            WindowKind::Cumulate { step, max_size, offset } => align_down(end - step, max_size, offset),
            WindowKind::Session { gap } => end - gap,
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
    /// HOP and CUMULATE: copy each row into every window holding it (for
    /// early results and allowed lateness, which work on whole windows)
    /// instead of tagging it with its pane.
    pub expand: bool,
}

impl WindowAssignSpec {
    pub fn new(kind: WindowKind, time_column: usize, input_schema: &Schema) -> Self {
        let timestamp = DataType::Timestamp(TimeUnit::Nanosecond, None);
        let mut fields: Vec<Field> = input_schema.fields().iter().map(|field| field.as_ref().clone()).collect();
        for name in [WINDOW_START, WINDOW_END, WINDOW_TIME] {
            fields.push(Field::new(name, timestamp.clone(), false));
        }
        Self { kind, time_column, output_schema: Arc::new(Schema::new(fields)), expand: false }
    }

    pub fn expanded(mut self) -> Self {
        self.expand = matches!(self.kind, WindowKind::Hop { .. } | WindowKind::Cumulate { .. });
        self
    }
}

impl WindowKind {
    /// Every window `(start, end)` holding event time `ts`.
    pub fn windows_of(&self, ts: i64) -> Vec<(i64, i64)> {
        let mut windows = Vec::new();
        let mut end = self.first_end_after(ts);
        loop {
            let start = self.start_of_window_ending(end);
            if start > ts {
                break;
            }
            windows.push((start, end));
            if let WindowKind::Tumble { .. } | WindowKind::Session { .. } = self {
                break;
            }
            end += self.end_step();
        }
        windows
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
        if self.spec.expand {
            // One copy of each row per window that holds it.
            let mut rows = Vec::new();
            let (mut starts, mut ends) = (Vec::new(), Vec::new());
            for (row, ts) in times.iter().enumerate() {
                for (start, end) in self.spec.kind.windows_of(ts.unwrap_or_default()) {
                    rows.push(row as u32);
                    starts.push(start);
                    ends.push(end);
                }
            }
            let indices = datafusion::arrow::array::UInt32Array::from(rows);
            let mut columns = batch
                .rows
                .columns()
                .iter()
                .map(|column| Ok(datafusion::arrow::compute::take(column, &indices, None)?))
                .collect::<Result<Vec<ArrayRef>>>()?;
            let window_times: Vec<i64> = ends.iter().map(|end| end - 1).collect();
            for values in [starts, ends, window_times] {
                columns.push(Arc::new(TimestampNanosecondArray::from(values)));
            }
            let rows = RecordBatch::try_new(self.spec.output_schema.clone(), columns)?;
            out.push(Message::Batch(StreamBatch::inserts(rows)));
            return Ok(());
        }
        let size = self.spec.kind.pane_size();
        // Sources drop rows without an event time, so a null cannot reach here.
        let starts: Vec<i64> = times.iter().map(|ts| self.spec.kind.pane_start(ts.unwrap_or_default())).collect();
        let ends: Vec<i64> = starts.iter().map(|start| start.saturating_add(size)).collect();
        let window_times: Vec<i64> = ends.iter().map(|end| end - 1).collect();
        let mut columns: Vec<ArrayRef> = batch.rows.columns().to_vec();
        for values in [starts, ends, window_times] {
            columns.push(Arc::new(TimestampNanosecondArray::from(values)));
        }
        let rows = RecordBatch::try_new(self.spec.output_schema.clone(), columns)?;
        out.push(Message::Batch(StreamBatch { rows, ops: batch.ops }));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tumble_assigns_half_open_windows() {
        let kind = WindowKind::Tumble { size: 10, offset: 0 };
        assert_eq!(kind.pane_start(0), 0);
        assert_eq!(kind.pane_start(9), 0);
        assert_eq!(kind.pane_start(10), 10);
        assert_eq!(kind.pane_start(-1), -10);
    }

    #[test]
    fn hop_and_cumulate_windows() {
        let hop = WindowKind::Hop { size: 10, slide: 4, offset: 0 };
        assert_eq!(hop.pane_size(), 2);
        assert_eq!(hop.pane_start(7), 6);
        assert_eq!(hop.first_end_after(6), 8);
        assert_eq!(hop.start_of_window_ending(8), -2);
        let cumulate = WindowKind::Cumulate { step: 2, max_size: 6, offset: 0 };
        assert_eq!(cumulate.first_end_after(6), 8);
        assert_eq!(cumulate.start_of_window_ending(8), 6);
        assert_eq!(cumulate.start_of_window_ending(12), 6);
        assert_eq!(cumulate.start_of_window_ending(14), 12);
    }

    #[test]
    fn windows_of_a_row() {
        let hop = WindowKind::Hop { size: 6, slide: 2, offset: 0 };
        assert_eq!(hop.windows_of(7), vec![(2, 8), (4, 10), (6, 12)]);
        let cumulate = WindowKind::Cumulate { step: 2, max_size: 6, offset: 0 };
        assert_eq!(cumulate.windows_of(7), vec![(6, 8), (6, 10), (6, 12)]);
        assert_eq!(cumulate.windows_of(9), vec![(6, 10), (6, 12)]);
        let tumble = WindowKind::Tumble { size: 5, offset: 0 };
        assert_eq!(tumble.windows_of(7), vec![(5, 10)]);
    }

    #[test]
    fn tumble_respects_offset() {
        let kind = WindowKind::Tumble { size: 10, offset: 3 };
        assert_eq!(kind.pane_start(3), 3);
        assert_eq!(kind.pane_start(12), 3);
        assert_eq!(kind.pane_start(13), 13);
    }
}
