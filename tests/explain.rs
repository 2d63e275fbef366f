//! EXPLAIN ANALYZE, `GET /v1/queries/{id}/plan` and the per-operator
//! series of `/metrics` on a running windowed query fed over HTTP.

use std::time::Duration;

use serde_json::{Value, json};
use sluice_tests::TestServer;

async fn post(server: &TestServer, stream: &str, events: &[Value]) {
    let response =
        server.http.post(server.url(&format!("/v1/streams/{stream}/events"))).json(&events).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

/// Waits until the query's result has `rows` rows out.
async fn wait_rows_out(server: &TestServer, id: &str, rows: u64) {
    for _ in 0..200 {
        let (_, report) = server.get(&format!("/v1/queries/{id}")).await;
        if report["metrics"]["rows_out"].as_u64() >= Some(rows) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("query {id} never emitted {rows} rows");
}

#[tokio::test]
async fn explain_analyze_shows_each_operator_and_what_a_window_waits_for() {
    let server = TestServer::start().await;
    for ddl in [
        "CREATE STREAM clicks (ts TIMESTAMP, user_id INT, WATERMARK FOR ts AS ts) WITH (connector = 'http')",
        "CREATE STREAM views (ts TIMESTAMP, user_id INT, WATERMARK FOR ts AS ts) WITH (connector = 'http')",
    ] {
        assert_eq!(server.sql(ddl).await.0, 200);
    }
    let sql = "SELECT window_end, user_id, count(*) AS n
               FROM TUMBLE((SELECT * FROM clicks UNION ALL SELECT * FROM views), ts, INTERVAL '10' SECOND)
               GROUP BY window_start, window_end, user_id";
    let (status, body) = server.sql_with(sql, json!({"epoch_interval": "0"})).await;
    assert_eq!(status, 200, "{body}");
    let id = body["query_id"].as_str().unwrap().to_string();
    // Five clicks in [0s, 10s) for two users, and one at 12s that closes
    // nothing: views has sent no watermark, so every window stays open.
    let clicks: Vec<Value> = [(1, 1), (2, 2), (3, 1), (4, 1), (5, 2), (12, 1)]
        .iter()
        .map(|(second, user)| json!({"ts": format!("2024-01-01T00:00:{second:02}"), "user_id": user}))
        .collect();
    post(&server, "clicks", &clicks).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (status, body) = server.sql(&format!("EXPLAIN ANALYZE {id}")).await;
    assert_eq!(status, 200, "{body}");
    let text: Vec<String> =
        body["rows"].as_array().unwrap().iter().map(|row| row[0].as_str().unwrap().into()).collect();
    let text = text.join("\n");
    let at = text.find("window_aggregate").unwrap_or_else(|| panic!("{text}"));
    let window = &text[at..];
    assert!(window.contains("rows in 6 ("), "{text}");
    assert!(window.contains("out 0 (0 batches)"), "{text}");
    // Keys of two windows: (w10, 1), (w10, 2), (w20, 1).
    assert!(window.contains("state 3 rows"), "{text}");
    assert!(
        window.contains("oldest open window ends 2024-01-01T00:00:10: waiting for the watermark (now none yet) to pass it; held back by input views (watermark none yet, active)"),
        "{text}"
    );
    assert!(text.contains("source: clicks (http)") && text.contains("source: views (http)"), "{text}");

    // The same as data.
    let (status, plan) = server.get(&format!("/v1/queries/{id}/plan")).await;
    assert_eq!(status, 200);
    let operators = plan["operators"].as_array().unwrap();
    let window = operators.iter().find(|operator| operator["operator"] == "window_aggregate").unwrap();
    assert_eq!((window["rows_in"].as_u64(), window["state_rows"].as_u64()), (Some(6), Some(3)), "{window}");
    assert_eq!(window["oldest_open_window_end"], "2024-01-01T00:00:10");
    let clicks_source = operators.iter().find(|operator| operator["operator"] == "source: clicks").unwrap();
    assert_eq!(clicks_source["rows_out"], 6);
    assert_eq!(clicks_source["watermark_out"], "2024-01-01T00:00:12");

    // Views catches up: the first window fires, the second is now oldest.
    post(&server, "views", &[json!({"ts": "2024-01-01T00:00:11", "user_id": 3})]).await;
    wait_rows_out(&server, &id, 2).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (_, plan) = server.get(&format!("/v1/queries/{id}/plan")).await;
    let window = plan["operators"].as_array().unwrap().iter().find(|o| o["operator"] == "window_aggregate").unwrap();
    assert_eq!(window["rows_out"], 2, "{window}");
    assert_eq!(window["oldest_open_window_end"], "2024-01-01T00:00:20", "{window}");
    assert_eq!(window["watermark_in"], "2024-01-01T00:00:11", "{window}");
    assert!(window["busy_ms"].as_f64().unwrap() > 0.0);

    // Per operator in /metrics.
    let metrics = server.http.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let line = format!(
        "sluice_operator_rows_in_total{{query=\"{id}\",node=\"{}\",operator=\"window_aggregate\"}} 7",
        window["node"]
    );
    assert!(metrics.contains(&line), "{line} not in\n{metrics}");
    assert!(metrics.contains("sluice_operator_state_rows{"), "{metrics}");

    // Unknown ids: an error with the position, a 404.
    let (status, body) = server.sql("EXPLAIN ANALYZE q99").await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("q99"), "{body}");
    assert_eq!(server.get("/v1/queries/q99/plan").await.0, 404);
    let (status, body) = server.sql("EXPLAIN ANALYZE SELECT 1").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["column"], 17, "{body}");
}
