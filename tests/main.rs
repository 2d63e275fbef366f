//! Sluice's end-to-end suites, one test binary (STYLE.md #14).
//!
//! - `slt`: every `sql/*.slt` file, under several epoch intervals and batch
//!   splits, which must all give the same rows.
//! - `fuzz_corpus`: every fuzz target over its corpus in `fuzz/corpus`.
//! - `http_api`: the real server on port 0 over HTTP and websockets.
//! - `socket_source`: a socket stream fed by a test TCP listener.
//! - `repl`: the REPL client against a live server.
//! - `limits`: SQL size, statements, queries and subscribers over their limits.
//! - `joins`: joins through the server (changelogs, INSERTs, restarts).
//! - `top_n`: ROW_NUMBER() Top-N changelogs over the websocket and the REPL.
//! - `websocket`: queries submitted on the socket, gap frames, heartbeats,
//!   `?where=` filters, the Arrow format and bad subscriptions.
//! - `patterns`: MATCH_RECOGNIZE over an http stream, the websocket and the
//!   REPL.
//! - `auth`: a server with a token over HTTP, websockets, the REPL client and
//!   psql; no listening beyond loopback without one.
//! - `bad_input`: odd statements and out-of-range numbers get errors, never
//!   panics; started queries fail only with the user's errors.
//! - `pgwire`: psql and psycopg over the Postgres wire protocol.
//! - `storage`: event logs under each `--fsync`, compaction, a full disk.
//! - `tls`: HTTPS, websockets over TLS and psql `sslmode=verify-full`;
//!   plain text on the TLS port and TLS on a plain port refused.
//! - `explain`: EXPLAIN ANALYZE, the plan endpoint and per-operator metrics
//!   of a running query.
//! - `crash`: a child server killed with SIGKILL and restarted loses and
//!   duplicates no row.
//! - `restart`: streams and queries survive a restart.
//! - `kafka`: a Kafka source and a transactional sink against a real broker
//!   (tansu), exactly once through a crash; bad brokers and topics.
//! - `console`: the web console in Chromium (Playwright): live rows, chart,
//!   operators, SQL error marks, cancel, token.
//! - `sampling`: sampled aggregates' 95 % intervals cover the exact answer
//!   in about 95 % of seeds; a seed's sample at every parallelism.
//! - `sinks`: file sinks exactly once through a crash, read back by
//!   DataFusion; materialized views (SELECT, snapshot then changes, restart).
//! - `queries`: every ready-made query under `queries/` plans.
//! - `openapi`: real responses and frames validated against `/openapi.json`;
//!   the body limit.
//! - `nexmark`: the Nexmark queries plan and give DataFusion's rows.
//! - `property`: windows and joins on random data equal DataFusion batch SQL.
//! - `pattern_property`: MATCH_RECOGNIZE on random patterns and data equals
//!   a backtracking reference matcher.

mod auth;
mod bad_input;
mod console;
mod crash;
mod explain;
mod fuzz_corpus;
mod http_api;
mod joins;
mod kafka;
mod limits;
mod nexmark;
mod openapi;
mod pattern_property;
mod patterns;
mod pgwire;
mod property;
mod queries;
mod repl;
mod restart;
mod sampling;
mod sinks;
mod slt;
mod socket_source;
mod storage;
mod tls;
mod top_n;
mod websocket;
