//! Sources: where a query's rows come from.
//!
//! Each query reads its own view of every source (DESIGN.md): a file or a
//! generator from its start, a socket over its own connection, and HTTP
//! events posted while it runs. A source runs as a tokio task that decodes
//! records into Arrow batches and sends them to the query's driver over a
//! bounded channel, so a fast source waits for a slow query instead of
//! filling memory. Malformed records are counted on the query and skipped.

pub mod decode;
pub mod file;
pub mod generator;
pub mod http;
pub mod kafka;
pub mod nexmark;
pub(crate) mod random;
pub mod socket;
pub mod timestamp;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use decode::{Format, RecordDecoder};
pub use generator::GeneratorSpec;
pub use http::HttpIngest;
pub use kafka::KafkaSpec;
pub use nexmark::NexmarkSpec;

use crate::metrics::QueryMetrics;

/// Everything the runtime needs to read one stream.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    pub stream: String,
    /// `PRIMARY KEY` columns: a stream with one is a versioned table's
    /// changelog (each row the new version of its key).
    pub primary_key: Vec<String>,
    pub schema: SchemaRef,
    pub event_time: Option<EventTimeSpec>,
    /// A `name AS PROCTIME()` column: filled with the arrival time by the
    /// query, not by the connector.
    pub proctime_column: Option<usize>,
    pub connector: ConnectorSpec,
    /// The columns the query reads (indices into `schema`); `None`: all of
    /// them. Connectors that decode records (file, socket, http) decode
    /// only these and the event-time, primary-key and NOT NULL columns;
    /// the others are NULL.
    pub columns: Option<Vec<usize>>,
    /// Shared by every query reading the stream; shown by `GET /v1/streams`.
    pub status: Arc<SourceStatus>,
    /// `TABLESAMPLE BERNOULLI | SYSTEM` of this scan, applied by the query
    /// as rows arrive.
    pub sample: Option<SourceSample>,
    /// The query sheds this scan's rows under load (`SET max_lag`, see
    /// [`crate::shed`]): the schema's last column is
    /// [`RATE_COLUMN`](crate::shed::RATE_COLUMN), filled by the query.
    pub shed: bool,
}

/// Rows a block of `TABLESAMPLE SYSTEM` holds.
pub const SAMPLE_BLOCK_ROWS: u64 = 1024;

/// A sample of a scan's rows, decided by each row's number in the stream
/// (its identity: the same whatever the batching, parallelism or
/// recovery) and the seed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SourceSample {
    /// Whole blocks of [`SAMPLE_BLOCK_ROWS`] rows (SYSTEM), or rows
    /// (BERNOULLI).
    pub block: bool,
    /// The share kept, 0 to 1.
    pub fraction: f64,
    pub seed: u64,
}

impl SourceSample {
    /// Which of the `rows` rows numbered from `first_row` are kept.
    pub fn keep(&self, first_row: u64, rows: usize) -> datafusion::arrow::array::BooleanArray {
        let bound = (self.fraction * u64::MAX as f64) as u64;
        (0..rows as u64)
            .map(|offset| {
                let row = first_row + offset;
                let unit = if self.block { row / SAMPLE_BLOCK_ROWS } else { row };
                Some(self.fraction >= 1.0 || mix(unit ^ mix(self.seed ^ 0x5a5a_5a5a_5a5a_5a5a)) < bound)
            })
            .collect()
    }
}

/// SplitMix64's finaliser: a well-spread, fixed hash of a number.
fn mix(mut value: u64) -> u64 {
    value = value.wrapping_add(0x9e37_79b9_7f4a_7c15);
    value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    value ^ (value >> 31)
}

/// `WATERMARK FOR <column> AS <column> - <delay>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventTimeSpec {
    pub column: usize,
    /// Nanoseconds.
    pub delay: i64,
}

#[derive(Debug, Clone)]
pub enum ConnectorSpec {
    /// Connects as a client to `host:port` and reads lines.
    Socket { host: String, port: u16, format: Format },
    /// A bounded file, read from the start, `batch_rows` records per batch.
    File { path: PathBuf, format: Format, batch_rows: usize },
    /// Built-in deterministic data.
    Generator(GeneratorSpec),
    /// The Nexmark benchmark's events (one of person, auction, bid).
    Nexmark(NexmarkSpec),
    /// Events POSTed to `/v1/streams/{name}/events`.
    Http(Arc<HttpIngest>),
    /// A Kafka topic's partition (see [`kafka`]).
    Kafka(Box<KafkaSpec>),
}

