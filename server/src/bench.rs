//! `sluice bench`: runs a query in-process over generated weblog records
//! (not paced by the wall clock) and reports throughput. Results go to the
//! query's output log with no subscriber; rows are counted by the query.
//! Join queries read two generated streams (`weblog` and `weblog_b`, half
//! the events each) and report the peak rows held in join state.

use std::time::Instant;

use serde_json::json;
use sluice_runtime::{QueryMetrics, QueryStatus, RecoveryTimes};

use crate::engine::{Engine, Settings, StatementResult};
use crate::error::EngineError;

/// The queries the harness knows, by name.
pub const QUERIES: [(&str, &str); 14] = [
    ("filter", "SELECT ts, ip, status FROM weblog WHERE status >= 500"),
    (
        "tumble",
        "SELECT window_start, window_end, ip, count(*) AS hits, avg(duration) AS mean
         FROM TUMBLE(weblog, ts, INTERVAL '1' SECOND) GROUP BY window_start, window_end, ip",
    ),
    (
        "hop",
        "SELECT window_start, window_end, ip, count(*) AS hits, avg(duration) AS mean
         FROM HOP(weblog, ts, INTERVAL '1' SECOND, INTERVAL '1' HOUR) GROUP BY window_start, window_end, ip",
    ),
    (
        "hop_10s",
        "SELECT window_start, window_end, ip, count(*) AS hits, avg(duration) AS mean
         FROM HOP(weblog, ts, INTERVAL '1' SECOND, INTERVAL '10' SECOND) GROUP BY window_start, window_end, ip",
    ),
    (
        "session",
        "SELECT window_start, window_end, ip, count(*) AS hits
         FROM TABLE(SESSION(TABLE weblog PARTITION BY ip, DESCRIPTOR(ts), INTERVAL '100' MILLISECOND))
         GROUP BY window_start, window_end, ip",
    ),
    ("running", "SELECT ip, count(*) AS hits, max(duration) AS slowest FROM weblog GROUP BY ip"),
    (
        "top_n",
        "SELECT window_start, window_end, ip, count(*) AS hits
         FROM TABLE(TUMBLE(TABLE weblog, DESCRIPTOR(ts), INTERVAL '1' SECOND))
         WHERE status >= 400 GROUP BY window_start, window_end, ip ORDER BY hits DESC LIMIT 3",
    ),
    (
        "interval_join",
        "SELECT a.ts, a.ip, a.url, b.url AS next_url FROM weblog a JOIN weblog_b b
           ON a.ip = b.ip AND b.ts BETWEEN a.ts AND a.ts + INTERVAL '100' MILLISECOND",
    ),
    (
        // Nexmark q8's shape: two window aggregates joined per window.
        "window_join",
        "SELECT a.ip, a.window_start, a.hits, b.slowest
         FROM (SELECT ip, window_start, window_end, count(*) AS hits FROM TUMBLE(weblog, ts, INTERVAL '1' SECOND)
               GROUP BY ip, window_start, window_end) a
         JOIN (SELECT ip, window_start, window_end, max(duration) AS slowest FROM TUMBLE(weblog_b, ts, INTERVAL '1' SECOND)
               GROUP BY ip, window_start, window_end) b
           ON a.ip = b.ip AND a.window_start = b.window_start AND a.window_end = b.window_end",
    ),
    (
        // MATCH_RECOGNIZE: V shapes in each IP's response times.
        "pattern_v",
        "SELECT * FROM weblog MATCH_RECOGNIZE (
           PARTITION BY ip ORDER BY ts
           MEASURES STRT.ts AS start_ts, LAST(DOWN.ts) AS bottom_ts, LAST(UP.ts) AS end_ts
           AFTER MATCH SKIP TO LAST UP
           PATTERN (STRT DOWN+ UP+)
           DEFINE DOWN AS DOWN.duration < PREV(DOWN.duration), UP AS UP.duration > PREV(UP.duration))",
    ),
    (
        // A rising run bounded by WITHIN.
        "pattern_rising",
        "SELECT * FROM weblog MATCH_RECOGNIZE (
           PARTITION BY ip ORDER BY ts
           MEASURES A.ts AS start_ts, COUNT(B.*) AS rising, C.ts AS end_ts
           PATTERN (A B+ C)
           WITHIN INTERVAL '5' SECOND
           DEFINE B AS B.duration > PREV(B.duration), C AS C.duration < PREV(C.duration))",
    ),
    (
        // An ambiguous pattern: B and C overlap, so (B | C)* has many ways
        // to map a run; the automaton keeps one thread per instruction.
        "pattern_ambiguous",
        "SELECT * FROM weblog MATCH_RECOGNIZE (
           PARTITION BY ip ORDER BY ts
           MEASURES A.ts AS start_ts, D.ts AS end_ts, COUNT(*) AS length
           PATTERN (A (B | C)* D)
           DEFINE A AS A.status = 404, B AS B.status = 200, C AS C.duration > 0.01, D AS D.status = 500)",
    ),
    (
        // Adversarial for a backtracking matcher: A and B both hold on
        // every row, so (A | B)* has 2^n mappings of a run of n rows, and
        // the greedy loop keeps every run open until WITHIN ends it.
        "pattern_adversarial",
        "SELECT * FROM weblog MATCH_RECOGNIZE (
           PARTITION BY ip ORDER BY ts
           MEASURES FIRST(ts) AS start_ts, COUNT(*) AS length
           PATTERN ((A | B)* C)
           WITHIN INTERVAL '10' SECOND
           DEFINE A AS A.duration >= 0, B AS B.status > 0, C AS C.status = 500)",
    ),
    (
        // Nested quantifiers over long runs: (A+)+ splits a run of n rows
        // in 2^(n-1) ways.
        "pattern_nested",
        "SELECT * FROM weblog MATCH_RECOGNIZE (
           PARTITION BY ip ORDER BY ts
           MEASURES FIRST(ts) AS start_ts, COUNT(*) AS length
           PATTERN ((A+)+ C)
           WITHIN INTERVAL '10' SECOND
           DEFINE A AS A.duration >= 0, C AS C.status = 500)",
    ),
];

