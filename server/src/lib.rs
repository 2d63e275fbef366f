//! # sluice
//!
//! The Sluice server and its clients. The binary (`main.rs`) only parses
//! flags and calls into this library.
//!
//! Parts:
//! - [`engine`]: the catalog of streams and the running queries; executes
//!   SQL statements. Shared by HTTP, the test suites and the demo.
//! - [`catalog`]: declared streams.
//! - [`http`]: the axum router (`POST /v1/sql`, queries, streams, metrics).
//! - [`ws`]: websocket subscriptions to a query's results.
//! - [`json`]: Arrow batches and schemas as JSON.
//! - [`persist`]: the catalog on disk, restored at start-up.
//! - [`error`]: API errors and their HTTP mapping.
//! - [`repl`]: the psql-like client of the HTTP/websocket API.
//! - [`demo`]: the built-in demo streams and query.
//! - [`bench`]: the throughput harness behind `sluice bench`.
//! - [`server`]: binding, serving and shutting down.

pub mod bench;
pub mod catalog;
pub mod demo;
pub mod engine;
pub mod error;
pub mod http;
pub mod json;
pub mod nexmark;
pub mod persist;
pub mod repl;
pub mod server;
pub mod ws;

pub use engine::{Engine, StatementResult};
pub use error::ApiError;
pub use server::{RunningServer, start};