impl SourceSpec {
    /// The columns connectors decode (all but the PROCTIME() one and a
    /// shed scan's rate).
    pub fn decoded_schema(&self) -> SchemaRef {
        let rate = self.rate_column();
        if self.proctime_column.is_none() && rate.is_none() {
            return self.schema.clone();
        }
        let indices: Vec<usize> = (0..self.schema.fields().len())
            .filter(|index| Some(*index) != self.proctime_column && Some(*index) != rate)
            .collect();
        Arc::new(self.schema.project(&indices).unwrap_or_else(|_| self.schema.as_ref().clone()))
    }

    /// Where a shed scan's rate goes: the last column.
    pub fn rate_column(&self) -> Option<usize> {
        self.shed.then(|| self.schema.fields().len().saturating_sub(1))
    }

    /// This stream's spec for a query that sheds it: the rate column
    /// appended (see [`crate::shed`]).
    pub fn shed(mut self) -> Self {
        if self.shed {
            return self;
        }
        let mut fields: Vec<_> = self.schema.fields().iter().cloned().collect();
        fields.push(Arc::new(datafusion::arrow::datatypes::Field::new(
            crate::shed::RATE_COLUMN,
            datafusion::arrow::datatypes::DataType::Float64,
            false,
        )));
        self.schema =
            Arc::new(datafusion::arrow::datatypes::Schema::new_with_metadata(fields, self.schema.metadata().clone()));
        self.shed = true;
        self
    }

    /// The decoded columns a query needs (indices into
    /// [`decoded_schema`](Self::decoded_schema)), or `None` for all of them.
    pub fn decoded_columns(&self) -> Option<Vec<usize>> {
        let columns = self.columns.as_ref()?;
        let decoded = self.decoded_schema();
        let needed: Vec<usize> = (0..self.schema.fields().len())
            .filter(|index| {
                columns.contains(index)
                    || self.event_time.is_some_and(|event_time| event_time.column == *index)
                    || self.primary_key.contains(self.schema.field(*index).name())
                    || !self.schema.field(*index).is_nullable()
            })
            .filter_map(|index| decoded.index_of(self.schema.field(index).name()).ok())
            .collect();
        (needed.len() < decoded.fields().len()).then_some(needed)
    }

    /// The decoder of this stream's records in `format`.
    pub fn decoder(&self, format: Format) -> RecordDecoder {
        let decoder = RecordDecoder::new(self.decoded_schema(), format);
        match self.decoded_columns() {
            Some(columns) => decoder.reading(&columns),
            None => decoder,
        }
    }

    /// The columns decoded, when not all of them are (shown by EXPLAIN).
    pub fn describe_columns(&self) -> Option<String> {
        if !matches!(self.connector, ConnectorSpec::File { .. } | ConnectorSpec::Socket { .. } | ConnectorSpec::Http(_))
        {
            return None;
        }
        let decoded = self.decoded_schema();
        let names: Vec<&str> =
            self.decoded_columns()?.into_iter().map(|index| decoded.field(index).name().as_str()).collect();
        Some(names.join(", "))
    }

    /// Time comes from the clock (a PROCTIME() column and no watermark).
    pub fn is_processing_time(&self) -> bool {
        matches!((self.event_time, self.proctime_column), (Some(event_time), Some(column)) if event_time.column == column)
    }
}

impl ConnectorSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            ConnectorSpec::Socket { .. } => "socket",
            ConnectorSpec::File { .. } => "file",
            ConnectorSpec::Generator(_) => "generator",
            ConnectorSpec::Nexmark(_) => "nexmark",
            ConnectorSpec::Http(_) => "http",
            ConnectorSpec::Kafka(_) => "kafka",
        }
    }

    /// Bounded sources end; the query then runs to completion.
    pub fn is_bounded(&self) -> bool {
        match self {
            ConnectorSpec::File { .. } => true,
            ConnectorSpec::Generator(spec) => spec.rows.is_some(),
            ConnectorSpec::Nexmark(spec) => spec.events.is_some(),
            ConnectorSpec::Socket { .. } | ConnectorSpec::Http(_) | ConnectorSpec::Kafka(_) => false,
        }
    }
}

