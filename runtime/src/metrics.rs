//! Counters every running query exposes (HTTP status, Prometheus).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

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
    watermark: AtomicI64,
    /// The most recent malformed record's problem, for the user to see.
    last_malformed: Mutex<Option<String>>,
    /// Late rows per window start (or pane start, for HOP and CUMULATE)
    /// they would have joined; the most recent [`LATE_WINDOWS_KEPT`].
    late_by_window: Mutex<BTreeMap<i64, u64>>,
    /// The last checkpoint written, and what recovery did.
    checkpoints: Mutex<CheckpointReport>,
}

/// What `GET /v1/queries/{id}` shows about checkpoints.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CheckpointReport {
    /// Id of the last checkpoint written.
    pub last_id: Option<u64>,
    /// When it was taken, milliseconds since the Unix epoch.
    pub last_taken_at_ms: Option<u64>,
    pub last_bytes: Option<u64>,
    pub last_duration_ms: Option<f64>,
    /// The checkpoint this run started from, if it recovered.
    pub restored_from: Option<u64>,
    /// Steps of the input log replayed after it.
    pub replayed_steps: u64,
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
            watermark: AtomicI64::new(i64::MIN),
            last_malformed: Mutex::new(None),
            late_by_window: Mutex::new(BTreeMap::new()),
            checkpoints: Mutex::new(CheckpointReport::default()),
        }
    }
}

impl QueryMetrics {
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
}
