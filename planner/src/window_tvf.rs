//! Window table functions.
//!
//! Flink's window TVF syntax and its short form both reach here:
//!
//! ```sql
//! FROM TABLE(TUMBLE(TABLE weblog, DESCRIPTOR(ts), INTERVAL '1' SECOND))
//! FROM TUMBLE(weblog, ts, INTERVAL '1' SECOND)
//! ```
//!
//! Before DataFusion sees the query, each window TVF is replaced by a scan
//! of a planner-made table `__window_N` whose columns are the stream's plus
//! `window_start`, `window_end` and `window_time`, aliased as the stream (or
//! the TVF's own alias) so that `weblog.ip` still resolves. The lowering
//! turns a scan of `__window_N` into the stream's source followed by a
//! window-assignment operator.

use datafusion::arrow::datatypes::DataType;
use datafusion::sql::sqlparser::ast::{
    self, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, Spanned, TableAlias, TableFactor, Value,
};
use datafusion::sql::sqlparser::tokenizer::Span;
use sluice_runtime::operators::window_assign::{WindowKind, gcd};

use crate::catalog::Catalog;
use crate::dialect::PARTITIONED;
use crate::error::{PlanError, Result};
use crate::from_walk::{FromRewrite, walk_query};
use crate::interval::interval_nanos;
use crate::names::{ident_name, object_name, parse_table_factor};
use crate::rewritten::{AS_OF_COLUMN, Rewritten, TemporalTable, WindowTable};

/// Replaces every window TVF of `query` (and its subqueries) by a scan, and
/// every `stream FOR SYSTEM_TIME AS OF ...` by a scan of a versioned table.
/// A static table read `FOR SYSTEM_TIME AS OF` (a lookup join) is read as it
/// is: its rows at the time each stream row arrives.
pub fn rewrite_windows(query: &mut ast::Query, catalog: &dyn Catalog) -> Result<Rewritten> {
    let mut rewriter = Rewriter { catalog, tables: Vec::new(), temporal: Vec::new() };
    walk_query(query, &mut rewriter)?;
    Ok(Rewritten { windows: rewriter.tables, temporal: rewriter.temporal, patterns: Vec::new(), samples: Vec::new() })
}

struct Rewriter<'a> {
    catalog: &'a dyn Catalog,
    tables: Vec<WindowTable>,
    temporal: Vec<TemporalTable>,
}

const WINDOW_FUNCTIONS: [&str; 4] = ["tumble", "hop", "session", "cumulate"];

impl FromRewrite for Rewriter<'_> {
    /// After a versioned table's scan replaced `t FOR SYSTEM_TIME AS OF x`:
    /// the join's condition equates `x` with the scan's [`AS_OF_COLUMN`].
    fn join(&mut self, join: &mut ast::Join) -> Result<()> {
        // `ON cond` becomes `ON cond AND <as of> = alias.__as_of`.
        let TableFactor::Table { name, alias, .. } = &join.relation else {
            return Ok(());
        };
        let scan = object_name(name);
        let Some(temporal) = self.temporal.iter().find(|temporal| temporal.table == scan) else {
            return Ok(());
        };
        let Some(alias) = alias.as_ref().map(|alias| alias.name.clone()) else {
            return Err(PlanError::invalid("internal: a temporal table without alias"));
        };
        let as_of = temporal.as_of.clone();
        let as_of = Expr::Cast {
            kind: ast::CastKind::Cast,
            expr: Box::new(as_of),
            data_type: ast::DataType::Timestamp(None, ast::TimezoneInfo::None),
            array: false,
            format: None,
        };
        let equality = Expr::BinaryOp {
            left: Box::new(as_of),
            op: ast::BinaryOperator::Eq,
            right: Box::new(Expr::CompoundIdentifier(vec![alias, Ident::new(AS_OF_COLUMN)])),
        };
        let constraint = match &mut join.join_operator {
            ast::JoinOperator::Join(constraint)
            | ast::JoinOperator::Inner(constraint)
            | ast::JoinOperator::Left(constraint)
            | ast::JoinOperator::LeftOuter(constraint)
            | ast::JoinOperator::Right(constraint)
            | ast::JoinOperator::RightOuter(constraint)
            | ast::JoinOperator::FullOuter(constraint) => constraint,
            _ => {
                return Err(
                    PlanError::unsupported("a temporal join is JOIN or LEFT JOIN ... ON ...").at(join.relation.span())
                );
            }
        };
        match constraint {
            ast::JoinConstraint::On(condition) => {
                let condition_expr = std::mem::replace(condition, Expr::Value(Value::Null.into()));
                *condition = Expr::BinaryOp {
                    left: Box::new(Expr::Nested(Box::new(condition_expr))),
                    op: ast::BinaryOperator::And,
                    right: Box::new(equality),
                };
            }
            _ => {
                return Err(PlanError::invalid("a temporal join needs ON <stream key> = <table primary key>")
                    .at(join.relation.span()));
            }
        }
        Ok(())
    }

    fn factor(&mut self, factor: &mut TableFactor) -> Result<()> {
        self.replace_factor(factor)
    }
}

