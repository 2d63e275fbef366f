//! Window join: two inputs windowed by the same window TVF, joined on
//! `window_start`/`window_end` and keys (Nexmark q8).
//!
//! # Algorithm
//!
//! Rows are buffered per window end, per side. When the watermark reaches a
//! window's end, no more rows of that window can come on either side: the
//! window's rows are joined by a DataFusion hash join planned once at
//! submit time (both of its leaves are feeds), which handles every join
//! kind and the rest of the ON condition. The window's rows are then
//! dropped, so state holds only windows the watermark has not closed. Each
//! window's result is emitted as one batch.
//!
//! ```text
//!   left  ─► buffer[end] ─┐   watermark ≥ end
//!                         ├──────────────────► HashJoinExec(feed, feed) ─► one batch
//!   right ─► buffer[end] ─┘
//! ```
//!
//! A checkpoint saves each side's buffered rows as one batch, windows in
//! order and each window's batches in arrival order, with a table of how
//! many rows of each side every window holds; a restore slices them back.
//! A window's join sees its rows concatenated either way, so it gives the
//! same rows in the same order.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray, Int64Array, RecordBatch};
use datafusion::arrow::compute::{concat_batches, filter_record_batch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::execution_plan::reset_plan_states;

use crate::error::{Result, RuntimeError};
use crate::message::{Message, StreamBatch, Watermark};
use crate::metrics::QueryMetrics;
use crate::metrics::StateSize;
use crate::operator::Operator;
use crate::operators::stateless::{FeedSlot, run_plan};
use crate::state::{OperatorState, batch, i64_column};
use crate::time::event_times;

/// Checkpoint names: each side's rows, and the rows per window.
const SIDE_ROWS: [&str; 2] = ["left_rows", "right_rows"];
const WINDOWS: &str = "windows";

#[derive(Debug, Clone)]
pub struct WindowJoinSpec {
    /// The join of one window's rows; its leaves read `feeds`.
    pub plan: Arc<dyn ExecutionPlan>,
    /// Left and right feeds.
    pub feeds: [FeedSlot; 2],
    pub schemas: [SchemaRef; 2],
    /// The `window_end` column of each side.
    pub window_end: [usize; 2],
}

impl WindowJoinSpec {
    pub fn output_schema(&self) -> SchemaRef {
        self.plan.schema()
    }
}

pub struct WindowJoin {
    spec: WindowJoinSpec,
    task: Arc<TaskContext>,
    /// Rows of open windows by window end: left and right batches.
    windows: BTreeMap<i64, [Vec<RecordBatch>; 2]>,
    metrics: Arc<QueryMetrics>,
    reported_rows: usize,
}

impl WindowJoin {
    pub fn new(spec: WindowJoinSpec, metrics: Arc<QueryMetrics>) -> Self {
        Self { spec, task: Arc::new(TaskContext::default()), windows: BTreeMap::new(), metrics, reported_rows: 0 }
    }

    fn report_state(&mut self) {
        let rows =
            self.windows.values().flat_map(|sides| sides.iter().flatten()).map(RecordBatch::num_rows).sum::<usize>();
        self.metrics.move_state_rows(self.reported_rows, rows);
        self.reported_rows = rows;
    }

    fn join_window(&self, sides: [Vec<RecordBatch>; 2]) -> Result<Option<RecordBatch>> {
        for ((feed, schema), batches) in self.spec.feeds.iter().zip(&self.spec.schemas).zip(sides) {
            let rows = concat_batches(schema, &batches)?;
            let mut slot = feed.lock().map_err(|_| RuntimeError::internal("feed slot poisoned"))?;
            slot.clear();
            slot.push_back(rows);
        }
        // A hash join keeps its build side: start from a fresh plan.
        let plan = reset_plan_states(Arc::clone(&self.spec.plan))?;
        let batches = run_plan(&plan, &self.task)?;
        if batches.is_empty() {
            return Ok(None);
        }
        Ok(Some(concat_batches(&plan.schema(), &batches)?))
    }
}

impl Operator for WindowJoin {
    fn state_size(&self) -> Option<StateSize> {
        let batches = self.windows.values().flatten().flatten();
        let (rows, bytes) = batches
            .fold((0, 0), |(rows, bytes), batch| (rows + batch.num_rows(), bytes + batch.get_array_memory_size()));
        Some(StateSize { rows: rows as u64, bytes: bytes as u64 })
    }

    fn oldest_open_window(&self) -> Option<i64> {
        self.windows.keys().next().copied()
    }

    fn on_batch(&mut self, port: usize, batch: StreamBatch, _out: &mut Vec<Message>) -> Result<()> {
        let side = port.min(1);
        let rows = batch.rows;
        let ends = event_times(rows.column(self.spec.window_end[side]))?;
        let first = ends.first().copied().flatten();
        if ends.iter().all(|end| *end == first) {
            if let Some(end) = first {
                self.windows.entry(end).or_default()[side].push(rows);
            }
        } else {
            let mut distinct: Vec<i64> = ends.iter().flatten().copied().collect();
            distinct.sort_unstable();
            distinct.dedup();
            for end in distinct {
                let mask = BooleanArray::from(ends.iter().map(|row_end| *row_end == Some(end)).collect::<Vec<_>>());
                self.windows.entry(end).or_default()[side].push(filter_record_batch(&rows, &mask)?);
            }
        }
        self.report_state();
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Watermark, out: &mut Vec<Message>) -> Result<()> {
        while let Some(end) = self.windows.first_key_value().map(|(end, _)| *end) {
            if Watermark(end) > watermark {
                break;
            }
            let sides = self.windows.remove(&end).unwrap_or_default();
            if let Some(rows) = self.join_window(sides)? {
                out.push(Message::Batch(StreamBatch::inserts(rows)));
            }
        }
        self.report_state();
        out.push(Message::Watermark(watermark));
        Ok(())
    }

    /// `windows` has a row per open window: `window_end`, then
    /// `left_rows` and `right_rows`, the rows it holds of each side (its
    /// slice of that side's batch).
    fn snapshot(&mut self) -> Result<OperatorState> {
        let mut state = OperatorState::default();
        let ends: Vec<i64> = self.windows.keys().copied().collect();
        let mut counts: Vec<(&str, ArrayRef)> = vec![("window_end", Arc::new(Int64Array::from(ends)) as ArrayRef)];
        for (side, name) in SIDE_ROWS.into_iter().enumerate() {
            let batches: Vec<&RecordBatch> = self.windows.values().flat_map(|sides| &sides[side]).collect();
            state.put(name, concat_batches(&self.spec.schemas[side], batches)?);
            let rows = self.windows.values().map(|sides| sides[side].iter().map(RecordBatch::num_rows).sum::<usize>());
            counts.push((name, Arc::new(Int64Array::from_iter_values(rows.map(|rows| rows as i64)))));
        }
        state.put(WINDOWS, batch(counts)?);
        Ok(state)
    }

    fn restore(&mut self, mut state: OperatorState) -> Result<()> {
        let windows = state.take(WINDOWS)?;
        let ends = i64_column(&windows, "window_end")?;
        self.windows = ends.values().iter().map(|end| (*end, [Vec::new(), Vec::new()])).collect();
        for (side, name) in SIDE_ROWS.into_iter().enumerate() {
            let saved = state.take(name)?;
            let counts = i64_column(&windows, name)?;
            let mut offset = 0;
            for (end, count) in ends.values().iter().zip(counts.values()) {
                let count = usize::try_from(*count).map_err(|_| RuntimeError::internal("negative window rows"))?;
                if offset + count > saved.num_rows() {
                    return Err(RuntimeError::internal("window join state has fewer rows than its windows"));
                }
                if count > 0 {
                    let rows = saved.slice(offset, count);
                    let rows = RecordBatch::try_new(self.spec.schemas[side].clone(), rows.columns().to_vec())?;
                    self.windows.entry(*end).or_default()[side].push(rows);
                }
                offset += count;
            }
        }
        self.report_state();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use datafusion::arrow::array::TimestampNanosecondArray;
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use datafusion::common::{JoinType, NullEquality};
    use datafusion::physical_expr::PhysicalExpr;
    use datafusion::physical_expr::expressions::Column;
    use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode};

    use super::*;
    use crate::operators::restore_check::assert_restores;
    use crate::operators::stateless::FeedExec;

    fn side_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("v", DataType::Int64, false),
            Field::new("window_end", DataType::Timestamp(TimeUnit::Nanosecond, None), false),
        ]))
    }

    /// `l LEFT JOIN r ON l.window_end = r.window_end AND l.k = r.k`.
    fn left_join_spec() -> WindowJoinSpec {
        let feeds: [FeedSlot; 2] = [Arc::new(Mutex::new(VecDeque::new())), Arc::new(Mutex::new(VecDeque::new()))];
        let leaf = |feed: &FeedSlot| -> Arc<dyn ExecutionPlan> {
            Arc::new(FeedExec::new(feed.clone(), side_schema(), None).unwrap())
        };
        let column = |name: &str, index: usize| -> Arc<dyn PhysicalExpr> { Arc::new(Column::new(name, index)) };
        let on = vec![(column("window_end", 2), column("window_end", 2)), (column("k", 0), column("k", 0))];
        let plan = HashJoinExec::try_new(
            leaf(&feeds[0]),
            leaf(&feeds[1]),
            on,
            None,
            &JoinType::Left,
            None,
            PartitionMode::CollectLeft,
            NullEquality::NullEqualsNothing,
            false,
        )
        .unwrap();
        WindowJoinSpec { plan: Arc::new(plan), feeds, schemas: [side_schema(), side_schema()], window_end: [2, 2] }
    }

    /// Rows (k, v, window_end) on `port`.
    fn rows(port: usize, rows: &[(i64, i64, i64)]) -> (usize, Message) {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|row| row.0))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|row| row.1))),
            Arc::new(TimestampNanosecondArray::from_iter_values(rows.iter().map(|row| row.2))),
        ];
        (port, Message::Batch(StreamBatch::inserts(RecordBatch::try_new(side_schema(), columns).unwrap())))
    }

    #[test]
    fn a_window_left_join_restores_buffered_windows() {
        let spec = left_join_spec();
        let messages = vec![
            rows(0, &[(1, 1, 10), (2, 2, 10), (1, 3, 20)]),
            rows(1, &[(1, 10, 10)]),
            rows(0, &[(3, 4, 10), (1, 8, 10)]),
            rows(1, &[(1, 11, 20), (1, 12, 10)]),
            (0, Message::Watermark(Watermark(10))),
            rows(1, &[(2, 13, 30)]),
            rows(0, &[(2, 5, 30), (1, 6, 20)]),
            (1, Message::Watermark(Watermark(25))),
            rows(0, &[(4, 7, 40)]),
            rows(1, &[(5, 14, 40)]),
            (0, Message::Watermark(Watermark::MAX)),
            (0, Message::End),
        ];
        let new = || Box::new(WindowJoin::new(spec.clone(), Arc::new(QueryMetrics::default()))) as Box<dyn Operator>;
        let straight = assert_restores(new, &messages);
        // Window 10 pairs two right rows with each of the two left rows of
        // key 1, and keeps keys 2 and 3 with NULLs.
        let window_10 = straight.iter().filter(|row| row.contains("00.000000010")).count();
        assert!(window_10 >= 6, "{straight:?}");
        assert!(straight.iter().any(|row| row.starts_with("+ 4, 7, ") && row.ends_with(", , ")), "{straight:?}");
    }
}
