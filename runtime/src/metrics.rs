//! Counters every running query exposes (HTTP status, Prometheus).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::message::Watermark;

/// Lock-free counters, updated by the driver and the source tasks and read
/// by the HTTP handlers at any time.
#[derive(Debug)]
pub struct QueryMetrics {
    pub rows_in: AtomicU64,
    pub rows_out: AtomicU64,
    pub epochs: AtomicU64,
    pub late_rows_dropped: AtomicU64,
    pub malformed_records: AtomicU64,
    /// Rows held in operator state (join sides, pending rows), a gauge.
    pub state_rows: AtomicU64,
    /// Rows a shedding query dropped (see [`crate::shed`]).
    pub rows_shed: AtomicU64,
    /// A shedding query's current rate (f64 bits); 0: it does not shed.
    shed_rate: AtomicU64,
    /// The lag it last measured, microseconds.
    input_lag_us: AtomicU64,
    watermark: AtomicI64,
    /// The most recent malformed record's problem, for the user to see.
    last_malformed: Mutex<Option<String>>,
    /// Late rows per window start (or pane start, for HOP and CUMULATE)
    /// they would have joined; the most recent [`LATE_WINDOWS_KEPT`].
    late_by_window: Mutex<BTreeMap<i64, u64>>,
    /// The last checkpoint written, and what recovery did.
    checkpoints: Mutex<CheckpointReport>,
    /// How long results took: see [`QueryMetrics::record_latency`].
    latency: Mutex<LatencyHistogram>,
    /// Per plan node, by node id: see [`OperatorMetrics`].
    operators: Mutex<Vec<Arc<OperatorMetrics>>>,
    /// When someone last looked at the operators (EXPLAIN ANALYZE, the
    /// plan endpoint, /metrics): state sizes are refreshed only while
    /// someone does.
    observed_at: Mutex<Option<Instant>>,
    /// Counts the pipeline's refreshes of the state figures.
    state_refreshes: AtomicU64,
    /// Wakes a quiet query's driver to refresh them.
    state_wanted: tokio::sync::Notify,
}

/// One plan node's figures, updated by the pipeline as messages pass and
/// read at any time. Counts and time are exact; state sizes are refreshed
/// about once a second while someone watches (see
/// [`QueryMetrics::observe`]).
#[derive(Debug)]
pub struct OperatorMetrics {
    /// The operator's kind (`window_aggregate`, ...), or `source: name`.
    pub name: String,
    pub rows_in: AtomicU64,
    pub batches_in: AtomicU64,
    pub rows_out: AtomicU64,
    pub batches_out: AtomicU64,
    /// Time spent in the operator, nanoseconds.
    pub busy_ns: AtomicU64,
    watermark_in: AtomicI64,
    watermark_out: AtomicI64,
    has_state: AtomicBool,
    state_rows: AtomicU64,
    state_bytes: AtomicU64,
    /// The end of the oldest window still waiting for the watermark.
    oldest_open_window: AtomicI64,
    /// Per input port: its watermark and whether it is active, idle or ended.
    inputs: Mutex<Vec<(i64, &'static str)>>,
}

/// A copy of [`OperatorMetrics`] at one moment.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OperatorReport {
    pub node: usize,
    pub name: String,
    pub rows_in: u64,
    pub batches_in: u64,
    pub rows_out: u64,
    pub batches_out: u64,
    pub busy_ms: f64,
    /// `None` until a watermark arrived.
    pub watermark_in: Option<i64>,
    pub watermark_out: Option<i64>,
    /// `None` for operators that hold no state.
    pub state_rows: Option<u64>,
    pub state_bytes: Option<u64>,
    pub oldest_open_window_end: Option<i64>,
    /// Per input port: watermark (`None` before the first) and state.
    pub inputs: Vec<(Option<i64>, &'static str)>,
}

/// What an operator holds: rows (keys, buffered rows, windows' groups) and
/// an estimate of the bytes they take.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateSize {
    pub rows: u64,
    pub bytes: u64,
}

impl OperatorMetrics {
    pub fn new(name: String) -> Self {
        Self {
            name,
            rows_in: AtomicU64::new(0),
            batches_in: AtomicU64::new(0),
            rows_out: AtomicU64::new(0),
            batches_out: AtomicU64::new(0),
            busy_ns: AtomicU64::new(0),
            watermark_in: AtomicI64::new(i64::MIN),
            watermark_out: AtomicI64::new(i64::MIN),
            has_state: AtomicBool::new(false),
            state_rows: AtomicU64::new(0),
            state_bytes: AtomicU64::new(0),
            oldest_open_window: AtomicI64::new(i64::MIN),
            inputs: Mutex::new(Vec::new()),
        }
    }

