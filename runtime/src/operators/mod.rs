//! The operators a pipeline runs. Each file holds one operator: its spec
//! (what the planner produces) and the running instance. [`OperatorSpec`]
//! lists them all and dispatches to them: creating the running operator,
//! its name (in EXPLAIN and checkpoints) and its output schema. A few files
//! hold what several operators share instead: `groups` (aggregate state per
//! group), `sliding` (running aggregates over panes), `join_condition` (the
//! ON condition of the stream, lookup and temporal joins) and `window_rows`
//! (splitting a batch by window and dropping late rows).

pub mod group_aggregate;
pub(crate) mod groups;
pub mod join_condition;
pub mod limit;
pub mod lookup_join;
pub mod match_recognize;
pub mod pane_window;
pub mod partitioned;
#[cfg(test)]
pub(crate) mod restore_check;
pub mod running_groups;
pub mod session_window;
pub(crate) mod sliding;
pub mod stateless;
pub mod stream_join;
pub mod temporal_join;
pub mod top_n;
pub mod union;
pub mod window_aggregate;
pub mod window_assign;
pub mod window_join;
pub(crate) mod window_rows;

use datafusion::arrow::datatypes::SchemaRef;

use crate::error::Result;
use crate::operator::{Operator, OperatorContext};
use crate::time::duration_nanos;
use group_aggregate::{GroupAggregate, GroupAggregateSpec};
use limit::{Limit, LimitSpec};
use lookup_join::{LookupJoin, LookupJoinSpec};
use match_recognize::operator::MatchRecognize;
use match_recognize::spec::MatchRecognizeSpec;
use pane_window::{PaneWindow, PaneWindowSpec};
use session_window::{SessionWindow, SessionWindowSpec};
use stateless::{Stateless, StatelessSpec};
use stream_join::{StreamJoin, StreamJoinSpec};
use temporal_join::{TemporalJoin, TemporalJoinSpec};
use top_n::{TopN, TopNSpec};
use union::{Union, UnionSpec};
use window_aggregate::{WindowAggregate, WindowAggregateSpec};
use window_assign::{WindowAssign, WindowAssignSpec};
use window_join::{WindowJoin, WindowJoinSpec};

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
    /// MATCH_RECOGNIZE: row pattern recognition per partition.
    MatchRecognize(MatchRecognizeSpec),
}

impl OperatorSpec {
    /// Creates the running operator of this spec. Everything that decides
    /// what it computes comes from the spec; `context` only lends it the
    /// query's metrics.
    pub fn instantiate(&self, context: &OperatorContext) -> Result<Box<dyn Operator>> {
        Ok(match self {
            OperatorSpec::Stateless(spec) => {
                Box::new(Stateless::new(spec.clone()).with_parallelism(context.parallelism))
            }
            OperatorSpec::WindowAssign(spec) => Box::new(WindowAssign::new(spec.clone())),
            OperatorSpec::WindowAggregate(spec) => {
                let lateness = spec.allowed_lateness.map_or(0, duration_nanos);
                let operator =
                    WindowAggregate::new(spec.clone())?.with_metrics(context.metrics.clone()).with_emit(spec.emit);
                Box::new(operator.with_allowed_lateness(lateness))
            }
            OperatorSpec::PaneWindow(spec) => Box::new(PaneWindow::new(spec.clone(), context.metrics.clone())?),
            OperatorSpec::SessionWindow(spec) => {
                let lateness = spec.allowed_lateness.map_or(0, duration_nanos);
                Box::new(SessionWindow::new(spec.clone(), context.metrics.clone())?.with_allowed_lateness(lateness))
            }
            OperatorSpec::GroupAggregate(spec) if running_groups::eligible(spec) => {
                Box::new(running_groups::RunningGroups::new(spec.clone())?)
            }
            OperatorSpec::GroupAggregate(spec) => Box::new(GroupAggregate::new(spec.clone())?),
            OperatorSpec::Union(spec) => Box::new(Union::new(spec.clone())),
            OperatorSpec::Limit(spec) => Box::new(Limit::new(spec.clone())),
            OperatorSpec::StreamJoin(spec) => {
                Box::new(StreamJoin::new(spec.clone(), spec.state_ttl, context.metrics.clone())?)
            }
            OperatorSpec::WindowJoin(spec) => Box::new(WindowJoin::new(spec.clone(), context.metrics.clone())),
            OperatorSpec::LookupJoin(spec) => Box::new(LookupJoin::new(spec.clone())?),
            OperatorSpec::TemporalJoin(spec) => Box::new(TemporalJoin::new(spec.clone(), context.metrics.clone())?),
            OperatorSpec::TopN(spec) => Box::new(TopN::new(spec.clone(), context.metrics.clone())?),
            OperatorSpec::MatchRecognize(spec) => Box::new(MatchRecognize::new(spec.clone(), context.metrics.clone())?),
        })
    }

    /// [`instantiate`](OperatorSpec::instantiate), split into `key_groups`
    /// instances behind a hash exchange when the operator's state is per
    /// key (see [`partitioned`]).
    pub fn instantiate_in(&self, context: &OperatorContext, key_groups: usize) -> Result<Box<dyn Operator>> {
        match self.partitioning() {
            Some(partitioning) if key_groups > 1 => {
                let (spec, partitioning) = self.with_evaluated_keys(partitioning)?;
                let groups = (0..key_groups).map(|_| spec.instantiate(context)).collect::<Result<Vec<_>>>()?;
                Ok(Box::new(partitioned::Partitioned::new(partitioning, groups, context.parallelism)))
            }
            _ => self.instantiate(context),
        }
    }

