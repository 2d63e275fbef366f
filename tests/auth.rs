//! A server started with a token: HTTP, websockets, the REPL client and
//! psql must present it; nothing runs without it; it never shows in
//! errors or query listings; and a server will not listen beyond loopback
//! without one.

use std::time::Duration;

use serde_json::{Value, json};
use sluice::client::{ClientError, Subscription};
use tokio::process::Command;

const TOKEN: &str = "s3cret-token-for-tests";

async fn server() -> sluice::RunningServer {
    let options = sluice::Options {
        pg_address: Some("127.0.0.1:0".into()),
        token: Some(TOKEN.into()),
        ..sluice::Options::default()
    };
    sluice::start_with("127.0.0.1:0", None, &options).await.expect("server starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_interface_needs_the_token() {
    let server = server().await;
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", server.url());
    let ddl =
        json!({"sql": "CREATE STREAM ev (ts TIMESTAMP, n INT, WATERMARK FOR ts AS ts) WITH (connector = 'http')"});

    // Without the token, or with another: 401, and nothing ran.
    let response = http.post(url("/v1/sql")).json(&ddl).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized", "{body}");
    let response = http.post(url("/v1/sql")).bearer_auth("wrong").json(&ddl).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let body = response.text().await.unwrap();
    assert!(!body.contains(TOKEN) && !body.contains("wrong"), "{body}");
    assert_eq!(http.get(url("/v1/streams")).send().await.unwrap().status(), 401);
    assert_eq!(http.get(url("/metrics")).send().await.unwrap().status(), 401);
    let streams: Value = http.get(url("/v1/streams")).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap();
    assert_eq!(streams, json!([]));

    // With it, as a header or (for websockets) in the URL.
    let response = http.post(url("/v1/sql")).bearer_auth(TOKEN).json(&ddl).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let ws = format!("ws://{}/v1/subscribe?sql=SELECT%20n%20FROM%20ev", server.address);
    match Subscription::connect(&ws).await.err() {
        Some(ClientError::Refused { status: 401, .. }) => {}
        other => panic!("expected 401, got {other:?}"),
    }
    let mut by_url = Subscription::connect(&format!("{ws}&token={TOKEN}")).await.unwrap();
    assert_eq!(by_url.next_json().await.unwrap().unwrap()["type"], "schema");
    let request = json!({"sql": "SELECT n FROM ev", "keep_running": true});
    let mut by_header =
        Subscription::submit_with(&format!("ws://{}", server.address), &request, Some(TOKEN)).await.unwrap();
    assert_eq!(by_header.next_json().await.unwrap().unwrap()["type"], "schema");
    // The REPL's client.
    let mut client = sluice::repl::Client::new(&server.url()).with_token(Some(TOKEN.into()));
    let mut out = Vec::new();
    client.run("SHOW STREAMS;", &mut out, std::future::pending()).await.unwrap();
    assert!(String::from_utf8(out).unwrap().contains("ev "));
    let mut anonymous = sluice::repl::Client::new(&server.url());
    let mut out = Vec::new();
    anonymous.run("SHOW STREAMS;", &mut out, std::future::pending()).await.unwrap();
    assert!(String::from_utf8(out).unwrap().starts_with("ERROR: this server needs a token"));
    // The token shows in no listing.
    let queries = http.get(url("/v1/queries")).bearer_auth(TOKEN).send().await.unwrap().text().await.unwrap();
    assert!(queries.contains("SELECT n FROM ev") && !queries.contains(TOKEN), "{queries}");

    // psql: the token is the password.
    let port = server.pg_address.unwrap().port().to_string();
    let psql = |password: Option<&str>| {
        let mut command = Command::new("psql");
        command.args([
            "-X",
            "-A",
            "-t",
            "-w",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "anyone",
            "-d",
            "sluice",
            "-c",
            "SHOW STREAMS",
        ]);
        command.env_remove("PGPASSWORD");
        if let Some(password) = password {
            command.env("PGPASSWORD", password);
        }
        command
    };
    let refused = tokio::time::timeout(Duration::from_secs(30), psql(None).output()).await.unwrap().unwrap();
    assert!(!refused.status.success());
    let wrong = tokio::time::timeout(Duration::from_secs(30), psql(Some("nope")).output()).await.unwrap().unwrap();
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(!wrong.status.success() && err.to_lowercase().contains("password authentication failed"), "{err}");
    let ok = tokio::time::timeout(Duration::from_secs(30), psql(Some(TOKEN)).output()).await.unwrap().unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).starts_with("ev|http"), "{}", String::from_utf8_lossy(&ok.stdout));
}

#[tokio::test]
async fn listening_beyond_loopback_needs_a_token() {
    // Refused before anything is bound.
    let error = sluice::start_with("0.0.0.0:0", None, &sluice::Options::default()).await.err().expect("refused");
    assert!(error.to_string().contains("refusing to listen on 0.0.0.0:0 without a token"), "{error}");
    let options = sluice::Options { pg_address: Some("0.0.0.0:0".into()), ..sluice::Options::default() };
    assert!(sluice::start_with("127.0.0.1:0", None, &options).await.is_err());
}

/// A page of another site in the user's browser cannot use a loopback
/// server (with or without a token): its `Origin` is refused.
#[tokio::test]
async fn requests_from_other_origins_are_refused() {
    let server = sluice::start("127.0.0.1:0", false, None).await.unwrap();
    let http = reqwest::Client::new();
    let body = json!({"sql": "SHOW STREAMS"});
    let url = format!("{}/v1/sql", server.url());
    let foreign = http.post(&url).header("origin", "http://evil.example").json(&body).send().await.unwrap();
    assert_eq!(foreign.status(), 401);
    let text = foreign.text().await.unwrap();
    assert!(text.contains("another origin"), "{text}");
    let own = http.post(&url).header("origin", format!("http://{}", server.address)).json(&body).send().await.unwrap();
    assert_eq!(own.status(), 200);
    let plain = http.post(&url).json(&body).send().await.unwrap();
    assert_eq!(plain.status(), 200);
}
