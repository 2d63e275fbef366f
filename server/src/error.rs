//! API errors: `{"error": {"code", "message", "line"?, "column"?}}` with a
//! 4xx status for the user's mistakes and 5xx only for Sluice's bugs.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sluice_planner::PlanError;
use sluice_runtime::RuntimeError;

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub line: Option<u64>,
    pub column: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self { status, code: code.to_string(), message: message.into(), line: None, column: None }
    }

    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    pub fn to_json(&self) -> serde_json::Value {
        let mut error = json!({"code": self.code, "message": self.message});
        if let (Some(line), Some(column)) = (self.line, self.column) {
            error["line"] = json!(line);
            error["column"] = json!(column);
        }
        json!({ "error": error })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => {
                write!(f, "{} (line {line}, column {column})", self.message)
            }
            _ => write!(f, "{}", self.message),
        }
    }
}

impl std::error::Error for ApiError {}

impl From<PlanError> for ApiError {
    fn from(error: PlanError) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: error.kind.code().to_string(),
            message: error.message,
            line: error.line,
            column: error.column,
        }
    }
}

impl From<RuntimeError> for ApiError {
    fn from(error: RuntimeError) -> Self {
        match error {
            RuntimeError::User(message) => Self::bad_request("invalid", message),
            RuntimeError::External(message) => Self::new(StatusCode::BAD_GATEWAY, "external", message),
            RuntimeError::Internal(message) => Self::internal(message),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.to_json())).into_response()
    }
}
