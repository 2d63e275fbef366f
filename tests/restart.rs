//! Streams and queries survive a restart: same catalog, same query ids,
//! and (replayable sources being replayed) the same rows under the same seqs.

use serde_json::{Value, json};
use sluice_tests::{TestServer, read_frames};

const WEBLOG: &str = "CREATE STREAM weblog (
  ts TIMESTAMP, ip VARCHAR, status INT, method VARCHAR, url VARCHAR, duration DOUBLE,
  WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'file', path = '$DATA/weblog.log', format = 'text', delimiter = ' ')";

fn rows_with_seq(frames: &[Value]) -> Vec<(u64, Value)> {
    frames
        .iter()
        .filter(|frame| frame["type"] == "rows")
        .flat_map(|frame| {
            let seq = frame["seq"].as_u64().unwrap();
            frame["rows"]
                .as_array()
                .unwrap()
                .iter()
                .enumerate()
                .map(move |(index, row)| (seq + index as u64, row.clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn the_catalog_and_queries_survive_a_restart() {
    let data_dir = std::env::temp_dir().join(format!("sluice-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let query = "SELECT window_start, count(*) AS requests FROM TUMBLE(weblog, ts, INTERVAL '1' SECOND) GROUP BY window_start, window_end";
    let before = {
        let server = TestServer::start_with(Some(&data_dir)).await;
        assert_eq!(server.sql(WEBLOG).await.0, 200);
        let (status, body) = server.sql_with(query, json!({"epoch_interval": "0"})).await;
        assert_eq!((status, body["query_id"].clone()), (200, json!("q1")));
        let (_, second) = server.sql("SELECT ip FROM weblog").await;
        assert_eq!(second["query_id"], "q2");
        assert_eq!(server.http.delete(server.url("/v1/queries/q2")).send().await.unwrap().status(), 200);
        rows_with_seq(&read_frames(&server.ws_url("/v1/queries/q1/ws"), 1000).await)
    };
    assert_eq!(before.len(), 7);

    let server = TestServer::start_with(Some(&data_dir)).await;
    let (_, queries) = server.get("/v1/queries").await;
    let ids: Vec<&str> = queries.as_array().unwrap().iter().map(|query| query["query_id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["q1"]);
    assert_eq!(queries[0]["epoch_interval_ms"], 0);
    let (_, streams) = server.get("/v1/streams").await;
    assert_eq!(streams[0]["name"], "weblog");
    let after = rows_with_seq(&read_frames(&server.ws_url("/v1/queries/q1/ws"), 1000).await);
    assert_eq!(after, before);
    // Ids are never reused.
    let (_, next) = server.sql("SELECT ip FROM weblog").await;
    assert_eq!(next["query_id"], "q3");
    drop(server);
    let _ = std::fs::remove_dir_all(&data_dir);
}

#[tokio::test]
async fn a_data_dir_from_another_format_is_refused_at_start_up() {
    let data_dir = std::env::temp_dir().join(format!("sluice-format-{}", std::process::id()));
    std::fs::create_dir_all(&data_dir).unwrap();
    std::fs::write(data_dir.join("catalog.json"), r#"{"format_version": 99, "streams": [], "queries": []}"#).unwrap();
    let error = sluice::start("127.0.0.1:0", false, Some(&data_dir)).await.err().expect("start-up fails");
    assert!(error.to_string().contains("catalog format 99"), "{error}");
    let _ = std::fs::remove_dir_all(&data_dir);
}
