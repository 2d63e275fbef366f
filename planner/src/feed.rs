//! How stateless DataFusion plans read the batches of a running pipeline.
//!
//! During lowering, the input of a stateless segment (a stream scan or a
//! stateful operator) is replaced in the logical plan by a [`FeedNode`] with
//! the same schema. DataFusion's physical planner, given [`FeedPlanner`],
//! turns it into the runtime's [`FeedExec`], which yields whatever batch the
//! operator put in its [`FeedSlot`].
//!
//! [`StreamTable`] is what DataFusion's SQL planner sees for a stream: a
//! schema, never scanned (every scan becomes a feed).

use std::cmp::Ordering;
use std::collections::VecDeque;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::{DFSchemaRef, DataFusionError, Result};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{Expr, LogicalPlan, UserDefinedLogicalNode, UserDefinedLogicalNodeCore};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{ExtensionPlanner, PhysicalPlanner};
use sluice_runtime::operators::stateless::{FeedExec, FeedSlot};

/// The leaf of a stateless segment.
#[derive(Debug, Clone)]
pub struct FeedNode {
    /// What the segment above sees.
    pub schema: DFSchemaRef,
    /// The schema of the batches the operator receives.
    pub input_schema: SchemaRef,
    /// Columns of the input to keep (a scan's projection).
    pub projection: Option<Vec<usize>>,
    pub slot: FeedSlot,
}

impl FeedNode {
    pub fn new(schema: DFSchemaRef, input_schema: SchemaRef, projection: Option<Vec<usize>>) -> Self {
        Self { schema, input_schema, projection, slot: Arc::new(Mutex::new(VecDeque::new())) }
    }

    fn identity(&self) -> usize {
        Arc::as_ptr(&self.slot) as usize
    }
}

impl PartialEq for FeedNode {
    fn eq(&self, other: &Self) -> bool {
        self.identity() == other.identity()
    }
}

impl Eq for FeedNode {}

impl PartialOrd for FeedNode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.identity().cmp(&other.identity()))
    }
}

impl Hash for FeedNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.identity().hash(state);
    }
}

impl UserDefinedLogicalNodeCore for FeedNode {
    fn name(&self) -> &str {
        "Feed"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        vec![]
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "Feed")
    }

    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, _inputs: Vec<LogicalPlan>) -> Result<Self> {
        Ok(self.clone())
    }
}

/// Plans [`FeedNode`]s as [`FeedExec`]s.
#[derive(Debug)]
pub struct FeedPlanner;

#[async_trait]
impl ExtensionPlanner for FeedPlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        _physical_inputs: &[Arc<dyn ExecutionPlan>],
        _session: &dyn Session,
        _planning_ctx: &PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(feed) = node.as_any().downcast_ref::<FeedNode>() else {
            return Ok(None);
        };
        let exec = FeedExec::new(feed.slot.clone(), feed.input_schema.clone(), feed.projection.clone())?;
        Ok(Some(Arc::new(exec)))
    }
}

/// A stream (or a window TVF over one) as DataFusion's SQL planner sees it.
#[derive(Debug)]
pub struct StreamTable {
    pub schema: SchemaRef,
}

#[async_trait]
impl TableProvider for StreamTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Err(DataFusionError::Internal("streams are read through feeds, never scanned".into()))
    }
}