impl Rewriter<'_> {
    /// `factor` replaced by a scan, if it is a window TVF or a versioned
    /// table; the walk enters derived tables and nested joins.
    fn replace_factor(&mut self, factor: &mut TableFactor) -> Result<()> {
        let replacement = match factor {
            TableFactor::TableFunction { expr: Expr::Function(function), alias } => {
                let name = object_name(&function.name);
                if !WINDOW_FUNCTIONS.contains(&name.as_str()) {
                    return Ok(());
                }
                let arguments = match &function.args {
                    FunctionArguments::List(list) => list.args.clone(),
                    _ => Vec::new(),
                };
                self.window(&name, &arguments, alias.clone(), function.span())?
            }
            TableFactor::Table { name, version: Some(version), alias, args: None, .. } => {
                let ast::TableVersion::ForSystemTimeAsOf(as_of) = version else {
                    return Err(PlanError::unsupported("of table versions, only FOR SYSTEM_TIME AS OF is supported")
                        .at(name.span()));
                };
                let table = object_name(name);
                if self.catalog.table(&table).is_some() {
                    // A lookup join: the static table as it is.
                    if let TableFactor::Table { version, .. } = factor {
                        *version = None;
                    }
                    return Ok(());
                }
                let source = self
                    .catalog
                    .stream(&table)
                    .ok_or_else(|| PlanError::unknown(format!("table {table:?} not found")).at(name.span()))?;
                if source.primary_key.is_empty() {
                    return Err(PlanError::invalid(format!(
                        "a temporal join (FOR SYSTEM_TIME AS OF) needs a versioned table, and {table} has no PRIMARY KEY; declare PRIMARY KEY (...) NOT ENFORCED on it"
                    ))
                    .at(name.span()));
                }
                if source.event_time.is_none() || source.is_processing_time() {
                    return Err(PlanError::invalid(format!(
                        "a versioned table needs an event-time attribute: declare WATERMARK FOR ... on {table}"
                    ))
                    .at(name.span()));
                }
                let scan = format!("__temporal_{}", self.temporal.len());
                self.temporal.push(TemporalTable { table: scan.clone(), source, as_of: as_of.clone() });
                let alias = alias.clone().unwrap_or(TableAlias {
                    explicit: true,
                    name: Ident::new(table.rsplit('.').next().unwrap_or(&table)),
                    columns: vec![],
                    at: None,
                });
                scan_of(&scan, alias)?
            }
            TableFactor::Table { name, args: Some(args), alias, .. } => {
                let function = object_name(name);
                if !WINDOW_FUNCTIONS.contains(&function.as_str()) {
                    return Ok(());
                }
                let span = name.span();
                self.window(&function, &args.args, alias.clone(), span)?
            }
            _ => return Ok(()),
        };
        *factor = replacement;
        Ok(())
    }

    fn window(
        &mut self,
        function: &str,
        arguments: &[FunctionArg],
        alias: Option<TableAlias>,
        span: Span,
    ) -> Result<TableFactor> {
        // Flink's argument orders: TUMBLE(data, timecol, size [, offset]),
        // HOP(data, timecol, slide, size [, offset]), CUMULATE(data, timecol, step, size [, offset]),
        // SESSION(data [PARTITION BY keys], timecol, gap).
        let names: &[&str] = match function {
            "hop" => &["data", "timecol", "slide", "size", "offset"],
            "cumulate" => &["data", "timecol", "step", "size", "offset"],
            "session" => &["data", "timecol", "gap"],
            _ => &["data", "timecol", "size", "offset"],
        };
        let arguments = Arguments::new(arguments, names, span)?;
        let mut stream_arg = arguments.required(0, "the stream (TABLE name)")?;
        let mut partition_keys = Vec::new();
        if let Expr::Function(partitioned) = stream_arg
            && object_name(&partitioned.name) == PARTITIONED
            && let FunctionArguments::List(list) = &partitioned.args
        {
            let mut parts = list.args.iter().filter_map(|argument| match argument {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(expr)) => Some(expr),
                _ => None,
            });
            stream_arg = parts.next().unwrap_or(stream_arg);
            for key in parts {
                match key {
                    Expr::Identifier(ident) => partition_keys.push(ident_name(ident)),
                    other => return Err(PlanError::invalid("PARTITION BY takes column names").at(other.span())),
                }
            }
            if function != "session" {
                return Err(PlanError::invalid("only SESSION windows take PARTITION BY").at(partitioned.span()));
            }
        }
        if let Expr::Subquery(subquery) = stream_arg {
            return self.window_over_query(subquery, function, &arguments, partition_keys, alias, span);
        }
        let stream_name = match stream_arg {
            Expr::Identifier(ident) => ident_name(ident),
            Expr::CompoundIdentifier(idents) => idents.iter().map(ident_name).collect::<Vec<_>>().join("."),
            other => {
                return Err(PlanError::invalid("the first argument of a window function must be a stream: TABLE name")
                    .at(other.span()));
            }
        };
        let source = self
            .catalog
            .stream(&stream_name)
            .ok_or_else(|| PlanError::unknown(format!("stream {stream_name:?} not found")).at(stream_arg.span()))?;
        for key in &partition_keys {
            if source.schema.index_of(key).is_err() {
                return Err(PlanError::unknown(format!(
                    "stream {stream_name:?} has no column {key:?} to partition by"
                ))
                .at(span));
            }
        }
        let time_arg = arguments.required(1, "the time column (DESCRIPTOR(col))")?;
        let time_ident = descriptor_column(time_arg)?;
        let time_name = ident_name(&time_ident);
        let time_column = source.schema.index_of(&time_name).map_err(|_| {
            PlanError::unknown(format!("stream {stream_name:?} has no column {time_name:?}")).at(time_ident.span)
        })?;
        if !matches!(source.schema.field(time_column).data_type(), DataType::Timestamp(_, _)) {
            return Err(PlanError::invalid(format!("the window time column {time_name:?} must be a TIMESTAMP"))
                .at(time_ident.span));
        }
        match source.event_time {
            Some(event_time) if event_time.column == time_column => {}
            _ => {
                return Err(PlanError::invalid(format!(
                    "{} needs an event-time attribute, but {time_name:?} has no watermark; declare WATERMARK FOR {time_name} AS {time_name} - INTERVAL '...' SECOND on stream {stream_name}",
                    function.to_uppercase()
                ))
                .at(time_ident.span));
            }
        }
        let kind = window_kind(function, &arguments)?;
        let table = format!("__window_{}", self.tables.len());
        self.tables.push(WindowTable {
            table: table.clone(),
            source: Some(source),
            subquery: None,
            time_name,
            subquery_plan: None,
            kind,
            time_column,
            partition_keys,
        });
        let alias = alias.unwrap_or(TableAlias {
            explicit: true,
            name: Ident::new(stream_name.rsplit('.').next().unwrap_or(&stream_name)),
            columns: vec![],
            at: None,
        });
        scan_of(&table, alias)
    }

    /// A window over a query's rows; its time column is checked once the
    /// query is planned.
    fn window_over_query(
        &mut self,
        subquery: &ast::Query,
        function: &str,
        arguments: &Arguments,
        partition_keys: Vec<String>,
        alias: Option<TableAlias>,
        span: Span,
    ) -> Result<TableFactor> {
        let mut subquery = Box::new(subquery.clone());
        walk_query(&mut subquery, self)?;
        let time_arg = arguments.required(1, "the time column (DESCRIPTOR(col))")?;
        let time_name = ident_name(&descriptor_column(time_arg)?);
        let kind = window_kind(function, arguments)?;
        if !partition_keys.is_empty() {
            return Err(PlanError::unsupported("PARTITION BY over a query is not supported yet").at(span));
        }
        let table = format!("__window_{}", self.tables.len());
        self.tables.push(WindowTable {
            table: table.clone(),
            source: None,
            subquery: Some(subquery),
            time_name,
            subquery_plan: None,
            kind,
            time_column: usize::MAX,
            partition_keys,
        });
        let alias = alias.unwrap_or(TableAlias { explicit: true, name: Ident::new("w"), columns: vec![], at: None });
        scan_of(&table, alias)
    }
}

