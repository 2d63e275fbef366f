//! `MATCH_RECOGNIZE`: the FROM-clause rewrite that replaces each clause by
//! a scan of a planner-made table (`__match_N`), and the compilation of a
//! [`PatternClause`] against its input's schema into a
//! [`MatchRecognizeSpec`].
//!
//! # Compiling expressions
//!
//! DEFINE and MEASURES expressions read the match through navigations
//! (`A.price`, `FIRST(A.price, 2)`, `PREV(LAST(B.price), 1)`,
//! `CLASSIFIER()`, `MATCH_NUMBER()`, `MATCH_ROWTIME()`, aggregates such as
//! `SUM(B.price)` or `COUNT(A.*)`). Each navigation in an expression is
//! replaced by a column `__nav_K` of an evaluation schema, and what is left
//! is planned by DataFusion as an ordinary expression over that schema
//! (type coercion, every scalar function), once. An unqualified column is
//! the universal variable's: in DEFINE the current row, in MEASURES the
//! current row (ALL ROWS PER MATCH, RUNNING) or the match's last row.

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::DFSchema;
use datafusion::execution::SessionState;
use datafusion::logical_expr::Expr as LogicalExpr;
use datafusion::sql::sqlparser::ast::{
    self, Expr, ExprWithAlias, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, Query, Spanned, TableFactor,
    Value, VisitMut, VisitorMut,
};
use sluice_runtime::operators::match_recognize::spec::{
    CompiledExpr, EmptyMatches, MatchRecognizeSpec, Navigation, PatternSpec, RowSelect, RowsPerMatch, SkipTo,
};

use sluice_runtime::OperatorSpec;
use sluice_runtime::operators::match_recognize::operator::can_grow_without_end;

use crate::error::{PlanError, Result};
use crate::from_walk::{FromRewrite, walk_query};
use crate::lower::{Lowered, Lowering, TimeColumns};
use crate::names::{parse_query, parse_table_factor};
use crate::pattern_clause::{self, PatternClause, PatternSyntax, stub_index, variable_name};
pub use crate::rewritten::PatternTable;

pub use sluice_runtime::operators::match_recognize::spec::{CLASSIFIER_COLUMN, MATCH_NUMBER_COLUMN};

/// The most variables a `PERMUTE` may list: it matches every order of them
/// (6 elements: 720 orders).
pub const MAX_PERMUTE: usize = 6;

/// A MATCH_RECOGNIZE clause the rewrite replaced by a scan of `table`.
#[derive(Debug, Clone)]
pub struct MatchTable {
    /// The planner-made table name (`__match_N`).
    pub table: String,
    pub clause: PatternClause,
    /// `SELECT * FROM <the relation the clause applies to>`.
    pub input: Query,
}

/// Replaces every MATCH_RECOGNIZE stub of `query` by a scan of a
/// planner-made table (`__match_{first}`, ...); `patterns` are the clauses
/// the stubs stand for.
pub fn rewrite_match_recognize(query: &mut Query, patterns: &[PatternClause], first: usize) -> Result<Vec<MatchTable>> {
    let mut rewriter = Rewriter { patterns, first, tables: Vec::new() };
    walk_query(query, &mut rewriter)?;
    Ok(rewriter.tables)
}

struct Rewriter<'a> {
    patterns: &'a [PatternClause],
    first: usize,
    tables: Vec<MatchTable>,
}

impl FromRewrite for Rewriter<'_> {
    fn factor(&mut self, factor: &mut TableFactor) -> Result<()> {
        let TableFactor::MatchRecognize { table, symbols, alias, .. } = factor else {
            return Ok(());
        };
        let Some(clause) =
            symbols.first().and_then(|symbol| stub_index(&symbol.symbol)).and_then(|i| self.patterns.get(i))
        else {
            return Err(PlanError::invalid("internal: a MATCH_RECOGNIZE clause the statement layer did not read"));
        };
        let name = format!("__match_{}", self.first + self.tables.len());
        let input = match &clause.input {
            Some(input) => parse_query(input)?,
            None => parse_query(&format!("SELECT * FROM {table}"))?,
        };
        let relation = match alias {
            Some(alias) if alias.columns.is_empty() => format!("{name} AS {}", alias.name),
            Some(alias) => {
                let columns: Vec<String> = alias.columns.iter().map(ToString::to_string).collect();
                format!("{name} AS {}({})", alias.name, columns.join(", "))
            }
            None => name.clone(),
        };
        *factor = parse_table_factor(&relation)?;
        self.tables.push(MatchTable { table: name, clause: clause.clone(), input });
        Ok(())
    }
}

