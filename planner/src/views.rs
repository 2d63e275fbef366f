//! Views, planned into the queries that read them.
//!
//! A view is its `CREATE VIEW` text in the catalog. Before any other
//! rewrite, every FROM item naming a view — a table factor `FROM v`, or a
//! window function's data `TUMBLE(TABLE v, ...)` — is replaced by the view's
//! query as a derived table aliased with the view's name
//! (`FROM (SELECT ...) AS v`), and the views that query names are expanded
//! in turn. The reader's pipeline then runs the view's operators: the time
//! attribute and watermark of the view's rows pass through as they do for
//! any subquery, and an updating view gives an updating input.
//!
//! A view's MATCH_RECOGNIZE clauses join the reader's: their stubs are
//! renumbered past the reader's own (see [`crate::pattern_clause`]).
//! A view that reaches itself, directly or through others, is refused.

use datafusion::sql::sqlparser::ast::{
    self, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, MatchRecognizePattern, MatchRecognizeSymbol,
    Spanned, TableAlias, TableFactor,
};

use datafusion::sql::sqlparser::tokenizer::Span;

use crate::catalog::Catalog;
use crate::error::{PlanError, Result};
use crate::from_walk::{FromRewrite, walk_query};
use crate::names::{ident_name, object_name};
use crate::pattern_clause::{PatternClause, STUB_PREFIX, stub_index};
use crate::statement::{Statement, parse_statements};

/// How deep views may nest.
const MAX_DEPTH: usize = 16;

/// Window functions whose first argument names their input.
const WINDOW_FUNCTIONS: &[&str] = &["tumble", "hop", "cumulate", "session"];

/// Replaces every view `query` reads by the view's query; the views'
/// pattern clauses are appended to `patterns`.
pub fn expand_views(query: &mut ast::Query, patterns: &mut Vec<PatternClause>, catalog: &dyn Catalog) -> Result<()> {
    let mut expander = Expander { catalog, patterns, reading: Vec::new() };
    walk_query(query, &mut expander)
}

/// The names of the streams, tables and views `query` reads (not entering
/// views), in order of appearance, without repeats.
pub fn read_names(query: &ast::Query) -> Vec<String> {
    let mut names = Names::default();
    let mut query = query.clone();
    // The walk only collects: it cannot fail.
    let _ = walk_query(&mut query, &mut names);
    names.0
}

/// A view's query and pattern clauses, parsed from its `CREATE VIEW` text.
pub fn view_query(ddl: &str) -> Result<(ast::Query, Vec<PatternClause>)> {
    let mut statements = parse_statements(ddl)?;
    match statements.pop().map(|located| located.statement) {
        Some(Statement::CreateView(view)) => Ok((*view.query, view.patterns)),
        _ => Err(PlanError::invalid(format!("internal: a view's definition is not CREATE VIEW: {ddl}"))),
    }
}

struct Expander<'a> {
    catalog: &'a dyn Catalog,
    patterns: &'a mut Vec<PatternClause>,
    /// The views being expanded, outermost first.
    reading: Vec<String>,
}

impl Expander<'_> {
    /// The query of view `name` with its own views expanded, or `None`
    /// when `name` is no view.
    fn expanded(&mut self, name: &str, span: Span) -> Result<Option<ast::Query>> {
        let Some(ddl) = self.catalog.view(name) else { return Ok(None) };
        if self.reading.iter().any(|reading| reading == name) {
            let mut cycle = self.reading.clone();
            cycle.push(name.to_string());
            return Err(PlanError::invalid(format!("view {name} reads itself ({})", cycle.join(" -> "))).at(span));
        }
        if self.reading.len() >= MAX_DEPTH {
            return Err(PlanError::invalid(format!("views nest more than {MAX_DEPTH} deep")).at(span));
        }
        let (mut query, view_patterns) = view_query(&ddl)?;
        // The view's stubs count on from the clauses already known.
        let offset = self.patterns.len();
        self.patterns.extend(view_patterns);
        if offset > 0 {
            walk_query(&mut query, &mut Renumber(offset))?;
        }
        self.reading.push(name.to_string());
        let expanded = walk_query(&mut query, self);
        self.reading.pop();
        expanded?;
        Ok(Some(query))
    }
}