fn window_kind(function: &str, arguments: &Arguments) -> Result<WindowKind> {
    let positive = |slot: usize, what: &str| -> Result<i64> {
        let argument = arguments.required(slot, what)?;
        let nanos = interval_nanos(argument)?;
        if nanos <= 0 {
            return Err(PlanError::invalid(format!("the {what} must be positive")).at(argument.span()));
        }
        Ok(nanos)
    };
    let kind = match function {
        "hop" => {
            let slide = positive(2, "window slide")?;
            let size = positive(3, "window size")?;
            let offset = arguments.optional(4).map(interval_nanos).transpose()?.unwrap_or(0);
            // Each row is in ceil(size / slide) windows; a window spans
            // size / gcd(size, slide) panes.
            let windows = size / slide + i64::from(size % slide != 0);
            let panes = size / gcd(size, slide);
            check_ratio("HOP", "slide", windows, "windows per row (size / slide)", arguments.span)?;
            check_ratio("HOP", "slide", panes, "panes per window (size / gcd(size, slide))", arguments.span)?;
            WindowKind::Hop { size, slide, offset }
        }
        "session" => WindowKind::Session { gap: positive(2, "session gap")? },
        "cumulate" => {
            let step = positive(2, "window step")?;
            let max_size = positive(3, "window size")?;
            if max_size % step != 0 {
                let size_arg = arguments.required(3, "the window size")?;
                return Err(
                    PlanError::invalid("the CUMULATE size must be a whole multiple of its step").at(size_arg.span())
                );
            }
            let offset = arguments.optional(4).map(interval_nanos).transpose()?.unwrap_or(0);
            // Each row is in up to size / step windows of size / step panes.
            check_ratio(
                "CUMULATE",
                "step",
                max_size / step,
                "windows per row and panes per window (size / step)",
                arguments.span,
            )?;
            WindowKind::Cumulate { step, max_size, offset }
        }
        _ => {
            let size = positive(2, "window size")?;
            let offset = arguments.optional(3).map(interval_nanos).transpose()?.unwrap_or(0);
            WindowKind::Tumble { size, offset }
        }
    };
    Ok(kind)
}

