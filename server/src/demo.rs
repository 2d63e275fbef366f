//! The built-in demo: a `weblog` stream of generated access-log records
//! (50 per second, in real time) and a query that shows live windows.

use crate::engine::{Engine, Settings};
use crate::error::ApiError;

pub const DEMO_STREAMS: &str = "
CREATE STREAM IF NOT EXISTS weblog (
  ts TIMESTAMP, ip VARCHAR, status INT, method VARCHAR, url VARCHAR, duration DOUBLE,
  WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'generator', kind = 'weblog', rate = '50', seed = '42');
";

/// The query `sluice demo` runs: requests and errors per 5-second window.
pub const DEMO_QUERY: &str = include_str!("../../queries/weblog/top_error_ips.sql");

pub async fn register(engine: &Engine) -> Result<(), ApiError> {
    engine.execute(DEMO_STREAMS, &mut Settings::new()).await.map(|_| ())
}
