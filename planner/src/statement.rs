//! The statement layer: splits a request into statements and parses each,
//! handling Sluice's own statements before handing the rest to sqlparser
//! (as DataFusion's `DFParser` does).
//!
//! ```sql
//! CREATE STREAM name (col TYPE, ..., WATERMARK FOR col AS col - INTERVAL '2' SECOND)
//!   WITH (connector = 'socket', ...);
//! CREATE TABLE name (..., WATERMARK FOR ...) WITH (...);   -- Flink style, a stream too
//! CREATE TABLE name (..., PRIMARY KEY (...)) [WITH (connector = 'file', ...)];  -- static
//! INSERT INTO name [(columns)] VALUES (...), ...;          -- into a static table
//! DROP {STREAM | TABLE} [IF EXISTS] name;
//! CREATE VIEW name AS SELECT ...;                          -- planned into its readers
//! CREATE MATERIALIZED VIEW name AS SELECT ...;             -- runs once, keeps its result
//! CREATE SINK name INTO {FILE | KAFKA} (option = value, ...) AS SELECT ...;
//! DROP {VIEW | MATERIALIZED VIEW | SINK} [IF EXISTS] name;
//! SHOW STREAMS; SHOW TABLES; SHOW QUERIES; SHOW VIEWS; SHOW SINKS;
//! DESCRIBE name;
//! SET epoch_interval = '10ms';
//! EXPLAIN SELECT ...;
//! SELECT ...;
//! ```

use datafusion::sql::sqlparser::ast::{self, ColumnDef, Expr, Ident, Spanned};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};

pub use datafusion::sql::sqlparser::ast::Query as QueryAst;
pub use datafusion::sql::sqlparser::ast::Statement as AstStatement;
pub use datafusion::sql::sqlparser::tokenizer::Location as SqlLocation;

use sluice_runtime::operators::window_aggregate::EarlyEmit;

use crate::ddl::CreateStream;
use crate::dialect::SluiceDialect;
use crate::error::{PlanError, Result, location_of, offset_of};
use crate::interval::interval_nanos;
use crate::names::object_name;
use crate::pattern_clause::{PatternClause, extract_clauses};
use crate::watermark::parse_watermark;

#[derive(Debug, Clone)]
pub enum Statement {
    CreateStream(Box<CreateStream>),
    /// `DROP STREAM` or `DROP TABLE`.
    DropStream {
        name: String,
        if_exists: bool,
    },
    /// `INSERT INTO` a static table: the whole statement, for DataFusion.
    Insert {
        table: String,
        statement: Box<ast::Statement>,
    },
    /// `CREATE VIEW` or `CREATE MATERIALIZED VIEW`: a named query.
    CreateView(Box<CreateView>),
    /// `CREATE SINK name INTO kind (options) AS query`.
    CreateSink(Box<CreateSink>),
    /// `DROP VIEW`, `DROP MATERIALIZED VIEW` or `DROP SINK`.
    DropNamed {
        kind: NamedKind,
        name: String,
        if_exists: bool,
    },
    ShowStreams,
    ShowTables,
    ShowQueries,
    ShowViews,
    ShowSinks,
    Describe {
        name: String,
    },
    Set {
        name: String,
        value: String,
    },
    Explain {
        query: Box<ast::Query>,
        emit: Option<EarlyEmit>,
        patterns: Vec<PatternClause>,
    },
    /// `EXPLAIN ANALYZE q7`: a running query's plan with its figures.
    ExplainAnalyze {
        query_id: String,
    },
    /// A continuous query, with its EMIT clause and the MATCH_RECOGNIZE
    /// clauses its stubs stand for (see [`crate::pattern_clause`]).
    Query {
        query: Box<ast::Query>,
        emit: Option<EarlyEmit>,
        patterns: Vec<PatternClause>,
    },
}

