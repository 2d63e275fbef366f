//! The real server on port 0, driven over HTTP and websockets.

use serde_json::{Value, json};
use sluice_tests::{TestServer, frame_rows, read_frames};

const WEBLOG: &str = "CREATE STREAM weblog (
  ts TIMESTAMP, ip VARCHAR, status INT, method VARCHAR, url VARCHAR, duration DOUBLE,
  WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'file', path = '$DATA/weblog.log', format = 'text', delimiter = ' ')";

const TOP_ERRORS: &str = "SELECT window_start, window_end, ip, count(*) AS hits
FROM TABLE(TUMBLE(TABLE weblog, DESCRIPTOR(ts), INTERVAL '1' SECOND))
WHERE status >= 400
GROUP BY window_start, window_end, ip
ORDER BY hits DESC LIMIT 3";

#[tokio::test]
async fn windowed_query_results_reach_every_websocket_subscriber() {
    let server = TestServer::start().await;
    let (status, body) = server.sql(WEBLOG).await;
    assert_eq!((status, body), (200, json!({"status": "CREATE STREAM", "name": "weblog"})));

    let (status, body) = server.sql(TOP_ERRORS).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["query_id"], "q1");
    assert_eq!(body["subscribe"], "/v1/queries/q1/ws");
    assert_eq!(
        body["columns"],
        json!([
            {"name": "window_start", "type": "TIMESTAMP"},
            {"name": "window_end", "type": "TIMESTAMP"},
            {"name": "ip", "type": "VARCHAR"},
            {"name": "hits", "type": "BIGINT"}
        ])
    );

    let url = server.ws_url("/v1/queries/q1/ws");
    let (first, second) = tokio::join!(read_frames(&url, 1000), read_frames(&url, 1000));
    for frames in [&first, &second] {
        assert_eq!(frames[0]["type"], "schema");
        assert_eq!(frames[0]["columns"], body["columns"]);
        assert_eq!(frames.last().unwrap()["type"], "end");
        let rows = frame_rows(frames, &["window_start", "ip", "hits"]);
        assert_eq!(
            rows,
            vec![
                vec![json!("2016-12-06T08:58:35"), json!("10.0.0.2"), json!(2)],
                vec![json!("2016-12-06T08:58:35"), json!("10.0.0.1"), json!(1)],
                vec![json!("2016-12-06T08:58:36"), json!("10.0.0.1"), json!(1)],
                vec![json!("2016-12-06T08:58:39"), json!("10.0.0.3"), json!(1)],
                vec![json!("2016-12-06T08:58:40"), json!("10.0.0.1"), json!(1)],
            ]
        );
        // One frame per window; seq numbers the rows without gaps.
        let seqs: Vec<u64> =
            frames.iter().filter(|f| f["type"] == "rows").map(|f| f["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, vec![0, 2, 3, 4]);
        assert!(frames.iter().any(|frame| frame["type"] == "progress"));
    }

    // A subscriber resuming from seq 3 gets the rest only.
    let resumed = read_frames(&server.ws_url("/v1/queries/q1/ws?from_seq=3"), 1000).await;
    assert_eq!(frame_rows(&resumed, &["ip"]), vec![vec![json!("10.0.0.3")], vec![json!("10.0.0.1")]]);

    let (status, query) = server.get("/v1/queries/q1").await;
    assert_eq!(status, 200);
    assert_eq!(query["status"], "finished");
    assert_eq!(query["metrics"]["rows_in"], 13);
    assert_eq!(query["metrics"]["rows_out"], 5);
    assert_eq!(query["metrics"]["late_rows_dropped"], 1);
    assert_eq!(query["metrics"]["late_rows_by_window"], json!([{"window_start": "2016-12-06T08:58:35", "rows": 1}]));
    assert_eq!(query["metrics"]["malformed_records"], 2);
    let last_malformed = query["metrics"]["last_malformed"].as_str().unwrap();
    assert_eq!(last_malformed, "expected 6 fields, found 4: not a valid line");
    assert!(query["metrics"]["epochs"].as_u64().unwrap() >= 1);
    // Results were emitted, so the latency quantiles are known (p50 <= p99).
    let (p50, p99) = (&query["metrics"]["latency_ms"]["p50"], &query["metrics"]["latency_ms"]["p99"]);
    assert!(p50.as_f64().unwrap() <= p99.as_f64().unwrap(), "{query}");

    let (_, list) = server.get("/v1/queries").await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (_, streams) = server.get("/v1/streams").await;
    assert_eq!(streams[0]["name"], "weblog");
    assert_eq!(streams[0]["watermark"], "ts - INTERVAL '2' SECOND");

    let metrics = server.http.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("sluice_query_rows_in_total{query=\"q1\"} 13"), "{metrics}");
    assert!(metrics.contains("sluice_query_late_rows_dropped_total{query=\"q1\"} 1"));

    let response = server.http.delete(server.url("/v1/queries/q1")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let (status, body) = server.get("/v1/queries/q1").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
}

#[tokio::test]
async fn bad_statements_get_errors_with_line_and_column() {
    let server = TestServer::start().await;
    server.sql(WEBLOG).await;
    let cases: [(&str, &str, u64, u64, &str); 5] = [
        ("SELECT ip\nFROM nope", "unknown_object", 2, 6, "stream 'nope' not found"),
        ("SELECT ip,\n  FROM WHERE", "syntax_error", 2, 8, "Expected"),
        ("SELECT bogus FROM weblog", "unknown_object", 1, 8, "bogus"),
        (
            "SELECT a.ip FROM weblog a\n  JOIN weblog b ON a.ts < b.ts",
            "invalid",
            2,
            3,
            "needs an equality between them",
        ),
        (
            "CREATE STREAM s (ts TIMESTAMP)\nWITH (connector = 'socket', port = 'x')",
            "invalid",
            2,
            29,
            "option port must be a TCP port number",
        ),
    ];
    for (sql, code, line, column, message) in cases {
        let (status, body) = server.sql(sql).await;
        assert_eq!(status, 400, "{sql}: {body}");
        let error = &body["error"];
        assert_eq!(error["code"], code, "{sql}: {body}");
        assert_eq!((error["line"].as_u64(), error["column"].as_u64()), (Some(line), Some(column)), "{sql}: {body}");
        assert!(error["message"].as_str().unwrap().contains(message), "{sql}: {body}");
    }
    // Not JSON at all.
    let response = server.http.post(server.url("/v1/sql")).body("SELECT 1").send().await.unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_request");
    // Unknown endpoint and unknown query.
    assert_eq!(server.get("/v1/nothing").await.0, 404);
    assert_eq!(server.get("/v1/queries/q99").await.0, 404);
    // The OpenAPI document is served.
    let (status, openapi) = server.get("/openapi.json").await;
    assert_eq!(status, 200);
    assert!(openapi["paths"]["/v1/sql"]["post"].is_object());
}

#[tokio::test]
async fn events_posted_to_an_http_stream_reach_running_queries() {
    let server = TestServer::start().await;
    let (status, _) = server
        .sql(
            "CREATE STREAM clicks (ts TIMESTAMP, page VARCHAR, user_id BIGINT,
               WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) WITH (connector = 'http');
             SET epoch_interval = '0'",
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) =
        server.sql_with("SELECT page, user_id FROM clicks WHERE user_id > 1", json!({"epoch_interval": "0"})).await;
    assert_eq!(status, 200, "{body}");
    let url = server.ws_url(body["subscribe"].as_str().unwrap());
    let reader = tokio::spawn(async move { read_frames(&url, 3).await });
    // No pause needed: the query reads the stream from the moment it
    // started, and the output log replays to a subscriber that is late.
    let events = json!([
        {"ts": "2016-12-06T08:58:35", "page": "/home", "user_id": 1},
        {"ts": "2016-12-06T08:58:36", "page": "/cart", "user_id": 2},
        {"ts": "not a time", "page": "/bad", "user_id": 3},
        {"ts": "2016-12-06T08:58:37", "page": "/pay", "user_id": 3}
    ]);
    let response = server.http.post(server.url("/v1/streams/clicks/events")).json(&events).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let accepted: Value = response.json().await.unwrap();
    assert_eq!(accepted, json!({"accepted": 4, "queries": 1}));
    let lines = "{\"ts\": \"2016-12-06T08:58:38\", \"page\": \"/done\", \"user_id\": 9}\n";
    server.http.post(server.url("/v1/streams/clicks/events")).body(lines).send().await.unwrap();

    let frames = reader.await.unwrap();
    let rows = frame_rows(&frames, &["page", "user_id"]);
    assert_eq!(
        rows,
        vec![vec![json!("/cart"), json!(2)], vec![json!("/pay"), json!(3)], vec![json!("/done"), json!(9)]]
    );
    let (_, query) = server.get("/v1/queries/q1").await;
    assert_eq!(query["metrics"]["malformed_records"], 1);
    let problem = query["metrics"]["last_malformed"].as_str().unwrap();
    assert!(problem.contains("not a time") && !problem.contains("internal"), "{problem}");
    assert_eq!(query["status"], "running");

    // Only http streams accept events.
    server.sql(WEBLOG).await;
    let response = server.http.post(server.url("/v1/streams/weblog/events")).body("{}").send().await.unwrap();
    assert_eq!(response.status(), 400);
    let response = server.http.post(server.url("/v1/streams/nope/events")).body("{}").send().await.unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn an_unbounded_group_by_streams_a_changelog_with_ops() {
    let server = TestServer::start().await;
    server.sql(&WEBLOG.replace("delimiter = ' '", "delimiter = ' ', batch_rows = '4'")).await;
    let (status, body) = server.sql("SELECT ip, count(*) AS requests FROM weblog GROUP BY ip").await;
    assert_eq!(status, 200, "{body}");
    let frames = read_frames(&server.ws_url("/v1/queries/q1/ws"), 1000).await;
    let mut result: Vec<Vec<Value>> = Vec::new();
    let mut retractions = 0;
    for frame in frames.iter().filter(|frame| frame["type"] == "rows") {
        let ops = frame["ops"].as_array().expect("updating results carry ops");
        for (row, op) in frame["rows"].as_array().unwrap().iter().zip(ops) {
            let row = vec![row["ip"].clone(), row["requests"].clone()];
            if op == "-" {
                retractions += 1;
                let position = result.iter().position(|existing| *existing == row).expect("retracted row was emitted");
                result.remove(position);
            } else {
                result.push(row);
            }
        }
    }
    assert!(retractions > 0);
    result.sort_by_key(|row| row[0].as_str().unwrap().to_string());
    // 10.0.0.3's line with status "abc" counts: the query does not read status.
    assert_eq!(
        result,
        vec![vec![json!("10.0.0.1"), json!(5)], vec![json!("10.0.0.2"), json!(4)], vec![json!("10.0.0.3"), json!(4)]]
    );
}

#[tokio::test]
async fn an_idle_input_stops_holding_back_the_watermark() {
    let server = TestServer::start().await;
    for name in ["left_clicks", "right_clicks"] {
        let ddl = format!(
            "CREATE STREAM {name} (ts TIMESTAMP, page VARCHAR, WATERMARK FOR ts AS ts) WITH (connector = 'http')"
        );
        assert_eq!(server.sql(&ddl).await.0, 200);
    }
    let query = "SELECT window_start, count(*) AS clicks FROM (
                   SELECT window_start, window_end FROM TUMBLE(left_clicks, ts, INTERVAL '1' SECOND)
                   UNION ALL
                   SELECT window_start, window_end FROM TUMBLE(right_clicks, ts, INTERVAL '1' SECOND)) AS u
                 GROUP BY window_start, window_end";
    let (status, body) = server.sql_with(query, json!({"epoch_interval": "10ms", "idle_timeout": "200ms"})).await;
    assert_eq!(status, 200, "{body}");
    let post = |stream: &'static str, events: Value| {
        let request = server.http.post(server.url(&format!("/v1/streams/{stream}/events"))).json(&events);
        async move { assert_eq!(request.send().await.unwrap().status(), 200) }
    };
    post("right_clicks", json!([{"ts": "2016-12-06T08:58:35.5", "page": "/r"}])).await;
    post(
        "left_clicks",
        json!([{"ts": "2016-12-06T08:58:35.2", "page": "/a"}, {"ts": "2016-12-06T08:58:36.1", "page": "/b"}]),
    )
    .await;
    // right_clicks now goes quiet; after the idle timeout the watermark
    // follows left_clicks alone and closes the windows behind it.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    post("left_clicks", json!([{"ts": "2016-12-06T08:58:37.3", "page": "/c"}])).await;
    let frames = read_frames(&server.ws_url("/v1/queries/q1/ws"), 2).await;
    assert_eq!(
        frame_rows(&frames, &["window_start", "clicks"]),
        vec![vec![json!("2016-12-06T08:58:35"), json!(2)], vec![json!("2016-12-06T08:58:36"), json!(1)]]
    );
    // right_clicks wakes up behind the watermark: its row is late for the
    // closed window, dropped and counted.
    post("right_clicks", json!([{"ts": "2016-12-06T08:58:36.5", "page": "/late"}])).await;
    let mut late = 0;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        late = server.get("/v1/queries/q1").await.1["metrics"]["late_rows_dropped"].as_u64().unwrap();
        if late > 0 {
            break;
        }
    }
    assert_eq!(late, 1);
}

