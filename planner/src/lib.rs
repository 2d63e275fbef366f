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
//! Modules, in the order a query passes them:
//! - [`error`]: planning errors with line and column.
//! - [`dialect`]: the SQL dialect (`TABLE name` arguments, MATCH_RECOGNIZE).
//! - [`names`]: identifiers and object names as DataFusion normalises them;
//!   table factors built from text.
//! - [`interval`]: `INTERVAL '...' <unit>` literals in nanoseconds, and the
//!   longest interval accepted.
//! - [`statement`]: splits a request into statements and parses each.
//! - [`pattern_clause`]: the `MATCH_RECOGNIZE (...)` clause, read by the
//!   statement layer where sqlparser's falls short.
//! - [`watermark`]: the `WATERMARK FOR col AS ...` clause, parsed and checked.
//! - [`ddl`]: `CREATE STREAM` to a [`SourceSpec`](sluice_runtime::SourceSpec).
//! - [`catalog`]: what the planner asks the server's catalog.
//! - [`options`]: query settings that change the plan.
//! - [`sample`]: `TABLESAMPLE BERNOULLI (p) [REPEATABLE (s)] [ON (key)]`,
//!   a deterministic sample by hash.
//! - [`views`]: views expanded into the queries that read them.
//! - `from_walk`: the one walk over a query's FROM clauses that the rewrites
//!   share.
//! - [`window_tvf`]: rewrites window table functions (`TUMBLE(...)`) and
//!   `FOR SYSTEM_TIME AS OF` into scans of planner-made tables.
//! - [`match_recognize`]: rewrites `MATCH_RECOGNIZE` into a scan of a
//!   planner-made table and compiles the clause into the operator's spec.
//! - [`unnest`]: rewrites `CROSS JOIN UNNEST(...)` into an `unnest` projection.
//! - [`rewritten`]: the planner-made tables those rewrites leave for the
//!   lowering.
//! - [`feed`]: the logical/physical leaf through which stateless DataFusion
//!   plans read batches.
//! - [`query`]: plans a continuous `SELECT`.
//! - [`lower`]: `LogicalPlan` → `StreamPlan`.
//! - `join`: lowers joins (lookup, temporal, window, interval, unbounded).
//! - `top_n`: lowers ROW_NUMBER() over a stream (Top-N).
//!
//! Besides: [`filter`] plans a condition over a query's result rows (a
//! websocket subscriber's `?where=`).

pub mod catalog;
pub mod ddl;
pub mod dialect;
pub mod error;
pub mod feed;
pub mod filter;
mod from_walk;
pub mod interval;
mod join;
pub mod lower;
pub mod match_recognize;
pub mod names;
pub mod options;
pub mod pattern_clause;
pub mod query;
pub mod rewritten;
pub mod sample;
pub mod statement;
mod top_n;
pub mod unnest;
pub mod views;
pub mod watermark;
pub mod window_tvf;

pub use catalog::Catalog;
pub use ddl::{CreateStream, stream_source_spec};
pub use error::{PlanError, PlanErrorKind};
pub use options::PlanOptions;
pub use query::{evaluate_insert, plan_query};
pub use statement::{Statement, parse_statements};
