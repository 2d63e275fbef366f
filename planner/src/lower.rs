//! Lowering a DataFusion `LogicalPlan` into a [`StreamPlan`].
//!
//! # Algorithm
//!
//! The plan is walked from the root. Runs of stateless nodes (projection,
//! filter, alias, unnest, and — over window results — sort and limit) become
//! one *segment*: their input is replaced by a [`FeedNode`] and DataFusion
//! builds the physical plan that the runtime executes per batch. Everything
//! else maps to a runtime operator:
//!
//! ```text
//!   Limit(Sort(Projection(Aggregate(Filter(TableScan __window_0)))))
//!
//!   source weblog ─► window_assign ─► stateless[Filter] ─► window_aggregate
//!                 ─► stateless[Limit(Sort(Projection))]   (run once per window)
//! ```

use std::sync::Arc;

use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::{Aggregate, Expr, Extension, FetchType, LogicalPlan, SkipType, col, lit};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_planner::{DefaultPhysicalPlanner, PhysicalPlanner};
use datafusion::sql::sqlparser::tokenizer::Location;
use futures::future::BoxFuture;
use sluice_runtime::operators::group_aggregate::GroupAggregateSpec;
use sluice_runtime::operators::limit::LimitSpec;
use sluice_runtime::operators::pane_window::{GroupColumn, PaneWindowSpec};
use sluice_runtime::operators::session_window::SessionWindowSpec;
use sluice_runtime::operators::stateless::StatelessSpec;
use sluice_runtime::operators::union::UnionSpec;
use sluice_runtime::operators::window_aggregate::WindowAggregateSpec;
use sluice_runtime::operators::window_assign::{WINDOW_END, WINDOW_START, WINDOW_TIME, WindowAssignSpec, WindowKind};
use sluice_runtime::{ConnectorSpec, NodeId, OperatorSpec, PlanNode, SourceSpec, StreamPlan};

use crate::catalog::Catalog;
use crate::error::{PlanError, Result};
use crate::feed::{FeedNode, FeedPlanner};
use crate::options::PlanOptions;
use crate::rewritten::{PatternTable, Rewritten, TemporalTable, WindowTable};

/// What a lowered subtree produces.
#[derive(Debug, Clone)]
pub(crate) struct Lowered {
    pub(crate) node: NodeId,
    pub(crate) schema: SchemaRef,
    /// Each batch holds the rows of exactly one closed window.
    pub(crate) window_results: bool,
    /// Rows carry window columns assigned by this window.
    pub(crate) window: Option<WindowKind>,
    /// Rows carry ops (inserts and retractions): an updating result.
    pub(crate) updating: bool,
    /// `PARTITION BY` columns of a SESSION window.
    pub(crate) partition_keys: Vec<String>,
    /// The column the watermark tracks, and the PROCTIME() column, when
    /// they pass through by name.
    pub(crate) times: TimeColumns,
}

