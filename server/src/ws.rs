//! Websocket subscriptions.
//!
//! Two ways in:
//! - `GET /v1/queries/{id}/ws[?from_seq=N]`: the results of a running
//!   query, from row `N` (default 0).
//! - `GET /v1/subscribe`: a query submitted on the socket itself, as
//!   `?sql=...` (with `settings=` a JSON object) or as the first client
//!   message `{"sql": "...", "settings": {...}}`. It runs for this
//!   subscriber from its first row, as Materialize's SUBSCRIBE does, and is
//!   cancelled when the socket closes unless `keep_running` is true.
//!
//! Both take `where=` (a SQL condition over the result's columns: only the
//! rows that pass it are sent), `format=json|arrow` and `heartbeat_ms=`
//! (default 5000).
//!
//! Frames (JSON text): first `{"type":"schema","columns":[...],
//! "query_id"}`; `{"type":"gap","from_seq","first_available"}` when rows
//! from `from_seq` on are no longer retained (never a silent jump); then
//! `{"type":"rows","seq":N,"next_seq":M,"rows":[{...}],"ops":[...]?}` where
//! `seq` numbers the first row of the batch and `M` the row after it (with
//! `where=`, the rows sent are those of `N..M` that pass);
//! `{"type":"snapshot","next_seq":N,"rows":[...]}` first for a
//! materialized view attached without `from_seq` (its current result; the
//! changes from `N` follow);
//! `{"type":"progress","watermark"}` when the watermark advances;
//! `{"type":"heartbeat","watermark","next_seq"}` after `heartbeat_ms`
//! without a frame; `{"type":"end"}` when a bounded query finished, or
//! `{"type":"error","code","message"}`. With `format=arrow` the rows come as
//! an Arrow IPC stream in binary frames: after the JSON schema frame, one
//! with the IPC schema (`seq`, `op` for updating results, then the result's
//! columns) and one per batch; the other frames stay JSON text.
//!
//! One execution of a query serves all its subscribers, and each batch is
//! encoded once (per format) for every subscriber without a filter. A
//! subscriber that falls more than the output queue behind is cut off with
//! code `lagged` and the `seq` to reconnect from; the query never waits for
//! it. A client that stops reading altogether is disconnected once a frame
//! has waited [`SEND_TIMEOUT`] to be written.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::{Message as WsMessage, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::ipc::writer::StreamWriter;
use serde::Deserialize;
use serde_json::{Value, json};
use sluice_planner::filter::ResultFilter;
use sluice_runtime::{Op, OutputEvent, StreamBatch};
use tokio::time::Instant;

use crate::api_error::ApiError;
use crate::engine::{Engine, RunningQuery, Subscription};
use crate::error::EngineError;
use crate::json;
use crate::state::AppState;

/// How long one frame may wait to be written before the client is taken
/// for gone.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// How long `GET /v1/subscribe` waits for the first message.
const FIRST_MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);

const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);

#[derive(Debug, Deserialize)]
pub struct AttachParams {
    /// Absent for a materialized view: its current result, then changes.
    from_seq: Option<u64>,
    #[serde(rename = "where")]
    filter: Option<String>,
    format: Option<String>,
    heartbeat_ms: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct SubmitParams {
    sql: Option<String>,
    /// A JSON object, as in `POST /v1/sql`.
    settings: Option<String>,
    #[serde(rename = "where")]
    filter: Option<String>,
    format: Option<String>,
    heartbeat_ms: Option<String>,
    keep_running: Option<String>,
}

/// The options of either endpoint's query string. (Not a flattened
/// struct: serde's flatten cannot read numbers from a query string.)
struct OptionParams<'a> {
    filter: Option<&'a str>,
    format: Option<&'a str>,
    heartbeat_ms: Option<&'a str>,
    keep_running: Option<&'a str>,
}

