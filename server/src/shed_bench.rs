//! `sluice bench shed`: load shedding measured.
//!
//! A windowed count/sum/avg per key over a generator released in real
//! time at a quarter of what the machine can process, bursting to ten
//! times what it can process for `--seconds` (30 by default), run twice
//! over the same records: without shedding (its results are the exact
//! answers, once it has worked off the backlog) and with `SET max_lag`.
//! For each run: each window's latency (from when its last row was due to
//! when its result reached a websocket client) and the lag curve; for the
//! shed run, each window's count and sum against the exact ones, and
//! whether the error is inside the 95 % interval the result states.

use std::collections::BTreeMap;
use std::time::Instant;

use datafusion::arrow::compute::kernels::cast_utils::string_to_timestamp_nanos;
use futures::StreamExt;
use serde_json::{Value, json};

use crate::engine::StatementResult;
use crate::error::EngineError;

/// Event time of the first record: the generator's default start.
const START: i64 = sluice_runtime::source::generator::DEFAULT_START_NANOS;

/// The watermark's delay (the generator's records are up to 800 ms out of
/// order).
const DELAY_SECONDS: f64 = 1.0;

/// Seconds at the base rate before and after the burst.
const CALM_SECONDS: f64 = 5.0;

/// Distinct keys (client IPs): per-key windows hold enough sampled rows
/// for a normal interval.
const KEYS: u64 = 10;

/// The query, without and with the error estimates (which need a sampled
/// input).
const EXACT_QUERY: &str =
    "SELECT window_start, window_end, ip, count(*) AS hits, sum(duration) AS total, avg(duration) AS mean
 FROM TUMBLE(TABLE burst, DESCRIPTOR(ts), INTERVAL '1' SECOND) GROUP BY window_start, window_end, ip";
pub const SHED_QUERY: &str =
    "SELECT window_start, window_end, ip, count(*) AS hits, sum(duration) AS total, avg(duration) AS mean,
   count_error(*) AS hits_error, sum_error(duration) AS total_error
 FROM TUMBLE(TABLE burst, DESCRIPTOR(ts), INTERVAL '1' SECOND) GROUP BY window_start, window_end, ip";

/// One window of one key, as a run's client received it.
#[derive(Debug, Clone)]
struct Window {
    hits: f64,
    total: f64,
    hits_error: f64,
    total_error: f64,
    rate: f64,
    /// From when the window's last row was due to its result's arrival.
    latency_ms: f64,
}

/// One run's figures.
#[derive(Debug, Clone)]
pub struct Run {
    pub max_lag: Option<String>,
    pub windows: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Seconds from the first record's release until the last window arrived.
    pub seconds: f64,
    pub rows_in: u64,
    pub rows_shed: u64,
    pub late_rows: u64,
    /// Per 5 s of event time: the worst window latency, ms.
    pub lag_curve: Vec<(f64, f64)>,
}

/// The whole bench.
#[derive(Debug, Clone)]
pub struct ShedBench {
    /// Rows per second the query took flat out, unshed.
    pub capacity: f64,
    pub base_rate: f64,
    pub burst_rate: f64,
    pub burst_seconds: f64,
    pub exact: Run,
    pub shed: Run,
    /// Windows of the shed run computed from a sample (rate below 1).
    pub sampled_windows: usize,
    /// Of those, the share whose count (sum) is within the stated interval
    /// of the exact one.
    pub hits_covered: f64,
    pub total_covered: f64,
    /// Over every window (unsampled ones are exact).
    pub hits_covered_all: f64,
    pub total_covered_all: f64,
    pub median_relative_error: f64,
    pub max_relative_error: f64,
    pub min_rate: f64,
    /// The mean squared z-score of the sampled windows' count (sum) errors
    /// against their stated intervals: 1 for exact intervals.
    pub hits_z2: f64,
    pub total_z2: f64,
    /// Windows of the exact run the shed one lacks (or has extra).
    pub missing_windows: usize,
}

impl ShedBench {
    pub fn json_line(&self) -> String {
        let run = |run: &Run| {
            json!({
                "max_lag": run.max_lag,
                "windows": run.windows,
                "p50_ms": run.p50_ms.round(),
                "p99_ms": run.p99_ms.round(),
                "max_ms": run.max_ms.round(),
                "seconds": (run.seconds * 10.0).round() / 10.0,
                "rows_in": run.rows_in,
                "rows_shed": run.rows_shed,
                "late_rows": run.late_rows,
            })
        };
        json!({
            "bench": "shed",
            "capacity_rows_per_sec": self.capacity.round(),
            "base_rate": self.base_rate.round(),
            "burst_rate": self.burst_rate.round(),
            "burst_seconds": self.burst_seconds,
            "unshed": run(&self.exact),
            "shed": run(&self.shed),
            "sampled_windows": self.sampled_windows,
            "count_within_interval": self.hits_covered,
            "sum_within_interval": self.total_covered,
            "count_within_interval_all_windows": self.hits_covered_all,
            "sum_within_interval_all_windows": self.total_covered_all,
            "median_relative_error": self.median_relative_error,
            "max_relative_error": self.max_relative_error,
            "min_rate": self.min_rate,
            "count_mean_z2": self.hits_z2,
            "sum_mean_z2": self.total_z2,
            "missing_windows": self.missing_windows,
        })
        .to_string()
    }
}

