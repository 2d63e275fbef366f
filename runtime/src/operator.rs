//! The [`Operator`] trait and the immutable [`OperatorSpec`]s the planner
//! produces.
//!
//! A spec describes an operator; [`OperatorSpec::instantiate`] creates the
//! stateful thing that runs it. Specs are cheap to clone and never change
//! while a query runs.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;

use crate::driver::QuerySettings;
use crate::error::Result;
use crate::message::{Message, StreamBatch, Watermark};
use crate::metrics::QueryMetrics;
use crate::operators::{
    group_aggregate::{GroupAggregate, GroupAggregateSpec},
    limit::{Limit, LimitSpec},
    lookup_join::{LookupJoin, LookupJoinSpec},
    pane_window::{PaneWindow, PaneWindowSpec},
    session_window::{SessionWindow, SessionWindowSpec},
    stateless::{Stateless, StatelessSpec},
    stream_join::{StreamJoin, StreamJoinSpec},
    temporal_join::{TemporalJoin, TemporalJoinSpec},
    top_n::{TopN, TopNSpec},
    union::{Union, UnionSpec},
    window_aggregate::{WindowAggregate, WindowAggregateSpec},
    window_assign::{WindowAssign, WindowAssignSpec},
    window_join::{WindowJoin, WindowJoinSpec},
};
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

    /// The operator's state at a checkpoint (between two messages), such
    /// that [`restore`](Operator::restore) on a fresh operator of the same
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
}

/// What every operator of a query may use.
#[derive(Debug, Clone, Default)]
pub struct OperatorContext {
    pub settings: QuerySettings,
    pub metrics: Arc<QueryMetrics>,
}

/// What the planner asks the runtime to run at one node.
#[derive(Debug, Clone)]
pub enum OperatorSpec {
    /// Filters, projections, scalar functions, UNNEST, and the per-window
    /// sort/limit: a DataFusion physical plan executed once per batch.
    Stateless(StatelessSpec),
    /// Adds `window_start`, `window_end` and `window_time` to each row.
    WindowAssign(WindowAssignSpec),
    /// GROUP BY a window plus keys; emits each window once it closes.
    WindowAggregate(WindowAggregateSpec),
    /// GROUP BY a HOP or CUMULATE window plus keys, from panes.
    PaneWindow(PaneWindowSpec),
    /// GROUP BY a SESSION window plus keys.
    SessionWindow(SessionWindowSpec),
    /// GROUP BY without a window: running state per key, a changelog out.
    GroupAggregate(GroupAggregateSpec),
    /// UNION ALL of several inputs.
    Union(UnionSpec),
    /// LIMIT on an unbounded input: the first rows, then the end.
    Limit(LimitSpec),
    /// Stream-stream join, interval or unbounded (two inputs).
    StreamJoin(StreamJoinSpec),
    /// Two windowed inputs joined per window (two inputs).
    WindowJoin(WindowJoinSpec),
    /// Stream joined with a static table (one input).
    LookupJoin(LookupJoinSpec),
    /// Stream joined with a versioned table's version at each row's time
    /// (left: the stream, right: the table's changelog).
    TemporalJoin(TemporalJoinSpec),
    /// ROW_NUMBER() ... <= N over a whole stream: the top rows of each
    /// partition, as a changelog.
    TopN(TopNSpec),
}

impl OperatorSpec {
    /// Creates the running operator for the query described by `context`.
    pub fn instantiate(&self, context: &OperatorContext) -> Result<Box<dyn Operator>> {
        let settings = &context.settings;
        Ok(match self {
            OperatorSpec::Stateless(spec) => Box::new(Stateless::new(spec.clone())),
            OperatorSpec::WindowAssign(spec) => Box::new(WindowAssign::new(spec.clone())),
            OperatorSpec::WindowAggregate(spec) => {
                let lateness = settings.allowed_lateness.map_or(0, |lateness| lateness.as_nanos() as i64);
                let operator =
                    WindowAggregate::new(spec.clone())?.with_metrics(context.metrics.clone()).with_emit(spec.emit);
                Box::new(operator.with_allowed_lateness(lateness))
            }
            OperatorSpec::PaneWindow(spec) => Box::new(PaneWindow::new(spec.clone(), context.metrics.clone())?),
            OperatorSpec::SessionWindow(spec) => {
                let lateness = settings.allowed_lateness.map_or(0, |lateness| lateness.as_nanos() as i64);
                Box::new(SessionWindow::new(spec.clone(), context.metrics.clone())?.with_allowed_lateness(lateness))
            }
            OperatorSpec::GroupAggregate(spec) => Box::new(GroupAggregate::new(spec.clone(), settings.state_ttl)?),
            OperatorSpec::Union(spec) => Box::new(Union::new(spec.clone())),
            OperatorSpec::Limit(spec) => Box::new(Limit::new(spec.clone())),
            OperatorSpec::StreamJoin(spec) => {
                Box::new(StreamJoin::new(spec.clone(), settings.state_ttl, context.metrics.clone())?)
            }
            OperatorSpec::WindowJoin(spec) => Box::new(WindowJoin::new(spec.clone(), context.metrics.clone())),
            OperatorSpec::LookupJoin(spec) => Box::new(LookupJoin::new(spec.clone())?),
            OperatorSpec::TemporalJoin(spec) => Box::new(TemporalJoin::new(spec.clone(), context.metrics.clone())?),
            OperatorSpec::TopN(spec) => Box::new(TopN::new(spec.clone(), context.metrics.clone())?),
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            OperatorSpec::Stateless(_) => "stateless",
            OperatorSpec::WindowAssign(_) => "window_assign",
            OperatorSpec::WindowAggregate(_) => "window_aggregate",
            OperatorSpec::GroupAggregate(_) => "group_aggregate",
            OperatorSpec::PaneWindow(_) => "pane_window",
            OperatorSpec::SessionWindow(_) => "session_window",
            OperatorSpec::Union(_) => "union",
            OperatorSpec::Limit(_) => "limit",
            OperatorSpec::StreamJoin(spec) if spec.bound.is_some() => "interval_join",
            OperatorSpec::StreamJoin(_) => "unbounded_join",
            OperatorSpec::WindowJoin(_) => "window_join",
            OperatorSpec::LookupJoin(_) => "lookup_join",
            OperatorSpec::TemporalJoin(_) => "temporal_join",
            OperatorSpec::TopN(_) => "top_n",
        }
    }

    pub fn output_schema(&self) -> SchemaRef {
        match self {
            OperatorSpec::Stateless(spec) => spec.output_schema(),
            OperatorSpec::WindowAssign(spec) => spec.output_schema.clone(),
            OperatorSpec::WindowAggregate(spec) => spec.output_schema.clone(),
            OperatorSpec::GroupAggregate(spec) => spec.output_schema.clone(),
            OperatorSpec::PaneWindow(spec) => spec.output_schema.clone(),
            OperatorSpec::SessionWindow(spec) => spec.output_schema.clone(),
            OperatorSpec::Union(spec) => spec.schema.clone(),
            OperatorSpec::Limit(spec) => spec.schema.clone(),
            OperatorSpec::StreamJoin(spec) => spec.output_schema.clone(),
            OperatorSpec::WindowJoin(spec) => spec.output_schema(),
            OperatorSpec::LookupJoin(spec) => spec.output_schema.clone(),
            OperatorSpec::TemporalJoin(spec) => spec.output_schema.clone(),
            OperatorSpec::TopN(spec) => spec.output_schema.clone(),
        }
    }
}
