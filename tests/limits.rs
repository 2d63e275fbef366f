//! Limits turn what would exhaust the server into clear errors, and the
//! queries already running go on: SQL text size, statements per request,
//! running queries (429) and subscribers per query and in total (429 on
//! the websocket, SQLSTATE 53000 over pgwire).

use serde_json::{Value, json};
use sluice::client::{ClientError, Subscription};

async fn server() -> sluice::RunningServer {
    let limits = sluice::engine::Limits {
        max_sql_bytes: 2000,
        max_statements: 3,
        max_queries: 2,
        max_subscribers_per_query: 2,
        max_subscribers: 3,
        max_retained_rows: 100_000,
        max_state_bytes: None,
        max_connections: 64,
        parallelism: 1,
    };
    let options = sluice::Options { pg_address: Some("127.0.0.1:0".into()), limits, ..sluice::Options::default() };
    sluice::start_with("127.0.0.1:0", None, &options).await.expect("server starts")
}

async fn sql(server: &sluice::RunningServer, text: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/sql", server.url()))
        .json(&json!({"sql": text}))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

fn refused_with(error: Option<ClientError>) -> (u16, Value) {
    match error {
        Some(ClientError::Refused { status, body }) => (status, serde_json::from_str(&body).unwrap()),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_refuse_clearly_and_disturb_nothing() {
    let server = server().await;
    let ddl = "CREATE STREAM ev (ts TIMESTAMP, n INT, WATERMARK FOR ts AS ts) WITH (connector = 'http')";
    assert_eq!(sql(&server, ddl).await.0, 200);

    let long = format!("SELECT n FROM ev WHERE {}", vec!["n > 0"; 400].join(" AND "));
    let (status, body) = sql(&server, &long).await;
    assert_eq!((status, body["error"]["code"].as_str()), (413, Some("payload_too_large")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("at most 2000 (--max-sql-bytes)"), "{body}");
    let (status, body) = sql(&server, "SET retained_rows = '1000000'; SELECT n FROM ev").await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("--max-retained-rows"), "{body}");
    let (status, body) = sql(&server, "SHOW STREAMS; SHOW STREAMS; SHOW STREAMS; SHOW STREAMS").await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("4 statements in one request"), "{body}");

    // Two queries run; a third is refused with the limit, then starts once
    // one is cancelled.
    let (_, first) = sql(&server, "SELECT n FROM ev").await;
    let (_, second) = sql(&server, "SELECT n + 1 AS m FROM ev").await;
    let (status, body) = sql(&server, "SELECT n FROM ev WHERE n > 1").await;
    assert_eq!((status, body["error"]["code"].as_str()), (429, Some("too_many")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("--max-queries 2"), "{body}");
    let first_id = first["query_id"].as_str().unwrap().to_string();
    let second_id = second["query_id"].as_str().unwrap().to_string();
    let ws = |id: &str| format!("ws://{}/v1/queries/{id}/ws", server.address);

    // Two subscribers of the first query; a third is refused.
    let _a = Subscription::connect(&ws(&first_id)).await.unwrap();
    let _b = Subscription::connect(&ws(&first_id)).await.unwrap();
    let (status, body) = refused_with(Subscription::connect(&ws(&first_id)).await.err());
    assert_eq!(status, 429);
    assert!(body["error"]["message"].as_str().unwrap().contains("--max-subscribers-per-query 2"), "{body}");
    // Over pgwire too.
    let port = server.pg_address.unwrap().port().to_string();
    let output = tokio::process::Command::new("psql")
        .args(["-X", "-h", "127.0.0.1", "-p", &port, "-U", "u", "-d", "d", "-v", "VERBOSITY=verbose"])
        .args(["-c", &format!("COPY (SUBSCRIBE TO {first_id}) TO STDOUT")])
        .output()
        .await
        .expect("psql runs");
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("53000") && err.contains("--max-subscribers-per-query"), "{err}");
    // One more on the second query reaches the total of 3; then none.
    let _c = Subscription::connect(&ws(&second_id)).await.unwrap();
    let (status, body) = refused_with(Subscription::connect(&ws(&second_id)).await.err());
    assert_eq!(status, 429);
    assert!(body["error"]["message"].as_str().unwrap().contains("--max-subscribers 3"), "{body}");

    // The queries ran on; cancelling one makes room for a new one.
    let events = json!([{"ts": "2024-01-01T00:00:01", "n": 5}]);
    let client = reqwest::Client::new();
    let posted: Value = client
        .post(format!("{}/v1/streams/ev/events", server.url()))
        .json(&events)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(posted["queries"], 2, "{posted}");
    client.delete(format!("{}/v1/queries/{second_id}", server.url())).send().await.unwrap();
    let (status, body) = sql(&server, "SELECT n FROM ev WHERE n > 1").await;
    assert_eq!(status, 200, "{body}");
}

/// A query whose operators hold more than `--max-state-bytes` fails with
/// `state_limit_exceeded`, naming its largest operator; others run on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_over_its_state_limit_fails_alone() {
    let limits = sluice::engine::Limits { max_state_bytes: Some(4096), ..sluice::engine::Limits::default() };
    let options = sluice::Options { limits, ..sluice::Options::default() };
    let server = sluice::start_with("127.0.0.1:0", None, &options).await.unwrap();
    let ddl = "CREATE STREAM gen (ts TIMESTAMP, ip VARCHAR, status INT, WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
               WITH (connector = 'generator', kind = 'weblog', rate = '2000', hosts = '5000', seed = '9')";
    assert_eq!(sql(&server, ddl).await.0, 200);
    let (_, grouped) = sql(&server, "SELECT ip, count(*) AS n FROM gen GROUP BY ip").await;
    let (_, filtered) = sql(&server, "SELECT ip FROM gen WHERE status >= 500").await;
    let report = |id: &str| {
        let url = format!("{}/v1/queries/{id}", server.url());
        async move { reqwest::get(url).await.unwrap().json::<Value>().await.unwrap() }
    };
    let grouped_id = grouped["query_id"].as_str().unwrap();
    let mut failed = Value::Null;
    for _ in 0..200 {
        failed = report(grouped_id).await;
        if failed["status"] == "failed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(failed["status"], "failed", "{failed}");
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains("state_limit_exceeded") && error.contains("group_aggregate"), "{error}");
    assert_eq!(report(filtered["query_id"].as_str().unwrap()).await["status"], "running");
}

/// A flood of connections: past `--max-connections` (shared by HTTP and
/// Postgres) each is answered with a clear error and closed; what is
/// already connected goes on, and once they leave there is room again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_are_refused_and_disturb_nothing() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let limits = sluice::engine::Limits { max_connections: 8, ..sluice::engine::Limits::default() };
    let options = sluice::Options { pg_address: Some("127.0.0.1:0".into()), limits, ..sluice::Options::default() };
    let server = sluice::start_with("127.0.0.1:0", None, &options).await.unwrap();
    let pg_port = server.pg_address.unwrap().port().to_string();
    // A websocket subscriber, connected before the flood.
    assert_eq!(
        sql(&server, "CREATE STREAM ev (ts TIMESTAMP, n INT, WATERMARK FOR ts AS ts) WITH (connector = 'http')")
            .await
            .0,
        200
    );
    let mut subscriber = sluice::client::Subscription::connect(&format!(
        "ws://{}/v1/subscribe?sql=SELECT%20n%20FROM%20ev",
        server.address
    ))
    .await
    .unwrap();
    assert_eq!(subscriber.next_json().await.unwrap().unwrap()["type"], "schema");
    // Idle connections take the other seven places (a Postgres one among them).
    let mut idle = Vec::new();
    for _ in 0..6 {
        idle.push(tokio::net::TcpStream::connect(server.address).await.unwrap());
    }
    idle.push(tokio::net::TcpStream::connect(server.pg_address.unwrap()).await.unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    // The ninth: HTTP gets a 503 too_many, Postgres a 53300.
    for _ in 0..50 {
        let mut extra = tokio::net::TcpStream::connect(server.address).await.unwrap();
        let _ = extra.write_all(b"GET /v1/streams HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let mut answer = String::new();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), extra.read_to_string(&mut answer)).await;
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.contains("\"too_many\"") && answer.contains("--max-connections 8"), "{answer}");
    }
    let output = tokio::process::Command::new("psql")
        .args(["-X", "-h", "127.0.0.1", "-p", &pg_port, "-U", "sluice", "-c", "SELECT 1"])
        .output()
        .await
        .expect("psql runs");
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && err.contains("--max-connections 8"), "{err}");
    // The subscriber connected before still gets its rows.
    let posted = reqwest_free_post(&server).await;
    assert!(posted.starts_with("HTTP/1.1 503"), "no room for the post either: {posted}");
    drop(idle);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let response = reqwest::Client::new()
        .post(format!("{}/v1/streams/ev/events", server.url()))
        .body(r#"{"ts": "2026-01-01T00:00:00", "n": 5}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let rows = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            let frame = subscriber.next_json().await.unwrap().unwrap();
            if frame["type"] == "rows" {
                return frame["rows"].clone();
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(rows, serde_json::json!([{"n": 5}]));
    let output = tokio::process::Command::new("psql")
        .args(["-X", "-A", "-t", "-h", "127.0.0.1", "-p", &pg_port, "-U", "sluice", "-c", "SELECT 1"])
        .output()
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "1");
}

/// One POST on a fresh connection, read raw (no pooled client).
async fn reqwest_free_post(server: &sluice::RunningServer) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(server.address).await.unwrap();
    let body = r#"{"ts": "2026-01-01T00:00:00", "n": 1}"#;
    let request =
        format!("POST /v1/streams/ev/events HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    let _ = socket.write_all(request.as_bytes()).await;
    let mut answer = String::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), socket.read_to_string(&mut answer)).await;
    answer
}
