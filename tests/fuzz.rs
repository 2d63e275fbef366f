//! Fuzz targets: what user input reaches, given arbitrary bytes. Each must
//! return (an error is fine), never panic or hang. `fuzz/` runs them under
//! libFuzzer (`cargo fuzz`); the e2e suite replays the corpus kept in
//! `fuzz/corpus/<target>/` through the same functions on every run.
//!
//! - [`sql`]: parse, plan and run every statement kind on a fresh engine
//!   (DDL, SET/SHOW, EXPLAIN, INSERT, continuous queries with windows,
//!   joins and MATCH_RECOGNIZE).
//! - [`records`]: the text, CSV and JSON-lines decoders, with projections.
//! - [`http`]: the HTTP API's router (every route, with odd methods,
//!   paths, query strings and bodies); a method byte of 6 or more makes the
//!   rest a websocket's first message (`{"sql": ..., "where": ...}`).
//! - [`pgwire`]: Postgres frontend messages in each connection state, and
//!   the statement splitting and parameter binding of the endpoint.
//! - [`storage`]: checkpoint state files, manifests, input logs, event log
//!   segments and catalogs read back from a data directory.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use sluice::engine::Engine;
use sluice_runtime::source::{Format, HttpIngest, RecordDecoder};

/// A fuzz target: arbitrary bytes in, nothing out (but no panic).
pub type Target = fn(&[u8]);

/// The targets by name, as `fuzz/fuzz_targets/<name>.rs` call them.
pub const TARGETS: &[(&str, Target)] =
    &[("sql", sql), ("records", records), ("http", http), ("pgwire", pgwire), ("storage", storage)];

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("a runtime")
    })
}

const CATALOG: &str = "
CREATE STREAM ev (ts TIMESTAMP, k VARCHAR, v INT, d DOUBLE, WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
  WITH (connector = 'http');
CREATE STREAM other (ts TIMESTAMP, k VARCHAR, n BIGINT, WATERMARK FOR ts AS ts) WITH (connector = 'http');
CREATE TABLE owners (k VARCHAR PRIMARY KEY, owner VARCHAR);
INSERT INTO owners VALUES ('a', 'ann'), ('b', 'bob');
";

/// An engine with two http streams and a table, as a user would have.
async fn engine() -> Arc<Engine> {
    let engine = Arc::new(Engine::new());
    engine.execute(CATALOG, &mut Default::default()).await.expect("the fuzz catalog");
    engine
}

/// Stops what an input started: queries, and the tasks they spawned.
fn drop_queries(engine: &Engine) {
    for query in engine.queries() {
        engine.drop_query(&query.id);
    }
}

/// SQL text through the engine, as `POST /v1/sql` runs it.
pub fn sql(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    runtime().block_on(async {
        let engine = engine().await;
        let _ = engine.execute(text, &mut Default::default()).await;
        drop_queries(&engine);
    });
}

fn record_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), false),
        Field::new("ip", DataType::Utf8, true),
        Field::new("status", DataType::Int32, true),
        Field::new("d", DataType::Float64, true),
        Field::new("ok", DataType::Boolean, true),
        Field::new("n", DataType::Int64, true),
        Field::new("at", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        Field::new("day", DataType::Date32, true),
    ]))
}

/// Record lines through a decoder: the first byte picks the format, the
/// second the columns read; the rest are the lines.
pub fn records(data: &[u8]) {
    let [format, columns, lines @ ..] = data else { return };
    let format = match format % 5 {
        0 => Format::Text { delimiter: " ".into() },
        1 => Format::Text { delimiter: "||".into() },
        2 => Format::Csv { delimiter: ',', header: false },
        3 => Format::Csv { delimiter: ';', header: true },
        _ => Format::Json,
    };
    let read: Vec<usize> = (0..8).filter(|bit| columns & (1 << bit) != 0).collect();
    let decoder = RecordDecoder::new(record_schema(), format).reading(&read);
    if let Ok(decoded) = decoder.decode_bytes(lines) {
        assert!(decoded.rows.num_rows() + decoded.malformed <= lines.split(|byte| *byte == b'\n').count() + 1);
    }
    if let Ok(text) = std::str::from_utf8(lines) {
        let _ = decoder.decode(&text.lines().map(str::to_string).collect::<Vec<_>>());
    }
}

