//! A websocket subscription client: connects to a query's
//! `/v1/queries/{id}/ws`, reads its frames (see [`crate::ws`]) as JSON
//! values or as typed [`Frame`]s, and keeps the `seq` of the next row so a
//! lost connection can resume exactly after the last row seen.
//!
//! The REPL prints with it; the test suites read with it.

use futures::StreamExt;
use serde_json::{Map, Value};
use tokio_tungstenite::tungstenite::{self, Message};

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What can go wrong subscribing.
#[derive(Debug)]
pub enum ClientError {
    /// The server answered, but has no such query.
    NotFound,
    /// The server cannot be reached or refused the upgrade.
    Connect(String),
    /// A frame that is not JSON.
    BadFrame(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::NotFound => write!(f, "no such query"),
            ClientError::Connect(message) => write!(f, "{message}"),
            ClientError::BadFrame(message) => write!(f, "bad frame: {message}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// One websocket frame of a subscription.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// First: the result's columns (`[{"name", "type"}]`).
    Schema { query_id: String, columns: Value },
    /// Result rows; `seq` numbers the first. `ops` (`+`/`-`) for changelogs.
    Rows { seq: u64, rows: Vec<Map<String, Value>>, ops: Option<Vec<String>> },
    /// The watermark advanced.
    Progress { watermark: Value },
    /// A bounded query finished.
    End,
    /// The query failed, or the subscriber was cut off (`lagged`, with the
    /// `next_seq` to reconnect from).
    Error { code: String, message: String, next_seq: Option<u64> },
    /// A frame type this client does not know.
    Other(Value),
}

impl Frame {
    pub fn from_json(value: &Value) -> Frame {
        let text = |key: &str| value[key].as_str().unwrap_or_default().to_string();
        match value["type"].as_str() {
            Some("schema") => Frame::Schema { query_id: text("query_id"), columns: value["columns"].clone() },
            Some("rows") => Frame::Rows {
                seq: value["seq"].as_u64().unwrap_or(0),
                rows: value["rows"]
                    .as_array()
                    .map(|rows| rows.iter().filter_map(|row| row.as_object().cloned()).collect())
                    .unwrap_or_default(),
                ops: value["ops"]
                    .as_array()
                    .map(|ops| ops.iter().map(|op| op.as_str().unwrap_or_default().to_string()).collect()),
            },
            Some("progress") => Frame::Progress { watermark: value["watermark"].clone() },
            Some("end") => Frame::End,
            Some("error") => {
                Frame::Error { code: text("code"), message: text("message"), next_seq: value["next_seq"].as_u64() }
            }
            _ => Frame::Other(value.clone()),
        }
    }

    /// Whether the server sends nothing after this frame.
    pub fn is_last(&self) -> bool {
        matches!(self, Frame::End | Frame::Error { .. })
    }
}

/// A live subscription to one query's results.
pub struct Subscription {
    socket: Socket,
    /// The subscription URL without `from_seq`.
    url: String,
    next_seq: u64,
}

impl Subscription {
    /// Subscribes at `url` (`ws://host/v1/queries/{id}/ws`) from the first
    /// retained row.
    pub async fn connect(url: &str) -> Result<Self, ClientError> {
        Self::connect_from(url, 0).await
    }

    /// Subscribes from row `from_seq`.
    pub async fn connect_from(url: &str, from_seq: u64) -> Result<Self, ClientError> {
        let full = if from_seq == 0 { url.to_string() } else { format!("{url}?from_seq={from_seq}") };
        let socket = open(&full).await?;
        Ok(Self { socket, url: url.to_string(), next_seq: from_seq })
    }

    /// The `seq` of the next row: where to resume.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Connects again after the last row seen (after a restart or a crash:
    /// a recovered query numbers its rows as before).
    pub async fn resume(&mut self) -> Result<(), ClientError> {
        self.socket = open(&format!("{}?from_seq={}", self.url, self.next_seq)).await?;
        Ok(())
    }

    /// The next frame as JSON; `None` once the connection closed or broke.
    /// Cancel-safe: nothing is lost if the future is dropped while waiting.
    pub async fn next_json(&mut self) -> Result<Option<Value>, ClientError> {
        loop {
            let text = match self.socket.next().await {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return Ok(None),
                Some(Ok(_)) => continue,
            };
            let value: Value = serde_json::from_str(&text).map_err(|error| ClientError::BadFrame(error.to_string()))?;
            if value["type"] == "rows" {
                let rows = value["rows"].as_array().map_or(0, Vec::len) as u64;
                self.next_seq = value["seq"].as_u64().unwrap_or(self.next_seq).saturating_add(rows);
            }
            return Ok(Some(value));
        }
    }

    /// The next frame; `None` once the connection closed or broke.
    pub async fn next_frame(&mut self) -> Result<Option<Frame>, ClientError> {
        Ok(self.next_json().await?.as_ref().map(Frame::from_json))
    }

    pub async fn close(&mut self) {
        let _ = self.socket.close(None).await;
    }

    /// Frames until `end`/`error`, the socket closes, or `row_limit` rows
    /// have arrived.
    pub async fn read_until(&mut self, row_limit: usize) -> Result<Vec<Value>, ClientError> {
        let mut frames = Vec::new();
        let mut rows = 0;
        while rows < row_limit {
            let Some(frame) = self.next_json().await? else { break };
            let last = matches!(frame["type"].as_str(), Some("end" | "error"));
            rows += frame["rows"].as_array().map_or(0, Vec::len);
            frames.push(frame);
            if last {
                break;
            }
        }
        Ok(frames)
    }
}

async fn open(url: &str) -> Result<Socket, ClientError> {
    match tokio_tungstenite::connect_async(url).await {
        Ok((socket, _)) => Ok(socket),
        Err(tungstenite::Error::Http(response)) if response.status() == 404 => Err(ClientError::NotFound),
        Err(error) => Err(ClientError::Connect(format!("cannot subscribe to {url}: {error}"))),
    }
}
