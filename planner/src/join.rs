//! Lowering joins: which runtime join a DataFusion `Join` becomes.
//!
//! | inputs                                   | operator        |
//! |------------------------------------------|-----------------|
//! | a stream and a static table              | `lookup_join`   |
//! | a stream and `t FOR SYSTEM_TIME AS OF x` | `temporal_join` |
//! | two windowed streams, ON window columns  | `window_join`   |
//! | two streams, a two-sided time bound      | `interval_join` |
//! | two streams otherwise                    | `unbounded_join` (warns without `state_ttl`) |
//!
//! The ON condition's equalities are the join keys (DataFusion's
//! `ExtractEquijoinPredicate` splits them out); the rest is evaluated on
//! candidate pairs. A time bound is read from the rest: conditions such as
//! `b.ts BETWEEN a.ts - INTERVAL '1' MINUTE AND a.ts + INTERVAL '2' MINUTE`
//! (or `>=`/`<=` pairs) between the two sides' event-time attributes.

use std::sync::Arc;

use datafusion::common::{Column, DFSchema, ExprSchema, ScalarValue};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Extension, Join, JoinType, LogicalPlan, Operator};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column as ColumnExpr;
use datafusion::physical_planner::{DefaultPhysicalPlanner, PhysicalPlanner};
use sluice_runtime::operators::join_condition::{JoinCondition, JoinKind, Side};
use sluice_runtime::operators::lookup_join::LookupJoinSpec;
use sluice_runtime::operators::stateless::StatelessSpec;
use sluice_runtime::operators::stream_join::{StreamJoinSpec, TimeBound};
use sluice_runtime::operators::temporal_join::TemporalJoinSpec;
use sluice_runtime::operators::window_assign::{WINDOW_END, WINDOW_START, WindowKind};
use sluice_runtime::operators::window_join::WindowJoinSpec;
use sluice_runtime::table::TableRef;
use sluice_runtime::{OperatorSpec, PlanNode};

use crate::error::{PlanError, Result};
use crate::feed::{FeedNode, FeedPlanner};
use crate::interval::{MAX_INTERVAL_DAYS, MAX_INTERVAL_NANOS};
use crate::lower::{Lowered, Lowering, TimeColumns};
use crate::rewritten::{AS_OF_COLUMN, TemporalTable};