/// Runs the bench: a burst of `burst_seconds`, shed with `max_lag`.
/// `SLUICE_SHED_DEBUG=1` lists the windows outside their interval.
pub async fn shed(burst_seconds: f64, max_lag: &str) -> Result<ShedBench, EngineError> {
    let capacity = capacity().await?;
    let base_rate = capacity / 4.0;
    let burst_rate = capacity * 10.0;
    let ddl = format!(
        "CREATE STREAM burst (ts TIMESTAMP, ip VARCHAR, duration DOUBLE,
           WATERMARK FOR ts AS ts - INTERVAL '{DELAY_SECONDS}' SECOND)
         WITH (connector = 'generator', realtime = 'true', hosts = '{KEYS}', seed = '5',
               rate = '{base_rate}', burst_factor = '{}', burst_after = '{CALM_SECONDS}', burst_seconds = '{burst_seconds}',
               rows = '{}')",
        burst_rate / base_rate,
        (base_rate * CALM_SECONDS * 2.0 + burst_rate * burst_seconds) as u64,
    );
    let (exact, exact_windows) = run(&ddl, EXACT_QUERY, None).await?;
    let (shed, shed_windows) = run(&ddl, SHED_QUERY, Some(max_lag)).await?;
    let mut sampled = 0;
    let (mut hits_in, mut total_in, mut hits_in_all, mut total_in_all) = (0, 0, 0, 0);
    let mut errors = Vec::new();
    let mut min_rate: f64 = 1.0;
    let mut missing = 0;
    let (mut hits_z2, mut total_z2) = (0.0, 0.0);
    for (key, truth) in &exact_windows {
        let Some(estimate) = shed_windows.get(key) else {
            missing += 1;
            continue;
        };
        let hits_ok = (estimate.hits - truth.hits).abs() <= estimate.hits_error + 1e-9 * truth.hits.abs();
        let total_ok = (estimate.total - truth.total).abs() <= estimate.total_error + 1e-9 * truth.total.abs();
        hits_in_all += hits_ok as usize;
        total_in_all += total_ok as usize;
        min_rate = min_rate.min(estimate.rate);
        if std::env::var("SLUICE_SHED_DEBUG").is_ok() && !(hits_ok && total_ok) {
            eprintln!(
                "outside: {key:?} exact {} {:.1} estimate {:.1} ± {:.1}, {:.1} ± {:.1} at rate {:.4}",
                truth.hits,
                truth.total,
                estimate.hits,
                estimate.hits_error,
                estimate.total,
                estimate.total_error,
                estimate.rate
            );
        }
        if estimate.rate < 1.0 {
            let z = |got: f64, want: f64, half_width: f64| ((got - want) * 1.96 / half_width.max(1e-12)).powi(2);
            hits_z2 += z(estimate.hits, truth.hits, estimate.hits_error);
            total_z2 += z(estimate.total, truth.total, estimate.total_error);
            sampled += 1;
            hits_in += hits_ok as usize;
            total_in += total_ok as usize;
            errors.push((estimate.hits - truth.hits).abs() / truth.hits.max(1.0));
            errors.push((estimate.total - truth.total).abs() / truth.total.abs().max(1e-9));
        }
    }
    missing += shed_windows.keys().filter(|key| !exact_windows.contains_key(*key)).count();
    errors.sort_by(f64::total_cmp);
    let share = |covered: usize, of: usize| if of == 0 { 1.0 } else { covered as f64 / of as f64 };
    let compared = exact_windows.len() - missing.min(exact_windows.len());
    Ok(ShedBench {
        capacity,
        base_rate,
        burst_rate,
        burst_seconds,
        exact,
        shed,
        sampled_windows: sampled,
        hits_covered: share(hits_in, sampled),
        total_covered: share(total_in, sampled),
        hits_covered_all: share(hits_in_all, compared),
        total_covered_all: share(total_in_all, compared),
        median_relative_error: errors.get(errors.len() / 2).copied().unwrap_or(0.0),
        max_relative_error: errors.last().copied().unwrap_or(0.0),
        min_rate,
        hits_z2: hits_z2 / sampled.max(1) as f64,
        total_z2: total_z2 / sampled.max(1) as f64,
        missing_windows: missing,
    })
}

