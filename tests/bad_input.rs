//! Odd and broken statements get errors, never panics.

use std::time::Duration;

use sluice::ErrorCode;
use sluice::engine::Settings;
use sluice_runtime::{QueryMetrics, QueryStatus};

/// Statements that start and then fail on the rows (a user error at run
/// time, reported in the query's status).
const FAIL_WHILE_RUNNING: &[&str] = &["SELECT 1/0 FROM weblog", "SELECT CAST(ip AS INT) AS n FROM weblog"];

#[tokio::test]
async fn odd_statements_are_errors_not_panics() {
    let engine = sluice::Engine::new();
    sluice::demo::register(&engine).await.unwrap();
    let statements = [
        "",
        ";;",
        "SELECT",
        "CREATE STREAM",
        "CREATE STREAM x ()",
        "CREATE STREAM x (a INT) WITH (connector = 'file')",
        "CREATE STREAM x (a INT, WATERMARK FOR a AS a) WITH (connector = 'http')",
        "CREATE STREAM x (ts TIMESTAMP, WATERMARK FOR ts AS ts * 2) WITH (connector = 'http')",
        "CREATE STREAM x (ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '-5' SECOND) WITH (connector = 'http')",
        "CREATE STREAM x (ts TIMESTAMP) WITH (connector = 'generator', rate = '0')",
        "CREATE STREAM x (ts TIMESTAMP) WITH (connector = 'generator', rows = '-1')",
        "CREATE STREAM x (ts TIMESTAMP, y GEOMETRY) WITH (connector = 'http')",
        "SELECT * FROM TUMBLE()",
        "SELECT * FROM TABLE(TUMBLE(TABLE))",
        "SELECT * FROM TABLE(TUMBLE(TABLE weblog))",
        "SELECT * FROM TABLE(TUMBLE(TABLE weblog, DESCRIPTOR(ts)))",
        "SELECT * FROM TABLE(TUMBLE(TABLE weblog, DESCRIPTOR(ip), INTERVAL '1' SECOND))",
        "SELECT * FROM TABLE(TUMBLE(TABLE weblog, DESCRIPTOR(nope), INTERVAL '1' SECOND))",
        "SELECT * FROM TABLE(TUMBLE(TABLE weblog, DESCRIPTOR(ts), 5))",
        "SELECT * FROM TABLE(TUMBLE(TABLE weblog, DESCRIPTOR(ts), INTERVAL '999999999999' DAY))",
        "SELECT * FROM TABLE(HOP(TABLE weblog, DESCRIPTOR(ts), INTERVAL '1' SECOND))",
        "SELECT * FROM TABLE(HOP(TABLE weblog, DESCRIPTOR(ts), INTERVAL '0' SECOND, INTERVAL '1' SECOND))",
        "SELECT * FROM TABLE(CUMULATE(TABLE weblog, DESCRIPTOR(ts), INTERVAL '2' SECOND, INTERVAL '1' SECOND))",
        "SELECT * FROM TABLE(SESSION(TABLE weblog PARTITION BY nope, DESCRIPTOR(ts), INTERVAL '1' SECOND))",
        "SELECT * FROM TABLE(TUMBLE(TABLE weblog PARTITION BY ip, DESCRIPTOR(ts), INTERVAL '1' SECOND))",
        "SELECT * FROM TABLE(TUMBLE(TABLE (SELECT 1), DESCRIPTOR(ts), INTERVAL '1' SECOND))",
        "SELECT * FROM weblog CROSS JOIN UNNEST(ip) AS t(x)",
        "SELECT * FROM weblog, UNNEST(ip), UNNEST(url)",
        "SELECT window_start FROM TUMBLE(weblog, ts, INTERVAL '1' SECOND) GROUP BY date_trunc('minute', window_start)",
        "SELECT count(*) FROM HOP(weblog, ts, INTERVAL '1' SECOND, INTERVAL '2' SECOND) GROUP BY date_trunc('minute', window_start)",
        "SELECT * FROM weblog LIMIT -1",
        "SELECT * FROM weblog OFFSET 5",
        "SELECT ip FROM weblog GROUP BY ip EMIT ON",
        "SELECT ip FROM weblog EMIT EVERY INTERVAL '0' SECOND",
        "SET epoch_interval = 'soon'",
        "SET nope = 1",
        "SET epoch_interval = '99999999999999999999999h'",
        "SET allowed_lateness = '99999999999999999999999h'",
        "SET state_ttl = '9999999999999999999999999999999999999999999999999999999999999999999999999999999999999ms'",
        "SET retained_rows = '99999999999999999999'",
        "SELECT CAST(ip AS INT) AS n FROM weblog",
        "SELECT window_start, count(*) FROM TUMBLE(weblog, ts, INTERVAL '1' MILLISECOND) GROUP BY window_start, window_end",
        "DESCRIBE nope",
        "DROP STREAM nope",
        "EXPLAIN",
        "EXPLAIN CREATE STREAM x (a INT)",
        "INSERT INTO weblog VALUES (1)",
        "SELECT 1/0 FROM weblog",
        "SELECT * FROM weblog WHERE ts > 'not a time'",
        "WITH x AS (SELECT * FROM weblog) SELECT * FROM x ORDER BY ts",
    ];
    // A statement may fail with the user's error; an internal error or a
    // panic fails the test, and so does a started query that fails inside.
    let mut started = Vec::new();
    for statement in statements {
        let mut settings = Settings::new();
        settings.insert("epoch_interval".into(), "10ms".into());
        match engine.execute(statement, &mut settings).await {
            Ok(results) => {
                for result in results {
                    if let sluice::StatementResult::Query { id, .. } = result {
                        started.push((statement, id));
                    }
                }
            }
            Err(error) => assert_ne!(error.code, ErrorCode::Internal, "{statement:?}: {error}"),
        }
    }
    assert!(!started.is_empty(), "no statement started a query: the runtime half of this test checks nothing");
    for (statement, id) in started {
        let query = engine.query(&id).expect("a started query is listed");
        // Long enough for rows of the demo streams (50 a second) to pass
        // through every operator.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while query.handle.status() == QueryStatus::Running
            && QueryMetrics::get(&query.handle.metrics.rows_in) < 20
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let status = query.handle.status();
        println!("{statement:?} ({id}): {status:?}");
        engine.drop_query(&id);
        match status {
            QueryStatus::Running | QueryStatus::Finished => {}
            QueryStatus::Failed(message) => {
                let internal = message.starts_with("internal error") || message.contains("panicked");
                assert!(!internal, "{statement:?} ({id}) failed inside Sluice: {message}");
                assert!(
                    FAIL_WHILE_RUNNING.contains(&statement),
                    "{statement:?} ({id}) failed while running: {message}"
                );
            }
            QueryStatus::Cancelled => panic!("{statement:?} ({id}) was cancelled by no one"),
        }
    }
    assert!(engine.queries().is_empty(), "dropped queries are forgotten");
}

