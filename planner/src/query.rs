//! Planning a continuous `SELECT`, once, when it is submitted.
//!
//! 1. Window TVFs are rewritten into scans of planner-made tables
//!    ([`crate::window_tvf`]).
//! 2. DataFusion plans the query against the catalog's streams and tables and
//!    optimises it with a rule set safe for streams (no rewrite that turns
//!    one aggregate into two, no limit pushed into a scan).
//! 3. The logical plan is lowered to a [`StreamPlan`] ([`crate::lower`]).

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::SessionContext;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::optimizer::OptimizerRule;
use datafusion::optimizer::eliminate_filter::EliminateFilter;
use datafusion::optimizer::extract_equijoin_predicate::ExtractEquijoinPredicate;
use datafusion::optimizer::optimize_projections::OptimizeProjections;
use datafusion::optimizer::simplify_expressions::SimplifyExpressions;
use datafusion::physical_optimizer::ensure_requirements::EnsureRequirements;
use datafusion::prelude::SessionConfig;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast;
use datafusion::sql::sqlparser::tokenizer::Location;
use sluice_runtime::StreamPlan;
use sluice_runtime::operators::window_assign::{WINDOW_END, WINDOW_START, WINDOW_TIME, WindowAssignSpec};
use sluice_runtime::table::StaticTable;

use crate::catalog::Catalog;
use crate::error::{PlanError, Result};
use crate::feed::StreamTable;
use crate::lower::Lowering;
use crate::match_recognize::{MatchTable, PatternTable, compile, rewrite_match_recognize};
use crate::options::PlanOptions;
use crate::pattern_clause::PatternClause;
use crate::rewritten::Rewritten;
use crate::unnest::rewrite_lateral_unnest;
use crate::window_tvf::rewrite_windows;

/// The DataFusion session used for planning: one partition, no physical
/// optimiser (stateless segments must stay simple, single-partition plans),
/// spans collected for error positions.
pub fn planning_state() -> SessionState {
    let mut config = SessionConfig::new().with_target_partitions(1);
    config.options_mut().sql_parser.collect_spans = true;
    let rules: Vec<Arc<dyn OptimizerRule + Send + Sync>> = vec![
        Arc::new(SimplifyExpressions::new()),
        Arc::new(EliminateFilter::new()),
        // WHERE conditions move into inner joins (FROM a, b WHERE a.k =
        // b.k), and equalities become the join's keys. (DataFusion's
        // PushDownFilter is not used: it would move a WHERE on window_start
        // below a HOP aggregate, where rows carry their pane.)
        Arc::new(WhereIntoInnerJoin),
        Arc::new(ExtractEquijoinPredicate::new()),
        Arc::new(SimplifyExpressions::new()),
        Arc::new(OptimizeProjections::new()),
    ];
    let mut state = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .with_optimizer_rules(rules)
        // Window functions (ROW_NUMBER() OVER ...) need their input sorted;
        // nothing else runs, so plans stay single-partition and simple.
        .with_physical_optimizer_rules(vec![Arc::new(EnsureRequirements::new())])
        .build();
    // TABLESAMPLE's row test (see `crate::sample`).
    let _ = datafusion::execution::FunctionRegistry::register_udf(&mut state, Arc::new(crate::sample::sample_udf()));
    state
}

/// Moves a WHERE directly above inner joins into them: each condition goes
/// to the lowest join of the tree that sees all its columns (a condition on
/// one input becomes a filter on that input), where
/// [`ExtractEquijoinPredicate`] finds the keys. `FROM a, b, c WHERE a.k =
/// b.k AND b.j = c.j` plans like `a JOIN b ON a.k = b.k JOIN c ON b.j = c.j`.
/// Only inner joins are entered, and nothing moves below anything else.
#[derive(Debug)]
struct WhereIntoInnerJoin;

impl OptimizerRule for WhereIntoInnerJoin {
    fn name(&self) -> &str {
        "where_into_inner_join"
    }

