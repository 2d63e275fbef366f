//! The state every HTTP and websocket handler shares.

use std::sync::Arc;

use crate::engine::Engine;

/// Shared state of every handler (`State<Arc<AppState>>`).
pub struct AppState {
    pub engine: Arc<Engine>,
    /// The largest request body taken, bytes (`--max-body-bytes`).
    pub max_body_bytes: usize,
    /// What every request must present, if set (see [`crate::http::authorize`]).
    pub token: Option<String>,
}

/// The default request body limit: 16 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