impl Lowered {
    /// An operator's updating result: ops on every row, no windows.
    pub(crate) fn updating(node: NodeId, schema: SchemaRef, times: TimeColumns) -> Self {
        let (window_results, window, partition_keys) = (false, None, Vec::new());
        Self { node, schema, window_results, window, updating: true, partition_keys, times }
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct TimeColumns {
    pub(crate) event: Option<String>,
    pub(crate) processing: Option<String>,
    /// The columns holding each row's window bounds, by their current names
    /// (`window_start AS starttime` is followed).
    pub(crate) window_start: Option<String>,
    pub(crate) window_end: Option<String>,
}

impl TimeColumns {
    /// The window columns of a window TVF's or window aggregate's rows.
    pub(crate) fn windows(schema: &Schema) -> Self {
        let named = |name: &str| schema.index_of(name).is_ok().then(|| name.to_string());
        Self { window_start: named(WINDOW_START), window_end: named(WINDOW_END), ..Self::default() }
    }

    /// `self`'s window columns with `other`'s time attributes.
    fn merged(self, other: Self) -> Self {
        Self { event: other.event, processing: other.processing, ..self }
    }

    /// The columns still present in `schema`.
    pub(crate) fn within(&self, schema: &Schema) -> Self {
        let keep = |name: &Option<String>| name.clone().filter(|name| schema.index_of(name).is_ok());
        Self {
            event: keep(&self.event),
            processing: keep(&self.processing),
            window_start: keep(&self.window_start),
            window_end: keep(&self.window_end),
        }
    }

    /// The columns after a run of stateless nodes (`chain`, top first),
    /// following renames by projections.
    fn through(&self, chain: &[&LogicalPlan], schema: &Schema) -> Self {
        let mut names = self.clone();
        for node in chain.iter().rev() {
            let LogicalPlan::Projection(projection) = node else { continue };
            let renamed = |name: &Option<String>| {
                let name = name.as_ref()?;
                projection.expr.iter().find_map(|expr| match expr {
                    Expr::Column(column) if &column.name == name => Some(column.name.clone()),
                    Expr::Alias(alias) => match alias.expr.as_ref() {
                        Expr::Column(column) if &column.name == name => Some(alias.name.clone()),
                        _ => None,
                    },
                    _ => None,
                })
            };
            names = Self {
                event: renamed(&names.event),
                processing: renamed(&names.processing),
                window_start: renamed(&names.window_start),
                window_end: renamed(&names.window_end),
            };
        }
        names.within(schema)
    }
}

pub struct Lowering<'a> {
    pub(crate) state: &'a SessionState,
    pub(crate) catalog: &'a dyn Catalog,
    windows: Vec<WindowTable>,
    pub(crate) temporal: Vec<TemporalTable>,
    pub(crate) samples: Vec<crate::rewritten::SampledTable>,
    /// MATCH_RECOGNIZE clauses, by the planner-made table they replaced.
    patterns: Vec<PatternTable>,
    pub(crate) sql: &'a str,
    /// Where the statement starts in `sql`, for error positions.
    pub(crate) start: Location,
    pub(crate) options: PlanOptions,
    pub(crate) plan: StreamPlan,
    /// Window TVFs below copy each row into all its windows (set while
    /// lowering the inputs of a window join).
    pub(crate) expand_windows: bool,
}

impl<'a> Lowering<'a> {
    pub fn new(
        state: &'a SessionState,
        catalog: &'a dyn Catalog,
        rewritten: Rewritten,
        sql: &'a str,
        start: Location,
        options: PlanOptions,
    ) -> Self {
        let plan = StreamPlan {
            sources: Vec::new(),
            nodes: Vec::new(),
            root: 0,
            schema: Arc::new(Schema::empty()),
            append_only: true,
            warnings: Vec::new(),
            allowed_lateness: options.allowed_lateness,
            source_windows: Vec::new(),
            key_groups: options.key_groups.max(1),
            sink: None,
            materialized: false,
        };
        let Rewritten { windows, temporal, patterns, samples } = rewritten;
        Self { state, catalog, windows, temporal, samples, patterns, sql, start, options, plan, expand_windows: false }
    }

    pub async fn lower_root(&mut self, logical: &LogicalPlan) -> Result<StreamPlan> {
        let root = self.lower(logical).await?;
        self.plan.root = root.node;
        self.plan.schema = root.schema;
        self.plan.append_only = !root.updating;
        Ok(self.plan.clone().with_source_windows())
    }

    pub(crate) fn push(&mut self, spec: OperatorSpec, inputs: Vec<NodeId>) -> NodeId {
        self.plan.nodes.push(PlanNode::Operator { spec, inputs });
        self.plan.nodes.len() - 1
    }

