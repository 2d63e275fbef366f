//! Tab completion for the REPL: SQL keywords, Sluice's own words, the
//! names of streams, tables and their columns (as the server last listed
//! them), and backslash commands.

use std::sync::{Arc, Mutex};

use rustyline::completion::{Completer, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Helper};

/// Names the server knows, refreshed by the REPL after each statement.
#[derive(Debug, Default, Clone)]
pub struct Names {
    /// Streams and tables.
    pub relations: Vec<String>,
    pub columns: Vec<String>,
}

const KEYWORDS: &[&str] = &[
    "ALL",
    "ALLOWED",
    "AND",
    "AS",
    "ASC",
    "AVG",
    "BETWEEN",
    "BY",
    "CASE",
    "CAST",
    "COUNT",
    "CREATE",
    "CUMULATE",
    "DEFINE",
    "DELETE",
    "DESC",
    "DESCRIBE",
    "DISTINCT",
    "DROP",
    "ELSE",
    "EMIT",
    "END",
    "EXPLAIN",
    "FALSE",
    "FIRST",
    "FROM",
    "FULL",
    "GROUP",
    "HAVING",
    "HOP",
    "IN",
    "INNER",
    "INSERT",
    "INTERVAL",
    "INTO",
    "IS",
    "JOIN",
    "LAST",
    "LATENESS",
    "LEFT",
    "LIKE",
    "LIMIT",
    "MATCH_RECOGNIZE",
    "MAX",
    "MEASURES",
    "MIN",
    "NOT",
    "NULL",
    "ON",
    "OR",
    "ORDER",
    "OUTER",
    "OVER",
    "PARTITION",
    "PATTERN",
    "PRIMARY",
    "QUERIES",
    "RIGHT",
    "ROW_NUMBER",
    "SECOND",
    "SELECT",
    "SESSION",
    "SET",
    "SHOW",
    "STREAM",
    "STREAMS",
    "SUBSCRIBE",
    "SUM",
    "TABLE",
    "TABLES",
    "THEN",
    "TIMESTAMP",
    "TO",
    "TRUE",
    "TUMBLE",
    "UNION",
    "VALUES",
    "VARCHAR",
    "WATERMARK",
    "WHEN",
    "WHERE",
    "WINDOW",
    "WITH",
];

/// The backslash commands, with what `\?` says of them.
pub const COMMANDS: &[(&str, &str)] = &[
    ("\\d", "list streams and tables; \\d NAME describes one"),
    ("\\dq", "list running queries with their state, rates and watermark"),
    ("\\timing", "toggle showing how long each statement took"),
    ("\\i", "\\i FILE runs the statements in FILE"),
    ("\\o", "\\o FILE sends results to FILE; \\o alone back to the terminal"),
    ("\\x", "toggle expanded display (one block per row)"),
    ("\\live", "\\live on|off|auto: redraw updating results in place (auto: on a terminal)"),
    ("\\q", "quit (or Ctrl-D)"),
    ("\\?", "this help"),
];

pub struct SqlHelper {
    pub names: Arc<Mutex<Names>>,
}

impl SqlHelper {
    /// Candidates for the word ending at `pos` in `line`.
    pub fn candidates(&self, line: &str, pos: usize) -> (usize, Vec<String>) {
        let before = &line[..pos];
        let start = before
            .char_indices()
            .rev()
            .find(|(_, c)| !(c.is_alphanumeric() || *c == '_' || *c == '\\'))
            .map_or(0, |(index, c)| index + c.len_utf8());
        let word = &before[start..];
        if word.starts_with('\\') {
            let found =
                COMMANDS.iter().map(|(name, _)| name.to_string()).filter(|name| name.starts_with(word)).collect();
            return (start, found);
        }
        if word.is_empty() {
            return (start, Vec::new());
        }
        let lower = word.to_lowercase();
        let names = self.names.lock().map(|names| names.clone()).unwrap_or_default();
        let mut found: Vec<String> = names
            .relations
            .iter()
            .chain(&names.columns)
            .filter(|name| name.to_lowercase().starts_with(&lower))
            .cloned()
            .collect();
        // Keywords in the case the user types them in.
        let upper = word.chars().next().is_some_and(char::is_uppercase);
        found.extend(
            KEYWORDS
                .iter()
                .filter(|keyword| keyword.to_lowercase().starts_with(&lower))
                .map(|keyword| if upper { keyword.to_string() } else { keyword.to_lowercase() }),
        );
        found.sort();
        found.dedup();
        (start, found)
    }
}

impl Completer for SqlHelper {
    type Candidate = Pair;

    fn complete(&self, line: &str, pos: usize, _: &Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        let (start, found) = self.candidates(line, pos);
        Ok((start, found.into_iter().map(|name| Pair { display: name.clone(), replacement: name }).collect()))
    }
}

impl Hinter for SqlHelper {
    type Hint = String;
}

impl Highlighter for SqlHelper {}

impl Validator for SqlHelper {}

impl Helper for SqlHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completes_keywords_names_and_commands() {
        let names = Names { relations: vec!["weblog".into(), "customers".into()], columns: vec!["status".into()] };
        let helper = SqlHelper { names: Arc::new(Mutex::new(names)) };
        assert_eq!(helper.candidates("SELECT * FROM web", 17), (14, vec!["weblog".to_string()]));
        assert_eq!(helper.candidates("SEL", 3), (0, vec!["SELECT".to_string()]));
        assert_eq!(helper.candidates("sel", 3), (0, vec!["select".to_string()]));
        let (_, found) = helper.candidates("select sta", 10);
        assert_eq!(found, vec!["status".to_string()]);
        assert_eq!(helper.candidates("\\ti", 3), (0, vec!["\\timing".to_string()]));
        assert_eq!(helper.candidates("select ", 7).1, Vec::<String>::new());
    }
}
