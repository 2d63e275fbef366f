//! An http stream's event log through the server: every `--fsync` mode
//! keeps and delivers posts; segments no checkpoint needs are deleted, and
//! a restart still restores from what is left; a full disk (a small tmpfs)
//! refuses posts with 507 `storage_full`, disturbs nothing, and takes
//! posts again once there is room.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use sluice_tests::TestServer;

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sluice-storage-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

async fn server(data_dir: &Path, fsync: sluice_runtime::Fsync) -> TestServer {
    let options = sluice::Options { fsync, ..sluice::Options::default() };
    let server = sluice::start_with("127.0.0.1:0", Some(data_dir), &options).await.expect("server starts");
    TestServer { server, http: reqwest::Client::new() }
}

async fn post(server: &TestServer, events: Value) -> (u16, Value) {
    let response = server.http.post(server.url("/v1/streams/h/events")).json(&events).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn wait_for(server: &TestServer, what: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..1000 {
        let (_, status) = server.get("/v1/queries/q1").await;
        if what(&status) {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("q1 never got there: {}", server.get("/v1/queries/q1").await.1);
}

fn segments(data_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data_dir.join("streams").join("h"))
        .unwrap()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().to_string())
        .filter(|name| name.starts_with("events-"))
        .collect();
    names.sort();
    names
}

/// The final totals of q1's changelog (`k`, `n`, `total` per key).
async fn totals(server: &TestServer, rows: usize) -> Vec<String> {
    sluice_tests::materialized(&sluice_tests::read_frames(&server.ws_url("/v1/queries/q1/ws"), rows).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fsync_mode_logs_and_delivers_posts() {
    for fsync in [sluice_runtime::Fsync::Always, sluice_runtime::Fsync::Batch, sluice_runtime::Fsync::Never] {
        let data_dir = temp(fsync.name());
        let server = server(&data_dir, fsync).await;
        assert_eq!(server.sql("CREATE STREAM h (k VARCHAR, v INT) WITH (connector = 'http')").await.0, 200);
        let (status, body) = server.sql_with("SELECT k, v FROM h", json!({"epoch_interval": "0"})).await;
        assert_eq!(status, 200, "{body}");
        let posts: Vec<_> = (0..20)
            .map(|n| {
                let url = server.url("/v1/streams/h/events");
                let http = server.http.clone();
                tokio::spawn(
                    async move { http.post(url).json(&json!({"k": "a", "v": n})).send().await.unwrap().status() },
                )
            })
            .collect();
        for post in posts {
            assert_eq!(post.await.unwrap(), 200);
        }
        wait_for(&server, |status| status["metrics"]["rows_in"] == 20).await;
        drop(server);
        let _ = std::fs::remove_dir_all(&data_dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_no_checkpoint_needs_are_deleted_and_a_restart_restores_from_the_rest() {
    let data_dir = temp("compact");
    {
        let server = server(&data_dir, sluice_runtime::Fsync::Batch).await;
        let ddl = "CREATE STREAM h (k VARCHAR, v INT) WITH (connector = 'http', segment_bytes = '100')";
        assert_eq!(server.sql(ddl).await.0, 200);
        let settings = json!({"checkpoint_interval": "0.001ms", "epoch_interval": "0"});
        let (status, body) =
            server.sql_with("SELECT k, count(*) AS n, sum(v) AS total FROM h GROUP BY k", settings).await;
        assert_eq!(status, 200, "{body}");
        // 60 posts of ~26 bytes: about 16 segments of 100 bytes written.
        for n in 0..60 {
            assert_eq!(post(&server, json!({"k": if n % 2 == 0 { "a" } else { "b" }, "v": n})).await.0, 200);
        }
        wait_for(&server, |status| status["metrics"]["rows_in"] == 60).await;
        // A checkpoint after every epoch: only the segments from the older
        // kept checkpoint's position on are left.
        // (Checkpoints are written in the background: the last ones may
        // still be committing.)
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while segments(&data_dir).len() > 3 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let left = segments(&data_dir);
        assert!((1..=3).contains(&left.len()), "{left:?}");
        assert!(left[0].as_str() > "events-00000000000000000000.log", "{left:?}");
        // The server goes away without a final checkpoint.
    }
    let server = server(&data_dir, sluice_runtime::Fsync::Batch).await;
    let (_, status) = server.get("/v1/queries/q1").await;
    assert!(status["checkpoint"]["restored_from"].is_u64(), "{status}");
    assert_eq!(post(&server, json!({"k": "a", "v": 1000})).await.0, 200);
    wait_for(&server, |status| status["metrics"]["rows_in"] == 61).await;
    // a: 0 + 2 + ... + 58 = 870, and 1000; b: 1 + 3 + ... + 59 = 900.
    // (rows_out counts the last epoch's rows a moment after rows_in.)
    let expected = vec![r#"{"k":"a","n":31,"total":1870}"#.to_string(), r#"{"k":"b","n":30,"total":900}"#.to_string()];
    let mut seen = Vec::new();
    for _ in 0..100 {
        let (_, status) = server.get("/v1/queries/q1").await;
        seen = totals(&server, status["metrics"]["rows_out"].as_u64().unwrap() as usize).await;
        if seen == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen, expected);
    drop(server);
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// Needs to mount a tmpfs (root, as in CI); says so and passes elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_posts_with_507_and_takes_them_again_once_there_is_room() {
    let mount = temp("full");
    std::fs::create_dir_all(&mount).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&mount)
        .status()
        .is_ok_and(|status| status.success());
    if !mounted {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _unmount = Unmount(mount.clone());
    let data_dir = mount.join("data");
    let server = server(&data_dir, sluice_runtime::Fsync::Batch).await;
    assert_eq!(server.sql("CREATE STREAM h (k VARCHAR, v INT) WITH (connector = 'http')").await.0, 200);
    let (status, body) = server.sql_with("SELECT k, v FROM h", json!({"epoch_interval": "0"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(post(&server, json!({"k": "a", "v": 1})).await.0, 200);
    wait_for(&server, |status| status["metrics"]["rows_in"] == 1).await;

    // Fill the disk.
    let filler = mount.join("filler");
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&filler).unwrap();
        while file.write_all(&[0; 4096]).is_ok() {}
        let _ = file.flush();
    }
    // The segment's last page may still have room: post until refused.
    let big = "x".repeat(1000);
    let mut accepted = 1;
    let (status, body) = loop {
        let (status, body) = post(&server, json!([{"k": big, "v": 2}, {"k": big, "v": 3}])).await;
        if status != 200 || accepted > 100 {
            break (status, body);
        }
        accepted += 2;
    };
    assert_eq!(status, 507, "{body}");
    assert_eq!(body["error"]["code"], "storage_full", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("nothing was taken") && message.contains("No space left on device"), "{message}");
    // The query runs on, and the server answers.
    wait_for(&server, |status| status["metrics"]["rows_in"] == accepted).await;
    let (_, status) = server.get("/v1/queries/q1").await;
    assert_eq!(status["status"], "running", "{status}");

    // Room again: posts are taken, and the refused one was never logged.
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(post(&server, json!({"k": "c", "v": 4})).await.0, 200);
    wait_for(&server, |status| status["metrics"]["rows_in"] == accepted + 1).await;
    let frames = sluice_tests::read_frames(&server.ws_url("/v1/queries/q1/ws"), accepted as usize + 1).await;
    let rows = sluice_tests::frame_rows(&frames, &["k", "v"]);
    assert_eq!(rows.len(), accepted as usize + 1);
    assert_eq!(rows[0], vec![json!("a"), json!(1)]);
    assert_eq!(rows[rows.len() - 1], vec![json!("c"), json!(4)]);
}