/// One HTTP request to the API's router: the first byte picks the method,
/// then the path (with its query string) to the first newline, then the
/// body.
pub fn http(data: &[u8]) {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;
    let [method, rest @ ..] = data else { return };
    if *method >= 6 {
        let Ok(text) = std::str::from_utf8(rest) else { return };
        runtime().block_on(async {
            let engine = engine().await;
            sluice::ws::fuzz_first_message(&engine, text).await;
            drop_queries(&engine);
        });
        return;
    }
    let method = ["GET", "POST", "DELETE", "PUT", "PATCH", "OPTIONS"][*method as usize];
    let (path, body) = match rest.iter().position(|byte| *byte == b'\n') {
        Some(newline) => (&rest[..newline], &rest[newline + 1..]),
        None => (rest, &[][..]),
    };
    let Ok(path) = std::str::from_utf8(path) else { return };
    let uri = if path.starts_with('/') { path.to_string() } else { format!("/{path}") };
    let Ok(request) = Request::builder()
        .method(method)
        .uri(&uri)
        .header("content-type", "application/json")
        .header("host", "127.0.0.1")
        .body(Body::from(body.to_vec()))
    else {
        return;
    };
    runtime().block_on(async {
        let engine = engine().await;
        let state = Arc::new(sluice::state::AppState { engine: engine.clone(), max_body_bytes: 1 << 20, token: None });
        let Ok(response) = sluice::http::router(state).oneshot(request).await;
        let _ = axum::body::to_bytes(response.into_body(), 1 << 24).await;
        drop_queries(&engine);
    });
}

/// Postgres frontend messages.
pub fn pgwire(data: &[u8]) {
    sluice::pgwire::fuzz_frontend_messages(data);
}

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sluice-fuzz-storage-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

/// What a data directory holds, damaged: the first byte picks the file the
/// rest becomes (operator state, a manifest, an input log, an event log
/// segment, a catalog), which is then read back as on a restart.
pub fn storage(data: &[u8]) {
    let [kind, bytes @ ..] = data else { return };
    match kind % 5 {
        0 => {
            let _ = sluice_runtime::state::OperatorState::decode(bytes);
        }
        kind @ (1 | 2) => {
            use sluice_runtime::checkpoint::{CheckpointConfig, CheckpointStore, Fsync};
            let dir = scratch();
            let checkpoint = dir.join("checkpoint-00000000");
            std::fs::create_dir_all(&checkpoint).expect("scratch");
            if kind == 1 {
                std::fs::write(checkpoint.join("manifest.json"), bytes).expect("scratch");
            } else {
                let manifest = format!(
                    r#"{{"format_version":1,"id":0,"taken_at_ms":0,"plan":["filter"],"sources":[{{"position":0,"max_event_time":null,"ended":false,"idle":false}}],"last_clock":0,"counters":{{"rows_in":0,"rows_out":0,"epochs":0,"late_rows_dropped":0,"malformed_records":0,"watermark":0}},"files":[{{"name":"node-0.state","bytes":{},"crc32":{}}},{{"name":"output.state","bytes":{},"crc32":{}}}]}}"#,
                    bytes.len(),
                    crc32fast::hash(bytes),
                    bytes.len(),
                    crc32fast::hash(bytes),
                );
                std::fs::write(checkpoint.join("manifest.json"), manifest).expect("scratch");
                std::fs::write(checkpoint.join("node-0.state"), bytes).expect("scratch");
                std::fs::write(checkpoint.join("output.state"), bytes).expect("scratch");
                std::fs::write(dir.join("input-00000000.log"), bytes).expect("scratch");
            }
            let config =
                CheckpointConfig { dir: dir.clone(), interval: std::time::Duration::from_secs(1), fsync: Fsync::Never };
            if let Ok(mut store) = CheckpointStore::new(config) {
                let _ = store.load(&["filter".to_string()]);
                let _ = store.kept_positions();
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
        3 => {
            let dir = scratch();
            std::fs::write(dir.join("events-00000000000000000000.log"), bytes).expect("scratch");
            let ingest = HttpIngest::new(64, 0);
            if ingest.open_log(&dir, sluice_runtime::Fsync::Never).is_ok() {
                let end = ingest.position();
                assert!(end <= bytes.len() as u64, "a log reads no more than it holds");
                let _ = ingest.logged_since(0);
                let _ = ingest.logged_since(end / 2);
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
        _ => {
            let dir = scratch();
            std::fs::write(dir.join("catalog.json"), bytes).expect("scratch");
            let _ = sluice::persist::load(&dir);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