/// One benchmark run's figures.
#[derive(Debug, Clone)]
pub struct BenchResult {
    pub query: String,
    pub events: u64,
    pub seconds: f64,
    pub rows_out: u64,
    pub keys: u64,
    /// The most rows held in operator state (joins, Top-N, patterns),
    /// sampled while running.
    pub peak_state_rows: u64,
    /// The process's peak resident memory during the run (Linux).
    pub peak_rss_bytes: Option<u64>,
}

impl BenchResult {
    pub fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.seconds.max(1e-9)
    }

    pub fn json_line(&self) -> String {
        json!({
            "query": self.query,
            "events": self.events,
            "seconds": self.seconds,
            "events_per_sec": self.events_per_sec().round(),
            "keys": self.keys,
            "rows_out": self.rows_out,
            "peak_state_rows": self.peak_state_rows,
            "peak_rss_bytes": self.peak_rss_bytes,
        })
        .to_string()
    }
}

/// Runs `query` (a name from [`QUERIES`]) over `events` generated records
/// (1000 per second of event time, `keys` distinct IPs) with `epoch_interval`.
/// Settings every bench query starts from (`sluice bench --parallelism`).
static BASE_SETTINGS: std::sync::OnceLock<Settings> = std::sync::OnceLock::new();

/// Sets what [`base_settings`] returns, once, before any bench runs.
pub fn set_base_settings(settings: Settings) {
    let _ = BASE_SETTINGS.set(settings);
}

/// The settings a bench query starts from.
pub fn base_settings() -> Settings {
    BASE_SETTINGS.get().cloned().unwrap_or_default()
}

pub async fn run(query: &str, events: u64, keys: u64, epoch_interval: &str) -> Result<BenchResult, EngineError> {
    let sql = QUERIES
        .iter()
        .find(|(name, _)| *name == query)
        .map(|(_, sql)| *sql)
        .ok_or_else(|| EngineError::invalid(format!("unknown bench query {query:?}")))?;
    let engine = Engine::new();
    let mut settings = base_settings();
    settings.insert("epoch_interval".into(), epoch_interval.into());
    settings.insert("retained_rows".into(), "0".into());
    let join = query.ends_with("_join");
    let rows = if join { events / 2 } else { events };
    for (stream, seed) in [("weblog", 1), ("weblog_b", 2)] {
        let ddl = format!(
            "CREATE STREAM {stream} (ts TIMESTAMP, ip VARCHAR, status INT, method VARCHAR, url VARCHAR, duration DOUBLE,
               WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
             WITH (connector = 'generator', rate = '1000', rows = '{rows}', realtime = 'false', seed = '{seed}', hosts = '{keys}')"
        );
        engine.execute(&ddl, &mut settings).await?;
    }
    crate::nexmark::reset_peak_rss();
    let started = Instant::now();
    let results = engine.execute(sql, &mut settings).await?;
    let Some(StatementResult::Query { id: query_id, .. }) = results.last() else {
        return Err(EngineError::internal("bench query did not start"));
    };
    let running = engine.query(query_id).ok_or_else(|| EngineError::internal("bench query vanished"))?;
    // Count rows from the query's metrics: the harness measures the query,
    // not a websocket subscriber.
    let mut peak_state_rows = 0;
    wait_until_finished(&running, |metrics| {
        peak_state_rows = peak_state_rows.max(QueryMetrics::get(&metrics.state_rows));
    })
    .await?;
    let rows_out = QueryMetrics::get(&running.handle.metrics.rows_out);
    let seconds = started.elapsed().as_secs_f64();
    Ok(BenchResult {
        keys,
        query: query.to_string(),
        events: rows * if join { 2 } else { 1 },
        seconds,
        rows_out,
        peak_state_rows,
        peak_rss_bytes: crate::nexmark::peak_rss(),
    })
}

