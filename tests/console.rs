//! The web console in a real browser: `console/console_test.py` drives
//! Debian's chromium with Playwright against a server on port 0 with the
//! demo streams. It checks the streams list, a windowed query's live rows,
//! chart and operator figures, its entry among the running queries, an SQL
//! error marked in the editor and cancelling the query; and, on a server
//! with a token, that the page asks for it and uses it on websockets too.
//!
//! Needs `python3` with the `playwright` package (its driver only: no
//! browser download) and `/usr/bin/chromium` (Debian's `chromium`).

use std::path::Path;
use std::time::Duration;

use tokio::process::Command;

const TOKEN: &str = "console-test-token";

/// Runs the script against `server`; panics with its output unless it passes.
async fn console_test(server: &sluice::RunningServer, extra_args: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("console").join("console_test.py");
    let url = server.url();
    let mut command = Command::new("python3");
    command.arg(&script).args(["--url", url.as_str()]).args(extra_args).kill_on_drop(true);
    // The script waits 25 s at most for any one thing; this bounds the whole.
    let output = tokio::time::timeout(Duration::from_secs(180), command.output())
        .await
        .expect("console_test.py finishes within 180 s")
        .expect("python3 runs (pip install playwright; apt-get install chromium)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("console test passed"),
        "{} --url {url} {extra_args:?} exited with {}:\n{stdout}\n{stderr}",
        script.display(),
        output.status,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_shows_a_live_query_its_errors_and_cancels_it() {
    let server = sluice::start("127.0.0.1:0", true, None).await.expect("server starts on port 0 with the demo streams");
    console_test(&server, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_asks_for_the_token_of_a_server_that_has_one() {
    let options = sluice::Options { with_demo: true, token: Some(TOKEN.into()), ..sluice::Options::default() };
    let server = sluice::start_with("127.0.0.1:0", None, &options).await.expect("server starts with a token");
    console_test(&server, &["--token", TOKEN]).await;
}
