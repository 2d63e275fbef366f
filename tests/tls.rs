//! A server with a certificate (generated here with rcgen): HTTPS and
//! websockets over TLS by a rustls client that trusts only that
//! certificate, psql with `sslmode=verify-full`; plain Postgres and plain
//! HTTP on the TLS port are refused, a TLS handshake on a plain port fails,
//! and neither disturbs the server.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

const TOKEN: &str = "tls-test-token";

struct Tls {
    server: sluice::RunningServer,
    connector: TlsConnector,
    cert_path: std::path::PathBuf,
    _dir: Dir,
}

/// A temporary directory removed at the end.
struct Dir(std::path::PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn connector(cert: CertificateDer<'static>) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(cert).unwrap();
    #[allow(deprecated)]
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

async fn tls_server() -> Tls {
    let dir = std::env::temp_dir().join(format!("sluice-tls-{}-{:?}", std::process::id(), std::thread::current().id()));
    std::fs::create_dir_all(&dir).unwrap();
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, generated.cert.pem()).unwrap();
    std::fs::write(&key_path, generated.signing_key.serialize_pem()).unwrap();
    let options = sluice::Options {
        pg_address: Some("127.0.0.1:0".into()),
        token: Some(TOKEN.into()),
        tls: Some(sluice::tls::Certificate::from_files(&cert_path, &key_path).unwrap()),
        ..sluice::Options::default()
    };
    let server = sluice::start_with("127.0.0.1:0", None, &options).await.unwrap();
    Tls { server, connector: connector(generated.cert.der().clone()), cert_path, _dir: Dir(dir) }
}

impl Tls {
    async fn connect(&self) -> tokio_rustls::client::TlsStream<TcpStream> {
        let tcp = TcpStream::connect(self.server.address).await.unwrap();
        self.connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.expect("TLS handshake")
    }

    /// One HTTPS request, read to its end: (status, body).
    async fn request(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut stream = self.connect().await;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        // rustls reports a peer that closes without close_notify as an
        // error after the whole response.
        let _ = stream.read_to_end(&mut response).await;
        let response = String::from_utf8(response).unwrap();
        let status = response[9..12].parse().unwrap();
        let body = response.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default();
        (status, body)
    }
}

async fn psql(connection: &str, sql: &str) -> (i32, String, String) {
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        Command::new("psql").args(["-X", "-A", "-t", connection, "-c", sql]).env("PGPASSWORD", TOKEN).output(),
    )
    .await
    .expect("psql finishes")
    .expect("psql runs (Debian postgresql-client)");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_websockets_and_psql_go_over_tls() {
    let tls = tls_server().await;
    assert!(tls.server.url().starts_with("https://"));
    let (status, body) = tls
        .request(
            "POST",
            "/v1/sql",
            r#"{"sql": "CREATE STREAM ev (ts TIMESTAMP, n INT, WATERMARK FOR ts AS ts) WITH (connector = 'http')"}"#,
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // A websocket over TLS: the subscriber sees what is posted over HTTPS.
    let url =
        format!("wss://localhost:{}/v1/subscribe?sql=SELECT%20n%20FROM%20ev&token={TOKEN}", tls.server.address.port());
    let (mut socket, _) = tokio_tungstenite::client_async(url, tls.connect().await).await.expect("wss upgrade");
    let frame = |message: tokio_tungstenite::tungstenite::Message| -> Value {
        serde_json::from_str(message.to_text().unwrap()).unwrap()
    };
    let schema = frame(socket.next().await.unwrap().unwrap());
    assert_eq!(schema["type"], "schema", "{schema}");
    let events = r#"{"ts": "2026-01-01T00:00:01", "n": 7}
{"ts": "2026-01-01T00:00:02", "n": 8}"#;
    let (status, body) = tls.request("POST", "/v1/streams/ev/events", events).await;
    assert_eq!(status, 200, "{body}");
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next()).await.unwrap().unwrap().unwrap();
        let value = frame(message);
        if value["type"] == "rows" {
            seen.extend(value["rows"].as_array().unwrap().iter().map(|row| row["n"].as_i64().unwrap()));
        }
    }
    assert_eq!(seen, vec![7, 8]);

    // psql verifying the certificate and the host name; \conninfo says
    // the connection is encrypted.
    let port = tls.server.pg_address.unwrap().port();
    let secure = format!(
        "host=localhost hostaddr=127.0.0.1 port={port} user=sluice dbname=sluice sslmode=verify-full sslrootcert={}",
        tls.cert_path.display()
    );
    let (code, out, err) = psql(&secure, "SELECT 1 + 1").await;
    assert_eq!((code, out.trim()), (0, "2"), "{err}");
    let (code, out, err) = psql(&secure, "\\conninfo").await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("SSL connection (protocol: TLSv1.3"), "{out}");
    let (code, out, err) =
        psql(&format!("host=127.0.0.1 port={port} user=sluice sslmode=require"), "SHOW STREAMS").await;
    assert_eq!((code, out.trim()), (0, "ev|http|ts - INTERVAL '0' SECOND|ready"), "{err}");

    // Plain Postgres is refused with a reason; so is a wrong password over TLS.
    let (code, _, err) = psql(&format!("host=127.0.0.1 port={port} user=sluice sslmode=disable"), "SELECT 1").await;
    assert_ne!(code, 0);
    assert!(err.contains("over TLS only: connect with sslmode=require"), "{err}");
    let output = Command::new("psql")
        .args(["-X", "-c", "SELECT 1", &format!("host=127.0.0.1 port={port} user=sluice sslmode=require")])
        .env("PGPASSWORD", "wrong")
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("Password authentication failed"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_text_on_the_tls_port_and_tls_on_a_plain_port_are_refused_and_disturb_nothing() {
    let tls = tls_server().await;
    // Plain HTTP on the TLS port: the handshake fails and the connection
    // closes, without an answer.
    let mut plain = TcpStream::connect(tls.server.address).await.unwrap();
    plain.write_all(b"GET /v1/streams HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), plain.read_to_end(&mut answer)).await.unwrap();
    assert!(read.is_err() || !String::from_utf8_lossy(&answer).contains("HTTP/1.1 200"), "{answer:?}");
    // A client that opens a connection and says nothing holds up no one.
    let _silent = TcpStream::connect(tls.server.address).await.unwrap();
    let (status, body) = tls.request("GET", "/v1/streams", "").await;
    assert_eq!((status, body.as_str()), (200, "[]"));

    // A TLS handshake on a plain server's HTTP port fails; the server
    // answers the next plain request.
    let plain_server = sluice::start("127.0.0.1:0", false, None).await.unwrap();
    let tcp = TcpStream::connect(plain_server.address).await.unwrap();
    let handshake = tokio::time::timeout(
        Duration::from_secs(10),
        tls.connector.connect(ServerName::try_from("localhost").unwrap(), tcp),
    )
    .await
    .unwrap();
    assert!(handshake.is_err());
    let streams = reqwest::get(format!("{}/v1/streams", plain_server.url())).await.unwrap();
    assert_eq!(streams.status(), 200);
    // psql asking for TLS from a plain pgwire endpoint is told no.
    let plain_pg = sluice::start_with_pg("127.0.0.1:0", Some("127.0.0.1:0"), false, None).await.unwrap();
    let port = plain_pg.pg_address.unwrap().port();
    let (code, _, err) = psql(&format!("host=127.0.0.1 port={port} user=sluice sslmode=require"), "SELECT 1").await;
    assert_ne!(code, 0);
    assert!(err.contains("server does not support SSL"), "{err}");
    let (code, out, err) = psql(&format!("host=127.0.0.1 port={port} user=sluice"), "SELECT 1").await;
    assert_eq!((code, out.trim()), (0, "1"), "{err}");
}