    /// An aggregate grouped by expressions other than columns has its key
    /// groups read the keys the exchange evaluated (appended to each batch)
    /// instead of evaluating them again: `DATE_FORMAT(date_time, ...)` is
    /// not cheap. Other specs come back as they are.
    fn with_evaluated_keys(
        &self,
        mut partitioning: partitioned::Partitioning,
    ) -> Result<(OperatorSpec, partitioned::Partitioning)> {
        use datafusion::physical_expr::expressions::Column;
        let (input_schema, group_exprs) = match self {
            OperatorSpec::GroupAggregate(spec) => (&spec.input_schema, &spec.group_exprs),
            OperatorSpec::WindowAggregate(spec) => (&spec.input_schema, &spec.group_exprs),
            _ => return Ok((self.clone(), partitioning)),
        };
        let evaluated: Vec<usize> =
            (0..group_exprs.len()).filter(|&index| !group_exprs[index].is::<Column>()).collect();
        if evaluated.is_empty() {
            return Ok((self.clone(), partitioning));
        }
        // Nullable throughout: the groups' batches are built against this
        // schema, and only the key types matter to the groups.
        let mut fields: Vec<datafusion::arrow::datatypes::FieldRef> = input_schema
            .fields()
            .iter()
            .map(|field| std::sync::Arc::new(field.as_ref().clone().with_nullable(true)))
            .collect();
        let mut exprs = group_exprs.clone();
        for (number, &index) in evaluated.iter().enumerate() {
            let expr = &group_exprs[index];
            let name = format!("__sluice_key_{number}");
            let field = datafusion::arrow::datatypes::Field::new(&name, expr.data_type(input_schema)?, true);
            exprs[index] = std::sync::Arc::new(Column::new(&name, fields.len()));
            fields.push(std::sync::Arc::new(field));
        }
        let extended = std::sync::Arc::new(datafusion::arrow::datatypes::Schema::new(fields));
        let spec = match self {
            OperatorSpec::GroupAggregate(spec) => OperatorSpec::GroupAggregate(group_aggregate::GroupAggregateSpec {
                input_schema: extended.clone(),
                group_exprs: exprs,
                ..spec.clone()
            }),
            OperatorSpec::WindowAggregate(spec) => OperatorSpec::WindowAggregate(WindowAggregateSpec {
                input_schema: extended.clone(),
                group_exprs: exprs,
                ..spec.clone()
            }),
            _ => unreachable!("matched above"),
        };
        partitioning.appended = Some((evaluated, extended));
        Ok((spec, partitioning))
    }

    /// How the operator's input splits by key, if its state is per key:
    /// GROUP BY keys (the window among them), PARTITION BY, join keys. A
    /// global aggregate, a global Top-N or a pattern without PARTITION BY
    /// has one key and does not split.
    pub fn partitioning(&self) -> Option<partitioned::Partitioning> {
        use partitioned::Partitioning;
        let keyed = |keys: &[std::sync::Arc<dyn datafusion::physical_expr::PhysicalExpr>], time_column| {
            (!keys.is_empty()).then(|| Partitioning::new(vec![keys.to_vec()], time_column, false))
        };
        // A window operator emits each window as one batch, and the merge
        // must too: it needs a column that tells the windows apart (their
        // end), or the operator stays whole.
        let windowed = |keys: &[std::sync::Arc<dyn datafusion::physical_expr::PhysicalExpr>],
                        window_end: Option<usize>| {
            let window_end = window_end?;
            (!keys.is_empty()).then(|| Partitioning::new(vec![keys.to_vec()], Some(window_end), true))
        };
        let layout_end = |layout: &[pane_window::GroupColumn]| {
            layout.iter().position(|column| matches!(column, pane_window::GroupColumn::WindowEnd))
        };
        match self {
            OperatorSpec::GroupAggregate(spec) => keyed(&spec.group_exprs, None),
            OperatorSpec::WindowAggregate(spec) => {
                let window_end = spec.group_exprs.iter().position(|expr| {
                    expr.downcast_ref::<datafusion::physical_expr::expressions::Column>()
                        .is_some_and(|column| column.name() == "window_end")
                });
                windowed(&spec.group_exprs, window_end)
            }
            OperatorSpec::PaneWindow(spec) => windowed(&spec.key_exprs, layout_end(&spec.layout)),
            // Closed sessions come out together, in one batch.
            OperatorSpec::SessionWindow(spec) => keyed(&spec.partition_exprs, layout_end(&spec.layout)),
            OperatorSpec::TopN(spec) => keyed(&spec.partition_exprs, None),
            OperatorSpec::MatchRecognize(spec) => {
                let keys: Vec<std::sync::Arc<dyn datafusion::physical_expr::PhysicalExpr>> = spec
                    .partition_by
                    .iter()
                    .map(|&index| {
                        let name = spec.input_schema.field(index).name();
                        std::sync::Arc::new(datafusion::physical_expr::expressions::Column::new(name, index)) as _
                    })
                    .collect();
                keyed(&keys, spec.output_time)
            }
            OperatorSpec::StreamJoin(spec) if !spec.condition.left_keys.is_empty() => Some(Partitioning::new(
                vec![spec.condition.left_keys.clone(), spec.condition.right_keys.clone()],
                None,
                false,
            )),
            _ => None,
        }
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
            OperatorSpec::MatchRecognize(_) => "match_recognize",
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
            OperatorSpec::MatchRecognize(spec) => spec.output_schema.clone(),
        }
    }
}
