//! Runtime errors, typed by whose fault they are.

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// An error raised while running a query.
#[derive(Debug, Clone, PartialEq)]
pub enum RuntimeError {
    /// The user asked for something that cannot work (a bad option, a
    /// record that does not fit the declared schema).
    User(String),
    /// Something outside Sluice failed: a socket went away, a file vanished.
    External(String),
    /// A bug in Sluice.
    Internal(String),
}

impl RuntimeError {
    pub fn user(message: impl Into<String>) -> Self {
        Self::User(message.into())
    }
    pub fn external(message: impl Into<String>) -> Self {
        Self::External(message.into())
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::Internal(message.into())
    }
}

impl std::fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::User(message) => write!(f, "{message}"),
            Self::External(message) => write!(f, "external error: {message}"),
            Self::Internal(message) => write!(f, "internal error: {message}"),
        }
    }
}

impl std::error::Error for RuntimeError {}

impl From<DataFusionError> for RuntimeError {
    fn from(error: DataFusionError) -> Self {
        match error {
            DataFusionError::ArrowError(error, _) => Self::from(*error),
            DataFusionError::Execution(message) => Self::User(message),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<ArrowError> for RuntimeError {
    fn from(error: ArrowError) -> Self {
        match error {
            ArrowError::CastError(message)
            | ArrowError::ParseError(message)
            | ArrowError::ComputeError(message)
            | ArrowError::InvalidArgumentError(message) => Self::User(message),
            ArrowError::DivideByZero => Self::User("division by zero".into()),
            ArrowError::ArithmeticOverflow(message) => Self::User(message),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<std::io::Error> for RuntimeError {
    fn from(error: std::io::Error) -> Self {
        Self::External(error.to_string())
    }
}