/// Polls `running` until it finishes, calling `sample` with its metrics on
/// every poll; a failed or cancelled query is an error.
pub async fn wait_until_finished(
    running: &crate::engine::RunningQuery,
    mut sample: impl FnMut(&QueryMetrics),
) -> Result<(), EngineError> {
    loop {
        sample(&running.handle.metrics);
        match running.handle.status() {
            QueryStatus::Running => tokio::time::sleep(std::time::Duration::from_millis(2)).await,
            QueryStatus::Finished => return Ok(()),
            QueryStatus::Failed(message) => return Err(EngineError::internal(message)),
            QueryStatus::Cancelled => return Err(EngineError::internal("the query was cancelled")),
        }
    }
}

/// Checkpoint figures for one query with a large state.
#[derive(Debug, Clone)]
pub struct CheckpointBench {
    pub query: String,
    pub events: u64,
    /// Keys held in state (result rows of the unbounded GROUP BY).
    pub keys: u64,
    pub checkpoint_bytes: u64,
    pub checkpoint_ms: f64,
    /// From opening the data directory to the restored query running.
    pub recovery_ms: f64,
    /// Pauses of periodic checkpoints taken while a query holding `keys`
    /// keys ran (sorted), and how long its writer took for the last one.
    pub pauses_ms: Vec<f64>,
    pub background_write_ms: f64,
    /// Where the recovery's time went.
    pub recovery: RecoveryTimes,
    /// Each periodic checkpoint: bytes written, and bytes of unchanged
    /// state pointed at in earlier checkpoints instead.
    pub periodic: Vec<(u64, u64)>,
}

impl CheckpointBench {
    pub fn pause_quantile(&self, quantile: f64) -> Option<f64> {
        let index = ((self.pauses_ms.len() as f64 * quantile).ceil() as usize).saturating_sub(1);
        self.pauses_ms.get(index).copied()
    }

    pub fn json_line(&self) -> String {
        json!({
            "query": self.query,
            "events": self.events,
            "keys": self.keys,
            "checkpoint_bytes": self.checkpoint_bytes,
            "checkpoint_ms": (self.checkpoint_ms * 10.0).round() / 10.0,
            "recovery_ms": (self.recovery_ms * 10.0).round() / 10.0,
            "periodic_checkpoints": self.pauses_ms.len(),
            "pause_ms_min": self.pauses_ms.first(),
            "pause_ms_p50": self.pause_quantile(0.5),
            "pause_ms_max": self.pauses_ms.last(),
            "background_write_ms": (self.background_write_ms * 10.0).round() / 10.0,
            "recovery_bytes": self.recovery.bytes,
            "recovery_read_ms": (self.recovery.read_ms * 10.0).round() / 10.0,
            "recovery_decode_ms": (self.recovery.decode_ms * 10.0).round() / 10.0,
            "recovery_restore_ms": (self.recovery.restore_ms * 10.0).round() / 10.0,
            "periodic_written_bytes": self.periodic.iter().map(|(written, _)| written).collect::<Vec<_>>(),
            "periodic_reused_bytes": self.periodic.iter().map(|(_, reused)| reused).collect::<Vec<_>>(),
        })
        .to_string()
    }
}

/// The query of the checkpoint benchmark: running state for every key,
/// and (event times being distinct) one key per event.
pub const CHECKPOINT_QUERY: &str =
    "SELECT ts, count(*) AS hits, max(duration) AS slowest, sum(status) AS status_sum FROM weblog GROUP BY ts";

/// Runs [`CHECKPOINT_QUERY`] over `keys` generated events in a server with
/// a data directory, reports its last checkpoint (taken when the input
/// ended, holding every key), then opens the data directory again and
/// times the recovery: catalog, plan, reading and checking the checkpoint,
/// restoring every operator, until the query runs.
/// With `state_bytes`, the keys of the recovery are as many as make a
/// checkpoint of about that size (measured on 100 000 keys first); the
/// periodic checkpoints are of `keys` keys still.
pub async fn checkpoint(keys: u64, state_bytes: Option<u64>) -> Result<CheckpointBench, EngineError> {
    let recovered_keys = match state_bytes {
        Some(target) => {
            let sample = recovery(100_000).await?;
            let per_key = sample.0.checkpoint_bytes as f64 / 100_000.0;
            ((target as f64 / per_key.max(1.0)) as u64).max(1)
        }
        None => keys,
    };
    let (mut result, dir) = recovery(recovered_keys).await?;
    let (pauses_ms, background_write_ms, periodic) = periodic_pauses(&dir, keys).await?;
    result.pauses_ms = pauses_ms;
    result.background_write_ms = background_write_ms;
    result.periodic = periodic;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(result)
}

