//! Stateless work — filters, projections, scalar functions, UNNEST, and the
//! sort/limit of one emitted window — done by DataFusion.
//!
//! # Algorithm
//!
//! The planner builds a DataFusion physical plan once, whose leaf is a
//! [`FeedExec`] instead of a table scan:
//!
//! ```text
//!   batch ──► FeedSlot ──► FeedExec ──► FilterExec ──► ProjectionExec ──► out
//! ```
//!
//! For every incoming batch the operator puts the batch into the slot and
//! executes the plan. The plans involved (filter, projection, unnest, sort,
//! limit over one bounded partition, with no repartitioning) never wait on
//! I/O, so their streams are ready at once and are polled to completion
//! without an async runtime. One batch in gives the rows of that batch out;
//! this is what lets a sort/limit above a window aggregate apply to each
//! window on its own.
//!
//! A batch of an updating input (inserts and retractions) runs the plan on
//! each run of equal ops, so that every output row keeps its input row's op;
//! a plan of projections only (one row out per row in, in order) runs once
//! over the whole batch instead. A changelog alternates `-`/`+` rows, and a
//! run per row cost a whole plan execution per row. Every 1024 executions
//! the plan is rebuilt with fresh metrics (DataFusion's nodes register new
//! ones at each execution).

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{
    Boundedness, ChildrenPropertiesMode, EmissionType, ReplaceChildrenOptions, reset_plan_states,
};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties};
use futures::StreamExt;

use crate::error::{Result, RuntimeError};
use crate::message::{Message, StreamBatch};
use crate::operator::Operator;

/// Where the operator leaves the batch its [`FeedExec`] hands to the plan.
/// A std `Mutex`: it is only touched between executions, never across an
/// await, and never contended.
pub type FeedSlot = Arc<Mutex<VecDeque<RecordBatch>>>;

#[derive(Debug, Clone)]
pub struct StatelessSpec {
    /// The physical plan; its one leaf is a `FeedExec` reading `feed`.
    pub plan: Arc<dyn ExecutionPlan>,
    pub feed: FeedSlot,
}

impl StatelessSpec {
    pub fn output_schema(&self) -> SchemaRef {
        self.plan.schema()
    }
}

/// Executions after which the plan is rebuilt: each execution registers
/// new metrics with the plan's nodes, which would otherwise pile up for
/// as long as the query runs.
const EXECUTIONS_PER_PLAN: u32 = 1024;

pub struct Stateless {
    spec: StatelessSpec,
    task: Arc<TaskContext>,
    /// The plan only projects: every input row gives one output row, in
    /// order.
    projects_only: bool,
    /// The plan works row by row (filters and projections): a batch may be
    /// cut into runs of rows and each run's output concatenated in order.
    row_wise: bool,
    /// Threads a big batch of a row-wise plan is cut across.
    parallelism: usize,
    /// Copies of the plan with their own feeds, for the runs after the
    /// first of a batch cut across threads.
    copies: Vec<(Arc<dyn ExecutionPlan>, FeedSlot)>,
    /// What a row costs on one thread, measured on big batches: only a
    /// batch worth [`CUT_NANOS`] is cut across threads (a cheap projection
    /// gains nothing from a thread and takes a core from the source).
    nanos_per_row: f64,
    big_batches: u64,
    executions: u32,
}

/// One thread's work on a batch, in nanoseconds, above which the batch is
/// cut across threads.
const CUT_NANOS: f64 = 1_000_000.0;

/// Rows per thread below which a batch is not cut across threads.
const ROWS_PER_THREAD: usize = 4096;

impl Stateless {
    pub fn new(spec: StatelessSpec) -> Self {
        let projects_only = projects_only(&spec.plan);
        let row_wise = row_wise(&spec.plan);
        Self {
            spec,
            task: Arc::new(TaskContext::default()),
            projects_only,
            row_wise,
            parallelism: 1,
            copies: Vec::new(),
            nanos_per_row: 0.0,
            big_batches: 0,
            executions: 0,
        }
    }

    /// Cuts big batches of a row-wise plan across up to `threads` threads.
    pub fn with_parallelism(mut self, threads: usize) -> Self {
        self.parallelism = threads.max(1);
        self
    }
}

/// Whether `plan` is filters and projections over its feed.
fn row_wise(plan: &Arc<dyn ExecutionPlan>) -> bool {
    if plan.is::<FeedExec>() {
        return true;
    }
    matches!(plan.name(), "ProjectionExec" | "FilterExec") && plan.children().iter().all(|child| row_wise(child))
}

