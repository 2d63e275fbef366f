//! The web console: static files embedded in the binary, served at `/`
//! and under `/console/`. The page uses only the public HTTP and websocket
//! API, so it is served without a token (it asks for one when the server
//! needs it) and carries no secret itself.
//!
//! `SLUICE_CONSOLE_DIR` (for working on the console) serves the files from
//! that directory instead, read at every request.

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// Every file of the console: its path under `/console/`, type and bytes.
const FILES: &[(&str, &str, &[u8])] = &[
    ("index.html", "text/html; charset=utf-8", include_bytes!("../console/index.html")),
    ("console.js", "text/javascript; charset=utf-8", include_bytes!("../console/console.js")),
    ("console.css", "text/css; charset=utf-8", include_bytes!("../console/console.css")),
    (
        "vendor/uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/vendor/uPlot.iife.min.js"),
    ),
    ("vendor/uPlot.min.css", "text/css; charset=utf-8", include_bytes!("../console/vendor/uPlot.min.css")),
];

/// The console's routes, to merge outside the token check.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { file("index.html") }))
        .route("/console/{*path}", get(|Path(path): Path<String>| async move { file(&path) }))
}

fn file(path: &str) -> Response {
    let Some((name, content_type, embedded)) = FILES.iter().find(|(name, _, _)| *name == path) else {
        return (StatusCode::NOT_FOUND, "no such console file").into_response();
    };
    let bytes = match std::env::var_os("SLUICE_CONSOLE_DIR") {
        Some(dir) => match std::fs::read(std::path::Path::new(&dir).join(name)) {
            Ok(bytes) => bytes,
            Err(error) => return (StatusCode::NOT_FOUND, format!("{name}: {error}")).into_response(),
        },
        None => embedded.to_vec(),
    };
    ([(header::CONTENT_TYPE, *content_type), (header::CACHE_CONTROL, "no-cache")], bytes).into_response()
}