/// A named query: a view, or a materialized view.
#[derive(Debug, Clone)]
pub struct CreateView {
    pub name: String,
    pub name_location: Location,
    pub materialized: bool,
    pub if_not_exists: bool,
    pub query: Box<ast::Query>,
    pub emit: Option<EarlyEmit>,
    pub patterns: Vec<PatternClause>,
}

/// `CREATE SINK name INTO kind (options) AS query`.
#[derive(Debug, Clone)]
pub struct CreateSink {
    pub name: String,
    pub name_location: Location,
    pub if_not_exists: bool,
    /// `file` or `kafka`, lower-cased, and where it is.
    pub kind: String,
    pub kind_location: Location,
    /// `(key, value, where the key is)`, keys lower-cased.
    pub options: Vec<(String, String, Location)>,
    pub query: Box<ast::Query>,
    pub emit: Option<EarlyEmit>,
    pub patterns: Vec<PatternClause>,
}

/// What a `DROP` of a named query removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamedKind {
    View,
    MaterializedView,
    Sink,
}

impl NamedKind {
    pub fn describe(self) -> &'static str {
        match self {
            Self::View => "view",
            Self::MaterializedView => "materialized view",
            Self::Sink => "sink",
        }
    }
}

impl Statement {
    /// The query a statement runs or names, with its EMIT clause and
    /// pattern clauses.
    pub fn query_parts(&self) -> Option<(&ast::Query, Option<EarlyEmit>, &[PatternClause])> {
        match self {
            Self::Query { query, emit, patterns } | Self::Explain { query, emit, patterns } => {
                Some((query, *emit, patterns))
            }
            Self::CreateView(view) => Some((&view.query, view.emit, &view.patterns)),
            Self::CreateSink(sink) => Some((&sink.query, sink.emit, &sink.patterns)),
            _ => None,
        }
    }
}

/// A statement with where it starts and its own text.
#[derive(Debug, Clone)]
pub struct Located {
    pub statement: Statement,
    pub start: Location,
    pub text: String,
}

/// Parses every statement of `sql`.
pub fn parse_statements(sql: &str) -> Result<Vec<Located>> {
    parse_all(sql).map_err(|error| {
        // sqlparser gives no position when the text ended too early.
        if error.line.is_none() && error.message.contains("found: EOF") {
            error.at_location(location_of(sql, sql.trim_end().len()))
        } else {
            error
        }
    })
}

fn parse_all(sql: &str) -> Result<Vec<Located>> {
    let dialect = SluiceDialect::default();
    let mut tokens = Tokenizer::new(&dialect, sql).tokenize_with_location().map_err(ParserError::from)?;
    crate::sample::key_clause_as_offset(&mut tokens);
    let (tokens, patterns) = extract_clauses(tokens)?;
    let mut parser = Parser::new(&dialect).with_tokens_with_locations(tokens);
    let mut statements = Vec::new();
    loop {
        while parser.consume_token(&Token::SemiColon) {}
        let first = parser.peek_token();
        if first.token == Token::EOF {
            break;
        }
        let mut statement = parse_one(&mut parser, sql)?;
        match &mut statement {
            // Every clause of the request; the stubs name theirs by index.
            Statement::Query { patterns: mine, .. } | Statement::Explain { patterns: mine, .. } => {
                mine.clone_from(&patterns)
            }
            Statement::CreateView(view) => view.patterns.clone_from(&patterns),
            Statement::CreateSink(sink) => sink.patterns.clone_from(&patterns),
            _ => {}
        }
        let next = parser.peek_token();
        if !matches!(next.token, Token::SemiColon | Token::EOF) {
            return Err(PlanError::from(ParserError::ParserError(format!(
                "expected end of statement, found: {}",
                next.token
            )))
            .at(next.span));
        }
        let text = text_between(sql, first.span.start, next.span.start);
        statements.push(Located { statement, start: first.span.start, text });
    }
    if statements.is_empty() {
        return Err(PlanError::from(ParserError::ParserError("empty request: no SQL statement".into())));
    }
    Ok(statements)
}