/// `plan` with a fresh feed in place of its [`FeedExec`]'s.
fn with_own_feed(plan: &Arc<dyn ExecutionPlan>, feed: &FeedSlot) -> Result<Arc<dyn ExecutionPlan>> {
    if let Some(leaf) = plan.downcast_ref::<FeedExec>() {
        return Ok(Arc::new(FeedExec {
            feed: Arc::clone(feed),
            projection: leaf.projection.clone(),
            schema: Arc::clone(&leaf.schema),
            properties: Arc::clone(&leaf.properties),
        }));
    }
    let children = plan.children().into_iter().map(|child| with_own_feed(child, feed)).collect::<Result<Vec<_>>>()?;
    // The same plan over the same schema: its properties stand.
    let keep = ReplaceChildrenOptions::new(ChildrenPropertiesMode::Keep);
    Ok(Arc::clone(plan).replace_children(children, keep)?)
}

/// Whether `plan` is projections over its feed.
fn projects_only(plan: &Arc<dyn ExecutionPlan>) -> bool {
    if plan.is::<FeedExec>() {
        return true;
    }
    plan.is::<ProjectionExec>() && plan.children().iter().all(|child| projects_only(child))
}

impl Operator for Stateless {
    fn on_batch(&mut self, _port: usize, batch: StreamBatch, out: &mut Vec<Message>) -> Result<()> {
        let threads = self.parallelism.min(batch.num_rows() / ROWS_PER_THREAD);
        if batch.ops.is_none() && self.row_wise && threads > 1 {
            self.big_batches += 1;
            // Measured on one thread now and then (the first of every 64).
            let measure = self.big_batches % 64 == 1;
            let batches = if !measure && batch.num_rows() as f64 * self.nanos_per_row >= CUT_NANOS {
                self.execute_across(batch.rows, threads)?
            } else {
                let rows = batch.num_rows();
                let started = std::time::Instant::now();
                let batches = self.execute(batch.rows)?;
                self.nanos_per_row = started.elapsed().as_nanos() as f64 / rows as f64;
                batches
            };
            // One batch out either way: which way is timing's choice, and
            // batch boundaries must not depend on it.
            if !batches.is_empty() {
                let rows = datafusion::arrow::compute::concat_batches(&self.spec.output_schema(), &batches)?;
                out.push(Message::Batch(StreamBatch::inserts(rows)));
            }
            return Ok(());
        }
        let Some(ops) = &batch.ops else {
            for rows in self.execute(batch.rows)? {
                out.push(Message::Batch(StreamBatch::inserts(rows)));
            }
            return Ok(());
        };
        if self.projects_only {
            // Row i out is row i in: one execution, and each row keeps its op.
            let mut ops = ops.as_slice();
            for rows in self.execute(batch.rows)? {
                let (these, rest) = ops
                    .split_at_checked(rows.num_rows())
                    .ok_or_else(|| RuntimeError::internal("a projection gave more rows than it was given"))?;
                out.push(Message::Batch(StreamBatch { rows, ops: Some(these.to_vec()) }));
                ops = rest;
            }
            return Ok(());
        }
        // Row-wise plans (filter, projection, unnest) keep each row's op:
        // run them on each run of equal ops, in order.
        let mut start = 0;
        while start < ops.len() {
            let op = ops[start];
            let end = ops[start..].iter().position(|other| *other != op).map_or(ops.len(), |length| start + length);
            for rows in self.execute(batch.rows.slice(start, end - start))? {
                let count = rows.num_rows();
                out.push(Message::Batch(StreamBatch { rows, ops: Some(vec![op; count]) }));
            }
            start = end;
        }
        Ok(())
    }
}

impl Stateless {
    /// Runs a row-wise plan over `threads` runs of `rows` at once, the first
    /// on this thread; their non-empty outputs in row order.
    fn execute_across(&mut self, rows: RecordBatch, threads: usize) -> Result<Vec<RecordBatch>> {
        while self.copies.len() < threads - 1 {
            let feed: FeedSlot = Arc::default();
            self.copies.push((with_own_feed(&self.spec.plan, &feed)?, feed));
        }
        let length = rows.num_rows().div_ceil(threads);
        let runs: Vec<RecordBatch> = (0..threads)
            .map(|run| {
                let start = (run * length).min(rows.num_rows());
                rows.slice(start, length.min(rows.num_rows() - start))
            })
            .collect();
        let mut runs = runs.into_iter();
        let first = runs.next().unwrap_or_else(|| rows.slice(0, 0));
        let task = Arc::clone(&self.task);
        let copies = std::mem::take(&mut self.copies);
        let (first, rest) = std::thread::scope(|scope| {
            let handles: Vec<_> = runs
                .zip(&copies)
                .map(|(run, (plan, feed))| {
                    let task = Arc::clone(&task);
                    scope.spawn(move || {
                        feed.lock().map_err(|_| RuntimeError::internal("feed slot poisoned"))?.push_back(run);
                        run_plan(plan, &task)
                    })
                })
                .collect();
            let first = self.execute(first);
            let rest: Vec<Result<Vec<RecordBatch>>> = handles
                .into_iter()
                .map(|handle| {
                    handle.join().unwrap_or_else(|_| Err(RuntimeError::internal("a stateless thread panicked")))
                })
                .collect();
            (first, rest)
        });
        // Rebuilt with fresh metrics along with the plan.
        if self.executions != 0 {
            self.copies = copies;
        }
        let mut batches = first?;
        for run in rest {
            batches.extend(run?);
        }
        Ok(batches)
    }

