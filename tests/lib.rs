//! Helpers for Sluice's end-to-end suites (`main.rs` declares them).
//!
//! [`SluiceDb`] runs sqllogictest files against an in-process [`Engine`]:
//! statements execute as they would over HTTP, and a continuous query over
//! bounded inputs runs to completion and returns all its rows.

pub mod fuzz;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::array_value_to_string;
use sluice::engine::{Settings, StatementResult};
use sluice::{Engine, EngineError};
use sluice_runtime::OutputEvent;
use sqllogictest::{DBOutput, DefaultColumnType};

/// Where the suites' data files live.
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
}

pub fn sql_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sql")
}

/// How long a bounded query may take before the test calls it stuck.
const QUERY_DEADLINE: Duration = Duration::from_secs(120);

/// One way of running an `.slt` file. Results must not depend on it.
#[derive(Debug, Clone, Copy)]
pub struct RunConfig {
    pub epoch_interval: &'static str,
    /// Substituted for `$BATCH_ROWS`: how many records a file source puts
    /// in one batch.
    pub batch_rows: usize,
    /// Each query checkpoints, is stopped abruptly after this many steps
    /// (as by a crash), and is finished by a fresh engine opened on the
    /// same data directory, which restores it from its last checkpoint; a
    /// subscriber resumes after the last `seq` it saw.
    pub crash_after_steps: Option<u64>,
    /// Threads each query's key groups run on; a crash-and-recover run
    /// restores at 1 what it checkpointed at this parallelism.
    pub parallelism: usize,
}

pub const RUN_CONFIGS: [RunConfig; 5] = [
    RunConfig { epoch_interval: "0", batch_rows: 1, crash_after_steps: None, parallelism: 1 },
    RunConfig { epoch_interval: "10ms", batch_rows: 3, crash_after_steps: None, parallelism: 2 },
    RunConfig { epoch_interval: "1s", batch_rows: 8192, crash_after_steps: None, parallelism: 1 },
    RunConfig { epoch_interval: "1s", batch_rows: 8192, crash_after_steps: None, parallelism: 2 },
    RunConfig { epoch_interval: "0", batch_rows: 2, crash_after_steps: Some(6), parallelism: 2 },
];

/// The engine's limits for a run at `parallelism`.
fn limits(parallelism: usize) -> sluice::engine::Limits {
    sluice::engine::Limits { parallelism, ..sluice::engine::Limits::default() }
}

#[derive(Debug)]
pub struct DbError(pub String);

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::error::Error for DbError {}

impl From<EngineError> for DbError {
    fn from(error: EngineError) -> Self {
        DbError(error.to_string())
    }
}

pub struct SluiceDb {
    engine: Arc<Engine>,
    settings: Settings,
    config: RunConfig,
    /// The data directory of a crash-and-recover run (removed on drop).
    data_dir: Option<PathBuf>,
}

