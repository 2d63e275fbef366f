//! The [`Operator`] trait: what the pipeline calls on a running operator.
//!
//! What an operator *is* lives apart: its immutable spec (one per operator
//! file, listed by [`OperatorSpec`](crate::operators::OperatorSpec) in
//! [`operators`](crate::operators)) is what the planner produces, and
//! [`OperatorSpec::instantiate`](crate::operators::OperatorSpec::instantiate)
//! creates the stateful thing that runs it.

use std::sync::Arc;

use crate::error::Result;
use crate::message::{Message, StreamBatch, Watermark};
use crate::metrics::QueryMetrics;
use crate::metrics::StateSize;
use crate::state::OperatorState;

/// A running operator of a pipeline.
///
/// # Contract
///
/// The pipeline calls the methods of one operator from one thread, in the
/// order messages arrive on its inputs:
///
/// - [`on_batch`](Operator::on_batch) for every batch on input `port`
///   (0 for single-input operators). Rows are never below the watermark last
///   passed to [`on_watermark`](Operator::on_watermark): sources drop late
///   rows before they enter the pipeline.
/// - [`on_watermark`](Operator::on_watermark) when the minimum watermark over
///   all inputs advances. It never goes backwards. An operator that holds
///   state for event time (a window) emits what the watermark completes and
///   then forwards the watermark.
/// - [`on_end`](Operator::on_end) once, after every input ended and after a
///   final `on_watermark(Watermark::MAX)`. The pipeline emits `End` after it.
///
/// Operators write their output to `out`. An `Err` fails the query: return
/// [`RuntimeError::User`](crate::RuntimeError::User) for data the user can
/// fix and `Internal` for bugs; never panic on data.
pub trait Operator: Send {
    fn on_batch(&mut self, port: usize, batch: StreamBatch, out: &mut Vec<Message>) -> Result<()>;

    fn on_watermark(&mut self, watermark: Watermark, out: &mut Vec<Message>) -> Result<()> {
        out.push(Message::Watermark(watermark));
        Ok(())
    }

    fn on_end(&mut self, _out: &mut Vec<Message>) -> Result<()> {
        Ok(())
    }

    /// True once the operator will produce nothing more whatever arrives (a
    /// satisfied LIMIT); the pipeline then ends its output early.
    fn is_finished(&self) -> bool {
        false
    }

    /// The operator's state at a checkpoint, taken when the checkpoint's
    /// barrier has arrived on every input that has not ended (so between
    /// two messages: see [`crate::pipeline`]), such that
    /// [`restore`](Operator::restore) on a fresh operator of the same
    /// spec continues exactly as this one would. Stateless operators keep
    /// the default (nothing). May reorganise internal structures but must
    /// not change what the operator does next.
    fn snapshot(&mut self) -> Result<OperatorState> {
        Ok(OperatorState::default())
    }

    /// Loads a [`snapshot`](Operator::snapshot) into a freshly created
    /// operator, before any message.
    fn restore(&mut self, _state: OperatorState) -> Result<()> {
        Ok(())
    }

    /// What the operator holds now, for EXPLAIN ANALYZE; `None` for
    /// operators without state. Called about once a second while someone
    /// watches the query, so it may walk the state.
    fn state_size(&self) -> Option<StateSize> {
        None
    }

    /// The end of the oldest window the operator still holds open, waiting
    /// for the watermark to pass it (for EXPLAIN ANALYZE).
    fn oldest_open_window(&self) -> Option<i64> {
        None
    }
}

/// What every operator of a query may use besides its spec: only what
/// the query shares at run time (its metrics, the threads it may use).
/// Nothing that changes what an operator computes comes through here;
/// that is the spec's to say.
#[derive(Debug, Clone, Default)]
pub struct OperatorContext {
    pub metrics: Arc<QueryMetrics>,
    /// Threads an operator split into key groups may run them on at once
    /// (`SET parallelism`); 0 and 1 both mean the pipeline's own thread.
    pub parallelism: usize,
}
