//! A websocket subscription client: connects to a query's
//! `/v1/queries/{id}/ws` (or submits a query on `/v1/subscribe`), reads its
//! frames (see [`crate::ws`]) as JSON values or as typed [`Frame`]s, and
//! keeps the `seq` of the next row so a lost connection can resume exactly
//! after the last row seen.
//!
//! The REPL prints with it; the test suites read with it.

use futures::{SinkExt, StreamExt};
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
    /// The server refused the upgrade (a bad `where=`, say) with this
    /// status and JSON error body.
    Refused { status: u16, body: String },
    /// A frame that is not JSON.
    BadFrame(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::NotFound => write!(f, "no such query"),
            ClientError::Connect(message) => write!(f, "{message}"),
            ClientError::Refused { status, body } => write!(f, "refused ({status}): {body}"),
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
    /// Rows `from_seq` to `first_available - 1` are no longer retained.
    Gap { from_seq: u64, first_available: u64 },
    /// The watermark advanced.
    Progress { watermark: Value },
    /// Nothing happened for a while; the query is alive.
    Heartbeat { watermark: Value, next_seq: u64 },
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
            // A materialized view's current result: rows like any others,
            // the ones before `next_seq`.
            Some("snapshot") => {
                let rows: Vec<Map<String, Value>> = value["rows"]
                    .as_array()
                    .map(|rows| rows.iter().filter_map(|row| row.as_object().cloned()).collect())
                    .unwrap_or_default();
                let next_seq = value["next_seq"].as_u64().unwrap_or(0);
                Frame::Rows { seq: next_seq.saturating_sub(rows.len() as u64), rows, ops: None }
            }
            Some("gap") => Frame::Gap {
                from_seq: value["from_seq"].as_u64().unwrap_or(0),
                first_available: value["first_available"].as_u64().unwrap_or(0),
            },
            Some("progress") => Frame::Progress { watermark: value["watermark"].clone() },
            Some("heartbeat") => Frame::Heartbeat {
                watermark: value["watermark"].clone(),
                next_seq: value["next_seq"].as_u64().unwrap_or(0),
            },
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
    /// The subscription URL without `from_seq` (for a submitted query, its
    /// `/v1/queries/{id}/ws`, known from the schema frame).
    url: String,
    /// `ws://host`, for a submitted query.
    base: Option<String>,
    next_seq: u64,
    /// The server's token, sent as `Authorization: Bearer`.
    token: Option<String>,
}

impl Subscription {
    /// Subscribes at `url` (`ws://host/v1/queries/{id}/ws`) from the first
    /// retained row.
    pub async fn connect(url: &str) -> Result<Self, ClientError> {
        Self::connect_from(url, 0).await
    }

    /// Subscribes from row `from_seq`.
    pub async fn connect_from(url: &str, from_seq: u64) -> Result<Self, ClientError> {
        Self::connect_with(url, from_seq, None).await
    }

    /// Subscribes from row `from_seq`, presenting `token`.
    pub async fn connect_with(url: &str, from_seq: u64, token: Option<&str>) -> Result<Self, ClientError> {
        let full = if from_seq == 0 { url.to_string() } else { format!("{url}?from_seq={from_seq}") };
        let socket = open(&full, token).await?;
        Ok(Self { socket, url: url.to_string(), base: None, next_seq: from_seq, token: token.map(str::to_string) })
    }

    /// Submits a query on the socket itself (`ws://host/v1/subscribe`, then
    /// `request`: `{"sql": ..., "settings"?, "where"?, "keep_running"?}`):
    /// its rows come from the first. A query kept running can be resumed
    /// like any other after the connection broke.
    pub async fn submit(base: &str, request: &Value) -> Result<Self, ClientError> {
        Self::submit_with(base, request, None).await
    }

    /// [`submit`](Subscription::submit), presenting `token`.
    pub async fn submit_with(base: &str, request: &Value, token: Option<&str>) -> Result<Self, ClientError> {
        let base = base.trim_end_matches('/').to_string();
        let mut socket = open(&format!("{base}/v1/subscribe"), token).await?;
        socket
            .send(Message::Text(request.to_string().into()))
            .await
            .map_err(|error| ClientError::Connect(format!("cannot send the query: {error}")))?;
        Ok(Self { socket, url: String::new(), base: Some(base), next_seq: 0, token: token.map(str::to_string) })
    }

    /// The `seq` of the next row: where to resume.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Connects again after the last row seen (after a restart or a crash:
    /// a recovered query numbers its rows as before).
    pub async fn resume(&mut self) -> Result<(), ClientError> {
        if self.url.is_empty() {
            return Err(ClientError::Connect("the query never started".into()));
        }
        self.socket = open(&format!("{}?from_seq={}", self.url, self.next_seq), self.token.as_deref()).await?;
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
            match value["type"].as_str() {
                Some("rows") => {
                    let rows = value["rows"].as_array().map_or(0, Vec::len) as u64;
                    let after = value["seq"].as_u64().unwrap_or(self.next_seq).saturating_add(rows);
                    self.next_seq = value["next_seq"].as_u64().unwrap_or(after);
                }
                Some("heartbeat" | "snapshot") => self.next_seq = value["next_seq"].as_u64().unwrap_or(self.next_seq),
                Some("gap") => self.next_seq = value["first_available"].as_u64().unwrap_or(self.next_seq),
                Some("schema") => {
                    if let (Some(base), Some(id)) = (&self.base, value["query_id"].as_str())
                        && self.url.is_empty()
                    {
                        self.url = format!("{base}{}", crate::json::subscribe_path(id));
                    }
                }
                _ => {}
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

async fn open(url: &str, token: Option<&str>) -> Result<Socket, ClientError> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request =
        url.into_client_request().map_err(|error| ClientError::Connect(format!("bad websocket URL {url}: {error}")))?;
    if let Some(token) = token {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| ClientError::Connect("the token is not a valid header value".into()))?;
        request.headers_mut().insert("authorization", value);
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(tungstenite::Error::Http(response)) if response.status() == 404 => Err(ClientError::NotFound),
        Err(tungstenite::Error::Http(response)) => {
            let body = response.body().as_ref().map(|body| String::from_utf8_lossy(body).into_owned());
            Err(ClientError::Refused { status: response.status().as_u16(), body: body.unwrap_or_default() })
        }
        Err(error) => Err(ClientError::Connect(format!("cannot subscribe to {url}: {error}"))),
    }
}
