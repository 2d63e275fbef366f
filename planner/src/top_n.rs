//! Lowering `ROW_NUMBER() OVER (...)` over a whole stream into a Top-N.
//!
//! DataFusion plans `SELECT ... FROM (SELECT *, ROW_NUMBER() OVER
//! (PARTITION BY k ORDER BY o) AS rn FROM s) WHERE rn <= N` as
//!
//! ```text
//!   Projection ─► Filter: rn <= N ─► Projection: ..., row_number() ... AS rn ─► WindowAggr ─► s
//! ```
//!
//! The `WindowAggr` becomes a `top_n` operator keeping the first N rows of
//! each partition; the nodes above it stay a stateless segment (the filter
//! then holds for every row). The row-number conditions of the filters
//! above set N (`rn <= N`, `rn < N + 1`, `rn = 1`); a query that reads the
//! row number elsewhere (shows it, or tests `rn = 3`) gets rank changes in
//! its changelog, otherwise only rows entering and leaving the top N.
//! Without such a condition the ranks of a stream never settle, and the
//! query is refused.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, LogicalPlan, Operator, Window};
use datafusion::physical_expr::PhysicalSortExpr;
use datafusion::physical_expr::expressions::Literal;
use sluice_runtime::OperatorSpec;
use sluice_runtime::operators::top_n::{TopNSpec, sort_options};

use crate::error::{PlanError, Result};
use crate::lower::{Lowered, Lowering};

impl Lowering<'_> {
    /// `window`, a `ROW_NUMBER()` over a stream, with the stateless nodes
    /// `above` it (top first), which must bound the row number.
    pub(crate) async fn top_n(&mut self, window: &Window, above: &[&LogicalPlan]) -> Result<Lowered> {
        let [function] = window.window_expr.as_slice() else {
            return Err(PlanError::unsupported("one ROW_NUMBER() OVER (...) per subquery over a stream is supported")
                .near(self.sql, self.start, "OVER"));
        };
        let Expr::WindowFunction(function) = unalias(function) else {
            return Err(PlanError::invalid("internal: a window node without a window function"));
        };
        let name = function.fun.name().to_string();
        if !name.eq_ignore_ascii_case("row_number") {
            return Err(PlanError::unsupported(format!(
                "{name}() OVER (...) over a whole stream is not supported: use ROW_NUMBER() with a filter on it (a Top-N: WHERE rn <= N), or OVER within each window's rows (GROUP BY window_start, window_end, ... below it)"
            ))
            .near(self.sql, self.start, &name));
        }
        let row_number = window.schema.field(window.input.schema().fields().len()).name().clone();
        let usage = RowNumberUse::of(&row_number, above);
        let Some(limit) = usage.limit else {
            return Err(PlanError::unsupported(
                "ROW_NUMBER() over a stream needs a bound on it (WHERE rn <= N around the subquery): the ranks of an unbounded stream never settle",
            )
            .near(self.sql, self.start, "ROW_NUMBER"));
        };
        let limit = usize::try_from(limit)
            .map_err(|_| PlanError::invalid("the row number bound is too large").near(self.sql, self.start, "<="))?;

        let input = self.lower(&window.input).await?;
        let input_schema = window.input.schema();
        let partition_exprs = function
            .params
            .partition_by
            .iter()
            .map(|expr| self.state.create_physical_expr(expr.clone(), input_schema))
            .collect::<datafusion::common::Result<Vec<_>>>()?;
        let mut order = function
            .params
            .order_by
            .iter()
            .map(|sort| {
                let expr = self.state.create_physical_expr(sort.expr.clone(), input_schema)?;
                Ok(PhysicalSortExpr { expr, options: sort_options(sort.asc, sort.nulls_first) })
            })
            .collect::<Result<Vec<_>>>()?;
        if order.is_empty() {
            // No ORDER BY: rows rank in arrival order.
            let expr = Arc::new(Literal::new(ScalarValue::Boolean(Some(true))));
            order.push(PhysicalSortExpr { expr, options: sort_options(true, false) });
        }
        if input.updating && self.options.state_ttl.is_none() {
            self.plan.warnings.push(
                "ROW_NUMBER() over an updating result keeps all of that result's current rows, not only the top N (a retraction lets the next row in)"
                    .into(),
            );
        }
        let output_schema = Arc::new(window.schema.as_arrow().clone());
        let spec = TopNSpec {
            input_schema: input.schema.clone(),
            partition_exprs,
            order,
            limit,
            ranks_shown: usage.shown,
            input_updating: input.updating,
            output_schema: output_schema.clone(),
        };
        let node = self.push(OperatorSpec::TopN(spec), vec![input.node]);
        let times = input.times.within(&output_schema);
        Ok(Lowered::updating(node, output_schema, times))
    }
}

