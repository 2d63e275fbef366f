//! Load shedding (`SET max_lag`): a query that falls behind its input
//! samples that input at a rate it adapts, and says the rate with its
//! results.
//!
//! # Algorithm
//!
//! ```text
//!   driver, every epoch:  lag = now − when the oldest rows it took were due
//!                         controller: lag → rate (shared with the sources)
//!   source, every chunk:  rate = the logged one (replay) or the shared one
//!                         keep row i  ⇔  hash(identity of i) < rate · 2⁶⁴
//!   driver:               logs the chunk's rate with its step; appends the
//!                         column `sample_rate` (the row's inclusion
//!                         probability) for the estimates
//! ```
//!
//! A row's identity is its record number for generators (so a shed row is
//! never generated) and its chunk's end position and offset in the chunk
//! for decoded sources (a replay cuts the very same chunks). With the rate
//! each chunk was taken at in the input log, a recovered query sheds
//! exactly the rows it shed before the crash.
//!
//! The controller is multiplicative, like TCP's. The lag it steers is
//! what exceeds the epoch interval (rows wait up to an epoch by design).
//! Above half the bound the rate drops in proportion to how far the lag
//! is over (at most to a quarter per step), unless the lag is already
//! falling fast (the backlog draining: dropping further would overshoot);
//! below a quarter of the bound it grows by a quarter per step, back to 1
//! (full input) once the query has caught up. It steps at most every
//! [`CONTROL_EVERY`] (an epoch interval of 0 runs an epoch per chunk).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The column a shed scan appends: each row's probability of having been
/// kept (the sampling rate it was taken at, times a TABLESAMPLE's).
pub const RATE_COLUMN: &str = "sample_rate";

/// The least share of the input a shedding query keeps.
pub const MIN_RATE: f64 = 0.001;

/// The controller steps at most this often.
pub const CONTROL_EVERY: Duration = Duration::from_millis(50);

/// The current rate, set by the driver, read by the sources.
#[derive(Debug)]
pub struct ShedRate(AtomicU64);

impl Default for ShedRate {
    fn default() -> Self {
        Self(AtomicU64::new(1f64.to_bits()))
    }
}

impl ShedRate {
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }

    pub fn set(&self, rate: f64) {
        self.0.store(rate.to_bits(), Ordering::Relaxed);
    }
}

/// Whether the row of `identity` is kept at `rate`: a fixed hash of the
/// identity, under a salt of its own (so it does not line up with
/// TABLESAMPLE's hash of row numbers).
pub fn keep(identity: u64, rate: f64) -> bool {
    rate >= 1.0 || mix(identity ^ 0xc3a5_c85c_97cb_3127) < (rate * u64::MAX as f64) as u64
}

/// The identity of row `offset` of a decoded chunk ending at `position`.
pub fn chunk_row(position: u64, offset: usize) -> u64 {
    mix(position).wrapping_add(offset as u64)
}

/// SplitMix64's finaliser.
fn mix(mut value: u64) -> u64 {
    value = value.wrapping_add(0x9e37_79b9_7f4a_7c15);
    value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    value ^ (value >> 31)
}

/// Turns the lag a query sees into the rate it keeps.
#[derive(Debug, Clone)]
pub struct Controller {
    max_lag: Duration,
    rate: f64,
    /// Lag that is by design: the epoch interval.
    expected: Duration,
    /// The largest lag seen since the last step.
    worst: Duration,
    /// The lag the last step saw, seconds over `expected`.
    previous: f64,
    last_step: Option<Instant>,
}

impl Controller {
    /// Keeps the lag within `max_lag` of `expected` (the epoch interval).
    pub fn new(max_lag: Duration, expected: Duration) -> Self {
        Self { max_lag, rate: 1.0, expected, worst: Duration::ZERO, previous: 0.0, last_step: None }
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Notes the lag of rows just taken.
    pub fn observe(&mut self, lag: Duration) {
        self.worst = self.worst.max(lag);
    }

    /// Steps the rate if [`CONTROL_EVERY`] has passed since the last step;
    /// the new rate if it changed.
    pub fn step(&mut self, now: Instant) -> Option<f64> {
        if self.last_step.is_some_and(|last| now.duration_since(last) < CONTROL_EVERY) {
            return None;
        }
        self.last_step = Some(now);
        let lag = std::mem::take(&mut self.worst).saturating_sub(self.expected).as_secs_f64();
        let draining = lag < 0.8 * self.previous;
        self.previous = lag;
        let bound = self.max_lag.saturating_sub(self.expected).as_secs_f64().max(1e-3);
        let before = self.rate;
        if lag > bound / 2.0 {
            if !draining {
                self.rate = (self.rate * (bound / 2.0 / lag).clamp(0.25, 0.9)).max(MIN_RATE);
            }
        } else if lag < bound / 4.0 {
            self.rate = (self.rate * 1.25).min(1.0);
        }
        (self.rate != before).then_some(self.rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_about_the_rate_and_always_the_same_rows() {
        let kept = (0..100_000u64).filter(|row| keep(*row, 0.1)).count();
        assert!((9_500..10_500).contains(&kept), "{kept}");
        let again = (0..100_000u64).filter(|row| keep(*row, 0.1)).count();
        assert_eq!(kept, again);
        assert!((0..1000u64).all(|row| keep(row, 1.0)));
        // A lower rate keeps a subset of a higher one's rows.
        assert!((0..10_000u64).filter(|row| keep(*row, 0.05)).all(|row| keep(row, 0.1)));
    }

    #[test]
    fn the_rate_falls_with_lag_and_recovers_when_caught_up() {
        let bound = Duration::from_millis(500);
        let epoch = Duration::from_millis(100);
        let mut controller = Controller::new(bound + epoch, epoch);
        let start = Instant::now();
        let at = |step: u64| start + CONTROL_EVERY * step as u32;
        // Ten times the bound: a quarter per step.
        controller.observe(Duration::from_secs(5) + epoch);
        assert_eq!(controller.step(at(0)), Some(0.25));
        // Too soon: no step.
        controller.observe(Duration::from_secs(5) + epoch);
        assert_eq!(controller.step(start + Duration::from_millis(10)), None);
        assert_eq!(controller.step(at(1)), Some(0.0625));
        // Still over, but falling fast (the backlog draining): kept.
        controller.observe(Duration::from_secs(2) + epoch);
        assert_eq!(controller.step(at(2)), None);
        // Between a quarter and half the bound: kept.
        controller.observe(Duration::from_millis(200) + epoch);
        assert_eq!(controller.step(at(3)), None);
        // An epoch's wait is no lag.
        controller.observe(epoch);
        // Caught up: back to 1 in steps of a quarter.
        let mut steps = 0;
        while controller.rate() < 1.0 {
            steps += 1;
            controller.step(at(3 + steps));
        }
        assert_eq!(steps, 13);
        // Never below the floor.
        for step in 0..100 {
            controller.observe(Duration::from_secs(60));
            controller.step(at(100 + step));
        }
        assert_eq!(controller.rate(), MIN_RATE);
    }
}