impl FromRewrite for Expander<'_> {
    fn factor(&mut self, factor: &mut TableFactor) -> Result<()> {
        match factor {
            TableFactor::Table { name, args: None, version: None, alias, .. } => {
                let view = object_name(name);
                let span = name.span();
                let Some(query) = self.expanded(&view, span)? else { return Ok(()) };
                let alias = alias.clone().unwrap_or_else(|| TableAlias {
                    explicit: true,
                    name: Ident::new(view.rsplit('.').next().unwrap_or(&view)),
                    columns: vec![],
                    at: None,
                });
                *factor = TableFactor::Derived {
                    lateral: false,
                    subquery: Box::new(query),
                    alias: Some(alias),
                    sample: None,
                };
            }
            TableFactor::TableFunction { expr: Expr::Function(function), .. }
                if WINDOW_FUNCTIONS.contains(&object_name(&function.name).as_str()) =>
            {
                if let FunctionArguments::List(list) = &mut function.args {
                    self.window_input(&mut list.args)?;
                }
            }
            TableFactor::Table { name, args: Some(args), .. }
                if WINDOW_FUNCTIONS.contains(&object_name(name).as_str()) =>
            {
                self.window_input(&mut args.args)?;
            }
            _ => {}
        }
        Ok(())
    }
}

impl Expander<'_> {
    /// A window function's data argument naming a view becomes the view's
    /// query (`TABLE (SELECT ...)`), also inside `PARTITIONED(v, keys)`.
    fn window_input(&mut self, arguments: &mut [FunctionArg]) -> Result<()> {
        let Some(first) = arguments.first_mut().and_then(argument_expr) else { return Ok(()) };
        let data = match first {
            Expr::Function(partitioned) => match &mut partitioned.args {
                FunctionArguments::List(list) => match list.args.first_mut().and_then(argument_expr) {
                    Some(inner) => inner,
                    None => return Ok(()),
                },
                _ => return Ok(()),
            },
            other => other,
        };
        let name = match &*data {
            Expr::Identifier(ident) => ident_name(ident),
            Expr::CompoundIdentifier(idents) => idents.iter().map(ident_name).collect::<Vec<_>>().join("."),
            _ => return Ok(()),
        };
        let span = data.span();
        if let Some(query) = self.expanded(&name, span)? {
            *data = Expr::Subquery(Box::new(query));
        }
        Ok(())
    }
}

fn argument_expr(argument: &mut FunctionArg) -> Option<&mut Expr> {
    match argument {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(expr))
        | FunctionArg::Named { arg: FunctionArgExpr::Expr(expr), .. }
        | FunctionArg::ExprNamed { arg: FunctionArgExpr::Expr(expr), .. } => Some(expr),
        _ => None,
    }
}

/// Moves every MATCH_RECOGNIZE stub of a query `offset` clauses on.
struct Renumber(usize);

impl Renumber {
    fn rename(&self, ident: &mut Ident) {
        if let Some(index) = stub_index(ident) {
            ident.value = format!("{STUB_PREFIX}{}", index + self.0);
        }
    }

    fn pattern(&self, pattern: &mut MatchRecognizePattern) {
        let symbol = |symbol: &mut MatchRecognizeSymbol| {
            if let MatchRecognizeSymbol::Named(ident) = symbol {
                self.rename(ident);
            }
        };
        match pattern {
            MatchRecognizePattern::Symbol(one) | MatchRecognizePattern::Exclude(one) => symbol(one),
            MatchRecognizePattern::Permute(many) => many.iter_mut().for_each(symbol),
            MatchRecognizePattern::Concat(patterns) | MatchRecognizePattern::Alternation(patterns) => {
                patterns.iter_mut().for_each(|pattern| self.pattern(pattern))
            }
            MatchRecognizePattern::Group(inner) | MatchRecognizePattern::Repetition(inner, _) => self.pattern(inner),
        }
    }
}

impl FromRewrite for Renumber {
    fn factor(&mut self, factor: &mut TableFactor) -> Result<()> {
        if let TableFactor::MatchRecognize { pattern, symbols, .. } = factor {
            self.pattern(pattern);
            for definition in symbols {
                self.rename(&mut definition.symbol);
            }
        }
        Ok(())
    }
}

/// Collects the names FROM items read.
#[derive(Default)]
struct Names(Vec<String>);

impl Names {
    fn add(&mut self, name: String) {
        if !self.0.contains(&name) {
            self.0.push(name);
        }
    }
}