impl Drop for SluiceDb {
    fn drop(&mut self) {
        if let Some(dir) = &self.data_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

static NEXT_DATA_DIR: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Queries crash-and-recover runs restored, and the input-log steps they
/// replayed (so a test can check recovery really happened).
pub static RECOVERIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
pub static REPLAYED_STEPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl SluiceDb {
    pub async fn new(config: RunConfig) -> Self {
        let mut settings = Settings::new();
        settings.insert("epoch_interval".into(), config.epoch_interval.into());
        // `collect` subscribes once the query has started (and again after a
        // crash): a fast query may have emitted more than the default 10 000
        // retained rows by then, and the subscriber must still see them all.
        settings.insert("retained_rows".into(), "100000000".into());
        let Some(steps) = config.crash_after_steps else {
            let engine = Engine::new().with_limits(limits(config.parallelism));
            return Self { engine: Arc::new(engine), settings, config, data_dir: None };
        };
        // A checkpoint after every epoch of one event: the crash comes one
        // event after the last checkpoint, which the input log replays.
        settings.insert("checkpoint_interval".into(), "0.001ms".into());
        let number = NEXT_DATA_DIR.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("sluice-slt-{}-{number}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let fsync = sluice_runtime::Fsync::default();
        let mut engine =
            Engine::open_with(&dir, fsync, limits(config.parallelism)).await.expect("a fresh data directory opens");
        engine.halt_queries_after(steps);
        Self { engine: Arc::new(engine), settings, config, data_dir: Some(dir) }
    }

    fn substitute(&self, sql: &str) -> String {
        sql.replace("$DATA", &data_dir().display().to_string())
            .replace("$BATCH_ROWS", &self.config.batch_rows.to_string())
    }

    /// Runs `sql` (a query) to completion and returns its changelog as it
    /// came: one `seq op values` line per row.
    pub async fn changelog(&mut self, sql: &str) -> Result<Vec<String>, DbError> {
        let sql = self.substitute(sql);
        let mut results = self.engine.execute(&sql, &mut self.settings).await?;
        let Some(StatementResult::Query { id, .. }) = results.pop() else {
            return Err(DbError(format!("not a query: {sql}")));
        };
        let (batches, ops, _) = self.collect_changes(&id).await?;
        let mut lines = Vec::new();
        for batch in &batches {
            lines.extend(batch_rows(batch)?);
        }
        Ok(lines
            .into_iter()
            .zip(ops)
            .enumerate()
            .map(|(seq, (row, op))| format!("{seq} {} {}", op.unwrap_or("+"), row.join(",")))
            .collect())
    }

    /// Runs a started query to completion and returns its rows; in a
    /// crash-and-recover run, through the crash.
    pub async fn collect(&mut self, query_id: &str) -> Result<DBOutput<DefaultColumnType>, DbError> {
        let (batches, ops, schema) = self.collect_changes(query_id).await?;
        let types = schema.fields().iter().map(|field| column_type(field.data_type())).collect();
        let mut rows = Vec::new();
        for batch in &batches {
            rows.extend(batch_rows(batch)?);
        }
        if ops.iter().any(Option::is_some) {
            rows = materialize(rows, &ops)?;
        }
        Ok(DBOutput::Rows { types, rows })
    }

    /// A started query's result batches and each row's op, in `seq` order,
    /// through a crash in a crash-and-recover run.
    async fn collect_changes(
        &mut self,
        query_id: &str,
    ) -> Result<(Vec<RecordBatch>, Vec<Option<&'static str>>, datafusion::arrow::datatypes::SchemaRef), DbError> {
        let mut batches = Vec::new();
        let mut ops = Vec::new();
        let mut next_seq = 0;
        let deadline = tokio::time::Instant::now() + QUERY_DEADLINE;
        let mut query = self.engine.query(query_id).ok_or_else(|| DbError(format!("query {query_id} vanished")))?;
        let mut events = query.handle.output.subscribe(0);
        loop {
            let event = tokio::time::timeout_at(deadline, events.recv())
                .await
                .map_err(|_| DbError(format!("query {query_id} did not finish within {QUERY_DEADLINE:?}")))?;
            match event {
                Some(OutputEvent::Failed { message }) if message.contains(sluice_runtime::driver::HALTED) => {
                    // The "crash": a new engine on the same data directory
                    // restores the query; read on after the last row seen.
                    let Some(dir) = &self.data_dir else { return Err(DbError(message)) };
                    drop(events);
                    let engine = Engine::open_with(dir, sluice_runtime::Fsync::default(), limits(1)).await?;
                    self.engine = Arc::new(engine);
                    query = self
                        .engine
                        .query(query_id)
                        .ok_or_else(|| DbError(format!("query {query_id} was not restored")))?;
                    events = query.handle.output.subscribe(next_seq);
                    let report = query.handle.metrics.checkpoints();
                    if report.restored_from.is_none() {
                        return Err(DbError(format!("query {query_id} did not restore a checkpoint: {report:?}")));
                    }
                    RECOVERIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    REPLAYED_STEPS.fetch_add(report.replayed_steps, std::sync::atomic::Ordering::Relaxed);
                }
                Some(OutputEvent::Rows { seq, batch, .. }) => {
                    if seq != next_seq {
                        return Err(DbError(format!("expected row {next_seq}, got row {seq}")));
                    }
                    next_seq += batch.num_rows() as u64;
                    ops.extend(match &batch.ops {
                        Some(batch_ops) => batch_ops.iter().map(|op| Some(op.symbol())).collect::<Vec<_>>(),
                        None => vec![None; batch.num_rows()],
                    });
                    batches.push(batch.rows);
                }
                Some(OutputEvent::Progress { .. }) => {}
                Some(OutputEvent::End) => break,
                Some(OutputEvent::Failed { message }) => return Err(DbError(message)),
                Some(OutputEvent::Shutdown) => return Err(DbError("the engine shut down".into())),
                Some(OutputEvent::Snapshot { .. }) => {
                    return Err(DbError("a snapshot on a subscription from seq 0".into()));
                }
                None => return Err(DbError("subscriber cut off".into())),
            }
        }
        let schema = query.handle.output.schema().clone();
        Ok((batches, ops, schema))
    }
}

/// Applies a changelog in order: the rows of the final result. Which
/// intermediate rows a changelog holds depends on batching; this does not.
fn materialize(rows: Vec<Vec<String>>, ops: &[Option<&str>]) -> Result<Vec<Vec<String>>, DbError> {
    let mut result: Vec<Vec<String>> = Vec::new();
    for (row, op) in rows.into_iter().zip(ops) {
        if *op == Some("-") {
            let position = result
                .iter()
                .position(|existing| *existing == row)
                .ok_or_else(|| DbError(format!("retraction of a row that is not in the result: {row:?}")))?;
            result.remove(position);
        } else {
            result.push(row);
        }
    }
    Ok(result)
}

fn column_type(data_type: &DataType) -> DefaultColumnType {
    match data_type {
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => DefaultColumnType::Integer,
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => DefaultColumnType::Integer,
        DataType::Float16 | DataType::Float32 | DataType::Float64 | DataType::Decimal128(_, _) => {
            DefaultColumnType::FloatingPoint
        }
        _ => DefaultColumnType::Text,
    }
}

fn batch_rows(batch: &RecordBatch) -> Result<Vec<Vec<String>>, DbError> {
    (0..batch.num_rows())
        .map(|row| {
            batch
                .columns()
                .iter()
                .map(|column| {
                    if column.is_null(row) {
                        Ok("NULL".to_string())
                    } else {
                        array_value_to_string(column, row).map_err(|error| DbError(error.to_string()))
                    }
                })
                .collect()
        })
        .collect()
}

#[async_trait::async_trait]
impl sqllogictest::AsyncDB for SluiceDb {
    type Error = DbError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, DbError> {
        // Restored engines do not halt their queries; new ones do.
        if let (Some(steps), Some(engine)) = (self.config.crash_after_steps, Arc::get_mut(&mut self.engine)) {
            engine.halt_queries_after(steps);
        }
        let sql = self.substitute(sql);
        let mut results = self.engine.execute(&sql, &mut self.settings).await?;
        match results.pop() {
            Some(StatementResult::Query { id, .. }) => self.collect(&id).await,
            Some(StatementResult::Rows { schema, batches }) => {
                let mut rows = Vec::new();
                for batch in &batches {
                    rows.extend(batch_rows(batch)?);
                }
                Ok(DBOutput::Rows { types: vec![DefaultColumnType::Text; schema.fields().len()], rows })
            }
            Some(StatementResult::Status { .. }) | None => Ok(DBOutput::StatementComplete(0)),
        }
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "sluice"
    }

    async fn sleep(duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

/// A real server on a free loopback port, with an HTTP client.
pub struct TestServer {
    pub server: sluice::RunningServer,
    pub http: reqwest::Client,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// A server keeping its catalog in `data_dir`.
    pub async fn start_with(data_dir: Option<&Path>) -> Self {
        let server = sluice::start("127.0.0.1:0", false, data_dir).await.expect("server starts on port 0");
        Self { server, http: reqwest::Client::new() }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url())
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.server.address)
    }

    /// `POST /v1/sql`; returns the status code and the JSON body.
    pub async fn sql(&self, sql: &str) -> (u16, serde_json::Value) {
        self.sql_with(sql, serde_json::json!({})).await
    }

    pub async fn sql_with(&self, sql: &str, settings: serde_json::Value) -> (u16, serde_json::Value) {
        let response = self
            .http
            .post(self.url("/v1/sql"))
            .json(&serde_json::json!({"sql": sql.replace("$DATA", &data_dir().display().to_string()), "settings": settings}))
            .send()
            .await
            .expect("request reaches the server");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON body"))
    }

    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let response = self.http.get(self.url(path)).send().await.expect("request reaches the server");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(serde_json::Value::Null))
    }
}

/// The final rows of a changelog's frames, as sorted JSON texts (`ops`
/// applied: a `-` removes the row it names).
pub fn materialized(frames: &[serde_json::Value]) -> Vec<String> {
    let mut result: Vec<String> = Vec::new();
    for frame in frames.iter().filter(|frame| frame["type"] == "rows") {
        for (index, row) in frame["rows"].as_array().expect("rows").iter().enumerate() {
            let row = row.to_string();
            if frame["ops"][index] == "-" {
                let position = result.iter().position(|existing| *existing == row).expect("a retracted row was added");
                result.remove(position);
            } else {
                result.push(row);
            }
        }
    }
    result.sort();
    result
}

/// Reads websocket frames until `end`/`error`, the socket closes, or
/// `row_limit` result rows have arrived; panics after two minutes.
pub async fn read_frames(url: &str, row_limit: usize) -> Vec<serde_json::Value> {
    let mut subscription = sluice::client::Subscription::connect(url).await.expect("websocket connects");
    tokio::time::timeout(QUERY_DEADLINE, subscription.read_until(row_limit))
        .await
        .expect("frames arrive in time")
        .expect("frames are JSON")
}

/// The rows of `rows` frames, each as `[values...]` in `columns` order.
pub fn frame_rows(frames: &[serde_json::Value], columns: &[&str]) -> Vec<Vec<serde_json::Value>> {
    frames
        .iter()
        .filter(|frame| frame["type"] == "rows")
        .flat_map(|frame| frame["rows"].as_array().cloned().unwrap_or_default())
        .map(|row| columns.iter().map(|column| row[*column].clone()).collect())
        .collect()
}

/// The rows of `sql` run by DataFusion batch in `context`, each as strings
/// (NULL as the runner prints it), sorted: what streamed rows are checked
/// against.
pub async fn batch_sql_rows(context: &datafusion::prelude::SessionContext, sql: &str) -> Vec<Vec<String>> {
    use datafusion::arrow::array::Array;
    let batches = context.sql(sql).await.expect("batch SQL plans").collect().await.expect("batch SQL runs");
    let mut rows: Vec<Vec<String>> = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            let cell = |column: &datafusion::arrow::array::ArrayRef| {
                if column.is_null(row) { "NULL".to_string() } else { array_value_to_string(column, row).unwrap() }
            };
            rows.push(batch.columns().iter().map(cell).collect());
        }
    }
    rows.sort();
    rows
}