#[tokio::test]
async fn late_rows_can_be_routed_to_a_stream_other_queries_read() {
    let server = TestServer::start().await;
    server.sql(WEBLOG).await;
    let ddl = "CREATE STREAM late_weblog (ts TIMESTAMP, ip VARCHAR, status INT) WITH (connector = 'http')";
    assert_eq!(server.sql(ddl).await.0, 200);
    // The reader of late rows runs first; then the windowed query routes
    // its late row (10.0.0.9 at 08:58:35.5) there instead of only counting it.
    let (status, reader) =
        server.sql_with("SELECT ts, ip, status FROM late_weblog", json!({"epoch_interval": "0"})).await;
    assert_eq!(status, 200, "{reader}");
    let url = server.ws_url(reader["subscribe"].as_str().unwrap());
    let late_rows = tokio::spawn(async move { read_frames(&url, 1).await });
    let (status, body) = server
        .sql_with(
            "SELECT window_start, count(*) FROM TUMBLE(weblog, ts, INTERVAL '1' SECOND) GROUP BY window_start, window_end",
            json!({"late_rows_to": "late_weblog"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let frames = late_rows.await.unwrap();
    assert_eq!(
        frame_rows(&frames, &["ts", "ip", "status"]),
        vec![vec![json!("2016-12-06T08:58:35.500"), json!("10.0.0.9"), json!(500)]]
    );
    // Routing needs an http stream.
    let (status, error) = server.sql_with("SELECT ip FROM weblog", json!({"late_rows_to": "weblog"})).await;
    assert_eq!(status, 400);
    assert!(error["error"]["message"].as_str().unwrap().contains("needs an 'http' stream"), "{error}");
}

#[tokio::test]
async fn emit_on_update_sends_early_results_before_the_window_closes() {
    let server = TestServer::start().await;
    let ddl = "CREATE STREAM clicks (ts TIMESTAMP, page VARCHAR, WATERMARK FOR ts AS ts - INTERVAL '10' SECOND)
               WITH (connector = 'http')";
    assert_eq!(server.sql(ddl).await.0, 200);
    let query = "SELECT window_start, count(*) AS clicks FROM TUMBLE(clicks, ts, INTERVAL '1' MINUTE)
                 GROUP BY window_start, window_end EMIT ON UPDATE";
    let (status, body) = server.sql_with(query, json!({"epoch_interval": "0"})).await;
    assert_eq!(status, 200, "{body}");
    let mut socket = sluice::client::Subscription::connect(&server.ws_url("/v1/queries/q1/ws")).await.unwrap();
    let mut changes: Vec<(Value, Value)> = Vec::new();
    // Reads frames until `count` changes have arrived.
    async fn read_changes(socket: &mut sluice::client::Subscription, changes: &mut Vec<(Value, Value)>, count: usize) {
        while changes.len() < count {
            let message = tokio::time::timeout(std::time::Duration::from_secs(60), socket.next_json()).await.unwrap();
            let Some(frame) = message.unwrap() else { panic!("socket closed") };
            if frame["type"] == "rows" {
                let ops = frame["ops"].as_array().unwrap().clone();
                for (row, op) in frame["rows"].as_array().unwrap().iter().zip(ops) {
                    changes.push((op, row["clicks"].clone()));
                }
            }
        }
    }
    let post = |events: Value| {
        let request = server.http.post(server.url("/v1/streams/clicks/events")).json(&events);
        async move { assert_eq!(request.send().await.unwrap().status(), 200) }
    };
    // The watermark stays far below the window's end: only early results.
    post(json!([{"ts": "2016-12-06T08:58:05", "page": "/a"}])).await;
    read_changes(&mut socket, &mut changes, 1).await;
    post(json!([{"ts": "2016-12-06T08:58:06", "page": "/b"}])).await;
    read_changes(&mut socket, &mut changes, 3).await;
    assert_eq!(changes, vec![(json!("+"), json!(1)), (json!("-"), json!(1)), (json!("+"), json!(2))]);
}

#[tokio::test]
async fn constant_queries_answer_at_once() {
    let server = TestServer::start().await;
    let (status, body) = server.sql("SELECT 1 AS one, 'a' || 'b' AS s, NULL AS nothing").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"], serde_json::json!([[1, "ab", null]]), "{body}");
    assert_eq!(body["columns"][0]["name"], "one", "{body}");
    let (status, body) = server.sql("SELECT 1 / 0").await;
    assert_eq!(status, 400, "{body}");
}
