//! `sluice serve` stopped with SIGTERM: every query takes a final
//! checkpoint, subscribers are told (`shutting_down`), the process exits 0,
//! and the restarted server resumes each query from that checkpoint with
//! nothing to replay.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice::client::Subscription;

struct Child {
    child: std::process::Child,
    url: String,
}

fn serve(dir: &std::path::Path) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["serve", "--http", "127.0.0.1:0", "--pg", "off", "--data-dir"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("sluice serve starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    let url = loop {
        let line = lines.next().expect("it prints its address").unwrap();
        if let Some(url) = line.strip_prefix("Sluice listening on ") {
            break url.trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Child { child, url }
}

async fn sql(url: &str, text: &str, settings: Value) -> Value {
    let body = json!({"sql": text, "settings": settings});
    reqwest::Client::new().post(format!("{url}/v1/sql")).json(&body).send().await.unwrap().json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_checkpoints_tells_subscribers_and_restarts_without_replay() {
    let dir = std::env::temp_dir().join(format!("sluice-shutdown-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut server = serve(&dir);
    let ddl = "CREATE STREAM gen (ts TIMESTAMP, ip VARCHAR, status INT, WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
               WITH (connector = 'generator', kind = 'weblog', rate = '500', seed = '7')";
    sql(&server.url, ddl, json!({})).await;
    // No periodic checkpoint within the test: only the shutdown's.
    let started =
        sql(&server.url, "SELECT ip, count(*) AS n FROM gen GROUP BY ip", json!({"checkpoint_interval": "1h"})).await;
    let id = started["query_id"].as_str().unwrap().to_string();
    let ws = format!("{}/v1/queries/{id}/ws", server.url.replacen("http", "ws", 1));
    let mut subscription = Subscription::connect(&ws).await.unwrap();
    let mut rows = 0;
    while rows < 20 {
        let frame = subscription.next_json().await.unwrap().unwrap();
        rows += frame["rows"].as_array().map_or(0, Vec::len);
    }

    let signalled = Instant::now();
    let killed = Command::new("kill").arg("-TERM").arg(server.child.id().to_string()).status().unwrap();
    assert!(killed.success());
    // The subscriber is told, with where to resume.
    let last = loop {
        let frame = tokio::time::timeout(Duration::from_secs(20), subscription.next_json()).await.unwrap().unwrap();
        match frame {
            Some(frame) if frame["type"] == "error" => break frame,
            Some(_) => {}
            None => panic!("the socket closed without a shutting_down frame"),
        }
    };
    assert_eq!(last["code"], "shutting_down", "{last}");
    assert!(last["next_seq"].as_u64().unwrap() >= 20, "{last}");
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(signalled.elapsed() < Duration::from_secs(20), "still running after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));

    // Restarted: resumed from the final checkpoint, nothing replayed.
    let mut restarted = serve(&dir);
    let report: Value = reqwest::get(format!("{}/v1/queries/{id}", restarted.url)).await.unwrap().json().await.unwrap();
    assert_eq!(report["status"], "running", "{report}");
    let checkpoint = &report["checkpoint"];
    assert!(checkpoint["restored_from"].as_u64().is_some(), "{report}");
    assert_eq!(checkpoint["replayed_steps"], 0, "{report}");
    let _ = restarted.child.kill();
    let _ = restarted.child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
