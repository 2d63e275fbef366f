//! Binding and serving the HTTP API and the Postgres wire endpoint.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::demo;
use crate::engine::Engine;
use crate::http::router;
use crate::state::AppState;

/// A server running in this process.
pub struct RunningServer {
    pub address: SocketAddr,
    /// The Postgres wire endpoint, when it was asked for.
    pub pg_address: Option<SocketAddr>,
    pub engine: Arc<Engine>,
    /// HTTP and websockets are served over TLS.
    pub tls: bool,
    task: JoinHandle<()>,
    pg_task: Option<JoinHandle<()>>,
}

impl RunningServer {
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.address)
    }

    /// Waits until the server stops (it stops only on error).
    pub async fn wait(mut self) {
        let _ = (&mut self.task).await;
    }

    /// Shuts down gracefully: no new statements, every query stopped after
    /// a final checkpoint with its subscribers told (`shutting_down`),
    /// within `timeout`; then the listeners close. Returns the queries that
    /// did not stop in time.
    pub async fn shutdown(self, timeout: std::time::Duration) -> Vec<String> {
        let late = self.engine.shutdown(timeout).await;
        // Let the subscribers' tasks write their last frames.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        late
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(task) = &self.pg_task {
            task.abort();
        }
    }
}

/// Binds `address` (port 0 picks a free port) and serves HTTP in the
/// background. With a `data_dir`, the catalog is kept there and restored
/// from it.
pub async fn start(address: &str, with_demo: bool, data_dir: Option<&Path>) -> std::io::Result<RunningServer> {
    start_with_pg(address, None, with_demo, data_dir).await
}

/// As [`start`], and the Postgres wire endpoint on `pg_address` if given.
pub async fn start_with_pg(
    address: &str,
    pg_address: Option<&str>,
    with_demo: bool,
    data_dir: Option<&Path>,
) -> std::io::Result<RunningServer> {
    let options = Options { pg_address: pg_address.map(str::to_string), with_demo, ..Options::default() };
    start_with(address, data_dir, &options).await
}

/// How a server runs, beyond its address and data directory.
#[derive(Debug, Clone)]
pub struct Options {
    /// The Postgres wire endpoint's address, if any.
    pub pg_address: Option<String>,
    /// Declare the demo streams.
    pub with_demo: bool,
    /// With the demo: a Kafka broker its `weblog` stream goes through.
    pub demo_kafka: Option<String>,
    /// The largest HTTP request body taken, bytes.
    pub max_body_bytes: usize,
    /// What every HTTP request, websocket and Postgres connection must
    /// present (`Authorization: Bearer`, `?token=`, the Postgres password).
    pub token: Option<String>,
    /// Listen beyond loopback without a token anyway.
    pub insecure: bool,
    /// Serve HTTP, websockets and Postgres over TLS with this certificate
    /// (Postgres clients must then negotiate TLS).
    pub tls: Option<crate::tls::Certificate>,
    /// Limits on requests, queries and subscribers.
    pub limits: crate::engine::Limits,
    /// How event logs and input logs reach the disk (`--fsync`).
    pub fsync: sluice_runtime::Fsync,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            pg_address: None,
            with_demo: false,
            demo_kafka: None,
            max_body_bytes: crate::state::DEFAULT_MAX_BODY_BYTES,
            token: None,
            insecure: false,
            tls: None,
            limits: crate::engine::Limits::default(),
            fsync: sluice_runtime::Fsync::default(),
        }
    }
}

/// Refuses an address beyond loopback without a token (unless insecure).
async fn check_exposure(address: &str, options: &Options) -> std::io::Result<()> {
    if options.token.is_some() || options.insecure {
        return Ok(());
    }
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host(address).await?.collect();
    if let Some(exposed) = resolved.iter().find(|address| !address.ip().is_loopback()) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "refusing to listen on {exposed} without a token: anyone who can reach it could run queries and read every stream. \
                 Give a token (--token-file FILE or SLUICE_TOKEN), listen on 127.0.0.1, or pass --insecure"
            ),
        ));
    }
    Ok(())
}

/// Starts a server on `address` as `options` say.
pub async fn start_with(address: &str, data_dir: Option<&Path>, options: &Options) -> std::io::Result<RunningServer> {
    let with_demo = options.with_demo;
    let pg_address = options.pg_address.as_deref();
    check_exposure(address, options).await?;
    if let Some(pg_address) = pg_address {
        check_exposure(pg_address, options).await?;
    }
    if options.token.as_ref().is_some_and(|token| token.trim().is_empty()) {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "the token is empty"));
    }
    let engine = match data_dir {
        Some(data_dir) => Engine::open_with(data_dir, options.fsync, options.limits.clone())
            .await
            .map_err(|error| std::io::Error::other(error.to_string()))?,
        None => Engine::new(),
    };
    let engine = Arc::new(engine.with_limits(options.limits.clone()));
    if with_demo {
        let registered = match &options.demo_kafka {
            Some(brokers) => demo::register_through_kafka(&engine, brokers).await,
            None => demo::register(&engine).await,
        };
        registered.map_err(|error| std::io::Error::other(error.to_string()))?;
    }
    let listener = TcpListener::bind(address).await?;
    let address = listener.local_addr()?;
    let app = router(Arc::new(AppState {
        engine: engine.clone(),
        max_body_bytes: options.max_body_bytes,
        token: options.token.clone(),
    }));
    // HTTP, websocket and Postgres connections count against one limit.
    let limit = crate::listen::ConnectionLimit::new(options.limits.max_connections);
    let task = match &options.tls {
        None => {
            let listener = crate::listen::PlainListener { listener, limit: limit.clone() };
            tokio::spawn(async move {
                if let Err(error) = axum::serve(listener, app).await {
                    tracing::error!("server stopped: {error}");
                }
            })
        }
        Some(certificate) => {
            let listener = crate::tls::TlsListener::new(listener, certificate.http_acceptor(), limit.clone())?;
            tokio::spawn(async move {
                if let Err(error) = axum::serve(listener, app).await {
                    tracing::error!("server stopped: {error}");
                }
            })
        }
    };
    let (pg_address, pg_task) = match pg_address {
        Some(pg_address) => {
            let listener = TcpListener::bind(pg_address).await?;
            let pg_address = listener.local_addr()?;
            let tls = options.tls.as_ref().map(crate::tls::Certificate::pg_acceptor);
            let serving = crate::pgwire::serve(listener, engine.clone(), options.token.clone(), tls, limit);
            (Some(pg_address), Some(tokio::spawn(serving)))
        }
        None => (None, None),
    };
    Ok(RunningServer { address, pg_address, engine, tls: options.tls.is_some(), task, pg_task })
}