    /// The plan node a stream's rows come from: its source, or for a Kafka
    /// stream one source per partition under a union (each partition with
    /// its own watermark, idle timeout and offsets).
    fn source_nodes(&mut self, source: &SourceSpec) -> Result<NodeId> {
        let partitions = match &source.connector {
            ConnectorSpec::Kafka(kafka) if kafka.partitions.is_empty() => {
                return Err(PlanError::invalid(format!(
                    "stream {} does not know its topic's partitions (declare it with partitions = N)",
                    source.stream
                )));
            }
            ConnectorSpec::Kafka(kafka) => kafka.partitions.clone(),
            _ => {
                self.plan.sources.push(source.clone());
                self.plan.nodes.push(PlanNode::Source { index: self.plan.sources.len() - 1 });
                return Ok(self.plan.nodes.len() - 1);
            }
        };
        let mut inputs = Vec::new();
        for partition in partitions {
            let mut one = source.clone();
            if let ConnectorSpec::Kafka(kafka) = &mut one.connector {
                kafka.partition = Some(partition);
            }
            self.plan.sources.push(one);
            self.plan.nodes.push(PlanNode::Source { index: self.plan.sources.len() - 1 });
            inputs.push(self.plan.nodes.len() - 1);
        }
        if inputs.len() == 1 {
            return Ok(inputs[0]);
        }
        Ok(self.push(OperatorSpec::Union(UnionSpec { schema: source.schema.clone() }), inputs))
    }

    pub(crate) fn lower<'b>(&'b mut self, logical: &'b LogicalPlan) -> BoxFuture<'b, Result<Lowered>> {
        Box::pin(async move {
            match logical {
                LogicalPlan::TableScan(scan) if scan.projection.is_none() => {
                    self.scan_source(scan.table_name.table(), None).await
                }
                LogicalPlan::TableScan(_) => self.segment(logical).await,
                LogicalPlan::Aggregate(aggregate) => self.aggregate(aggregate).await,
                LogicalPlan::Union(union) => {
                    let mut inputs = Vec::new();
                    for input in &union.inputs {
                        inputs.push(self.lower(input).await?);
                    }
                    let schema = Arc::new(union.schema.as_arrow().clone());
                    let window = inputs.first().and_then(|first| first.window);
                    let same_window = inputs.iter().all(|input| input.window == window);
                    let window_results = inputs.iter().all(|input| input.window_results);
                    let updating = inputs.iter().any(|input| input.updating);
                    let node = self.push(
                        OperatorSpec::Union(UnionSpec { schema: schema.clone() }),
                        inputs.iter().map(|input| input.node).collect(),
                    );
                    let window = if same_window { window } else { None };
                    let partition_keys = inputs.first().map(|first| first.partition_keys.clone()).unwrap_or_default();
                    let times = inputs.first().map(|first| first.times.within(&schema)).unwrap_or_default();
                    Ok(Lowered { node, schema, window_results, window, updating, partition_keys, times })
                }
                LogicalPlan::Limit(limit) if !produces_window_results(&limit.input) => {
                    let (SkipType::Literal(skip), FetchType::Literal(fetch)) =
                        (limit.get_skip_type()?, limit.get_fetch_type()?)
                    else {
                        return Err(PlanError::unsupported("LIMIT and OFFSET must be constants")
                            .near(self.sql, self.start, "LIMIT"));
                    };
                    if skip == 0 && fetch.is_none() {
                        return self.lower(&limit.input).await;
                    }
                    let input = self.lower(&limit.input).await?;
                    if input.updating {
                        return Err(PlanError::unsupported("LIMIT over an updating result is not supported")
                            .near(self.sql, self.start, "LIMIT"));
                    }
                    let spec = LimitSpec { schema: input.schema.clone(), skip, fetch };
                    let node = self.push(OperatorSpec::Limit(spec), vec![input.node]);
                    Ok(Lowered { node, ..input })
                }
                plan if is_stateless(plan) => self.segment(plan).await,
                LogicalPlan::Join(join) => self.join(join).await,
                LogicalPlan::Distinct(_) => Err(PlanError::unsupported(
                    "SELECT DISTINCT on a stream is not supported yet; GROUP BY the columns within a window instead",
                )
                .near(self.sql, self.start, "DISTINCT")),
                LogicalPlan::EmptyRelation(_) | LogicalPlan::Values(_) => {
                    Err(PlanError::invalid("a continuous query reads at least one stream: add FROM <stream>"))
                }
                other => Err(PlanError::unsupported(format!(
                    "{} is not supported in a continuous query",
                    other.display().to_string().split(':').next().unwrap_or("this construct")
                ))),
            }
        })
    }

