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
//! SHOW STREAMS; SHOW TABLES; SHOW QUERIES;
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
    ShowStreams,
    ShowTables,
    ShowQueries,
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
    let tokens = Tokenizer::new(&dialect, sql).tokenize_with_location().map_err(ParserError::from)?;
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
        if let Statement::Query { patterns: mine, .. } | Statement::Explain { patterns: mine, .. } = &mut statement {
            // Every clause of the request; the stubs name theirs by index.
            mine.clone_from(&patterns);
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
    if word_is(&first, "SHOW") && ["STREAMS", "TABLES", "QUERIES"].iter().any(|word| word_is(&second, word)) {
        parser.next_token();
        let what = parser.next_token();
        return Ok(if word_is(&what, "STREAMS") {
            Statement::ShowStreams
        } else if word_is(&what, "TABLES") {
            Statement::ShowTables
        } else {
            Statement::ShowQueries
        });
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
                "{keyword} is not supported; Sluice runs CREATE STREAM/TABLE, DROP STREAM/TABLE, INSERT INTO (a table), SHOW STREAMS/TABLES/QUERIES, DESCRIBE, SET, EXPLAIN and SELECT"
            ))
            .at(if other.span().start.line > 0 { other.span() } else { first.span }))
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
                break;
            }
        }
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
        options,
        start,
    })))
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