impl FromRewrite for Names {
    fn factor(&mut self, factor: &mut TableFactor) -> Result<()> {
        let arguments = match factor {
            TableFactor::Table { name, args: None, .. } => {
                self.add(object_name(name));
                return Ok(());
            }
            TableFactor::TableFunction { expr: Expr::Function(function), .. } => match &mut function.args {
                FunctionArguments::List(list) => &mut list.args,
                _ => return Ok(()),
            },
            TableFactor::Table { args: Some(args), .. } => &mut args.args,
            _ => return Ok(()),
        };
        let Some(first) = arguments.first_mut().and_then(argument_expr) else { return Ok(()) };
        let data = match first {
            Expr::Function(partitioned) => match &mut partitioned.args {
                FunctionArguments::List(list) => list.args.first_mut().and_then(argument_expr),
                _ => None,
            },
            other => Some(other),
        };
        match data {
            Some(Expr::Identifier(ident)) => self.add(ident_name(ident)),
            Some(Expr::Subquery(query)) => {
                for name in read_names(query) {
                    self.add(name);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use sluice_runtime::source::SourceSpec;

    use super::*;

    #[derive(Default)]
    struct Views(BTreeMap<String, String>);

    impl Catalog for Views {
        fn stream(&self, _name: &str) -> Option<SourceSpec> {
            None
        }
        fn stream_names(&self) -> Vec<String> {
            Vec::new()
        }
        fn view(&self, name: &str) -> Option<String> {
            self.0.get(name).cloned()
        }
    }

    fn query_of(sql: &str) -> (ast::Query, Vec<PatternClause>) {
        let statement = parse_statements(sql).unwrap().remove(0).statement;
        let (query, _, patterns) = statement.query_parts().unwrap();
        (query.clone(), patterns.to_vec())
    }

    #[test]
    fn views_become_derived_tables_and_nest() {
        let mut views = Views::default();
        views.0.insert("errors".into(), "CREATE VIEW errors AS SELECT * FROM weblog WHERE status >= 500".into());
        views.0.insert("slow".into(), "CREATE VIEW slow AS SELECT ip FROM errors WHERE ms > 100".into());
        let (mut query, mut patterns) = query_of(
            "SELECT * FROM TABLE(TUMBLE(TABLE slow, DESCRIPTOR(ts), INTERVAL '1' SECOND)) JOIN errors e ON true",
        );
        expand_views(&mut query, &mut patterns, &views).unwrap();
        let text = query.to_string();
        assert!(
            text.contains(
                "TUMBLE((SELECT ip FROM (SELECT * FROM weblog WHERE status >= 500) AS errors WHERE ms > 100)"
            ),
            "{text}"
        );
        assert!(text.contains("JOIN (SELECT * FROM weblog WHERE status >= 500) e ON"), "{text}");
        assert_eq!(read_names(&query_of("SELECT * FROM a JOIN TABLE(HOP(TABLE b, DESCRIPTOR(t), INTERVAL '1' SECOND, INTERVAL '2' SECOND)) ON true").0), ["a", "b"]);
    }

    #[test]
    fn a_view_that_reaches_itself_is_refused() {
        let mut views = Views::default();
        views.0.insert("a".into(), "CREATE VIEW a AS SELECT * FROM b".into());
        views.0.insert("b".into(), "CREATE VIEW b AS SELECT * FROM a".into());
        let (mut query, mut patterns) = query_of("SELECT * FROM a");
        let error = expand_views(&mut query, &mut patterns, &views).unwrap_err();
        assert!(error.message.contains("view a reads itself (a -> b -> a)"), "{}", error.message);
    }

    #[test]
    fn pattern_stubs_of_a_view_count_on_from_the_readers() {
        let mut views = Views::default();
        views.0.insert(
            "runs".into(),
            "CREATE VIEW runs AS SELECT * FROM t MATCH_RECOGNIZE (ORDER BY ts MEASURES A.x AS x PATTERN (A B) DEFINE B AS B.x > A.x) AS m".into(),
        );
        let (mut query, mut patterns) = query_of(
            "SELECT * FROM u MATCH_RECOGNIZE (ORDER BY ts MEASURES A.y AS y PATTERN (A) DEFINE A AS true) AS n JOIN runs ON true",
        );
        assert_eq!(patterns.len(), 1);
        expand_views(&mut query, &mut patterns, &views).unwrap();
        assert_eq!(patterns.len(), 2);
        let text = query.to_string();
        assert!(text.contains("__match_recognize_0") && text.contains("__match_recognize_1"), "{text}");
    }
}
