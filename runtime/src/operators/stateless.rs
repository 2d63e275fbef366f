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
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
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

pub struct Stateless {
    spec: StatelessSpec,
    task: Arc<TaskContext>,
}

impl Stateless {
    pub fn new(spec: StatelessSpec) -> Self {
        Self { spec, task: Arc::new(TaskContext::default()) }
    }
}

impl Operator for Stateless {
    fn on_batch(&mut self, _port: usize, batch: StreamBatch, out: &mut Vec<Message>) -> Result<()> {
        let Some(ops) = &batch.ops else {
            for rows in self.execute(batch.rows)? {
                out.push(Message::Batch(StreamBatch::inserts(rows)));
            }
            return Ok(());
        };
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
    /// Runs the plan over one batch; returns the non-empty output batches.
    fn execute(&mut self, rows: RecordBatch) -> Result<Vec<RecordBatch>> {
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