impl Lowering<'_> {
    pub(crate) async fn join(&mut self, join: &Join) -> Result<Lowered> {
        let kind = match join.join_type {
            JoinType::Inner => JoinKind::Inner,
            JoinType::Left => JoinKind::Left,
            JoinType::Right => JoinKind::Right,
            JoinType::Full => JoinKind::Full,
            other => {
                return Err(PlanError::unsupported(format!(
                    "{other} joins (from IN / EXISTS subqueries) are not supported on streams"
                ))
                .near(self.sql, self.start, "JOIN"));
            }
        };
        match (self.static_table(&join.left), self.static_table(&join.right)) {
            (Some(_), Some(_)) => {
                return Err(PlanError::invalid(
                    "a join of two tables is not a continuous query: join a stream with a table",
                )
                .near(self.sql, self.start, "JOIN"));
            }
            (None, Some(table)) => return self.lookup_join(join, kind, Side::Left, table).await,
            (Some(table), None) => return self.lookup_join(join, kind, Side::Right, table).await,
            (None, None) => {}
        }
        if self.temporal_scan(&join.left).is_some() {
            return Err(PlanError::invalid(
                "the versioned table (FOR SYSTEM_TIME AS OF) goes on the right of the join: stream JOIN table FOR SYSTEM_TIME AS OF ...",
            )
            .near(self.sql, self.start, "SYSTEM_TIME"));
        }
        if let Some(scan) = self.temporal_scan(&join.right) {
            return self.temporal_join(join, kind, scan).await;
        }
        if join.on.is_empty() {
            return Err(PlanError::invalid(
                "a join of two streams needs an equality between them (ON a.key = b.key): without one every row would meet every other",
            )
            .near(self.sql, self.start, "JOIN"));
        }
        // Joined on window columns: rows are copied into each of their
        // windows (HOP/CUMULATE) rather than carried by pane.
        let on_windows = join.on.iter().any(|(left, right)| {
            [WINDOW_START, WINDOW_END].iter().any(|name| is_column(left, name) && is_column(right, name))
        });
        let expand = self.expand_windows;
        self.expand_windows = expand || on_windows;
        let left = self.lower(&join.left).await;
        let right = self.lower(&join.right).await;
        self.expand_windows = expand;
        let (left, right) = (left?, right?);
        let (left_keys, right_keys) = self.join_keys(join)?;
        let filter = match &join.filter {
            Some(filter) => Some(self.state.create_physical_expr(filter.clone(), &join.schema)?),
            None => None,
        };
        let output_schema = Arc::new(join.schema.as_arrow().clone());
        // Joined on the window columns (by their current names) of two
        // windowed inputs: window TVFs or window aggregates' results.
        let same_window_column = |left_name: &Option<String>, right_name: &Option<String>| {
            join.on.iter().any(|(l, r)| {
                matches!((l, r, left_name, right_name), (Expr::Column(l), Expr::Column(r), Some(ln), Some(rn)) if &l.name == ln && &r.name == rn)
            })
        };
        let on_window_columns = same_window_column(&left.times.window_start, &right.times.window_start)
            || same_window_column(&left.times.window_end, &right.times.window_end);
        let windowed = |input: &Lowered| input.window.is_some() || input.window_results;
        if on_window_columns && windowed(&left) && windowed(&right) {
            return self.window_join(join, left, right).await;
        }
        let (lower, upper) = self.time_bound(join, &left, &right)?;
        let bound = match (lower, upper) {
            (Some((lower, left_time)), Some((upper, right_time))) => {
                if lower > upper {
                    return Err(PlanError::invalid(
                        "the join's time bound is empty: its lower end is above its upper end",
                    )
                    .near(self.sql, self.start, "BETWEEN"));
                }
                Some(TimeBound { left_time, right_time, lower, upper })
            }
            (Some(_), None) | (None, Some(_)) => {
                self.plan.warnings.push(
                    "the join's time condition bounds one side only, so it is not an interval join: every row is kept"
                        .into(),
                );
                None
            }
            (None, None) => None,
        };
        if bound.is_some() && (left.updating || right.updating) {
            return Err(PlanError::unsupported("an interval join reads append-only inputs, not updating results")
                .near(self.sql, self.start, "JOIN"));
        }
        if bound.is_none() && self.options.state_ttl.is_none() {
            self.plan.warnings.push(
                "this join has no time bound, so its state grows without bound: add one (b.ts BETWEEN a.ts - INTERVAL ... AND a.ts + INTERVAL ...), or SET state_ttl"
                    .into(),
            );
        }
        let updating = bound.is_none() && (left.updating || right.updating || kind != JoinKind::Inner);
        let spec = StreamJoinSpec {
            kind,
            left_schema: left.schema.clone(),
            right_schema: right.schema.clone(),
            condition: JoinCondition { left_keys, right_keys, filter },
            bound,
            output_schema: output_schema.clone(),
            updating,
            state_ttl: self.options.state_ttl,
        };
        let node = self.push(OperatorSpec::StreamJoin(spec), vec![left.node, right.node]);
        Ok(Lowered {
            node,
            schema: output_schema,
            window_results: false,
            window: None,
            updating,
            partition_keys: Vec::new(),
            times: TimeColumns::default(),
        })
    }

    /// Physical key expressions of both sides, pairwise.
    fn join_keys(&self, join: &Join) -> Result<(Keys, Keys)> {
        let mut left_keys = Vec::new();
        let mut right_keys = Vec::new();
        for (left, right) in &join.on {
            left_keys.push(self.state.create_physical_expr(left.clone(), join.left.schema())?);
            right_keys.push(self.state.create_physical_expr(right.clone(), join.right.schema())?);
        }
        Ok((left_keys, right_keys))
    }

    /// The time bound of the ON condition: `right.time - left.time` at least
    /// and at most, each with the column index it was read from.
    fn time_bound(&self, join: &Join, left: &Lowered, right: &Lowered) -> Result<(Option<BoundEnd>, Option<BoundEnd>)> {
        let Some(filter) = &join.filter else { return Ok((None, None)) };
        let mut comparisons = Vec::new();
        for conjunct in split_conjunction(filter) {
            match conjunct {
                Expr::Between(Between { expr, negated: false, low, high }) => {
                    comparisons.push(((**expr).clone(), Operator::GtEq, (**low).clone()));
                    comparisons.push(((**expr).clone(), Operator::LtEq, (**high).clone()));
                }
                Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                    comparisons.push(((**left).clone(), *op, (**right).clone()));
                }
                _ => {}
            }
        }
        let (mut lower, mut upper): (Option<i64>, Option<i64>) = (None, None);
        let mut columns = None;
        for (a, op, b) in comparisons {
            if !matches!(op, Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq) {
                continue;
            }
            let (Some((a_column, a_offset)), Some((b_column, b_offset))) = (linear(&a), linear(&b)) else { continue };
            let side_of = |column: &Column| {
                if join.left.schema().has_column(column) {
                    Some(Side::Left)
                } else if join.right.schema().has_column(column) {
                    Some(Side::Right)
                } else {
                    None
                }
            };
            // right - left  op  k
            let (op, k, left_column, right_column) = match (side_of(&a_column), side_of(&b_column)) {
                (Some(Side::Right), Some(Side::Left)) => (op, b_offset - a_offset, b_column, a_column),
                (Some(Side::Left), Some(Side::Right)) => (flip(op), a_offset - b_offset, a_column, b_column),
                _ => continue,
            };
            let is_time = |schema: &DFSchema, column: &Column| {
                schema.field_from_column(column).is_ok_and(|field| {
                    matches!(field.data_type(), datafusion::arrow::datatypes::DataType::Timestamp(_, _))
                })
            };
            if !is_time(join.left.schema(), &left_column) || !is_time(join.right.schema(), &right_column) {
                continue;
            }
            // Other timestamps (an auction's `expires`) are plain conditions.
            let (Ok(left_time), Ok(right_time)) =
                (self.event_time_index(left, &left_column), self.event_time_index(right, &right_column))
            else {
                continue;
            };
            // The bound is user input: at most MAX_INTERVAL_DAYS either way.
            let k = match i64::try_from(k) {
                Ok(k) if k.unsigned_abs() <= MAX_INTERVAL_NANOS.unsigned_abs() => k,
                _ => {
                    return Err(PlanError::invalid(format!(
                        "the join's time bound is too long: intervals are at most {MAX_INTERVAL_DAYS} days"
                    ))
                    .near(self.sql, self.start, "INTERVAL"));
                }
            };
            columns = Some((left_time, right_time));
            match op {
                Operator::GtEq => lower = Some(lower.map_or(k, |lower| lower.max(k))),
                Operator::Gt => lower = Some(lower.map_or(k + 1, |lower| lower.max(k + 1))),
                Operator::LtEq => upper = Some(upper.map_or(k, |upper| upper.min(k))),
                Operator::Lt => upper = Some(upper.map_or(k - 1, |upper| upper.min(k - 1))),
                _ => {}
            }
        }
        let Some((left_time, right_time)) = columns else { return Ok((None, None)) };
        Ok((lower.map(|lower| (lower, left_time)), upper.map(|upper| (upper, right_time))))
    }

    /// The index of `column` in the lowered input, which must be the input's
    /// event-time attribute: the watermark purges the join's state by it.
    fn event_time_index(&self, input: &Lowered, column: &Column) -> Result<usize> {
        match &input.times.event {
            Some(event) if *event == column.name => Ok(input.schema.index_of(event).map_err(datafusion::common::DataFusionError::from)?),
            Some(event) => Err(PlanError::invalid(format!(
                "the join's time bound uses {column}, but the watermark of that input is on {event}: bound the join by event-time attributes"
            ))
            .near(self.sql, self.start, &column.name)),
            None => Err(PlanError::invalid(format!(
                "the join's time bound uses {column}, which carries no watermark (an event-time attribute declared with WATERMARK FOR)"
            ))
            .near(self.sql, self.start, &column.name)),
        }
    }

    /// A windowed input joined with another on their window columns.
    async fn window_join(&mut self, join: &Join, left: Lowered, right: Lowered) -> Result<Lowered> {
        if left.window.is_some() && right.window.is_some() && left.window != right.window {
            return Err(PlanError::invalid(
                "both inputs of a window join must use the same window (kind, size and slide)",
            )
            .near(self.sql, self.start, "JOIN"));
        }
        if matches!(left.window, Some(WindowKind::Session { .. })) {
            return Err(PlanError::unsupported("SESSION windows cannot be joined; aggregate them first")
                .near(self.sql, self.start, "SESSION"));
        }
        if left.updating || right.updating {
            return Err(PlanError::unsupported("a window join reads append-only inputs, not updating results")
                .near(self.sql, self.start, "JOIN"));
        }
        let window_end = |input: &Lowered| {
            let name = input.times.window_end.as_deref().unwrap_or(WINDOW_END);
            input.schema.index_of(name).map_err(|_| {
                PlanError::invalid("a window join is ON both window_start and window_end (l.window_end = r.window_end)")
                    .near(self.sql, self.start, "JOIN")
            })
        };
        let window_end = [window_end(&left)?, window_end(&right)?];
        let left_feed = FeedNode::new(join.left.schema().clone(), left.schema.clone(), None);
        let right_feed = FeedNode::new(join.right.schema().clone(), right.schema.clone(), None);
        let feeds = [left_feed.slot.clone(), right_feed.slot.clone()];
        let logical = LogicalPlan::Join(Join {
            left: Arc::new(LogicalPlan::Extension(Extension { node: Arc::new(left_feed) })),
            right: Arc::new(LogicalPlan::Extension(Extension { node: Arc::new(right_feed) })),
            ..join.clone()
        });
        let planner = DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(FeedPlanner)]);
        let plan = planner.create_physical_plan(&logical, self.state).await?;
        let schema = plan.schema();
        let spec = WindowJoinSpec { plan, feeds, schemas: [left.schema.clone(), right.schema.clone()], window_end };
        let node = self.push(OperatorSpec::WindowJoin(spec), vec![left.node, right.node]);
        Ok(Lowered {
            node,
            schema,
            window_results: true,
            window: None,
            updating: false,
            partition_keys: Vec::new(),
            times: TimeColumns::default(),
        })
    }

    /// The static table `plan` reads through stateless nodes, if it does.
    fn static_table(&self, plan: &LogicalPlan) -> Option<TableRef> {
        let mut cursor = plan;
        loop {
            match cursor {
                LogicalPlan::SubqueryAlias(_) | LogicalPlan::Projection(_) | LogicalPlan::Filter(_) => {
                    cursor = cursor.inputs()[0];
                }
                LogicalPlan::TableScan(scan) => return self.catalog.table(scan.table_name.table()),
                _ => return None,
            }
        }
    }

    /// A stream joined with a static table.
    async fn lookup_join(
        &mut self,
        join: &Join,
        kind: JoinKind,
        stream_side: Side,
        table: TableRef,
    ) -> Result<Lowered> {
        if kind.keeps_unmatched(stream_side.other()) {
            return Err(PlanError::unsupported(
                "an outer join that keeps the table's unmatched rows is not a stream: use JOIN, or LEFT JOIN with the stream on the left",
            )
            .near(self.sql, self.start, "JOIN"));
        }
        if join.on.is_empty() {
            return Err(PlanError::invalid(
                "a stream-table join needs an equality between the stream and the table (ON s.key = t.key)",
            )
            .near(self.sql, self.start, "JOIN"));
        }
        let (stream_plan, table_plan) = match stream_side {
            Side::Left => (&join.left, &join.right),
            Side::Right => (&join.right, &join.left),
        };
        let stream = self.lower(stream_plan).await?;
        let table_side = self.table_segment(table_plan, &table).await?;
        let (left_keys, right_keys) = self.join_keys(join)?;
        let filter = match &join.filter {
            Some(filter) => Some(self.state.create_physical_expr(filter.clone(), &join.schema)?),
            None => None,
        };
        let output_schema = Arc::new(join.schema.as_arrow().clone());
        let spec = LookupJoinSpec {
            kind,
            stream_side,
            table,
            table_plan: table_side,
            stream_schema: stream.schema.clone(),
            condition: JoinCondition { left_keys, right_keys, filter },
            output_schema: output_schema.clone(),
        };
        let node = self.push(OperatorSpec::LookupJoin(spec), vec![stream.node]);
        let times = stream.times.within(&output_schema);
        Ok(Lowered { node, schema: output_schema, times, ..stream })
    }

    /// The stateless nodes over a static table's scan, as a DataFusion plan
    /// run on the table's rows whenever they change.
    async fn table_segment(&self, plan: &LogicalPlan, table: &TableRef) -> Result<StatelessSpec> {
        let mut chain = Vec::new();
        let mut cursor = plan;
        let scan = loop {
            match cursor {
                LogicalPlan::TableScan(scan) => break scan,
                other => {
                    chain.push(other);
                    cursor = other.inputs()[0];
                }
            }
        };
        let feed = FeedNode::new(scan.projected_schema.clone(), table.schema.clone(), scan.projection.clone());
        self.feed_plan(&chain, feed).await
    }

    /// The versioned table `plan` scans: the table, the scan's projection
    /// and the conditions on the table alone that were pushed below the
    /// join (over the scan's columns).
    fn temporal_scan(&self, plan: &LogicalPlan) -> Option<TemporalScan> {
        let mut cursor = plan;
        let mut filters = Vec::new();
        loop {
            match cursor {
                LogicalPlan::SubqueryAlias(alias) => cursor = &alias.input,
                LogicalPlan::Filter(filter) => {
                    filters.push(filter.clone());
                    cursor = &filter.input;
                }
                _ => break,
            }
        }
        let LogicalPlan::TableScan(scan) = cursor else { return None };
        let table = self.temporal.iter().find(|temporal| temporal.table == scan.table_name.table())?;
        Some(TemporalScan { table: table.clone(), projection: scan.projection.clone(), filters })
    }

    /// A stream joined with the version of a table valid at each row's time.
    async fn temporal_join(&mut self, join: &Join, kind: JoinKind, scan: TemporalScan) -> Result<Lowered> {
        let TemporalScan { table: temporal, projection, filters } = scan;
        let mut right_filter = None;
        for filter in filters {
            let expr = self.state.create_physical_expr(filter.predicate.clone(), filter.input.schema())?;
            let schema = Arc::new(filter.input.schema().as_arrow().clone());
            right_filter = match right_filter {
                None => Some((expr, schema)),
                Some(_) => {
                    return Err(PlanError::unsupported("several conditions on a versioned table alone").near(
                        self.sql,
                        self.start,
                        "SYSTEM_TIME",
                    ));
                }
            };
        }
        let table = temporal.source.stream.clone();
        if !matches!(kind, JoinKind::Inner | JoinKind::Left) {
            return Err(
                PlanError::unsupported("a temporal join is a JOIN or a LEFT JOIN").near(self.sql, self.start, "JOIN")
            );
        }
        let left = self.lower(&join.left).await?;
        if left.updating {
            return Err(PlanError::unsupported("a temporal join reads an append-only stream, not an updating result")
                .near(self.sql, self.start, "JOIN"));
        }
        // The rewrite equated the AS OF time with the table's `__as_of`.
        let as_of = join.on.iter().find_map(|(left, right)| match (linear(left), right) {
            (Some((left, 0)), Expr::Column(right)) if right.name == AS_OF_COLUMN => Some(left.name.clone()),
            _ => None,
        });
        let as_of = as_of.unwrap_or_default();
        let left_time = if left.times.event.as_deref() == Some(as_of.as_str()) {
            Some(left.schema.index_of(&as_of).map_err(datafusion::common::DataFusionError::from)?)
        } else if left.times.processing.as_deref() == Some(as_of.as_str()) {
            None
        } else {
            return Err(PlanError::invalid(format!(
                "FOR SYSTEM_TIME AS OF takes the left stream's event-time attribute (with a WATERMARK) or its PROCTIME() column{}",
                if as_of.is_empty() { String::new() } else { format!(", and {as_of} is neither") }
            ))
            .near(self.sql, self.start, "SYSTEM_TIME"));
        };
        let as_of_column = left.schema.index_of(&as_of).map_err(datafusion::common::DataFusionError::from)?;
        let source = temporal.source.clone();
        let right_schema = source.schema.clone();
        let right_time = source.event_time.map(|event_time| event_time.column).unwrap_or_default();
        let mut left_keys = Vec::new();
        let mut right_keys: Vec<Arc<dyn PhysicalExpr>> = Vec::new();
        let mut covered = Vec::new();
        let is_as_of = |expr: &Expr| matches!(expr, Expr::Column(column) if column.name == AS_OF_COLUMN);
        for (left_expr, right_expr) in &join.on {
            let name = match right_expr {
                Expr::Column(column) if source.primary_key.contains(&column.name) => column.name.clone(),
                _ => continue,
            };
            left_keys.push(self.state.create_physical_expr(left_expr.clone(), join.left.schema())?);
            right_keys.push(Arc::new(ColumnExpr::new(
                &name,
                right_schema.index_of(&name).map_err(datafusion::common::DataFusionError::from)?,
            )));
            covered.push(name);
        }
        if source.primary_key.iter().any(|key| !covered.contains(key)) {
            return Err(PlanError::invalid(format!(
                "a temporal join is ON the versioned table's PRIMARY KEY: {table}.{} = ...",
                source.primary_key.join(format!(" AND {table}.").as_str())
            ))
            .near(self.sql, self.start, "ON"));
        }
        // Equalities on other columns are checked with the rest of ON.
        let extra: Vec<Expr> = join
            .on
            .iter()
            .filter(|(_, right)| !matches!(right, Expr::Column(column) if source.primary_key.contains(&column.name)))
            .filter(|(_, right)| !is_as_of(right))
            .map(|(left, right)| left.clone().eq(right.clone()))
            .chain(join.filter.clone())
            .collect();
        let filter = match extra.into_iter().reduce(Expr::and) {
            Some(filter) => Some(self.state.create_physical_expr(filter, &join.schema)?),
            None => None,
        };
        self.plan.sources.push(source);
        self.plan.nodes.push(PlanNode::Source { index: self.plan.sources.len() - 1 });
        let right_node = self.plan.nodes.len() - 1;
        let output_schema = Arc::new(join.schema.as_arrow().clone());
        let spec = TemporalJoinSpec {
            kind,
            left_schema: left.schema.clone(),
            right_schema: right_schema.clone(),
            condition: JoinCondition { left_keys, right_keys, filter },
            left_time,
            right_time,
            right_output: projection
                .unwrap_or_else(|| (0..=right_schema.fields().len()).collect())
                .into_iter()
                .map(|column| (column < right_schema.fields().len()).then_some(column))
                .collect(),
            as_of_column,
            right_filter,
            output_schema: output_schema.clone(),
        };
        let node = self.push(OperatorSpec::TemporalJoin(spec), vec![left.node, right_node]);
        let times = left.times.within(&output_schema);
        Ok(Lowered {
            node,
            schema: output_schema,
            window_results: false,
            window: left.window,
            updating: false,
            partition_keys: left.partition_keys,
            times,
        })
    }
}

