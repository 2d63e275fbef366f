//! Nexmark: the three streams over the built-in generator, and `sluice bench
//! nexmark`, which runs the queries of `queries/nexmark/` in-process over N
//! generated events and reports throughput, CPU, memory and the ratio to
//! DataFusion batch SQL over the same events.

/// The DDL of the Nexmark streams (watermark 4 s, as in the Flink DDL):
/// `person`, `auction`, `bid`, and `bid_proctime` (bids with a
/// processing-time column, for q12). `events`: bounded when set.
pub fn streams(events: Option<u64>, event_rate: f64, realtime: bool) -> String {
    let bounded = events.map(|events| format!(", events = '{events}'")).unwrap_or_default();
    let options = format!("event_rate = '{event_rate}', realtime = '{realtime}'{bounded}");
    format!(
        "CREATE STREAM IF NOT EXISTS person (
           id BIGINT, name VARCHAR, email_address VARCHAR, credit_card VARCHAR, city VARCHAR, state VARCHAR,
           date_time TIMESTAMP, extra VARCHAR,
           WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
         ) WITH (connector = 'nexmark', table = 'person', {options});
         CREATE STREAM IF NOT EXISTS auction (
           id BIGINT, item_name VARCHAR, description VARCHAR, initial_bid BIGINT, reserve BIGINT,
           date_time TIMESTAMP, expires TIMESTAMP, seller BIGINT, category BIGINT, extra VARCHAR,
           WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
         ) WITH (connector = 'nexmark', table = 'auction', {options});
         CREATE STREAM IF NOT EXISTS bid (
           auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, date_time TIMESTAMP, extra VARCHAR,
           WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
         ) WITH (connector = 'nexmark', table = 'bid', {options});
         CREATE STREAM IF NOT EXISTS bid_proctime (
           auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, date_time TIMESTAMP, extra VARCHAR,
           p_time AS PROCTIME()
         ) WITH (connector = 'nexmark', table = 'bid', {options});
         CREATE TABLE IF NOT EXISTS side_input (key BIGINT, value VARCHAR, PRIMARY KEY (key));"
    )
}

/// The query files, by name (`q0` ... `q22`).
pub fn queries() -> Vec<(String, String)> {
    let mut queries: Vec<(String, String)> =
        QUERY_FILES.iter().map(|(name, text)| (name.to_string(), text.to_string())).collect();
    queries.sort_by_key(|(name, _)| name[1..].parse::<u32>().unwrap_or(u32::MAX));
    queries
}

macro_rules! query_files {
    ($($name:literal),*) => {
        const QUERY_FILES: &[(&str, &str)] =
            &[$(($name, include_str!(concat!("../../queries/nexmark/", $name, ".sql")))),*];
    };
}

query_files!(
    "q0", "q1", "q2", "q3", "q4", "q5", "q6", "q7", "q8", "q9", "q10", "q11", "q12", "q13", "q14", "q15", "q16", "q17",
    "q18", "q19", "q20", "q21", "q22"
);

macro_rules! batch_files {
    ($($name:literal),*) => {
        const BATCH_FILES: &[(&str, &str)] =
            &[$(($name, include_str!(concat!("../../queries/nexmark/batch/", $name, ".sql")))),*];
    };
}

// Windowed queries written for DataFusion batch (`date_bin`, `unnest` of
// HOP's window starts, gaps and islands for SESSION).
batch_files!("q5", "q7", "q8", "q11");

/// The SQL DataFusion batch runs for query `name` (whose streaming text is
/// `sql`): its batch file, or the same SQL where that has the same
/// meaning; `None` where there is no batch equivalent (processing time,
/// temporal joins).
pub fn batch_statement(name: &str, sql: &str) -> Option<String> {
    if let Some((_, text)) = BATCH_FILES.iter().find(|(query, _)| *query == name) {
        return Some(statement(text));
    }
    let lowered = sql.to_ascii_lowercase();
    let streaming_only = ["table(", "system_time", "bid_proctime", "side_input"];
    (!streaming_only.iter().any(|construct| lowered.contains(construct))).then(|| sql.to_string())
}

