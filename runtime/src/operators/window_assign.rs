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
//!
//! Window arithmetic saturates: event times and sizes are user input and
//! may lie near the ends of `i64` nanoseconds. A window whose end would
//! pass `i64::MAX` ends at `i64::MAX` (it fires when the input ends), one
//! whose start would fall below `i64::MIN` starts there; nothing wraps.

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

/// The largest `offset + k·every` at or below `ts`, in `i128` so that no
/// step overflows. A size that is not positive (the planner refuses those)
/// aligns nothing.
fn align_down(ts: i128, every: i64, offset: i64) -> i128 {
    if every <= 0 {
        return ts;
    }
    ts - (ts - i128::from(offset)).rem_euclid(i128::from(every))
}

/// `value` clamped into `i64`.
fn clamp(value: i128) -> i64 {
    i64::try_from(value).unwrap_or(if value < 0 { i64::MIN } else { i64::MAX })
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
        clamp(align_down(i128::from(ts), self.pane_size(), self.offset()))
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

    /// The first window end after `ts` (`i64::MAX` if it would pass it).
    pub fn first_end_after(&self, ts: i64) -> i64 {
        clamp(self.first_end_after_wide(i128::from(ts)))
    }

    /// The start of the window that ends at `end`.
    pub fn start_of_window_ending(&self, end: i64) -> i64 {
        clamp(self.start_of_window_ending_wide(i128::from(end)))
    }

    fn first_end_after_wide(&self, ts: i128) -> i128 {
        align_down(ts, self.end_step(), self.offset()) + i128::from(self.end_step())
    }

    fn start_of_window_ending_wide(&self, end: i128) -> i128 {
        match *self {
            WindowKind::Tumble { size, .. } | WindowKind::Hop { size, .. } => end - i128::from(size),
            WindowKind::Cumulate { step, max_size, offset } => align_down(end - i128::from(step), max_size, offset),
            WindowKind::Session { gap } => end - i128::from(gap),
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
    /// Every window `(start, end)` holding event time `ts`. Computed in
    /// `i128`; a window whose end passes `i64::MAX` ends there and is the
    /// last one listed (later ones could never close before it).
    pub fn windows_of(&self, ts: i64) -> Vec<(i64, i64)> {
        let ts = i128::from(ts);
        let step = i128::from(self.end_step().max(1));
        let mut windows = Vec::new();
        let mut end = self.first_end_after_wide(ts);
        loop {
            let start = self.start_of_window_ending_wide(end);
            if start > ts {
                break;
            }
            windows.push((clamp(start), clamp(end)));
            if let WindowKind::Tumble { .. } | WindowKind::Session { .. } = self {
                break;
            }
            if end >= i128::from(i64::MAX) {
                break;
            }
            end += step;
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
            let window_times: Vec<i64> = ends.iter().map(|end| end.saturating_sub(1)).collect();
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
        let window_times: Vec<i64> = ends.iter().map(|end| end.saturating_sub(1)).collect();
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

    #[test]
    fn windows_near_the_ends_of_time_saturate_instead_of_overflowing() {
        let near_max = i64::MAX - 5;
        let tumble = WindowKind::Tumble { size: 10, offset: 0 };
        assert_eq!(tumble.windows_of(near_max), vec![(tumble.pane_start(near_max), i64::MAX)]);
        assert_eq!(tumble.first_end_after(near_max), i64::MAX);
        let hop = WindowKind::Hop { size: 10, slide: 4, offset: 0 };
        let windows = hop.windows_of(near_max);
        assert!(!windows.is_empty() && windows.iter().all(|(start, end)| start <= &near_max && end > &near_max));
        assert_eq!(windows.last().map(|window| window.1), Some(i64::MAX));
        let cumulate = WindowKind::Cumulate { step: 4, max_size: 12, offset: 0 };
        assert!(cumulate.windows_of(near_max).iter().all(|(start, end)| start <= &near_max && end > &near_max));
        // Sizes near i64::MAX, times near i64::MIN, offsets that overflow `ts - offset`.
        let huge = WindowKind::Tumble { size: i64::MAX - 1, offset: 0 };
        assert_eq!(huge.pane_start(i64::MIN + 1), i64::MIN);
        assert_eq!(huge.windows_of(i64::MAX - 1).len(), 1);
        let offset = WindowKind::Tumble { size: 10, offset: i64::MAX };
        assert!(offset.pane_start(i64::MIN) <= i64::MIN + 10);
        let hop = WindowKind::Hop { size: i64::MAX, slide: i64::MAX / 2, offset: 0 };
        assert!(!hop.windows_of(i64::MAX - 1).is_empty());
        assert_eq!(WindowKind::Session { gap: i64::MAX }.windows_of(i64::MAX).len(), 1);
    }

    #[test]
    fn assigning_rows_near_i64_max_does_not_overflow() {
        use datafusion::arrow::datatypes::Field;
        let schema = Schema::new(vec![Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), false)]);
        let rows = RecordBatch::try_new(
            Arc::new(schema.clone()),
            vec![Arc::new(TimestampNanosecondArray::from(vec![i64::MAX, i64::MIN, 0]))],
        )
        .unwrap();
        for kind in [
            WindowKind::Tumble { size: i64::MAX, offset: 0 },
            WindowKind::Hop { size: 6, slide: 2, offset: 1 },
            WindowKind::Cumulate { step: i64::MAX / 3, max_size: i64::MAX, offset: 0 },
        ] {
            for expand in [false, true] {
                let mut spec = WindowAssignSpec::new(kind, 0, &schema);
                if expand {
                    spec = spec.expanded();
                }
                let mut out = Vec::new();
                WindowAssign::new(spec).on_batch(0, StreamBatch::inserts(rows.clone()), &mut out).unwrap();
                assert_eq!(out.len(), 1, "{kind:?}");
            }
        }
    }
}