impl Lowering<'_> {
    /// The input's operators, then the matcher.
    pub(crate) async fn match_recognize(&mut self, table: &PatternTable) -> Result<Lowered> {
        let input = self.lower(&table.plan).await?;
        if input.updating {
            return Err(PlanError::unsupported(
                "MATCH_RECOGNIZE reads append-only input: this input is updating (a running GROUP BY, an outer or unbounded join)",
            )
            .at(table.span));
        }
        let time_name = table.spec.input_schema.field(table.spec.time_column).name().clone();
        if input.times.event.as_deref() != Some(time_name.as_str()) {
            let attribute = input.times.event.as_deref().unwrap_or("none");
            return Err(PlanError::invalid(format!(
                "MATCH_RECOGNIZE's ORDER BY starts with the input's event-time attribute (its WATERMARK column, here {attribute}), not {time_name}"
            ))
            .at(table.span));
        }
        let spec = table.spec.clone();
        let schema = spec.output_schema.clone();
        let event = spec.output_time.map(|column| schema.field(column).name().clone());
        if spec.within.is_none() && can_grow_without_end(&spec.pattern) {
            self.plan.warnings.push(format!(
                "MATCH_RECOGNIZE pattern {} has no WITHIN: a partial match can grow without bound and so can its state",
                sluice_runtime::operators::match_recognize::operator::describe_pattern(&spec.pattern, &spec.variables)
            ));
        }
        let node = self.push(OperatorSpec::MatchRecognize(spec), vec![input.node]);
        let times = TimeColumns { event, ..TimeColumns::default() };
        Ok(Lowered {
            node,
            schema,
            window_results: false,
            window: None,
            updating: false,
            partition_keys: Vec::new(),
            times,
        })
    }
}