/// How the nodes above a `ROW_NUMBER()` use it.
#[derive(Debug, Default, PartialEq)]
struct RowNumberUse {
    /// The smallest bound the filters put on it.
    limit: Option<u64>,
    /// Whether anything but a bound met by every ranked row reads it.
    shown: bool,
}

impl RowNumberUse {
    /// Follows the row number column `name` up through `above` (top
    /// first), across renames.
    fn of(name: &str, above: &[&LogicalPlan]) -> Self {
        let mut usage = RowNumberUse::default();
        let mut names = vec![name.to_string()];
        for node in above.iter().rev() {
            match node {
                LogicalPlan::Projection(projection) => {
                    let mut renamed = Vec::new();
                    for (expr, field) in projection.expr.iter().zip(projection.schema.fields()) {
                        match unalias(expr) {
                            Expr::Column(column) if names.contains(&column.name) => renamed.push(field.name().clone()),
                            other => usage.shown |= reads(other, &names),
                        }
                    }
                    names = renamed;
                }
                LogicalPlan::Filter(filter) => {
                    for condition in split_conjunction(&filter.predicate) {
                        match bound(condition, &names) {
                            Some((limit, always_true)) => {
                                usage.limit = Some(usage.limit.map_or(limit, |known| known.min(limit)));
                                usage.shown |= !always_true;
                            }
                            None => usage.shown |= reads(condition, &names),
                        }
                    }
                }
                LogicalPlan::SubqueryAlias(_) => {}
                other => usage.shown |= other.expressions().iter().any(|expr| reads(expr, &names)),
            }
        }
        let top = above.first().map(|node| node.schema().clone());
        usage.shown |= top.is_some_and(|schema| schema.fields().iter().any(|field| names.contains(field.name())));
        usage
    }
}

/// The bound `condition` puts on the row number (one of `names`), and
/// whether it then holds for every ranked row: `rn <= 10` gives (10,
/// true), `rn = 3` gives (3, false).
fn bound(condition: &Expr, names: &[String]) -> Option<(u64, bool)> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = condition else { return None };
    let (op, value) = match (left.as_ref(), right.as_ref()) {
        (Expr::Column(column), Expr::Literal(value, _)) if names.contains(&column.name) => (*op, value),
        (Expr::Literal(value, _), Expr::Column(column)) if names.contains(&column.name) => (op.swap()?, value),
        _ => return None,
    };
    let ScalarValue::Int64(Some(value)) = value.cast_to(&DataType::Int64).ok()? else { return None };
    let value = u64::try_from(value).unwrap_or(0);
    match op {
        Operator::LtEq => Some((value, true)),
        Operator::Lt => Some((value.saturating_sub(1), true)),
        Operator::Eq => Some((value, value <= 1)),
        _ => None,
    }
}

/// Whether `expr` reads a column called one of `names`.
fn reads(expr: &Expr, names: &[String]) -> bool {
    expr.column_refs().iter().any(|column| names.contains(&column.name))
}

fn unalias(expr: &Expr) -> &Expr {
    match expr {
        Expr::Alias(alias) => unalias(&alias.expr),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use datafusion::logical_expr::{col, lit};

    use super::*;

    #[test]
    fn reads_the_bound_from_either_side() {
        let names = vec!["rn".to_string()];
        assert_eq!(bound(&col("rn").lt_eq(lit(10u64)), &names), Some((10, true)));
        assert_eq!(bound(&col("rn").lt(lit(3i64)), &names), Some((2, true)));
        assert_eq!(bound(&lit(5i64).gt_eq(col("rn")), &names), Some((5, true)));
        assert_eq!(bound(&col("rn").eq(lit(1i64)), &names), Some((1, true)));
        assert_eq!(bound(&col("rn").eq(lit(3i64)), &names), Some((3, false)));
        assert_eq!(bound(&col("rn").gt(lit(3i64)), &names), None);
        assert_eq!(bound(&col("other").lt_eq(lit(3i64)), &names), None);
        assert_eq!(bound(&col("rn").lt_eq(lit(-1i64)), &names), Some((0, true)));
    }
}
