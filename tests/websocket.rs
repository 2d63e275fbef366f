//! Websocket subscriptions through the real server: queries submitted on the
//! socket see every row, old `from_seq`s get a gap frame, heartbeats, the
//! `?where=` filter, the Arrow format, and bad input.

use std::time::Duration;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::Int64Type;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sluice::client::{ClientError, Subscription};
use sluice_tests::TestServer;
use tokio_tungstenite::tungstenite::Message;

const DEADLINE: Duration = Duration::from_secs(120);

/// A bounded generator of `rows` rows, far more than a query retains
/// (10 000).
async fn generated(server: &TestServer, rows: u64) {
    let ddl = format!(
        "CREATE STREAM gen (ts TIMESTAMP, ip VARCHAR, status INT, WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
         WITH (connector = 'generator', kind = 'weblog', rate = '1000000', rows = '{rows}', seed = '3')"
    );
    assert_eq!(server.sql(&ddl).await.0, 200);
}

/// Every frame until `end` or `error`.
async fn all_frames(subscription: &mut Subscription) -> Vec<Value> {
    tokio::time::timeout(DEADLINE, subscription.read_until(usize::MAX)).await.expect("in time").expect("JSON frames")
}

fn row_count(frames: &[Value]) -> usize {
    frames.iter().filter(|frame| frame["type"] == "rows").map(|frame| frame["rows"].as_array().unwrap().len()).sum()
}

