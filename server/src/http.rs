//! The HTTP API (see DESIGN.md, "Interfaces"). `router` builds the whole
//! app from shared state, so tests can drive it without a socket.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, StringRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api_error::ApiError;
use crate::engine::{MetricsReport, QueryReport};
use crate::json;
use crate::settings::Settings;
use crate::state::AppState;
use crate::ws;

pub fn router(state: Arc<AppState>) -> Router {
    let body_limit = axum::extract::DefaultBodyLimit::max(state.max_body_bytes);
    Router::new()
        .route("/v1/sql", post(sql))
        .route("/v1/queries", get(list_queries))
        .route("/v1/queries/{id}", get(get_query).delete(delete_query))
        .route("/v1/queries/{id}/ws", get(ws::subscribe))
        .route("/v1/queries/{id}/plan", get(query_plan))
        .route("/v1/subscribe", get(ws::submit))
        .route("/v1/streams", get(list_streams))
        .route("/v1/streams/{name}/events", post(post_events))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .fallback(|| async { ApiError::not_found("no such endpoint; see /openapi.json") })
        .layer(body_limit)
        .layer(axum::middleware::from_fn_with_state(state.clone(), authorize))
        .merge(crate::console::routes())
        .with_state(state)
}

#[derive(Debug, Deserialize)]
struct SqlRequest {
    sql: String,
    #[serde(default)]
    settings: BTreeMap<String, Value>,
}

/// With a token set, every request (websocket upgrades included) must
/// carry it: `Authorization: Bearer TOKEN`, or `?token=TOKEN` (for browsers'
/// websockets). Otherwise 401, and nothing runs. The token is never echoed.
pub async fn authorize(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some(refusal) = cross_origin(&request) {
        return refusal;
    }
    let Some(token) = &state.token else { return next.run(request).await };
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::to_string);
    let in_query = || {
        axum::extract::Query::<std::collections::HashMap<String, String>>::try_from_uri(request.uri())
            .ok()
            .and_then(|Query(mut parameters)| parameters.remove("token"))
    };
    match bearer.or_else(in_query) {
        Some(given) if same_secret(given.as_bytes(), token.as_bytes()) => next.run(request).await,
        given => {
            let message = if given.is_some() {
                "the token given is not this server's"
            } else {
                "this server needs a token: send Authorization: Bearer <token> (or ?token= on a websocket URL)"
            };
            let error = crate::error::EngineError::new(crate::error::ErrorCode::Unauthorized, message);
            ApiError::from(error).into_response()
        }
    }
}

/// Refuses a request a browser sent from another origin (a page on some
/// site reaching this loopback server): its `Origin` names another host
/// than the request's `Host`. Clients that are not browsers send no
/// `Origin`.
fn cross_origin(request: &axum::extract::Request) -> Option<Response> {
    let origin = request.headers().get(header::ORIGIN)?.to_str().ok()?;
    let host = request.headers().get(header::HOST)?.to_str().ok()?;
    let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest).trim_end_matches('/');
    if origin_host.eq_ignore_ascii_case(host) {
        return None;
    }
    let message = format!("requests from pages of another origin ({origin}) are refused");
    Some(ApiError::from(crate::error::EngineError::new(crate::error::ErrorCode::Unauthorized, message)).into_response())
}

/// Compares secrets in time that does not depend on where they differ.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len() && given.iter().zip(expected).fold(0u8, |diff, (a, b)| diff | (a ^ b)) == 0
}

/// A body that could not be read: too large (413, naming the limit) or
/// broken.
fn body_error(state: &AppState, status: StatusCode, text: String) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        let message = format!(
            "the request body is larger than this server's limit of {} bytes (sluice serve --max-body-bytes); send events in smaller batches",
            state.max_body_bytes
        );
        return ApiError::from(crate::error::EngineError::new(crate::error::ErrorCode::TooLarge, message));
    }
    ApiError::bad_request(format!("cannot read the request body: {text}"))
}

