//! What a Postgres client sent: the statements of a query string, each
//! classified by what answers it.
//!
//! Sluice's own statements (DDL, SELECT, SHOW STREAMS, EXPLAIN, ...) go to
//! the engine unchanged. The rest is what only a Postgres session has:
//! `SUBSCRIBE`, `COPY (...) TO STDOUT`, cursors, transactions, session
//! parameters, and the `pg_catalog` queries of psql and drivers.
//!
//! Statements are told apart by their first words (from sqlparser's
//! tokenizer, so strings and comments are never mistaken for them), and a
//! query string is split at its top-level semicolons the same way.

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};
use sluice_planner::pattern_clause::matching_paren;

/// One statement of a query string: its text and where it starts (a byte
/// offset into the query string, for error positions).
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    pub text: String,
    pub offset: usize,
}

/// A statement and who answers it.
#[derive(Debug, Clone, PartialEq)]
pub enum PgStatement {
    /// Anything Sluice's engine runs (DDL, SELECT, SHOW STREAMS, SET of a
    /// query setting, ...).
    Engine(Piece),
    /// A query over `pg_catalog` / `information_schema`, or without FROM:
    /// answered by the catalog context.
    Catalog(Piece),
    /// `SUBSCRIBE [TO] (query) | qN | stream`.
    Subscribe(Target),
    /// `COPY (SUBSCRIBE ... | query) TO STDOUT`.
    Copy(Target),
    /// `DECLARE name CURSOR FOR SUBSCRIBE ... | query`.
    Declare { cursor: String, target: Target },
    /// `FETCH [n | ALL | NEXT] [FROM] name`.
    Fetch { cursor: String, count: Option<usize> },
    /// `CLOSE name | ALL`.
    Close { cursor: Option<String> },
    /// BEGIN, COMMIT, ROLLBACK: accepted; Sluice has no transactions.
    Transaction { tag: &'static str, begins: bool },
    /// `SET name = value` of a session parameter (client_encoding,
    /// DateStyle, application_name, ...).
    SetParameter { name: String, value: String },
    /// `RESET name`, `RESET ALL`, `DISCARD ALL`.
    Reset { name: Option<String> },
    /// `SHOW name` of a session parameter, or `SHOW ALL`.
    ShowParameter { name: String },
}

/// What a subscription reads.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// A query's text (and its offset, for error positions).
    Query(Piece),
    /// A running query by id (`q7`).
    Running(String),
    /// Whether the subscription is `SUBSCRIBE` (live, with seq and op
    /// columns) or a plain query (its rows, as SELECT gives them).
    Subscribe(Box<Target>),
}

impl Target {
    /// Whether rows carry `seq` and `op` columns and run until cancelled.
    pub fn is_subscribe(&self) -> bool {
        matches!(self, Target::Subscribe(_) | Target::Running(_))
    }
}

/// The statements of `sql`, classified. A string the tokenizer cannot read
/// (an unterminated quote) is one engine statement: the engine's parser
/// reports the error with its position.
pub fn split(sql: &str) -> Vec<PgStatement> {
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize_with_location() else {
        return vec![PgStatement::Engine(Piece { text: sql.to_string(), offset: 0 })];
    };
    let lines = LineStarts::new(sql);
    let mut statements = Vec::new();
    let mut start = 0;
    let mut depth = 0usize;
    for token in &tokens {
        match token.token {
            Token::LParen => depth += 1,
            Token::RParen => depth = depth.saturating_sub(1),
            Token::SemiColon if depth == 0 => {
                let end = lines.offset(token);
                push_piece(sql, start, end, &mut statements);
                start = end + 1;
            }
            _ => {}
        }
    }
    push_piece(sql, start, sql.len(), &mut statements);
    statements
}

fn push_piece(sql: &str, start: usize, end: usize, statements: &mut Vec<PgStatement>) {
    let Some(text) = sql.get(start..end) else { return };
    let trimmed = text.trim_start();
    let offset = start + (text.len() - trimmed.len());
    let trimmed = trimmed.trim_end();
    if !trimmed.is_empty() {
        statements.push(classify(Piece { text: trimmed.to_string(), offset }));
    }
}

