//! # sluice
//!
//! The Sluice server and its clients. The binary (`main.rs`) only parses
//! flags and calls into this library.
//!
//! The engine returns typed data (Arrow schemas and batches, typed
//! statement outcomes and query reports, errors with a code); HTTP, the
//! websocket and the REPL are peers that only render it.
//!
//! Parts:
//! - [`engine`]: the catalog of streams and the running queries; executes
//!   SQL statements. Shared by HTTP, the test suites and the demo.
//! - [`catalog`]: declared streams and static tables.
//! - [`settings`]: per-request settings and their checked reading.
//! - [`error`]: engine errors with a code enum (no front end's types).
//! - [`sql_type`]: SQL names of Arrow types.
//! - [`persist`]: the catalog on disk, restored at start-up.
//! - [`http`]: the axum router (`POST /v1/sql`, queries, streams, metrics).
//! - [`ws`]: websocket subscriptions to a query's results.
//! - [`pgwire`]: the Postgres wire protocol endpoint (psql, drivers).
//! - [`state`]: the state HTTP and websocket handlers share.
//! - [`api_error`]: engine errors as HTTP statuses and JSON bodies.
//! - [`json`]: the engine's typed results as JSON.
//! - [`numbered`]: a subscription's rows with their `seq` and `op` columns.
//! - [`client`]: a websocket subscription client (the REPL's and the tests').
//! - [`repl`]: the psql-like client of the HTTP/websocket API.
//! - [`demo`]: the built-in demo streams and query.
//! - [`bench`]: the throughput harness behind `sluice bench`.
//! - [`nexmark`]: the Nexmark benchmark's streams, queries and harness.
//! - [`server`]: binding, serving and shutting down.

pub mod api_error;
pub mod bench;
pub mod catalog;
pub mod client;
pub mod console;
pub mod demo;
pub mod engine;
pub mod error;
pub mod http;
pub mod json;
pub mod listen;
pub mod nexmark;
pub mod numbered;
pub mod persist;
pub mod pgwire;
pub mod repl;
pub mod server;
pub mod settings;
pub mod shed_bench;
pub mod sql_type;
pub mod state;
pub mod tls;
pub mod ws;

pub use api_error::ApiError;
pub use engine::{Engine, QueryReport, StatementResult};
pub use error::{EngineError, ErrorCode};
pub use server::{Options, RunningServer, start, start_with, start_with_pg};