    fn apply_order(&self) -> Option<datafusion::optimizer::ApplyOrder> {
        Some(datafusion::optimizer::ApplyOrder::TopDown)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn datafusion::optimizer::OptimizerConfig,
    ) -> datafusion::common::Result<datafusion::common::tree_node::Transformed<LogicalPlan>> {
        use datafusion::common::tree_node::Transformed;
        use datafusion::logical_expr::utils::split_conjunction_owned;
        let LogicalPlan::Filter(filter) = &plan else { return Ok(Transformed::no(plan)) };
        if !is_inner_join(&filter.input) {
            return Ok(Transformed::no(plan));
        }
        let conditions = split_conjunction_owned(filter.predicate.clone());
        Ok(Transformed::yes(place_conditions(filter.input.as_ref().clone(), conditions)?))
    }
}

fn is_inner_join(plan: &LogicalPlan) -> bool {
    matches!(plan, LogicalPlan::Join(join) if join.join_type == datafusion::logical_expr::JoinType::Inner)
}

/// `plan` with `conditions` placed as low as the inner joins allow.
fn place_conditions(
    plan: LogicalPlan,
    conditions: Vec<datafusion::logical_expr::Expr>,
) -> datafusion::common::Result<LogicalPlan> {
    use datafusion::logical_expr::{Expr, Filter, Join};
    let join = match plan {
        LogicalPlan::Join(join) if join.join_type == datafusion::logical_expr::JoinType::Inner => join,
        other => {
            return Ok(match conditions.into_iter().reduce(Expr::and) {
                Some(predicate) => LogicalPlan::Filter(Filter::try_new(predicate, Arc::new(other))?),
                None => other,
            });
        }
    };
    if conditions.is_empty() {
        return Ok(LogicalPlan::Join(join));
    }
    let within = |plan: &LogicalPlan, condition: &Expr| {
        condition.column_refs().iter().all(|column| plan.schema().has_column(column))
    };
    let (mut left, mut right, mut here) = (Vec::new(), Vec::new(), Vec::new());
    for condition in conditions {
        // Conditions on one input go down only through further inner joins.
        if within(&join.left, &condition) && is_inner_join(&join.left) {
            left.push(condition);
        } else if within(&join.right, &condition) && is_inner_join(&join.right) {
            right.push(condition);
        } else {
            here.push(condition);
        }
    }
    let left_plan = place_conditions(join.left.as_ref().clone(), left)?;
    let right_plan = place_conditions(join.right.as_ref().clone(), right)?;
    let filter = join.filter.clone().into_iter().chain(here).reduce(Expr::and);
    Ok(LogicalPlan::Join(Join { left: Arc::new(left_plan), right: Arc::new(right_plan), filter, ..join }))
}