/// The first run (its last checkpoint) and the recovery, of `keys` keys;
/// and the data directory, for the periodic run.
async fn recovery(keys: u64) -> Result<(CheckpointBench, std::path::PathBuf), EngineError> {
    let dir = std::env::temp_dir().join(format!("sluice-bench-checkpoint-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut settings = base_settings();
    settings.insert("retained_rows".into(), "0".into());
    settings.insert("checkpoint_interval".into(), "1h".into());
    let (query_id, first) = {
        let engine = Engine::open(&dir).await?;
        let ddl = format!(
            "CREATE STREAM weblog (ts TIMESTAMP, ip VARCHAR, status INT, duration DOUBLE,
               WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
             WITH (connector = 'generator', rate = '1000', rows = '{keys}', realtime = 'false', seed = '1')"
        );
        engine.execute(&ddl, &mut settings).await?;
        let results = engine.execute(CHECKPOINT_QUERY, &mut settings).await?;
        let Some(StatementResult::Query { id: query_id, .. }) = results.last() else {
            return Err(EngineError::internal("bench query did not start"));
        };
        let running = engine.query(query_id).ok_or_else(|| EngineError::internal("bench query vanished"))?;
        wait_until_finished(&running, |_| {}).await?;
        (query_id.clone(), running.handle.metrics.checkpoints())
    };
    // Opening the data directory plans the query and restores its
    // checkpoint before it returns.
    let started = Instant::now();
    let engine = Engine::open(&dir).await?;
    let recovery_ms = started.elapsed().as_secs_f64() * 1000.0;
    let running = engine.query(&query_id).ok_or_else(|| EngineError::internal("the query was not restored"))?;
    wait_until_finished(&running, |_| {}).await?;
    let report = running.handle.metrics.checkpoints();
    if report.restored_from.is_none() {
        return Err(EngineError::internal(format!("the query did not restore its checkpoint: {report:?}")));
    }
    drop(engine);
    // The figures of the first run's final checkpoint.
    let result = CheckpointBench {
        query: "running_per_event".into(),
        events: keys,
        keys: running.handle.output.rows_published(),
        checkpoint_bytes: first.last_bytes.unwrap_or_default(),
        checkpoint_ms: first.last_duration_ms.unwrap_or_default(),
        recovery_ms,
        pauses_ms: Vec::new(),
        background_write_ms: 0.0,
        recovery: report.recovery.unwrap_or_default(),
        periodic: Vec::new(),
    };
    Ok((result, dir))
}

/// Runs a running GROUP BY over `keys` keys (ten rows each, so the query
/// goes on well after every key is held) with a checkpoint every second:
/// the pauses those checkpoints caused (a snapshot, and any wait for the
/// previous checkpoint's writer), sorted, the last writer's time, and the
/// bytes each wrote and pointed at. (The generator's hosts are skewed: a
/// few keys take most rows, many are touched rarely.)
async fn periodic_pauses(dir: &std::path::Path, keys: u64) -> Result<(Vec<f64>, f64, Vec<(u64, u64)>), EngineError> {
    let dir = dir.join("periodic");
    let engine = Engine::open(&dir).await?;
    let mut settings = base_settings();
    settings.insert("retained_rows".into(), "0".into());
    settings.insert("checkpoint_interval".into(), "1s".into());
    let ddl = format!(
        "CREATE STREAM weblog (ts TIMESTAMP, ip VARCHAR, status INT, duration DOUBLE,
           WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
         WITH (connector = 'generator', rate = '1000', rows = '{}', realtime = 'false', seed = '1', hosts = '{keys}')",
        keys * 10
    );
    engine.execute(&ddl, &mut settings).await?;
    let results = engine
        .execute(
            "SELECT ip, count(*) AS hits, max(duration) AS slowest, sum(status) AS status_sum FROM weblog GROUP BY ip",
            &mut settings,
        )
        .await?;
    let Some(StatementResult::Query { id, .. }) = results.last() else {
        return Err(EngineError::internal("bench query did not start"));
    };
    let running = engine.query(id).ok_or_else(|| EngineError::internal("bench query vanished"))?;
    let mut periodic = Vec::new();
    let mut last_id = None;
    wait_until_finished(&running, |metrics| {
        let report = metrics.checkpoints();
        if report.last_id != last_id {
            last_id = report.last_id;
            periodic.push((report.last_bytes.unwrap_or_default(), report.last_reused_bytes.unwrap_or_default()));
        }
    })
    .await?;
    let report = running.handle.metrics.checkpoints();
    // The first (where the sources start) and the last (the query
    // finished) are waited for; the ones between are the periodic ones.
    let mut pauses = report.recent_pauses_ms.clone();
    pauses.pop();
    if !pauses.is_empty() {
        pauses.remove(0);
    }
    pauses.sort_by(f64::total_cmp);
    Ok((pauses, report.last_duration_ms.unwrap_or_default(), periodic))
}

/// What `sluice bench fanout` measured: one query, many websocket
/// subscribers (and one that never reads).
#[derive(Debug, Clone)]
pub struct FanoutBench {
    pub subscribers: usize,
    pub events: u64,
    pub rows_out: u64,
    /// The query alone, then with the subscribers.
    pub seconds_alone: f64,
    pub seconds_with: f64,
    /// Readers that received every row and the end.
    pub complete: usize,
    /// Subscribers cut off for falling behind. The one that never reads is
    /// cut off only once it is more than its queue (16 384 events) behind;
    /// this result's frames fit in the socket buffers before that.
    pub lagged: u64,
}

impl FanoutBench {
    /// How much slower the query ran with subscribers, in percent.
    pub fn slowdown_percent(&self) -> f64 {
        100.0 * (self.seconds_with / self.seconds_alone.max(1e-9) - 1.0)
    }

    pub fn json_line(&self) -> String {
        json!({
            "bench": "fanout",
            "subscribers": self.subscribers,
            "events": self.events,
            "rows_out": self.rows_out,
            "events_per_sec_alone": (self.events as f64 / self.seconds_alone).round(),
            "events_per_sec_with_subscribers": (self.events as f64 / self.seconds_with).round(),
            "slowdown_percent": (self.slowdown_percent() * 10.0).round() / 10.0,
            "complete_subscribers": self.complete,
            "lagged_subscribers": self.lagged,
        })
        .to_string()
    }
}

/// The query of the fanout benchmark: a modest result (a few rows per ten
/// seconds of event time) that every subscriber receives whole.
pub const FANOUT_QUERY: &str = "SELECT window_start, window_end, status, count(*) AS hits, avg(duration) AS mean
     FROM TUMBLE(weblog, ts, INTERVAL '10' SECOND) GROUP BY window_start, window_end, status";

/// A server on a free loopback port for a bench, asking for `token` if
/// given.
pub(crate) async fn bench_server(token: Option<String>) -> Result<crate::RunningServer, EngineError> {
    let options = crate::Options { token, ..crate::Options::default() };
    crate::start_with("127.0.0.1:0", None, &options)
        .await
        .map_err(|error| EngineError::internal(format!("cannot start the server: {error}")))
}

/// Runs [`FANOUT_QUERY`] over `events` generated records alone, then again
/// with `subscribers` websocket readers (over loopback, in this process)
/// and one subscriber that never reads (its receive buffer made tiny, so the
/// stall shows as soon as the socket buffers fill). Every reader must see
/// every row, whatever the stalled one does.
///
/// With a `token`, the server asks for it and every reader presents it.
pub async fn fanout(subscribers: usize, events: u64, token: Option<String>) -> Result<FanoutBench, EngineError> {
    let server = bench_server(token.clone()).await?;
    let engine = server.engine.clone();
    let mut settings = base_settings();
    // Every row stays retained, so readers that connect once the query runs
    // still start at row 0. Default epochs and subscriber queues.
    settings.insert("retained_rows".into(), "10000000".into());
    let ddl = format!(
        "CREATE STREAM weblog (ts TIMESTAMP, ip VARCHAR, status INT, method VARCHAR, url VARCHAR, duration DOUBLE,
           WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
         WITH (connector = 'generator', rate = '1000', rows = '{events}', realtime = 'false', seed = '1', hosts = '40')"
    );
    engine.execute(&ddl, &mut settings).await?;
    let run = async |engine: &Engine,
                     settings: &mut Settings|
           -> Result<std::sync::Arc<crate::engine::RunningQuery>, EngineError> {
        let results = engine.execute(FANOUT_QUERY, settings).await?;
        let Some(StatementResult::Query { id, .. }) = results.last() else {
            return Err(EngineError::internal("bench query did not start"));
        };
        engine.query(id).ok_or_else(|| EngineError::internal("bench query vanished"))
    };
    let started = Instant::now();
    let alone = run(&engine, &mut settings).await?;
    wait_until_finished(&alone, |_| {}).await?;
    let seconds_alone = started.elapsed().as_secs_f64();
    let rows_out = QueryMetrics::get(&alone.handle.metrics.rows_out);

    let started = Instant::now();
    let query = run(&engine, &mut settings).await?;
    let mut url = format!("ws://{}{}", server.address, crate::json::subscribe_path(&query.id));
    if let Some(token) = &token {
        url.push_str(&format!("?token={token}"));
    }
    let stalled = stalled_subscriber(&server.address, &url).await?;
    let readers: Vec<_> = (0..subscribers).map(|_| tokio::spawn(read_all(url.clone()))).collect();
    wait_until_finished(&query, |_| {}).await?;
    let seconds_with = started.elapsed().as_secs_f64();
    let mut complete = 0;
    for reader in readers {
        let outcome = tokio::time::timeout(std::time::Duration::from_secs(300), reader).await;
        if let Ok(Ok(Some(rows))) = outcome
            && rows == rows_out
        {
            complete += 1;
        }
    }
    let lagged = query.handle.output.subscriber_counts().1;
    drop(stalled);
    Ok(FanoutBench { subscribers, events, rows_out, seconds_alone, seconds_with, complete, lagged })
}

type ClientSocket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// A subscriber that connects and never reads, with a 4 KiB receive buffer.
async fn stalled_subscriber(address: &std::net::SocketAddr, url: &str) -> Result<ClientSocket, EngineError> {
    let fail = |error: &dyn std::fmt::Display| EngineError::internal(format!("stalled subscriber: {error}"));
    let socket = tokio::net::TcpSocket::new_v4().map_err(|error| fail(&error))?;
    socket.set_recv_buffer_size(4096).map_err(|error| fail(&error))?;
    let stream = socket.connect(*address).await.map_err(|error| fail(&error))?;
    let (socket, _) = tokio_tungstenite::client_async(url, stream).await.map_err(|error| fail(&error))?;
    Ok(socket)
}

/// Reads a subscription to its end; the `next_seq` after its last row, or
/// `None` if it was cut off or broke.
async fn read_all(url: String) -> Option<u64> {
    use futures::StreamExt;
    let (mut socket, _) = tokio_tungstenite::connect_async(&url).await.ok()?;
    let mut next_seq = 0;
    while let Some(message) = socket.next().await {
        let tokio_tungstenite::tungstenite::Message::Text(text) = message.ok()? else { continue };
        // Counting, not parsing: the reader must cost little.
        if let Some(at) = text.find(r#""next_seq":"#) {
            let digits: String = text[at + 11..].chars().take_while(char::is_ascii_digit).collect();
            next_seq = digits.parse().unwrap_or(next_seq);
        } else if text.starts_with(r#"{"type":"end"#) {
            return Some(next_seq);
        } else if text.starts_with(r#"{"type":"error"#) || text.contains(r#""type":"error""#) {
            return None;
        }
    }
    None
}

/// What `sluice bench many` measured: many queries on one server, and how
/// quickly the HTTP API answers meanwhile.
#[derive(Debug, Clone)]
pub struct ManyBench {
    pub queries: usize,
    pub seconds: f64,
    /// `GET /v1/queries` calls made, and their latencies.
    pub latency: ApiLatency,
    /// Queries still running at the end, and those that emitted rows.
    pub running: usize,
    pub with_rows: usize,
    pub events_in: u64,
}

impl ManyBench {
    pub fn json_line(&self) -> String {
        json!({
            "bench": "many",
            "queries": self.queries,
            "seconds": (self.seconds * 10.0).round() / 10.0,
            "requests": self.latency.requests,
            "get_queries_p50_ms": (self.latency.p50_ms * 100.0).round() / 100.0,
            "get_queries_p99_ms": (self.latency.p99_ms * 100.0).round() / 100.0,
            "get_queries_max_ms": (self.latency.max_ms * 100.0).round() / 100.0,
            "running": self.running,
            "with_rows": self.with_rows,
            "events_in": self.events_in,
        })
        .to_string()
    }
}

/// The kinds of query `bench many` runs, in turn.
const MANY_QUERIES: [&str; 4] = [
    "SELECT window_start, window_end, status, count(*) AS n FROM TUMBLE(weblog, ts, INTERVAL '1' SECOND) GROUP BY window_start, window_end, status",
    "SELECT ts, ip, status FROM weblog WHERE status >= 500",
    "SELECT ip, count(*) AS hits, max(duration) AS slowest FROM weblog GROUP BY ip",
    "SELECT window_start, window_end, ip, count(*) AS hits FROM HOP(weblog, ts, INTERVAL '1' SECOND, INTERVAL '5' SECOND) GROUP BY window_start, window_end, ip",
];

/// Runs `queries` continuous queries (windowed, filter, running GROUP BY,
/// HOP in turn) over one paced generator (20 000 events/s) for `seconds`,
/// calling `GET /v1/queries` over loopback every 20 ms meanwhile (with
/// the server's `token`, if it has one).
pub async fn many(queries: usize, seconds: u64, token: Option<String>) -> Result<ManyBench, EngineError> {
    let server = bench_server(token.clone()).await?;
    let engine = server.engine.clone();
    let mut settings = base_settings();
    let ddl =
        "CREATE STREAM weblog (ts TIMESTAMP, ip VARCHAR, status INT, method VARCHAR, url VARCHAR, duration DOUBLE,
           WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
         WITH (connector = 'generator', rate = '20000', seed = '1', hosts = '40')";
    engine.execute(ddl, &mut settings).await?;
    let mut ids = Vec::new();
    for index in 0..queries {
        let results = engine.execute(MANY_QUERIES[index % MANY_QUERIES.len()], &mut settings).await?;
        if let Some(StatementResult::Query { id, .. }) = results.last() {
            ids.push(id.clone());
        }
    }
    let started = Instant::now();
    let latency = poll_queries(&server, token.as_deref(), seconds).await?;
    let seconds = started.elapsed().as_secs_f64();
    let mut running = 0;
    let mut with_rows = 0;
    let mut events_in = 0;
    for id in &ids {
        let Some(query) = engine.query(id) else { continue };
        running += usize::from(query.handle.status() == QueryStatus::Running);
        with_rows += usize::from(QueryMetrics::get(&query.handle.metrics.rows_out) > 0);
        events_in += QueryMetrics::get(&query.handle.metrics.rows_in);
    }
    Ok(ManyBench { queries: ids.len(), seconds, latency, running, with_rows, events_in })
}

/// How quickly `GET /v1/queries` answered.
#[derive(Debug, Clone, Copy)]
pub struct ApiLatency {
    pub requests: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Calls `GET /v1/queries` over loopback every 20 ms for `seconds` (with
/// the server's `token`, if it has one).
async fn poll_queries(
    server: &crate::RunningServer,
    token: Option<&str>,
    seconds: u64,
) -> Result<ApiLatency, EngineError> {
    let http = reqwest::Client::new();
    let url = format!("{}/v1/queries", server.url());
    let started = Instant::now();
    let mut latencies = Vec::new();
    while started.elapsed().as_secs() < seconds {
        let asked = Instant::now();
        let request = match token {
            Some(token) => http.get(&url).bearer_auth(token),
            None => http.get(&url),
        };
        let response = request.send().await.map_err(|error| EngineError::internal(error.to_string()))?;
        if !response.status().is_success() {
            return Err(EngineError::internal(format!("GET /v1/queries answered {}", response.status())));
        }
        let _ = response.bytes().await;
        latencies.push(asked.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    latencies.sort_by(f64::total_cmp);
    let quantile = |q: f64| {
        latencies.get(((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1)).copied().unwrap_or(0.0)
    };
    Ok(ApiLatency {
        requests: latencies.len(),
        p50_ms: quantile(0.5),
        p99_ms: quantile(0.99),
        max_ms: latencies.last().copied().unwrap_or(0.0),
    })
}

/// What `sluice bench api` measured: the HTTP API's latency while one
/// Nexmark query runs as fast as it can.
#[derive(Debug, Clone)]
pub struct ApiBench {
    pub query: String,
    pub seconds: f64,
    pub events_in: u64,
    pub latency: ApiLatency,
}

impl ApiBench {
    pub fn json_line(&self) -> String {
        json!({
            "bench": "api",
            "query": self.query,
            "pipeline_threads": sluice_runtime::cpu::pipeline_threads(),
            "seconds": (self.seconds * 10.0).round() / 10.0,
            "events_in": self.events_in,
            "requests": self.latency.requests,
            "get_queries_p50_ms": (self.latency.p50_ms * 100.0).round() / 100.0,
            "get_queries_p99_ms": (self.latency.p99_ms * 100.0).round() / 100.0,
            "get_queries_max_ms": (self.latency.max_ms * 100.0).round() / 100.0,
        })
        .to_string()
    }
}

/// Runs the Nexmark query `name` over an unpaced generator (as fast as the
/// machine goes) for `seconds`, calling `GET /v1/queries` meanwhile.
pub async fn api(name: &str, seconds: u64, token: Option<String>) -> Result<ApiBench, EngineError> {
    let (_, text) = crate::nexmark::queries()
        .into_iter()
        .find(|(query, _)| query == name)
        .ok_or_else(|| EngineError::invalid(format!("unknown Nexmark query {name:?}")))?;
    let server = bench_server(token.clone()).await?;
    let engine = server.engine.clone();
    let mut settings = base_settings();
    settings.insert("retained_rows".into(), "0".into());
    let streams = crate::nexmark::streams(None, crate::nexmark::BENCH_EVENT_RATE, false);
    engine.execute(&streams, &mut settings).await?;
    let results = engine.execute(&crate::nexmark::statement(&text), &mut settings).await?;
    let Some(StatementResult::Query { id, .. }) = results.last() else {
        return Err(EngineError::internal("bench query did not start"));
    };
    let query = engine.query(id).ok_or_else(|| EngineError::internal("bench query vanished"))?;
    let started = Instant::now();
    let latency = poll_queries(&server, token.as_deref(), seconds).await?;
    let seconds = started.elapsed().as_secs_f64();
    if let QueryStatus::Failed(message) = query.handle.status() {
        return Err(EngineError::internal(format!("the query failed: {message}")));
    }
    let events_in = QueryMetrics::get(&query.handle.metrics.rows_in);
    Ok(ApiBench { query: name.to_string(), seconds, events_in, latency })
}

/// What `sluice bench latency` measured for one query and epoch interval:
/// milliseconds from an event's release by the paced generator to the
/// arrival of its result on a websocket client.
#[derive(Debug, Clone)]
pub struct LatencyBench {
    pub query: String,
    pub epoch_interval: String,
    pub rows: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl LatencyBench {
    pub fn json_line(&self) -> String {
        let round = |ms: f64| (ms * 100.0).round() / 100.0;
        json!({
            "bench": "latency",
            "query": self.query,
            "epoch_interval": self.epoch_interval,
            "events_per_sec": LATENCY_RATE,
            "rows": self.rows,
            "p50_ms": round(self.p50_ms),
            "p99_ms": round(self.p99_ms),
            "p99_9_ms": round(self.p999_ms),
            "max_ms": round(self.max_ms),
        })
        .to_string()
    }
}

/// Events per second the latency bench releases.
pub const LATENCY_RATE: f64 = 100_000.0;

/// The latency bench's queries: each result row carries the event time it
/// is due at (`due`): the bid's own `date_time` for q0-q2 (q2 with its
/// `date_time` kept), the window's end for the TUMBLE, whose watermark
/// has no delay (a window's result can exist once an event past its end
/// has arrived).
pub const LATENCY_QUERIES: [(&str, &str); 4] = [
    ("q0", "SELECT auction, bidder, price, date_time AS due, extra FROM bid"),
    ("q1", "SELECT auction, bidder, 0.908 * price AS price, date_time AS due, extra FROM bid"),
    ("q2", "SELECT auction, price, date_time AS due FROM bid WHERE auction % 123 = 0"),
    (
        "tumble",
        "SELECT window_start, window_end AS due, count(*) AS bids, max(price) AS top
         FROM TUMBLE(bid_now, date_time, INTERVAL '1' SECOND) GROUP BY window_start, window_end",
    ),
];

/// Submits `sql` with `settings` on a `/v1/subscribe` websocket of the
/// server at `address`, so it runs for this client from its first row;
/// the socket and when the query was sent.
pub(crate) async fn submit_on_websocket(
    address: &std::net::SocketAddr,
    sql: &str,
    settings: &Settings,
) -> Result<
    (tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>, Instant),
    tokio_tungstenite::tungstenite::Error,
> {
    let url = format!("ws://{address}/v1/subscribe");
    let (mut socket, _) = tokio_tungstenite::connect_async(&url).await?;
    let settings: serde_json::Map<String, serde_json::Value> =
        settings.iter().map(|(key, value)| (key.clone(), json!(value))).collect();
    let submit = json!({"sql": sql, "settings": settings}).to_string();
    let sent = Instant::now();
    futures::SinkExt::send(&mut socket, tokio_tungstenite::tungstenite::Message::text(submit)).await?;
    Ok((socket, sent))
}

/// Runs `name` (one of [`LATENCY_QUERIES`]) for `seconds` over bids released
/// in real time at [`LATENCY_RATE`] (event time following the clock), its
/// results read by a websocket client over loopback, with
/// `epoch_interval`.
pub async fn latency(name: &str, epoch_interval: &str, seconds: f64) -> Result<LatencyBench, EngineError> {
    use datafusion::arrow::compute::kernels::cast_utils::string_to_timestamp_nanos;
    use futures::StreamExt;

    let (_, sql) = LATENCY_QUERIES
        .iter()
        .find(|(query, _)| *query == name)
        .ok_or_else(|| EngineError::invalid(format!("unknown latency query {name:?}: q0, q1, q2 or tumble")))?;
    let server = bench_server(None).await?;
    let engine = server.engine.clone();
    let mut settings = base_settings();
    settings.insert("retained_rows".into(), "0".into());
    settings.insert("epoch_interval".into(), epoch_interval.into());
    let events = (LATENCY_RATE * seconds) as u64;
    let options = format!("event_rate = '{LATENCY_RATE}', realtime = 'true', events = '{events}'");
    let ddl = format!(
        "CREATE STREAM bid (
           auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, date_time TIMESTAMP, extra VARCHAR,
           WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
         ) WITH (connector = 'nexmark', table = 'bid', {options});
         CREATE STREAM bid_now (
           auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, date_time TIMESTAMP, extra VARCHAR,
           WATERMARK FOR date_time AS date_time
         ) WITH (connector = 'nexmark', table = 'bid', {options});"
    );
    engine.execute(&ddl, &mut settings).await?;
    // The query is submitted on the websocket itself, so that it runs for
    // this subscriber from its first row.
    let fail = |error: &dyn std::fmt::Display| EngineError::internal(format!("latency bench websocket: {error}"));
    let (mut socket, released) =
        submit_on_websocket(&server.address, sql, &settings).await.map_err(|error| fail(&error))?;
    let start = sluice_runtime::source::generator::DEFAULT_START_NANOS;
    let mut latencies = Vec::new();
    while let Some(message) = socket.next().await {
        let tokio_tungstenite::tungstenite::Message::Text(text) = message.map_err(|error| fail(&error))? else {
            continue;
        };
        let arrived = released.elapsed().as_secs_f64() * 1000.0;
        let frame: serde_json::Value = serde_json::from_str(&text).map_err(|error| fail(&error))?;
        match frame["type"].as_str() {
            Some("rows") => {
                for row in frame["rows"].as_array().into_iter().flatten() {
                    let Some(due) = row["due"].as_str().and_then(|due| string_to_timestamp_nanos(due).ok()) else {
                        continue;
                    };
                    latencies.push(arrived - (due - start) as f64 / 1e6);
                }
            }
            Some("end") => break,
            Some("error") => return Err(fail(&frame)),
            _ => {}
        }
    }
    if latencies.is_empty() {
        return Err(EngineError::internal(format!("{name} gave no rows")));
    }
    latencies.sort_by(f64::total_cmp);
    let at = |quantile: f64| latencies[((latencies.len() - 1) as f64 * quantile) as usize].max(0.0);
    Ok(LatencyBench {
        query: name.to_string(),
        epoch_interval: epoch_interval.to_string(),
        rows: latencies.len(),
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        p999_ms: at(0.999),
        max_ms: at(1.0),
    })
}