/// The first message of `GET /v1/subscribe` without `?sql=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubmitMessage {
    sql: String,
    #[serde(default)]
    settings: BTreeMap<String, Value>,
    #[serde(default, rename = "where")]
    filter: Option<String>,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    heartbeat_ms: Option<u64>,
    #[serde(default)]
    keep_running: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Arrow,
}

/// A subscriber's choices, checked.
struct Options {
    format: Format,
    filter: Option<ResultFilter>,
    heartbeat: Duration,
    keep_running: bool,
}

impl OptionParams<'_> {
    fn check(&self, schema: &SchemaRef) -> Result<Options, EngineError> {
        let heartbeat_ms = match self.heartbeat_ms {
            Some(text) => Some(
                text.parse::<u64>()
                    .map_err(|_| EngineError::invalid(format!("heartbeat_ms must be milliseconds, not {text:?}")))?,
            ),
            None => None,
        };
        let keep_running = match self.keep_running {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(EngineError::invalid(format!("keep_running must be true or false, not {other:?}")));
            }
        };
        options(self.filter, self.format, heartbeat_ms, keep_running, schema)
    }
}

fn options(
    filter: Option<&str>,
    format: Option<&str>,
    heartbeat_ms: Option<u64>,
    keep_running: bool,
    schema: &SchemaRef,
) -> Result<Options, EngineError> {
    let format = match format {
        None | Some("json") => Format::Json,
        Some("arrow") => Format::Arrow,
        Some(other) => return Err(EngineError::invalid(format!("format must be json or arrow, not {other:?}"))),
    };
    let heartbeat = match heartbeat_ms {
        None => DEFAULT_HEARTBEAT,
        Some(ms) if (50..=3_600_000).contains(&ms) => Duration::from_millis(ms),
        Some(ms) => return Err(EngineError::invalid(format!("heartbeat_ms must be 50 to 3600000, not {ms}"))),
    };
    let filter = match filter {
        Some(text) => Some(ResultFilter::plan(text, schema).map_err(|error| {
            let mut error = EngineError::from(error);
            error.message = format!("where={text:?}: {}", error.message);
            error
        })?),
        None => None,
    };
    Ok(Options { format, filter, heartbeat, keep_running })
}

/// `GET /v1/queries/{id}/ws`.
pub async fn subscribe(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    params: Result<Query<AttachParams>, QueryRejection>,
    upgrade: WebSocketUpgrade,
) -> Response {
    // A `from_seq` that is not a row number gets the API's JSON error, not
    // axum's plain-text rejection.
    let params = match params {
        Ok(Query(params)) => params,
        Err(rejection) => {
            let message = format!("from_seq must be a row number (0 to {}): {}", u64::MAX, rejection.body_text());
            return ApiError::bad_request(message).into_response();
        }
    };
    let Some(query) = state.engine.query(&id) else {
        return ApiError::not_found(format!("query {id:?} not found")).into_response();
    };
    let params_options = OptionParams {
        filter: params.filter.as_deref(),
        format: params.format.as_deref(),
        heartbeat_ms: params.heartbeat_ms.as_deref(),
        keep_running: None,
    };
    let options = match params_options.check(&query.schema) {
        Ok(options) => options,
        Err(error) => return ApiError::from(error).into_response(),
    };
    if let Err(error) = state.engine.check_subscriber_room(Some(&query)) {
        return ApiError::from(error).into_response();
    }
    if params.from_seq.is_none() {
        match state.engine.attach_snapshot(&id) {
            Ok(Some(subscription)) => {
                let from_seq = subscription.first_available;
                return upgrade.on_upgrade(move |socket| serve(socket, subscription, from_seq, options, None));
            }
            Ok(None) => {}
            Err(error) => return ApiError::from(error).into_response(),
        }
    }
    let from_seq = params.from_seq.unwrap_or(0);
    let subscribed = query.handle.output.subscribe_at(from_seq);
    let subscription = Subscription { query, events: subscribed.events, first_available: subscribed.first_available };
    upgrade.on_upgrade(move |socket| serve(socket, subscription, from_seq, options, None))
}