/// Plans the continuous query `query`; `sql` is the whole request text and
/// `start` where the statement starts in it, for error positions.
pub async fn plan_query(
    catalog: &dyn Catalog,
    query: &ast::Query,
    patterns: &[PatternClause],
    sql: &str,
    start: Location,
    options: &PlanOptions,
) -> Result<StreamPlan> {
    let located = |error: PlanError| {
        let name = mentioned_name(&error.message);
        let error = error.near_name(sql, name.as_deref().unwrap_or(""), start);
        if error.line.is_none() { error.at_location(start) } else { error }
    };
    let mut query = query.clone();
    let mut patterns = patterns.to_vec();
    let shedding = crate::catalog::Shedding(catalog);
    let samples = if options.shed {
        if !patterns.is_empty() {
            return Err(located(PlanError::unsupported(
                "SET max_lag does not apply to MATCH_RECOGNIZE: shedding events would change which patterns match",
            )));
        }
        // Every stream is read with its rows' rates; views first, so the
        // streams they read are shed too.
        crate::views::expand_views(&mut query, &mut patterns, &shedding).map_err(located)?;
        crate::sample::rewrite_samples(&mut query, &shedding, true).map_err(located)?
    } else {
        let samples = crate::sample::rewrite_samples(&mut query, catalog, false).map_err(located)?;
        crate::views::expand_views(&mut query, &mut patterns, catalog).map_err(located)?;
        samples
    };
    let catalog: &dyn Catalog = if options.shed { &shedding } else { catalog };
    let patterns = patterns.as_slice();
    rewrite_lateral_unnest(&mut query).map_err(located)?;
    let mut rewritten = rewrite_windows(&mut query, catalog).map_err(located)?;
    // MATCH_RECOGNIZE in the queries windows read (`TABLE (SELECT ...)`),
    // then in the query itself (which may read windows).
    let mut inner_matches = Vec::new();
    for window in rewritten.windows.iter_mut() {
        if let Some(subquery) = window.subquery.as_mut() {
            let first = inner_matches.len();
            inner_matches.extend(rewrite_match_recognize(subquery, patterns, first).map_err(located)?);
        }
    }
    let matches = rewrite_match_recognize(&mut query, patterns, inner_matches.len()).map_err(located)?;
    let state = planning_state();
    let context = SessionContext::new_with_state(state.clone());
    for name in catalog.stream_names() {
        if let Some(source) = catalog.stream(&name) {
            register(&context, &name, source.schema.clone()).map_err(located)?;
        }
    }
    for name in catalog.table_names() {
        if let Some(table) = catalog.table(&name) {
            register(&context, &name, table.schema.clone()).map_err(located)?;
        }
    }
    for sample in &samples {
        register(&context, &sample.table, sample.source.schema.clone()).map_err(located)?;
    }
    for temporal in &rewritten.temporal {
        register(&context, &temporal.table, temporal.schema()).map_err(located)?;
    }
    let mut pattern_tables = Vec::new();
    for table in inner_matches {
        let table = plan_pattern(&context, &state, table).await.map_err(located)?;
        register(&context, &table.table, table.spec.output_schema.clone()).map_err(located)?;
        pattern_tables.push(table);
    }
    let mut windows = rewritten.windows;
    for window in windows.iter_mut() {
        let input_schema = match (&window.source, &window.subquery) {
            (Some(source), _) => source.schema.clone(),
            (None, Some(subquery)) => {
                let (plan, time_column) =
                    plan_window_input(&context, &state, subquery, &window.time_name).await.map_err(located)?;
                window.time_column = time_column;
                let schema = Arc::new(plan.schema().as_arrow().clone());
                window.subquery_plan = Some(plan);
                schema
            }
            (None, None) => return Err(PlanError::invalid("internal: a window without input")),
        };
        let schema = WindowAssignSpec::new(window.kind, window.time_column, &input_schema).output_schema;
        register(&context, &window.table, schema).map_err(located)?;
    }
    for table in matches {
        let table = plan_pattern(&context, &state, table).await.map_err(located)?;
        register(&context, &table.table, table.spec.output_schema.clone()).map_err(located)?;
        pattern_tables.push(table);
    }
    let statement = DFStatement::Statement(Box::new(ast::Statement::Query(Box::new(query))));
    let logical = context.state().statement_to_plan(statement).await.map_err(|error| located(error.into()))?;
    let optimized = state.optimize(&logical).map_err(|error| located(error.into()))?;
    let rewritten = Rewritten { windows, temporal: rewritten.temporal, patterns: pattern_tables, samples };
    let mut lowering = Lowering::new(&state, catalog, rewritten, sql, start, options.clone());
    lowering.lower_root(&optimized).await.map_err(located)
}

/// Plans a MATCH_RECOGNIZE clause's input and compiles the clause over it.
async fn plan_pattern(context: &SessionContext, state: &SessionState, table: MatchTable) -> Result<PatternTable> {
    let input = DFStatement::Statement(Box::new(ast::Statement::Query(Box::new(table.input))));
    let logical = context.state().statement_to_plan(input).await?;
    let plan = state.optimize(&logical)?;
    let spec = compile(state, &table.clause, plan.schema())?;
    Ok(PatternTable { table: table.table, plan, spec, span: table.clause.span })
}

