//! The watermark: how far event time has progressed, and which rows are
//! late.
//!
//! A [`Watermark`] is the promise that no more rows with an event time
//! below it will arrive; operators close windows, purge join state and
//! emit final results when it passes.
//!
//! - **Source watermarks.** Each source with an event-time column has a
//!   [`WatermarkTracker`] (kept by the driver): its watermark is
//!   `max(event time seen) - delay`, the delay being the `WATERMARK FOR ...
//!   AS ... - INTERVAL` the stream was declared with.
//! - **The minimum over inputs.** An operator with several inputs (joins,
//!   union) may only advance to the smallest of its inputs' watermarks:
//!   the pipeline ([`crate::pipeline`]) combines them per node, and an
//!   input that ended counts as `+∞` ([`Watermark::MAX`]), so a bounded
//!   input's end closes every window.
//! - **Idleness.** A source that sends nothing for `idle_timeout` is
//!   marked idle by the driver (`Message::Idle`, logged so a replay
//!   sees it at the same point): the minimum leaves it out until it
//!   sends again, so one silent input does not hold every window open.
//!   When every input still running is idle, the watermark holds.
//! - **Lateness.** A row is *late* when its event time is below the
//!   source's watermark in force just before it arrived (see below); late
//!   rows are dropped and counted (`late_rows_dropped`). `allowed_lateness`
//!   lets rows in up to that far below the watermark, to update windows
//!   that already fired.
//!
//! All arithmetic here saturates: a delay larger than the event time, or
//! an allowed lateness near `i64::MAX`, gives `i64::MIN`/`i64::MAX`, never
//! a wrapped value.
//!
//! # Algorithm
//!
//! A source's watermark is `max(event time seen) - delay`. Rows are examined
//! in arrival order, and a row is *late* when its event time is below the
//! watermark in force just before it arrived:
//!
//! ```text
//!   rows:       t=10  t=12  t=7   t=15  t=11      (delay 2)
//!   watermark:  MIN   8     10    10    13
//!   late?       no    no    yes   no    yes
//! ```
//!
//! Because the decision depends only on the order of rows, never on where
//! epoch or batch boundaries fall, every query result built on it is the
//! same whatever the epoch interval.

use datafusion::arrow::array::BooleanArray;

use crate::time::EventTime;

/// A watermark: the promise that no more rows with an event time below it
/// will arrive. Windows whose end is at or below it can be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Watermark(pub EventTime);

impl Watermark {
    /// Before any row has been seen.
    pub const MIN: Watermark = Watermark(i64::MIN);
    /// After the end of a bounded input: every window can close.
    pub const MAX: Watermark = Watermark(i64::MAX);
}

/// Tracks one source's watermark.
#[derive(Debug, Clone)]
pub struct WatermarkTracker {
    delay: i64,
    /// Rows this far below the watermark are still let in (to update
    /// windows that already fired); only rows below that are late.
    allowed_lateness: i64,
    max_event_time: Option<EventTime>,
}

/// Which rows of a batch to keep, and why the others were dropped.
#[derive(Debug)]
pub struct LatenessVerdict {
    /// `true` for rows that are on time and carry an event time.
    pub keep: BooleanArray,
    /// `true` for the late rows.
    pub late: BooleanArray,
    pub late_rows: usize,
    pub rows_without_event_time: usize,
}

impl WatermarkTracker {
    /// `delay` in nanoseconds: how far behind the largest event time seen the
    /// watermark trails, to let out-of-order rows in.
    pub fn new(delay: i64) -> Self {
        Self { delay, allowed_lateness: 0, max_event_time: None }
    }

    /// Lets in rows up to `allowed_lateness` (nanoseconds) below the watermark.
    pub fn with_allowed_lateness(mut self, allowed_lateness: i64) -> Self {
        self.allowed_lateness = allowed_lateness.max(0);
        self
    }

    pub fn watermark(&self) -> Watermark {
        match self.max_event_time {
            Some(max) => Watermark(max.saturating_sub(self.delay)),
            None => Watermark::MIN,
        }
    }

