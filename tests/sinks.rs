//! Sinks and materialized views through the engine and the real server:
//! file sinks written exactly once through a crash and read back with
//! DataFusion (jsonl, csv) and Parquet's Arrow reader; a materialized view
//! answering SELECT, serving a snapshot then changes over the websocket,
//! and surviving a restart; SHOW SINKS; bad sinks refused.

use std::path::{Path, PathBuf};
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::prelude::{CsvReadOptions, JsonReadOptions, SessionContext};
use serde_json::{Value, json};
use sluice::engine::{Engine, Limits, StatementResult};
use sluice::settings::Settings;
use sluice_tests::{TestServer, batch_sql_rows, data_dir};

const WEBLOG: &str = "CREATE STREAM weblog (
  ts TIMESTAMP, ip VARCHAR, status INT, method VARCHAR, url VARCHAR, duration DOUBLE,
  WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'file', path = '$DATA/weblog.log', format = 'text', delimiter = ' ', batch_rows = '1')";

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sluice-sinks-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| entries.map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// Waits until query `id` is no longer running; its status.
async fn wait_stopped(engine: &Engine, id: &str) -> String {
    for _ in 0..600 {
        let status = engine.query(id).expect("the query is listed").handle.status();
        if status != sluice_runtime::QueryStatus::Running {
            return format!("{status:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("query {id} did not stop");
}

/// The committed files' rows, read back by DataFusion (Parquet by its
/// Arrow reader), sorted.
async fn read_back(dir: &Path, format: &str) -> Vec<Vec<String>> {
    let context = SessionContext::new();
    let path = dir.display().to_string();
    match format {
        "jsonl" => {
            let options = JsonReadOptions { file_extension: ".jsonl", ..Default::default() };
            context.register_json("out", &path, options).await.expect("DataFusion reads the jsonl files");
        }
        "csv" => {
            let options = CsvReadOptions::new().file_extension(".csv").has_header(true);
            context.register_csv("out", &path, options).await.expect("DataFusion reads the csv files");
        }
        _ => {
            let mut batches: Vec<RecordBatch> = Vec::new();
            for name in files(dir).iter().filter(|name| name.ends_with(".parquet")) {
                let file = std::fs::File::open(dir.join(name)).unwrap();
                let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                    .unwrap()
                    .build()
                    .unwrap();
                batches.extend(reader.map(Result::unwrap));
            }
            let schema = batches[0].schema();
            let table = datafusion::datasource::MemTable::try_new(schema, vec![batches]).unwrap();
            context.register_table("out", std::sync::Arc::new(table)).unwrap();
        }
    }
    batch_sql_rows(&context, "SELECT ip, CAST(status AS BIGINT), url FROM out").await
}

/// A file sink over a file stream, one event per epoch and a checkpoint
/// after each; with `crash`, the query stops abruptly after 5 events and a
/// new engine on the same data directory finishes it.
async fn run_sink(format: &str, crash: bool) -> (Vec<Vec<String>>, Vec<String>) {
    let data = temp(&format!("data-{format}-{crash}"));
    let out = temp(&format!("out-{format}-{crash}"));
    let mut settings = Settings::new();
    settings.insert("checkpoint_interval".into(), "0.001ms".into());
    settings.insert("epoch_interval".into(), "0".into());
    let limits = Limits { parallelism: 1, ..Limits::default() };
    let mut engine = Engine::open_with(&data, sluice_runtime::Fsync::default(), limits.clone()).await.unwrap();
    if crash {
        engine.halt_queries_after(5);
    }
    let weblog = WEBLOG.replace("$DATA", &data_dir().display().to_string());
    engine.execute(&weblog, &mut settings).await.unwrap();
    let sink = format!(
        "CREATE SINK errors INTO FILE (path = '{}', format = '{format}', rollover = 2) AS SELECT ip, status, url FROM weblog WHERE status >= 200",
        out.display()
    );
    let results = engine.execute(&sink, &mut settings).await.unwrap();
    let Some(StatementResult::Query { id, .. }) = results.last() else { panic!("CREATE SINK starts a query") };
    let status = wait_stopped(&engine, id).await;
    let mut seen_mid_crash = Vec::new();
    if crash {
        assert!(status.contains(sluice_runtime::driver::HALTED), "{status}");
        seen_mid_crash = files(&out);
        drop(engine);
        let engine = Engine::open_with(&data, sluice_runtime::Fsync::default(), limits).await.unwrap();
        assert_eq!(wait_stopped(&engine, id).await, "Finished");
    } else {
        assert_eq!(status, "Finished");
    }
    let rows = read_back(&out, format).await;
    assert!(files(&out).iter().all(|name| !name.starts_with('.')), "nothing half-written is left: {:?}", files(&out));
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_dir_all(&out);
    (rows, seen_mid_crash)
}

#[tokio::test]
async fn file_sinks_write_every_row_once_through_a_crash() {
    for format in ["jsonl", "csv", "parquet"] {
        let (uncrashed, _) = run_sink(format, false).await;
        // The weblog's rows with a valid status, but the late one.
        assert_eq!(uncrashed.len(), 12, "{format}: {uncrashed:?}");
        assert!(uncrashed.contains(&vec!["10.0.0.3".into(), "503".into(), "/c".into()]), "{format}");
        let (crashed, mid_crash) = run_sink(format, true).await;
        assert_eq!(crashed, uncrashed, "{format}: the crashed run wrote other rows");
        let committed = mid_crash.iter().filter(|name| !name.starts_with('.')).count();
        assert!((1..6).contains(&committed), "{format}: files at the crash {mid_crash:?}");
    }
}

#[tokio::test]
async fn bad_sinks_are_refused_with_a_position() {
    let server = TestServer::start().await;
    assert_eq!(server.sql(WEBLOG).await.0, 200);
    let cases = [
        ("CREATE SINK s INTO FILE (format = 'csv') AS SELECT ip FROM weblog", "needs path"),
        ("CREATE SINK s INTO FILE (path = '/tmp/x', format = 'xml') AS SELECT ip FROM weblog", "not \"xml\""),
        (
            "CREATE SINK s INTO FILE (path = '/proc/sluice/no', format = 'csv') AS SELECT ip FROM weblog",
            "cannot create the sink directory",
        ),
        ("CREATE SINK s INTO S3 (path = 'x') AS SELECT ip FROM weblog", "INTO FILE or INTO KAFKA"),
        ("CREATE SINK s INTO FILE (path = '/tmp/x', rollover = 'soon') AS SELECT ip FROM weblog", "rollover"),
        ("CREATE SINK s INTO FILE (path = '/tmp/x') AS SELECT nope FROM weblog", "nope"),
    ];
    for (sql, message) in cases {
        let (status, body) = server.sql(sql).await;
        assert_eq!(status, 400, "{sql}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(message), "{sql}: {body}");
        assert_eq!(body["error"]["line"], 1, "{sql}: {body}");
    }
    let (_, sinks) = server.sql("SHOW SINKS").await;
    assert_eq!(sinks["rows"], json!([]));
}

/// Polls `sql` until its rows are `expected`.
async fn wait_rows(server: &TestServer, sql: &str, expected: Value) {
    let mut last = Value::Null;
    for _ in 0..300 {
        let (status, body) = server.sql(sql).await;
        assert_eq!(status, 200, "{body}");
        if body["rows"] == expected {
            return;
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{sql}: expected {expected}, last {last}");
}

async fn post(server: &TestServer, lines: &str) {
    let response =
        server.http.post(server.url("/v1/streams/clicks/events")).body(lines.to_string()).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_materialized_view_serves_its_result_and_survives_a_restart() {
    let dir = temp("mv");
    let server = TestServer::start_with(Some(&dir)).await;
    let (status, body) = server
        .sql(
            "CREATE STREAM clicks (user_id VARCHAR, n INT) WITH (connector = 'http');
             CREATE VIEW big_clicks AS SELECT user_id, n FROM clicks WHERE n >= 10;
             CREATE MATERIALIZED VIEW per_user AS SELECT user_id, count(*) AS clicks, sum(n) AS total FROM big_clicks GROUP BY user_id",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][2]["query_id"], "q1");
    post(&server, "{\"user_id\":\"ann\",\"n\":10}\n{\"user_id\":\"bob\",\"n\":20}\n{\"user_id\":\"ann\",\"n\":1}\n")
        .await;
    wait_rows(&server, "SELECT * FROM per_user ORDER BY user_id", json!([["ann", 1, 10], ["bob", 1, 20]])).await;
    wait_rows(&server, "SELECT sum(total) AS total FROM per_user", json!([[30]])).await;

    // A subscriber: the current result, then each change.
    let mut subscription =
        sluice::client::Subscription::connect(&server.ws_url("/v1/queries/q1/ws")).await.expect("subscribes");
    let schema = subscription.next_json().await.unwrap().unwrap();
    assert_eq!(schema["type"], "schema");
    let snapshot = subscription.next_json().await.unwrap().unwrap();
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    assert_eq!(
        snapshot["rows"],
        json!([{"user_id": "ann", "clicks": 1, "total": 10}, {"user_id": "bob", "clicks": 1, "total": 20}])
    );
    post(&server, "{\"user_id\":\"ann\",\"n\":15}\n").await;
    let change = loop {
        let frame = subscription.next_json().await.unwrap().unwrap();
        if frame["type"] == "rows" {
            break frame;
        }
    };
    assert_eq!(change["seq"], snapshot["next_seq"]);
    assert_eq!(change["ops"], json!(["-", "+"]));
    assert_eq!(change["rows"][1], json!({"user_id": "ann", "clicks": 2, "total": 25}));

    // `SELECT * FROM per_user` submitted on a websocket: the same snapshot,
    // from the view's own query (closing the socket leaves it running).
    let base = format!("ws://{}", server.server.address);
    let mut submitted =
        sluice::client::Subscription::submit(&base, &json!({"sql": "SELECT * FROM per_user"})).await.expect("submits");
    let schema = submitted.next_json().await.unwrap().unwrap();
    assert_eq!(schema["query_id"], "q1", "{schema}");
    let snapshot = submitted.next_json().await.unwrap().unwrap();
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    assert_eq!(snapshot["rows"][0], json!({"user_id": "ann", "clicks": 2, "total": 25}));
    submitted.close().await;
    drop(submitted);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_, query) = server.get("/v1/queries/q1").await;
    assert_eq!(query["status"], "running", "{query}");

    let (_, views) = server.sql("SHOW VIEWS").await;
    let names: Vec<(Value, Value)> =
        views["rows"].as_array().unwrap().iter().map(|row| (row[0].clone(), row[1].clone())).collect();
    assert_eq!(names, [(json!("big_clicks"), json!("view")), (json!("per_user"), json!("materialized view"))]);
    drop(subscription);
    drop(server);

    let server = TestServer::start_with(Some(&dir)).await;
    wait_rows(&server, "SELECT * FROM per_user ORDER BY user_id", json!([["ann", 2, 25], ["bob", 1, 20]])).await;
    let (status, body) = server.sql("DROP VIEW big_clicks").await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"].as_str().unwrap().contains("materialized view per_user reads big_clicks"),
        "{body}"
    );
    assert_eq!(server.sql("DROP MATERIALIZED VIEW per_user").await.0, 200);
    assert_eq!(server.sql("DROP VIEW big_clicks").await.0, 200);
    let (_, views) = server.sql("SHOW VIEWS").await;
    assert_eq!(views["rows"], json!([]));
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
