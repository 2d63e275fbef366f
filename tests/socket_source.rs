//! A socket stream fed by a test TCP listener: Sluice connects as a client,
//! reads lines, survives a dropped connection and reconnects.

use std::time::Duration;

use serde_json::json;
use sluice_tests::{TestServer, frame_rows, read_frames};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

#[tokio::test]
async fn socket_lines_become_rows_and_a_dropped_connection_is_retried() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = TestServer::start().await;
    let ddl = format!(
        "CREATE STREAM weblog (
           ts TIMESTAMP, ip VARCHAR, status INT, method VARCHAR, url VARCHAR, duration DOUBLE,
           WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
         ) WITH (connector = 'socket', host = '127.0.0.1', port = '{port}', format = 'text', delimiter = ' ')"
    );
    assert_eq!(server.sql(&ddl).await.0, 200);
    let (status, body) =
        server.sql_with("SELECT ip, status FROM weblog WHERE status >= 400", json!({"epoch_interval": "10ms"})).await;
    assert_eq!(status, 200, "{body}");
    let url = server.ws_url(body["subscribe"].as_str().unwrap());
    let reader = tokio::spawn(async move { read_frames(&url, 2).await });

    // First connection: two lines and a malformed one, then the peer hangs up.
    let (mut connection, _) = tokio::time::timeout(Duration::from_secs(30), listener.accept()).await.unwrap().unwrap();
    connection
        .write_all(
            b"2016-12-06T08:58:35.318+0000 37.139.9.11 404 GET /codemove/TTCENCUFMH3C 0.026\n\
              garbage\n\
              2016-12-06T08:58:35.500+0000 10.0.0.1 200 GET /ok 0.010\n",
        )
        .await
        .unwrap();
    connection.shutdown().await.unwrap();
    drop(connection);

    // Sluice reconnects; the query keeps running.
    let (mut connection, _) = tokio::time::timeout(Duration::from_secs(30), listener.accept()).await.unwrap().unwrap();
    connection.write_all(b"2016-12-06T08:58:36.000+0000 10.0.0.2 500 POST /x 0.5\n").await.unwrap();
    connection.flush().await.unwrap();

    let frames = reader.await.unwrap();
    assert_eq!(frames[0]["type"], "schema");
    assert_eq!(
        frame_rows(&frames, &["ip", "status"]),
        vec![vec![json!("37.139.9.11"), json!(404)], vec![json!("10.0.0.2"), json!(500)]]
    );
    let (_, query) = server.get("/v1/queries/q1").await;
    assert_eq!(query["status"], "running");
    assert_eq!(query["metrics"]["malformed_records"], 1);
    let (_, streams) = server.get("/v1/streams").await;
    assert!(streams[0]["status"].as_str().unwrap().contains(&format!("127.0.0.1:{port}")), "{streams}");
}

#[tokio::test]
async fn a_refused_connection_is_reported_and_the_query_survives() {
    // Bind then drop, so nothing listens on the port.
    let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    let server = TestServer::start().await;
    let ddl = format!(
        "CREATE STREAM s (ts TIMESTAMP, x INT, WATERMARK FOR ts AS ts) WITH (connector = 'socket', port = '{port}', format = 'csv')"
    );
    assert_eq!(server.sql(&ddl).await.0, 200);
    assert_eq!(server.sql("SELECT x FROM s").await.0, 200);
    let mut status = String::new();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (_, streams) = server.get("/v1/streams").await;
        status = streams[0]["status"].as_str().unwrap_or_default().to_string();
        if status.starts_with("cannot connect") {
            break;
        }
    }
    assert!(status.starts_with(&format!("cannot connect to 127.0.0.1:{port}")), "{status}");
    assert!(status.contains("retrying in"), "{status}");
    let (_, query) = server.get("/v1/queries/q1").await;
    assert_eq!(query["status"], "running");
}

/// A line longer than the longest taken (1 MiB) is counted as malformed and
/// skipped without being held whole; the lines around it go through.
#[tokio::test]
async fn an_endless_line_is_skipped_not_held() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = TestServer::start().await;
    let ddl = format!(
        "CREATE STREAM lines (ts TIMESTAMP, ip VARCHAR, status INT, method VARCHAR, url VARCHAR, duration DOUBLE,
           WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
         WITH (connector = 'socket', host = '127.0.0.1', port = '{port}', format = 'text', delimiter = ' ')"
    );
    assert_eq!(server.sql(&ddl).await.0, 200);
    let (_, body) = server.sql_with("SELECT ip FROM lines", json!({"epoch_interval": "10ms"})).await;
    let url = server.ws_url(body["subscribe"].as_str().unwrap());
    let reader = tokio::spawn(async move { read_frames(&url, 2).await });
    let (mut connection, _) = tokio::time::timeout(Duration::from_secs(30), listener.accept()).await.unwrap().unwrap();
    connection.write_all(b"2016-12-06T08:58:35.318+0000 10.0.0.1 200 GET /a 0.1\n").await.unwrap();
    // 3 MiB without a newline, then its end.
    let long = vec![b'x'; 3 * 1024 * 1024];
    connection.write_all(&long).await.unwrap();
    connection.write_all(b"\n2016-12-06T08:58:36.000+0000 10.0.0.2 200 GET /b 0.1\n").await.unwrap();
    connection.flush().await.unwrap();
    let frames = reader.await.unwrap();
    assert_eq!(frame_rows(&frames, &["ip"]), vec![vec![json!("10.0.0.1")], vec![json!("10.0.0.2")]]);
    let (_, query) = server.get("/v1/queries/q1").await;
    assert_eq!(query["metrics"]["malformed_records"], 1, "{query}");
    assert!(query["metrics"]["last_malformed"].as_str().unwrap().contains("longer than the 1048576 taken"), "{query}");
}