/// Plans the query a window TVF reads (`TABLE (SELECT ...)`) and finds its
/// time column: a timestamp the inner query carries as event time (such as
/// its `window_time`, renamed). The outer window adds its own window
/// columns, so the inner query must not output columns of those names.
async fn plan_window_input(
    context: &SessionContext,
    state: &SessionState,
    subquery: &ast::Query,
    time_name: &str,
) -> Result<(LogicalPlan, usize)> {
    let statement = DFStatement::Statement(Box::new(ast::Statement::Query(Box::new(subquery.clone()))));
    let logical = context.state().statement_to_plan(statement).await?;
    let plan = state.optimize(&logical)?;
    let schema = plan.schema().as_arrow().clone();
    for name in [WINDOW_START, WINDOW_END, WINDOW_TIME] {
        if schema.index_of(name).is_ok() {
            return Err(PlanError::invalid(format!(
                "a window over a query adds its own {name}; rename the query's column (e.g. window_time AS rowtime)"
            )));
        }
    }
    let time_column = schema
        .index_of(time_name)
        .map_err(|_| PlanError::unknown(format!("the windowed query has no column {time_name:?}")))?;
    if !matches!(schema.field(time_column).data_type(), DataType::Timestamp(_, _)) {
        return Err(PlanError::invalid(format!("the window time column {time_name:?} must be a TIMESTAMP")));
    }
    Ok((plan, time_column))
}

fn register(context: &SessionContext, name: &str, schema: SchemaRef) -> Result<()> {
    context.register_table(name, Arc::new(StreamTable { schema }))?;
    Ok(())
}

/// The name an error message is about ("table 'x' not found", "No field
/// named y"), to point at its first mention.
fn mentioned_name(message: &str) -> Option<String> {
    if message.contains("in BETWEEN") {
        return Some("BETWEEN".into());
    }
    let quoted = message.split('\'').nth(1).filter(|name| !name.is_empty());
    let named = message.split("named ").nth(1).and_then(|rest| rest.split(['.', ' ', ',']).next());
    let found = quoted.or(named)?;
    let name = found.rsplit('.').next().unwrap_or(found).trim_matches('"');
    (!name.is_empty()).then(|| name.to_string())
}

/// Evaluates the rows of `INSERT INTO table ...` (values cast to the
/// table's columns, missing columns NULL), with DataFusion.
pub async fn evaluate_insert(table: &StaticTable, statement: ast::Statement) -> Result<RecordBatch> {
    let context = SessionContext::new();
    // Planned as nullable: NOT NULL is checked when the rows are stored,
    // with the column's name in the message.
    let fields = table.schema.fields().iter().map(|field| field.as_ref().clone().with_nullable(true));
    register(&context, &table.name, Arc::new(datafusion::arrow::datatypes::Schema::new(fields.collect::<Vec<_>>())))?;
    let statement = DFStatement::Statement(Box::new(statement));
    let plan = context.state().statement_to_plan(statement).await?;
    let LogicalPlan::Dml(insert) = plan else {
        return Err(PlanError::unsupported("expected INSERT INTO table VALUES (...)"));
    };
    let input = insert.input.as_ref().clone();
    let schema = Arc::new(input.schema().as_arrow().clone());
    let batches = context.execute_logical_plan(input).await?.collect().await?;
    Ok(concat_batches(&schema, &batches).map_err(datafusion::common::DataFusionError::from)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_name_an_error_is_about() {
        assert_eq!(mentioned_name("table 'datafusion.public.nope' not found").as_deref(), Some("nope"));
        assert_eq!(mentioned_name("No field named bogus. Valid fields are a, b.").as_deref(), Some("bogus"));
        assert_eq!(mentioned_name("something else"), None);
    }
}
