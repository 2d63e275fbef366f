//! Engine errors: a [`ErrorCode`] saying what kind of mistake it is (and
//! whose: the user's, an external system's, or Sluice's own), a message,
//! and the line and column of the SQL it points at.
//!
//! No front end's types appear here: HTTP maps the code to a status (in
//! `api_error`), the coming Postgres endpoint to a SQLSTATE.

use sluice_planner::{PlanError, PlanErrorKind};
use sluice_runtime::RuntimeError;

/// What kind of error; [`ErrorCode::as_str`] is the `"code"` the API shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The SQL does not parse (user).
    Syntax,
    /// A stream, table, column or function that does not exist (user).
    UnknownObject,
    /// SQL Sluice does not run (user).
    Unsupported,
    /// A statement or setting that is wrong as given (user).
    Invalid,
    /// A request body that is not what the API takes (user).
    BadRequest,
    /// A request body over the server's limit (user).
    TooLarge,
    /// No token, or not the server's (user).
    Unauthorized,
    /// Over a limit on queries or subscribers (user; retry later).
    TooMany,
    /// The server is shutting down (retry once it is back).
    ShuttingDown,
    /// No such query, stream or endpoint (user).
    NotFound,
    /// The data directory cannot be read or written (external).
    DataDir,
    /// An `http` stream's event log cannot be opened or appended (external).
    EventLog,
    /// The disk holding the data directory is full (external; retry once
    /// there is room).
    StorageFull,
    /// A source or other system went away (external).
    External,
    /// A bug in Sluice.
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Syntax => "syntax_error",
            ErrorCode::UnknownObject => "unknown_object",
            ErrorCode::Unsupported => "unsupported",
            ErrorCode::Invalid => "invalid",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::TooLarge => "payload_too_large",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::TooMany => "too_many",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::NotFound => "not_found",
            ErrorCode::DataDir => "data_dir",
            ErrorCode::EventLog => "event_log",
            ErrorCode::StorageFull => "storage_full",
            ErrorCode::External => "external",
            ErrorCode::Internal => "internal",
        }
    }
}

/// An error of the engine, for any front end to render.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineError {
    pub code: ErrorCode,
    pub message: String,
    /// Where in the SQL text (1-based), when the error points at a place.
    pub line: Option<u64>,
    pub column: Option<u64>,
}

impl EngineError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), line: None, column: None }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Invalid, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        sluice_planner::error::write_located(f, &self.message, self.line, self.column)
    }
}

impl std::error::Error for EngineError {}

impl From<PlanError> for EngineError {
    fn from(error: PlanError) -> Self {
        let code = match error.kind {
            PlanErrorKind::Syntax => ErrorCode::Syntax,
            PlanErrorKind::UnknownObject => ErrorCode::UnknownObject,
            PlanErrorKind::Unsupported => ErrorCode::Unsupported,
            PlanErrorKind::Invalid => ErrorCode::Invalid,
        };
        Self { code, message: error.message, line: error.line, column: error.column }
    }
}

impl From<RuntimeError> for EngineError {
    fn from(error: RuntimeError) -> Self {
        match error {
            RuntimeError::User(message) => Self::invalid(message),
            RuntimeError::External(message) => Self::new(ErrorCode::External, message),
            RuntimeError::Internal(message) => Self::internal(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_error_codes_are_the_planners() {
        for kind in
            [PlanErrorKind::Syntax, PlanErrorKind::UnknownObject, PlanErrorKind::Unsupported, PlanErrorKind::Invalid]
        {
            let error = EngineError::from(PlanError { kind, ..PlanError::invalid("") });
            assert_eq!(error.code.as_str(), kind.code());
        }
    }
}
