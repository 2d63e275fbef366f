//! `TABLESAMPLE BERNOULLI | SYSTEM (p) [REPEATABLE (seed)] [ON (key, ...)]`
//! on a stream: a deterministic sample, and estimates over it.
//!
//! Without `ON`, the scan becomes a planner-made table (`__sample_N`)
//! whose source carries the sample: the query's driver numbers each
//! source's rows as they arrive (checkpointed with the source) and keeps a
//! row when a hash of its number (BERNOULLI) or of its block of
//! [`SAMPLE_BLOCK_ROWS`](sluice_runtime::source::SAMPLE_BLOCK_ROWS) rows
//! (SYSTEM) and the seed falls in the first `p` % of the hash's range: the
//! row's identity, so the same input and seed give the same sample
//! whatever the epoch interval, batch split, parallelism or recovery.
//!
//! With `ON (key)`, all rows of `p` % of the keys are kept (consistent
//! sampling): `FROM s TABLESAMPLE BERNOULLI (10) REPEATABLE (7) ON (k)`
//! becomes `FROM (SELECT * FROM s WHERE __sluice_sample(7, 10.0, k)) AS s`,
//! a hash of the key columns (DataFusion's, under a seed of its own, so the
//! kept keys are spread over every key group). Per-key results and joins
//! on that key are exact for the keys kept. sqlparser has no `ON (...)`
//! after TABLESAMPLE: the statement layer reads it as the clause's
//! `OFFSET (...)` (see [`key_clause_as_offset`]).
//!
//! The aggregates of the SELECT over a sample (or of the one around it)
//! become estimates with their errors (see [`estimate`]).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::hash_utils::{RandomState, create_hashes};
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};
use datafusion::sql::sqlparser::ast::{
    self, Expr, Ident, Spanned, TableAlias, TableFactor, TableSample, TableSampleKind, TableSampleMethod,
    TableSampleUnit,
};
use datafusion::sql::sqlparser::tokenizer::{Span, Token, TokenWithSpan};

use crate::catalog::Catalog;
use crate::error::{PlanError, Result};
use crate::from_walk::{FromRewrite, walk_query};
use crate::names::{ident_name, object_name};
use crate::rewritten::SampledTable;
use sluice_runtime::shed::RATE_COLUMN;
use sluice_runtime::source::SourceSample;

/// The function the rewrite calls.
pub const SAMPLE_FUNCTION: &str = "__sluice_sample";

/// Rewrites every sampled stream `query` reads. `shed`: the query sheds
/// its input (`SET max_lag`): every stream it reads is a sample whose rate
/// each row carries (see [`shed_estimate`]).
pub fn rewrite_samples(query: &mut ast::Query, catalog: &dyn Catalog, shed: bool) -> Result<Vec<SampledTable>> {
    let mut sampler = Sampler { catalog, pending: Vec::new(), blocks: false, tables: Vec::new(), shed, scans: 0 };
    walk_query(query, &mut sampler)?;
    // A sample the walk did not reach (a subquery in an expression) would
    // be ignored by DataFusion: refused instead.
    if query.to_string().contains(" TABLESAMPLE ") {
        return Err(PlanError::unsupported(
            "TABLESAMPLE is supported on a stream in a FROM clause or a window's input, not inside an expression's subquery",
        ));
    }
    Ok(sampler.tables)
}

struct Sampler<'a> {
    catalog: &'a dyn Catalog,
    /// Samples rewritten whose rows no aggregate has taken yet: the
    /// fraction kept, and the key columns (empty: rows).
    pending: Vec<(f64, Vec<String>)>,
    /// Whether a SYSTEM (block) sample is among them.
    blocks: bool,
    /// The sampled scans made (without ON).
    tables: Vec<SampledTable>,
    /// The query sheds its input: every stream read is a sample, with the
    /// rate in each row's [`RATE_COLUMN`].
    shed: bool,
    /// Streams read (a shedding query reads one).
    scans: usize,
}