/// `GET /v1/subscribe`.
pub async fn submit(
    State(state): State<Arc<AppState>>,
    params: Result<Query<SubmitParams>, QueryRejection>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let params = match params {
        Ok(Query(params)) => params,
        Err(rejection) => return ApiError::bad_request(rejection.body_text()).into_response(),
    };
    let engine = state.engine.clone();
    let Some(sql) = params.sql else {
        return upgrade.on_upgrade(move |socket| submit_by_message(socket, engine));
    };
    let settings = match params.settings.as_deref().map(serde_json::from_str::<BTreeMap<String, Value>>) {
        None => BTreeMap::new(),
        Some(Ok(settings)) => settings,
        Some(Err(error)) => {
            return ApiError::bad_request(format!("settings must be a JSON object: {error}")).into_response();
        }
    };
    // Checked before the query starts: a bad option runs nothing.
    let shape = match engine.describe_query(&sql, &crate::settings::from_json(settings.clone())).await {
        Ok(shape) => shape,
        Err(error) => return ApiError::from(error).into_response(),
    };
    let params_options = OptionParams {
        filter: params.filter.as_deref(),
        format: params.format.as_deref(),
        heartbeat_ms: params.heartbeat_ms.as_deref(),
        keep_running: params.keep_running.as_deref(),
    };
    let options = match params_options.check(&shape.schema) {
        Ok(options) => options,
        Err(error) => return ApiError::from(error).into_response(),
    };
    let (subscription, owner, snapshot) = match start(&engine, &sql, settings, options.keep_running).await {
        Ok(started) => started,
        Err(error) => return ApiError::from(error).into_response(),
    };
    // A snapshot stands for the rows before it: no gap.
    let from_seq = if snapshot { subscription.first_available } else { 0 };
    upgrade.on_upgrade(move |socket| serve(socket, subscription, from_seq, options, owner))
}

async fn submit_by_message(mut socket: WebSocket, engine: Arc<Engine>) {
    let text = match tokio::time::timeout(FIRST_MESSAGE_TIMEOUT, socket.recv()).await {
        Ok(Some(Ok(WsMessage::Text(text)))) => text,
        Ok(Some(Ok(WsMessage::Close(_)) | Err(_)) | None) => return,
        Ok(Some(Ok(_))) => {
            let error = EngineError::new(crate::error::ErrorCode::BadRequest, "expected a text message {\"sql\": ...}");
            return refuse(socket, &error).await;
        }
        Err(_) => {
            let message = format!("no {{\"sql\": ...}} message within {}s", FIRST_MESSAGE_TIMEOUT.as_secs());
            return refuse(socket, &EngineError::new(crate::error::ErrorCode::BadRequest, message)).await;
        }
    };
    let (request, options) = match first_message(&engine, &text).await {
        Ok(checked) => checked,
        Err(error) => return refuse(socket, &error).await,
    };
    match start(&engine, &request.sql, request.settings, options.keep_running).await {
        Ok((subscription, owner, snapshot)) => {
            let from_seq = if snapshot { subscription.first_available } else { 0 };
            serve(socket, subscription, from_seq, options, owner).await
        }
        Err(error) => refuse(socket, &error).await,
    }
}

/// The first message of a socket that submits its query: parsed, its SQL
/// planned and its choices checked.
async fn first_message(engine: &Engine, text: &str) -> Result<(SubmitMessage, Options), EngineError> {
    let request: SubmitMessage = serde_json::from_str(text).map_err(|error| {
        let message = format!("expected {{\"sql\": \"...\", \"settings\"?, \"where\"?, \"format\"?}}: {error}");
        EngineError::new(crate::error::ErrorCode::BadRequest, message)
    })?;
    let settings = crate::settings::from_json(request.settings.clone());
    let shape = engine.describe_query(&request.sql, &settings).await?;
    let options = options(
        request.filter.as_deref(),
        request.format.as_deref(),
        request.heartbeat_ms,
        request.keep_running,
        &shape.schema,
    )?;
    Ok((request, options))
}

