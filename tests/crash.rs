//! Crash test: a server child process running windowed, updating, join and
//! session queries over generated (sequence-numbered) streams is killed
//! with SIGKILL at random moments and restarted on the same data directory.
//! Websocket subscribers reconnect from a few rows before the last `seq`
//! they saw. The checker confirms that no row is missing, that rows sent
//! again after a recovery are identical to the first time (same `seq`, same
//! contents), and that the final results equal a run without crashes.
//!
//! The child is this test binary run again with `--ignored --exact
//! crash::crash_child_server` and `SLUICE_CRASH_CHILD` set, which makes
//! [`crash_child_server`] start a server and wait forever. Ignored, it is no
//! test of its own: a plain `cargo test` never runs it, and run without the
//! variable it fails.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use sluice::client::Subscription;
use sluice_tests::TestServer;

const CHILD_ENV: &str = "SLUICE_CRASH_CHILD";
/// The address the child listens on (default: a free port).
const ADDRESS_ENV: &str = "SLUICE_CRASH_ADDRESS";

/// Not a test by itself: the server the crash test kills.
#[test]
#[ignore = "the crash test's child server; run by the crash tests only"]
fn crash_child_server() {
    let dir = std::env::var(CHILD_ENV).expect("run by the crash test, which sets SLUICE_CRASH_CHILD");
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async move {
        let address = std::env::var(ADDRESS_ENV).unwrap_or_else(|_| "127.0.0.1:0".into());
        let server =
            sluice::start(&address, false, Some(std::path::Path::new(&dir))).await.expect("the child server starts");
        println!("SLUICE_URL {}", server.url());
        std::future::pending::<()>().await;
    });
}

fn streams(realtime: bool, rows: u64) -> String {
    let stream = |name: &str, seed: u32| {
        format!(
            "CREATE STREAM {name} (ts TIMESTAMP, ip VARCHAR, status INT, WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
             WITH (connector = 'generator', kind = 'weblog', rate = '2500', rows = '{rows}', hosts = '200',
                   seed = '{seed}', realtime = '{realtime}');"
        )
    };
    format!("{}\n{}", stream("a", 1), stream("b", 2))
}

/// The queries, and whether each one's result is updating.
const QUERIES: [(&str, bool); 4] = [
    (
        "SELECT window_start, status, count(*) AS n FROM TUMBLE(a, ts, INTERVAL '1' SECOND) GROUP BY window_start, window_end, status",
        false,
    ),
    ("SELECT ip, count(*) AS n, sum(status) AS s FROM a GROUP BY ip", true),
    (
        "SELECT a.ip, a.ts AS a_ts, b.ts AS b_ts FROM a JOIN b ON a.ip = b.ip AND b.ts BETWEEN a.ts - INTERVAL '20' MILLISECOND AND a.ts + INTERVAL '20' MILLISECOND",
        false,
    ),
    (
        "SELECT ip, window_start, window_end, count(*) AS n FROM TABLE(SESSION(TABLE a PARTITION BY ip, DESCRIPTOR(ts), INTERVAL '300' MILLISECOND)) GROUP BY ip, window_start, window_end",
        false,
    ),
];

pub(crate) struct ChildServer {
    child: Child,
    pub(crate) url: String,
}

impl ChildServer {
    pub(crate) fn start(dir: &std::path::Path) -> Self {
        Self::start_at(dir, "127.0.0.1:0")
    }