    /// Runs the plan over one batch; returns the non-empty output batches.
    fn execute(&mut self, rows: RecordBatch) -> Result<Vec<RecordBatch>> {
        self.executions += 1;
        if self.executions >= EXECUTIONS_PER_PLAN {
            self.spec.plan = reset_plan_states(Arc::clone(&self.spec.plan))?;
            self.executions = 0;
        }
        let feed = self.spec.feed.lock().map(|mut slot| slot.push_back(rows));
        feed.map_err(|_| RuntimeError::internal("feed slot poisoned"))?;
        run_plan(&self.spec.plan, &self.task)
    }
}

/// Executes a plan whose leaves are fed [`FeedExec`]s to completion, without
/// an async runtime; returns the non-empty output batches.
pub(crate) fn run_plan(plan: &Arc<dyn ExecutionPlan>, task: &Arc<TaskContext>) -> Result<Vec<RecordBatch>> {
    let mut stream = plan.execute(0, Arc::clone(task))?;
    let mut context = Context::from_waker(futures::task::noop_waker_ref());
    let mut output = Vec::new();
    loop {
        match stream.poll_next_unpin(&mut context) {
            Poll::Ready(Some(result)) => {
                let rows = result?;
                if rows.num_rows() > 0 {
                    output.push(rows);
                }
            }
            Poll::Ready(None) => return Ok(output),
            Poll::Pending => {
                return Err(RuntimeError::internal(format!(
                    "stateless plan would block: {}",
                    datafusion::physical_plan::displayable(plan.as_ref()).one_line()
                )));
            }
        }
    }
}

/// The leaf of a stateless plan: yields the batches left in its slot,
/// projected to `projection` when the scan asked for fewer columns.
#[derive(Debug)]
pub struct FeedExec {
    feed: FeedSlot,
    projection: Option<Vec<usize>>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl FeedExec {
    pub fn new(feed: FeedSlot, input_schema: SchemaRef, projection: Option<Vec<usize>>) -> DFResult<Self> {
        let schema = match &projection {
            Some(indices) => Arc::new(input_schema.project(indices)?),
            None => input_schema,
        };
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Ok(Self { feed, projection, schema, properties })
    }
}

impl DisplayAs for FeedExec {
    fn fmt_as(&self, _format: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "FeedExec: projection={:?}", self.projection)
    }
}

impl ExecutionPlan for FeedExec {
    fn name(&self) -> &str {
        "FeedExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DFResult<TreeNodeRecursion>,
    ) -> DFResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> DFResult<Arc<dyn ExecutionPlan>> {
        if children.is_empty() { Ok(self) } else { Err(DataFusionError::Internal("FeedExec has no children".into())) }
    }