/// A human-readable state of a stream's connections ("connected",
/// "retrying in 2s: connection refused", ...).
#[derive(Debug, Default)]
pub struct SourceStatus {
    state: Mutex<String>,
}

impl SourceStatus {
    pub fn new(state: &str) -> Self {
        Self { state: Mutex::new(state.to_string()) }
    }

    pub fn set(&self, state: impl Into<String>) {
        if let Ok(mut current) = self.state.lock() {
            *current = state.into();
        }
    }

    pub fn get(&self) -> String {
        self.state.lock().map(|state| state.clone()).unwrap_or_default()
    }
}

/// What a source task sends to its query's driver.
#[derive(Debug)]
pub enum SourceEvent {
    /// Rows, and the source's position after them (a byte offset in a file
    /// or an event log, a record number for generators; 0 for sources that
    /// cannot be replayed).
    Rows {
        source: usize,
        rows: Option<RecordBatch>,
        position: u64,
        malformed: Malformed,
        /// When the source handed the rows over (for latency figures).
        sent_at: std::time::Instant,
        /// When the first of them was due: for a paced generator its time
        /// in the schedule, for Kafka the record's timestamp, for the
        /// others when they were read. The lag a shedding query measures.
        due_at: std::time::Instant,
        /// The share of the chunk's rows kept ([`crate::shed`]; 1 unless
        /// the query sheds), and how many were dropped.
        rate: f64,
        shed: u64,
    },
    End {
        source: usize,
    },
    Failed {
        source: usize,
        message: String,
    },
}

/// Where a source starts: at `position` (0: the beginning), first cutting
/// its chunks at `boundaries` (positions a replayed input log recorded), so
/// that a recovered query sees exactly the batches it saw before.
#[derive(Debug, Clone, Default)]
pub struct Resume {
    pub position: u64,
    pub boundaries: std::collections::VecDeque<u64>,
    /// The rate each logged chunk was shed at, by its end position (every
    /// boundary of a shedding query has one).
    pub rates: std::collections::BTreeMap<u64, f64>,
}

/// Records of a chunk that could not be decoded, and why (the last reason).
#[derive(Debug, Clone, Default)]
pub struct Malformed {
    pub records: u64,
    pub problem: Option<String>,
}

/// What a source task gets to run with.
#[derive(Clone)]
pub struct SourceContext {
    pub index: usize,
    pub events: mpsc::Sender<SourceEvent>,
    pub metrics: Arc<QueryMetrics>,
    pub cancel: CancellationToken,
    pub resume: Resume,
    /// The query's shedding rate, if it sheds this source.
    pub shed: Option<Arc<crate::shed::ShedRate>>,
}

impl SourceContext {
    /// The rate the chunk ending at `position` is shed at: the logged one
    /// while replaying, else the query's current one (1 if it does not
    /// shed).
    pub fn rate_at(&self, position: u64) -> f64 {
        match (&self.shed, self.resume.rates.get(&position)) {
            (None, _) => 1.0,
            (Some(_), Some(logged)) => *logged,
            (Some(shared), None) => shared.get(),
        }
    }

    /// Sends a decoded chunk: its rows and malformed records, which the
    /// driver counts when it takes the chunk (so a replayed chunk is
    /// counted once). A shedding query's rows are sampled here, by their
    /// place in the chunk.
    async fn send(&self, rows: Option<RecordBatch>, malformed: Malformed, position: u64) -> bool {
        self.send_due(rows, malformed, position, std::time::Instant::now()).await
    }

    /// [`send`](Self::send) for rows that were due at `due_at` (a Kafka
    /// record's timestamp: a backlog on the broker is lag too).
    pub async fn send_due(
        &self,
        rows: Option<RecordBatch>,
        malformed: Malformed,
        position: u64,
        due_at: std::time::Instant,
    ) -> bool {
        if rows.as_ref().is_none_or(|rows| rows.num_rows() == 0) && malformed.records == 0 {
            return true;
        }
        let rate = self.rate_at(position);
        let (rows, shed) = match rows {
            Some(rows) if rate < 1.0 => {
                let keep: datafusion::arrow::array::BooleanArray = (0..rows.num_rows())
                    .map(|offset| Some(crate::shed::keep(crate::shed::chunk_row(position, offset), rate)))
                    .collect();
                match datafusion::arrow::compute::filter_record_batch(&rows, &keep) {
                    Ok(kept) => {
                        let shed = (rows.num_rows() - kept.num_rows()) as u64;
                        (Some(kept), shed)
                    }
                    Err(error) => {
                        self.fail(format!("cannot shed rows: {error}")).await;
                        return false;
                    }
                }
            }
            rows => (rows, 0),
        };
        self.send_event(rows, malformed, position, due_at, rate, shed).await
    }