    /// A source node for a stream scan (plus window assignment for a scan
    /// of a window TVF). Its batches have the table's full schema; a plain
    /// stream scan that reads only `columns` decodes only those.
    async fn scan_source(&mut self, table: &str, columns: Option<&[usize]>) -> Result<Lowered> {
        if let Some(pattern) = self.patterns.iter().find(|pattern| pattern.table == table).cloned() {
            return self.match_recognize(&pattern).await;
        }
        let window = self.windows.iter().find(|window| window.table == table).cloned();
        let input = match window.as_ref().and_then(|window| window.subquery_plan.as_ref()) {
            // A window over another query's rows (its watermarks flow along).
            Some(subquery) => {
                let input = self.lower(subquery).await?;
                if input.updating {
                    return Err(PlanError::unsupported("a window over an updating result is not supported")
                        .near(self.sql, self.start, "TABLE"));
                }
                input
            }
            None => {
                let temporal = self.temporal.iter().find(|temporal| temporal.table == table);
                let source = match (window.as_ref().and_then(|window| window.source.clone()), temporal) {
                    (Some(source), _) => source,
                    (None, Some(temporal)) => temporal.source.clone(),
                    (None, None) if let Some(sampled) = self.samples.iter().find(|sampled| sampled.table == table) => {
                        let mut source = sampled.source.clone();
                        source.columns = columns.map(<[usize]>::to_vec);
                        source
                    }
                    (None, None) if self.catalog.table(table).is_some() => {
                        return Err(PlanError::invalid(format!(
                            "{table} is a static table: a continuous query reads a stream and can join the table (FROM stream JOIN {table} ON ...)"
                        ))
                        .near(self.sql, self.start, table));
                    }
                    (None, None) => {
                        let mut source = self
                            .catalog
                            .stream(table)
                            .ok_or_else(|| PlanError::unknown(format!("stream '{table}' not found")))?;
                        source.columns = columns.map(<[usize]>::to_vec);
                        source
                    }
                };
                let node = self.source_nodes(&source)?;
                let (window_results, updating, partition_keys) = (false, false, Vec::new());
                let name = |column: usize| source.schema.field(column).name().clone();
                let times = TimeColumns {
                    event: source.event_time.map(|event_time| name(event_time.column)),
                    processing: source.proctime_column.map(name),
                    ..TimeColumns::default()
                };
                Lowered { node, schema: source.schema, window_results, window: None, updating, partition_keys, times }
            }
        };
        let Some(window) = window else {
            return Ok(input);
        };
        let mut spec = WindowAssignSpec::new(window.kind, window.time_column, &input.schema);
        if self.whole_windows() {
            spec = spec.expanded();
        }
        let schema = spec.output_schema.clone();
        let node = self.push(OperatorSpec::WindowAssign(spec), vec![input.node]);
        let partition_keys = window.partition_keys.clone();
        let times = TimeColumns::windows(&schema).merged(input.times.within(&schema));
        Ok(Lowered {
            node,
            schema,
            window_results: false,
            window: Some(window.kind),
            updating: false,
            partition_keys,
            times,
        })
    }

