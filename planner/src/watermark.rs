//! The WATERMARK clause of `CREATE STREAM` / `CREATE TABLE`:
//!
//! ```sql
//! WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
//! ```
//!
//! parsed into the event-time column and its expression, then checked into
//! the runtime's [`EventTimeSpec`]: the column is a TIMESTAMP, the
//! expression is the column itself or the column minus a non-negative
//! interval (the delay the watermark trails the largest time seen).

use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::sql::sqlparser::ast::{BinaryOperator, Expr, Ident, Spanned};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use sluice_runtime::source::EventTimeSpec;

use crate::error::{PlanError, Result};
use crate::interval::interval_nanos;
use crate::names::ident_name;

/// `FOR col AS expr`, after the `WATERMARK` word.
pub(crate) fn parse_watermark(parser: &mut Parser) -> Result<(Ident, Expr)> {
    parser.expect_keyword(Keyword::FOR)?;
    let column = parser.parse_identifier()?;
    parser.expect_keyword(Keyword::AS)?;
    let expr = parser.parse_expr()?;
    Ok((column, expr))
}

/// The event-time attribute `WATERMARK FOR column AS expr` declares over
/// `schema`.
pub(crate) fn event_time(schema: &Schema, column: &Ident, expr: &Expr) -> Result<EventTimeSpec> {
    let name = ident_name(column);
    let index = schema
        .index_of(&name)
        .map_err(|_| PlanError::unknown(format!("WATERMARK FOR names unknown column {name:?}")).at(column.span))?;
    if !matches!(schema.field(index).data_type(), DataType::Timestamp(_, _)) {
        return Err(PlanError::invalid(format!(
            "the event-time column {name:?} must be a TIMESTAMP, not {}",
            schema.field(index).data_type()
        ))
        .at(column.span));
    }
    let refers_to_column = |expr: &Expr| matches!(expr, Expr::Identifier(ident) if ident_name(ident) == name);
    let delay = match expr {
        expr if refers_to_column(expr) => 0,
        Expr::BinaryOp { left, op: BinaryOperator::Minus, right } if refers_to_column(left) => interval_nanos(right)?,
        other => {
            return Err(PlanError::unsupported(format!(
                "a watermark must be `{name}` or `{name} - INTERVAL '...' <unit>`"
            ))
            .at(other.span()));
        }
    };
    if delay < 0 {
        return Err(PlanError::invalid("the watermark delay cannot be negative").at(expr.span()));
    }
    Ok(EventTimeSpec { column: index, delay })
}
