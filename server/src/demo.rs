//! The built-in demo: two streams of generated access-log records from two
//! servers, `weblog` and `weblog_b` (50 per second each, in real time, over
//! the same client IPs), and a query that shows live windows.

use crate::engine::{Engine, Settings};
use crate::error::EngineError;

pub const DEMO_STREAMS: &str = "
CREATE STREAM IF NOT EXISTS weblog (
  ts TIMESTAMP, ip VARCHAR, status INT, method VARCHAR, url VARCHAR, duration DOUBLE,
  WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'generator', kind = 'weblog', rate = '50', seed = '42');
CREATE STREAM IF NOT EXISTS weblog_b (
  ts TIMESTAMP, ip VARCHAR, status INT, method VARCHAR, url VARCHAR, duration DOUBLE,
  WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'generator', kind = 'weblog', rate = '50', seed = '7');
";

/// The query `sluice demo` runs: requests and errors per 5-second window.
pub const DEMO_QUERY: &str = include_str!("../../queries/weblog/top_error_ips.sql");

pub async fn register(engine: &Engine) -> Result<(), EngineError> {
    engine.execute(DEMO_STREAMS, &mut Settings::new()).await.map(|_| ())
}
