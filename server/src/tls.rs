//! TLS for every endpoint (`--tls-cert`, `--tls-key`): rustls on ring, the
//! same stack pgwire uses, so nothing builds OpenSSL or aws-lc.
//!
//! HTTP and websockets are served on a [`TlsListener`]: connections are
//! accepted and their handshakes run on tasks of their own (a client that
//! opens a socket and says nothing holds up no one), and only finished TLS
//! streams reach axum. Plain text on that port fails its handshake and is
//! closed. pgwire negotiates TLS itself (`SSLRequest`, or PostgreSQL 17's
//! direct TLS with ALPN `postgresql`) with [`pg_acceptor`]; a server with a
//! certificate refuses Postgres connections that did not negotiate it.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;

use crate::listen::{ConnectionLimit, Counted};

/// A client gets this long to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in flight at once; more connections wait to be accepted.
const HANDSHAKES: usize = 256;

/// A certificate chain and its private key, read and checked at start-up,
/// as the two server configurations that use them.
#[derive(Clone)]
pub struct Certificate {
    /// For HTTP and websockets (ALPN `http/1.1`).
    http: Arc<ServerConfig>,
    /// For Postgres clients (ALPN `postgresql`, which direct TLS requires).
    pg: Arc<ServerConfig>,
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.write_str("Certificate(..)")
    }
}

impl Certificate {
    /// Reads a PEM certificate chain and a PEM private key (PKCS#8, PKCS#1
    /// or SEC1), with an error naming the file that is wrong.
    pub fn from_files(cert: &Path, key: &Path) -> std::io::Result<Self> {
        let read = |path: &Path| {
            std::fs::read(path)
                .map_err(|error| std::io::Error::new(error.kind(), format!("cannot read {}: {error}", path.display())))
        };
        Self::from_pem(&read(cert)?, &read(key)?).map_err(|message| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{message} (--tls-cert {}, --tls-key {})", cert.display(), key.display()),
            )
        })
    }

    /// The same from PEM text. A key that does not match the certificate
    /// fails here, not at the first client.
    pub fn from_pem(cert: &[u8], key: &[u8]) -> Result<Self, String> {
        let chain = CertificateDer::pem_slice_iter(cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| format!("the certificate file is not PEM: {error}"))?;
        if chain.is_empty() {
            return Err("the certificate file holds no certificate".into());
        }
        let key = PrivateKeyDer::from_pem_slice(key)
            .map_err(|error| format!("the key file holds no private key in PEM: {error}"))?;
        Ok(Self { http: config(&chain, &key, b"http/1.1")?, pg: config(&chain, &key, b"postgresql")? })
    }

    /// The acceptor for HTTP and websockets.
    pub fn http_acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.http.clone())
    }

    /// The acceptor for Postgres clients.
    pub fn pg_acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.pg.clone())
    }
}

fn config(
    chain: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
    alpn: &[u8],
) -> Result<Arc<ServerConfig>, String> {
    // ring, not aws-lc-rs, whose C build this project avoids; rustls
    // deprecates it only for lacking post-quantum key exchange.
    #[allow(deprecated)]
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain.to_vec(), key.clone_key())
        .map_err(|error| format!("the certificate and key do not go together: {error}"))?;
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(Arc::new(config))
}

/// A listener whose connections are TLS streams, for `axum::serve`.
pub struct TlsListener {
    incoming: mpsc::Receiver<(Counted<TlsStream<TcpStream>>, SocketAddr)>,
    address: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(listener: TcpListener, acceptor: TlsAcceptor, limit: ConnectionLimit) -> std::io::Result<Self> {
        let address = listener.local_addr()?;
        let (sender, incoming) = mpsc::channel(64);
        let accepting = tokio::spawn(accept(listener, acceptor, limit, sender));
        Ok(Self { incoming, address, accepting })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

async fn accept(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    limit: ConnectionLimit,
    ready: mpsc::Sender<(Counted<TlsStream<TcpStream>>, SocketAddr)>,
) {
    let handshakes = Arc::new(Semaphore::new(HANDSHAKES));
    // Over the connection limit there is no TLS to answer in: closed.
    let refuse: fn(&ConnectionLimit, TcpStream) = |_, socket| drop(socket);
    loop {
        let Ok(handshake_permit) = handshakes.clone().acquire_owned().await else { return };
        let (socket, peer, permit) = crate::listen::accept(&listener, &limit, refuse).await;
        let acceptor = acceptor.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await;
            drop(handshake_permit);
            match handshake {
                Ok(Ok(stream)) => {
                    let _ = ready.send((Counted::new(stream, permit), peer)).await;
                }
                // Plain text on the TLS port, a client that distrusts the
                // certificate, a port scanner: only that connection ends.
                Ok(Err(error)) => tracing::debug!("TLS handshake with {peer} failed: {error}"),
                Err(_) => tracing::debug!("TLS handshake with {peer} timed out"),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = Counted<TlsStream<TcpStream>>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.incoming.recv().await {
            Some(connection) => connection,
            // The accepting task is gone only when the listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_that_is_not_pem_or_does_not_match_is_refused_with_a_reason() {
        let one = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = one.cert.pem();
        assert!(Certificate::from_pem(cert.as_bytes(), one.signing_key.serialize_pem().as_bytes()).is_ok());
        let error = Certificate::from_pem(cert.as_bytes(), other.signing_key.serialize_pem().as_bytes()).unwrap_err();
        assert!(error.contains("do not go together"), "{error}");
        let error = Certificate::from_pem(b"hello", one.signing_key.serialize_pem().as_bytes()).unwrap_err();
        assert_eq!(error, "the certificate file holds no certificate");
        let error = Certificate::from_pem(cert.as_bytes(), b"").unwrap_err();
        assert!(error.starts_with("the key file holds no private key"), "{error}");
    }
}