    /// A run of stateless nodes from `top` down, executed by DataFusion.
    async fn segment(&mut self, top: &LogicalPlan) -> Result<Lowered> {
        let window_results_below = produces_window_results(top);
        let mut chain = Vec::new();
        let mut cursor = top;
        while is_stateless(cursor) && (window_results_below || !matches!(cursor, LogicalPlan::Limit(_))) {
            if matches!(cursor, LogicalPlan::Sort(_)) && !window_results_below {
                return Err(PlanError::unsupported(
                    "ORDER BY on an unbounded stream never completes; sort the rows of each window instead (GROUP BY window_start, window_end, ... ORDER BY ...)",
                )
                .near(self.sql, self.start, "ORDER"));
            }
            if let LogicalPlan::Window(window) = cursor
                && !produces_window_results(&window.input)
            {
                // ROW_NUMBER() over a stream: a Top-N below the chain.
                break;
            }
            chain.push(cursor);
            cursor = cursor.inputs()[0];
        }
        let (input, feed) = match cursor {
            LogicalPlan::Window(window) => {
                let input = self.top_n(window, &chain).await?;
                let feed = FeedNode::new(window.schema.clone(), input.schema.clone(), None);
                (input, feed)
            }
            LogicalPlan::TableScan(scan) => {
                let input = self.scan_source(scan.table_name.table(), scan.projection.as_deref()).await?;
                let feed = FeedNode::new(scan.projected_schema.clone(), input.schema.clone(), scan.projection.clone());
                (input, feed)
            }
            boundary => {
                let input = self.lower(boundary).await?;
                let feed = FeedNode::new(boundary.schema().clone(), input.schema.clone(), None);
                (input, feed)
            }
        };
        let per_window = chain
            .iter()
            .any(|node| matches!(node, LogicalPlan::Sort(_) | LogicalPlan::Limit(_) | LogicalPlan::Window(_)));
        if per_window && !input.window_results {
            let message = if input.updating {
                "ORDER BY, LIMIT and OVER (...) over an updating result are not supported"
            } else {
                "ORDER BY, LIMIT and OVER (...) apply to the rows of each window: GROUP BY window_start, window_end, ... below them"
            };
            return Err(PlanError::unsupported(message).near(self.sql, self.start, "ORDER"));
        }
        let spec = self.feed_plan(&chain, feed).await?;
        let schema = spec.output_schema();
        let times = input.times.through(&chain, &schema);
        let node = self.push(OperatorSpec::Stateless(spec), vec![input.node]);
        Ok(Lowered {
            node,
            schema,
            window_results: input.window_results,
            window: input.window,
            updating: input.updating,
            partition_keys: input.partition_keys,
            times,
        })
    }