/// Compiles `clause` over an input of `input` schema.
pub fn compile(state: &SessionState, clause: &PatternClause, input: &DFSchema) -> Result<MatchRecognizeSpec> {
    let input_schema: SchemaRef = Arc::new(input.as_arrow().clone());
    let column_of = |expr: &Expr, what: &str| -> Result<usize> {
        let logical = state
            .create_logical_expr_from_sql_expr(ExprWithAlias { expr: expr.clone(), alias: None }, input)
            .map_err(|error| PlanError::from(error).at(expr.span()))?;
        match logical {
            LogicalExpr::Column(column) => {
                input.index_of_column(&column).map_err(|error| PlanError::from(error).at(expr.span()))
            }
            _ => Err(PlanError::unsupported(format!("{what} takes columns of the input, not {expr}")).at(expr.span())),
        }
    };
    let partition_by =
        clause.partition_by.iter().map(|expr| column_of(expr, "PARTITION BY")).collect::<Result<Vec<_>>>()?;
    let Some((first, rest)) = clause.order_by.split_first() else {
        return Err(PlanError::invalid(
            "MATCH_RECOGNIZE over a stream needs ORDER BY its event-time column (rows are matched in event-time order)",
        )
        .at(clause.span));
    };
    let time_column = column_of(&first.expr, "ORDER BY")?;
    if !matches!(input_schema.field(time_column).data_type(), DataType::Timestamp(_, _))
        || first.options.asc == Some(false)
    {
        return Err(PlanError::invalid(format!(
            "MATCH_RECOGNIZE's ORDER BY starts with the input's event-time column, ascending; {} is not",
            first.expr
        ))
        .at(first.expr.span()));
    }
    let mut order_by = Vec::new();
    for key in rest {
        let column = column_of(&key.expr, "ORDER BY")?;
        let descending = key.options.asc == Some(false);
        let nulls_first = key.options.nulls_first.unwrap_or(descending);
        order_by.push((column, SortOptions { descending, nulls_first }));
    }

    // Variables, in the order the pattern names them first.
    let mut variables: Vec<String> = Vec::new();
    collect_variables(&clause.pattern, &mut variables);
    let mut subsets: Vec<(String, Vec<usize>)> = Vec::new();
    for (name, members) in &clause.subsets {
        let subset = variable_name(name);
        if variables.contains(&subset) || subsets.iter().any(|(other, _)| *other == subset) {
            return Err(
                PlanError::invalid(format!("SUBSET {subset} is already a pattern variable or subset")).at(name.span)
            );
        }
        let mut ids = Vec::new();
        for member in members {
            let member_name = variable_name(member);
            let id = variables.iter().position(|variable| *variable == member_name).ok_or_else(|| {
                PlanError::unknown(format!("SUBSET {subset} names {member_name}, which is not a variable of PATTERN"))
                    .at(member.span)
            })?;
            ids.push(id);
        }
        subsets.push((subset, ids));
    }
    let names = Names { variables: &variables, subsets: &subsets };
    let pattern = pattern_spec(&clause.pattern, &names)?;
    if matches!(clause.rows_per_match, RowsPerMatch::All(EmptyMatches::WithUnmatched))
        && contains_exclusion(&clause.pattern)
    {
        return Err(PlanError::invalid(
            "ALL ROWS PER MATCH WITH UNMATCHED ROWS cannot be used with a pattern exclusion {- ... -}",
        )
        .at(clause.span));
    }

    let mut defines: Vec<Option<CompiledExpr>> = vec![None; variables.len()];
    for (name, condition) in &clause.define {
        let variable = variable_name(name);
        let Some(id) = variables.iter().position(|known| *known == variable) else {
            return Err(PlanError::unknown(format!("DEFINE names {variable}, which is not a variable of PATTERN"))
                .at(name.span));
        };
        if defines[id].is_some() {
            return Err(PlanError::invalid(format!("{variable} is defined twice")).at(name.span));
        }
        let compiled = compile_expr(state, condition, input, &names, time_column, Context::Define)?;
        let data_type = compiled.expr.data_type(&compiled.schema)?;
        if !matches!(data_type, DataType::Boolean | DataType::Null) {
            return Err(PlanError::invalid(format!(
                "DEFINE {variable} must be a condition (BOOLEAN), not {data_type}"
            ))
            .at(condition.span()));
        }
        defines[id] = Some(compiled);
    }

    let mut measures = Vec::new();
    let mut match_rowtime = None;
    for measure in &clause.measures {
        let compiled = compile_expr(state, &measure.expr, input, &names, time_column, Context::Measure)?;
        if is_call(&measure.expr, "MATCH_ROWTIME") {
            match_rowtime = Some(measures.len());
        }
        measures.push((crate::names::ident_name(&measure.name), compiled));
    }

    if clause.rows_per_match == (RowsPerMatch::One { timeouts: true }) && clause.within.is_none() {
        return Err(
            PlanError::invalid("WITH TIMEOUT ROWS needs WITHIN: a partial match times out after it").at(clause.span)
        );
    }
    let rows_per_match = clause.rows_per_match;
    let skip = match &clause.skip {
        pattern_clause::SkipTo::PastLastRow => SkipTo::PastLastRow,
        pattern_clause::SkipTo::NextRow => SkipTo::NextRow,
        pattern_clause::SkipTo::First(name) => SkipTo::First(names.set(name)?.unwrap_or_default()),
        pattern_clause::SkipTo::Last(name) => SkipTo::Last(names.set(name)?.unwrap_or_default()),
    };

    // The output's columns.
    let mut fields: Vec<Field> = Vec::new();
    let mut output_time = None;
    let input_field = |column: usize| input_schema.field(column).as_ref().clone();
    let measure_field = |name: &str, compiled: &CompiledExpr| -> Result<Field> {
        let data_type = compiled.expr.data_type(&compiled.schema)?;
        Ok(Field::new(name, data_type, true))
    };
    for column in &partition_by {
        fields.push(input_field(*column));
    }
    match rows_per_match {
        RowsPerMatch::One { timeouts } => {
            for (index, (name, compiled)) in measures.iter().enumerate() {
                if match_rowtime == Some(index) {
                    output_time = Some(fields.len());
                }
                fields.push(measure_field(name, compiled)?);
            }
            if timeouts {
                fields.push(Field::new("timed_out", DataType::Boolean, false));
            }
        }
        RowsPerMatch::All(_) => {
            let mut placed: Vec<usize> = partition_by.clone();
            for column in std::iter::once(time_column).chain(order_by.iter().map(|(column, _)| *column)) {
                if !placed.contains(&column) {
                    if column == time_column {
                        output_time = Some(fields.len());
                    }
                    fields.push(input_field(column));
                    placed.push(column);
                }
            }
            for (name, compiled) in &measures {
                fields.push(measure_field(name, compiled)?);
            }
            for column in 0..input_schema.fields().len() {
                if !placed.contains(&column) {
                    fields.push(input_field(column));
                }
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    for field in &fields {
        if !seen.insert(field.name().clone()) {
            return Err(PlanError::invalid(format!(
                "MATCH_RECOGNIZE's output would have two columns named {}: rename the measure",
                field.name()
            ))
            .at(clause.span));
        }
    }
    Ok(MatchRecognizeSpec {
        input_schema: input_schema.clone(),
        partition_by,
        time_column,
        order_by,
        variables,
        subsets,
        pattern,
        defines,
        measures,
        rows_per_match,
        skip,
        within: clause.within,
        output_schema: Arc::new(Schema::new(fields)),
        output_time,
    })
}

fn is_call(expr: &Expr, name: &str) -> bool {
    matches!(expr, Expr::Function(function) if function.name.to_string().eq_ignore_ascii_case(name))
}

fn collect_variables(pattern: &PatternSyntax, out: &mut Vec<String>) {
    match pattern {
        PatternSyntax::Variable(ident) => {
            let name = variable_name(ident);
            if !out.contains(&name) {
                out.push(name);
            }
        }
        PatternSyntax::Concat(items) | PatternSyntax::Alternation(items) | PatternSyntax::Permute(items) => {
            items.iter().for_each(|item| collect_variables(item, out))
        }
        PatternSyntax::Quantified { pattern, .. } | PatternSyntax::Exclude(pattern) => collect_variables(pattern, out),
        PatternSyntax::Start | PatternSyntax::End | PatternSyntax::Empty => {}
    }
}

fn contains_exclusion(pattern: &PatternSyntax) -> bool {
    match pattern {
        PatternSyntax::Exclude(_) => true,
        PatternSyntax::Concat(items) | PatternSyntax::Alternation(items) | PatternSyntax::Permute(items) => {
            items.iter().any(contains_exclusion)
        }
        PatternSyntax::Quantified { pattern, .. } => contains_exclusion(pattern),
        _ => false,
    }
}

fn pattern_spec(pattern: &PatternSyntax, names: &Names) -> Result<PatternSpec> {
    let all = |items: &[PatternSyntax]| items.iter().map(|item| pattern_spec(item, names)).collect::<Result<Vec<_>>>();
    Ok(match pattern {
        PatternSyntax::Variable(ident) => {
            let name = variable_name(ident);
            if names.subsets.iter().any(|(subset, _)| *subset == name) {
                return Err(PlanError::invalid(format!("{name} is a SUBSET: PATTERN names primary variables only"))
                    .at(ident.span));
            }
            PatternSpec::Variable(names.variables.iter().position(|variable| *variable == name).unwrap_or(0))
        }
        PatternSyntax::Concat(items) => PatternSpec::Concat(all(items)?),
        PatternSyntax::Alternation(items) => PatternSpec::Alternation(all(items)?),
        PatternSyntax::Permute(items) => {
            if items.len() > MAX_PERMUTE {
                return Err(PlanError::unsupported(format!(
                    "PERMUTE of {} elements: at most {MAX_PERMUTE} are supported (it matches every order of them)",
                    items.len()
                )));
            }
            PatternSpec::Permute(all(items)?)
        }
        PatternSyntax::Quantified { pattern, min, max, greedy, .. } => PatternSpec::Quantified {
            pattern: Box::new(pattern_spec(pattern, names)?),
            min: *min,
            max: *max,
            greedy: *greedy,
        },
        PatternSyntax::Exclude(inner) => PatternSpec::Exclude(Box::new(pattern_spec(inner, names)?)),
        PatternSyntax::Start => PatternSpec::Start,
        PatternSyntax::End => PatternSpec::End,
        PatternSyntax::Empty => PatternSpec::Empty,
    })
}

/// The pattern's variables and subsets, for resolving names.
struct Names<'a> {
    variables: &'a [String],
    subsets: &'a [(String, Vec<usize>)],
}

impl Names<'_> {
    /// The primary variables `name` stands for, `None` if it names no
    /// variable or subset.
    fn set(&self, name: &Ident) -> Result<Option<Vec<usize>>> {
        let name = variable_name(name);
        if let Some(id) = self.variables.iter().position(|variable| *variable == name) {
            return Ok(Some(vec![id]));
        }
        Ok(self.subsets.iter().find(|(subset, _)| *subset == name).map(|(_, members)| members.clone()))
    }

    fn required_set(&self, name: &Ident) -> Result<Vec<usize>> {
        self.set(name)?.ok_or_else(|| {
            PlanError::unknown(format!("{} is not a pattern variable or SUBSET", variable_name(name))).at(name.span)
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    Define,
    Measure,
}

fn compile_expr(
    state: &SessionState,
    expr: &Expr,
    input: &DFSchema,
    names: &Names,
    time_column: usize,
    context: Context,
) -> Result<CompiledExpr> {
    let mut expr = expr.clone();
    let text = expr.to_string();
    let mut extractor = Extractor { state, input, names, time_column, context, navigations: Vec::new(), error: None };
    let _ = expr.visit(&mut extractor);
    if let Some(error) = extractor.error {
        return Err(error);
    }
    let navigations = extractor.navigations;
    let fields = navigations
        .iter()
        .enumerate()
        .map(|(index, navigation)| {
            let data_type = match navigation {
                Navigation::Value { column, .. } => input.as_arrow().field(*column).data_type().clone(),
                Navigation::Classifier { .. } => DataType::Utf8,
                Navigation::MatchNumber => DataType::Int64,
                Navigation::Aggregate { aggregate, .. } => aggregate.field().data_type().clone(),
            };
            Field::new(format!("__nav_{index}"), data_type, true)
        })
        .collect::<Vec<_>>();
    let schema = Arc::new(Schema::new(fields));
    let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
    let span = expr.span();
    let logical = state
        .create_logical_expr_from_sql_expr(ExprWithAlias { expr, alias: None }, &df_schema)
        .map_err(|error| PlanError::from(error).at(span))?;
    // Simplified as a query's expressions are (COALESCE becomes CASE).
    let context = datafusion::logical_expr::simplify::SimplifyContext::builder()
        .with_schema(Arc::new(df_schema.clone()))
        .with_config_options(Arc::clone(state.config_options()))
        .build();
    let simplifier = datafusion::optimizer::simplify_expressions::ExprSimplifier::new(context);
    let logical = simplifier
        .coerce(logical, &df_schema)
        .and_then(|logical| simplifier.simplify(logical))
        .map_err(|error| PlanError::from(error).at(span))?;
    let physical = state.create_physical_expr(logical, &df_schema).map_err(|error| PlanError::from(error).at(span))?;
    Ok(CompiledExpr { navigations, schema, expr: physical, text })
}

/// Replaces each navigation of an expression by `__nav_K`.
struct Extractor<'a> {
    state: &'a SessionState,
    input: &'a DFSchema,
    names: &'a Names<'a>,
    time_column: usize,
    context: Context,
    navigations: Vec<Navigation>,
    error: Option<PlanError>,
}

impl VisitorMut for Extractor<'_> {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Some(error) = subquery_error(expr) {
            self.error = Some(error);
            return ControlFlow::Break(());
        }
        match self.navigation(expr, false) {
            Ok(Some(navigation)) => {
                *expr = Expr::Identifier(Ident::new(format!("__nav_{}", self.navigations.len())));
                self.navigations.push(navigation);
                ControlFlow::Continue(())
            }
            Ok(None) => ControlFlow::Continue(()),
            Err(error) => {
                self.error = Some(error);
                ControlFlow::Break(())
            }
        }
    }
}

