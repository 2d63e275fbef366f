//! # sluice-planner
//!
//! Turns streaming SQL text into what the runtime runs. Parsing uses
//! sqlparser (through DataFusion's re-export) with a [`dialect`] that adds
//! the streaming syntax and a thin [`statement`] layer for Sluice's own
//! statements (`CREATE STREAM`, `SHOW STREAMS`, ...). Relational planning is
//! DataFusion's; [`query`] lowers its `LogicalPlan` into a
//! [`StreamPlan`](sluice_runtime::StreamPlan) once, when the query is
//! submitted.
//!
//! Parts:
//! - [`error`]: planning errors with line and column.
//! - [`dialect`]: the SQL dialect (`TABLE name` arguments, MATCH_RECOGNIZE).
//! - [`statement`]: splits a request into statements and parses each.
//! - [`ddl`]: `CREATE STREAM` to a [`SourceSpec`](sluice_runtime::SourceSpec).
//! - [`window_tvf`]: rewrites window table functions (`TUMBLE(...)`).
//! - [`unnest`]: rewrites `CROSS JOIN UNNEST(...)` into an `unnest` projection.
//! - [`feed`]: the logical/physical leaf through which stateless DataFusion
//!   plans read batches.
//! - [`query`]: plans a continuous `SELECT`.
//! - [`lower`]: `LogicalPlan` → `StreamPlan`; `join` lowers joins, `top_n`
//!   ROW_NUMBER() over a stream.

pub mod catalog;
pub mod ddl;
pub mod dialect;
pub mod error;
pub mod feed;
mod from_walk;
pub mod interval;
mod join;
pub mod lower;
pub mod names;
pub mod options;
pub mod query;
pub mod rewritten;
pub mod statement;
mod top_n;
pub mod unnest;
pub mod watermark;
pub mod window_tvf;

pub use catalog::Catalog;
pub use ddl::{CreateStream, stream_source_spec};
pub use error::{PlanError, PlanErrorKind};
pub use options::PlanOptions;
pub use query::{evaluate_insert, plan_query};
pub use statement::{Statement, parse_statements};