/// The statement of a query file (its header comment dropped).
pub fn statement(text: &str) -> String {
    text.lines().filter(|line| !line.trim_start().starts_with("--")).collect::<Vec<_>>().join("\n")
}

/// One query's figures.
#[derive(Debug, Clone)]
pub struct NexmarkResult {
    pub query: String,
    pub events: u64,
    pub seconds: f64,
    pub rows_out: u64,
    /// CPU time of the process over wall time while the query ran.
    pub cores_used: f64,
    pub peak_rss_bytes: Option<u64>,
    /// Events per second of DataFusion batch SQL over the same events, when
    /// the query has a batch equivalent (the same SQL, or for windowed
    /// queries the file of `queries/nexmark/batch/`).
    pub batch_events_per_sec: Option<f64>,
    /// The rows the batch equivalent returned (equal to the streaming
    /// query's final result).
    pub batch_rows: Option<u64>,
    /// Latency in a paced run.
    pub latency: Option<Latency>,
}

/// p50 and p99 milliseconds from an event's release to the emission of its
/// results, in a paced run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub basis: LatencyBasis,
}

/// How a result row is matched with the event it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatencyBasis {
    /// The row carries the event's `date_time`, which is its release time.
    EventTime,
    /// The row is timed from the oldest event of the epoch that produced it
    /// (the query's `latency_ms` metric): an upper bound.
    Epoch,
}

impl LatencyBasis {
    pub fn name(self) -> &'static str {
        match self {
            LatencyBasis::EventTime => "date_time",
            LatencyBasis::Epoch => "epoch",
        }
    }
}

impl NexmarkResult {
    pub fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.seconds.max(1e-9)
    }

    pub fn events_per_sec_per_core(&self) -> f64 {
        self.events_per_sec() / self.cores_used.max(1.0)
    }

    pub fn batch_ratio(&self) -> Option<f64> {
        self.batch_events_per_sec.map(|batch| self.events_per_sec() / batch)
    }

    pub fn json_line(&self) -> String {
        serde_json::json!({
            "query": self.query,
            "events": self.events,
            "events_per_sec": self.events_per_sec().round(),
            "events_per_sec_per_core": self.events_per_sec_per_core().round(),
            "peak_rss_bytes": self.peak_rss_bytes,
            "p50_ms": self.latency.map(|latency| latency.p50_ms),
            "p99_ms": self.latency.map(|latency| latency.p99_ms),
            "latency_basis": self.latency.map(|latency| latency.basis.name()),
            "batch_ratio": self.batch_ratio().map(|ratio| (ratio * 1000.0).round() / 1000.0),
            "rows_out": self.rows_out,
            "batch_rows": self.batch_rows,
            "seconds": self.seconds,
        })
        .to_string()
    }
}

/// Events per second of event time in the harness's data.
pub const BENCH_EVENT_RATE: f64 = 10_000.0;

/// Where the harness's bids come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BidSource {
    /// The in-process generator.
    Generator,
    /// A CSV file of the same bids (written once, then read by both sides).
    Csv,
    /// A JSON-lines file of the same bids.
    Json,
}

impl BidSource {
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "generator" => Some(BidSource::Generator),
            "csv" => Some(BidSource::Csv),
            "json" | "jsonl" => Some(BidSource::Json),
            _ => None,
        }
    }
}

/// Whether `sql` reads the person or auction stream (file mode has bids only).
fn reads_people_or_auctions(sql: &str) -> bool {
    let words: Vec<String> = sql
        .to_ascii_lowercase()
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| !word.is_empty())
        .map(String::from)
        .collect();
    words
        .windows(2)
        .any(|pair| matches!(pair[0].as_str(), "from" | "join") && matches!(pair[1].as_str(), "person" | "auction"))
        || sql.contains(", auction")
        || sql.contains(", person")
}