/// Fuzzing (`fuzz/`): a socket's first message, checked and its query
/// started and dropped, as [`submit`] does. Must not panic.
#[doc(hidden)]
pub async fn fuzz_first_message(engine: &Arc<Engine>, text: &str) {
    if let Ok((request, options)) = first_message(engine, text).await
        && let Ok((subscription, _owner, snapshot)) =
            start(engine, &request.sql, request.settings, options.keep_running).await
        && !snapshot
    {
        engine.drop_query(&subscription.query.id);
    }
}

/// Starts the query for one subscriber; the [`Owner`] cancels it when the
/// subscriber goes, unless it is kept running.
async fn start(
    engine: &Arc<Engine>,
    sql: &str,
    settings: BTreeMap<String, Value>,
    keep_running: bool,
) -> Result<(Subscription, Option<Owner>, bool), EngineError> {
    let settings = crate::settings::from_json(settings);
    engine.check_subscriber_room(None)?;
    // A materialized view's own result: nothing to start (or to stop).
    if let Some(subscription) = engine.subscribe_materialized(sql) {
        return Ok((subscription?, None, true));
    }
    if keep_running {
        return Ok((engine.subscribe_kept(sql, &settings).await?, None, false));
    }
    let subscription = engine.subscribe(sql, &settings).await?;
    let owner = Owner { engine: engine.clone(), id: subscription.query.id.clone() };
    Ok((subscription, Some(owner), false))
}

/// Drops the query it owns when the subscription ends.
struct Owner {
    engine: Arc<Engine>,
    id: String,
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.engine.drop_query(&self.id);
    }
}

/// An error frame (with the position, for SQL errors), then close.
async fn refuse(mut socket: WebSocket, error: &EngineError) {
    let mut frame = json!({"type": "error", "code": error.code.as_str(), "message": error.message});
    if let (Some(line), Some(column)) = (error.line, error.column) {
        frame["line"] = json!(line);
        frame["column"] = json!(column);
    }
    let _ = send(&mut socket, text(&frame)).await;
    let _ = socket.send(WsMessage::Close(None)).await;
}

