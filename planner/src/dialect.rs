//! The SQL dialect: PostgreSQL-like, plus what streaming SQL needs.
//!
//! - `TABLE name` as a function argument (Flink's window TVFs:
//!   `TUMBLE(TABLE weblog, DESCRIPTOR(ts), INTERVAL '1' SECOND)`) parses as
//!   the identifier `name`, so the short form `TUMBLE(weblog, ...)` and the
//!   long form reach the planner alike.
//! - `MATCH_RECOGNIZE` is enabled.
//! - `FOR SYSTEM_TIME AS OF` after a table name (temporal joins).

use datafusion::sql::sqlparser::ast::Expr;
use datafusion::sql::sqlparser::dialect::{Dialect, GenericDialect};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::Token;

#[derive(Debug, Default)]
pub struct SluiceDialect {
    generic: GenericDialect,
}

impl Dialect for SluiceDialect {
    fn is_identifier_start(&self, ch: char) -> bool {
        self.generic.is_identifier_start(ch)
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        self.generic.is_identifier_part(ch)
    }

    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        ch == '"' || ch == '`'
    }

    fn supports_match_recognize(&self) -> bool {
        true
    }

    /// `$` is part of placeholders (`$A$` in a row pattern reads as one
    /// token the pattern reader splits), never a dollar-quoted string.
    fn supports_dollar_placeholder(&self) -> bool {
        true
    }

    fn supports_filter_during_aggregation(&self) -> bool {
        true
    }

    fn supports_group_by_expr(&self) -> bool {
        true
    }

    /// `JOIN rates FOR SYSTEM_TIME AS OF o.ts`: temporal and lookup joins.
    fn supports_table_versioning(&self) -> bool {
        true
    }

    fn parse_prefix(&self, parser: &mut Parser) -> Option<Result<Expr, ParserError>> {
        let is_table = matches!(&parser.peek_token().token, Token::Word(word) if word.keyword == Keyword::TABLE);
        if is_table && parser.peek_nth_token(1).token == Token::LParen {
            // `TABLE (SELECT ...)`: a window over a query's rows.
            parser.next_token();
            return Some(parser.parse_expr());
        }
        let is_table_argument = is_table && matches!(&parser.peek_nth_token(1).token, Token::Word(_));
        if !is_table_argument {
            return None;
        }
        parser.next_token();
        Some(table_argument(parser))
    }
}

/// `TABLE name [PARTITION BY key | PARTITION BY (key, ...)]` as the
/// identifier `name`, or `__partitioned(name, key, ...)` with partition keys.
fn table_argument(parser: &mut Parser) -> Result<Expr, ParserError> {
    let name = parser.parse_object_name(false)?;
    let mut idents: Vec<_> = name.0.into_iter().filter_map(|part| part.as_ident().cloned()).collect();
    let table = if idents.len() == 1 { Expr::Identifier(idents.remove(0)) } else { Expr::CompoundIdentifier(idents) };
    if !parser.parse_keywords(&[Keyword::PARTITION, Keyword::BY]) {
        return Ok(table);
    }
    let keys = if parser.consume_token(&Token::LParen) {
        let keys = parser.parse_comma_separated(|parser| parser.parse_identifier())?;
        parser.expect_token(&Token::RParen)?;
        keys
    } else {
        vec![parser.parse_identifier()?]
    };
    let text =
        format!("{PARTITIONED}({table}, {})", keys.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "));
    Parser::new(&SluiceDialect::default()).try_with_sql(&text)?.parse_expr()
}

/// The function a partitioned `TABLE` argument is written as.
pub const PARTITIONED: &str = "__partitioned";