/// The Arrow schema of a Nexmark table's columns, as the DDL declares them.
fn table_schema(table: sluice_runtime::source::nexmark::NexmarkTable) -> datafusion::arrow::datatypes::SchemaRef {
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    let fields: Vec<Field> = table
        .columns()
        .iter()
        .map(|column| {
            let data_type = match *column {
                "date_time" | "expires" => DataType::Timestamp(TimeUnit::Nanosecond, None),
                "id" | "initial_bid" | "reserve" | "seller" | "category" | "auction" | "bidder" | "price" => {
                    DataType::Int64
                }
                _ => DataType::Utf8,
            };
            Field::new(*column, data_type, true)
        })
        .collect();
    std::sync::Arc::new(Schema::new(fields))
}

/// The bid schema of files and batch tables.
fn bid_schema() -> datafusion::arrow::datatypes::SchemaRef {
    table_schema(sluice_runtime::source::nexmark::NexmarkTable::Bid)
}

/// The bids of the first `events` events in a file, written once per size
/// and format.
fn bid_file(events: u64, source: BidSource) -> Result<std::path::PathBuf, String> {
    use sluice_runtime::source::nexmark::{NexmarkSpec, NexmarkTable};
    let extension = if source == BidSource::Csv { "csv" } else { "jsonl" };
    let path = std::env::temp_dir().join(format!("sluice-nexmark-bids-{events}.{extension}"));
    if path.exists() {
        return Ok(path);
    }
    let spec = NexmarkSpec {
        table: NexmarkTable::Bid,
        seed: 0,
        event_rate: BENCH_EVENT_RATE,
        events: Some(events),
        realtime: false,
        start: sluice_runtime::source::generator::DEFAULT_START_NANOS,
    };
    let partial = path.with_extension("partial");
    let file = std::fs::File::create(&partial).map_err(|error| error.to_string())?;
    let mut output = std::io::BufWriter::new(file);
    let schema = bid_schema();
    let mut csv = (source == BidSource::Csv).then(|| datafusion::arrow::csv::WriterBuilder::new().with_header(true));
    let mut csv_writer = csv.take().map(|builder| builder.build(&mut output));
    let mut json_rows = Vec::new();
    let mut first = 0;
    while first < events {
        let count = (events - first).min(65_536);
        let rows = spec.batch(&schema, first, count).map_err(|error| error.to_string())?;
        match &mut csv_writer {
            Some(writer) => writer.write(&rows).map_err(|error| error.to_string())?,
            None => json_rows.push(rows),
        }
        first += count;
    }
    drop(csv_writer);
    if source == BidSource::Json {
        let mut writer = datafusion::arrow::json::LineDelimitedWriter::new(&mut output);
        for rows in &json_rows {
            writer.write(rows).map_err(|error| error.to_string())?;
        }
        writer.finish().map_err(|error| error.to_string())?;
    }
    drop(output);
    std::fs::rename(&partial, &path).map_err(|error| error.to_string())?;
    Ok(path)
}

/// Runs Nexmark query `name` over `events` generated events.
pub async fn run(name: &str, events: u64) -> Result<NexmarkResult, crate::error::EngineError> {
    run_with(name, events, BidSource::Generator).await
}

/// Runs Nexmark query `name` over `events` events, its bids from `source`.
pub async fn run_with(name: &str, events: u64, source: BidSource) -> Result<NexmarkResult, crate::error::EngineError> {
    run_measured(name, events, source, 1, true).await
}

/// [`run_with`], the fastest of `runs` runs of the query and of its batch
/// counterpart (the machine's noise only ever slows a run down).
pub async fn run_best_of(
    name: &str,
    events: u64,
    source: BidSource,
    runs: usize,
) -> Result<NexmarkResult, crate::error::EngineError> {
    run_measured(name, events, source, runs, true).await
}

/// Runs q0 once, streaming only, so that the queries measured after it
/// run in a process whose heap and thread pools are warm.
pub async fn warm_up(events: u64, source: BidSource) -> Result<(), crate::error::EngineError> {
    run_measured("q0", events, source, 1, false).await.map(|_| ())
}