    fn execute(&self, _partition: usize, _context: Arc<TaskContext>) -> DFResult<SendableRecordBatchStream> {
        let batches: Vec<RecordBatch> =
            self.feed.lock().map_err(|_| DataFusionError::Internal("feed slot poisoned".into()))?.drain(..).collect();
        let projection = self.projection.clone();
        let batches = batches.into_iter().map(move |batch| match &projection {
            Some(indices) => batch.project(indices).map_err(DataFusionError::from),
            None => Ok(batch),
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(Arc::clone(&self.schema), futures::stream::iter(batches))))
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::logical_expr::Operator as BinaryOperator;
    use datafusion::physical_expr::expressions::{binary, col, lit};
    use datafusion::physical_plan::filter::FilterExec;

    use super::*;
    use crate::message::Op;

    fn fed() -> (FeedSlot, Arc<dyn ExecutionPlan>, SchemaRef) {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let slot = FeedSlot::default();
        let feed = Arc::new(FeedExec::new(slot.clone(), schema.clone(), None).unwrap()) as Arc<dyn ExecutionPlan>;
        (slot, feed, schema)
    }

    /// Runs `spec` over a changelog of 0..rows alternating `-`/`+`, as
    /// many times as it takes to rebuild the plan at least once; gives the
    /// output values and ops of the last run.
    fn run_changelog(spec: StatelessSpec, schema: &SchemaRef, rows: i64) -> (Vec<i64>, Vec<Op>) {
        let mut operator = Stateless::new(spec);
        let ops: Vec<Op> = (0..rows).map(|row| if row % 2 == 0 { Op::Delete } else { Op::Insert }).collect();
        let mut out = Vec::new();
        for _ in 0..=EXECUTIONS_PER_PLAN {
            let rows = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from_iter_values(0..rows))]);
            let batch = StreamBatch { rows: rows.unwrap(), ops: Some(ops.clone()) };
            out.clear();
            operator.on_batch(0, batch, &mut out).unwrap();
        }
        let mut values = Vec::new();
        let mut ops = Vec::new();
        for message in out {
            let Message::Batch(batch) = message else { continue };
            values.extend(batch.rows.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().iter());
            ops.extend(batch.ops.unwrap());
        }
        (values, ops)
    }

    #[test]
    fn rows_keep_their_ops_whether_the_plan_projects_or_filters() {
        let (slot, feed, schema) = fed();
        let doubled = binary(col("x", &schema).unwrap(), BinaryOperator::Multiply, lit(2_i64), &schema).unwrap();
        let projection = ProjectionExec::try_new(vec![(doubled, "y".to_string())], feed).unwrap();
        let spec = StatelessSpec { plan: Arc::new(projection), feed: slot };
        assert!(Stateless::new(spec.clone()).projects_only);
        let (values, ops) = run_changelog(spec, &schema, 6);
        assert_eq!(values, vec![0, 2, 4, 6, 8, 10]);
        assert_eq!(ops, vec![Op::Delete, Op::Insert, Op::Delete, Op::Insert, Op::Delete, Op::Insert]);

        let (slot, feed, schema) = fed();
        let above_two = binary(col("x", &schema).unwrap(), BinaryOperator::Gt, lit(2_i64), &schema).unwrap();
        let spec = StatelessSpec { plan: Arc::new(FilterExec::try_new(above_two, feed).unwrap()), feed: slot };
        assert!(!Stateless::new(spec.clone()).projects_only);
        let (values, ops) = run_changelog(spec, &schema, 6);
        assert_eq!(values, vec![3, 4, 5]);
        assert_eq!(ops, vec![Op::Insert, Op::Delete, Op::Insert]);
    }

    #[test]
    fn a_big_batch_cut_across_threads_gives_the_rows_of_one_thread_in_order() {
        let (slot, feed, schema) = fed();
        let odd = binary(
            binary(col("x", &schema).unwrap(), BinaryOperator::Modulo, lit(3_i64), &schema).unwrap(),
            BinaryOperator::Eq,
            lit(1_i64),
            &schema,
        )
        .unwrap();
        let spec = StatelessSpec { plan: Arc::new(FilterExec::try_new(odd, feed).unwrap()), feed: slot };
        let mut one = Stateless::new(spec.clone());
        let mut three = Stateless::new(spec).with_parallelism(3);
        assert!(three.row_wise);
        // Measured as worth cutting (a real plan would have to be slow).
        three.nanos_per_row = 1e6;
        for _ in 0..=EXECUTIONS_PER_PLAN / 100 {
            let values = Int64Array::from_iter_values(0..50_000);
            let rows = RecordBatch::try_new(schema.clone(), vec![Arc::new(values)]).unwrap();
            let (mut by_one, mut by_three) = (Vec::new(), Vec::new());
            one.on_batch(0, StreamBatch::inserts(rows.clone()), &mut by_one).unwrap();
            three.on_batch(0, StreamBatch::inserts(rows), &mut by_three).unwrap();
            let values = |out: &[Message]| -> Vec<i64> {
                out.iter()
                    .flat_map(|message| match message {
                        Message::Batch(batch) => {
                            batch.rows.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec()
                        }
                        _ => Vec::new(),
                    })
                    .collect()
            };
            three.nanos_per_row = 1e6;
            assert_eq!(by_three.len(), 1, "one batch out, as from one thread");
            assert_eq!(values(&by_three), values(&by_one));
            assert_eq!(values(&by_three).len(), 16_667);
        }
        assert_eq!(three.copies.len(), 2);
    }
}