/// The body is read as JSON whatever its content type, so `curl -d` works.
async fn sql(State(state): State<Arc<AppState>>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return body_error(&state, rejection.status(), rejection.body_text()).into_response(),
    };
    let request: SqlRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            let message = format!("expected a JSON body {{\"sql\": \"...\"}}: {error}");
            return ApiError::bad_request(message).into_response();
        }
    };
    let mut settings: Settings = crate::settings::from_json(request.settings);
    let rendered = match state.engine.execute(&request.sql, &mut settings).await {
        Ok(results) => results.iter().map(json::statement_result).collect::<Result<Vec<_>, _>>(),
        Err(error) => Err(error),
    };
    match rendered {
        Ok(mut results) if results.len() == 1 => Json(results.remove(0)).into_response(),
        Ok(results) => Json(json!({ "results": results })).into_response(),
        Err(error) => ApiError::from(error).into_response(),
    }
}

async fn list_queries(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(Value::Array(state.engine.queries().iter().map(|query| json::query_report(&query.report())).collect()))
}

async fn get_query(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let query = state.engine.query(&id).ok_or_else(|| ApiError::not_found(format!("query {id:?} not found")))?;
    Ok(Json(json::query_report(&query.report())))
}

/// EXPLAIN ANALYZE as data.
async fn query_plan(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let query = state.engine.query(&id).ok_or_else(|| ApiError::not_found(format!("query {id:?} not found")))?;
    let analysis = crate::engine::explain::Analysis::of(&query).await;
    Ok(Json(json::analysis(&query.id, &analysis)))
}

async fn delete_query(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    state.engine.drop_query(&id).ok_or_else(|| ApiError::not_found(format!("query {id:?} not found")))?;
    Ok(Json(json!({"status": "DELETED", "query_id": id})))
}

async fn list_streams(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(Value::Array(state.engine.streams().iter().map(json::stream).collect()))
}

#[derive(Debug, Deserialize)]
struct EventParams {
    /// Wait (up to [`INGEST_WAIT`]) for queries that are behind instead of
    /// a 429.
    #[serde(default)]
    wait: bool,
}

/// How long `?wait=true` waits for a query that is behind.
const INGEST_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// A JSON array of objects, or JSON lines. When a query reading the stream
/// is a whole queue of posts behind: 429 with `Retry-After`, or with
/// `?wait=true` a wait of up to 30 s first.
async fn post_events(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    params: Result<Query<EventParams>, axum::extract::rejection::QueryRejection>,
    body: Result<String, StringRejection>,
) -> Result<Json<Value>, ApiError> {
    let wait = match params {
        Ok(Query(params)) if params.wait => INGEST_WAIT,
        Ok(_) => std::time::Duration::ZERO,
        Err(rejection) => {
            return Err(ApiError::bad_request(format!("wait must be true or false: {}", rejection.body_text())));
        }
    };
    let body = body.map_err(|rejection| body_error(&state, rejection.status(), rejection.body_text()))?;
    let trimmed = body.trim_start();
    let lines: Vec<String> = if trimmed.starts_with('[') {
        let events: Vec<Value> = serde_json::from_str(trimmed)
            .map_err(|error| ApiError::bad_request(format!("invalid JSON array: {error}")))?;
        events.iter().map(Value::to_string).collect()
    } else {
        body.lines().filter(|line| !line.trim().is_empty()).map(str::to_string).collect()
    };
    let count = lines.len();
    let queries = state.engine.ingest(&name.to_ascii_lowercase(), lines, Some(wait)).await.map_err(ApiError::from)?;
    Ok(Json(json!({"accepted": count, "queries": queries})))
}

