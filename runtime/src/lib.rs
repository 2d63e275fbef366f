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
//! [`pipeline`] of operators and hands the result to the query's
//! [`QueryOutput`], which subscribers read.
//!
//! Parts, from what the planner hands over to what runs it:
//! - [`plan`]: [`StreamPlan`], the DAG of specs plus its sources: the whole
//!   contract between planner and runtime.
//! - [`operators`]: the operators (stateless DataFusion segments, window
//!   assignment, window aggregation, joins, union, limit, top-N), each with
//!   its immutable spec, and [`OperatorSpec`], the enum listing them.
//! - [`operator`]: the [`Operator`] trait, the contract of a running operator.
//! - [`message`]: the one enum that flows between operators (batch,
//!   watermark, idle, checkpoint barrier, end).
//! - [`watermark`]: the watermark, its tracking per source and the per-row
//!   lateness decision.
//! - [`time`]: reading event times from a column, durations as nanoseconds.
//! - [`source`]: connectors (socket, file, generator, Nexmark, http) and
//!   record decoding.
//! - [`table`]: static tables (file or `INSERT INTO`) that streams join.
//! - [`pipeline`]: the running DAG, and how checkpoint barriers cross it.
//! - [`settings`]: [`QuerySettings`], how a query runs (never what it computes).
//! - [`driver`]: the epoch loop of one query.
//! - [`cpu`]: the threads pipelines run on, apart from the API's runtime.
//! - [`recovery`]: starting a query from its newest checkpoint and replaying
//!   the steps logged after it.
//! - [`checkpoint`]: checkpoint files, manifests and the input log.
//! - [`state`]: an operator's snapshot ([`state::OperatorState`]) and its
//!   Arrow IPC encoding.
//! - [`output`]: the per-query output log that subscribers read, and a
//!   materialized view's current result.
//! - [`sink`]: files (and next Kafka) written exactly once with the
//!   checkpoints.
//! - [`metrics`]: counters every query exposes.
//! - [`error`]: [`RuntimeError`], whose fault it is (user, external, internal).

pub mod checkpoint;
pub mod cpu;
pub mod driver;
pub mod error;
pub mod materialized;
pub mod message;
pub mod metrics;
pub mod operator;
pub mod operators;
pub mod output;
pub mod pipeline;
pub mod plan;
pub mod recovery;
pub mod settings;
pub mod shed;
pub mod sink;
pub mod source;
pub mod state;
pub mod table;
pub mod time;
pub mod watermark;

pub use checkpoint::Fsync;
pub use datafusion;
pub use driver::{QueryHandle, QueryStatus, spawn_query, spawn_query_subscribed};
pub use error::{Result, RuntimeError};
pub use message::{Message, Op, StreamBatch, Watermark};
pub use metrics::{OperatorMetrics, OperatorReport, QueryMetrics, RecoveryTimes, StateSize};
pub use operator::Operator;
pub use operators::OperatorSpec;
pub use output::{OutputEvent, QueryOutput, SharedEncoding, Subscribed};
pub use plan::{NodeId, PlanNode, StreamPlan};
pub use settings::QuerySettings;
pub use source::{ConnectorSpec, Format, SourceSpec};
pub use table::{StaticTable, TableRef};