async fn run_measured(
    name: &str,
    events: u64,
    source: BidSource,
    runs: usize,
    compare: bool,
) -> Result<NexmarkResult, crate::error::EngineError> {
    use crate::engine::Engine;
    use crate::error::EngineError;

    let (_, text) = queries()
        .into_iter()
        .find(|(query, _)| query == name)
        .ok_or_else(|| EngineError::invalid(format!("unknown Nexmark query {name:?}: q0 ... q22")))?;
    let sql = statement(&text);
    let engine = Engine::new();
    let mut settings = crate::bench::base_settings();
    settings.insert("retained_rows".into(), "0".into());
    engine.execute(&streams(Some(events), BENCH_EVENT_RATE, false), &mut settings).await?;
    engine.execute(&side_input_rows(), &mut settings).await?;
    let file = match source {
        BidSource::Generator => None,
        _ if reads_people_or_auctions(&sql) => {
            return Err(EngineError::invalid("the file runs read bids only; this query reads more"));
        }
        _ => {
            let path = bid_file(events, source).map_err(EngineError::internal)?;
            let format = if source == BidSource::Csv { "format = 'csv', header = 'true'" } else { "format = 'json'" };
            let ddl = format!(
                "DROP STREAM bid;
                 CREATE STREAM bid (
                   auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, date_time TIMESTAMP,
                   extra VARCHAR, WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
                 ) WITH (connector = 'file', path = '{}', {format});",
                path.display()
            );
            engine.execute(&ddl, &mut settings).await?;
            Some(path)
        }
    };
    let events = match &file {
        // A file run counts the bids it reads.
        Some(_) => (0..events).filter(|index| index % 50 > 3).count() as u64,
        None => events,
    };
    // The fastest of `runs` runs on each side.
    let mut best: Option<StreamRun> = None;
    for _ in 0..runs.max(1) {
        let run = stream_run(&engine, &sql, &mut settings).await?;
        if best.as_ref().is_none_or(|best| run.seconds < best.seconds) {
            best = Some(run);
        }
    }
    let Some(best) = best else { return Err(EngineError::internal("the query did not run")) };
    drop(engine);
    let mut batch_events_per_sec: Option<f64> = None;
    let mut batch_rows = None;
    let batch_sql = batch_statement(name, &sql).filter(|_| compare);
    for _ in 0..if batch_sql.is_some() { runs.max(1) } else { 0 } {
        let Some(batch_sql) = &batch_sql else { break };
        let run = match (&file, source) {
            (Some(path), BidSource::Csv) => batch_file_run(batch_sql, path, events, true).await,
            (Some(path), _) => batch_file_run(batch_sql, path, events, false).await,
            (None, _) => batch_run(batch_sql, events).await,
        };
        let run = run.map_err(|error| EngineError::internal(format!("{name} in DataFusion batch: {error}")))?;
        batch_rows = Some(run.1);
        batch_events_per_sec = Some(batch_events_per_sec.map_or(run.0, |best: f64| best.max(run.0)));
    }
    let latency = match source {
        _ if !compare => None,
        BidSource::Generator => latency(&sql).await?,
        BidSource::Csv | BidSource::Json => best.latency,
    };
    Ok(NexmarkResult {
        query: name.to_string(),
        events,
        seconds: best.seconds,
        rows_out: best.rows_out,
        cores_used: best.cores_used,
        peak_rss_bytes: best.peak_rss_bytes,
        batch_events_per_sec,
        batch_rows,
        latency,
    })
}

/// One streaming run of a Nexmark query.
struct StreamRun {
    seconds: f64,
    rows_out: u64,
    cores_used: f64,
    peak_rss_bytes: Option<u64>,
    /// From the query's metric (epoch basis).
    latency: Option<Latency>,
}