/// The most windows one HOP or CUMULATE row belongs to, and the most panes
/// one of their windows spans. A row is copied into each of its windows
/// (under EMIT, allowed lateness and window joins) and a closing window
/// merges each of its panes, so this bounds the memory and time one row
/// costs: `HOP(..., INTERVAL '1' NANOSECOND, INTERVAL '1' DAY)` would put
/// every row into 86 400 000 000 000 windows. 10 000 leaves room for
/// `HOP(..., INTERVAL '1' SECOND, INTERVAL '1' HOUR)` (3 600).
pub const MAX_WINDOWS_PER_ROW: i64 = 10_000;

/// Refuses a HOP or CUMULATE whose `count` of windows or panes (`what`)
/// is beyond [`MAX_WINDOWS_PER_ROW`], pointing at the call.
fn check_ratio(function: &str, step: &str, count: i64, what: &str, span: Span) -> Result<()> {
    if count <= MAX_WINDOWS_PER_ROW {
        return Ok(());
    }
    Err(PlanError::invalid(format!(
        "this {function} window has {count} {what}; at most {MAX_WINDOWS_PER_ROW} are allowed: use a longer {step} or a shorter size"
    ))
    .at(span))
}

/// The column of `DESCRIPTOR(col)` or of a bare `col`.
fn descriptor_column(time_arg: &Expr) -> Result<Ident> {
    match time_arg {
        Expr::Identifier(ident) => Ok(ident.clone()),
        Expr::Function(descriptor) if object_name(&descriptor.name) == "descriptor" => match &descriptor.args {
            FunctionArguments::List(list) => match list.args.as_slice() {
                [FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Identifier(ident)))] => Ok(ident.clone()),
                _ => Err(PlanError::invalid("DESCRIPTOR takes one column name").at(descriptor.span())),
            },
            _ => Err(PlanError::invalid("DESCRIPTOR takes one column name").at(descriptor.span())),
        },
        other => Err(PlanError::invalid("the time column must be DESCRIPTOR(col) or a column name").at(other.span())),
    }
}