#[tokio::test]
async fn failed_statements_use_up_no_query_id() {
    let engine = sluice::Engine::new();
    sluice::demo::register(&engine).await.unwrap();
    assert!(engine.execute("SELECT nope FROM weblog", &mut Settings::new()).await.is_err());
    let results = engine.execute("SELECT ip FROM weblog", &mut Settings::new()).await.unwrap();
    let sluice::StatementResult::Query { id: query_id, .. } = &results[0] else { panic!("not a query") };
    assert_eq!(query_id, "q1");
    engine.drop_query(query_id);
}

/// Numbers users give the server over HTTP: too long durations used to
/// panic the handler (`Duration::from_secs_f64`), a `from_seq` that is no
/// row number got a plain-text answer.
#[tokio::test]
async fn out_of_range_numbers_over_http_are_errors() {
    let server = sluice_tests::TestServer::start().await;
    for name in ["epoch_interval", "idle_timeout", "allowed_lateness", "checkpoint_interval", "state_ttl"] {
        let (status, body) = server.sql(&format!("SET {name} = '99999999999999999999999h'")).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["code"], "invalid", "{body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("at most 365 days"), "{body}");
    }
    assert_eq!(server.sql("CREATE STREAM s (ts TIMESTAMP) WITH (connector = 'http')").await.0, 200);
    let (status, body) = server
        .sql_with("SELECT ts FROM s", serde_json::json!({"epoch_interval_ms": "1000000000000000000000000000000"}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("at most 365 days"), "{body}");
    let (status, body) = server.sql_with("SELECT ts FROM s", serde_json::json!({"epoch_interval_ms": 1e300})).await;
    assert_eq!((status, &body["error"]["code"]), (400, &serde_json::json!("invalid")), "{body}");
    let (status, body) = server.sql_with("SELECT ts FROM s", serde_json::json!({"retained_rows": "-1"})).await;
    assert_eq!(status, 400, "{body}");
    // The server is still there, and ids too large to be ids are unknown.
    let (status, body) = server.get("/v1/queries/q99999999999999999999").await;
    assert_eq!((status, &body["error"]["code"]), (404, &serde_json::json!("not_found")), "{body}");
    assert_eq!(server.sql("SELECT ts FROM s").await.0, 200);
    let url = server.ws_url("/v1/queries/q1/ws?from_seq=99999999999999999999");
    match tokio_tungstenite::connect_async(url.as_str()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 400);
            let body: serde_json::Value =
                serde_json::from_slice(response.body().as_deref().unwrap_or_default()).expect("a JSON error body");
            assert_eq!(body["error"]["code"], "bad_request", "{body}");
        }
        Ok(_) => panic!("a from_seq beyond u64 was accepted"),
        Err(error) => panic!("unexpected: {error}"),
    }
    // The largest row number is one: nothing to send yet, but a subscription.
    let url = server.ws_url("/v1/queries/q1/ws");
    let mut subscription = sluice::client::Subscription::connect_from(&url, u64::MAX).await.expect("subscribes");
    let frame = subscription.next_json().await.expect("a frame").expect("the schema frame");
    assert_eq!(frame["type"], "schema", "{frame}");
}
