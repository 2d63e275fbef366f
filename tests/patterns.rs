//! MATCH_RECOGNIZE through the server: events POSTed to an http stream,
//! matches and timeout rows pushed over the websocket and printed by the
//! REPL, EXPLAIN and the unbounded-state warning in the response.

use serde_json::{Value, json};
use sluice::repl::Client;
use sluice_tests::{TestServer, frame_rows, read_frames};

const EVENTS: &str = "CREATE STREAM shop (ts TIMESTAMP, account BIGINT, kind VARCHAR,
      WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) WITH (connector = 'http')";

/// "An order not followed by a payment within 5 minutes": a match when the
/// payment comes, a timeout row when the watermark passes the deadline.
const UNPAID: &str = "SELECT account, ordered, paid, timed_out FROM shop MATCH_RECOGNIZE (
      PARTITION BY account ORDER BY ts
      MEASURES O.ts AS ordered, P.ts AS paid
      ONE ROW PER MATCH WITH TIMEOUT ROWS
      PATTERN (O P)
      WITHIN INTERVAL '5' MINUTE
      DEFINE O AS kind = 'order', P AS kind = 'payment'
    ) AS m";

#[tokio::test]
async fn matches_and_timeouts_reach_websocket_subscribers() {
    let server = TestServer::start().await;
    let (status, body) = server.sql(EVENTS).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.sql_with(UNPAID, json!({"epoch_interval": "0"})).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("warnings").is_none(), "WITHIN bounds the state: {body}");
    let url = server.ws_url(body["subscribe"].as_str().unwrap());
    let reader = tokio::spawn(async move { read_frames(&url, 2).await });
    let events = json!([
        {"ts": "2026-01-01T10:00:00", "account": 1, "kind": "order"},
        {"ts": "2026-01-01T10:01:00", "account": 2, "kind": "order"},
        {"ts": "2026-01-01T10:02:00", "account": 1, "kind": "payment"},
        {"ts": "2026-01-01T10:03:00", "account": 3, "kind": "browse"},
        // Moves the watermark past account 2's deadline (10:06).
        {"ts": "2026-01-01T10:09:00", "account": 3, "kind": "browse"}
    ]);
    let response = server.http.post(server.url("/v1/streams/shop/events")).json(&events).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let frames = reader.await.unwrap();
    let mut rows = frame_rows(&frames, &["account", "ordered", "paid", "timed_out"]);
    rows.sort_by_key(|row| row[0].as_i64());
    assert_eq!(
        rows,
        vec![
            vec![json!(1), json!("2026-01-01T10:00:00"), json!("2026-01-01T10:02:00"), json!(false)],
            vec![json!(2), json!("2026-01-01T10:01:00"), Value::Null, json!(true)],
        ]
    );
    let (_, query) = server.get("/v1/queries/q1").await;
    assert_eq!(query["status"], "running", "{query}");
    // Rows no attempt can use any more are released.
    assert!(query["metrics"]["state_rows"].as_u64().unwrap() <= 2, "{query}");
}

#[tokio::test]
async fn the_repl_prints_matches_and_explain_shows_the_pattern() {
    let server = TestServer::start().await;
    let mut client = Client::new(&server.server.url());
    let mut out = Vec::new();
    client.run(&format!("{EVENTS};"), &mut out, std::future::pending()).await.unwrap();
    out.clear();
    client
        .run(
            "EXPLAIN SELECT * FROM shop MATCH_RECOGNIZE (ORDER BY ts MEASURES COUNT(*) AS n PATTERN (A+ B) DEFINE B AS kind = 'payment');",
            &mut out,
            std::future::pending(),
        )
        .await
        .unwrap();
    let explained = String::from_utf8(out).unwrap();
    assert!(explained.contains("match_recognize: partition by [], order by ts, pattern A+ B"), "{explained}");
    assert!(explained.contains("has no WITHIN"), "{explained}");

    // A bad pattern gets the caret under its position.
    let mut out = Vec::new();
    client
        .run("SELECT * FROM shop MATCH_RECOGNIZE (ORDER BY ts PATTERN (A{3,1}));", &mut out, std::future::pending())
        .await
        .unwrap();
    let error = String::from_utf8(out).unwrap();
    assert!(error.starts_with("ERROR: the quantifier {3,1} has a minimum above its maximum"), "{error}");
    assert!(error.contains('^'), "{error}");

    // Matches print as they come; the subscription stops when told.
    let posted = {
        let http = server.http.clone();
        let url = server.url("/v1/streams/shop/events");
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            let events = json!([
                {"ts": "2026-01-01T10:00:00", "account": 7, "kind": "order"},
                {"ts": "2026-01-01T10:00:30", "account": 7, "kind": "payment"},
                {"ts": "2026-01-01T10:30:00", "account": 8, "kind": "browse"}
            ]);
            http.post(url).json(&events).send().await.unwrap();
        })
    };
    let mut out = Vec::new();
    let stop = tokio::time::sleep(std::time::Duration::from_secs(3));
    client.run(&format!("SET epoch_interval = '0'; {UNPAID};"), &mut out, stop).await.unwrap();
    posted.await.unwrap();
    let printed = String::from_utf8(out).unwrap();
    assert!(printed.contains("2026-01-01T10:00:30"), "{printed}");
    assert!(printed.contains("false"), "{printed}");
}