    async fn send_event(
        &self,
        rows: Option<RecordBatch>,
        malformed: Malformed,
        position: u64,
        due_at: std::time::Instant,
        rate: f64,
        shed: u64,
    ) -> bool {
        let sent_at = std::time::Instant::now();
        let event = SourceEvent::Rows { source: self.index, rows, position, malformed, sent_at, due_at, rate, shed };
        self.events.send(event).await.is_ok()
    }

    /// Decodes `lines` and sends the rows and malformed records.
    pub async fn send_lines(&self, decoder: &RecordDecoder, lines: &[String], position: u64) -> bool {
        match decoder.decode(lines) {
            Ok(decoded) => {
                let malformed = Malformed { records: decoded.malformed as u64, problem: decoded.problem };
                self.send(Some(decoded.rows), malformed, position).await
            }
            Err(error) => {
                let malformed = Malformed { records: lines.len() as u64, problem: Some(error.to_string()) };
                self.send(None, malformed, position).await
            }
        }
    }

    /// Sends a chunk decoded beforehand (see [`decode_chunk`]).
    pub async fn send_chunk(&self, rows: Option<RecordBatch>, malformed: Malformed, position: u64) -> bool {
        self.send(rows, malformed, position).await
    }

    pub async fn end(&self) {
        let _ = self.events.send(SourceEvent::End { source: self.index }).await;
    }

    pub async fn fail(&self, message: String) {
        let _ = self.events.send(SourceEvent::Failed { source: self.index, message }).await;
    }
}

/// A decoded chunk: its rows (if any) and its malformed records.
pub type Chunk = (Option<RecordBatch>, Malformed);

/// Decodes a chunk of whole lines given as bytes (invalid UTF-8 replaced
/// by U+FFFD).
pub fn decode_chunk(decoder: &RecordDecoder, bytes: &[u8]) -> Chunk {
    match decoder.decode_bytes(bytes) {
        Ok(decoded) => (Some(decoded.rows), Malformed { records: decoded.malformed as u64, problem: decoded.problem }),
        // Nothing decoded: every record of the chunk is malformed.
        Err(error) => {
            let records = String::from_utf8_lossy(bytes).lines().filter(|line| !line.trim().is_empty()).count();
            (None, Malformed { records: records as u64, problem: Some(error.to_string()) })
        }
    }
}

/// When numbered records are due, in seconds after record 0 (a constant
/// rate, or a generator's bursts).
pub(crate) trait Schedule {
    /// When record `index` is due.
    fn time_of(&self, index: u64) -> f64;
    /// How many records are due by `seconds`.
    fn due_by(&self, seconds: f64) -> u64;
}

/// `rate` records per second.
pub(crate) struct Steady(pub f64);

impl Schedule for Steady {
    fn time_of(&self, index: u64) -> f64 {
        index as f64 / self.0.max(1e-9)
    }

    fn due_by(&self, seconds: f64) -> u64 {
        // `as` from f64 saturates (a huge rate).
        (seconds * self.0) as u64
    }
}

/// The records of a numbered chunk to build: all of `first..first +
/// count`, or only those a shedding query keeps.
pub(crate) enum Picked<'a> {
    All,
    Only(&'a [u64]),
}

/// Keeps the `picked` records of `rows`, which holds records `first..`.
pub(crate) fn pick_rows(rows: RecordBatch, first: u64, picked: Picked<'_>) -> crate::error::Result<RecordBatch> {
    match picked {
        Picked::All => Ok(rows),
        Picked::Only(records) => {
            let offsets: datafusion::arrow::array::UInt64Array = records.iter().map(|record| record - first).collect();
            Ok(datafusion::arrow::compute::take_record_batch(&rows, &offsets)?)
        }
    }
}