/// A TVF's arguments, positional or named.
struct Arguments<'a> {
    values: Vec<Option<&'a Expr>>,
    span: Span,
}

impl<'a> Arguments<'a> {
    fn new(arguments: &'a [FunctionArg], names: &[&str], span: Span) -> Result<Self> {
        let mut values = vec![None; names.len()];
        for (position, argument) in arguments.iter().enumerate() {
            let (slot, expr) = match argument {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(expr)) => (position, expr),
                FunctionArg::Named { name, arg: FunctionArgExpr::Expr(expr), .. } => {
                    let key = ident_name(name);
                    let slot = names.iter().position(|candidate| *candidate == key).ok_or_else(|| {
                        PlanError::invalid(format!("unknown argument {key:?}; expected one of {}", names.join(", ")))
                            .at(name.span)
                    })?;
                    (slot, expr)
                }
                _ => return Err(PlanError::invalid("unsupported window argument").at(span)),
            };
            if slot >= values.len() {
                return Err(PlanError::invalid(format!("too many arguments: at most {}", names.len())).at(expr.span()));
            }
            values[slot] = Some(expr);
        }
        Ok(Self { values, span })
    }

    fn required(&self, slot: usize, what: &str) -> Result<&'a Expr> {
        self.values[slot].ok_or_else(|| PlanError::invalid(format!("missing argument: {what}")).at(self.span))
    }

    fn optional(&self, slot: usize) -> Option<&'a Expr> {
        self.values[slot]
    }
}

/// `SELECT * FROM <table> AS <alias>`'s table factor: built by the parser,
/// which knows how to fill every field.
pub(crate) fn scan_of(table: &str, alias: TableAlias) -> Result<TableFactor> {
    let mut factor = parse_table_factor(table)?;
    if let TableFactor::Table { alias: slot, .. } = &mut factor {
        *slot = Some(alias);
    }
    Ok(factor)
}
