//! Nexmark: the three streams over the built-in generator, and `sluice bench
//! nexmark`, which runs the queries of `queries/nexmark/` in-process over N
//! generated events and reports throughput, CPU, memory and the ratio to
//! DataFusion batch SQL over the same events.

/// The DDL of the Nexmark streams (watermark 4 s, as in the Flink DDL):
/// `person`, `auction`, `bid`, and `bid_proctime` (bids with a
/// processing-time column, for q12). `events`: bounded when set.
pub fn streams(events: Option<u64>, event_rate: f64, realtime: bool) -> String {
    let bounded = events.map(|events| format!(", events = '{events}'")).unwrap_or_default();
    let options = format!("event_rate = '{event_rate}', realtime = '{realtime}'{bounded}");
    format!(
        "CREATE STREAM IF NOT EXISTS person (
           id BIGINT, name VARCHAR, email_address VARCHAR, credit_card VARCHAR, city VARCHAR, state VARCHAR,
           date_time TIMESTAMP, extra VARCHAR,
           WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
         ) WITH (connector = 'nexmark', table = 'person', {options});
         CREATE STREAM IF NOT EXISTS auction (
           id BIGINT, item_name VARCHAR, description VARCHAR, initial_bid BIGINT, reserve BIGINT,
           date_time TIMESTAMP, expires TIMESTAMP, seller BIGINT, category BIGINT, extra VARCHAR,
           WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
         ) WITH (connector = 'nexmark', table = 'auction', {options});
         CREATE STREAM IF NOT EXISTS bid (
           auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, date_time TIMESTAMP, extra VARCHAR,
           WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
         ) WITH (connector = 'nexmark', table = 'bid', {options});
         CREATE STREAM IF NOT EXISTS bid_proctime (
           auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, date_time TIMESTAMP, extra VARCHAR,
           p_time AS PROCTIME()
         ) WITH (connector = 'nexmark', table = 'bid', {options});
         CREATE TABLE IF NOT EXISTS side_input (key BIGINT, value VARCHAR, PRIMARY KEY (key));"
    )
}

/// The query files, by name (`q0` ... `q22`).
pub fn queries() -> Vec<(String, String)> {
    let mut queries: Vec<(String, String)> = QUERY_FILES
        .iter()
        .map(|(name, text)| (name.to_string(), text.to_string()))
        .collect();
    queries.sort_by_key(|(name, _)| name[1..].parse::<u32>().unwrap_or(u32::MAX));
    queries
}

macro_rules! query_files {
    ($($name:literal),*) => {
        const QUERY_FILES: &[(&str, &str)] =
            &[$(($name, include_str!(concat!("../../queries/nexmark/", $name, ".sql")))),*];
    };
}

query_files!(
    "q0", "q1", "q2", "q3", "q4", "q5", "q6", "q7", "q8", "q9", "q10", "q11", "q12", "q13", "q14", "q15", "q16",
    "q17", "q18", "q19", "q20", "q21", "q22"
);

/// The statement of a query file (its header comment dropped).
pub fn statement(text: &str) -> String {
    text.lines().filter(|line| !line.trim_start().starts_with("--")).collect::<Vec<_>>().join("\n")
}
