//! Top-N over a whole stream through the real server: the changelog a
//! websocket subscriber sees as bids arrive (ranks shifting, rows leaving
//! the top N), and the REPL printing it with its ops.

use serde_json::{Value, json};
use sluice::repl::Client;
use sluice_tests::{TestServer, frame_rows, read_frames};

const BIDS: &str = "CREATE STREAM bids (ts TIMESTAMP, auction BIGINT, price BIGINT,
    WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) WITH (connector = 'http');";

const TOP_TWO: &str = "SELECT auction, price, rn FROM (
    SELECT auction, price, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price DESC) AS rn FROM bids
  ) WHERE rn <= 2";

async fn post(server: &TestServer, events: Value) {
    let response = server.http.post(server.url("/v1/streams/bids/events")).json(&events).send().await;
    assert_eq!(response.unwrap().status(), 200);
}

/// The ops and rows of the rows frames from `seq` on, until `rows` arrived.
async fn changes(server: &TestServer, query: &str, seq: usize, rows: usize) -> (Vec<Value>, Vec<Vec<Value>>) {
    let url = server.ws_url(&format!("/v1/queries/{query}/ws?from_seq={seq}"));
    let frames: Vec<Value> =
        read_frames(&url, rows).await.into_iter().filter(|frame| frame["type"] == "rows").collect();
    let ops = frames.iter().flat_map(|frame| frame["ops"].as_array().cloned().unwrap_or_default()).collect();
    (ops, frame_rows(&frames, &["auction", "price", "rn"]))
}

#[tokio::test]
async fn a_top_n_retracts_shifted_ranks_over_the_websocket() {
    let server = TestServer::start().await;
    assert_eq!(server.sql(BIDS).await.0, 200);
    let (status, body) = server.sql_with(TOP_TWO, json!({"epoch_interval": "0"})).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("warnings").is_none(), "{body}");
    let query = body["query_id"].as_str().unwrap().to_string();

    post(&server, json!([{"ts": "2016-12-06T08:58:35", "auction": 1, "price": 10}])).await;
    let (ops, rows) = changes(&server, &query, 0, 1).await;
    assert_eq!(ops, vec![json!("+")]);
    assert_eq!(rows, vec![vec![json!(1), json!(10), json!(1)]]);

    // A higher bid takes rank 1: the old rank-1 row moves to rank 2.
    post(&server, json!([{"ts": "2016-12-06T08:58:36", "auction": 1, "price": 30}])).await;
    let (ops, rows) = changes(&server, &query, 1, 3).await;
    assert_eq!(ops, vec![json!("-"), json!("+"), json!("+")]);
    assert_eq!(
        rows,
        vec![
            vec![json!(1), json!(10), json!(1)],
            vec![json!(1), json!(30), json!(1)],
            vec![json!(1), json!(10), json!(2)]
        ]
    );

    // A bid between the two pushes the lowest out; a bid below both and a
    // bid for another auction arrive in the same request.
    post(
        &server,
        json!([{"ts": "2016-12-06T08:58:37", "auction": 1, "price": 20},
               {"ts": "2016-12-06T08:58:37", "auction": 1, "price": 5},
               {"ts": "2016-12-06T08:58:37", "auction": 2, "price": 7}]),
    )
    .await;
    let (ops, rows) = changes(&server, &query, 4, 3).await;
    // Each auction's changes in order (auctions of one epoch come out in
    // key-group order).
    let of_auction = |auction: i64| {
        ops.iter()
            .zip(&rows)
            .filter(move |(_, row)| row[0] == json!(auction))
            .map(|(op, row)| (op.clone(), row.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        of_auction(1),
        vec![(json!("-"), vec![json!(1), json!(10), json!(2)]), (json!("+"), vec![json!(1), json!(20), json!(2)])]
    );
    assert_eq!(of_auction(2), vec![(json!("+"), vec![json!(2), json!(7), json!(1)])]);
    let (_, status) = server.get(&format!("/v1/queries/{query}")).await;
    assert_eq!(status["metrics"]["state_rows"], 3, "two rows of auction 1, one of auction 2: {status}");
    assert!(
        status["plan"].as_str().unwrap().contains("top_n: 2 per [auction@0] by [price@1 DESC], ranks shown"),
        "{status}"
    );
}

#[tokio::test]
async fn the_repl_prints_a_top_n_changelog() {
    let server = TestServer::start().await;
    let mut client = Client::new(&server.server.url());
    let mut out = Vec::new();
    client.run(BIDS, &mut out, std::future::pending()).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let poster = {
        let http = server.http.clone();
        let url = server.url("/v1/streams/bids/events");
        tokio::spawn(async move {
            // Posted once the subscription is running, then the REPL stops.
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            let events = json!([{"ts": "2016-12-06T08:58:35", "auction": 1, "price": 10},
                                {"ts": "2016-12-06T08:58:36", "auction": 1, "price": 30}]);
            http.post(url).json(&events).send().await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(700)).await;
            let _ = stop.send(());
        })
    };
    let mut out = Vec::new();
    client
        .run(&format!("SET epoch_interval = '0'; {TOP_TWO};"), &mut out, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    poster.await.unwrap();
    let printed = String::from_utf8(out).unwrap();
    // Both bids came in one request, so one batch: the final ranks only.
    let rows: Vec<Vec<&str>> = printed
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .filter(|cells| cells.len() == 6 && ["+", "-"].contains(&cells[1]))
        .map(|cells| cells[1..5].to_vec())
        .collect();
    assert_eq!(rows, vec![vec!["+", "1", "30", "1"], vec!["+", "1", "10", "2"]], "{printed}");
    assert!(printed.contains("| op   auction   price   rn |"), "an updating result shows its ops: {printed}");
}