/// Runs a source of numbered records (generators): records
/// `next..next + count` come from `batch`, at most `max_batch` at a time,
/// released on `schedule` (wall-clock time) if `realtime`. Positions are
/// record numbers. A shedding query's records are picked here by number,
/// so a shed record is never built.
pub(crate) async fn run_numbered(
    total: Option<u64>,
    schedule: &(dyn Schedule + Sync),
    realtime: bool,
    max_batch: u64,
    context: SourceContext,
    batch: impl Fn(u64, u64, Picked<'_>) -> crate::error::Result<RecordBatch>,
) {
    let started = std::time::Instant::now();
    let first = context.resume.position;
    // Schedule time at `first`: a resumed source goes on from there.
    let start_time = schedule.time_of(first);
    let mut boundaries = context.resume.boundaries.clone();
    let mut next = first;
    let mut picked = Vec::new();
    loop {
        let remaining = total.map_or(u64::MAX, |total| total.saturating_sub(next));
        if remaining == 0 {
            context.end().await;
            return;
        }
        let (due, rate) = if let Some(boundary) = boundaries.pop_front() {
            (boundary.saturating_sub(next).min(remaining), context.rate_at(boundary))
        } else {
            let rate = context.shed.as_ref().map_or(1.0, |shared| shared.get());
            // Shed chunks span up to 4 times more records (fewer steps),
            // but hold fewer rows: the queue to the driver, a fixed number
            // of chunks, then holds less work, so the lag it adds falls
            // with the rate.
            let most = (max_batch as f64 / rate.max(0.25)) as u64;
            let due = if realtime {
                let due = schedule.due_by(start_time + started.elapsed().as_secs_f64());
                due.saturating_sub(next).min(remaining).min(most)
            } else {
                remaining.min(most)
            };
            (due, rate)
        };
        if due == 0 {
            // Until the next record is due, at the timer's 1 ms resolution:
            // a paced source hands records over within a millisecond of
            // their time, not in 10 ms lumps.
            let next_due = schedule.time_of(next + 1) - start_time;
            let wait = (next_due - started.elapsed().as_secs_f64()).clamp(0.001, 0.010);
            tokio::time::sleep(std::time::Duration::from_secs_f64(wait)).await;
            continue;
        }
        let due_at = if realtime {
            started + std::time::Duration::from_secs_f64((schedule.time_of(next) - start_time).clamp(0.0, 1e9))
        } else {
            std::time::Instant::now()
        };
        let built = if rate < 1.0 {
            picked.clear();
            picked.extend((next..next + due).filter(|record| crate::shed::keep(*record, rate)));
            batch(next, due, Picked::Only(&picked))
        } else {
            batch(next, due, Picked::All)
        };
        match built {
            Ok(rows) => {
                let shed = due - rows.num_rows() as u64;
                // Sent even when every record was shed: the step logs the
                // chunk and its rate.
                if !context.send_event(Some(rows), Malformed::default(), next + due, due_at, rate, shed).await {
                    return;
                }
            }
            Err(error) => {
                context.fail(error.to_string()).await;
                return;
            }
        }
        next += due;
    }
}

/// Starts the task that reads `spec` for one query.
pub fn spawn(spec: &SourceSpec, context: SourceContext) -> tokio::task::JoinHandle<()> {
    let spec = spec.clone();
    // Register with an http stream now, not when the task first runs, so
    // events posted right after the query starts reach it.
    let http_events = match &spec.connector {
        ConnectorSpec::Http(ingest) => Some(ingest.register()),
        _ => None,
    };
    tokio::spawn(async move {
        let cancel = context.cancel.clone();
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = run(spec, http_events, context) => {}
        }
    })
}

async fn run(spec: SourceSpec, http_events: Option<mpsc::Receiver<http::Posted>>, context: SourceContext) {
    match &spec.connector {
        ConnectorSpec::File { path, format, batch_rows } => {
            file::run(path, spec.decoder(format.clone()), *batch_rows, context).await
        }
        ConnectorSpec::Generator(generator) => generator::run(generator, spec.decoded_schema(), context).await,
        ConnectorSpec::Nexmark(nexmark) => nexmark::run(nexmark, spec.decoded_schema(), context).await,
        ConnectorSpec::Socket { host, port, format } => {
            let decoder = spec.decoder(format.clone());
            socket::run(host, *port, decoder, &spec.status, context).await
        }
        ConnectorSpec::Kafka(kafka) => kafka::run(kafka, &spec, context).await,
        ConnectorSpec::Http(ingest) => {
            if let Some(events) = http_events {
                let decoder = spec.decoder(Format::Json);
                http::run(ingest, events, decoder, context).await
            }
        }
    }
}