fn text_between(sql: &str, start: Location, end: Location) -> String {
    let start = offset_of(sql, start).unwrap_or(0);
    let end = offset_of(sql, end).unwrap_or(sql.len()).max(start);
    sql[start..end].trim().to_string()
}

/// `q` and a number: how query ids look.
fn is_query_id(text: &str) -> bool {
    text.len() > 1 && text[..1].eq_ignore_ascii_case("q") && text[1..].bytes().all(|byte| byte.is_ascii_digit())
}

fn word_is(token: &TokenWithSpan, word: &str) -> bool {
    matches!(&token.token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
}

fn parse_one(parser: &mut Parser, sql: &str) -> Result<Statement> {
    let first = parser.peek_token();
    let second = parser.peek_nth_token(1);
    if word_is(&first, "CREATE") && (word_is(&second, "STREAM") || word_is(&second, "TABLE")) {
        parser.next_token();
        let is_stream = word_is(&parser.next_token(), "STREAM");
        return parse_create(parser, is_stream, first.span.start, sql);
    }
    if word_is(&first, "DROP") && (word_is(&second, "STREAM") || word_is(&second, "TABLE")) {
        parser.next_token();
        parser.next_token();
        let if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        let name = object_name(&parser.parse_object_name(false)?);
        return Ok(Statement::DropStream { name, if_exists });
    }
    if word_is(&first, "SHOW")
        && ["STREAMS", "TABLES", "QUERIES", "VIEWS", "SINKS"].iter().any(|word| word_is(&second, word))
    {
        parser.next_token();
        let what = parser.next_token();
        return Ok(if word_is(&what, "STREAMS") {
            Statement::ShowStreams
        } else if word_is(&what, "TABLES") {
            Statement::ShowTables
        } else if word_is(&what, "VIEWS") {
            Statement::ShowViews
        } else if word_is(&what, "SINKS") {
            Statement::ShowSinks
        } else {
            Statement::ShowQueries
        });
    }
    if word_is(&first, "CREATE") {
        let third = parser.peek_nth_token(2);
        let (materialized, or_replace) = (word_is(&second, "MATERIALIZED"), word_is(&second, "OR"));
        if or_replace && (word_is(&third, "VIEW") || word_is(&third, "MATERIALIZED") || word_is(&third, "SINK")) {
            return Err(PlanError::unsupported(
                "CREATE OR REPLACE is not supported: DROP the view or sink, then CREATE it again",
            )
            .at(second.span));
        }
        if word_is(&second, "VIEW") || (materialized && word_is(&third, "VIEW")) {
            parser.next_token();
            parser.next_token();
            if materialized {
                parser.next_token();
            }
            return parse_create_view(parser, materialized);
        }
        if word_is(&second, "SINK") {
            parser.next_token();
            parser.next_token();
            return parse_create_sink(parser);
        }
    }
    if word_is(&first, "DROP") {
        let third = parser.peek_nth_token(2);
        let kind = if word_is(&second, "VIEW") {
            Some((NamedKind::View, 2))
        } else if word_is(&second, "MATERIALIZED") && word_is(&third, "VIEW") {
            Some((NamedKind::MaterializedView, 3))
        } else if word_is(&second, "SINK") {
            Some((NamedKind::Sink, 2))
        } else {
            None
        };
        if let Some((kind, words)) = kind {
            for _ in 0..words {
                parser.next_token();
            }
            let if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
            let name = object_name(&parser.parse_object_name(false)?);
            return Ok(Statement::DropNamed { kind, name, if_exists });
        }
    }
    if word_is(&first, "DESCRIBE") || word_is(&first, "DESC") {
        parser.next_token();
        let _ = parser.parse_keyword(Keyword::STREAM);
        let name = object_name(&parser.parse_object_name(false)?);
        return Ok(Statement::Describe { name });
    }
    if word_is(&first, "SET") {
        parser.next_token();
        let name = object_name(&parser.parse_object_name(false)?);
        if !parser.consume_token(&Token::Eq) {
            let _ = parser.parse_keyword(Keyword::TO);
        }
        let value = option_value(parser)?;
        return Ok(Statement::Set { name, value });
    }
    if word_is(&first, "EXPLAIN") && word_is(&second, "ANALYZE") {
        parser.next_token();
        parser.next_token();
        let target = parser.peek_token();
        return match &target.token {
            Token::Word(word) if is_query_id(&word.value) => {
                parser.next_token();
                Ok(Statement::ExplainAnalyze { query_id: word.value.to_ascii_lowercase() })
            }
            _ => Err(PlanError::unsupported(
                "EXPLAIN ANALYZE takes the id of a running query (EXPLAIN ANALYZE q7; SHOW QUERIES lists them)",
            )
            .at(target.span)),
        };
    }
    if word_is(&first, "EXPLAIN") {
        parser.next_token();
        let statement = parser.parse_statement()?;
        return match statement {
            ast::Statement::Query(query) => {
                Ok(Statement::Explain { query, emit: parse_emit(parser)?, patterns: Vec::new() })
            }
            other => Err(PlanError::unsupported("EXPLAIN takes a SELECT").at(other.span())),
        };
    }
    match parser.parse_statement()? {
        ast::Statement::Query(query) => Ok(Statement::Query { query, emit: parse_emit(parser)?, patterns: Vec::new() }),
        ast::Statement::Insert(insert) => {
            let table = match &insert.table {
                ast::TableObject::TableName(name) => object_name(name),
                other => {
                    return Err(PlanError::unsupported(format!("INSERT INTO {other} is not supported")).at(first.span));
                }
            };
            Ok(Statement::Insert { table, statement: Box::new(ast::Statement::Insert(insert)) })
        }
        other => {
            let keyword = sql[offset_of(sql, first.span.start).unwrap_or(0)..]
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ");
            Err(PlanError::unsupported(format!(
                "{keyword} is not supported; Sluice runs CREATE STREAM/TABLE/VIEW/MATERIALIZED VIEW/SINK, DROP, INSERT INTO (a table), SHOW STREAMS/TABLES/VIEWS/SINKS/QUERIES, DESCRIBE, SET, EXPLAIN and SELECT"
            ))
            .at(if other.span().start.line > 0 { other.span() } else { first.span }))
        }
    }
}

/// `[IF NOT EXISTS] name AS query [EMIT ...]`, after `CREATE [MATERIALIZED] VIEW`.
fn parse_create_view(parser: &mut Parser, materialized: bool) -> Result<Statement> {
    let if_not_exists = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name_token = parser.peek_token();
    let name = object_name(&parser.parse_object_name(false)?);
    parser.expect_keyword(Keyword::AS)?;
    let query = parser.parse_query()?;
    let emit = parse_emit(parser)?;
    Ok(Statement::CreateView(Box::new(CreateView {
        name,
        name_location: name_token.span.start,
        materialized,
        if_not_exists,
        query,
        emit,
        patterns: Vec::new(),
    })))
}

/// `[IF NOT EXISTS] name INTO kind (option = value, ...) AS query [EMIT ...]`,
/// after `CREATE SINK`.
fn parse_create_sink(parser: &mut Parser) -> Result<Statement> {
    let if_not_exists = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name_token = parser.peek_token();
    let name = object_name(&parser.parse_object_name(false)?);
    parser.expect_keyword(Keyword::INTO)?;
    let kind_token = parser.next_token();
    let kind = match &kind_token.token {
        Token::Word(word) => word.value.to_ascii_lowercase(),
        other => {
            return Err(PlanError::from(ParserError::ParserError(format!(
                "expected FILE or KAFKA after INTO, found: {other}"
            )))
            .at(kind_token.span));
        }
    };
    let options = if parser.peek_token().token == Token::LParen {
        parser.next_token();
        parse_options(parser)?
    } else {
        Vec::new()
    };
    parser.expect_keyword(Keyword::AS)?;
    let query = parser.parse_query()?;
    let emit = parse_emit(parser)?;
    Ok(Statement::CreateSink(Box::new(CreateSink {
        name,
        name_location: name_token.span.start,
        if_not_exists,
        kind,
        kind_location: kind_token.span.start,
        options,
        query,
        emit,
        patterns: Vec::new(),
    })))
}

/// `key = value, ...)`: options after their `(`, to the closing `)`.
fn parse_options(parser: &mut Parser) -> Result<Vec<(String, String, Location)>> {
    let mut options = Vec::new();
    if parser.consume_token(&Token::RParen) {
        return Ok(options);
    }
    loop {
        let key_token = parser.next_token();
        let key = match &key_token.token {
            Token::Word(word) => word.value.to_ascii_lowercase(),
            Token::SingleQuotedString(text) | Token::DoubleQuotedString(text) => text.to_ascii_lowercase(),
            other => {
                return Err(PlanError::from(ParserError::ParserError(format!(
                    "expected an option name, found: {other}"
                )))
                .at(key_token.span));
            }
        };
        // Dotted keys, as in Flink ('scan.startup.mode').
        let mut key = key;
        while parser.consume_token(&Token::Period) {
            key.push('.');
            key.push_str(&parser.parse_identifier()?.value.to_ascii_lowercase());
        }
        parser.expect_token(&Token::Eq)?;
        let value = option_value(parser)?;
        options.push((key, value, key_token.span.start));
        if !parser.consume_token(&Token::Comma) {
            parser.expect_token(&Token::RParen)?;
            return Ok(options);
        }
    }
}

/// `CREATE {STREAM | TABLE} [IF NOT EXISTS] name (columns, WATERMARK ..., PRIMARY KEY (...)) [WITH (...)]`
fn parse_create(parser: &mut Parser, is_stream: bool, start: Location, _sql: &str) -> Result<Statement> {
    let if_not_exists = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name_token = parser.peek_token();
    let name = parser.parse_object_name(false)?;
    let mut columns: Vec<ColumnDef> = Vec::new();
    let mut watermark: Option<(Ident, Expr)> = None;
    let mut primary_key = Vec::new();
    let mut proctime = None;
    let mut metadata = Vec::new();
    parser.expect_token(&Token::LParen)?;
    loop {
        let token = parser.peek_token();
        if word_is(&token, "WATERMARK") {
            parser.next_token();
            let declared = parse_watermark(parser)?;
            if watermark.is_some() {
                return Err(PlanError::invalid("a stream has at most one WATERMARK").at(token.span));
            }
            watermark = Some(declared);
        } else if parser.parse_keywords(&[Keyword::PRIMARY, Keyword::KEY]) {
            parser.expect_token(&Token::LParen)?;
            primary_key = parser.parse_comma_separated(|parser| parser.parse_identifier())?;
            parser.expect_token(&Token::RParen)?;
            let _ = parser.parse_keywords(&[Keyword::NOT, Keyword::ENFORCED]);
        } else if matches!(token.token, Token::Word(_))
            && matches!(&parser.peek_nth_token(1).token, Token::Word(word) if word.keyword == Keyword::AS)
        {
            // `name AS PROCTIME()`: a processing-time attribute.
            let name = parser.parse_identifier()?;
            parser.expect_keyword(Keyword::AS)?;
            let expr = parser.parse_expr()?;
            let is_proctime = matches!(&expr, Expr::Function(function) if object_name(&function.name) == "proctime");
            if !is_proctime || proctime.is_some() {
                return Err(
                    PlanError::unsupported("the only computed column is one `name AS PROCTIME()`").at(expr.span())
                );
            }
            proctime = Some((name, columns.len()));
        } else if declares_metadata(parser) {
            // `name TYPE METADATA FROM 'key' [VIRTUAL]` (Flink's): a column
            // filled from the record's key, partition, offset or timestamp.
            let name = parser.parse_identifier()?;
            let data_type = parser.parse_data_type()?;
            parser.next_token();
            parser.expect_keyword(Keyword::FROM)?;
            let from = parser.next_token();
            let Token::SingleQuotedString(what) = &from.token else {
                return Err(PlanError::invalid(
                    "METADATA FROM takes a quoted name: 'key', 'partition', 'offset' or 'timestamp'",
                )
                .at(from.span));
            };
            metadata.push((columns.len(), what.to_ascii_lowercase(), from.span.start));
            let _ = parser.parse_keyword(Keyword::VIRTUAL);
            columns.push(ColumnDef { name, data_type, options: Vec::new() });
        } else {
            columns.push(parser.parse_column_def()?);
        }
        if parser.consume_token(&Token::Comma) {
            continue;
        }
        parser.expect_token(&Token::RParen)?;
        break;
    }
    let mut options = Vec::new();
    if parser.parse_keyword(Keyword::WITH) {
        parser.expect_token(&Token::LParen)?;
        options = parse_options(parser)?;
    }
    Ok(Statement::CreateStream(Box::new(CreateStream {
        name: object_name(&name),
        name_location: name_token.span.start,
        is_stream,
        if_not_exists,
        columns,
        watermark,
        primary_key,
        proctime,
        metadata,
        options,
        start,
    })))
}

/// Whether the column definition ahead says `METADATA` before its end.
fn declares_metadata(parser: &Parser) -> bool {
    let mut depth = 0usize;
    for index in 0.. {
        let token = parser.peek_nth_token(index);
        match &token.token {
            Token::LParen => depth += 1,
            Token::RParen if depth == 0 => return false,
            Token::RParen => depth -= 1,
            Token::Comma if depth == 0 => return false,
            Token::EOF => return false,
            _ if depth == 0 && word_is(&token, "METADATA") => return true,
            _ => {}
        }
    }
    false
}

/// `EMIT ON UPDATE` or `EMIT EVERY INTERVAL '1' SECOND` after a SELECT:
/// early results for open windows, corrected as they change.
fn parse_emit(parser: &mut Parser) -> Result<Option<EarlyEmit>> {
    let emit = parser.peek_token();
    if !word_is(&emit, "EMIT") {
        return Ok(None);
    }
    parser.next_token();
    let next = parser.next_token();
    if word_is(&next, "ON") {
        let update = parser.next_token();
        if word_is(&update, "UPDATE") {
            return Ok(Some(EarlyEmit::OnUpdate));
        }
        return Err(PlanError::invalid("expected EMIT ON UPDATE").at(update.span));
    }
    if word_is(&next, "EVERY") {
        let interval = parser.parse_expr()?;
        let nanos = interval_nanos(&interval)?;
        if nanos <= 0 {
            return Err(PlanError::invalid("the EMIT interval must be positive").at(interval.span()));
        }
        return Ok(Some(EarlyEmit::Every(std::time::Duration::from_nanos(nanos as u64))));
    }
    Err(PlanError::invalid("expected EMIT ON UPDATE or EMIT EVERY INTERVAL '...' <unit>").at(next.span))
}

fn option_value(parser: &mut Parser) -> Result<String> {
    let token = parser.next_token();
    match token.token {
        Token::SingleQuotedString(text) | Token::DoubleQuotedString(text) => Ok(text),
        Token::Number(number, _) => Ok(number),
        Token::Word(word) => Ok(word.value),
        Token::Minus => match parser.next_token().token {
            Token::Number(number, _) => Ok(format!("-{number}")),
            other => {
                Err(PlanError::from(ParserError::ParserError(format!("expected a number after '-', found: {other}")))
                    .at(token.span))
            }
        },
        other => Err(PlanError::from(ParserError::ParserError(format!(
            "expected a value (a 'string', a number or a name), found: {other}"
        )))
        .at(token.span)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_statements_and_keeps_their_text() {
        let statements = parse_statements("SHOW STREAMS;\n  SELECT 1 ;; DESCRIBE weblog").unwrap();
        assert_eq!(statements.len(), 3);
        assert_eq!(statements[1].text, "SELECT 1");
        assert_eq!(statements[1].start, Location { line: 2, column: 3 });
        assert!(matches!(&statements[2].statement, Statement::Describe { name } if name == "weblog"));
    }

    #[test]
    fn parses_create_stream_with_watermark_and_options() {
        let sql = "CREATE STREAM weblog (ts TIMESTAMP, ip VARCHAR,\n WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)\n WITH (connector = 'socket', 'port' = 7777, scan.mode = 'x')";
        let statements = parse_statements(sql).unwrap();
        let Statement::CreateStream(create) = &statements[0].statement else { panic!("not a create") };
        assert_eq!(create.name, "weblog");
        assert_eq!(create.columns.len(), 2);
        assert_eq!(create.watermark.as_ref().unwrap().0.value, "ts");
        let keys: Vec<_> = create.options.iter().map(|(key, value, _)| format!("{key}={value}")).collect();
        assert_eq!(keys, vec!["connector=socket", "port=7777", "scan.mode=x"]);
    }

    #[test]
    fn parses_views_sinks_and_their_drops() {
        let sql = "CREATE VIEW errors AS SELECT * FROM weblog WHERE status >= 500;\n\
                   CREATE MATERIALIZED VIEW IF NOT EXISTS counts AS SELECT ip, count(*) FROM weblog GROUP BY ip;\n\
                   CREATE SINK out INTO FILE (path = '/tmp/x', format = 'csv') AS SELECT * FROM errors;\n\
                   DROP MATERIALIZED VIEW IF EXISTS counts; DROP SINK out; SHOW VIEWS; SHOW SINKS";
        let statements = parse_statements(sql).unwrap();
        let Statement::CreateView(view) = &statements[0].statement else { panic!("not a view") };
        assert!(!view.materialized && view.name == "errors");
        let Statement::CreateView(view) = &statements[1].statement else { panic!("not a view") };
        assert!(view.materialized && view.if_not_exists && view.name == "counts");
        let Statement::CreateSink(sink) = &statements[2].statement else { panic!("not a sink") };
        assert_eq!((sink.name.as_str(), sink.kind.as_str()), ("out", "file"));
        assert_eq!(sink.options[1].0, "format");
        assert!(matches!(
            &statements[3].statement,
            Statement::DropNamed { kind: NamedKind::MaterializedView, if_exists: true, name } if name == "counts"
        ));
        assert!(matches!(&statements[4].statement, Statement::DropNamed { kind: NamedKind::Sink, .. }));
        assert!(matches!(&statements[5].statement, Statement::ShowViews));
        assert!(matches!(&statements[6].statement, Statement::ShowSinks));
        let error = parse_statements("CREATE SINK s INTO FILE (path = 'x') SELECT 1").unwrap_err();
        assert_eq!(error.line, Some(1));
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let error = parse_statements("SELECT a,\n  FROM WHERE").unwrap_err();
        assert_eq!(error.kind, crate::error::PlanErrorKind::Syntax);
        assert_eq!(error.line, Some(2));
        assert!(error.column.is_some());
    }

    #[test]
    fn a_statement_that_ends_too_early_points_at_its_end() {
        let error = parse_statements("SELECT ip FROM weblog WHERE").unwrap_err();
        assert_eq!((error.line, error.column), (Some(1), Some(28)));
    }

    #[test]
    fn table_arguments_parse_as_names() {
        let sql = "SELECT * FROM TABLE(TUMBLE(TABLE weblog, DESCRIPTOR(ts), INTERVAL '1' SECOND))";
        assert!(parse_statements(sql).is_ok());
    }
}