/// The arguments of a call, as expressions (`*` and `A.*` as `None` and
/// the qualifier).
fn call_args(function: &ast::Function) -> Vec<&FunctionArg> {
    match &function.args {
        FunctionArguments::List(list) => list.args.iter().collect(),
        _ => Vec::new(),
    }
}

fn arg_expr(arg: &FunctionArg) -> Option<&Expr> {
    match arg {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(expr)) => Some(expr),
        _ => None,
    }
}

impl Extractor<'_> {
    fn column(&self, name: &Ident) -> Option<usize> {
        let wanted = crate::names::ident_name(name);
        self.input.fields().iter().position(|field| *field.name() == wanted)
    }

    /// `col`, `V.col` or `alias.col` as a column and the variables it is
    /// qualified by (`None`: the universal variable).
    fn column_reference(&self, expr: &Expr) -> Result<Option<(usize, Option<Vec<usize>>)>> {
        match expr {
            Expr::Identifier(ident) => Ok(self.column(ident).map(|column| (column, None))),
            Expr::CompoundIdentifier(parts) if parts.len() == 2 => {
                let Some(column) = self.column(&parts[1]) else {
                    return Err(PlanError::unknown(format!("the input has no column {}", parts[1])).at(parts[1].span));
                };
                Ok(Some((column, self.names.set(&parts[0])?)))
            }
            _ => Ok(None),
        }
    }

    fn offset(&self, function: &ast::Function, args: &[&FunctionArg]) -> Result<u64> {
        let Some(arg) = args.get(1) else { return Ok(if is_call_name(function, &["PREV", "NEXT"]) { 1 } else { 0 }) };
        let bad = || {
            PlanError::invalid(format!(
                "the offset of {} must be a constant whole number of rows, zero or more",
                function.name
            ))
            .at(function.span())
        };
        match arg_expr(arg) {
            Some(Expr::Value(value)) => match &value.value {
                Value::Number(text, _) => text.parse::<u64>().map_err(|_| bad()),
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }

    /// The navigation `expr` is, if it is one.
    fn navigation(&mut self, expr: &Expr, final_semantics: bool) -> Result<Option<Navigation>> {
        let universal =
            |final_semantics| RowSelect { vars: None, from_first: false, logical: 0, physical: 0, final_semantics };
        let function = match expr {
            Expr::Identifier(_) | Expr::CompoundIdentifier(_) => {
                let Some((column, vars)) = self.column_reference(expr)? else { return Ok(None) };
                return Ok(Some(Navigation::Value {
                    column,
                    select: RowSelect { vars, ..universal(final_semantics) },
                }));
            }
            Expr::Function(function) => function,
            _ => return Ok(None),
        };
        let name = function.name.to_string().to_ascii_uppercase();
        let args = call_args(function);
        let span = function.span();
        match name.as_str() {
            "__FINAL" | "__RUNNING" => {
                let is_final = name == "__FINAL";
                if is_final && self.context == Context::Define {
                    return Err(PlanError::invalid(
                        "FINAL cannot be used in DEFINE (a condition sees the rows so far)",
                    )
                    .at(span));
                }
                let inner = args.first().and_then(|arg| arg_expr(arg));
                match inner.map(|inner| self.navigation(inner, is_final)).transpose()?.flatten() {
                    Some(navigation) => Ok(Some(navigation)),
                    None => Err(PlanError::invalid(
                        "RUNNING and FINAL apply to a navigation (FIRST, LAST, PREV, NEXT, a variable's column) or an aggregate",
                    )
                    .at(span)),
                }
            }
            "FIRST" | "LAST" => {
                let target = args.first().and_then(|arg| arg_expr(arg));
                // FIRST(CLASSIFIER(), n): the variable of a row of the match.
                if let Some(Expr::Function(inner)) = target
                    && is_call_name(inner, &["CLASSIFIER"])
                {
                    let Some(Navigation::Classifier { select }) =
                        self.navigation(target.unwrap_or(expr), final_semantics)?
                    else {
                        return Err(PlanError::invalid("CLASSIFIER takes a pattern variable or nothing").at(span));
                    };
                    let logical = self.offset(function, &args)?;
                    let select = RowSelect { from_first: name == "FIRST", logical, ..select };
                    return Ok(Some(Navigation::Classifier { select }));
                }
                let Some((column, vars)) = target.map(|target| self.column_reference(target)).transpose()?.flatten()
                else {
                    return Err(PlanError::invalid(format!("{name} takes a column, as in {name}(A.price)")).at(span));
                };
                let logical = self.offset(function, &args)?;
                let select = RowSelect { vars, from_first: name == "FIRST", logical, physical: 0, final_semantics };
                Ok(Some(Navigation::Value { column, select }))
            }
            "PREV" | "NEXT" => {
                let Some(target) = args.first().and_then(|arg| arg_expr(arg)) else {
                    return Err(PlanError::invalid(format!("{name} takes a column, as in {name}(A.price)")).at(span));
                };
                let offset = self.offset(function, &args)?;
                let offset =
                    i64::try_from(offset).map_err(|_| PlanError::invalid("the offset is too large").at(span))?;
                let physical = if name == "PREV" { -offset } else { offset };
                match self.navigation(target, final_semantics)? {
                    Some(Navigation::Value { column, mut select }) if select.physical == 0 => {
                        select.physical = physical;
                        Ok(Some(Navigation::Value { column, select }))
                    }
                    Some(Navigation::Classifier { mut select }) if select.physical == 0 => {
                        select.physical = physical;
                        Ok(Some(Navigation::Classifier { select }))
                    }
                    _ => Err(PlanError::invalid(format!(
                        "{name} takes a column or FIRST/LAST of one, as in {name}(LAST(A.price), 1)"
                    ))
                    .at(span)),
                }
            }
            "CLASSIFIER" => {
                let vars = match args.first().and_then(|arg| arg_expr(arg)) {
                    Some(Expr::Identifier(ident)) => Some(self.names.required_set(ident)?),
                    Some(other) => {
                        return Err(
                            PlanError::invalid("CLASSIFIER takes a pattern variable or nothing").at(other.span())
                        );
                    }
                    None => None,
                };
                Ok(Some(Navigation::Classifier { select: RowSelect { vars, ..universal(final_semantics) } }))
            }
            // In DEFINE: the number the match being attempted would get.
            "MATCH_NUMBER" => Ok(Some(Navigation::MatchNumber)),
            "MATCH_ROWTIME" => {
                if self.context == Context::Define {
                    return Err(PlanError::invalid("MATCH_ROWTIME() cannot be used in DEFINE").at(span));
                }
                Ok(Some(Navigation::Value { column: self.time_column, select: universal(true) }))
            }
            _ if self.state.aggregate_functions().contains_key(&name.to_ascii_lowercase()) => {
                self.aggregate(function, final_semantics).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// `agg(V.x, ...)`: an aggregate over the rows mapped to `V`.
    fn aggregate(&mut self, function: &ast::Function, final_semantics: bool) -> Result<Navigation> {
        let span = function.span();
        let mut function = function.clone();
        let mut qualifier: Option<(String, Option<Vec<usize>>)> = None;
        let mut mixed = false;
        let names = self.names;
        let mut note = |label: String, vars: Option<Vec<usize>>| match &qualifier {
            Some((seen, _)) if *seen != label => mixed = true,
            Some(_) => {}
            None => qualifier = Some((label, vars)),
        };
        if let FunctionArguments::List(list) = &mut function.args {
            for arg in &mut list.args {
                match arg {
                    FunctionArg::Unnamed(FunctionArgExpr::QualifiedWildcard(name)) => {
                        let ident =
                            name.0.first().and_then(|part| part.as_ident()).cloned().unwrap_or_else(|| Ident::new(""));
                        let vars = names.required_set(&ident)?;
                        note(variable_name(&ident), Some(vars));
                        *arg = FunctionArg::Unnamed(FunctionArgExpr::Wildcard);
                    }
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(expr)) => {
                        let mut stripper = Stripper { names, found: Vec::new(), error: None };
                        let _ = expr.visit(&mut stripper);
                        if let Some(error) = stripper.error {
                            return Err(error);
                        }
                        for (label, vars) in stripper.found {
                            note(label, vars);
                        }
                    }
                    _ => {}
                }
            }
        }
        if mixed {
            return Err(PlanError::invalid(
                "an aggregate in MATCH_RECOGNIZE reads the rows of one variable (or of the whole match): it mixes several",
            )
            .at(span));
        }
        let vars = qualifier.and_then(|(_, vars)| vars);
        // Arguments read the input's columns, then each row's variable and
        // the match's number (see `Navigation::Aggregate`).
        let mut fields: Vec<Field> = self.input.fields().iter().map(|field| field.as_ref().clone()).collect();
        fields.push(Field::new(CLASSIFIER_COLUMN, DataType::Utf8, true));
        fields.push(Field::new(MATCH_NUMBER_COLUMN, DataType::Int64, true));
        let qualified: Vec<_> = self
            .input
            .iter()
            .map(|(qualifier, _)| qualifier.cloned())
            .chain([None, None])
            .zip(fields.into_iter().map(Arc::new))
            .collect();
        let extended = DFSchema::new_with_metadata(qualified, Default::default())?;
        let extended = &extended;
        let logical = self
            .state
            .create_logical_expr_from_sql_expr(ExprWithAlias { expr: Expr::Function(function), alias: None }, extended)
            .map_err(|error| PlanError::from(error).at(span))?;
        // Coerced as a query's aggregates are (avg of a BIGINT reads DOUBLE).
        let context = datafusion::logical_expr::simplify::SimplifyContext::builder()
            .with_schema(Arc::new(extended.clone()))
            .with_config_options(Arc::clone(self.state.config_options()))
            .build();
        let logical = datafusion::optimizer::simplify_expressions::ExprSimplifier::new(context)
            .coerce(logical, extended)
            .map_err(|error| PlanError::from(error).at(span))?;
        #[allow(deprecated)]
        let (aggregate, _filter, _ordering) = datafusion::physical_planner::create_aggregate_expr_and_maybe_filter(
            &logical,
            extended,
            extended.as_arrow(),
            self.state.execution_props(),
        )
        .map_err(|error| PlanError::from(error).at(span))?;
        if aggregate.create_accumulator().is_err() {
            return Err(PlanError::unsupported(format!("aggregate {} has no accumulator", aggregate.name())).at(span));
        }
        Ok(Navigation::Aggregate { aggregate, vars, final_semantics })
    }
}

/// Subqueries are not evaluated per row of a match (a continuous query
/// plans each once).
fn subquery_error(expr: &Expr) -> Option<PlanError> {
    matches!(expr, Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. })
        .then(|| PlanError::unsupported("subqueries are not supported in MEASURES and DEFINE").at(expr.span()))
}

fn is_call_name(function: &ast::Function, names: &[&str]) -> bool {
    let name = function.name.to_string();
    names.iter().any(|candidate| name.eq_ignore_ascii_case(candidate))
}

/// Strips pattern-variable qualifiers (`B.price` to `price`) inside an
/// aggregate's argument, noting which variables they named.
struct Stripper<'a> {
    names: &'a Names<'a>,
    found: Vec<(String, Option<Vec<usize>>)>,
    error: Option<PlanError>,
}

impl VisitorMut for Stripper<'_> {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Some(error) = subquery_error(expr) {
            self.error = Some(error);
            return ControlFlow::Break(());
        }
        match expr {
            Expr::CompoundIdentifier(parts) if parts.len() == 2 => match self.names.set(&parts[0]) {
                Ok(Some(vars)) => {
                    self.found.push((variable_name(&parts[0]), Some(vars)));
                    *expr = Expr::Identifier(parts[1].clone());
                }
                Ok(None) => self.found.push((String::new(), None)),
                Err(error) => {
                    self.error = Some(error);
                    return ControlFlow::Break(());
                }
            },
            // What a rewrite above put there.
            Expr::Identifier(ident) if ident.value == CLASSIFIER_COLUMN || ident.value == MATCH_NUMBER_COLUMN => {}
            Expr::Identifier(_) => self.found.push((String::new(), None)),
            // Each aggregated row's variable, and the match's number: columns
            // the operator adds to the rows it aggregates.
            Expr::Function(function) if is_call_name(function, &["CLASSIFIER"]) => {
                let members = match call_args(function).first().and_then(|arg| arg_expr(arg)) {
                    None => None,
                    Some(Expr::Identifier(ident)) => match self.names.set(ident) {
                        Ok(Some(vars)) => Some(vars),
                        _ => {
                            self.error = Some(
                                PlanError::unknown(format!(
                                    "{} is not a pattern variable or SUBSET",
                                    variable_name(ident)
                                ))
                                .at(ident.span),
                            );
                            return ControlFlow::Break(());
                        }
                    },
                    Some(other) => {
                        self.error =
                            Some(PlanError::invalid("CLASSIFIER takes a pattern variable or nothing").at(other.span()));
                        return ControlFlow::Break(());
                    }
                };
                // CLASSIFIER(U) aggregates U's rows, CLASSIFIER() the match's.
                match (&members, call_args(function).first().and_then(|arg| arg_expr(arg))) {
                    (Some(vars), Some(Expr::Identifier(ident))) => {
                        self.found.push((variable_name(ident), Some(vars.clone())))
                    }
                    _ => self.found.push((String::new(), None)),
                }
                let classifier = Expr::Identifier(Ident::new(CLASSIFIER_COLUMN));
                *expr = match members {
                    None => classifier,
                    Some(vars) => Expr::Case {
                        case_token: ast::helpers::attached_token::AttachedToken::empty(),
                        end_token: ast::helpers::attached_token::AttachedToken::empty(),
                        operand: None,
                        conditions: vec![ast::CaseWhen {
                            condition: Expr::InList {
                                expr: Box::new(classifier.clone()),
                                list: vars
                                    .iter()
                                    .map(|var| {
                                        Expr::Value(
                                            Value::SingleQuotedString(self.names.variables[*var].clone()).into(),
                                        )
                                    })
                                    .collect(),
                                negated: false,
                            },
                            result: classifier,
                        }],
                        else_result: None,
                    },
                };
                return ControlFlow::Continue(());
            }
            Expr::Function(function) if is_call_name(function, &["MATCH_NUMBER"]) => {
                *expr = Expr::Identifier(Ident::new(MATCH_NUMBER_COLUMN));
                return ControlFlow::Continue(());
            }
            Expr::Function(function) if is_call_name(function, &["PREV", "NEXT", "FIRST", "LAST"]) => {
                self.error = Some(
                    PlanError::unsupported("navigation inside an aggregate's argument is not supported yet")
                        .at(function.span()),
                );
                return ControlFlow::Break(());
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}
