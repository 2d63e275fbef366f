//! The one message enum that flows between operators.

use std::time::Duration;

use datafusion::arrow::array::RecordBatch;

/// Event time in nanoseconds since the Unix epoch (UTC).
pub type EventTime = i64;

/// A span of event time in nanoseconds for a duration a user gave (allowed
/// lateness, ...): saturates at `i64::MAX` (about 292 years, "forever" for
/// event time) instead of wrapping to a negative span as `as i64` would.
pub fn duration_nanos(duration: Duration) -> i64 {
    i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX)
}

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

/// What a row of an updating result does to the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Insert,
    Delete,
}

impl Op {
    pub fn symbol(self) -> &'static str {
        match self {
            Op::Insert => "+",
            Op::Delete => "-",
        }
    }
}

/// Rows flowing between operators: an Arrow batch plus, for updating
/// results, the op of each row. `ops == None` means every row is an insert,
/// which is the case for append-only streams and window results emitted once.
#[derive(Debug, Clone)]
pub struct StreamBatch {
    pub rows: RecordBatch,
    pub ops: Option<Vec<Op>>,
}

impl StreamBatch {
    pub fn inserts(rows: RecordBatch) -> Self {
        Self { rows, ops: None }
    }

    pub fn num_rows(&self) -> usize {
        self.rows.num_rows()
    }

    /// Rows `offset..offset + length`, with their ops.
    pub fn slice(&self, offset: usize, length: usize) -> Self {
        Self {
            rows: self.rows.slice(offset, length),
            ops: self.ops.as_ref().map(|ops| ops[offset..offset + length].to_vec()),
        }
    }
}

/// What flows along each edge of a running pipeline.
#[derive(Debug, Clone)]
pub enum Message {
    /// Rows.
    Batch(StreamBatch),
    /// Event time has advanced on this edge.
    Watermark(Watermark),
    /// This edge's input has been idle for the idle timeout: leave it out
    /// of the minimum watermark until it sends rows or a watermark again.
    Idle,
    /// Checkpoint barrier `id`, pushed by the driver into every source that
    /// has not ended: a node's state is taken once it has the barrier from
    /// every input that has not ended, so the checkpoint holds the effect of
    /// every message before the barrier and of none after it (see
    /// [`crate::pipeline`]).
    Barrier(u64),
    /// The input is exhausted; nothing follows.
    End,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_duration_saturates_instead_of_wrapping_negative() {
        assert_eq!(duration_nanos(Duration::from_secs(5)), 5_000_000_000);
        // 300 years: more nanoseconds than an i64 holds.
        let centuries = Duration::from_secs(300 * 365 * 86_400);
        assert_eq!(duration_nanos(centuries), i64::MAX);
        assert_eq!(duration_nanos(Duration::MAX), i64::MAX);
    }
}
