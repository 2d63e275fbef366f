//! Websocket subscriptions: `GET /v1/queries/{id}/ws[?from_seq=N]`.
//!
//! Frames (JSON text): first `{"type":"schema","columns":[...]}`, then
//! `{"type":"rows","seq":N,"rows":[{...}],"ops":[...]?}` where `seq` numbers
//! the first row of the frame, `{"type":"progress","watermark":...}`, and
//! `{"type":"end"}` when a bounded query finished, or
//! `{"type":"error","code","message"}`. A subscriber that falls more than
//! the output queue behind is cut off with code `lagged` and the `seq` to
//! reconnect from; the query itself never waits for it.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use sluice_runtime::OutputEvent;

use crate::api_error::ApiError;
use crate::engine::RunningQuery;
use crate::error::EngineError;
use crate::json;
use crate::state::AppState;

#[derive(Debug, Deserialize)]
pub struct SubscribeParams {
    #[serde(default)]
    from_seq: u64,
}

pub async fn subscribe(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    params: Result<Query<SubscribeParams>, QueryRejection>,
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
    upgrade.on_upgrade(move |socket| serve(socket, query, params.from_seq))
}

async fn serve(mut socket: WebSocket, query: Arc<RunningQuery>, from_seq: u64) {
    let schema = json!({"type": "schema", "columns": json::columns(&query.schema), "query_id": query.id});
    if send(&mut socket, &schema).await.is_err() {
        return;
    }
    let mut events = query.handle.output.subscribe(from_seq);
    let mut next_seq = from_seq;
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
                    let _ = send(&mut socket, &frame).await;
                    break;
                };
                let (frame, last) = match frame(&event) {
                    Ok(frame) => frame,
                    Err(error) => (json!({"type": "error", "code": error.code.as_str(), "message": error.message}), true),
                };
                if let OutputEvent::Rows { seq, batch } = &event {
                    next_seq = seq + batch.num_rows() as u64;
                }
                if send(&mut socket, &frame).await.is_err() || last {
                    break;
                }
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = socket.send(WsMessage::Close(None)).await;
}

/// The frame for an event, and whether it is the last one.
fn frame(event: &OutputEvent) -> Result<(Value, bool), EngineError> {
    Ok(match event {
        OutputEvent::Rows { seq, batch } => {
            let mut frame = json!({"type": "rows", "seq": seq, "rows": json::rows(&batch.rows)?});
            if let Some(ops) = &batch.ops {
                frame["ops"] = json!(ops.iter().map(|op| op.symbol()).collect::<Vec<_>>());
            }
            (frame, false)
        }
        OutputEvent::Progress { watermark } => {
            (json!({"type": "progress", "watermark": json::timestamp(watermark.0)}), false)
        }
        OutputEvent::End => (json!({"type": "end"}), true),
        OutputEvent::Failed { message } => (json!({"type": "error", "code": "query_failed", "message": message}), true),
    })
}

async fn send(socket: &mut WebSocket, frame: &Value) -> Result<(), axum::Error> {
    socket.send(WsMessage::Text(frame.to_string().into())).await
}