/// Byte offsets of line starts, to turn token locations into offsets.
struct LineStarts<'a> {
    sql: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineStarts<'a> {
    fn new(sql: &'a str) -> Self {
        let starts = std::iter::once(0).chain(sql.match_indices('\n').map(|(at, _)| at + 1)).collect();
        Self { sql, starts }
    }

    fn offset(&self, token: &TokenWithSpan) -> usize {
        let location = token.span.start;
        let line_start = self.starts.get(location.line.saturating_sub(1) as usize).copied().unwrap_or(0);
        let column = location.column.saturating_sub(1) as usize;
        self.sql[line_start..].char_indices().nth(column).map_or(self.sql.len(), |(at, _)| line_start + at)
    }
}

/// The words and symbols of a statement, without whitespace and comments.
fn significant(text: &str) -> Vec<TokenWithSpan> {
    Tokenizer::new(&PostgreSqlDialect {}, text)
        .tokenize_with_location()
        .unwrap_or_default()
        .into_iter()
        .filter(|token| !matches!(token.token, Token::Whitespace(_)))
        .collect()
}

fn word(token: Option<&TokenWithSpan>) -> Option<String> {
    match token.map(|token| &token.token) {
        Some(Token::Word(word)) => Some(word.value.to_ascii_lowercase()),
        _ => None,
    }
}

/// Who answers `piece`.
pub fn classify(piece: Piece) -> PgStatement {
    let tokens = significant(&piece.text);
    let words: Vec<Option<String>> = tokens.iter().take(8).map(|token| word(Some(token))).collect();
    let first = words.first().cloned().flatten().unwrap_or_default();
    let second = words.get(1).cloned().flatten().unwrap_or_default();
    let lines = LineStarts::new(&piece.text);
    // The text from token `index` on, as a piece of its own.
    let rest = |index: usize| -> Piece {
        let offset = tokens.get(index).map_or(piece.text.len(), |token| lines.offset(token));
        Piece { text: piece.text[offset..].trim().to_string(), offset: piece.offset + offset }
    };
    match first.as_str() {
        "subscribe" => PgStatement::Subscribe(subscribe_target(rest(if second == "to" { 2 } else { 1 }))),
        "copy" if matches!(tokens.get(1).map(|token| &token.token), Some(Token::LParen)) => {
            match copy_target(&piece, &tokens, &lines) {
                Some(target) => PgStatement::Copy(target),
                None => PgStatement::Engine(piece),
            }
        }
        "declare" => {
            let for_at = tokens.iter().position(|token| word(Some(token)).as_deref() == Some("for"));
            match (second.is_empty(), for_at) {
                (false, Some(at)) => PgStatement::Declare { cursor: second, target: query_or_subscribe(rest(at + 1)) },
                _ => PgStatement::Engine(piece),
            }
        }
        "fetch" => fetch(&tokens),
        "close" => PgStatement::Close { cursor: (second != "all" && !second.is_empty()).then_some(second) },
        "begin" | "start" => PgStatement::Transaction { tag: "BEGIN", begins: true },
        "commit" | "end" => PgStatement::Transaction { tag: "COMMIT", begins: false },
        "rollback" | "abort" => PgStatement::Transaction { tag: "ROLLBACK", begins: false },
        "discard" => PgStatement::Reset { name: None },
        "reset" => PgStatement::Reset { name: (second != "all").then_some(second) },
        "set" => set_parameter(&piece, &tokens, &lines).unwrap_or(PgStatement::Engine(piece)),
        "show" if !matches!(second.as_str(), "streams" | "tables" | "queries" | "views" | "sinks") => {
            let name = tokens[1..].iter().map(|token| token.token.to_string()).collect::<String>();
            PgStatement::ShowParameter { name: name.to_ascii_lowercase() }
        }
        "select" | "with" if reads_catalog(&tokens) => PgStatement::Catalog(piece),
        _ => PgStatement::Engine(piece),
    }
}

/// `(query)`, a query id, a stream name or a bare query after SUBSCRIBE.
fn subscribe_target(piece: Piece) -> Target {
    let target = if let Some(inner) = parenthesized(&piece) {
        Target::Query(inner)
    } else if is_identifier(&piece.text) {
        let name = piece.text.to_ascii_lowercase();
        if name.strip_prefix('q').is_some_and(|number| !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()))
        {
            return Target::Subscribe(Box::new(Target::Running(name)));
        }
        Target::Query(Piece { text: format!("SELECT * FROM {}", piece.text), offset: piece.offset })
    } else {
        Target::Query(piece)
    };
    Target::Subscribe(Box::new(target))
}