/// Runs `sql` on `engine` to completion.
async fn stream_run(
    engine: &crate::engine::Engine,
    sql: &str,
    settings: &mut crate::engine::Settings,
) -> Result<StreamRun, crate::error::EngineError> {
    use crate::engine::StatementResult;
    use crate::error::EngineError;
    use sluice_runtime::QueryMetrics;

    reset_peak_rss();
    let cpu_before = cpu_seconds();
    let started = std::time::Instant::now();
    let results = engine.execute(sql, settings).await?;
    let Some(StatementResult::Query { id: query_id, .. }) = results.last() else {
        return Err(EngineError::internal("the query did not start"));
    };
    let running = engine.query(query_id).ok_or_else(|| EngineError::internal("the query vanished"))?;
    crate::bench::wait_until_finished(&running, |_| {}).await?;
    let seconds = started.elapsed().as_secs_f64();
    let cores_used = match (cpu_before, cpu_seconds()) {
        (Some(before), Some(after)) => (after - before) / seconds.max(1e-9),
        _ => 1.0,
    };
    let rows_out = QueryMetrics::get(&running.handle.metrics.rows_out);
    let peak_rss_bytes = peak_rss();
    // A file is read as fast as it decodes: its rows are timed within the
    // measured run, from the source handing them over (epoch basis).
    let round = |value: f64| (value * 100.0).round() / 100.0;
    let metrics = &running.handle.metrics;
    let latency = match (metrics.latency_ms(0.5), metrics.latency_ms(0.99)) {
        (Some(p50), Some(p99)) => Some(Latency { p50_ms: round(p50), p99_ms: round(p99), basis: LatencyBasis::Epoch }),
        _ => None,
    };
    Ok(StreamRun { seconds, rows_out, cores_used, peak_rss_bytes, latency })
}

/// Events per second of the paced latency run, and its length.
pub const LATENCY_EVENT_RATE: f64 = 100_000.0;
const LATENCY_SECONDS: f64 = 5.0;

/// Runs `sql` over events released in real time at [`LATENCY_EVENT_RATE`]
/// (event time advancing with the clock) and measures, for each result row
/// with a `date_time` column, how long after that event's release the row
/// was emitted; for other results, how long after the oldest event of the
/// epoch that produced them (the query's `latency_ms` metric). `None` when
/// the query gave no result.
async fn latency(sql: &str) -> Result<Option<Latency>, crate::error::EngineError> {
    use crate::engine::{Engine, StatementResult};
    use crate::error::EngineError;
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::TimestampNanosecondType;
    use sluice_runtime::OutputEvent;

    let engine = Engine::new();
    let mut settings = crate::bench::base_settings();
    settings.insert("retained_rows".into(), "0".into());
    let events = (LATENCY_EVENT_RATE * LATENCY_SECONDS) as u64;
    engine.execute(&streams(Some(events), LATENCY_EVENT_RATE, true), &mut settings).await?;
    engine.execute(&side_input_rows(), &mut settings).await?;
    let released = std::time::Instant::now();
    let results = engine.execute(sql, &mut settings).await?;
    let Some(StatementResult::Query { id: query_id, .. }) = results.last() else {
        return Err(EngineError::internal("the query did not start"));
    };
    let running = engine.query(query_id).ok_or_else(|| EngineError::internal("the query vanished"))?;
    // Append-only rows with a date_time are timed from that event; other
    // rows (updating results, whose retractions carry old rows, and rows
    // without the column) by the query's epoch-based metric.
    let schema = running.handle.output.schema();
    let column = schema.index_of("date_time").ok().filter(|column| {
        matches!(
            schema.field(*column).data_type(),
            datafusion::arrow::datatypes::DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Nanosecond, None)
        )
    });
    let start = sluice_runtime::source::generator::DEFAULT_START_NANOS;
    let mut output = running.handle.output.subscribe(0);
    let mut latencies = Vec::new();
    let mut updating = false;
    while let Some(event) = output.recv().await {
        match event {
            OutputEvent::Rows { batch, .. } => {
                updating |= batch.ops.is_some();
                let Some(column) = column.filter(|_| !updating) else { continue };
                let now = released.elapsed().as_secs_f64() * 1000.0;
                let times = batch.rows.column(column).as_primitive::<TimestampNanosecondType>();
                for time in times.iter().flatten() {
                    latencies.push(now - (time - start) as f64 / 1e6);
                }
            }
            OutputEvent::Progress { .. } => {}
            _ => break,
        }
    }
    let round = |value: f64| (value.max(0.0) * 100.0).round() / 100.0;
    if latencies.is_empty() || updating {
        let metrics = &running.handle.metrics;
        let (Some(p50), Some(p99)) = (metrics.latency_ms(0.5), metrics.latency_ms(0.99)) else {
            return Ok(None);
        };
        return Ok(Some(Latency { p50_ms: round(p50), p99_ms: round(p99), basis: LatencyBasis::Epoch }));
    }
    latencies.sort_by(f64::total_cmp);
    let at = |quantile: f64| round(latencies[((latencies.len() - 1) as f64 * quantile) as usize]);
    Ok(Some(Latency { p50_ms: at(0.5), p99_ms: at(0.99), basis: LatencyBasis::EventTime }))
}

