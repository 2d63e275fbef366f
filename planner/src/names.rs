//! Names in the SQL text: identifiers and object names as DataFusion
//! normalises them, and table factors built from text by the FROM-clause
//! rewrites.

use datafusion::sql::sqlparser::ast::{self, Ident, ObjectName};
use datafusion::sql::sqlparser::parser::Parser;

use crate::dialect::SluiceDialect;
use crate::error::{PlanError, Result};

/// Parses the table factor `from` (what follows `FROM`): the rewrites build
/// new relations as text and let the parser fill in every field.
pub(crate) fn parse_table_factor(from: &str) -> Result<ast::TableFactor> {
    let sql = format!("SELECT * FROM {from}");
    let statement = Parser::new(&SluiceDialect::default()).try_with_sql(&sql)?.parse_statement()?;
    let internal = || PlanError::invalid(format!("internal: could not parse the rewritten relation {from}"));
    let ast::Statement::Query(query) = statement else {
        return Err(internal());
    };
    let ast::SetExpr::Select(select) = *query.body else {
        return Err(internal());
    };
    select.from.into_iter().next().map(|from| from.relation).ok_or_else(internal)
}

/// Parses the query `sql` (a rewrite's new input, built as text).
pub(crate) fn parse_query(sql: &str) -> Result<ast::Query> {
    match Parser::new(&SluiceDialect::default()).try_with_sql(sql)?.parse_statement()? {
        ast::Statement::Query(query) => Ok(*query),
        _ => Err(PlanError::invalid(format!("internal: {sql} is not a query"))),
    }
}

/// Lower-cased unless quoted, as DataFusion normalises identifiers.
pub fn object_name(name: &ObjectName) -> String {
    name.0.iter().filter_map(|part| part.as_ident()).map(ident_name).collect::<Vec<_>>().join(".")
}

pub fn ident_name(ident: &Ident) -> String {
    if ident.quote_style.is_some() { ident.value.clone() } else { ident.value.to_ascii_lowercase() }
}