    fn start_at(dir: &std::path::Path, address: &str) -> Self {
        let mut child = Command::new(std::env::current_exe().expect("the test binary"))
            .args(["--ignored", "--exact", "crash::crash_child_server", "--nocapture", "--test-threads", "1"])
            .env(CHILD_ENV, dir)
            .env(ADDRESS_ENV, address)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the child server spawns");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = std::io::BufReader::new(stdout).lines();
        let url = loop {
            let line = lines.next().expect("the child prints its address").expect("readable stdout");
            // libtest may print "test ... " before it on the same line.
            if let Some(start) = line.find("SLUICE_URL ") {
                break line[start + "SLUICE_URL ".len()..].trim().to_string();
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self { child, url }
    }

    pub(crate) fn kill(mut self) {
        // SIGKILL: no shutdown code runs.
        self.child.kill().expect("kill -9");
        let _ = self.child.wait();
    }
}

/// What a subscriber saw of one query: rows by `seq` (row, op).
#[derive(Default)]
struct Seen {
    rows: BTreeMap<u64, (Value, Value)>,
    ended: bool,
    /// Rows that came again after a recovery with other contents.
    mismatches: Vec<String>,
}

fn next_seq(seen: &Seen) -> u64 {
    seen.rows.keys().next_back().map_or(0, |last| last + 1)
}

/// Reads frames until the socket closes (the server died) or the query ends.
async fn subscribe(url: String, seen: Arc<Mutex<Seen>>) {
    let Ok(mut subscription) = Subscription::connect(&url).await else { return };
    while let Ok(Some(frame)) = subscription.next_json().await {
        let mut seen = seen.lock().unwrap();
        match frame["type"].as_str() {
            Some("rows") => {
                let seq = frame["seq"].as_u64().unwrap();
                for (index, row) in frame["rows"].as_array().unwrap().iter().enumerate() {
                    let op = frame["ops"].get(index).cloned().unwrap_or(Value::Null);
                    let entry = (row.clone(), op);
                    match seen.rows.get(&(seq + index as u64)) {
                        Some(before) if *before != entry => {
                            let message = format!("row {}: {before:?} then {entry:?}", seq + index as u64);
                            seen.mismatches.push(message);
                        }
                        Some(_) => {}
                        None => {
                            seen.rows.insert(seq + index as u64, entry);
                        }
                    }
                }
            }
            Some("end") => {
                seen.ended = true;
                return;
            }
            Some("gap") => seen.mismatches.push(format!("rows no longer retained: {frame}")),
            // A reader that fell behind reconnects at the next round.
            Some("error") if frame["code"] == "lagged" => return,
            Some("error") => panic!("query failed: {frame}"),
            _ => {}
        }
    }
}

/// Final rows of a result as sorted strings; an updating result's
/// changelog is applied first.
fn final_rows(rows: impl Iterator<Item = (Value, Value)>) -> Vec<String> {
    let mut result: Vec<String> = Vec::new();
    for (row, op) in rows {
        let row = row.to_string();
        if op == "-" {
            let position = result.iter().position(|existing| *existing == row).expect("retracted row is present");
            result.remove(position);
        } else {
            result.push(row);
        }
    }
    result.sort();
    result
}

/// A tiny deterministic generator for the kill moments.
fn pauses(count: usize, during_recovery_every: Option<usize>) -> Vec<Duration> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..count)
        .map(|kill| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            match during_recovery_every {
                // Right after the restart: while it recovers.
                Some(every) if kill % every == every - 1 => Duration::from_millis(state % 40),
                _ => Duration::from_millis(300 + state % 900),
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_and_duplicates_no_row() {
    let figures = crash_run(6, 10_000, None).await;
    assert!(figures.restored_with_state > 0, "no query was restored from a checkpoint holding state");
}

/// The long mode: `SLUICE_CRASH_KILLS` (default 100) SIGKILLs at random
/// moments, every fifth right after a restart (during recovery), with
/// checkpoints every 250 ms (so some land during a checkpoint write):
/// `cargo test -p sluice-tests --test e2e kill_9_a_hundred -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: about 2 minutes; run by hand"]
async fn kill_9_a_hundred_times() {
    let kills = std::env::var("SLUICE_CRASH_KILLS").ok().and_then(|kills| kills.parse().ok()).unwrap_or(100);
    let figures = crash_run(kills, 2_500 * kills as u64, Some(5)).await;
    let mean = figures.recoveries.iter().sum::<Duration>() / figures.recoveries.len().max(1) as u32;
    let slowest = figures.recoveries.iter().max().copied().unwrap_or_default();
    println!(
        "crash long mode: {kills} kills survived, {} restores with state, recovery (restart until every query runs) mean {mean:?}, slowest {slowest:?}; every row once, identical, final results equal to an uncrashed run",
        figures.restored_with_state
    );
}

/// What a crash run measured.
struct CrashFigures {
    /// Restarts at which a query resumed from a checkpoint holding state.
    restored_with_state: usize,
    /// Each restart's time until the server answered with its queries
    /// restored.
    recoveries: Vec<Duration>,
}

/// Posts `{"v": n}` for n = 0, 1, ... to the stream `h` of whatever server
/// `url` names now, one at a time, until told to stop; returns the events
/// acknowledged and those whose POST got no answer.
async fn post_through_crashes(
    url: Arc<Mutex<String>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (Vec<i64>, Vec<i64>) {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let (mut acknowledged, mut unanswered) = (Vec::new(), Vec::new());
    let mut n = 0;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let target = format!("{}/v1/streams/h/events", url.lock().unwrap());
        match http.post(target).json(&json!({"v": n})).send().await {
            Ok(response) if response.status() == 200 => acknowledged.push(n),
            // Refused before anything was taken (429, a restarting server).
            Ok(_) => {}
            Err(error) if error.is_connect() => {}
            Err(_) => unanswered.push(n),
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (acknowledged, unanswered)
}

/// Runs the queries under `kills` SIGKILLs and checks every row.
async fn crash_run(kills: usize, rows: u64, during_recovery_every: Option<usize>) -> CrashFigures {
    let dir = std::env::temp_dir().join(format!("sluice-crash-{}-{kills}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let http = reqwest::Client::new();
    let sql = |url: String, sql: String, settings: Value| {
        let http = http.clone();
        async move {
            let response =
                http.post(format!("{url}/v1/sql")).json(&json!({"sql": sql, "settings": settings})).send().await;
            let body: Value = response.expect("the server answers").json().await.expect("JSON");
            assert!(body.get("error").is_none(), "{body}");
            body
        }
    };

    let mut server = ChildServer::start(&dir);
    sql(server.url.clone(), streams(true, rows), json!({})).await;
    // Every row retained: a reader slowed down (cut off as lagged) comes
    // back to rows that are still there, so any row missing is lost.
    let settings = json!({"checkpoint_interval": "250ms", "epoch_interval": "50ms", "retained_rows": "5000000"});
    let mut ids = Vec::new();
    for (query, _) in QUERIES {
        let body = sql(server.url.clone(), query.to_string(), settings.clone()).await;
        ids.push(body["query_id"].as_str().expect("a query id").to_string());
    }
    // An http input too: a poster sends one event at a time through every
    // crash; each acknowledged event must come out exactly once, and one
    // whose POST got no answer (the server died) at most once.
    sql(
        server.url.clone(),
        "CREATE STREAM h (v INT) WITH (connector = 'http', segment_bytes = '4096')".into(),
        json!({}),
    )
    .await;
    let posted_id = sql(server.url.clone(), "SELECT v FROM h".into(), settings.clone()).await["query_id"]
        .as_str()
        .unwrap()
        .to_string();
    ids.push(posted_id.clone());
    let current_url = Arc::new(Mutex::new(server.url.clone()));
    let stop_posting = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poster = tokio::spawn(post_through_crashes(current_url.clone(), stop_posting.clone()));
    let seen: Vec<Arc<Mutex<Seen>>> = ids.iter().map(|_| Arc::default()).collect();
    let mut restored_with_state = 0;
    let mut recoveries = Vec::new();
    for pause in pauses(kills, during_recovery_every) {
        let readers: Vec<_> = ids
            .iter()
            .zip(&seen)
            .filter(|(_, seen)| !seen.lock().unwrap().ended)
            .map(|(id, seen)| {
                // Start a little before the last row seen: those rows must
                // come again exactly as they were.
                let from = next_seq(&seen.lock().unwrap()).saturating_sub(25);
                let url = format!("{}/v1/queries/{id}/ws?from_seq={from}", server.url.replace("http", "ws"));
                tokio::spawn(subscribe(url, seen.clone()))
            })
            .collect();
        tokio::time::sleep(pause).await;
        eprintln!("crash test: kill -9 after {pause:?}");
        server.kill();
        for reader in readers {
            let _ = reader.await;
        }
        let restarted = std::time::Instant::now();
        server = ChildServer::start(&dir);
        recoveries.push(restarted.elapsed());
        *current_url.lock().unwrap() = server.url.clone();
        for id in &ids {
            let status: Value =
                http.get(format!("{}/v1/queries/{id}", server.url)).send().await.unwrap().json().await.unwrap();
            assert_ne!(status["status"], "failed", "{status}");
            if status["checkpoint"]["restored_from"].as_u64().is_some_and(|id| id > 0) {
                restored_with_state += 1;
            }
        }
    }
    stop_posting.store(true, std::sync::atomic::Ordering::SeqCst);
    let (acknowledged, unanswered) = poster.await.unwrap();
    eprintln!("crash test: reading to the end");
    // The http query never ends: read it until every row it has put out.
    let posted_seen = seen.last().unwrap().clone();
    let posted_url = format!("{}/v1/queries/{posted_id}", server.url);
    let reader = {
        let from = next_seq(&posted_seen.lock().unwrap());
        let url = format!("{}/ws?from_seq={from}", posted_url.replace("http", "ws"));
        tokio::spawn(subscribe(url, posted_seen.clone()))
    };
    // Until the last acknowledged event is out and every row read (some
    // unanswered ones may be in the log too, so counting is not enough).
    let last = acknowledged.last().copied();
    let mut rows_out = 0;
    for _ in 0..1000 {
        let status: Value = http.get(&posted_url).send().await.unwrap().json().await.unwrap();
        rows_out = status["metrics"]["rows_out"].as_u64().unwrap();
        let done = {
            let posted = posted_seen.lock().unwrap();
            let has_last = last.is_none_or(|last| posted.rows.values().any(|(row, _)| row["v"] == last));
            has_last && posted.rows.len() as u64 >= rows_out
        };
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    reader.abort();
    {
        let posted = posted_seen.lock().unwrap();
        assert!(posted.mismatches.is_empty(), "http rows changed after recovery: {:?}", &posted.mismatches[..1]);
        assert_eq!(next_seq(&posted), posted.rows.len() as u64, "http rows are missing");
        assert_eq!(posted.rows.len() as u64, rows_out);
        let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
        for (row, _) in posted.rows.values() {
            *counts.entry(row["v"].as_i64().unwrap()).or_default() += 1;
        }
        let missing: Vec<_> = acknowledged.iter().filter(|v| !counts.contains_key(v)).collect();
        assert!(missing.is_empty(), "acknowledged events missing: {missing:?} of {}", acknowledged.len());
        for v in &acknowledged {
            assert_eq!(counts.remove(v), Some(1), "acknowledged event {v}");
        }
        for v in &unanswered {
            assert!(counts.remove(v).is_none_or(|count| count == 1), "unanswered event {v} twice");
        }
        assert!(counts.is_empty(), "events never posted: {counts:?}");
        eprintln!(
            "crash test: {} http events acknowledged, each once; {} unanswered",
            acknowledged.len(),
            unanswered.len()
        );
    }
    // No more crashes: read every query to its end.
    let readers: Vec<_> = ids[..QUERIES.len()]
        .iter()
        .zip(&seen)
        .filter(|(_, seen)| !seen.lock().unwrap().ended)
        .map(|(id, seen)| {
            let from = next_seq(&seen.lock().unwrap());
            let url = format!("{}/v1/queries/{id}/ws?from_seq={from}", server.url.replace("http", "ws"));
            tokio::spawn(subscribe(url, seen.clone()))
        })
        .collect();
    for reader in readers {
        tokio::time::timeout(Duration::from_secs(120), reader).await.expect("queries finish").unwrap();
    }
    server.kill();

    eprintln!("crash test: the reference run");
    // The same queries without crashes (and without pacing: event time is
    // a function of the record number, not of the clock).
    let reference = TestServer::start().await;
    assert_eq!(reference.sql(&streams(false, rows)).await.0, 200);
    for (index, (query, updating)) in QUERIES.iter().enumerate() {
        let seen = std::mem::take(&mut *seen[index].lock().unwrap());
        assert!(seen.ended, "query {} did not end", ids[index]);
        assert!(seen.mismatches.is_empty(), "rows changed after recovery: {:?}", &seen.mismatches[..1]);
        let count = seen.rows.len() as u64;
        assert_eq!(next_seq(&seen), count, "rows are missing: {count} rows, last seq {}", next_seq(&seen) - 1);
        let (_, body) = reference.sql(query).await;
        let id = body["query_id"].as_str().unwrap();
        let expected = Arc::new(Mutex::new(Seen::default()));
        subscribe(reference.ws_url(&format!("/v1/queries/{id}/ws")), expected.clone()).await;
        let expected = expected.lock().unwrap();
        assert!(expected.ended && !expected.rows.is_empty());
        if !updating {
            assert_eq!(count, expected.rows.len() as u64, "query {}: row count", ids[index]);
        }
        assert_eq!(
            final_rows(seen.rows.values().cloned()),
            final_rows(expected.rows.values().cloned()),
            "query {} ({query})",
            ids[index]
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    CrashFigures { restored_with_state, recoveries }
}

/// The REPL follows a query through a crash: when the server comes back
/// (on the same address) it resumes after the last row it printed, so each
/// row is printed exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_repl_resumes_a_query_after_the_server_crashes() {
    let dir = std::env::temp_dir().join(format!("sluice-crash-repl-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let server = ChildServer::start(&dir);
    let url = server.url.clone();
    let mut client = sluice::repl::Client::new(&url);
    let mut out = Vec::new();
    let ddl = "CREATE STREAM gen (ts TIMESTAMP, status INT, WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
               WITH (connector = 'generator', rate = '300', rows = '900', seed = '5');
               SET checkpoint_interval = '200ms';";
    client.run(ddl, &mut out, std::future::pending()).await.expect("DDL runs");
    let repl = tokio::spawn(async move {
        let mut out = Vec::new();
        client.run("SELECT ts, status FROM gen;", &mut out, std::future::pending()).await.expect("the REPL runs");
        String::from_utf8(out).unwrap()
    });
    tokio::time::sleep(Duration::from_millis(1200)).await;
    server.kill();
    let address = url.trim_start_matches("http://").to_string();
    let server = ChildServer::start_at(&dir, &address);
    let output = tokio::time::timeout(Duration::from_secs(120), repl).await.expect("the query finishes").unwrap();
    let status: Value = reqwest::get(format!("{url}/v1/queries/q1")).await.unwrap().json().await.unwrap();
    server.kill();
    // 900 generated rows less those the watermark found late.
    let rows = status["metrics"]["rows_out"].as_u64().unwrap();
    let late = status["metrics"]["late_rows_dropped"].as_u64().unwrap();
    assert_eq!(rows + late, 900, "{status}");
    assert!(output.contains("(connection lost; resuming from row "), "{output}");
    let end = format!("(query q1 finished: {rows} rows)");
    assert!(output.trim_end().ends_with(&end), "{}", &output[output.len().saturating_sub(300)..]);
    // Each row printed once: as many distinct timestamps as rows.
    let lines: std::collections::BTreeSet<&str> = output.lines().filter(|line| line.starts_with("| 2016-")).collect();
    assert_eq!(lines.len() as u64, rows);
    let _ = std::fs::remove_dir_all(&dir);
}
