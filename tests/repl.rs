//! The REPL client (its library API) against a live server.

use sluice::repl::Client;
use sluice_tests::{TestServer, data_dir};

async fn run(client: &mut Client, sql: &str) -> String {
    let mut out = Vec::new();
    client.run(sql, &mut out, std::future::pending()).await.expect("server reachable");
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn repl_prints_ddl_tables_windows_and_errors() {
    let server = TestServer::start().await;
    let mut client = Client::new(&server.server.url());
    let ddl = format!(
        "CREATE STREAM weblog (ts TIMESTAMP, ip VARCHAR, status INT, method VARCHAR, url VARCHAR, duration DOUBLE,
           WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
         WITH (connector = 'file', path = '{}/weblog.log', format = 'text', delimiter = ' ');",
        data_dir().display()
    );
    assert_eq!(run(&mut client, &ddl).await, "CREATE STREAM\n");

    let described = run(&mut client, "DESCRIBE weblog;").await;
    assert!(described.contains("| ts         TIMESTAMP   true       ts - INTERVAL '2' SECOND |"), "{described}");
    assert!(described.ends_with("(6 rows)\n"), "{described}");

    assert_eq!(run(&mut client, "SET epoch_interval = '0';").await, "SET\n");
    assert_eq!(client.settings.get("epoch_interval").map(String::as_str), Some("0"));

    let output = run(
        &mut client,
        "SELECT window_end, count(*) AS requests FROM TUMBLE(weblog, ts, INTERVAL '5' SECOND) GROUP BY window_start, window_end;",
    )
    .await;
    assert!(output.starts_with("query q1 running"), "{output}");
    assert!(output.contains("| 2016-12-06T08:58:40   9        |"), "{output}");
    assert!(output.contains("| 2016-12-06T08:58:45   3        |"), "{output}");
    assert!(output.ends_with("(query q1 finished: 2 rows)\n"), "{output}");

    let error = run(&mut client, "SELECT ip\nFROM nope;").await;
    assert_eq!(error, "ERROR: stream 'nope' not found\nLINE 2: FROM nope;\n             ^\n");
}

#[tokio::test]
async fn stopping_a_subscription_cancels_the_query() {
    let server = TestServer::start().await;
    let mut client = Client::new(&server.server.url());
    run(
        &mut client,
        "CREATE STREAM gen (ts TIMESTAMP, ip VARCHAR, WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
         WITH (connector = 'generator', rate = '1000');",
    )
    .await;
    let mut out = Vec::new();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let stopper = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        let _ = stop.send(());
    });
    let printed = client
        .run("SELECT ip FROM gen;", &mut out, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    stopper.await.unwrap();
    let output = String::from_utf8(out).unwrap();
    assert!(printed > 0, "{output}");
    assert!(output.ends_with(&format!("(subscription ended; query q1 cancelled after {printed} rows)\n")), "{output}");
    let (status, _) = server.get("/v1/queries/q1").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn repl_shows_the_op_of_updating_results() {
    let server = TestServer::start().await;
    let mut client = Client::new(&server.server.url());
    let ddl = format!(
        "CREATE STREAM weblog (ts TIMESTAMP, ip VARCHAR, status INT, method VARCHAR, url VARCHAR, duration DOUBLE,
           WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
         WITH (connector = 'file', path = '{}/weblog.log', format = 'text', batch_rows = '2');",
        data_dir().display()
    );
    run(&mut client, &ddl).await;
    let output = run(&mut client, "SELECT ip, count(*) AS requests FROM weblog GROUP BY ip;").await;
    assert!(output.contains("| op   ip         requests |"), "{output}");
    assert!(output.contains("| -    10.0.0.1   1        |"), "{output}");
    assert!(output.contains("| +    10.0.0.1   5        |"), "{output}");
}