async fn serve(
    mut socket: WebSocket,
    subscription: Subscription,
    from_seq: u64,
    options: Options,
    _owner: Option<Owner>,
) {
    let Subscription { query, mut events, first_available } = subscription;
    let mut opening = vec![text(&json!({
        "type": "schema",
        "columns": json::columns(&query.schema),
        "query_id": query.id,
        "updating": !query.append_only,
        "warnings": query.warnings,
        "format": if options.format == Format::Arrow { "arrow" } else { "json" },
    }))];
    let numbered_schema = crate::numbered::subscribe_schema(&query.schema, !query.append_only);
    if options.format == Format::Arrow {
        match ipc_schema(&numbered_schema) {
            Ok(bytes) => opening.push(WsMessage::Binary(bytes)),
            Err(error) => return refuse(socket, &error).await,
        }
    }
    if first_available > from_seq {
        opening.push(text(&json!({
            "type": "gap",
            "from_seq": from_seq,
            "first_available": first_available,
            "message": format!(
                "rows {from_seq} to {} of {} are no longer retained; rows start at {first_available}",
                first_available - 1,
                query.id
            ),
        })));
    }
    for message in opening {
        if send(&mut socket, message).await.is_err() {
            return;
        }
    }
    let encoder = Encoder { query: &query, numbered_schema, options: &options };
    let mut next_seq = first_available;
    let mut watermark = Value::Null;
    let mut last_sent = Instant::now();
    let mut heartbeat = tokio::time::interval_at(Instant::now() + options.heartbeat, options.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else {
                    let frame = json!({
                        "type": "error",
                        "code": "lagged",
                        "message": format!("subscriber too slow; reconnect with ?from_seq={next_seq}"),
                        "next_seq": next_seq,
                    });
                    let _ = send(&mut socket, text(&frame)).await;
                    break;
                };
                // What else is ready goes out with it: one flush (one write)
                // for a burst of events.
                let mut ready = vec![event];
                while ready.len() < COALESCE_EVENTS {
                    match events.try_recv() {
                        Ok(event) => ready.push(event),
                        Err(_) => break,
                    }
                }
                let mut messages = Vec::new();
                let mut last = false;
                // Rows below `from_seq` (asked for past the end) are not
                // the subscriber's.
                let ready: Vec<OutputEvent> = ready.into_iter().filter_map(|event| skip_below(event, from_seq)).collect();
                for event in &ready {
                    if let OutputEvent::Progress { watermark: advanced } = event {
                        watermark = json::timestamp(advanced.0);
                    }
                    let (frames, ends) = match encoder.frames(event) {
                        Ok(frames) => frames,
                        Err(error) => (vec![text(&json!({"type": "error", "code": error.code.as_str(), "message": error.message}))], true),
                    };
                    if let OutputEvent::Rows { seq, batch, .. } = event {
                        next_seq = seq + batch.num_rows() as u64;
                    }
                    messages.extend(frames);
                    if ends {
                        last = true;
                        break;
                    }
                }
                if messages.is_empty() {
                    // A filter kept nothing: the heartbeat still comes.
                    continue;
                }
                if send_all(&mut socket, messages).await.is_err() || last {
                    break;
                }
                last_sent = Instant::now();
                heartbeat.reset();
            }
            _ = heartbeat.tick() => {
                if last_sent.elapsed() >= options.heartbeat {
                    let frame = json!({"type": "heartbeat", "watermark": watermark, "next_seq": next_seq});
                    if send(&mut socket, text(&frame)).await.is_err() {
                        break;
                    }
                    last_sent = Instant::now();
                    heartbeat.reset();
                }
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(WsMessage::Text(message))) => {
                    // Nothing is expected once the subscription runs: say
                    // so, and go on.
                    let shown: String = message.chars().take(80).collect();
                    let frame = json!({
                        "type": "warning",
                        "message": format!("ignored a client message ({shown:?}): a running subscription takes none; close the socket to stop it"),
                    });
                    if send(&mut socket, text(&frame)).await.is_err() {
                        break;
                    }
                }
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), socket.send(WsMessage::Close(None))).await;
}

/// `event` without its rows below `from_seq`; `None` if nothing is left.
fn skip_below(event: OutputEvent, from_seq: u64) -> Option<OutputEvent> {
    match event {
        OutputEvent::Rows { seq, batch, .. } if seq < from_seq => {
            let skip = (from_seq - seq) as usize;
            if skip >= batch.num_rows() {
                return None;
            }
            let rest = batch.slice(skip, batch.num_rows() - skip);
            Some(OutputEvent::Rows { seq: from_seq, batch: rest, shared: sluice_runtime::SharedEncoding::default() })
        }
        other => Some(other),
    }
}

/// Writes frames with one flush; frames that cannot be written within
/// [`SEND_TIMEOUT`] count as a failure (the client stopped reading).
async fn send_all(socket: &mut WebSocket, messages: Vec<WsMessage>) -> Result<(), ()> {
    use futures::SinkExt;
    let write = async {
        for message in messages {
            socket.feed(message).await?;
        }
        socket.flush().await
    };
    match tokio::time::timeout(SEND_TIMEOUT, write).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// Events taken at once from a subscriber's queue and written with one
/// flush.
const COALESCE_EVENTS: usize = 64;

/// Writes one frame (see [`send_all`]).
async fn send(socket: &mut WebSocket, message: WsMessage) -> Result<(), ()> {
    send_all(socket, vec![message]).await
}

fn text(frame: &Value) -> WsMessage {
    WsMessage::Text(frame.to_string().into())
}

/// A batch's frames, shared by every subscriber without a filter (see
/// [`sluice_runtime::SharedEncoding`]).
#[derive(Default)]
struct SharedFrames {
    json: OnceLock<Result<Utf8Bytes, EngineError>>,
    arrow: OnceLock<Result<Bytes, EngineError>>,
}

/// Turns one subscriber's events into frames.
struct Encoder<'a> {
    query: &'a RunningQuery,
    numbered_schema: SchemaRef,
    options: &'a Options,
}

