//! Planning errors. They are always the user's: the statement cannot be
//! parsed, names something unknown, or asks for what Sluice does not do.
//! Each carries the line and column (1-based) it points at, when known.

use datafusion::common::{DataFusionError, Diagnostic};
use datafusion::sql::sqlparser::parser::ParserError;
use datafusion::sql::sqlparser::tokenizer::{Location, Span};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanErrorKind {
    /// The text is not valid SQL.
    Syntax,
    /// A stream, table, column or function that does not exist.
    UnknownObject,
    /// Valid SQL that Sluice does not (yet) run.
    Unsupported,
    /// Valid SQL with a meaning error (bad type, bad option, bad window).
    Invalid,
}

impl PlanErrorKind {
    pub fn code(self) -> &'static str {
        match self {
            PlanErrorKind::Syntax => "syntax_error",
            PlanErrorKind::UnknownObject => "unknown_object",
            PlanErrorKind::Unsupported => "unsupported",
            PlanErrorKind::Invalid => "invalid",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlanError {
    pub kind: PlanErrorKind,
    pub message: String,
    pub line: Option<u64>,
    pub column: Option<u64>,
}

pub type Result<T, E = PlanError> = std::result::Result<T, E>;

impl PlanError {
    pub fn new(kind: PlanErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), line: None, column: None }
    }

    pub fn syntax(message: impl Into<String>) -> Self {
        Self::new(PlanErrorKind::Syntax, message)
    }

    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(PlanErrorKind::Unsupported, message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(PlanErrorKind::Invalid, message)
    }

    pub fn unknown(message: impl Into<String>) -> Self {
        Self::new(PlanErrorKind::UnknownObject, message)
    }

    /// Points the error at `span`, unless it already points somewhere.
    pub fn at(mut self, span: Span) -> Self {
        self.locate(span.start);
        self
    }

    pub fn at_location(mut self, location: Location) -> Self {
        self.locate(location);
        self
    }

    fn locate(&mut self, location: Location) {
        if self.line.is_none() && location.line > 0 {
            self.line = Some(location.line);
            self.column = Some(location.column);
        }
    }

    /// Points the error at the first mention of `name` in `sql` at or after
    /// `from` (for errors DataFusion reports without a position).
    pub fn near_name(mut self, sql: &str, name: &str, from: Location) -> Self {
        if self.line.is_some() || name.is_empty() {
            return self;
        }
        let start = offset_of(sql, from).unwrap_or(0);
        let haystack = sql[start..].to_ascii_lowercase();
        let needle = name.to_ascii_lowercase();
        let found = haystack.match_indices(&needle).find(|(index, _)| {
            let before = haystack[..*index].chars().next_back();
            let after = haystack[index + needle.len()..].chars().next();
            !before.is_some_and(is_identifier_char) && !after.is_some_and(is_identifier_char)
        });
        if let Some((index, _)) = found {
            self.locate(location_of(sql, start + index));
        }
        self
    }
}

fn is_identifier_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Byte offset of a 1-based line/column in `sql`.
pub fn offset_of(sql: &str, location: Location) -> Option<usize> {
    if location.line == 0 {
        return None;
    }
    let mut line = 1;
    let mut column = 1;
    for (offset, c) in sql.char_indices() {
        if line == location.line && column == location.column {
            return Some(offset);
        }
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    (line == location.line && column == location.column).then_some(sql.len())
}

/// The 1-based line/column of a byte offset in `sql`.
pub fn location_of(sql: &str, offset: usize) -> Location {
    let before = &sql[..offset.min(sql.len())];
    let line = before.matches('\n').count() as u64 + 1;
    let column = before.rsplit('\n').next().map_or(0, |tail| tail.chars().count()) as u64 + 1;
    Location { line, column }
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write_located(f, &self.message, self.line, self.column)
    }
}

/// How every error with a position reads: `message (line L, column C)`,
/// or the bare message without one. The server's errors write themselves
/// through this too.
pub fn write_located(
    f: &mut std::fmt::Formatter<'_>,
    message: &str,
    line: Option<u64>,
    column: Option<u64>,
) -> std::fmt::Result {
    match (line, column) {
        (Some(line), Some(column)) => write!(f, "{message} (line {line}, column {column})"),
        _ => f.write_str(message),
    }
}

