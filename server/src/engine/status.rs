//! A query's status as typed data: what `GET /v1/queries/{id}` shows, and
//! what SHOW QUERIES and every other front end read.

use std::time::{Duration, SystemTime};

use datafusion::arrow::datatypes::SchemaRef;
use sluice_runtime::driver::displayed_watermark;
use sluice_runtime::metrics::CheckpointReport;
use sluice_runtime::{QueryMetrics, QueryStatus};

use crate::engine::queries::RunningQuery;

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

impl RunningQuery {
    pub fn report(&self) -> QueryReport {
        let metrics = &self.handle.metrics;
        QueryReport {
            id: self.id.clone(),
            sql: self.sql.clone(),
            status: self.handle.status(),
            schema: self.schema.clone(),
            epoch_interval: self.settings.epoch_interval,
            started: self.started,
            metrics: MetricsReport {
                rows_in: QueryMetrics::get(&metrics.rows_in),
                rows_out: QueryMetrics::get(&metrics.rows_out),
                epochs: QueryMetrics::get(&metrics.epochs),
                late_rows_dropped: QueryMetrics::get(&metrics.late_rows_dropped),
                malformed_records: QueryMetrics::get(&metrics.malformed_records),
                state_rows: QueryMetrics::get(&metrics.state_rows),
                latency: metrics.latency_ms(0.5).map(|p50_ms| Latency { p50_ms, p99_ms: metrics.latency_ms(0.99) }),
                last_malformed: metrics.last_malformed(),
                watermark: displayed_watermark(metrics),
                late_rows_by_window: metrics.late_by_window(),
            },
            plan: self.plan.clone(),
            warnings: self.warnings.clone(),
            checkpoint: CheckpointStatus {
                interval: self.settings.checkpoint.as_ref().map(|config| config.interval),
                report: metrics.checkpoints(),
            },
        }
    }
}