/// Key expressions of one side of a join.
type Keys = Vec<Arc<dyn PhysicalExpr>>;

/// One end of a time bound (nanoseconds) and the column index it was read from.
type BoundEnd = (i64, usize);

struct TemporalScan {
    table: TemporalTable,
    projection: Option<Vec<usize>>,
    filters: Vec<datafusion::logical_expr::Filter>,
}

fn is_column(expr: &Expr, name: &str) -> bool {
    matches!(expr, Expr::Column(column) if column.name == name)
}

/// `op` with its sides swapped.
fn flip(op: Operator) -> Operator {
    match op {
        Operator::Lt => Operator::Gt,
        Operator::LtEq => Operator::GtEq,
        Operator::Gt => Operator::Lt,
        Operator::GtEq => Operator::LtEq,
        other => other,
    }
}

/// `column + offset` (nanoseconds) for `column`, `column ± INTERVAL`. The
/// offset is an `i128`: sums of user-given intervals cannot overflow it.
fn linear(expr: &Expr) -> Option<(Column, i128)> {
    match expr {
        Expr::Column(column) => Some((column.clone(), 0)),
        Expr::Cast(cast) => linear(&cast.expr),
        Expr::TryCast(cast) => linear(&cast.expr),
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Plus, right }) => match (linear(left), interval(right)) {
            (Some((column, offset)), Some(nanos)) => Some((column, offset.checked_add(nanos)?)),
            _ => match (interval(left), linear(right)) {
                (Some(nanos), Some((column, offset))) => Some((column, offset.checked_add(nanos)?)),
                _ => None,
            },
        },
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Minus, right }) => {
            let (column, offset) = linear(left)?;
            Some((column, offset.checked_sub(interval(right)?)?))
        }
        _ => None,
    }
}

/// The length of a constant interval or duration, in nanoseconds.
fn interval(expr: &Expr) -> Option<i128> {
    const DAY: i128 = 86_400_000_000_000;
    let Expr::Literal(value, _) = expr else { return None };
    match value {
        ScalarValue::IntervalMonthDayNano(Some(interval)) if interval.months == 0 => {
            Some(i128::from(interval.days) * DAY + i128::from(interval.nanoseconds))
        }
        ScalarValue::IntervalDayTime(Some(interval)) => {
            Some(i128::from(interval.days) * DAY + i128::from(interval.milliseconds) * 1_000_000)
        }
        ScalarValue::DurationNanosecond(Some(nanos)) => Some(i128::from(*nanos)),
        ScalarValue::DurationMicrosecond(Some(micros)) => Some(i128::from(*micros) * 1_000),
        ScalarValue::DurationMillisecond(Some(millis)) => Some(i128::from(*millis) * 1_000_000),
        ScalarValue::DurationSecond(Some(seconds)) => Some(i128::from(*seconds) * 1_000_000_000),
        _ => None,
    }
}
