//! The state every HTTP and websocket handler shares.

use std::sync::Arc;

use crate::engine::Engine;

/// Shared state of every handler (`State<Arc<AppState>>`).
pub struct AppState {
    pub engine: Arc<Engine>,
}