    pub fn batch_in(&self, rows: usize) {
        self.rows_in.fetch_add(rows as u64, Ordering::Relaxed);
        self.batches_in.fetch_add(1, Ordering::Relaxed);
    }

    pub fn batch_out(&self, rows: usize) {
        self.rows_out.fetch_add(rows as u64, Ordering::Relaxed);
        self.batches_out.fetch_add(1, Ordering::Relaxed);
    }

    pub fn busy(&self, since: Instant) {
        self.busy_ns.fetch_add(since.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }

    pub fn set_watermark_in(&self, watermark: Watermark) {
        self.watermark_in.store(watermark.0, Ordering::Relaxed);
    }

    pub fn set_watermark_out(&self, watermark: Watermark) {
        self.watermark_out.store(watermark.0, Ordering::Relaxed);
    }

    /// What the operator holds now, and the inputs as its node sees them.
    pub fn set_state(
        &self,
        size: Option<StateSize>,
        oldest_open_window: Option<i64>,
        inputs: Vec<(i64, &'static str)>,
    ) {
        self.has_state.store(size.is_some(), Ordering::Relaxed);
        let size = size.unwrap_or_default();
        self.state_rows.store(size.rows, Ordering::Relaxed);
        self.state_bytes.store(size.bytes, Ordering::Relaxed);
        self.oldest_open_window.store(oldest_open_window.unwrap_or(i64::MIN), Ordering::Relaxed);
        if let Ok(mut kept) = self.inputs.lock() {
            *kept = inputs;
        }
    }

    pub fn report(&self, node: usize) -> OperatorReport {
        let watermark = |value: &AtomicI64| Some(value.load(Ordering::Relaxed)).filter(|value| *value != i64::MIN);
        let has_state = self.has_state.load(Ordering::Relaxed);
        OperatorReport {
            node,
            name: self.name.clone(),
            rows_in: self.rows_in.load(Ordering::Relaxed),
            batches_in: self.batches_in.load(Ordering::Relaxed),
            rows_out: self.rows_out.load(Ordering::Relaxed),
            batches_out: self.batches_out.load(Ordering::Relaxed),
            busy_ms: self.busy_ns.load(Ordering::Relaxed) as f64 / 1e6,
            watermark_in: watermark(&self.watermark_in),
            watermark_out: watermark(&self.watermark_out),
            state_rows: has_state.then(|| self.state_rows.load(Ordering::Relaxed)),
            state_bytes: has_state.then(|| self.state_bytes.load(Ordering::Relaxed)),
            oldest_open_window_end: watermark(&self.oldest_open_window),
            inputs: self
                .inputs
                .lock()
                .map(|inputs| {
                    inputs
                        .iter()
                        .map(|(watermark, state)| (Some(*watermark).filter(|w| *w != i64::MIN), *state))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// Where a recovery's time went: reading the checkpoint's files (and
/// checking their checksums), decoding them, and restoring the operators.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct RecoveryTimes {
    pub bytes: u64,
    pub read_ms: f64,
    pub decode_ms: f64,
    pub restore_ms: f64,
}

/// What `GET /v1/queries/{id}` shows about checkpoints.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CheckpointReport {
    /// Id of the last checkpoint written.
    pub last_id: Option<u64>,
    /// When it was taken, milliseconds since the Unix epoch.
    pub last_taken_at_ms: Option<u64>,
    pub last_bytes: Option<u64>,
    /// Bytes of unchanged state it pointed at in earlier checkpoints
    /// instead of writing them (incremental checkpoints).
    pub last_reused_bytes: Option<u64>,
    /// How long its writer took (encoding, writing, syncing), while the
    /// query went on.
    pub last_duration_ms: Option<f64>,
    /// How long the query stopped for the last checkpoint: the snapshot of
    /// its operators and output.
    pub last_pause_ms: Option<f64>,
    /// The pauses of the most recent checkpoints (up to 100), oldest first.
    pub recent_pauses_ms: Vec<f64>,
    /// The checkpoint this run started from, if it recovered.
    pub restored_from: Option<u64>,
    /// Steps of the input log replayed after it.
    pub replayed_steps: u64,
    /// How the recovery's time went, if it recovered.
    pub recovery: Option<RecoveryTimes>,
    /// Damaged checkpoints skipped on recovery, and the like.
    pub warnings: Vec<String>,
}

/// Windows whose late-row counts are kept.
pub const LATE_WINDOWS_KEPT: usize = 1000;

impl Default for QueryMetrics {
    fn default() -> Self {
        Self {
            rows_in: AtomicU64::new(0),
            rows_out: AtomicU64::new(0),
            epochs: AtomicU64::new(0),
            late_rows_dropped: AtomicU64::new(0),
            malformed_records: AtomicU64::new(0),
            state_rows: AtomicU64::new(0),
            rows_shed: AtomicU64::new(0),
            shed_rate: AtomicU64::new(0),
            input_lag_us: AtomicU64::new(0),
            watermark: AtomicI64::new(i64::MIN),
            last_malformed: Mutex::new(None),
            late_by_window: Mutex::new(BTreeMap::new()),
            checkpoints: Mutex::new(CheckpointReport::default()),
            latency: Mutex::new(LatencyHistogram::default()),
            operators: Mutex::new(Vec::new()),
            observed_at: Mutex::new(None),
            state_refreshes: AtomicU64::new(0),
            state_wanted: tokio::sync::Notify::new(),
        }
    }
}

/// How long after someone last looked state sizes are still refreshed.
pub const OBSERVED_FOR: std::time::Duration = std::time::Duration::from_secs(30);

impl QueryMetrics {
    /// A shedding query's current rate and the lag it measured.
    pub fn set_shedding(&self, rate: f64, lag: std::time::Duration) {
        self.shed_rate.store(rate.to_bits(), Ordering::Relaxed);
        self.input_lag_us.store(lag.as_micros().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    /// The share of its input a shedding query keeps now (`None`: it does
    /// not shed), and its lag behind the input in milliseconds.
    pub fn shedding(&self) -> Option<(f64, f64)> {
        let bits = self.shed_rate.load(Ordering::Relaxed);
        (bits != 0).then(|| (f64::from_bits(bits), self.input_lag_us.load(Ordering::Relaxed) as f64 / 1000.0))
    }

    /// The pipeline's nodes, by node id.
    pub fn set_operators(&self, operators: Vec<Arc<OperatorMetrics>>) {
        if let Ok(mut kept) = self.operators.lock() {
            *kept = operators;
        }
    }

    /// Every node's figures, by node id; counts someone as watching (so
    /// state sizes are kept fresh for the next look).
    pub fn operators(&self) -> Vec<OperatorReport> {
        self.observe();
        self.operators
            .lock()
            .map(|operators| operators.iter().enumerate().map(|(node, metrics)| metrics.report(node)).collect())
            .unwrap_or_default()
    }

    /// Counts someone as watching the operators.
    pub fn observe(&self) {
        if let Ok(mut observed) = self.observed_at.lock() {
            *observed = Some(Instant::now());
        }
    }

    /// Asks the driver for fresh state figures (see
    /// [`QueryMetrics::state_wanted`]).
    pub fn want_state(&self) {
        self.state_wanted.notify_one();
    }

    /// Completes when someone asked for fresh state figures.
    pub async fn state_wanted(&self) {
        self.state_wanted.notified().await;
    }

    /// How many times the state figures were refreshed.
    pub fn state_refreshes(&self) -> u64 {
        self.state_refreshes.load(Ordering::Relaxed)
    }

    pub fn state_refreshed(&self) {
        self.state_refreshes.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether someone looked at the operators in the last [`OBSERVED_FOR`].
    pub fn observed(&self) -> bool {
        self.observed_at.lock().ok().and_then(|at| *at).is_some_and(|at| at.elapsed() < OBSERVED_FOR)
    }

    pub fn checkpoints(&self) -> CheckpointReport {
        self.checkpoints.lock().map(|report| report.clone()).unwrap_or_default()
    }

    pub fn update_checkpoints(&self, update: impl FnOnce(&mut CheckpointReport)) {
        if let Ok(mut report) = self.checkpoints.lock() {
            update(&mut report);
        }
    }

    pub fn add(counter: &AtomicU64, amount: u64) {
        counter.fetch_add(amount, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Moves the state gauge from `old` to `new` rows (one operator's share).
    pub fn move_state_rows(&self, old: usize, new: usize) {
        if new >= old {
            self.state_rows.fetch_add((new - old) as u64, Ordering::Relaxed);
        } else {
            self.state_rows.fetch_sub((old - new) as u64, Ordering::Relaxed);
        }
    }

    pub fn watermark(&self) -> Watermark {
        Watermark(self.watermark.load(Ordering::Relaxed))
    }

    pub fn set_watermark(&self, watermark: Watermark) {
        self.watermark.store(watermark.0, Ordering::Relaxed);
    }

    pub fn record_malformed(&self, count: u64, problem: Option<String>) {
        if count == 0 {
            return;
        }
        Self::add(&self.malformed_records, count);
        if let (Some(problem), Ok(mut last)) = (problem, self.last_malformed.lock()) {
            *last = Some(problem);
        }
    }

    pub fn record_late_window(&self, window_start: i64, rows: u64) {
        if let Ok(mut windows) = self.late_by_window.lock() {
            *windows.entry(window_start).or_default() += rows;
            while windows.len() > LATE_WINDOWS_KEPT {
                windows.pop_first();
            }
        }
    }

    /// `(window start, late rows)`, oldest first.
    pub fn late_by_window(&self) -> Vec<(i64, u64)> {
        self.late_by_window
            .lock()
            .map(|windows| windows.iter().map(|(start, rows)| (*start, *rows)).collect())
            .unwrap_or_default()
    }

    pub fn last_malformed(&self) -> Option<String> {
        self.last_malformed.lock().ok().and_then(|last| last.clone())
    }

    /// Records that `rows` result rows were published `latency` after the
    /// oldest source rows of the epoch that produced them were handed to
    /// the query: an upper bound on each row's delay from its input's
    /// arrival (for a window, from the arrival of the rows that closed it).
    pub fn record_latency(&self, latency: std::time::Duration, rows: u64) {
        if let Ok(mut histogram) = self.latency.lock() {
            histogram.record(latency, rows);
        }
    }

    /// The `quantile` (0..=1) of the recorded latencies in milliseconds,
    /// per result row; `None` before any result.
    pub fn latency_ms(&self, quantile: f64) -> Option<f64> {
        self.latency.lock().ok().and_then(|histogram| histogram.quantile_ms(quantile))
    }
}

/// Latencies in buckets growing by 5 % from 1 µs (to about 11 minutes):
/// quantiles within 5 %, in fixed memory.
#[derive(Debug, Clone)]
struct LatencyHistogram {
    counts: Vec<u64>,
    total: u64,
}

const LATENCY_GROWTH: f64 = 1.05;
const LATENCY_BUCKETS: usize = 560;

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self { counts: vec![0; LATENCY_BUCKETS], total: 0 }
    }
}

impl LatencyHistogram {
    fn record(&mut self, latency: std::time::Duration, count: u64) {
        let micros = latency.as_secs_f64() * 1e6;
        let bucket = if micros <= 1.0 { 0 } else { (micros.ln() / LATENCY_GROWTH.ln()).ceil() as usize };
        self.counts[bucket.min(LATENCY_BUCKETS - 1)] += count;
        self.total += count;
    }

    /// The upper bound of the bucket holding the `quantile`, in ms.
    fn quantile_ms(&self, quantile: f64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((self.total as f64 * quantile.clamp(0.0, 1.0)).ceil() as u64).max(1);
        let mut seen = 0;
        let bucket = self.counts.iter().position(|count| {
            seen += count;
            seen >= rank
        })?;
        Some(LATENCY_GROWTH.powi(bucket as i32) / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn latency_quantiles_are_within_five_percent() {
        let metrics = QueryMetrics::default();
        assert_eq!(metrics.latency_ms(0.5), None);
        metrics.record_latency(Duration::from_millis(10), 98);
        metrics.record_latency(Duration::from_millis(200), 1);
        metrics.record_latency(Duration::from_secs(2), 1);
        let p50 = metrics.latency_ms(0.5).unwrap();
        assert!((10.0..10.5).contains(&p50), "{p50}");
        let p99 = metrics.latency_ms(0.99).unwrap();
        assert!((200.0..210.0).contains(&p99), "{p99}");
        let max = metrics.latency_ms(1.0).unwrap();
        assert!((2000.0..2100.0).contains(&max), "{max}");
        metrics.record_latency(Duration::from_secs(100_000), 1);
        assert!(metrics.latency_ms(1.0).unwrap() > 600_000.0);
    }
}