/// q13's side input: a value for each key 0..10 000.
fn side_input_rows() -> String {
    let values: Vec<String> = (0..10_000).map(|key| format!("({key}, 'value-{key}')")).collect();
    format!("INSERT INTO side_input VALUES {}", values.join(", "))
}

/// Runs `sql` in `context`: events per second and the rows returned.
async fn timed_batch(
    context: &datafusion::prelude::SessionContext,
    sql: &str,
    events: u64,
    started: std::time::Instant,
) -> datafusion::common::Result<(f64, u64)> {
    let batches = context.sql(sql).await?.collect().await?;
    let rows = batches.iter().map(|batch| batch.num_rows() as u64).sum();
    Ok((events as f64 / started.elapsed().as_secs_f64().max(1e-9), rows))
}

/// [`batch_statement`] in DataFusion batch over the same events, generated
/// into memory (timed, as the streaming run's generation is).
async fn batch_run(sql: &str, events: u64) -> datafusion::common::Result<(f64, u64)> {
    let started = std::time::Instant::now();
    let context = batch_context(events)?;
    timed_batch(&context, sql, events, started).await
}

/// [`batch_statement`] in DataFusion batch reading the same bid file.
async fn batch_file_run(
    sql: &str,
    path: &std::path::Path,
    bids: u64,
    csv: bool,
) -> datafusion::common::Result<(f64, u64)> {
    use datafusion::prelude::{CsvReadOptions, JsonReadOptions, SessionConfig, SessionContext};
    let started = std::time::Instant::now();
    let context = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(2));
    let schema = bid_schema();
    let path = path.display().to_string();
    if csv {
        let options = CsvReadOptions::new().schema(&schema).has_header(true);
        context.register_csv("bid", &path, options).await?;
    } else {
        let options = JsonReadOptions::default().schema(&schema).file_extension(".jsonl");
        context.register_json("bid", &path, options).await?;
    }
    timed_batch(&context, sql, bids, started).await
}

/// A DataFusion batch session whose tables `person`, `auction` and `bid`
/// hold the first `events` events of the harness's sequence (seed 0).
pub fn batch_context(events: u64) -> datafusion::common::Result<datafusion::prelude::SessionContext> {
    use datafusion::datasource::MemTable;
    use datafusion::prelude::{SessionConfig, SessionContext};
    use sluice_runtime::source::nexmark::{NexmarkSpec, NexmarkTable};
    use std::sync::Arc;

    let context = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(2));
    for (table, name) in
        [(NexmarkTable::Person, "person"), (NexmarkTable::Auction, "auction"), (NexmarkTable::Bid, "bid")]
    {
        let schema = table_schema(table);
        let spec = NexmarkSpec {
            table,
            seed: 0,
            event_rate: BENCH_EVENT_RATE,
            events: Some(events),
            realtime: false,
            start: sluice_runtime::source::generator::DEFAULT_START_NANOS,
        };
        let mut batches = Vec::new();
        let mut first = 0;
        while first < events {
            let count = (events - first).min(65_536);
            batches.push(
                spec.batch(&schema, first, count)
                    .map_err(|error| datafusion::common::DataFusionError::Execution(error.to_string()))?,
            );
            first += count;
        }
        context.register_table(name, Arc::new(MemTable::try_new(schema, vec![batches])?))?;
    }
    Ok(context)
}

/// This process's CPU time (user + system), from /proc.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5), 12 and 13 after ')'.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Resets the peak resident set size the kernel reports (Linux).
pub(crate) fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The peak resident set size since the last reset (Linux `VmHWM`).
pub(crate) fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kilobytes: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kilobytes * 1024)
}
