//! Engine errors as Postgres errors: a SQLSTATE for the error's code and
//! the position (a 1-based character index into the query string) so psql
//! draws its caret.

use pgwire::error::{ErrorInfo, PgWireError};

use crate::error::{EngineError, ErrorCode};

/// The SQLSTATE of an engine error.
pub fn sqlstate(error: &EngineError) -> &'static str {
    match error.code {
        ErrorCode::Syntax => "42601",
        ErrorCode::UnknownObject => {
            let message = error.message.to_ascii_lowercase();
            if message.contains("column") || message.contains("field") {
                "42703"
            } else if message.contains("function") {
                "42883"
            } else {
                "42P01"
            }
        }
        ErrorCode::Unsupported => "0A000",
        ErrorCode::Invalid => "22023",
        ErrorCode::BadRequest => "08P01",
        ErrorCode::TooLarge => "54000",
        ErrorCode::Unauthorized => "28000",
        ErrorCode::TooMany => "53000",
        ErrorCode::ShuttingDown => "57P01",
        ErrorCode::NotFound => "42704",
        ErrorCode::DataDir | ErrorCode::EventLog => "58030",
        ErrorCode::StorageFull => "53100",
        ErrorCode::External => "58000",
        ErrorCode::Internal => "XX000",
    }
}

/// `error` as a Postgres error. `sql` is the whole query string and
/// `offset` the byte offset of the statement the error's line and column
/// are relative to.
pub fn to_pg(error: &EngineError, sql: &str, offset: usize) -> PgWireError {
    let mut info = ErrorInfo::new("ERROR".into(), sqlstate(error).into(), error.message.clone());
    info.position = position(sql, offset, error.line, error.column).map(|position| position.to_string());
    PgWireError::UserError(Box::new(info))
}

/// An error of the Postgres session itself (not the engine's).
pub fn session_error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new("ERROR".into(), code.into(), message.into())))
}

/// The 1-based character position of (line, column) in the statement at
/// byte `offset` of `sql`.
fn position(sql: &str, offset: usize, line: Option<u64>, column: Option<u64>) -> Option<usize> {
    let (line, column) = (line?, column?);
    let statement = sql.get(offset..)?;
    let line_start =
        if line <= 1 { 0 } else { statement.match_indices('\n').nth(line as usize - 2).map(|(at, _)| at + 1)? };
    let before = sql[..offset].chars().count() + statement[..line_start].chars().count();
    Some(before + column as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_characters_from_the_query_start() {
        let sql = "SELECT 1;\nSELECT é,\n  nope FROM s";
        // The second statement starts at byte 10; "nope" is on its line 2, column 3.
        assert_eq!(position(sql, 10, Some(2), Some(3)), Some(23));
        assert_eq!(position(sql, 0, Some(1), Some(8)), Some(8));
        assert_eq!(position(sql, 0, None, None), None);
    }

    #[test]
    fn unknown_columns_and_relations_have_their_own_states() {
        let column = EngineError::new(ErrorCode::UnknownObject, "no column named nope");
        let relation = EngineError::new(ErrorCode::UnknownObject, "stream \"x\" not found");
        assert_eq!(sqlstate(&column), "42703");
        assert_eq!(sqlstate(&relation), "42P01");
    }
}
