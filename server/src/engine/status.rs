//! A query's status as typed data: what `GET /v1/queries/{id}` shows, and
//! what SHOW QUERIES and every other front end read.

use std::time::{Duration, SystemTime};

use datafusion::arrow::datatypes::SchemaRef;
use sluice_runtime::QueryStatus;
use sluice_runtime::metrics::CheckpointReport;

/// A snapshot of one query.
#[derive(Debug, Clone)]
pub struct QueryReport {
    pub id: String,
    pub sql: String,
    /// Running, finished, failed (with the error) or cancelled.
    pub status: QueryStatus,
    pub schema: SchemaRef,
    pub epoch_interval: Duration,
    pub started: SystemTime,
    pub metrics: MetricsReport,
    /// The plan as EXPLAIN shows it.
    pub plan: String,
    pub warnings: Vec<String>,
    pub checkpoint: CheckpointStatus,
}

impl QueryReport {
    /// The error of a failed query.
    pub fn error(&self) -> Option<&str> {
        match &self.status {
            QueryStatus::Failed(error) => Some(error),
            _ => None,
        }
    }
}

/// The query's counters at the moment of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsReport {
    pub rows_in: u64,
    pub rows_out: u64,
    pub epochs: u64,
    pub late_rows_dropped: u64,
    pub malformed_records: u64,
    pub state_rows: u64,
    /// Median and 99th percentile, once any row came out.
    pub latency: Option<Latency>,
    pub last_malformed: Option<String>,
    /// Nanoseconds since the Unix epoch.
    pub watermark: Option<i64>,
    /// Late rows per window start (nanoseconds since the Unix epoch).
    pub late_rows_by_window: Vec<(i64, u64)>,
    /// Subscribers connected now.
    pub subscribers: usize,
    /// Subscribers cut off for falling behind, since the query started.
    pub lagged_subscribers: u64,
    /// A query with `max_lag`: how it sheds (see [`sluice_runtime::shed`]).
    pub shedding: Option<Shedding>,
}

/// A shedding query's figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shedding {
    pub max_lag: Duration,
    /// The share of its input it keeps now, 0 to 1.
    pub rate: f64,
    pub rows_shed: u64,
    /// How far behind its input it was at its last epoch.
    pub lag_ms: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: Option<f64>,
}

/// Whether and how the query checkpoints, and how the last one went.
#[derive(Debug, Clone)]
pub struct CheckpointStatus {
    /// `None` when the query does not checkpoint.
    pub interval: Option<Duration>,
    pub report: CheckpointReport,
}
