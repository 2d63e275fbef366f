//! # sluice-runtime
//!
//! Executes [`StreamPlan`]s: the DAG of operators the planner produces for a
//! continuous query. The runtime knows nothing about SQL text; its operator
//! specs are the contract the planner targets, and its tests build operators
//! by hand.
//!
//! A running query is driven in **epochs** (micro-batches): every epoch the
//! [`driver`] collects what each source produced since the last one, assigns
//! event-time watermarks row by row, pushes the batches through the
//! [`pipeline`] of operators and hands the output to a [`Sink`].
//!
//! Parts:
//! - [`message`]: the one enum that flows between operators (batch,
//!   watermark, barrier, end).
//! - [`watermark`]: the watermark, its tracking per source and the per-row
//!   lateness decision.
//! - [`time`]: reading event times from a column.
//! - [`operator`]: the [`Operator`] trait and the immutable [`OperatorSpec`]s.
//! - [`operators`]: the operators themselves (stateless DataFusion segments,
//!   window assignment, window aggregation, joins, union, limit).
//! - [`plan`]: [`StreamPlan`], the DAG of specs plus its sources.
//! - [`pipeline`]: the running DAG.
//! - [`table`]: static tables (file or `INSERT INTO`) that streams join.
//! - [`source`]: connectors (socket, file, generator, http) and record decoding.
//! - [`output`]: the per-query output log that subscribers read.
//! - [`metrics`]: counters every query exposes.
//! - [`driver`]: the epoch loop of one query.

pub mod checkpoint;
pub mod driver;
pub mod error;
pub mod message;
pub mod metrics;
pub mod operator;
pub mod operators;
pub mod output;
pub mod pipeline;
pub mod plan;
pub mod source;
pub mod state;
pub mod table;
pub mod time;
pub mod watermark;

pub use datafusion;
pub use driver::{QueryHandle, QuerySettings, QueryStatus, spawn_query};
pub use error::{Result, RuntimeError};
pub use message::{Message, Op, StreamBatch, Watermark};
pub use metrics::QueryMetrics;
pub use operator::{Operator, OperatorSpec};
pub use output::{OutputEvent, QueryOutput};
pub use plan::{NodeId, PlanNode, StreamPlan};
pub use source::{ConnectorSpec, Format, SourceSpec};
pub use table::{StaticTable, TableRef};
