//! Accepting connections under `--max-connections`: HTTP (and websocket)
//! and Postgres connections share one count. A connection over it is
//! answered at once and closed — HTTP with a 503 `too_many`, Postgres with
//! SQLSTATE 53300 (`too_many_connections`) — so a flood of connections
//! cannot use up the file descriptors the queries' logs and checkpoints
//! need, and nothing already connected notices.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a refused client gets to take its answer.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(2);

/// Refusals answered at once; past them a connection is just closed, so
/// that answering a flood does not hold its sockets open.
const REFUSALS: usize = 64;

/// The connections the server takes at once.
#[derive(Debug, Clone)]
pub struct ConnectionLimit {
    permits: Arc<Semaphore>,
    refusals: Arc<Semaphore>,
    max: usize,
}

impl ConnectionLimit {
    pub fn new(max: usize) -> Self {
        Self { permits: Arc::new(Semaphore::new(max)), refusals: Arc::new(Semaphore::new(REFUSALS)), max }
    }

    /// Room for one more connection, if there is.
    pub fn admit(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }

    fn message(&self) -> String {
        format!(
            "the server has {} connections, the most it takes (--max-connections {}); retry later",
            self.max, self.max
        )
    }

    /// Answers an HTTP client over the limit with a 503, then closes.
    pub fn refuse_http(&self, mut socket: TcpStream) {
        let Ok(answering) = self.refusals.clone().try_acquire_owned() else { return };
        let body = serde_json::json!({"error": {"code": "too_many", "message": self.message()}}).to_string();
        tokio::spawn(async move {
            let response = format!(
                "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n\
                 Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let _ = tokio::time::timeout(REFUSAL_TIMEOUT, async {
                socket.write_all(response.as_bytes()).await?;
                socket.shutdown().await
            })
            .await;
            drop(answering);
        });
    }

    /// Answers a Postgres client over the limit with a FATAL 53300 error
    /// after its startup packet (an SSL or GSS request first is declined,
    /// so that libpq shows the message), then closes.
    pub fn refuse_pg(&self, mut socket: TcpStream) {
        use tokio::io::AsyncReadExt;
        let Ok(answering) = self.refusals.clone().try_acquire_owned() else { return };
        let mut fields = Vec::new();
        for (tag, value) in [(b'S', "FATAL"), (b'V', "FATAL"), (b'C', "53300"), (b'M', self.message().as_str())] {
            fields.push(tag);
            fields.extend_from_slice(value.as_bytes());
            fields.push(0);
        }
        fields.push(0);
        let mut message = vec![b'E'];
        message.extend_from_slice(&(fields.len() as u32 + 4).to_be_bytes());
        message.extend_from_slice(&fields);
        tokio::spawn(async move {
            let _ = tokio::time::timeout(REFUSAL_TIMEOUT, async {
                // A packet: its length (with itself), then the rest.
                for _ in 0..2 {
                    let length = socket.read_u32().await? as usize;
                    let mut body = vec![0; length.saturating_sub(4).min(10_000)];
                    socket.read_exact(&mut body).await?;
                    let code = body.get(..4).map(|code| u32::from_be_bytes([code[0], code[1], code[2], code[3]]));
                    // SSLRequest, GSSENCRequest: "no", then the startup.
                    if length == 8 && matches!(code, Some(80877103 | 80877104)) {
                        socket.write_all(b"N").await?;
                        continue;
                    }
                    break;
                }
                socket.write_all(&message).await?;
                socket.shutdown().await
            })
            .await;
            drop(answering);
        });
    }
}

/// A connection counted against the limit until it is dropped.
pub struct Counted<T> {
    io: T,
    _permit: OwnedSemaphorePermit,
}

impl<T> Counted<T> {
    pub fn new(io: T, permit: OwnedSemaphorePermit) -> Self {
        Self { io, _permit: permit }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Accepts the next connection there is room for; answers the others.
/// Accept errors (out of file descriptors and the like) wait, never spin.
pub async fn accept(
    listener: &TcpListener,
    limit: &ConnectionLimit,
    refuse: fn(&ConnectionLimit, TcpStream),
) -> (TcpStream, SocketAddr, OwnedSemaphorePermit) {
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!("accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match limit.admit() {
            Some(permit) => return (socket, peer, permit),
            None => {
                tracing::debug!("refused a connection from {peer}: {}", limit.message());
                refuse(limit, socket);
            }
        }
    }
}

/// A plain listener whose connections count against the limit, for
/// `axum::serve`.
pub struct PlainListener {
    pub listener: TcpListener,
    pub limit: ConnectionLimit,
}

impl axum::serve::Listener for PlainListener {
    type Io = Counted<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (socket, peer, permit) = accept(&self.listener, &self.limit, ConnectionLimit::refuse_http).await;
        (Counted::new(socket, permit), peer)
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}
