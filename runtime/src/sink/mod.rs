//! Sinks: where a query's results go besides its subscribers, exactly once
//! with the query's checkpoints.
//!
//! # Protocol (two-phase commit, as Flink's sinks do)
//!
//! ```text
//!   epoch:       write(rows)              rows in seq order, not yet visible
//!   barrier n:   prepare(n)               all rows so far durable, still invisible
//!   checkpoint n durable: commit(n)       what n and earlier prepared becomes visible
//!   start:       open(restored)           restored from checkpoint n: commit what
//!                                         n and earlier prepared, discard the rest
//!                                         (the query emits those rows again,
//!                                         identically); fresh: discard all
//!   end of input / no checkpoints: finish()   everything visible
//! ```
//!
//! A query's output after recovery is identical to a run without the
//! crash (same rows, same `seq`s), so discarding what no durable checkpoint
//! covers and writing it again gives every row once.
//!
//! The sink runs on the query's driver: a slow target slows the query
//! (backpressure) rather than dropping rows, unlike a subscriber.

use std::sync::{Arc, Mutex};

use datafusion::arrow::datatypes::SchemaRef;

use crate::error::Result;
use crate::message::StreamBatch;

pub mod file;
pub mod kafka;

pub use file::{FileFormat, FileSinkSpec};
pub use kafka::{KafkaSinkSpec, SinkEnvelope};

/// Where a sink writes.
#[derive(Debug, Clone)]
pub enum SinkSpec {
    File(FileSinkSpec),
    Kafka(KafkaSinkSpec),
}

impl SinkSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::File(_) => "file",
            Self::Kafka(_) => "kafka",
        }
    }

    /// Where it writes, for SHOW SINKS.
    pub fn target(&self) -> String {
        match self {
            Self::File(spec) => format!("{} ({})", spec.path.display(), spec.format.name()),
            Self::Kafka(spec) => format!(
                "{} on {} ({}, {})",
                spec.topic,
                spec.brokers,
                spec.envelope.name(),
                if spec.exactly_once { "exactly once" } else { "at least once" }
            ),
        }
    }
}

/// What a sink did, for the query's status and SHOW SINKS.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct SinkReport {
    /// Rows handed to the sink.
    pub rows_written: u64,
    /// Rows made visible (committed).
    pub rows_committed: u64,
    /// Files or transactions committed.
    pub commits: u64,
    /// The newest error, if writing failed.
    pub last_error: Option<String>,
}

/// The report a running sink keeps up to date.
pub type SharedSinkReport = Arc<Mutex<SinkReport>>;

/// One sink of a running query (see the module's protocol).
pub trait Sink: Send {
    /// Settles what an earlier run left: `restored` is the checkpoint the
    /// query restarted from, and `next_seq` the seq of the first row it
    /// will emit; `checkpoints` says whether the query takes any (without,
    /// [`prepare`](Sink::prepare) is never called).
    fn open(&mut self, restored: Option<u64>, next_seq: u64, checkpoints: bool) -> Result<()>;
    /// Rows of the result, in seq order; `seq` is the first row's.
    fn write(&mut self, seq: u64, batch: &StreamBatch) -> Result<()>;
    /// At checkpoint `id`'s barrier: everything written so far belongs to
    /// it, durable but not visible.
    fn prepare(&mut self, id: u64) -> Result<()>;
    /// Checkpoint `id` is durable: what it (and earlier ones) prepared
    /// becomes visible.
    fn commit(&mut self, id: u64) -> Result<()>;
    /// The query ended, or keeps no checkpoints: everything becomes
    /// visible.
    fn finish(&mut self) -> Result<()>;
}

/// The sink `spec` describes, for results of `schema`.
pub fn create(
    spec: &SinkSpec,
    schema: &SchemaRef,
    append_only: bool,
    report: SharedSinkReport,
) -> Result<Box<dyn Sink>> {
    Ok(match spec {
        SinkSpec::File(spec) => Box::new(file::FileSink::new(spec.clone(), schema.clone(), append_only, report)?),
        SinkSpec::Kafka(spec) => Box::new(kafka::KafkaSink::new(spec.clone(), schema.clone(), append_only, report)?),
    })
}

/// Updates a shared report.
pub fn update(report: &SharedSinkReport, change: impl FnOnce(&mut SinkReport)) {
    if let Ok(mut report) = report.lock() {
        change(&mut report);
    }
}
