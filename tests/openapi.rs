//! `GET /openapi.json` describes the API as it is: real responses of every
//! endpoint (successes and errors) and real websocket frames are validated
//! against it with a JSON-schema validator (Python's `jsonschema`), and the
//! request body limit answers 413.

use std::time::Duration;

use serde_json::{Value, json};
use sluice::client::Subscription;
use sluice_tests::TestServer;
use tokio::process::Command;

/// One observed response: which operation, its status and body.
struct Case {
    path: &'static str,
    method: &'static str,
    status: u16,
    body: Value,
}

async fn call(server: &TestServer, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let request = match method {
        "get" => server.http.get(server.url(path)),
        "delete" => server.http.delete(server.url(path)),
        _ => server.http.post(server.url(path)).json(&body.unwrap_or(Value::Null)),
    };
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn real_responses_and_frames_match_the_openapi_document() {
    let options = sluice::Options { max_body_bytes: 64 * 1024, ..sluice::Options::default() };
    let server = sluice::start_with("127.0.0.1:0", None, &options).await.unwrap();
    let server = TestServer { server, http: reqwest::Client::new() };
    let mut cases = Vec::new();
    let mut record = |path: &'static str, method: &'static str, (status, body): (u16, Value)| {
        cases.push(Case { path, method, status, body });
    };
    let sql = |text: &str| Some(json!({"sql": text, "settings": {"epoch_interval": "0"}}));
    let ddl = "CREATE STREAM ev (ts TIMESTAMP, user_id INT, WATERMARK FOR ts AS ts) WITH (connector = 'http')";
    record("/v1/sql", "post", call(&server, "post", "/v1/sql", sql(ddl)).await);
    record("/v1/sql", "post", call(&server, "post", "/v1/sql", sql("CREATE TABLE t (k INT, v VARCHAR)")).await);
    record("/v1/sql", "post", call(&server, "post", "/v1/sql", sql("INSERT INTO t VALUES (1, 'a')")).await);
    record("/v1/sql", "post", call(&server, "post", "/v1/sql", sql("SHOW STREAMS; DESCRIBE ev; SELECT 1")).await);
    let windowed = "SELECT window_end, user_id, count(*) AS n FROM TUMBLE(ev, ts, INTERVAL '10' SECOND) GROUP BY window_start, window_end, user_id";
    let started = call(&server, "post", "/v1/sql", sql(windowed)).await;
    let id = started.1["query_id"].as_str().unwrap().to_string();
    record("/v1/sql", "post", started);
    let events = json!([{"ts": "2024-01-01T00:00:01", "user_id": 1}, {"ts": "2024-01-01T00:00:12", "user_id": 2}]);
    record("/v1/streams/{name}/events", "post", call(&server, "post", "/v1/streams/ev/events", Some(events)).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    record("/v1/sql", "post", call(&server, "post", "/v1/sql", sql(&format!("EXPLAIN ANALYZE {id}"))).await);
    record("/v1/queries", "get", call(&server, "get", "/v1/queries", None).await);
    record("/v1/queries/{id}", "get", call(&server, "get", &format!("/v1/queries/{id}"), None).await);
    record("/v1/queries/{id}/plan", "get", call(&server, "get", &format!("/v1/queries/{id}/plan"), None).await);
    record("/v1/streams", "get", call(&server, "get", "/v1/streams", None).await);
    record("/openapi.json", "get", call(&server, "get", "/openapi.json", None).await);
    // Errors.
    record("/v1/sql", "post", call(&server, "post", "/v1/sql", sql("SELEC 1")).await);
    record("/v1/sql", "post", call(&server, "post", "/v1/sql", sql("SELECT x FROM nope")).await);
    record("/v1/sql", "post", call(&server, "post", "/v1/sql", Some(json!({"nosql": 1}))).await);
    record("/v1/sql", "post", call(&server, "post", "/v1/sql", sql("EXPLAIN ANALYZE q99")).await);
    record("/v1/queries/{id}", "get", call(&server, "get", "/v1/queries/q99", None).await);
    record("/v1/queries/{id}/plan", "get", call(&server, "get", "/v1/queries/q99/plan", None).await);
    record(
        "/v1/streams/{name}/events",
        "post",
        call(&server, "post", "/v1/streams/nope/events", Some(json!([{}]))).await,
    );
    record(
        "/v1/streams/{name}/events",
        "post",
        call(&server, "post", "/v1/streams/ev/events", Some(json!(["x"]))).await,
    );
    // Over the body limit, on both endpoints that take bodies.
    let big = "x".repeat(100 * 1024);
    let too_large = call(&server, "post", "/v1/sql", Some(json!({"sql": big}))).await;
    assert_eq!(too_large.0, 413, "{}", too_large.1);
    assert_eq!(too_large.1["error"]["code"], "payload_too_large");
    assert!(too_large.1["error"]["message"].as_str().unwrap().contains("65536 bytes"), "{}", too_large.1);
    record("/v1/sql", "post", too_large);
    let too_large = call(&server, "post", "/v1/streams/ev/events", Some(json!([{"ts": big}]))).await;
    assert_eq!(too_large.0, 413);
    record("/v1/streams/{name}/events", "post", too_large);
    record("/v1/queries/{id}", "delete", call(&server, "delete", &format!("/v1/queries/{id}"), None).await);
    record("/v1/queries/{id}", "delete", call(&server, "delete", &format!("/v1/queries/{id}"), None).await);

    // Websocket frames: schema, rows, heartbeat, progress, end; a gap; an error.
    let mut frames = Vec::new();
    let url = format!(
        "{}?sql={}&heartbeat_ms=100",
        server.ws_url("/v1/subscribe"),
        "SELECT%20user_id%2C%20count(*)%20AS%20n%20FROM%20ev%20GROUP%20BY%20user_id"
    );
    let mut live = Subscription::connect(&url).await.unwrap();
    frames.push(live.next_json().await.unwrap().unwrap());
    call(&server, "post", "/v1/streams/ev/events", Some(json!([{"ts": "2024-01-01T00:00:30", "user_id": 3}]))).await;
    for _ in 0..4 {
        frames.push(tokio::time::timeout(Duration::from_secs(10), live.next_json()).await.unwrap().unwrap().unwrap());
    }
    let mut refused = tokio_tungstenite::connect_async(server.ws_url("/v1/subscribe")).await.unwrap().0;
    futures::SinkExt::send(&mut refused, tokio_tungstenite::tungstenite::Message::Text("{}".into())).await.unwrap();
    let reply = futures::StreamExt::next(&mut refused).await.unwrap().unwrap();
    frames.push(serde_json::from_str(reply.to_text().unwrap()).unwrap());
    let kinds: Vec<&str> = frames.iter().filter_map(|frame| frame["type"].as_str()).collect();
    assert!(kinds.contains(&"schema") && kinds.contains(&"rows") && kinds.contains(&"error"), "{kinds:?}");

    // Every path of the document was called.
    let spec: Value = serde_json::from_str(include_str!("../server/src/openapi.json")).unwrap();
    let called: std::collections::BTreeSet<&str> = cases.iter().map(|case| case.path).collect();
    for path in spec["paths"].as_object().unwrap().keys() {
        let websocket = path.ends_with("/ws") || path == "/v1/subscribe";
        assert!(websocket || path == "/metrics" || called.contains(path.as_str()), "{path} never called");
    }
    let cases: Vec<Value> = cases
        .iter()
        .map(|case| json!({"path": case.path, "method": case.method, "status": case.status, "body": case.body}))
        .collect();
    validate(&cases, &frames).await;
}

/// Validates each case's body against its documented response and each
/// frame against `Frame`, with Python's jsonschema; panics with every
/// mismatch.
async fn validate(cases: &[Value], frames: &[Value]) {
    let dir = std::env::temp_dir().join(format!("sluice-openapi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("cases.json");
    std::fs::write(&input, serde_json::to_vec(&json!({"cases": cases, "frames": frames})).unwrap()).unwrap();
    let spec = concat!(env!("CARGO_MANIFEST_DIR"), "/../server/src/openapi.json");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/validate_openapi.py");
    let output = Command::new("python3").arg(script).arg(spec).arg(&input).output().await.expect("python3 runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(output.status.success(), "responses that do not match openapi.json:\n{text}");
}