    pub fn delay(&self) -> i64 {
        self.delay
    }

    /// The largest event time seen so far (for checkpoints).
    pub fn max_event_time(&self) -> Option<EventTime> {
        self.max_event_time
    }

    pub fn restore(&mut self, max_event_time: Option<EventTime>) {
        self.max_event_time = max_event_time;
    }

    /// Decides lateness row by row and advances the watermark over `times`
    /// (nanoseconds since the epoch; null means the row has no event time).
    pub fn observe(&mut self, times: &[Option<EventTime>]) -> LatenessVerdict {
        let mut late_rows = 0;
        let mut rows_without_event_time = 0;
        let mut late = Vec::with_capacity(times.len());
        let keep = times
            .iter()
            .map(|time| match time {
                None => {
                    rows_without_event_time += 1;
                    late.push(false);
                    false
                }
                Some(time) if Watermark(time.saturating_add(self.allowed_lateness)) < self.watermark() => {
                    late_rows += 1;
                    late.push(true);
                    false
                }
                Some(time) => {
                    late.push(false);
                    self.max_event_time = Some(self.max_event_time.map_or(*time, |max| max.max(*time)));
                    true
                }
            })
            .collect::<Vec<_>>();
        LatenessVerdict {
            keep: BooleanArray::from(keep),
            late: BooleanArray::from(late),
            late_rows,
            rows_without_event_time,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lateness_is_decided_row_by_row() {
        let mut tracker = WatermarkTracker::new(2);
        let verdict = tracker.observe(&[Some(10), Some(12), Some(7), Some(15), Some(11), None]);
        let kept: Vec<bool> = verdict.keep.iter().map(|keep| keep.unwrap()).collect();
        assert_eq!(kept, vec![true, true, false, true, false, false]);
        assert_eq!(verdict.late_rows, 2);
        assert_eq!(verdict.rows_without_event_time, 1);
        assert_eq!(tracker.watermark(), Watermark(13));
    }

    #[test]
    fn batch_boundaries_do_not_change_the_verdict() {
        let times: Vec<Option<i64>> = [5, 9, 3, 8, 14, 10, 12, 1, 20, 17].map(Some).to_vec();
        let mut whole = WatermarkTracker::new(3);
        let expected: Vec<bool> = whole.observe(&times).keep.iter().flatten().collect();
        for split in 1..times.len() {
            let mut tracker = WatermarkTracker::new(3);
            let mut kept: Vec<bool> = tracker.observe(&times[..split]).keep.iter().flatten().collect();
            kept.extend(tracker.observe(&times[split..]).keep.iter().flatten());
            assert_eq!(kept, expected, "split at {split}");
            assert_eq!(tracker.watermark(), whole.watermark());
        }
    }

    #[test]
    fn allowed_lateness_lets_rows_in_below_the_watermark() {
        let mut tracker = WatermarkTracker::new(2).with_allowed_lateness(3);
        let verdict = tracker.observe(&[Some(20), Some(16), Some(15), Some(14)]);
        let kept: Vec<bool> = verdict.keep.iter().flatten().collect();
        assert_eq!(kept, vec![true, true, true, false]);
        assert_eq!(tracker.watermark(), Watermark(18));
    }

    #[test]
    fn watermark_starts_at_min() {
        let tracker = WatermarkTracker::new(1_000);
        assert_eq!(tracker.watermark(), Watermark::MIN);
    }

    #[test]
    fn a_delay_larger_than_the_event_time_saturates() {
        let mut tracker = WatermarkTracker::new(i64::MAX).with_allowed_lateness(i64::MAX);
        let verdict = tracker.observe(&[Some(i64::MIN + 1), Some(-5), Some(i64::MAX), Some(i64::MIN)]);
        // Only i64::MIN is more than i64::MAX below the watermark (0).
        assert_eq!(verdict.late_rows, 1);
        assert_eq!(tracker.watermark(), Watermark(0));
        let mut tracker = WatermarkTracker::new(10);
        tracker.observe(&[Some(i64::MIN + 3)]);
        assert_eq!(tracker.watermark(), Watermark::MIN);
    }
}
