//! Joins through the real server: changelogs of outer joins over the
//! websocket, INSERTs reaching a running stream-table join, warnings in the
//! HTTP response and the REPL, and tables restored after a restart.

use serde_json::{Value, json};
use sluice::repl::Client;
use sluice_tests::{TestServer, frame_rows, read_frames};

const STREAMS: &str = "
    CREATE STREAM clicks (ts TIMESTAMP, page VARCHAR, user_id BIGINT,
      WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) WITH (connector = 'http');
    CREATE STREAM signups (ts TIMESTAMP, user_id BIGINT, plan VARCHAR,
      WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) WITH (connector = 'http');";

async fn post(server: &TestServer, stream: &str, events: Value) {
    let response = server.http.post(server.url(&format!("/v1/streams/{stream}/events"))).json(&events).send().await;
    assert_eq!(response.unwrap().status(), 200);
}

/// Rows frames read from `seq` on, until `rows` rows arrived.
async fn rows_from(server: &TestServer, query: &str, seq: usize, rows: usize) -> Vec<Value> {
    let url = server.ws_url(&format!("/v1/queries/{query}/ws?from_seq={seq}"));
    read_frames(&url, rows).await.into_iter().filter(|frame| frame["type"] == "rows").collect()
}

#[tokio::test]
async fn an_outer_join_retracts_its_null_padded_rows_over_the_websocket() {
    let server = TestServer::start().await;
    assert_eq!(server.sql(STREAMS).await.0, 200);
    let (status, body) = server
        .sql_with(
            "SELECT c.page, s.plan FROM clicks c LEFT JOIN signups s ON c.user_id = s.user_id",
            json!({"epoch_interval": "0"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let warning = body["warnings"][0].as_str().expect("an unbounded join warns");
    assert!(warning.contains("state grows without bound"), "{warning}");
    let query = body["query_id"].as_str().unwrap().to_string();

    post(&server, "clicks", json!([{"ts": "2016-12-06T08:58:35", "page": "/home", "user_id": 1}])).await;
    let frames = rows_from(&server, &query, 0, 1).await;
    assert_eq!(frames[0]["ops"], json!(["+"]));
    assert_eq!(frame_rows(&frames, &["page", "plan"]), vec![vec![json!("/home"), Value::Null]]);

    // The partner arrives: the padded row is retracted, the pair inserted.
    post(&server, "signups", json!([{"ts": "2016-12-06T08:58:36", "user_id": 1, "plan": "pro"}])).await;
    let frames = rows_from(&server, &query, 1, 2).await;
    let ops: Vec<Value> = frames.iter().flat_map(|frame| frame["ops"].as_array().cloned().unwrap()).collect();
    assert_eq!(ops, vec![json!("-"), json!("+")]);
    assert_eq!(
        frame_rows(&frames, &["page", "plan"]),
        vec![vec![json!("/home"), Value::Null], vec![json!("/home"), json!("pro")]]
    );
    let (_, status) = server.get(&format!("/v1/queries/{query}")).await;
    assert_eq!(status["metrics"]["state_rows"], 2, "{status}");
    assert!(status["plan"].as_str().unwrap().contains("unbounded_join"), "{status}");
}

#[tokio::test]
async fn inserts_reach_a_running_stream_table_join() {
    let server = TestServer::start().await;
    assert_eq!(server.sql(STREAMS).await.0, 200);
    let (status, body) = server
        .sql(
            "CREATE TABLE users (user_id BIGINT, name VARCHAR, PRIMARY KEY (user_id));
             INSERT INTO users VALUES (1, 'ann');",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][1]["status"], "INSERT 1");
    let (status, body) = server
        .sql_with(
            "SELECT c.page, u.name FROM clicks c LEFT JOIN users u ON c.user_id = u.user_id",
            json!({"epoch_interval": "0"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("warnings").is_none(), "a lookup join keeps no stream state: {body}");
    let query = body["query_id"].as_str().unwrap().to_string();

    post(
        &server,
        "clicks",
        json!([{"ts": "2016-12-06T08:58:35", "page": "/a", "user_id": 1},
                                   {"ts": "2016-12-06T08:58:35", "page": "/b", "user_id": 2}]),
    )
    .await;
    let frames = rows_from(&server, &query, 0, 2).await;
    assert_eq!(
        frame_rows(&frames, &["page", "name"]),
        vec![vec![json!("/a"), json!("ann")], vec![json!("/b"), Value::Null]]
    );
    assert!(frames.iter().all(|frame| frame.get("ops").is_none()), "append-only: {frames:?}");

    // Later rows see the inserted row; earlier results stand.
    let (status, body) = server.sql("INSERT INTO users VALUES (2, 'bob'), (1, 'Ann')").await;
    assert_eq!(status, 200, "{body}");
    post(
        &server,
        "clicks",
        json!([{"ts": "2016-12-06T08:58:36", "page": "/c", "user_id": 2},
                                   {"ts": "2016-12-06T08:58:36", "page": "/d", "user_id": 1}]),
    )
    .await;
    let frames = rows_from(&server, &query, 2, 2).await;
    assert_eq!(
        frame_rows(&frames, &["page", "name"]),
        vec![vec![json!("/c"), json!("bob")], vec![json!("/d"), json!("Ann")]]
    );

    let (status, body) = server.sql("SHOW TABLES").await;
    assert_eq!(status, 200);
    assert_eq!(body["rows"], json!([["users", 2, "user_id"]]));
    let (status, body) = server.sql("INSERT INTO users VALUES ('x', 'y', 'z')").await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn the_repl_shows_join_warnings() {
    let server = TestServer::start().await;
    let mut client = Client::new(&server.server.url());
    let mut out = Vec::new();
    client.run(STREAMS, &mut out, std::future::pending()).await.unwrap();
    let mut out = Vec::new();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let stopper = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let _ = stop.send(());
    });
    client
        .run("SELECT c.page FROM clicks c JOIN signups s ON c.user_id = s.user_id;", &mut out, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    stopper.await.unwrap();
    let printed = String::from_utf8(out).unwrap();
    assert!(printed.starts_with("WARNING: this join has no time bound"), "{printed}");
}

#[tokio::test]
async fn tables_and_their_rows_survive_a_restart() {
    let directory = std::env::temp_dir().join(format!("sluice-tables-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&directory);
    {
        let server = TestServer::start_with(Some(&directory)).await;
        let (status, body) = server
            .sql(
                "CREATE TABLE users (user_id BIGINT, name VARCHAR, PRIMARY KEY (user_id));
                 INSERT INTO users VALUES (1, 'ann'), (2, 'bob');
                 INSERT INTO users VALUES (2, 'Bob');",
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let server = TestServer::start_with(Some(&directory)).await;
    let (_, body) = server.sql("SHOW TABLES").await;
    assert_eq!(body["rows"], json!([["users", 2, "user_id"]]));
    let (status, body) = server.sql("DROP TABLE users").await;
    assert_eq!(status, 200, "{body}");
    let _ = std::fs::remove_dir_all(&directory);
}

#[tokio::test]
async fn a_processing_time_temporal_join_uses_the_latest_version() {
    let server = TestServer::start().await;
    let (status, body) = server
        .sql(
            "CREATE STREAM payments (ts TIMESTAMP, currency VARCHAR, amount DOUBLE, pt AS PROCTIME(),
               WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) WITH (connector = 'http');
             CREATE TABLE rates (ts TIMESTAMP, currency VARCHAR, rate DOUBLE,
               WATERMARK FOR ts AS ts - INTERVAL '1' SECOND, PRIMARY KEY (currency) NOT ENFORCED)
             WITH (connector = 'http');",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server
        .sql_with(
            "SELECT p.amount, r.rate FROM payments p JOIN rates FOR SYSTEM_TIME AS OF p.pt AS r ON p.currency = r.currency",
            json!({"epoch_interval": "0"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let query = body["query_id"].as_str().unwrap().to_string();
    let pause = || tokio::time::sleep(std::time::Duration::from_millis(300));
    post(&server, "rates", json!([{"ts": "2016-12-06T08:58:30", "currency": "EUR", "rate": 1.1}])).await;
    pause().await;
    post(&server, "payments", json!([{"ts": "2016-12-06T08:58:35", "currency": "EUR", "amount": 10.0}])).await;
    let frames = rows_from(&server, &query, 0, 1).await;
    assert_eq!(frame_rows(&frames, &["amount", "rate"]), vec![vec![json!(10.0), json!(1.1)]]);
    // A newer version is used from its arrival on, even for rows whose event
    // time is before it.
    post(&server, "rates", json!([{"ts": "2016-12-06T08:58:40", "currency": "EUR", "rate": 1.3}])).await;
    pause().await;
    post(&server, "payments", json!([{"ts": "2016-12-06T08:58:36", "currency": "EUR", "amount": 20.0}])).await;
    let frames = rows_from(&server, &query, 1, 1).await;
    assert_eq!(frame_rows(&frames, &["amount", "rate"]), vec![vec![json!(20.0), json!(1.3)]]);
}