/// Rows per second the query takes flat out (not paced, not shed).
async fn capacity() -> Result<f64, EngineError> {
    let engine = crate::engine::Engine::new();
    let mut settings = crate::bench::base_settings();
    settings.insert("retained_rows".into(), "0".into());
    let rows = 4_000_000u64;
    let ddl = format!(
        "CREATE STREAM burst (ts TIMESTAMP, ip VARCHAR, duration DOUBLE,
           WATERMARK FOR ts AS ts - INTERVAL '{DELAY_SECONDS}' SECOND)
         WITH (connector = 'generator', realtime = 'false', hosts = '{KEYS}', seed = '5', rate = '1000000', rows = '{rows}')"
    );
    engine.execute(&ddl, &mut settings).await?;
    let started = Instant::now();
    let results = engine.execute(EXACT_QUERY, &mut settings).await?;
    let Some(StatementResult::Query { id, .. }) = results.last() else {
        return Err(EngineError::internal("the capacity query did not start"));
    };
    let running = engine.query(id).ok_or_else(|| EngineError::internal("the capacity query vanished"))?;
    crate::bench::wait_until_finished(&running, |_| {}).await?;
    Ok(rows as f64 / started.elapsed().as_secs_f64())
}

/// One run of `sql` over the stream `ddl` declares, shed with `max_lag` if
/// given: its figures, and its windows by (start, key).
async fn run(
    ddl: &str,
    sql: &str,
    max_lag: Option<&str>,
) -> Result<(Run, BTreeMap<(i64, String), Window>), EngineError> {
    let server = crate::bench::bench_server(None).await?;
    let engine = server.engine.clone();
    let mut settings = crate::bench::base_settings();
    settings.insert("retained_rows".into(), "0".into());
    if let Some(max_lag) = max_lag {
        settings.insert("max_lag".into(), max_lag.into());
    }
    engine.execute(ddl, &mut settings).await?;
    let fail = |error: &dyn std::fmt::Display| EngineError::internal(format!("shed bench websocket: {error}"));
    let (mut socket, released) =
        crate::bench::submit_on_websocket(&server.address, sql, &settings).await.map_err(|error| fail(&error))?;
    let mut windows = BTreeMap::new();
    let number = |value: &Value| value.as_f64().unwrap_or(0.0);
    // The query's figures, kept from its start (it is gone once it ended).
    let mut metrics = None;
    while let Some(message) = socket.next().await {
        let tokio_tungstenite::tungstenite::Message::Text(text) = message.map_err(|error| fail(&error))? else {
            continue;
        };
        let arrived = released.elapsed().as_secs_f64() * 1000.0;
        let frame: Value = serde_json::from_str(&text).map_err(|error| fail(&error))?;
        match frame["type"].as_str() {
            Some("schema") => {
                metrics = frame["query_id"]
                    .as_str()
                    .and_then(|id| engine.query(id))
                    .map(|running| running.handle.metrics.clone());
            }
            Some("rows") => {
                for row in frame["rows"].as_array().into_iter().flatten() {
                    let time =
                        |column: &str| row[column].as_str().and_then(|text| string_to_timestamp_nanos(text).ok());
                    let (Some(start), Some(end)) = (time("window_start"), time("window_end")) else { continue };
                    let due_ms = ((end - START) as f64 / 1e6) + DELAY_SECONDS * 1000.0;
                    let window = Window {
                        hits: number(&row["hits"]),
                        total: number(&row["total"]),
                        hits_error: number(&row["hits_error"]),
                        total_error: number(&row["total_error"]),
                        rate: row["sample_rate"].as_f64().unwrap_or(1.0),
                        latency_ms: (arrived - due_ms).max(0.0),
                    };
                    windows.insert((start, row["ip"].as_str().unwrap_or_default().to_string()), window);
                }
            }
            Some("end") => break,
            Some("error") => return Err(fail(&frame)),
            _ => {}
        }
    }
    let seconds = released.elapsed().as_secs_f64();
    let counter = |pick: fn(&sluice_runtime::QueryMetrics) -> &std::sync::atomic::AtomicU64| {
        metrics.as_ref().map_or(0, |metrics| sluice_runtime::QueryMetrics::get(pick(metrics)))
    };
    let mut latencies: Vec<f64> = windows.values().map(|window| window.latency_ms).collect();
    latencies.sort_by(f64::total_cmp);
    let at = |quantile: f64| latencies.get(((latencies.len().max(1) - 1) as f64 * quantile) as usize).copied();
    let mut curve: BTreeMap<i64, f64> = BTreeMap::new();
    for ((start, _), window) in &windows {
        let bucket = (start - START) / 5_000_000_000;
        let worst = curve.entry(bucket).or_default();
        *worst = worst.max(window.latency_ms);
    }
    let run = Run {
        max_lag: max_lag.map(str::to_string),
        windows: windows.len(),
        p50_ms: at(0.5).unwrap_or(0.0),
        p99_ms: at(0.99).unwrap_or(0.0),
        max_ms: at(1.0).unwrap_or(0.0),
        seconds,
        rows_in: counter(|metrics| &metrics.rows_in),
        rows_shed: counter(|metrics| &metrics.rows_shed),
        late_rows: counter(|metrics| &metrics.late_rows_dropped),
        lag_curve: curve.into_iter().map(|(bucket, worst)| (bucket as f64 * 5.0, worst)).collect(),
    };
    Ok((run, windows))
}