impl Sampler<'_> {
    /// A shedding query reads stream `name` (`span` for errors).
    fn shed_scan(&mut self, name: &str, span: Span) -> Result<()> {
        self.scans += 1;
        if self.scans > 1 {
            return Err(PlanError::unsupported(format!(
                "SET max_lag sheds the input of a query over one stream; this one also reads {name} (a join's sides would be shed apart, and its estimates are not built)"
            ))
            .at(span));
        }
        if let Some(spec) = self.catalog.stream(name) {
            if spec.schema.fields().iter().filter(|field| field.name() == RATE_COLUMN).count() > 1 {
                return Err(PlanError::invalid(format!(
                    "SET max_lag gives each row of {name} a column {RATE_COLUMN}, and {name} has one already: rename it"
                ))
                .at(span));
            }
            if !spec.primary_key.is_empty() {
                return Err(PlanError::unsupported(format!(
                    "SET max_lag sheds rows of an append-only stream; {name} has a PRIMARY KEY: its rows are new versions of their keys, and shedding one would keep an old version"
                ))
                .at(span));
            }
        }
        self.pending.push((1.0, Vec::new()));
        Ok(())
    }
}

impl Sampler<'_> {
    /// The queries a window function reads (`TUMBLE(TABLE (SELECT ...))`),
    /// which the FROM walk does not enter.
    fn window_inputs(&mut self, arguments: &mut [ast::FunctionArg]) -> Result<()> {
        for argument in arguments {
            let expr = match argument {
                ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(expr))
                | ast::FunctionArg::Named { arg: ast::FunctionArgExpr::Expr(expr), .. }
                | ast::FunctionArg::ExprNamed { arg: ast::FunctionArgExpr::Expr(expr), .. } => expr,
                _ => continue,
            };
            match expr {
                Expr::Subquery(query) => walk_query(query, self)?,
                // `TUMBLE(TABLE s, ...)` of a shedding query.
                Expr::Identifier(ident) if self.shed && self.catalog.stream(&ident_name(ident)).is_some() => {
                    self.shed_scan(&ident_name(ident), ident.span)?;
                }
                Expr::Function(inner) => {
                    if let ast::FunctionArguments::List(list) = &mut inner.args {
                        self.window_inputs(&mut list.args)?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

impl FromRewrite for Sampler<'_> {
    /// The aggregates of a SELECT over a sample become estimates (see
    /// [`estimate`]); a SELECT without aggregates passes the sample on to
    /// the query around it.
    fn select(&mut self, select: &mut ast::Select) -> Result<()> {
        let mut aggregates = Vec::new();
        for item in &mut select.projection {
            let _ = ast::visit_expressions_mut(item, |expr: &mut Expr| {
                if let Some(name) = aggregate_name(expr) {
                    aggregates.push((name, expr.span()));
                }
                std::ops::ControlFlow::<()>::Continue(())
            });
        }
        if aggregates.is_empty() {
            if self.shed && !self.pending.is_empty() {
                pass_rate_on(select)?;
            }
            return Ok(());
        }
        let sample = match self.pending.as_slice() {
            [] => {
                if let Some((name, span)) = aggregates.iter().find(|(name, _)| name.ends_with("_error")) {
                    return Err(PlanError::invalid(format!(
                        "{name} estimates the error of a sampled aggregate, and this query reads no sample (FROM s TABLESAMPLE BERNOULLI (p))"
                    ))
                    .at(*span));
                }
                return Ok(());
            }
            [one] => one.clone(),
            [first, rest @ ..] => {
                if rest.iter().any(|other| other != first) {
                    return Err(PlanError::unsupported(
                        "aggregates over several samples of different rates or keys are not supported",
                    )
                    .at(aggregates[0].1));
                }
                first.clone()
            }
        };
        self.pending.clear();
        if std::mem::take(&mut self.blocks)
            && let Some((name, span)) = aggregates.iter().find(|(name, _)| name.ends_with("_error"))
        {
            return Err(PlanError::unsupported(format!(
                "{name} assumes rows sampled one by one (BERNOULLI); TABLESAMPLE SYSTEM keeps whole blocks"
            ))
            .at(*span));
        }
        let (fraction, keys) = sample;
        if self.shed {
            return shed_select(select);
        }
        let grouped_by_key = !keys.is_empty()
            && group_by_names(select).is_some_and(|grouped| keys.iter().all(|key| grouped.contains(key)));
        rewrite_aggregates(select, |expr| estimate(expr, fraction, !keys.is_empty(), grouped_by_key))
    }

    fn factor(&mut self, factor: &mut TableFactor) -> Result<()> {
        match factor {
            TableFactor::TableFunction { expr: Expr::Function(function), .. } => {
                if let ast::FunctionArguments::List(list) = &mut function.args {
                    self.window_inputs(&mut list.args)?;
                }
                return Ok(());
            }
            TableFactor::Table { args: Some(args), .. } => return self.window_inputs(&mut args.args),
            _ => {}
        }
        let TableFactor::Table { name, sample, alias, .. } = factor else {
            if let TableFactor::Derived { sample: Some(sample), .. } = factor {
                return Err(
                    PlanError::unsupported("TABLESAMPLE applies to a stream, not a subquery").at(sample_span(sample))
                );
            }
            return Ok(());
        };
        let stream = object_name(name);
        if self.shed && (self.catalog.stream(&stream).is_some() || self.catalog.view(&stream).is_some()) {
            if let Some(TableSampleKind::BeforeTableAlias(given) | TableSampleKind::AfterTableAlias(given)) = sample
                && given.offset.is_some()
            {
                return Err(PlanError::unsupported(
                    "TABLESAMPLE ... ON (key) keeps whole keys; with SET max_lag rows are shed one by one: use one or the other",
                )
                .at(sample_span_of(given)));
            }
            if self.catalog.stream(&stream).is_some() {
                self.shed_scan(&stream, name.span())?;
                if sample.is_none() {
                    return Ok(());
                }
                // A TABLESAMPLE too: the sample's rate is in each row's.
                self.pending.pop();
            }
        }
        let Some(kind) = sample.take() else { return Ok(()) };
        let (TableSampleKind::BeforeTableAlias(sample) | TableSampleKind::AfterTableAlias(sample)) = kind;
        let span = name.span();
        let (seed, percent, keys, block) = check(&sample)?;
        self.pending.push((percent / 100.0, keys.iter().map(|key| key.trim_matches('"').to_string()).collect()));
        self.blocks |= block;
        if keys.is_empty() && self.catalog.view(&stream).is_some() {
            return Err(PlanError::invalid(format!(
                "TABLESAMPLE without ON (...) samples rows of a stream; {stream} is a view, whose rows may be updates: sample it by key with ON (column, ...)"
            ))
            .at(span));
        }
        let alias = alias.clone().unwrap_or_else(|| TableAlias {
            explicit: true,
            name: Ident::new(stream.rsplit('.').next().unwrap_or(&stream)),
            columns: vec![],
            at: None,
        });
        if keys.is_empty() {
            // Rows (or blocks) by their number in the stream: the query's
            // driver samples the scan's rows as they arrive.
            let mut source = self
                .catalog
                .stream(&stream)
                .ok_or_else(|| PlanError::unknown(format!("stream '{stream}' not found")).at(span))?;
            source.sample = Some(SourceSample { block, fraction: percent / 100.0, seed: seed as u64 });
            let table = format!("__sample_{}", self.tables.len());
            self.tables.push(SampledTable { table: table.clone(), source });
            *factor = crate::window_tvf::scan_of(&table, alias)?;
            return Ok(());
        }
        if block {
            return Err(PlanError::unsupported(
                "TABLESAMPLE SYSTEM keeps blocks of rows; ON (key) goes with BERNOULLI",
            )
            .at(span));
        }
        let keys = keys.join(", ");
        let sql = format!("SELECT * FROM {name} WHERE {SAMPLE_FUNCTION}({seed}, {percent:?}, {keys})");
        let subquery = match crate::statement::parse_statements(&sql)?.pop().map(|located| located.statement) {
            Some(crate::statement::Statement::Query { query, .. }) => query,
            _ => return Err(PlanError::invalid("internal: the sampled stream's query does not parse").at(span)),
        };
        *factor = TableFactor::Derived { lateral: false, subquery, alias: Some(alias), sample: None };
        Ok(())
    }
}

/// A SELECT without aggregates over a shedding query's input passes each
/// row's rate on to the query around it (a `*` already does).
fn pass_rate_on(select: &mut ast::Select) -> Result<()> {
    if select.distinct.is_some() {
        return Err(PlanError::unsupported(
            "SELECT DISTINCT over a shed input is not an estimate; aggregate instead (count(DISTINCT ...) is not scaled)",
        ));
    }
    if !names_rate(&select.projection) {
        select.projection.push(ast::SelectItem::UnnamedExpr(Expr::Identifier(Ident::new(RATE_COLUMN))));
    }
    Ok(())
}

/// Replaces each aggregate of `select`'s projection and HAVING with its
/// `estimate` (`None`: left as it is); a projected aggregate keeps its
/// name (`count(*)`, not the estimate's formula).
fn rewrite_aggregates(select: &mut ast::Select, estimate: impl Fn(&Expr) -> Result<Option<Expr>>) -> Result<()> {
    let rewrite = |expr: &mut Expr| match estimate(expr) {
        Ok(Some(replacement)) => {
            *expr = replacement;
            std::ops::ControlFlow::Continue(())
        }
        Ok(None) => std::ops::ControlFlow::Continue(()),
        Err(error) => std::ops::ControlFlow::Break(error),
    };
    for item in &mut select.projection {
        if let ast::SelectItem::UnnamedExpr(expr) = item
            && aggregate_name(expr).is_some()
        {
            let alias = Ident::with_quote('"', expr.to_string());
            *item = ast::SelectItem::ExprWithAlias { expr: expr.clone(), alias };
        }
        if let std::ops::ControlFlow::Break(error) = ast::visit_expressions_mut(item, &rewrite) {
            return Err(error);
        }
    }
    if let Some(having) = &mut select.having
        && let std::ops::ControlFlow::Break(error) = ast::visit_expressions_mut(having, &rewrite)
    {
        return Err(error);
    }
    Ok(())
}

/// Whether a projection has a `sample_rate` column already (a `*` has).
fn names_rate(projection: &[ast::SelectItem]) -> bool {
    projection.iter().any(|item| match item {
        ast::SelectItem::Wildcard(_) | ast::SelectItem::QualifiedWildcard(..) => true,
        ast::SelectItem::UnnamedExpr(Expr::Identifier(ident)) => ident_name(ident) == RATE_COLUMN,
        ast::SelectItem::ExprWithAlias { alias, .. } => ident_name(alias) == RATE_COLUMN,
        _ => false,
    })
}

/// The aggregates of a SELECT over a shedding query's input become
/// estimates weighted by each row's rate, and the SELECT says the rate its
/// rows were computed at (`sample_rate`: rows kept over rows estimated).
fn shed_select(select: &mut ast::Select) -> Result<()> {
    rewrite_aggregates(select, shed_estimate)?;
    if !names_rate(&select.projection) {
        let rate = parse_expr(&format!("(CAST(count(*) AS DOUBLE) / sum(1.0 / {RATE_COLUMN}))"))?;
        select.projection.push(ast::SelectItem::ExprWithAlias { expr: rate, alias: Ident::new(RATE_COLUMN) });
    }
    Ok(())
}

/// An aggregate over rows each kept with its own probability π (the
/// `sample_rate` column), as a Horvitz-Thompson estimate of the whole, and
/// its error (the half-width of a 95 % interval, z = 1.96), with
/// d = (1 − π) / π²:
///
/// | call | becomes |
/// |---|---|
/// | `count(x)` | Σ 1/π over rows with x |
/// | `sum(x)` | Σ x/π |
/// | `avg(x)` | Σ x/π ÷ Σ 1/π (a ratio estimate) |
/// | `count_error(x)` | 1.96 · √(Σ d) |
/// | `sum_error(x)` | 1.96 · √(Σ d·x²) |
/// | `avg_error(x)` | 1.96 · √(Σ d·(x − avg)²) ÷ Σ 1/π (linearised) |
///
/// With a constant π these are [`estimate`]'s formulas.
fn shed_estimate(expr: &Expr) -> Result<Option<Expr>> {
    let Some((name, argument)) = estimated_call(expr) else { return Ok(None) };
    let rate = RATE_COLUMN;
    let x = format!("CAST({argument} AS DOUBLE)");
    // Each row's weight 1/π and d, over the rows the aggregate counts.
    let (weight, d) = if argument == "*" {
        (format!("(1.0 / {rate})"), format!("((1.0 - {rate}) / ({rate} * {rate}))"))
    } else {
        (
            format!("(CASE WHEN {argument} IS NULL THEN NULL ELSE 1.0 / {rate} END)"),
            format!("(CASE WHEN {argument} IS NULL THEN NULL ELSE (1.0 - {rate}) / ({rate} * {rate}) END)"),
        )
    };
    let text = match name.as_str() {
        "count" => format!("coalesce(sum({weight}), 0.0)"),
        "sum" => format!("sum({x} / {rate})"),
        "avg" => format!("(sum({x} / {rate}) / sum({weight}))"),
        "count_error" => format!("(1.96 * sqrt(coalesce(sum({d}), 0.0)))"),
        "sum_error" => format!("(1.96 * sqrt(coalesce(sum({d} * {x} * {x}), 0.0)))"),
        "avg_error" => {
            let mean = format!("(sum({x} / {rate}) / sum({weight}))");
            format!(
                "(1.96 * sqrt(greatest(sum({d} * {x} * {x}) - 2.0 * {mean} * sum({d} * {x}) + {mean} * {mean} * sum({d}), 0.0)) / sum({weight}))"
            )
        }
        _ => return Ok(None),
    };
    parse_expr(&text).map(Some)
}

fn parse_expr(text: &str) -> Result<Expr> {
    datafusion::sql::sqlparser::parser::Parser::new(&crate::dialect::SluiceDialect::default())
        .try_with_sql(text)
        .and_then(|mut parser| parser.parse_expr())
        .map_err(|error| PlanError::invalid(format!("internal: the estimate {text} does not parse: {error}")))
}

/// The name and argument text of a call `expr` makes to an aggregate a
/// sample changes (not `count(DISTINCT ...)`).
fn estimated_call(expr: &Expr) -> Option<(String, String)> {
    let Expr::Function(function) = expr else { return None };
    let name = object_name(&function.name);
    if !ESTIMATED.contains(&name.as_str()) {
        return None;
    }
    let ast::FunctionArguments::List(list) = &function.args else { return None };
    if list.duplicate_treatment.is_some() {
        return None;
    }
    Some((name, list.args.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")))
}

/// The name of an aggregate a sample changes, if `expr` calls one.
fn aggregate_name(expr: &Expr) -> Option<String> {
    let Expr::Function(function) = expr else { return None };
    let name = object_name(&function.name);
    ESTIMATED.contains(&name.as_str()).then_some(name)
}

/// The aggregates a sample scales, and their error functions.
const ESTIMATED: &[&str] = &["count", "sum", "avg", "count_error", "sum_error", "avg_error"];

/// The names a SELECT groups by, when they are all plain columns.
fn group_by_names(select: &ast::Select) -> Option<Vec<String>> {
    let ast::GroupByExpr::Expressions(exprs, _) = &select.group_by else { return None };
    Some(
        exprs
            .iter()
            .filter_map(|expr| match expr {
                Expr::Identifier(ident) => Some(ident_name(ident)),
                Expr::CompoundIdentifier(idents) => idents.last().map(ident_name),
                _ => None,
            })
            .collect(),
    )
}

/// An aggregate over a Bernoulli sample keeping `fraction` q of the rows,
/// as an estimate of the whole (Horvitz-Thompson), and its error: the
/// half-width of a 95 % confidence interval (z = 1.96).
///
/// | call | becomes |
/// |---|---|
/// | `count(x)` | `count(x) / q` |
/// | `sum(x)` | `sum(x) / q` |
/// | `avg(x)` | `avg(x)` (a ratio: unbiased as it is) |
/// | `count_error(x)` | `1.96 · sqrt(count(x) · (1 − q)) / q` |
/// | `sum_error(x)` | `1.96 · sqrt((1 − q) · sum(x²)) / q` |
/// | `avg_error(x)` | `1.96 · sqrt((1 − q) · var_samp(x) / count(x))` |
///
/// Grouped by the key of a key sample, results are exact for the keys
/// kept: nothing is scaled and the errors are 0. `count(DISTINCT ...)` is
/// not scaled.
fn estimate(expr: &Expr, fraction: f64, keyed: bool, grouped_by_key: bool) -> Result<Option<Expr>> {
    let Some((name, argument)) = estimated_call(expr) else { return Ok(None) };
    if name.ends_with("_error") && keyed && !grouped_by_key {
        return Err(PlanError::unsupported(format!(
            "{name} assumes rows sampled one by one; over a sample ON (key) it is known only grouped by that key"
        ))
        .at(expr.span()));
    }
    let q = fraction;
    let exact = grouped_by_key || q >= 1.0;
    let text = match name.as_str() {
        "count" | "sum" if exact => return Ok(None),
        _ if q <= 0.0 => "CAST(NULL AS DOUBLE)".to_string(),
        "count" => format!("(CAST(count({argument}) AS DOUBLE) / {q:?})"),
        "sum" => format!("(CAST(sum({argument}) AS DOUBLE) / {q:?})"),
        "avg" => return Ok(None),
        _ if exact => "CAST(0 AS DOUBLE)".to_string(),
        "count_error" => format!("(1.96 * sqrt(CAST(count({argument}) AS DOUBLE) * {:?}) / {q:?})", 1.0 - q),
        "sum_error" => {
            format!(
                "(1.96 * sqrt({:?} * sum(CAST({argument} AS DOUBLE) * CAST({argument} AS DOUBLE))) / {q:?})",
                1.0 - q
            )
        }
        "avg_error" => format!(
            "(1.96 * sqrt({:?} * coalesce(var_samp(CAST({argument} AS DOUBLE)), 0) / CAST(count({argument}) AS DOUBLE)))",
            1.0 - q
        ),
        _ => return Ok(None),
    };
    parse_expr(&text).map(Some)
}

fn sample_span(sample: &TableSampleKind) -> Span {
    let (TableSampleKind::BeforeTableAlias(sample) | TableSampleKind::AfterTableAlias(sample)) = sample;
    sample_span_of(sample)
}

/// The seed, the percentage, the key columns and whether blocks are
/// sampled (SYSTEM), checked.
fn check(sample: &TableSample) -> Result<(i64, f64, Vec<String>, bool)> {
    let at = sample_span_of(sample);
    let block = matches!(sample.name, Some(TableSampleMethod::System) | Some(TableSampleMethod::Block));
    if sample.bucket.is_some() {
        return Err(PlanError::unsupported("TABLESAMPLE BUCKET is not supported; use BERNOULLI (percent)").at(at));
    }
    let Some(quantity) = &sample.quantity else {
        return Err(PlanError::invalid("TABLESAMPLE needs a percentage: BERNOULLI (10)").at(at));
    };
    if quantity.unit == Some(TableSampleUnit::Rows) {
        return Err(PlanError::unsupported("TABLESAMPLE takes a percentage of rows, not a number of rows")
            .at(quantity.value.span()));
    }
    let percent = match &quantity.value {
        Expr::Value(value) => match &value.value {
            ast::Value::Number(number, _) => number.parse::<f64>().ok(),
            _ => None,
        },
        _ => None,
    };
    let percent = percent.filter(|percent| (0.0..=100.0).contains(percent)).ok_or_else(|| {
        PlanError::invalid(format!("the TABLESAMPLE percentage must be a number from 0 to 100, not {}", quantity.value))
            .at(quantity.value.span())
    })?;
    let seed = match &sample.seed {
        None => 0,
        Some(seed) => match &seed.value.value {
            ast::Value::Number(number, _) => number.parse::<i64>().map_err(|_| {
                PlanError::invalid(format!("the REPEATABLE seed must be a whole number, not {number}"))
                    .at(seed.value.span)
            })?,
            other => {
                return Err(PlanError::invalid(format!("the REPEATABLE seed must be a whole number, not {other}"))
                    .at(seed.value.span));
            }
        },
    };
    let keys = match &sample.offset {
        None => Vec::new(),
        Some(Expr::Nested(inner)) => vec![key_name(inner)?],
        Some(Expr::Tuple(keys)) => keys.iter().map(key_name).collect::<Result<_>>()?,
        Some(other) => return Err(PlanError::invalid("TABLESAMPLE ... ON takes (column, ...)").at(other.span())),
    };
    Ok((seed, percent, keys, block))
}

fn sample_span_of(sample: &TableSample) -> Span {
    sample.quantity.as_ref().map_or(Span::empty(), |quantity| quantity.value.span())
}

fn key_name(expr: &Expr) -> Result<String> {
    match expr {
        Expr::Identifier(ident) => Ok(format!("\"{}\"", ident_name(ident))),
        other => Err(PlanError::invalid("TABLESAMPLE ... ON takes column names").at(other.span())),
    }
}

/// `TABLESAMPLE ... ( ... ) [REPEATABLE ( ... )] ON (a, b)` is read as the
/// clause's `OFFSET (a, b)`, which sqlparser parses; an `ON (` whose
/// parentheses hold anything but names is a join condition and is left.
pub fn key_clause_as_offset(tokens: &mut [TokenWithSpan]) {
    let significant: Vec<usize> =
        (0..tokens.len()).filter(|index| !matches!(tokens[*index].token, Token::Whitespace(_))).collect();
    let mut position = 0;
    while position < significant.len() {
        if !is_word(tokens, significant[position], "TABLESAMPLE") {
            position += 1;
            continue;
        }
        let mut cursor = position + 1;
        if cursor < significant.len() && matches!(tokens[significant[cursor]].token, Token::Word(_)) {
            cursor += 1; // the method
        }
        cursor = skip_parens(tokens, &significant, cursor);
        if cursor < significant.len()
            && (is_word(tokens, significant[cursor], "REPEATABLE") || is_word(tokens, significant[cursor], "SEED"))
        {
            cursor = skip_parens(tokens, &significant, cursor + 1);
        }
        if cursor + 1 < significant.len()
            && is_word(tokens, significant[cursor], "ON")
            && tokens[significant[cursor + 1]].token == Token::LParen
            && holds_only_names(tokens, &significant, cursor + 1)
        {
            let span = tokens[significant[cursor]].span;
            tokens[significant[cursor]] = TokenWithSpan::new(Token::make_keyword("OFFSET"), span);
        }
        position = cursor.max(position + 1);
    }
}

fn is_word(tokens: &[TokenWithSpan], index: usize, text: &str) -> bool {
    matches!(&tokens[index].token, Token::Word(word) if word.quote_style.is_none() && word.value.eq_ignore_ascii_case(text))
}

/// The index after the parenthesised group at `at` (or `at` if none).
fn skip_parens(tokens: &[TokenWithSpan], significant: &[usize], at: usize) -> usize {
    if at >= significant.len() || tokens[significant[at]].token != Token::LParen {
        return at;
    }
    let mut depth = 0usize;
    for (offset, index) in significant.iter().enumerate().skip(at) {
        match tokens[*index].token {
            Token::LParen => depth += 1,
            Token::RParen => {
                depth -= 1;
                if depth == 0 {
                    return offset + 1;
                }
            }
            _ => {}
        }
    }
    significant.len()
}

fn holds_only_names(tokens: &[TokenWithSpan], significant: &[usize], open: usize) -> bool {
    let end = skip_parens(tokens, significant, open);
    (open + 1..end.saturating_sub(1))
        .all(|offset| matches!(tokens[significant[offset]].token, Token::Word(_) | Token::Comma))
        && end > open + 2
}

/// `__sluice_sample(seed, percent, columns...)`: whether each row is in
/// the sample.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SampleFunction {
    signature: Signature,
}

impl Default for SampleFunction {
    fn default() -> Self {
        Self { signature: Signature::variadic_any(Volatility::Immutable) }
    }
}

/// The function, for the planner's session.
pub fn sample_udf() -> ScalarUDF {
    ScalarUDF::new_from_impl(SampleFunction::default())
}

/// Mixed into the seed so that sampling never lines up with the key-group
/// hash (which would keep whole key groups).
const SAMPLE_SALT: u64 = 0x9e37_79b9_7f4a_7c15;

impl ScalarUDFImpl for SampleFunction {
    fn name(&self) -> &str {
        SAMPLE_FUNCTION
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> datafusion::common::Result<ColumnarValue> {
        let scalar = |index: usize| match args.args.get(index) {
            Some(ColumnarValue::Scalar(value)) => Ok(value.clone()),
            _ => Err(DataFusionError::Plan(format!("{SAMPLE_FUNCTION} takes a constant seed and percentage"))),
        };
        let seed = match scalar(0)? {
            ScalarValue::Int64(Some(seed)) => seed as u64,
            other => return Err(DataFusionError::Plan(format!("{SAMPLE_FUNCTION}: bad seed {other}"))),
        };
        let percent = match scalar(1)? {
            ScalarValue::Float64(Some(percent)) => percent,
            other => return Err(DataFusionError::Plan(format!("{SAMPLE_FUNCTION}: bad percentage {other}"))),
        };
        let rows = args.number_rows;
        let columns: Vec<ArrayRef> =
            args.args[2..].iter().map(|value| value.to_array(rows)).collect::<datafusion::common::Result<_>>()?;
        let mut hashes = vec![0u64; rows];
        create_hashes(&columns, &RandomState::with_seed(seed ^ SAMPLE_SALT), &mut hashes)?;
        // Kept when the hash falls in the first `percent` of its range.
        let bound = (percent / 100.0 * u64::MAX as f64) as u64;
        let keep: BooleanArray = hashes.iter().map(|hash| Some(percent >= 100.0 || *hash < bound)).collect();
        Ok(ColumnarValue::Array(Arc::new(keep)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::SluiceDialect;

    #[test]
    fn on_after_a_sample_is_read_as_its_key() {
        let sql = "SELECT * FROM s TABLESAMPLE BERNOULLI (10) REPEATABLE (3) ON (a, b) JOIN t TABLESAMPLE BERNOULLI (5) ON (s.a = t.a)";
        let mut tokens = datafusion::sql::sqlparser::tokenizer::Tokenizer::new(&SluiceDialect::default(), sql)
            .tokenize_with_location()
            .unwrap();
        key_clause_as_offset(&mut tokens);
        let text: String = tokens.iter().map(|token| token.token.to_string()).collect();
        assert!(text.contains("REPEATABLE (3) OFFSET (a, b) JOIN"), "{text}");
        assert!(text.contains("BERNOULLI (5) ON (s.a = t.a)"), "{text}");
    }
}