#[tokio::test]
async fn a_query_submitted_on_the_socket_delivers_every_row_from_the_first() {
    let server = TestServer::start().await;
    generated(&server, 40_000).await;
    let request = json!({"sql": "SELECT ts, status FROM gen", "settings": {"epoch_interval": "0"}});
    let mut subscription = Subscription::submit(&server.ws_url(""), &request).await.unwrap();
    let frames = all_frames(&mut subscription).await;
    assert_eq!(frames[0]["type"], "schema", "{}", frames[0]);
    assert_eq!(frames.last().unwrap()["type"], "end");
    assert!(frames.iter().all(|frame| frame["type"] != "gap"));
    // Contiguous seqs from 0: nothing lost before the subscriber arrived.
    let mut next = 0;
    for frame in frames.iter().filter(|frame| frame["type"] == "rows") {
        assert_eq!(frame["seq"].as_u64(), Some(next), "{}", &frame.to_string()[..100]);
        next = frame["next_seq"].as_u64().unwrap();
    }
    let late = {
        let id = frames[0]["query_id"].as_str().unwrap();
        // The query belonged to the socket: gone once it closed.
        subscription.close().await;
        let mut gone = false;
        for _ in 0..50 {
            if server.get(&format!("/v1/queries/{id}")).await.0 == 404 {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(gone, "the socket's query is dropped with it");
        next
    };
    assert_eq!(row_count(&frames) as u64, late);
    assert!(late > 39_000, "{late} rows of 40 000 (less those found late)");

    // Submitted over HTTP and subscribed to after it finished: the first
    // 30 000 rows are gone, and the subscriber is told so before any row.
    let (status, body) = server.sql_with("SELECT ts, status FROM gen", json!({"epoch_interval": "0"})).await;
    assert_eq!(status, 200, "{body}");
    let id = body["query_id"].as_str().unwrap().to_string();
    for _ in 0..600 {
        if server.get(&format!("/v1/queries/{id}")).await.1["status"] == "finished" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut late_subscriber = Subscription::connect(&server.ws_url(&format!("/v1/queries/{id}/ws"))).await.unwrap();
    let frames = all_frames(&mut late_subscriber).await;
    assert_eq!(frames[1]["type"], "gap", "{}", frames[1]);
    assert_eq!(frames[1]["from_seq"], 0);
    let first_available = frames[1]["first_available"].as_u64().unwrap();
    assert!(first_available >= late - 10_000 - 8_192, "{}", frames[1]);
    assert_eq!(frames[2]["seq"].as_u64(), Some(first_available));
    assert_eq!(row_count(&frames) as u64, late - first_available);
}

#[tokio::test]
async fn sql_in_the_url_with_a_filter_sends_only_matching_rows_and_heartbeats() {
    let server = TestServer::start().await;
    generated(&server, 5_000).await;
    let sql = "SELECT ts, ip, status FROM gen";
    let url = format!(
        "{}?sql={}&where={}&heartbeat_ms=100",
        server.ws_url("/v1/subscribe"),
        urlencode(sql),
        urlencode("status >= 500 AND ip LIKE '10.%'")
    );
    let mut subscription = Subscription::connect(&url).await.unwrap();
    let frames = all_frames(&mut subscription).await;
    let rows = sluice_tests::frame_rows(&frames, &["ip", "status"]);
    assert!(!rows.is_empty());
    for row in &rows {
        assert!(row[1].as_i64().unwrap() >= 500 && row[0].as_str().unwrap().starts_with("10."), "{row:?}");
    }
    // The same rows as the query with the condition in its WHERE.
    let (_, body) = server.sql("SELECT ts, ip, status FROM gen WHERE status >= 500 AND ip LIKE '10.%'").await;
    let id = body["query_id"].as_str().unwrap();
    let expected = sluice_tests::read_frames(&server.ws_url(&format!("/v1/queries/{id}/ws")), usize::MAX).await;
    assert_eq!(rows, sluice_tests::frame_rows(&expected, &["ip", "status"]));

    // A quiet query: heartbeats carry the watermark and where to resume.
    assert_eq!(
        server
            .sql("CREATE STREAM quiet (ts TIMESTAMP, n INT, WATERMARK FOR ts AS ts) WITH (connector = 'http')")
            .await
            .0,
        200
    );
    let url = format!("{}?sql={}&heartbeat_ms=100", server.ws_url("/v1/subscribe"), urlencode("SELECT n FROM quiet"));
    let mut quiet = Subscription::connect(&url).await.unwrap();
    let schema = quiet.next_json().await.unwrap().unwrap();
    assert_eq!(schema["type"], "schema");
    let beat = tokio::time::timeout(Duration::from_secs(5), quiet.next_json()).await.unwrap().unwrap().unwrap();
    assert_eq!(beat["type"], "heartbeat", "{beat}");
    assert_eq!(beat["next_seq"], 0);
}

#[tokio::test]
async fn arrow_frames_decode_with_an_arrow_reader() {
    let server = TestServer::start().await;
    generated(&server, 3_000).await;
    let url = format!(
        "{}?sql={}&format=arrow&keep_running=true",
        server.ws_url("/v1/subscribe"),
        urlencode("SELECT status, count(*) AS n FROM gen GROUP BY status")
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let mut stream = Vec::new();
    let mut texts = Vec::new();
    while let Some(message) = tokio::time::timeout(DEADLINE, socket.next()).await.unwrap() {
        match message.unwrap() {
            Message::Binary(bytes) => stream.extend_from_slice(&bytes),
            Message::Text(text) => {
                let frame: Value = serde_json::from_str(&text).unwrap();
                let last = frame["type"] == "end" || frame["type"] == "error";
                texts.push(frame);
                if last {
                    break;
                }
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    assert_eq!(texts[0]["format"], "arrow");
    assert_eq!(texts.last().unwrap()["type"], "end", "{texts:?}");
    let reader =
        datafusion::arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(stream), None).expect("IPC stream");
    let batches: Vec<RecordBatch> = reader.map(|batch| batch.expect("IPC batch")).collect();
    let schema = batches[0].schema();
    let names: Vec<&str> = schema.fields().iter().map(|field| field.name().as_str()).collect();
    assert_eq!(names, ["seq", "op", "status", "n"]);
    // Seqs run on from 0 across batches, and the changelog adds up to the
    // generator's rows per status.
    let mut seqs = Vec::new();
    let mut total: i64 = 0;
    for batch in &batches {
        seqs.extend(batch.column(0).as_primitive::<Int64Type>().values().iter().copied());
        let ops = batch.column(1).as_string::<i32>();
        let counts = batch.column(3).as_primitive::<Int64Type>();
        for row in 0..batch.num_rows() {
            let sign = if ops.value(row) == "+" { 1 } else { -1 };
            total += sign * counts.value(row);
        }
        assert_eq!(batch.column(2).null_count(), 0);
    }
    assert_eq!(seqs, (0..seqs.len() as i64).collect::<Vec<_>>());
    let (_, status) = server.get("/v1/queries").await;
    let late = status[0]["metrics"]["late_rows_dropped"].as_i64().unwrap();
    assert_eq!(total + late, 3_000);
}

#[tokio::test]
async fn bad_subscriptions_get_clear_errors_and_disturb_nothing() {
    let server = TestServer::start().await;
    generated(&server, 2_000).await;
    let (_, body) = server.sql("SELECT ip, status FROM gen").await;
    let id = body["query_id"].as_str().unwrap().to_string();
    let refused = |error: ClientError| match error {
        ClientError::Refused { status, body } => (status, serde_json::from_str::<Value>(&body).unwrap()),
        other => panic!("expected a refusal, got {other}"),
    };

    // A filter naming an unknown column, one that does not parse, one that
    // is not a condition; a bad format.
    let attach = |query: &str| format!("{}?{query}", server.ws_url(&format!("/v1/queries/{id}/ws")));
    let (status, body) = refused(Subscription::connect(&attach("where=host%3D'a'")).await.err().unwrap());
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap().contains("host"), "{body}");
    let (_, body) = refused(Subscription::connect(&attach("where=status%20%3D%3D%3D%201")).await.err().unwrap());
    assert_eq!(body["error"]["code"], "syntax_error", "{body}");
    let (_, body) = refused(Subscription::connect(&attach("where=status%2B1")).await.err().unwrap());
    assert!(body["error"]["message"].as_str().unwrap().contains("must be a condition"), "{body}");
    let (_, body) = refused(Subscription::connect(&attach("format=xml")).await.err().unwrap());
    assert!(body["error"]["message"].as_str().unwrap().contains("json or arrow"), "{body}");
    // An unknown query.
    assert!(matches!(
        Subscription::connect(&server.ws_url("/v1/queries/q99/ws")).await.err().unwrap(),
        ClientError::NotFound
    ));
    // SQL that does not plan, in the URL: refused with its position.
    let url = format!("{}?sql={}", server.ws_url("/v1/subscribe"), urlencode("SELECT ip\nFROM nope"));
    let (status, body) = refused(Subscription::connect(&url).await.err().unwrap());
    assert_eq!((status, body["error"]["line"].as_u64()), (400, Some(2)), "{body}");

    // A first message that is not a request, and SQL that does not parse.
    for (message, code) in [("hello", "bad_request"), (r#"{"sql": "SELEC 1"}"#, "syntax_error")] {
        let (mut socket, _) = tokio_tungstenite::connect_async(server.ws_url("/v1/subscribe")).await.unwrap();
        socket.send(Message::Text(message.into())).await.unwrap();
        let reply = socket.next().await.unwrap().unwrap();
        let frame: Value = serde_json::from_str(reply.to_text().unwrap()).unwrap();
        assert_eq!((frame["type"].as_str(), frame["code"].as_str()), (Some("error"), Some(code)), "{frame}");
    }

    // Text sent to a running subscription is answered with a warning; the
    // rows still come.
    assert_eq!(
        server.sql("CREATE STREAM ev (ts TIMESTAMP, n INT, WATERMARK FOR ts AS ts) WITH (connector = 'http')").await.0,
        200
    );
    let (_, body) = server.sql("SELECT n FROM ev").await;
    let live = body["query_id"].as_str().unwrap().to_string();
    let (mut socket, _) =
        tokio_tungstenite::connect_async(server.ws_url(&format!("/v1/queries/{live}/ws"))).await.unwrap();
    socket.send(Message::Text("what is this".into())).await.unwrap();
    let mut next_text = async || loop {
        let message = tokio::time::timeout(DEADLINE, socket.next()).await.unwrap().unwrap().unwrap();
        if let Message::Text(text) = message {
            let frame: Value = serde_json::from_str(&text).unwrap();
            if frame["type"] != "schema" {
                return frame;
            }
        }
    };
    let warning = next_text().await;
    assert_eq!(warning["type"], "warning", "{warning}");
    let response = server
        .http
        .post(server.url("/v1/streams/ev/events"))
        .body(r#"{"ts": "2024-01-01T00:00:00", "n": 7}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let rows = next_text().await;
    assert_eq!(rows["rows"], json!([{"n": 7}]), "{rows}");
    // The queries themselves ran on untouched.
    for query in [&id, &live] {
        let (_, report) = server.get(&format!("/v1/queries/{query}")).await;
        assert_ne!(report["status"], "failed", "{report}");
    }
}

#[tokio::test]
async fn keep_running_leaves_the_query_to_others() {
    let server = TestServer::start().await;
    assert_eq!(
        server.sql("CREATE STREAM ev (ts TIMESTAMP, n INT, WATERMARK FOR ts AS ts) WITH (connector = 'http')").await.0,
        200
    );
    let request = json!({"sql": "SELECT n FROM ev", "keep_running": true});
    let mut subscription = Subscription::submit(&server.ws_url(""), &request).await.unwrap();
    let schema = subscription.next_json().await.unwrap().unwrap();
    let id = schema["query_id"].as_str().unwrap().to_string();
    subscription.close().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, report) = server.get(&format!("/v1/queries/{id}")).await;
    assert_eq!((status, report["status"].as_str()), (200, Some("running")), "{report}");
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (byte as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// A subscriber that stops reading is cut off as `lagged` once it falls
/// more than its queue behind, without holding the query back; reading
/// again, it is told where to resume, and resumes there. (That readers of
/// the same query see every row meanwhile is `sluice bench fanout`'s.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_is_cut_off_and_resumes_where_it_was_cut() {
    let server = TestServer::start().await;
    // About 20 MB of JSON: more than socket buffers hold.
    let ddl = "CREATE STREAM paced (ts TIMESTAMP, ip VARCHAR, status INT, WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
               WITH (connector = 'generator', kind = 'weblog', rate = '100000', rows = '300000', seed = '4')";
    assert_eq!(server.sql(ddl).await.0, 200);
    let settings = json!({"subscriber_queue": "16", "retained_rows": "1000000"});
    let (status, body) = server.sql_with("SELECT ts, ip, status FROM paced", settings).await;
    assert_eq!(status, 200, "{body}");
    let id = body["query_id"].as_str().unwrap().to_string();
    let url = server.ws_url(&format!("/v1/queries/{id}/ws"));
    // A 4 KiB receive buffer, and no reading.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(server.server.address).await.unwrap();
    let (mut stalled, _) = tokio_tungstenite::client_async(&url, stream).await.unwrap();
    let mut finished = Value::Null;
    for _ in 0..600 {
        finished = server.get(&format!("/v1/queries/{id}")).await.1;
        if finished["status"] == "finished" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(finished["status"], "finished", "the query ran on: {finished}");
    assert_eq!(finished["metrics"]["lagged_subscribers"], 1, "{finished}");
    let rows_out = finished["metrics"]["rows_out"].as_u64().unwrap();
    // Reading again, the stalled one drains what was queued for it, then
    // learns it was cut off and where to resume.
    let mut last = Value::Null;
    while let Some(Ok(message)) = tokio::time::timeout(DEADLINE, stalled.next()).await.unwrap() {
        if let Message::Text(text) = message {
            last = serde_json::from_str(&text).unwrap();
        }
    }
    assert_eq!(last["code"], "lagged", "{last}");
    let resume = last["next_seq"].as_u64().unwrap();
    assert!(resume < rows_out, "{resume} of {rows_out}");
    let mut resumed = Subscription::connect_from(&url, resume).await.unwrap();
    let frames = all_frames(&mut resumed).await;
    assert_eq!(frames[1]["seq"].as_u64(), Some(resume), "{}", frames[1]);
    assert_eq!(resumed.next_seq(), rows_out);
}
