//! The one message enum that flows between operators.

use datafusion::arrow::array::RecordBatch;

pub use crate::time::EventTime;
pub use crate::watermark::Watermark;

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