/// What follows `FOR` in a cursor, or what is inside `COPY (...)`.
fn query_or_subscribe(piece: Piece) -> Target {
    let tokens = significant(&piece.text);
    if word(tokens.first()).as_deref() == Some("subscribe") {
        let lines = LineStarts::new(&piece.text);
        let skip = if word(tokens.get(1)).as_deref() == Some("to") { 2 } else { 1 };
        let offset = tokens.get(skip).map_or(piece.text.len(), |token| lines.offset(token));
        subscribe_target(Piece { text: piece.text[offset..].trim().to_string(), offset: piece.offset + offset })
    } else {
        Target::Query(piece)
    }
}

/// `COPY (inner) TO STDOUT [WITH ...]`.
fn copy_target(piece: &Piece, tokens: &[TokenWithSpan], lines: &LineStarts) -> Option<Target> {
    let close = matching_paren(tokens, 1)?;
    let to_stdout = word(tokens.get(close + 1)).as_deref() == Some("to")
        && word(tokens.get(close + 2)).as_deref() == Some("stdout");
    if !to_stdout {
        return None;
    }
    let start = lines.offset(&tokens[1]) + 1;
    let end = lines.offset(&tokens[close]);
    let text = &piece.text[start..end];
    let trimmed = text.trim_start();
    let offset = piece.offset + start + (text.len() - trimmed.len());
    Some(query_or_subscribe(Piece { text: trimmed.trim_end().to_string(), offset }))
}

/// The inside of a piece that is one parenthesized expression.
fn parenthesized(piece: &Piece) -> Option<Piece> {
    let tokens = significant(&piece.text);
    if !matches!(tokens.first().map(|token| &token.token), Some(Token::LParen))
        || !matches!(tokens.last().map(|token| &token.token), Some(Token::RParen))
    {
        return None;
    }
    // The first parenthesis must close at the very end.
    if matching_paren(&tokens, 0) != Some(tokens.len() - 1) {
        return None;
    }
    let lines = LineStarts::new(&piece.text);
    let start = lines.offset(&tokens[0]) + 1;
    let end = lines.offset(&tokens[tokens.len() - 1]);
    let text = &piece.text[start..end];
    let trimmed = text.trim_start();
    Some(Piece { text: trimmed.trim_end().to_string(), offset: piece.offset + start + (text.len() - trimmed.len()) })
}

fn is_identifier(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c.is_alphanumeric() || c == '_')
}

/// `FETCH [FORWARD] [ALL | NEXT | n] [FROM | IN] name [WITH (...)]`.
fn fetch(tokens: &[TokenWithSpan]) -> PgStatement {
    let mut count = Some(1);
    let mut index = 1;
    if word(tokens.get(index)).as_deref() == Some("forward") {
        index += 1;
    }
    match tokens.get(index).map(|token| &token.token) {
        Some(Token::Number(number, _)) => {
            count = number.parse().ok();
            index += 1;
        }
        Some(Token::Word(word)) if word.value.eq_ignore_ascii_case("all") => {
            count = None;
            index += 1;
        }
        Some(Token::Word(word)) if word.value.eq_ignore_ascii_case("next") => index += 1,
        _ => {}
    }
    if matches!(word(tokens.get(index)).as_deref(), Some("from" | "in")) {
        index += 1;
    }
    PgStatement::Fetch { cursor: word(tokens.get(index)).unwrap_or_default(), count }
}

/// `SET [SESSION | LOCAL] name {= | TO} value` of a session parameter;
/// `None` for a Sluice setting (the engine's).
fn set_parameter(piece: &Piece, tokens: &[TokenWithSpan], lines: &LineStarts) -> Option<PgStatement> {
    let mut index = 1;
    if matches!(word(tokens.get(index)).as_deref(), Some("session" | "local")) {
        index += 1;
    }
    let mut name = word(tokens.get(index))?;
    index += 1;
    if name == "time" && word(tokens.get(index)).as_deref() == Some("zone") {
        name = "timezone".into();
        index += 1;
    }
    // Sluice's settings go to the engine; any other name is a session
    // parameter.
    if crate::settings::NAMES.contains(&name.as_str()) {
        return None;
    }
    if matches!(tokens.get(index).map(|token| &token.token), Some(Token::Eq))
        || word(tokens.get(index)).as_deref() == Some("to")
    {
        index += 1;
    }
    let value = tokens.get(index).map_or("", |token| &piece.text[lines.offset(token)..]);
    let value = value.trim().trim_matches('\'').trim_matches('"').to_string();
    Some(PgStatement::SetParameter { name, value })
}