impl Encoder<'_> {
    /// The frames for an event, and whether it is the last event.
    fn frames(&self, event: &OutputEvent) -> Result<(Vec<WsMessage>, bool), EngineError> {
        Ok(match event {
            OutputEvent::Rows { seq, batch, shared } => (self.rows(*seq, batch, shared)?.into_iter().collect(), false),
            OutputEvent::Progress { watermark } => {
                let mut frame = json!({"type": "progress", "watermark": json::timestamp(watermark.0)});
                // A shedding query says the share of its input it keeps
                // now (each window's own is its `sample_rate` column).
                if let Some(shedding) = self.query.shedding() {
                    frame["sample_rate"] = json!(shedding.rate);
                }
                (vec![text(&frame)], false)
            }
            OutputEvent::Snapshot { next_seq, rows } => {
                let rows = match &self.options.filter {
                    Some(filter) => {
                        let mask = filter.mask(rows).map_err(|error| {
                            EngineError::invalid(format!(
                                "where={:?} failed on a result row: {}",
                                filter.text, error.message
                            ))
                        })?;
                        filter_record_batch(rows, &mask).map_err(internal)?
                    }
                    None => rows.clone(),
                };
                let rows_text = String::from_utf8(json::rows_text(&rows)?).map_err(internal)?;
                let frame = format!(r#"{{"type":"snapshot","next_seq":{next_seq},"rows":{rows_text}}}"#);
                (vec![WsMessage::Text(Utf8Bytes::from(frame))], false)
            }
            OutputEvent::End => (vec![text(&json!({"type": "end"}))], true),
            OutputEvent::Failed { message } => {
                let frame = json!({"type": "error", "code": "query_failed", "message": message});
                (vec![text(&frame)], true)
            }
            OutputEvent::Shutdown => {
                let next_seq = self.query.handle.output.rows_published();
                let frame = json!({
                    "type": "error",
                    "code": "shutting_down",
                    "message": format!(
                        "the server is shutting down; {} resumes when it is back (reconnect with ?from_seq= after your last row)",
                        self.query.id
                    ),
                    "next_seq": next_seq,
                });
                // 1001: going away.
                let close = WsMessage::Close(Some(axum::extract::ws::CloseFrame {
                    code: 1001,
                    reason: Utf8Bytes::from_static("server shutting down"),
                }));
                (vec![text(&frame), close], true)
            }
        })
    }

    /// The frame of rows `seq..` (none when a filter keeps no row).
    fn rows(
        &self,
        seq: u64,
        batch: &StreamBatch,
        shared: &sluice_runtime::SharedEncoding,
    ) -> Result<Option<WsMessage>, EngineError> {
        let next_seq = seq + batch.num_rows() as u64;
        let Some(filter) = &self.options.filter else {
            // Encoded once for every subscriber without a filter.
            let Some(frames) = shared.get_or_init(SharedFrames::default) else {
                return Err(EngineError::internal("a batch's shared encoding holds something else"));
            };
            return Ok(Some(match self.options.format {
                Format::Json => WsMessage::Text(
                    frames.json.get_or_init(|| json_rows(seq, next_seq, &batch.rows, batch.ops.as_deref())).clone()?,
                ),
                Format::Arrow => {
                    WsMessage::Binary(frames.arrow.get_or_init(|| self.arrow_rows(seq, batch, None)).clone()?)
                }
            }));
        };
        let mask = filter.mask(&batch.rows).map_err(|error| {
            EngineError::invalid(format!("where={:?} failed on a result row: {}", filter.text, error.message))
        })?;
        if mask.true_count() == 0 {
            return Ok(None);
        }
        Ok(Some(match self.options.format {
            Format::Json => {
                let rows = filter_record_batch(&batch.rows, &mask).map_err(internal)?;
                let ops: Option<Vec<Op>> = batch.ops.as_ref().map(|ops| {
                    ops.iter().zip(mask.iter()).filter(|(_, keep)| *keep == Some(true)).map(|(op, _)| *op).collect()
                });
                WsMessage::Text(json_rows(seq, next_seq, &rows, ops.as_deref())?)
            }
            Format::Arrow => WsMessage::Binary(self.arrow_rows(seq, batch, Some(&mask))?),
        }))
    }

    fn arrow_rows(
        &self,
        seq: u64,
        batch: &StreamBatch,
        mask: Option<&datafusion::arrow::array::BooleanArray>,
    ) -> Result<Bytes, EngineError> {
        let numbered = crate::numbered::subscribe_batch(&self.numbered_schema, seq, batch, !self.query.append_only)
            .map_err(internal)?;
        let numbered = match mask {
            Some(mask) => filter_record_batch(&numbered, mask).map_err(internal)?,
            None => numbered,
        };
        ipc_batch(&numbered)
    }
}

