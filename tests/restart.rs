//! Streams and queries survive a restart: same catalog, same query ids,
//! and (replayable sources being replayed) the same rows under the same seqs.

use serde_json::{Value, json};
use sluice_tests::{TestServer, materialized, read_frames};

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

async fn post_events(server: &TestServer, events: Value) {
    let response = server.http.post(server.url("/v1/streams/h/events")).json(&events).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn http_events_acknowledged_before_a_crash_are_read_once_after_it() {
    let data_dir = std::env::temp_dir().join(format!("sluice-http-log-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    {
        let server = TestServer::start_with(Some(&data_dir)).await;
        assert_eq!(server.sql("CREATE STREAM h (k VARCHAR, v INT) WITH (connector = 'http')").await.0, 200);
        // Events posted before the query started are not its input.
        post_events(&server, json!([{"k": "early", "v": 100}])).await;
        // One checkpoint (at the start): every event is replayed from the
        // stream's event log and the query's input log.
        let settings = json!({"checkpoint_interval": "1h", "epoch_interval": "0"});
        let (status, body) =
            server.sql_with("SELECT k, count(*) AS n, sum(v) AS total FROM h GROUP BY k", settings).await;
        assert_eq!((status, body["query_id"].as_str()), (200, Some("q1")));
        post_events(&server, json!([{"k": "a", "v": 1}, {"k": "b", "v": 2}])).await;
        post_events(&server, json!([{"k": "a", "v": 3}])).await;
        post_events(&server, json!({"k": "b", "v": 4})).await;
        for _ in 0..500 {
            if server.get("/v1/queries/q1").await.1["metrics"]["rows_in"] == 4 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        // The server goes away without a final checkpoint.
    }
    let server = TestServer::start_with(Some(&data_dir)).await;
    post_events(&server, json!([{"k": "a", "v": 5}])).await;
    let (_, status) = server.get("/v1/queries/q1").await;
    assert_eq!(status["checkpoint"]["restored_from"], 0, "{status}");
    assert!(status["checkpoint"]["replayed_steps"].as_u64().unwrap() >= 3, "{status}");
    // The changelog: four rows from the replayed events (+a, +b, -a +a,
    // -b +b), then -a +a for the event posted after the restart.
    let frames = read_frames(&server.ws_url("/v1/queries/q1/ws"), 8).await;
    assert_eq!(
        materialized(&frames),
        vec![r#"{"k":"a","n":3,"total":9}"#.to_string(), r#"{"k":"b","n":2,"total":6}"#.to_string()]
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&data_dir);
}

#[tokio::test]
async fn a_damaged_checkpoint_falls_back_to_the_one_before() {
    let data_dir = std::env::temp_dir().join(format!("sluice-damaged-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let query = "SELECT window_start, count(*) AS requests FROM TUMBLE(weblog, ts, INTERVAL '1' SECOND) GROUP BY window_start, window_end";
    let before = {
        let server = TestServer::start_with(Some(&data_dir)).await;
        assert_eq!(server.sql(WEBLOG).await.0, 200);
        let settings = json!({"epoch_interval": "0", "checkpoint_interval": "0.001ms"});
        assert_eq!(server.sql_with(query, settings).await.0, 200);
        let rows = rows_with_seq(&read_frames(&server.ws_url("/v1/queries/q1/ws"), 1000).await);
        let (_, status) = server.get("/v1/queries/q1").await;
        assert!(status["checkpoint"]["last_id"].as_u64().unwrap() >= 1, "{status}");
        assert!(status["checkpoint"]["last_bytes"].as_u64().unwrap() > 0, "{status}");
        assert!(status["checkpoint"]["last_duration_ms"].as_f64().is_some(), "{status}");
        rows
    };
    // Damage the newest checkpoint (the one taken when the input ended).
    let query_dir = data_dir.join("queries").join("q1");
    let mut checkpoints: Vec<_> = std::fs::read_dir(&query_dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.file_name().unwrap().to_string_lossy().starts_with("checkpoint-"))
        .collect();
    checkpoints.sort();
    assert_eq!(checkpoints.len(), 2, "the two newest checkpoints are kept");
    let damaged = checkpoints[1].join("node-2.state");
    let mut bytes = std::fs::read(&damaged).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&damaged, bytes).unwrap();

    let server = TestServer::start_with(Some(&data_dir)).await;
    let after = rows_with_seq(&read_frames(&server.ws_url("/v1/queries/q1/ws"), 1000).await);
    assert_eq!(after, before);
    let (_, status) = server.get("/v1/queries/q1").await;
    let warnings = status["checkpoint"]["warnings"].to_string();
    assert!(warnings.contains("is damaged") && warnings.contains("checksum"), "{status}");
    drop(server);
    let _ = std::fs::remove_dir_all(&data_dir);
}