/// Whether a query reads the Postgres catalogs, or nothing (no FROM).
fn reads_catalog(tokens: &[TokenWithSpan]) -> bool {
    let mut has_from = false;
    for token in tokens {
        if let Token::Word(word) = &token.token {
            let value = word.value.to_ascii_lowercase();
            if value == "pg_catalog"
                || value == "information_schema"
                || (value.starts_with("pg_") && word.quote_style.is_none())
            {
                return true;
            }
            has_from |= value == "from";
        }
    }
    !has_from
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(text: &str, offset: usize) -> Piece {
        Piece { text: text.into(), offset }
    }

    #[test]
    fn splits_at_top_level_semicolons_only() {
        let statements = split("SELECT ';' AS a FROM s; ;\n  SHOW STREAMS;");
        assert_eq!(
            statements,
            vec![
                PgStatement::Engine(piece("SELECT ';' AS a FROM s", 0)),
                PgStatement::Engine(piece("SHOW STREAMS", 28)),
            ]
        );
    }

    #[test]
    fn subscriptions_and_copies() {
        let sql = "SUBSCRIBE TO (SELECT ip FROM weblog)";
        assert_eq!(
            classify(piece(sql, 0)),
            PgStatement::Subscribe(Target::Subscribe(Box::new(Target::Query(piece("SELECT ip FROM weblog", 14)))))
        );
        assert_eq!(
            classify(piece("SUBSCRIBE q7", 0)),
            PgStatement::Subscribe(Target::Subscribe(Box::new(Target::Running("q7".into()))))
        );
        assert_eq!(
            classify(piece("subscribe weblog", 3)),
            PgStatement::Subscribe(Target::Subscribe(Box::new(Target::Query(piece("SELECT * FROM weblog", 13)))))
        );
        let sql = "COPY (SUBSCRIBE (SELECT 1 FROM s)) TO STDOUT";
        assert_eq!(
            classify(piece(sql, 0)),
            PgStatement::Copy(Target::Subscribe(Box::new(Target::Query(piece("SELECT 1 FROM s", 17)))))
        );
        assert_eq!(
            classify(piece("COPY (SELECT a FROM s) TO STDOUT", 0)),
            PgStatement::Copy(Target::Query(piece("SELECT a FROM s", 6)))
        );
    }

    #[test]
    fn cursors() {
        assert_eq!(
            classify(piece("DECLARE c CURSOR FOR SUBSCRIBE (SELECT a FROM s)", 0)),
            PgStatement::Declare {
                cursor: "c".into(),
                target: Target::Subscribe(Box::new(Target::Query(piece("SELECT a FROM s", 32)))),
            }
        );
        assert_eq!(classify(piece("FETCH ALL c", 0)), PgStatement::Fetch { cursor: "c".into(), count: None });
        assert_eq!(classify(piece("FETCH 10 FROM c", 0)), PgStatement::Fetch { cursor: "c".into(), count: Some(10) });
        assert_eq!(classify(piece("FETCH c", 0)), PgStatement::Fetch { cursor: "c".into(), count: Some(1) });
        assert_eq!(classify(piece("CLOSE c", 0)), PgStatement::Close { cursor: Some("c".into()) });
    }

    #[test]
    fn session_parameters_and_query_settings() {
        assert_eq!(
            classify(piece("SET client_encoding TO 'UTF8'", 0)),
            PgStatement::SetParameter { name: "client_encoding".into(), value: "UTF8".into() }
        );
        assert_eq!(
            classify(piece("SET TIME ZONE 'UTC'", 0)),
            PgStatement::SetParameter { name: "timezone".into(), value: "UTC".into() }
        );
        assert!(matches!(classify(piece("SET epoch_interval = '1s'", 0)), PgStatement::Engine(_)));
        assert_eq!(
            classify(piece("SHOW server_version", 0)),
            PgStatement::ShowParameter { name: "server_version".into() }
        );
        assert!(matches!(classify(piece("SHOW STREAMS", 0)), PgStatement::Engine(_)));
    }

    #[test]
    fn catalog_queries() {
        assert!(matches!(classify(piece("SELECT 1", 0)), PgStatement::Catalog(_)));
        assert!(matches!(classify(piece("SELECT current_setting('x')", 0)), PgStatement::Catalog(_)));
        assert!(matches!(classify(piece("SELECT * FROM pg_catalog.pg_class", 0)), PgStatement::Catalog(_)));
        assert!(matches!(classify(piece("SELECT ip FROM weblog", 0)), PgStatement::Engine(_)));
    }
}