    /// The DataFusion physical plan of the stateless nodes `chain` (top
    /// first) over `feed`, which the runtime runs once per batch.
    pub(crate) async fn feed_plan(&self, chain: &[&LogicalPlan], feed: FeedNode) -> Result<StatelessSpec> {
        let slot = feed.slot.clone();
        let mut logical = LogicalPlan::Extension(Extension { node: Arc::new(feed) });
        for node in chain.iter().rev() {
            logical = node.with_new_exprs(node.expressions(), vec![logical])?;
        }
        let planner = DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(FeedPlanner)]);
        let plan = planner.create_physical_plan(&logical, self.state).await?;
        Ok(StatelessSpec { plan, feed: slot })
    }

    async fn aggregate(&mut self, aggregate: &Aggregate) -> Result<Lowered> {
        let input = self.lower(&aggregate.input).await?;
        let input_schema = aggregate.input.schema();
        if aggregate.group_expr.iter().any(|expr| matches!(expr, Expr::GroupingSet(_))) {
            return Err(PlanError::unsupported("GROUPING SETS, ROLLUP and CUBE are not supported yet")
                .near(self.sql, self.start, "GROUP"));
        }
        let group_exprs = aggregate
            .group_expr
            .iter()
            .map(|expr| self.state.create_physical_expr(expr.clone(), input_schema))
            .collect::<datafusion::common::Result<Vec<_>>>()?;
        let mut aggregates = Vec::new();
        let mut filters = Vec::new();
        for expr in &aggregate.aggr_expr {
            #[allow(deprecated)]
            let (aggregate, filter, _ordering) = datafusion::physical_planner::create_aggregate_expr_and_maybe_filter(
                expr,
                input_schema,
                input_schema.as_arrow(),
                self.state.execution_props(),
            )?;
            aggregates.push(aggregate);
            filters.push(filter);
        }
        for function in &aggregates {
            // Streams aggregate incrementally: an aggregate needs an accumulator.
            let usable = (function.groups_accumulator_supported() && function.create_groups_accumulator().is_ok())
                || function.create_accumulator().is_ok();
            if !usable {
                let name = function.fun().name().to_string();
                return Err(PlanError::unsupported(format!(
                    "aggregate {name} has no accumulator to run incrementally"
                ))
                .near(self.sql, self.start, &name));
            }
        }
        let output_schema = Arc::new(aggregate.schema.as_arrow().clone());

        // Grouped by a HOP or CUMULATE window (panes merged into windows) or
        // by a SESSION window.
        let panes = match input.window {
            Some(WindowKind::Session { .. }) => true,
            Some(WindowKind::Hop { .. } | WindowKind::Cumulate { .. }) => !self.whole_windows(),
            _ => false,
        };
        if let Some(kind) = input.window.filter(|_| panes)
            && let Some(lowered) = self.grouped_window(aggregate, &input, kind, aggregates.clone(), filters.clone())?
        {
            return Ok(lowered);
        }

        // Grouped by a window: the window closes on the watermark.
        let window_column = |name: &str| {
            aggregate.group_expr.iter().find_map(|expr| match expr {
                Expr::Column(column) if column.name == name => Some(column.clone()),
                _ => None,
            })
        };
        let window_end =
            input.window.and_then(|window| match (window_column(WINDOW_END), window_column(WINDOW_START)) {
                (Some(end), _) => Some(Expr::Column(end)),
                (None, Some(start)) if !matches!(window, WindowKind::Cumulate { .. }) => {
                    Some(col(start) + lit(ScalarValue::DurationNanosecond(Some(window.size()))))
                }
                (None, Some(_)) => None,
                (None, None) => None,
            });
        if window_end.is_none()
            && matches!(input.window, Some(WindowKind::Cumulate { .. }))
            && window_column(WINDOW_START).is_some()
        {
            return Err(PlanError::invalid(
                "a CUMULATE window with EMIT or allowed_lateness must be grouped by window_end",
            )
            .near(self.sql, self.start, "GROUP"));
        }
        if let Some(window_end) = window_end {
            if input.updating {
                return Err(PlanError::unsupported("a window aggregate over an updating input is not supported yet")
                    .near(self.sql, self.start, "GROUP"));
            }
            let window_end = self.state.create_physical_expr(window_end, input_schema)?;
            let spec = WindowAggregateSpec {
                input_schema: input.schema.clone(),
                group_exprs,
                window_end,
                aggregates,
                filters,
                output_schema: output_schema.clone(),
                emit: self.options.emit,
                allowed_lateness: self.options.allowed_lateness,
            };
            let node = self.push(OperatorSpec::WindowAggregate(spec), vec![input.node]);
            // Late rows (allowed lateness) and early results (EMIT) make
            // later rows correct emitted ones.
            let updating = self.updates_fired_windows();
            let (window_results, partition_keys) = (!updating, Vec::new());
            let times = TimeColumns::windows(&output_schema);
            return Ok(Lowered {
                node,
                schema: output_schema,
                window_results,
                window: None,
                updating,
                partition_keys,
                times,
            });
        }

        // Otherwise running state per key, emitted as a changelog.
        let spec = GroupAggregateSpec {
            input_schema: input.schema.clone(),
            group_exprs,
            aggregates,
            filters,
            output_schema: output_schema.clone(),
            input_updating: input.updating,
            state_ttl: self.options.state_ttl,
        };
        let node = self.push(OperatorSpec::GroupAggregate(spec), vec![input.node]);
        Ok(Lowered::updating(node, output_schema, TimeColumns::default()))
    }
}

