//! The built-in demo: two streams of generated access-log records from two
//! servers, `weblog` and `weblog_b` (50 per second each, in real time, over
//! the same client IPs), and a query that shows live windows.
//!
//! With a Kafka broker (`sluice demo --kafka HOST:PORT`), `weblog` goes
//! through Kafka: a sink writes the generated records to the topic
//! `weblog` (keyed by IP, so every partition gets some), and `weblog` is a
//! Kafka stream reading that topic, its watermark tracked per partition.

use crate::engine::{Engine, Settings};
use crate::error::EngineError;

/// The demo streams' columns and watermark.
macro_rules! weblog_columns {
    () => {
        "ts TIMESTAMP, ip VARCHAR, status INT, method VARCHAR, url VARCHAR, duration DOUBLE,
  WATERMARK FOR ts AS ts - INTERVAL '2' SECOND"
    };
}

pub const DEMO_STREAMS: &str = concat!(
    "CREATE STREAM IF NOT EXISTS weblog (",
    weblog_columns!(),
    ") WITH (connector = 'generator', kind = 'weblog', rate = '50', seed = '42');\n",
    "CREATE STREAM IF NOT EXISTS weblog_b (",
    weblog_columns!(),
    ") WITH (connector = 'generator', kind = 'weblog', rate = '50', seed = '7');"
);

/// The query `sluice demo` runs: requests and errors per 5-second window.
pub const DEMO_QUERY: &str = include_str!("../../queries/weblog/top_error_ips.sql");

pub async fn register(engine: &Engine) -> Result<(), EngineError> {
    engine.execute(DEMO_STREAMS, &mut Settings::new()).await.map(|_| ())
}

/// The demo with `weblog` read from Kafka at `brokers`, fed by a sink.
pub async fn register_through_kafka(engine: &Engine, brokers: &str) -> Result<(), EngineError> {
    let sql = format!(
        concat!(
            "CREATE STREAM IF NOT EXISTS weblog_generated (",
            weblog_columns!(),
            ") WITH (connector = 'generator', kind = 'weblog', rate = '50', seed = '42');
             CREATE SINK IF NOT EXISTS weblog_to_kafka INTO KAFKA (brokers = '{brokers}', topic = 'weblog', key = 'ip',
               envelope = 'append', delivery = 'at-least-once') AS SELECT * FROM weblog_generated;
             CREATE STREAM IF NOT EXISTS weblog (",
            weblog_columns!(),
            ") WITH (connector = 'kafka', brokers = '{brokers}', topic = 'weblog', start = 'earliest');
             CREATE STREAM IF NOT EXISTS weblog_b (",
            weblog_columns!(),
            ") WITH (connector = 'generator', kind = 'weblog', rate = '50', seed = '7');"
        ),
        brokers = brokers
    );
    // The sink makes the topic (brokers create topics on first write).
    let mut settings = Settings::new();
    for statement in sql.split_inclusive(';') {
        engine.execute(statement, &mut settings).await?;
        if statement.contains("CREATE SINK") {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }
    Ok(())
}
