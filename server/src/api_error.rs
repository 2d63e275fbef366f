//! API errors: an [`EngineError`] as HTTP shows it,
//! `{"error": {"code", "message", "line"?, "column"?}}` with a 4xx status
//! for the user's mistakes and 5xx only for Sluice's bugs and the systems
//! it depends on.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::{EngineError, ErrorCode};

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: EngineError,
}

/// The HTTP status of an error code.
pub fn status(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::Syntax
        | ErrorCode::UnknownObject
        | ErrorCode::Unsupported
        | ErrorCode::Invalid
        | ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::TooMany => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::External => StatusCode::BAD_GATEWAY,
        ErrorCode::DataDir | ErrorCode::EventLog | ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::StorageFull => StatusCode::INSUFFICIENT_STORAGE,
    }
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::from(EngineError::new(ErrorCode::BadRequest, message))
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::from(EngineError::not_found(message))
    }

    pub fn to_json(&self) -> serde_json::Value {
        let error = &self.error;
        let mut body = json!({"code": error.code.as_str(), "message": error.message});
        if let (Some(line), Some(column)) = (error.line, error.column) {
            body["line"] = json!(line);
            body["column"] = json!(column);
        }
        json!({ "error": body })
    }
}

impl From<EngineError> for ApiError {
    fn from(error: EngineError) -> Self {
        Self { status: status(error.code), error }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.to_json())).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS || self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
        }
        response
    }
}