/// Prometheus text exposition.
async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let mut text = String::new();
    type Counter = (&'static str, &'static str, fn(&MetricsReport) -> u64);
    let counters: [Counter; 7] = [
        ("sluice_query_rows_in_total", "Rows read by the query's sources.", |m| m.rows_in),
        ("sluice_query_rows_out_total", "Result rows emitted.", |m| m.rows_out),
        ("sluice_query_epochs_total", "Epochs run.", |m| m.epochs),
        ("sluice_query_late_rows_dropped_total", "Rows dropped for arriving below the watermark.", |m| {
            m.late_rows_dropped
        }),
        ("sluice_query_malformed_records_total", "Records skipped because they did not parse.", |m| {
            m.malformed_records
        }),
        ("sluice_query_lagged_subscribers_total", "Subscribers cut off for falling behind.", |m| m.lagged_subscribers),
        ("sluice_query_subscribers", "Subscribers connected now (a gauge).", |m| m.subscribers as u64),
    ];
    let reports: Vec<QueryReport> = state.engine.queries().iter().map(|query| query.report()).collect();
    for (name, help, read) in counters {
        let kind = if name.ends_with("_total") { "counter" } else { "gauge" };
        text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for report in &reports {
            text.push_str(&format!("{name}{{query=\"{}\"}} {}\n", report.id, read(&report.metrics)));
        }
    }
    // Queries run with `SET max_lag` only.
    type Shed = (&'static str, &'static str, &'static str, fn(&crate::engine::status::Shedding) -> f64);
    let shed: [Shed; 3] = [
        ("sluice_query_rows_shed_total", "counter", "Rows a query with max_lag shed.", |s| s.rows_shed as f64),
        ("sluice_query_sample_rate", "gauge", "The share of its input a query with max_lag keeps now.", |s| s.rate),
        ("sluice_query_input_lag_seconds", "gauge", "How far behind its input a query with max_lag was.", |s| {
            s.lag_ms / 1000.0
        }),
    ];
    for (name, kind, help, read) in shed {
        text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for report in &reports {
            if let Some(shedding) = &report.metrics.shedding {
                text.push_str(&format!("{name}{{query=\"{}\"}} {}\n", report.id, read(shedding)));
            }
        }
    }
    operator_metrics(&state, &mut text);
    text.push_str("# HELP sluice_queries Queries by status.\n# TYPE sluice_queries gauge\n");
    for status in ["running", "finished", "failed", "cancelled"] {
        let count = reports.iter().filter(|report| report.status.name() == status).count();
        text.push_str(&format!("sluice_queries{{status=\"{status}\"}} {count}\n"));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// Per operator of every query (labels `query`, `node`, `operator`).
fn operator_metrics(state: &AppState, text: &mut String) {
    let queries = state.engine.queries();
    let reports: Vec<(String, Vec<sluice_runtime::OperatorReport>)> =
        queries.iter().map(|query| (query.id.clone(), query.handle.metrics.operators())).collect();
    type Series = (&'static str, &'static str, &'static str, fn(&sluice_runtime::OperatorReport) -> Option<f64>);
    let series: [Series; 7] = [
        ("sluice_operator_rows_in_total", "counter", "Rows into the operator.", |o| Some(o.rows_in as f64)),
        ("sluice_operator_rows_out_total", "counter", "Rows out of the operator.", |o| Some(o.rows_out as f64)),
        ("sluice_operator_batches_in_total", "counter", "Batches into the operator.", |o| Some(o.batches_in as f64)),
        ("sluice_operator_busy_seconds_total", "counter", "Time spent in the operator.", |o| Some(o.busy_ms / 1000.0)),
        ("sluice_operator_state_rows", "gauge", "Rows the operator holds (refreshed while watched).", |o| {
            o.state_rows.map(|rows| rows as f64)
        }),
        (
            "sluice_operator_state_bytes",
            "gauge",
            "Bytes the operator holds, estimated (refreshed while watched).",
            |o| o.state_bytes.map(|bytes| bytes as f64),
        ),
        (
            "sluice_operator_watermark_seconds",
            "gauge",
            "The operator's input watermark, seconds since the epoch.",
            |o| o.watermark_in.filter(|watermark| *watermark != i64::MAX).map(|watermark| watermark as f64 / 1e9),
        ),
    ];
    for (name, kind, help, read) in series {
        text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (query, operators) in &reports {
            for operator in operators {
                if let Some(value) = read(operator) {
                    let label = operator.name.replace('\\', "\\\\").replace('"', "\\\"");
                    text.push_str(&format!(
                        "{name}{{query=\"{query}\",node=\"{}\",operator=\"{label}\"}} {value}\n",
                        operator.node
                    ));
                }
            }
        }
    }
}

async fn openapi() -> impl IntoResponse {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], include_str!("openapi.json"))
}