/// `{"type":"rows",...}`, written around the Arrow JSON writer's text.
fn json_rows(seq: u64, next_seq: u64, rows: &RecordBatch, ops: Option<&[Op]>) -> Result<Utf8Bytes, EngineError> {
    let rows_text = json::rows_text(rows)?;
    let mut frame = Vec::with_capacity(rows_text.len() + 64);
    frame.extend_from_slice(format!(r#"{{"type":"rows","seq":{seq},"next_seq":{next_seq},"rows":"#).as_bytes());
    frame.extend_from_slice(&rows_text);
    if let Some(ops) = ops {
        frame.extend_from_slice(br#","ops":["#);
        for (index, op) in ops.iter().enumerate() {
            if index > 0 {
                frame.push(b',');
            }
            frame.extend_from_slice(if *op == Op::Insert { br#""+""# } else { br#""-""# });
        }
        frame.push(b']');
    }
    frame.push(b'}');
    Utf8Bytes::try_from(frame).map_err(internal)
}

/// The IPC stream's schema message.
fn ipc_schema(schema: &Schema) -> Result<Bytes, EngineError> {
    let writer = StreamWriter::try_new(Vec::new(), schema).map_err(internal)?;
    Ok(Bytes::from(writer.get_ref().clone()))
}

/// One record batch message of the IPC stream [`ipc_schema`] opens.
fn ipc_batch(batch: &RecordBatch) -> Result<Bytes, EngineError> {
    let mut writer = StreamWriter::try_new(Vec::new(), &batch.schema()).map_err(internal)?;
    let schema_length = writer.get_ref().len();
    writer.write(batch).map_err(internal)?;
    Ok(Bytes::copy_from_slice(&writer.get_ref()[schema_length..]))
}

fn internal(error: impl std::fmt::Display) -> EngineError {
    EngineError::internal(error.to_string())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field};
    use datafusion::arrow::ipc::reader::StreamReader;

    use super::*;

    #[test]
    fn json_rows_frames_are_json() {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let rows = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2]))]).unwrap();
        let frame = json_rows(5, 7, &rows, Some(&[Op::Insert, Op::Delete])).unwrap();
        let value: Value = serde_json::from_str(frame.as_str()).unwrap();
        assert_eq!(
            value,
            json!({"type": "rows", "seq": 5, "next_seq": 7, "rows": [{"x": 1}, {"x": 2}], "ops": ["+", "-"]})
        );
    }

    #[test]
    fn ipc_messages_form_a_stream() {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let first = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![1, 2]))]).unwrap();
        let second = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![3]))]).unwrap();
        let mut stream = ipc_schema(&schema).unwrap().to_vec();
        stream.extend_from_slice(&ipc_batch(&first).unwrap());
        stream.extend_from_slice(&ipc_batch(&second).unwrap());
        let batches: Vec<RecordBatch> =
            StreamReader::try_new(std::io::Cursor::new(stream), None).unwrap().map(Result::unwrap).collect();
        assert_eq!(batches, vec![first, second]);
    }
}