/// What the pane and session window specs share: the GROUP BY split into
/// window columns and keys, each row's time, the aggregates.
struct WindowGroup {
    input_schema: SchemaRef,
    /// Each row's pane start (a session's row: its event time).
    time: Arc<dyn PhysicalExpr>,
    key_exprs: Vec<Arc<dyn PhysicalExpr>>,
    layout: Vec<GroupColumn>,
    aggregates: Vec<Arc<AggregateFunctionExpr>>,
    filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    output_schema: SchemaRef,
}

impl Lowering<'_> {
    /// A HOP, CUMULATE or SESSION aggregate, or `None` when the GROUP BY
    /// has no window column (then it is an unbounded aggregate).
    fn grouped_window(
        &mut self,
        aggregate: &Aggregate,
        input: &Lowered,
        kind: WindowKind,
        aggregates: Vec<Arc<AggregateFunctionExpr>>,
        filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    ) -> Result<Option<Lowered>> {
        let Some(group) = self.window_group(aggregate, input, kind, aggregates, filters)? else {
            return Ok(None);
        };
        Ok(Some(match kind {
            WindowKind::Session { gap } => self.session_window(aggregate, input, gap, group)?,
            _ => self.pane_window(input, kind, group),
        }))
    }

    /// The GROUP BY of a window aggregate in the layout the pane and
    /// session windows take, or `None` without a window column.
    fn window_group(
        &self,
        aggregate: &Aggregate,
        input: &Lowered,
        kind: WindowKind,
        aggregates: Vec<Arc<AggregateFunctionExpr>>,
        filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    ) -> Result<Option<WindowGroup>> {
        let input_schema = aggregate.input.schema();
        let mut layout = Vec::new();
        let mut key_exprs = Vec::new();
        for expr in &aggregate.group_expr {
            let column = match expr {
                Expr::Column(column) if column.name == WINDOW_START => GroupColumn::WindowStart,
                Expr::Column(column) if column.name == WINDOW_END => GroupColumn::WindowEnd,
                Expr::Column(column) if column.name == WINDOW_TIME => GroupColumn::WindowTime,
                other => {
                    let uses_window = other
                        .column_refs()
                        .iter()
                        .any(|column| [WINDOW_START, WINDOW_END, WINDOW_TIME].contains(&column.name.as_str()));
                    if uses_window {
                        return Err(PlanError::unsupported(
                            "HOP, CUMULATE and SESSION windows are grouped by window_start, window_end or window_time as they are, not by expressions of them",
                        )
                        .near(self.sql, self.start, "GROUP"));
                    }
                    key_exprs.push(self.state.create_physical_expr(other.clone(), input_schema)?);
                    GroupColumn::Key(key_exprs.len() - 1)
                }
            };
            layout.push(column);
        }
        if !layout.iter().any(|column| matches!(column, GroupColumn::WindowStart | GroupColumn::WindowEnd)) {
            return Ok(None);
        }
        if input.updating {
            return Err(PlanError::unsupported("a window aggregate over an updating input is not supported yet")
                .near(self.sql, self.start, "GROUP"));
        }
        // Rows carry their pane's bounds in the window columns.
        let column =
            |name: &str| input_schema.columns().into_iter().find(|column| column.name == name).map(Expr::Column);
        let pane_start = match (column(WINDOW_START), column(WINDOW_END)) {
            (Some(start), _) => start,
            (None, Some(end)) => end - lit(ScalarValue::DurationNanosecond(Some(kind.pane_size()))),
            (None, None) => {
                return Err(PlanError::invalid("internal: the window columns are missing below the aggregate"));
            }
        };
        Ok(Some(WindowGroup {
            input_schema: input.schema.clone(),
            time: self.state.create_physical_expr(pane_start, input_schema)?,
            key_exprs,
            layout,
            aggregates,
            filters,
            output_schema: Arc::new(aggregate.schema.as_arrow().clone()),
        }))
    }

    /// A SESSION aggregate: sessions per `PARTITION BY` key, closed by the
    /// gap.
    fn session_window(
        &mut self,
        aggregate: &Aggregate,
        input: &Lowered,
        gap: i64,
        group: WindowGroup,
    ) -> Result<Lowered> {
        let input_schema = aggregate.input.schema();
        let mut partition_exprs = Vec::new();
        for key in &input.partition_keys {
            let column =
                aggregate.group_expr.iter().find(|expr| matches!(expr, Expr::Column(column) if &column.name == key));
            let Some(column) = column else {
                return Err(PlanError::invalid(format!(
                    "the SESSION window's PARTITION BY column {key:?} must also be in GROUP BY"
                ))
                .near(self.sql, self.start, key));
            };
            partition_exprs.push(self.state.create_physical_expr(column.clone(), input_schema)?);
        }
        let WindowGroup { input_schema, time, key_exprs, layout, aggregates, filters, output_schema } = group;
        let spec = SessionWindowSpec {
            gap,
            input_schema,
            time,
            partition_exprs,
            key_exprs,
            layout,
            aggregates,
            filters,
            output_schema: output_schema.clone(),
            emit: self.options.emit,
            allowed_lateness: self.options.allowed_lateness,
        };
        let node = self.push(OperatorSpec::SessionWindow(spec), vec![input.node]);
        // Sessions of many keys close together: one batch is not one window.
        let (window_results, partition_keys) = (false, Vec::new());
        let updating = self.updates_fired_windows();
        let schema = output_schema;
        let times = TimeColumns::default();
        Ok(Lowered { node, schema, window_results, window: None, updating, partition_keys, times })
    }

    /// A HOP or CUMULATE aggregate: partials per pane, merged into windows.
    fn pane_window(&mut self, input: &Lowered, kind: WindowKind, group: WindowGroup) -> Lowered {
        let WindowGroup { input_schema, time, key_exprs, layout, aggregates, filters, output_schema } = group;
        let spec = PaneWindowSpec {
            kind,
            input_schema,
            pane_start: time,
            key_exprs,
            layout,
            aggregates,
            filters,
            output_schema,
        };
        let schema = spec.output_schema.clone();
        let node = self.push(OperatorSpec::PaneWindow(spec), vec![input.node]);
        let partition_keys = Vec::new();
        let times = TimeColumns::windows(&schema);
        Lowered { node, schema, window_results: true, window: None, updating: false, partition_keys, times }
    }
}

