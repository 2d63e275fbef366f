//! Odd and broken statements get errors, never panics.

use sluice::engine::Settings;

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
        "DESCRIBE nope",
        "DROP STREAM nope",
        "EXPLAIN",
        "EXPLAIN CREATE STREAM x (a INT)",
        "INSERT INTO weblog VALUES (1)",
        "SELECT 1/0 FROM weblog",
        "SELECT * FROM weblog WHERE ts > 'not a time'",
        "WITH x AS (SELECT * FROM weblog) SELECT * FROM x ORDER BY ts",
    ];
    for statement in statements {
        let mut settings = Settings::new();
        // Errors are fine; a panic fails the test. Started queries are stopped.
        if let Ok(results) = engine.execute(statement, &mut settings).await {
            for result in results {
                if let sluice::StatementResult::Query { id: query_id, .. } = result {
                    engine.drop_query(&query_id);
                }
            }
        }
    }
    assert_eq!(engine.queries().len(), 0);
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
