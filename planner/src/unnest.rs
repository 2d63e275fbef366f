//! `CROSS JOIN UNNEST(...)` (flatMap), which DataFusion does not plan as a
//! lateral join, rewritten into the `unnest` projection it does plan:
//!
//! ```sql
//! SELECT o.customer, t.item FROM orders AS o CROSS JOIN UNNEST(o.items) AS t(item)
//! -- becomes
//! SELECT o.customer, item FROM (SELECT *, unnest(o.items) AS item FROM orders AS o) AS o
//! ```
//!
//! The comma form `FROM orders, UNNEST(items) AS t(item)` is handled alike.
//! References qualified with the UNNEST alias (`t.item`) lose the
//! qualifier; the unnested column must not share a name with a column of
//! the relation.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    self, Expr, JoinOperator, Select, Spanned, TableFactor, TableWithJoins, visit_expressions_mut,
};

use crate::error::{PlanError, Result};
use crate::from_walk::{FromRewrite, walk_query};
use crate::names::{ident_name, parse_table_factor};

/// Rewrites every `CROSS JOIN UNNEST(...)` of `query` and its subqueries.
pub fn rewrite_lateral_unnest(query: &mut ast::Query) -> Result<()> {
    walk_query(query, &mut UnnestRewrite)
}

/// The rewrite works on whole SELECTs: their FROM items and references.
struct UnnestRewrite;

impl FromRewrite for UnnestRewrite {
    fn select(&mut self, select: &mut Select) -> Result<()> {
        select_unnest(select)
    }
}

/// One `UNNEST(expr) AS alias(column)`.
struct Unnest {
    alias: Option<String>,
    expr: Expr,
    column: String,
}

fn take_unnest(relation: &TableFactor) -> Result<Option<Unnest>> {
    // Our dialect is not one sqlparser knows, so `UNNEST(x)` arrives as a
    // table function call rather than as `TableFactor::UNNEST`.
    let (alias, array_exprs, flags) = match relation {
        TableFactor::UNNEST { alias, array_exprs, with_offset, with_ordinality, .. } => {
            (alias, array_exprs.clone(), *with_offset || *with_ordinality)
        }
        TableFactor::Table { name, alias, args: Some(args), with_ordinality, .. }
            if name.0.len() == 1 && name.0[0].as_ident().is_some_and(|ident| ident_name(ident) == "unnest") =>
        {
            let exprs = args
                .args
                .iter()
                .map(|arg| match arg {
                    ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(expr)) => Ok(expr.clone()),
                    _ => Err(PlanError::unsupported("UNNEST takes an array expression").at(relation.span())),
                })
                .collect::<Result<Vec<_>>>()?;
            (alias, exprs, *with_ordinality)
        }
        _ => return Ok(None),
    };
    if flags || array_exprs.len() != 1 {
        return Err(PlanError::unsupported("UNNEST takes one array here, without WITH OFFSET or WITH ORDINALITY")
            .at(relation.span()));
    }
    let alias_name = alias.as_ref().map(|alias| ident_name(&alias.name));
    let column = alias
        .as_ref()
        .and_then(|alias| alias.columns.first().map(|column| ident_name(&column.name)))
        .or_else(|| alias_name.clone())
        .unwrap_or_else(|| "unnest".to_string());
    Ok(Some(Unnest { alias: alias_name, expr: array_exprs[0].clone(), column }))
}

fn select_unnest(select: &mut Select) -> Result<()> {
    let mut unnests = Vec::new();
    let mut kept: Vec<TableWithJoins> = Vec::new();
    for (index, mut from) in std::mem::take(&mut select.from).into_iter().enumerate() {
        if index > 0
            && from.joins.is_empty()
            && let Some(unnest) = take_unnest(&from.relation)?
        {
            unnests.push(unnest);
            continue;
        }
        let mut joins = Vec::new();
        for join in std::mem::take(&mut from.joins) {
            let cross = matches!(join.join_operator, JoinOperator::CrossJoin(_));
            match take_unnest(&join.relation)? {
                Some(unnest) if cross && kept.is_empty() && joins.is_empty() => unnests.push(unnest),
                Some(_) => {
                    return Err(PlanError::unsupported(
                        "UNNEST is supported as CROSS JOIN UNNEST(...) after one stream",
                    )
                    .at(join.relation.span()));
                }
                None => joins.push(join),
            }
        }
        from.joins = joins;
        kept.push(from);
    }
    select.from = kept;
    if unnests.is_empty() {
        return Ok(());
    }
    let [base] = select.from.as_mut_slice() else {
        return Err(PlanError::unsupported("CROSS JOIN UNNEST needs exactly one relation before it"));
    };
    if !base.joins.is_empty() {
        return Err(PlanError::unsupported("CROSS JOIN UNNEST cannot be combined with other joins yet"));
    }
    let base_name = match &base.relation {
        TableFactor::Table { alias: Some(alias), .. } | TableFactor::Derived { alias: Some(alias), .. } => {
            ident_name(&alias.name)
        }
        TableFactor::Table { name, .. } => {
            name.0.last().and_then(|part| part.as_ident()).map(ident_name).unwrap_or_default()
        }
        other => {
            return Err(PlanError::unsupported(
                "CROSS JOIN UNNEST needs a named stream or an aliased subquery before it",
            )
            .at(other.span()));
        }
    };
    let projections: Vec<String> =
        unnests.iter().map(|unnest| format!("unnest({}) AS \"{}\"", unnest.expr, unnest.column)).collect();
    let derived = format!("(SELECT *, {} FROM {}) AS \"{}\"", projections.join(", "), base.relation, base_name);
    let relation = parse_table_factor(&derived)?;
    base.relation = relation;
    let aliases: Vec<String> = unnests.iter().filter_map(|unnest| unnest.alias.clone()).collect();
    let _ = visit_expressions_mut(select, |expr| {
        if let Expr::CompoundIdentifier(parts) = expr
            && parts.len() == 2
            && aliases.contains(&ident_name(&parts[0]))
        {
            *expr = Expr::Identifier(parts[1].clone());
        }
        ControlFlow::<()>::Continue(())
    });
    Ok(())
}