impl Lowering<'_> {
    /// Early results (EMIT) and allowed lateness work on whole windows, so
    /// HOP and CUMULATE rows are then copied into each of their windows
    /// rather than aggregated by pane.
    fn whole_windows(&self) -> bool {
        self.updates_fired_windows() || self.expand_windows
    }

    /// Early results (EMIT) and late rows within the allowed lateness
    /// correct windows already emitted: the result is updating.
    fn updates_fired_windows(&self) -> bool {
        self.options.emit.is_some() || self.options.allowed_lateness.is_some()
    }
}

/// Nodes DataFusion runs per batch without state.
fn is_stateless(plan: &LogicalPlan) -> bool {
    matches!(
        plan,
        LogicalPlan::Projection(_)
            | LogicalPlan::Filter(_)
            | LogicalPlan::SubqueryAlias(_)
            | LogicalPlan::Unnest(_)
            | LogicalPlan::Sort(_)
            | LogicalPlan::Limit(_)
            | LogicalPlan::Window(_)
    )
}

/// Whether `plan`'s rows arrive one closed window per batch: below the
/// stateless nodes is a window aggregate.
fn produces_window_results(plan: &LogicalPlan) -> bool {
    let mut cursor = plan;
    while is_stateless(cursor) {
        cursor = cursor.inputs()[0];
    }
    match cursor {
        LogicalPlan::Aggregate(aggregate) => aggregate.group_expr.iter().any(
            |expr| matches!(expr, Expr::Column(column) if column.name == WINDOW_START || column.name == WINDOW_END),
        ),
        _ => false,
    }
}

impl PlanError {
    /// Points the error at the first `keyword` of the query text.
    pub(crate) fn near(self, sql: &str, start: Location, keyword: &str) -> Self {
        self.near_name(sql, keyword, start)
    }
}
