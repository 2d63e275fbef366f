//! One walk over a query's FROM clauses, shared by the rewrites that run
//! before DataFusion sees the query: window TVFs and temporal tables
//! ([`crate::window_tvf`]), `CROSS JOIN UNNEST` ([`crate::unnest`]), and
//! next MATCH_RECOGNIZE.
//!
//! # Algorithm
//!
//! [`walk_query`] visits the query's CTEs in order, then its body. A body
//! is a SELECT, a parenthesised query, or a set operation (both sides,
//! left first). In a SELECT, each `FROM` item's relation and then each of
//! its joins is visited; after the whole FROM clause the SELECT itself is
//! handed to [`FromRewrite::select`].
//!
//! Each table factor is first handed to [`FromRewrite::factor`], which may
//! replace it in place; the walk then enters what is there now (a derived
//! table's query, a nested join, the table under PIVOT, UNPIVOT or
//! MATCH_RECOGNIZE). A join is handed to [`FromRewrite::join`] after its
//! relation was walked, so the rewrite can change its condition. Errors a
//! factor's rewrite returns without a position point at that factor.
//! Subqueries inside expressions (`WHERE x IN (SELECT ...)`) are not
//! entered.

use datafusion::sql::sqlparser::ast::{Join, Query, Select, SetExpr, Spanned, TableFactor, TableWithJoins};

use crate::error::Result;

/// What a FROM-clause rewrite does where the walk passes. Every method
/// does nothing unless the rewrite says otherwise.
pub(crate) trait FromRewrite {
    /// One table factor, before the walk enters it: replace `*factor` to
    /// rewrite it; return an error `.at(span)` to say where it went wrong
    /// (the factor itself when the error has no position).
    fn factor(&mut self, _factor: &mut TableFactor) -> Result<()> {
        Ok(())
    }

    /// One join, after its relation was walked.
    fn join(&mut self, _join: &mut Join) -> Result<()> {
        Ok(())
    }

    /// One SELECT, after its whole FROM clause was walked.
    fn select(&mut self, _select: &mut Select) -> Result<()> {
        Ok(())
    }
}

/// Walks every FROM clause of `query` and of the queries it contains,
/// applying `rewrite`.
pub(crate) fn walk_query<R: FromRewrite + ?Sized>(query: &mut Query, rewrite: &mut R) -> Result<()> {
    if let Some(with) = &mut query.with {
        for cte in &mut with.cte_tables {
            walk_query(&mut cte.query, rewrite)?;
        }
    }
    walk_set_expr(&mut query.body, rewrite)
}

fn walk_set_expr<R: FromRewrite + ?Sized>(body: &mut SetExpr, rewrite: &mut R) -> Result<()> {
    match body {
        SetExpr::Select(select) => {
            for from in &mut select.from {
                walk_table_with_joins(from, rewrite)?;
            }
            rewrite.select(select)
        }
        SetExpr::Query(query) => walk_query(query, rewrite),
        SetExpr::SetOperation { left, right, .. } => {
            walk_set_expr(left, rewrite)?;
            walk_set_expr(right, rewrite)
        }
        _ => Ok(()),
    }
}

fn walk_table_with_joins<R: FromRewrite + ?Sized>(from: &mut TableWithJoins, rewrite: &mut R) -> Result<()> {
    walk_factor(&mut from.relation, rewrite)?;
    for join in &mut from.joins {
        walk_factor(&mut join.relation, rewrite)?;
        rewrite.join(join)?;
    }
    Ok(())
}

fn walk_factor<R: FromRewrite + ?Sized>(factor: &mut TableFactor, rewrite: &mut R) -> Result<()> {
    let span = factor.span();
    rewrite.factor(factor).map_err(|error| error.at(span))?;
    match factor {
        TableFactor::Derived { subquery, .. } => walk_query(subquery, rewrite),
        TableFactor::NestedJoin { table_with_joins, .. } => walk_table_with_joins(table_with_joins, rewrite),
        TableFactor::Pivot { table, .. }
        | TableFactor::Unpivot { table, .. }
        | TableFactor::MatchRecognize { table, .. } => walk_factor(table, rewrite),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::ast::{self, ObjectName};
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;
    use crate::dialect::SluiceDialect;
    use crate::error::PlanError;
    use crate::names::object_name;

    fn query(sql: &str) -> Query {
        match Parser::new(&SluiceDialect::default()).try_with_sql(sql).unwrap().parse_statement().unwrap() {
            ast::Statement::Query(query) => *query,
            other => panic!("not a query: {other}"),
        }
    }

    /// Names every table it passes, renames `old` to `new`, refuses `bad`.
    #[derive(Default)]
    struct Names {
        seen: Vec<String>,
        selects: usize,
        joins: usize,
    }

    impl FromRewrite for Names {
        fn factor(&mut self, factor: &mut TableFactor) -> Result<()> {
            if let TableFactor::Table { name, .. } = factor {
                self.seen.push(object_name(name));
                if object_name(name) == "old" {
                    *name = ObjectName::from(vec![ast::Ident::new("new")]);
                }
                if object_name(name) == "bad" {
                    return Err(PlanError::invalid("bad table"));
                }
            }
            Ok(())
        }

        fn join(&mut self, _join: &mut Join) -> Result<()> {
            self.joins += 1;
            Ok(())
        }

        fn select(&mut self, _select: &mut Select) -> Result<()> {
            self.selects += 1;
            Ok(())
        }
    }

    #[test]
    fn visits_every_from_clause_and_replaces_factors() {
        let mut query = query(
            "WITH c AS (SELECT * FROM a) SELECT * FROM (SELECT * FROM old) AS d JOIN (b JOIN e ON true) ON true \
             UNION ALL SELECT * FROM f, g",
        );
        let mut names = Names::default();
        walk_query(&mut query, &mut names).unwrap();
        assert_eq!(names.seen, vec!["a", "old", "b", "e", "f", "g"]);
        assert_eq!((names.selects, names.joins), (4, 2));
        assert!(query.to_string().contains("FROM new"));
    }

    #[test]
    fn an_error_without_a_position_points_at_its_factor() {
        let mut query = query("SELECT *\nFROM a JOIN bad ON true");
        let error = walk_query(&mut query, &mut Names::default()).unwrap_err();
        assert_eq!((error.line, error.column), (Some(2), Some(13)));
    }
}
