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

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{BooleanArray, RecordBatch};
use datafusion::arrow::compute::{concat_batches, filter_record_batch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::execution_plan::reset_plan_states;

use crate::error::{Result, RuntimeError};
use crate::message::{Message, StreamBatch, Watermark};
use crate::metrics::QueryMetrics;
use crate::operator::Operator;
use crate::operators::stateless::{FeedSlot, run_plan};
use crate::time::event_times;

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
}