impl std::error::Error for PlanError {}

impl From<ParserError> for PlanError {
    fn from(error: ParserError) -> Self {
        let text = match error {
            ParserError::TokenizerError(text) | ParserError::ParserError(text) => text,
            ParserError::RecursionLimitExceeded => "statement nested too deeply".to_string(),
        };
        // sqlparser appends " at Line: L, Column: C"; keep it as a position.
        match text.rfind(" at Line: ") {
            Some(index) => {
                let position = &text[index + " at Line: ".len()..];
                let mut parts = position.split(", Column: ");
                let line = parts.next().and_then(|line| line.trim().parse().ok());
                let column = parts.next().and_then(|column| column.trim().parse().ok());
                PlanError { kind: PlanErrorKind::Syntax, message: text[..index].to_string(), line, column }
            }
            None => PlanError::new(PlanErrorKind::Syntax, text),
        }
    }
}

impl From<DataFusionError> for PlanError {
    fn from(error: DataFusionError) -> Self {
        let diagnostic: Option<Diagnostic> = error.diagnostic().cloned();
        let root = error.find_root();
        let kind = match root {
            DataFusionError::SQL(_, _) => PlanErrorKind::Syntax,
            DataFusionError::NotImplemented(_) => PlanErrorKind::Unsupported,
            DataFusionError::SchemaError(_, _) => PlanErrorKind::UnknownObject,
            DataFusionError::Plan(message) if message.contains("not found") => PlanErrorKind::UnknownObject,
            DataFusionError::Plan(message) if message.contains("Invalid function") => PlanErrorKind::UnknownObject,
            _ => PlanErrorKind::Invalid,
        };
        let message = match root {
            DataFusionError::Plan(message)
            | DataFusionError::NotImplemented(message)
            | DataFusionError::Execution(message) => message.clone(),
            DataFusionError::SchemaError(error, _) => error.to_string(),
            other => other.to_string(),
        };
        let message = friendlier(message.trim());
        let mut error = PlanError::new(kind, message);
        if let Some(span) = diagnostic.and_then(|diagnostic| diagnostic.span) {
            error.locate(Location { line: span.start.line, column: span.start.column });
        }
        error
    }
}

/// DataFusion speaks of tables in its default catalog; Sluice of streams.
/// Type mismatches in comparisons are the user's, not DataFusion bugs.
fn friendlier(message: &str) -> String {
    if let Some(rest) = message.split("Failed to coerce types ").nth(1) {
        let what = rest.lines().next().unwrap_or(rest).trim_end_matches('.');
        return format!(
            "cannot compare {what}: compare values of one type (a time bound compares TIMESTAMP columns, shifted by INTERVALs)"
        )
        .replace(" and ", " with ");
    }
    if let Some(rest) = message.strip_prefix("table '")
        && let Some(name) = rest.strip_suffix("' not found")
    {
        let name = name.rsplit('.').next().unwrap_or(name);
        return format!("stream '{name}' not found");
    }
    message.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_and_locations_round_trip() {
        let sql = "SELECT a\nFROM  t\nWHERE x";
        for offset in [0, 7, 9, 15, 17] {
            assert_eq!(offset_of(sql, location_of(sql, offset)), Some(offset));
        }
        assert_eq!(location_of(sql, 9), Location { line: 2, column: 1 });
    }

    #[test]
    fn finds_a_name_as_a_whole_word() {
        let sql = "SELECT weblogs FROM weblog";
        let error = PlanError::unknown("x").near_name(sql, "weblog", Location { line: 1, column: 1 });
        assert_eq!((error.line, error.column), (Some(1), Some(21)));
    }

    #[test]
    fn type_mismatches_are_not_reported_as_datafusion_bugs() {
        let message = friendlier(
            "Internal error: Failed to coerce types Int32 and Timestamp(ns) in BETWEEN expression.\nThis issue was likely caused by a bug in DataFusion's code.",
        );
        assert_eq!(
            message,
            "cannot compare Int32 with Timestamp(ns) in BETWEEN expression: compare values of one type (a time bound compares TIMESTAMP columns, shifted by INTERVALs)"
        );
    }
}
