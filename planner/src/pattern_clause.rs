//! The `MATCH_RECOGNIZE` clause, read by the statement layer.
//!
//! sqlparser (0.62) parses a subset of the clause: no reluctant
//! quantifiers (it reads `A*?` as `(A*)?`), exclusion and PERMUTE of single
//! variables only, no `AFTER MATCH SKIP TO v`, no `SUBSET`, no `WITHIN`, no
//! `RUNNING`/`FINAL`, no empty pattern `()`. So the statement layer reads
//! the whole clause itself, with sqlparser's parser for every expression
//! in it (PARTITION BY, ORDER BY, MEASURES, DEFINE, WITHIN), and hands
//! sqlparser a stub in its place:
//!
//! ```sql
//! FROM ticks MATCH_RECOGNIZE (PARTITION BY ... PATTERN (A B*? C) ...) AS m
//! -- sqlparser sees
//! FROM ticks MATCH_RECOGNIZE (PATTERN (__match_recognize_0) DEFINE __match_recognize_0 AS TRUE) AS m
//! ```
//!
//! The FROM-clause rewrite finds the stub by its variable's name and takes
//! the [`PatternClause`] read here. The grammar (SQL:2016, as Trino and
//! Oracle write it, plus Flink's `WITHIN` and Sluice's timeout rows):
//!
//! ```text
//! MATCH_RECOGNIZE (
//!   [PARTITION BY expr, ...]
//!   [ORDER BY expr [ASC|DESC], ...]
//!   [MEASURES [RUNNING|FINAL] expr [AS] name, ...]
//!   [ONE ROW PER MATCH [WITH TIMEOUT ROWS]
//!    | ALL ROWS PER MATCH [SHOW EMPTY MATCHES | OMIT EMPTY MATCHES | WITH UNMATCHED ROWS]]
//!   [AFTER MATCH SKIP {PAST LAST ROW | TO NEXT ROW | TO FIRST v | TO LAST v | TO v}]
//!   PATTERN ( pattern )
//!   [WITHIN INTERVAL '...' unit]
//!   [SUBSET u = (v, ...), ...]
//!   [DEFINE v AS condition, ...]
//! )
//! pattern    := term ('|' term)*
//! term       := factor*                      -- concatenation
//! factor     := primary [quantifier ['?']]   -- a trailing ? makes it reluctant
//! quantifier := * | + | ? | {n} | {n,} | {,m} | {n,m}
//! primary    := v | ^ | $ | ( [pattern] ) | {- pattern -} | PERMUTE(pattern, ...)
//! ```
//!
//! `RUNNING` and `FINAL` before a function call in MEASURES are kept as
//! wrapping calls (`FINAL LAST(A.x)` reads as `__final(LAST(A.x))`), so the
//! expression stays one sqlparser expression.

use datafusion::sql::sqlparser::ast::{Expr, Ident, OrderByExpr, Spanned};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Span, Token, TokenWithSpan, Word};

pub use sluice_runtime::operators::match_recognize::spec::{EmptyMatches, RowsPerMatch};

use crate::dialect::SluiceDialect;
use crate::error::{PlanError, Result};
use crate::interval::interval_nanos;

/// The prefix of the stub variable that stands for a clause read here.
pub const STUB_PREFIX: &str = "__match_recognize_";

/// The name `RUNNING f(...)` is read as (the default semantics).
pub const RUNNING_CALL: &str = "__running";

/// The name `FINAL f(...)` is read as.
pub const FINAL_CALL: &str = "__final";

/// One `MATCH_RECOGNIZE (...)` clause as written.
#[derive(Debug, Clone, PartialEq)]
pub struct PatternClause {
    pub partition_by: Vec<Expr>,
    pub order_by: Vec<OrderByExpr>,
    pub measures: Vec<MeasureSyntax>,
    pub rows_per_match: RowsPerMatch,
    pub skip: SkipTo,
    pub pattern: PatternSyntax,
    /// `WITHIN`: the most event time a match may span, in nanoseconds.
    pub within: Option<i64>,
    pub subsets: Vec<(Ident, Vec<Ident>)>,
    pub define: Vec<(Ident, Expr)>,
    /// The `MATCH_RECOGNIZE` keyword, for errors about the whole clause.
    pub span: Span,
    /// The input when it is a derived table (`(SELECT ...) [AS] t
    /// MATCH_RECOGNIZE (...)`, which sqlparser does not parse): the text of
    /// a query reading it. `None`: the relation sqlparser parsed before the
    /// stub.
    pub input: Option<String>,
}

/// `expr AS name` in MEASURES.
#[derive(Debug, Clone, PartialEq)]
pub struct MeasureSyntax {
    pub expr: Expr,
    pub name: Ident,
}

/// `AFTER MATCH SKIP ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipTo {
    PastLastRow,
    NextRow,
    First(Ident),
    /// `TO LAST v` and `TO v`.
    Last(Ident),
}

/// A row pattern as written.
#[derive(Debug, Clone, PartialEq)]
pub enum PatternSyntax {
    Variable(Ident),
    Concat(Vec<PatternSyntax>),
    Alternation(Vec<PatternSyntax>),
    Quantified {
        pattern: Box<PatternSyntax>,
        min: u32,
        max: Option<u32>,
        greedy: bool,
        span: Span,
    },
    Permute(Vec<PatternSyntax>),
    Exclude(Box<PatternSyntax>),
    /// `^`: the start of the partition.
    Start,
    /// `$`: the end of the partition.
    End,
    /// `()`.
    Empty,
}

/// Reads every `MATCH_RECOGNIZE (...)` clause out of `tokens`, replacing
/// each by a stub sqlparser parses; the stub of clause `i` names the
/// variable `__match_recognize_{i}`.
pub fn extract_clauses(tokens: Vec<TokenWithSpan>) -> Result<(Vec<TokenWithSpan>, Vec<PatternClause>)> {
    let mut out = Vec::with_capacity(tokens.len());
    let mut clauses = Vec::new();
    let mut index = 0;
    while index < tokens.len() {
        let token = &tokens[index];
        let is_clause = matches!(&token.token, Token::Word(word) if word.keyword == Keyword::MATCH_RECOGNIZE);
        let open = next_significant(&tokens, index + 1);
        let Some(open) = open.filter(|open| is_clause && tokens[*open].token == Token::LParen) else {
            out.push(tokens[index].clone());
            index += 1;
            continue;
        };
        let Some(close) = matching_paren(&tokens, open) else {
            // Unbalanced: let sqlparser say where.
            out.extend(tokens[index..].iter().cloned());
            break;
        };
        let span = token.span;
        let inner: Vec<TokenWithSpan> = tokens[open + 1..close]
            .iter()
            .filter(|token| !matches!(token.token, Token::Whitespace(_)))
            .cloned()
            .collect();
        let end = tokens[close].span;
        let mut clause = parse_clause(inner, span, end)?;
        if let Some((from, derived)) = derived_input(&out) {
            out.truncate(from);
            out.push(TokenWithSpan::new(Token::make_word(DERIVED_INPUT, None), span));
            out.push(TokenWithSpan::new(
                Token::Whitespace(datafusion::sql::sqlparser::tokenizer::Whitespace::Space),
                span,
            ));
            clause.input = Some(format!("SELECT * FROM {}", derived.trim_end()));
        }
        clauses.push(clause);
        out.extend(stub(clauses.len() - 1, span));
        index = close + 1;
    }
    Ok((out, clauses))
}

/// The name a derived input is replaced by before the stub (the clause
/// keeps the input's text).
pub const DERIVED_INPUT: &str = "__match_recognize_input";

/// A derived table `( ... ) [AS] [alias [(columns)]]` ending `tokens`: where
/// it starts, and its text.
fn derived_input(tokens: &[TokenWithSpan]) -> Option<(usize, String)> {
    let significant = |upto: usize| (0..upto).rev().find(|index| !matches!(tokens[*index].token, Token::Whitespace(_)));
    let opening = |close: usize| {
        let mut depth = 0usize;
        for index in (0..=close).rev() {
            match tokens[index].token {
                Token::RParen => depth += 1,
                Token::LParen => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(index);
                    }
                }
                _ => {}
            }
        }
        None
    };
    let is_alias = |index: usize| {
        matches!(&tokens[index].token, Token::Word(word) if word.quote_style.is_some() || !matches!(word.keyword,
            Keyword::FROM | Keyword::JOIN | Keyword::ON | Keyword::SELECT | Keyword::LATERAL))
    };
    let mut end = significant(tokens.len())?;
    // `alias (columns)`: a column list after the alias.
    if tokens[end].token == Token::RParen {
        let open = opening(end)?;
        if let Some(before) = significant(open)
            && is_alias(before)
            && significant(before)
                .is_some_and(|index| matches!(tokens[index].token, Token::RParen) || is_as(&tokens[index]))
        {
            end = before;
        }
    }
    // `alias` or `AS alias`.
    if is_alias(end) && !matches!(tokens[end].token, Token::RParen) {
        let before = significant(end)?;
        let before = if is_as(&tokens[before]) { significant(before)? } else { before };
        if tokens[before].token != Token::RParen {
            return None;
        }
        end = before;
    }
    if tokens[end].token != Token::RParen {
        return None;
    }
    let open = opening(end)?;
    // A derived table follows FROM, JOIN, a comma or an opening paren.
    let before = significant(open)?;
    let starts_relation = matches!(&tokens[before].token, Token::Word(word) if matches!(word.keyword, Keyword::FROM | Keyword::JOIN))
        || matches!(tokens[before].token, Token::Comma | Token::LParen);
    if !starts_relation {
        return None;
    }
    let text: String = tokens[open..].iter().map(|token| token.token.to_string()).collect();
    Some((open, text))
}

fn is_as(token: &TokenWithSpan) -> bool {
    matches!(&token.token, Token::Word(word) if word.keyword == Keyword::AS)
}

/// The clause index a stub variable stands for.
pub fn stub_index(variable: &Ident) -> Option<usize> {
    variable.value.strip_prefix(STUB_PREFIX)?.parse().ok()
}

fn stub(index: usize, span: Span) -> Vec<TokenWithSpan> {
    let name = format!("{STUB_PREFIX}{index}");
    let word = |value: &str| Token::make_word(value, None);
    [
        word("MATCH_RECOGNIZE"),
        Token::LParen,
        word("PATTERN"),
        Token::LParen,
        word(&name),
        Token::RParen,
        word("DEFINE"),
        word(&name),
        word("AS"),
        word("TRUE"),
        Token::RParen,
    ]
    .into_iter()
    .map(|token| TokenWithSpan::new(token, span))
    .collect()
}

fn next_significant(tokens: &[TokenWithSpan], from: usize) -> Option<usize> {
    (from..tokens.len()).find(|index| !matches!(tokens[*index].token, Token::Whitespace(_)))
}

/// The index of the parenthesis closing the one at `open`.
pub fn matching_paren(tokens: &[TokenWithSpan], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (index, token) in tokens.iter().enumerate().skip(open) {
        match token.token {
            Token::LParen => depth += 1,
            Token::RParen => {
                depth -= 1;
                if depth == 0 {
                    return Some(index);
                }
            }
            _ => {}
        }
    }
    None
}

/// `RUNNING f(...)` / `FINAL f(...)` as `__running(f(...))` /
/// `__final(f(...))`.
fn wrap_semantics(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let mut out = Vec::with_capacity(tokens.len());
    // Where a wrapping call must be closed: after the paren at this depth.
    let mut closes: Vec<usize> = Vec::new();
    let mut depth = 0usize;
    let mut index = 0;
    while index < tokens.len() {
        let token = &tokens[index];
        let call = match &token.token {
            Token::Word(word) if word.quote_style.is_none() && word.value.eq_ignore_ascii_case("RUNNING") => {
                Some(RUNNING_CALL)
            }
            Token::Word(word) if word.quote_style.is_none() && word.value.eq_ignore_ascii_case("FINAL") => {
                Some(FINAL_CALL)
            }
            _ => None,
        };
        let before_call = matches!(tokens.get(index + 1).map(|t| &t.token), Some(Token::Word(_)))
            && matches!(tokens.get(index + 2).map(|t| &t.token), Some(Token::LParen));
        if let Some(call) = call.filter(|_| before_call) {
            out.push(TokenWithSpan::new(Token::make_word(call, None), token.span));
            out.push(TokenWithSpan::new(Token::LParen, token.span));
            closes.push(depth + 1);
            index += 1;
            continue;
        }
        match token.token {
            Token::LParen => depth += 1,
            Token::RParen => depth = depth.saturating_sub(1),
            _ => {}
        }
        out.push(token.clone());
        if token.token == Token::RParen {
            while closes.last() == Some(&(depth + 1)) {
                closes.pop();
                out.push(TokenWithSpan::new(Token::RParen, token.span));
            }
        }
        index += 1;
    }
    out
}

/// A variable's name: unquoted names are case-insensitive and read in
/// upper case (as Trino and Oracle do: `CLASSIFIER()` returns `'A'`).
pub fn variable_name(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_uppercase(),
    }
}

fn parse_clause(inner: Vec<TokenWithSpan>, span: Span, end: Span) -> Result<PatternClause> {
    let dialect = SluiceDialect::default();
    let mut tokens = wrap_semantics(inner);
    tokens.push(TokenWithSpan::new(Token::EOF, end));
    let mut parser = Parser::new(&dialect).with_tokens_with_locations(tokens);
    let partition_by = if parser.parse_keywords(&[Keyword::PARTITION, Keyword::BY]) {
        parser.parse_comma_separated(Parser::parse_expr)?
    } else {
        Vec::new()
    };
    let order_by = if parser.parse_keywords(&[Keyword::ORDER, Keyword::BY]) {
        parser.parse_comma_separated(Parser::parse_order_by_expr)?
    } else {
        Vec::new()
    };
    let measures = if parser.parse_keyword(Keyword::MEASURES) {
        parser.parse_comma_separated(|parser| {
            let expr = parser.parse_expr()?;
            let _ = parser.parse_keyword(Keyword::AS);
            let name = parser.parse_identifier()?;
            Ok(MeasureSyntax { expr, name })
        })?
    } else {
        Vec::new()
    };
    let rows_per_match = if parser.parse_keywords(&[Keyword::ONE, Keyword::ROW, Keyword::PER, Keyword::MATCH]) {
        let timeouts = if parser.parse_keyword(Keyword::WITH) {
            let word = parser.next_token();
            if !is_word(&word, "TIMEOUT") || !parser.parse_keyword(Keyword::ROWS) {
                return Err(PlanError::syntax("expected WITH TIMEOUT ROWS after ONE ROW PER MATCH").at(word.span));
            }
            true
        } else {
            false
        };
        RowsPerMatch::One { timeouts }
    } else if parser.parse_keywords(&[Keyword::ALL, Keyword::ROWS, Keyword::PER, Keyword::MATCH]) {
        RowsPerMatch::All(if parser.parse_keywords(&[Keyword::SHOW, Keyword::EMPTY, Keyword::MATCHES]) {
            EmptyMatches::Show
        } else if parser.parse_keywords(&[Keyword::OMIT, Keyword::EMPTY, Keyword::MATCHES]) {
            EmptyMatches::Omit
        } else if parser.parse_keywords(&[Keyword::WITH, Keyword::UNMATCHED, Keyword::ROWS]) {
            EmptyMatches::WithUnmatched
        } else {
            EmptyMatches::Show
        })
    } else {
        RowsPerMatch::One { timeouts: false }
    };
    let skip = if parser.parse_keywords(&[Keyword::AFTER, Keyword::MATCH, Keyword::SKIP]) {
        if parser.parse_keywords(&[Keyword::PAST, Keyword::LAST, Keyword::ROW]) {
            SkipTo::PastLastRow
        } else if parser.parse_keywords(&[Keyword::TO, Keyword::NEXT, Keyword::ROW]) {
            SkipTo::NextRow
        } else if parser.parse_keywords(&[Keyword::TO, Keyword::FIRST]) {
            SkipTo::First(parser.parse_identifier()?)
        } else if parser.parse_keywords(&[Keyword::TO, Keyword::LAST]) || parser.parse_keyword(Keyword::TO) {
            // `TO v` is `TO LAST v`.
            SkipTo::Last(parser.parse_identifier()?)
        } else {
            let found = parser.peek_token();
            return Err(PlanError::syntax(format!(
                "expected PAST LAST ROW, TO NEXT ROW, TO FIRST v, TO LAST v or TO v after AFTER MATCH SKIP, found {}",
                found.token
            ))
            .at(found.span));
        }
    } else {
        SkipTo::PastLastRow
    };
    let keyword = parser.peek_token();
    if !parser.parse_keyword(Keyword::PATTERN) {
        return Err(PlanError::syntax(format!(
            "expected PATTERN (or an earlier MATCH_RECOGNIZE subclause), found {}",
            keyword.token
        ))
        .at(keyword.span));
    }
    parser.expect_token(&Token::LParen)?;
    let pattern = PatternReader { parser: &mut parser }.alternation()?;
    parser.expect_token(&Token::RParen)?;
    let within = if is_word(&parser.peek_token(), "WITHIN") {
        parser.next_token();
        let expr = parser.parse_expr()?;
        let nanos = interval_nanos(&expr).map_err(|error| with_span(error, expr.span()))?;
        if nanos <= 0 {
            return Err(PlanError::invalid("WITHIN takes a positive interval").at(expr.span()));
        }
        Some(nanos)
    } else {
        None
    };
    let mut subsets = Vec::new();
    if is_word(&parser.peek_token(), "SUBSET") {
        parser.next_token();
        subsets = parser.parse_comma_separated(|parser| {
            let name = parser.parse_identifier()?;
            parser.expect_token(&Token::Eq)?;
            parser.expect_token(&Token::LParen)?;
            let members = parser.parse_comma_separated(Parser::parse_identifier)?;
            parser.expect_token(&Token::RParen)?;
            Ok((name, members))
        })?;
    }
    let define = if parser.parse_keyword(Keyword::DEFINE) {
        parser.parse_comma_separated(|parser| {
            let name = parser.parse_identifier()?;
            parser.expect_keyword_is(Keyword::AS)?;
            Ok((name, parser.parse_expr()?))
        })?
    } else {
        Vec::new()
    };
    let rest = parser.peek_token();
    if rest.token != Token::EOF {
        return Err(PlanError::syntax(format!(
            "unexpected {} in MATCH_RECOGNIZE (subclauses go in the order PARTITION BY, ORDER BY, MEASURES, ROWS PER MATCH, AFTER MATCH SKIP, PATTERN, WITHIN, SUBSET, DEFINE)",
            rest.token
        ))
        .at(rest.span));
    }
    Ok(PatternClause {
        partition_by,
        order_by,
        measures,
        rows_per_match,
        skip,
        pattern,
        within,
        subsets,
        define,
        span,
        input: None,
    })
}

fn with_span(error: PlanError, span: Span) -> PlanError {
    if error.line.is_some() { error } else { error.at(span) }
}

fn is_word(token: &TokenWithSpan, value: &str) -> bool {
    matches!(&token.token, Token::Word(Word { value: word, quote_style: None, .. }) if word.eq_ignore_ascii_case(value))
}

/// Recursive descent over the pattern's tokens (see the module's grammar).
struct PatternReader<'p, 'a> {
    parser: &'p mut Parser<'a>,
}

impl PatternReader<'_, '_> {
    fn alternation(&mut self) -> Result<PatternSyntax> {
        let mut terms = vec![self.concatenation()?];
        while self.parser.consume_token(&Token::Pipe) {
            terms.push(self.concatenation()?);
        }
        Ok(if terms.len() == 1 { terms.remove(0) } else { PatternSyntax::Alternation(terms) })
    }

    fn concatenation(&mut self) -> Result<PatternSyntax> {
        let mut factors = Vec::new();
        loop {
            let next = self.parser.peek_token();
            let ends = matches!(next.token, Token::RParen | Token::Pipe | Token::Comma | Token::EOF)
                || (next.token == Token::Minus && self.parser.peek_nth_token(1).token == Token::RBrace);
            if ends {
                break;
            }
            factors.push(self.factor()?);
        }
        match factors.len() {
            0 => {
                let next = self.parser.peek_token();
                Err(PlanError::syntax(format!(
                    "expected a pattern variable, (, ^, $, {{- or PERMUTE, found {}; the empty pattern is written ()",
                    next.token
                ))
                .at(next.span))
            }
            1 => Ok(factors.remove(0)),
            _ => Ok(PatternSyntax::Concat(factors)),
        }
    }

    fn factor(&mut self) -> Result<PatternSyntax> {
        let primary = self.primary()?;
        let start = self.parser.peek_token();
        let Some((min, max)) = self.quantifier()? else {
            return Ok(primary);
        };
        let greedy = !self.consume_question_mark();
        let end = self.parser.peek_token();
        if let Some(max) = max
            && min > max
        {
            return Err(PlanError::invalid(format!("the quantifier {{{min},{max}}} has a minimum above its maximum"))
                .at(start.span));
        }
        if self.quantifier_follows() {
            return Err(PlanError::syntax("a quantifier cannot follow a quantifier: add parentheses, as in (A*)+")
                .at(self.parser.peek_token().span));
        }
        let span = Span::new(start.span.start, end.span.start);
        Ok(PatternSyntax::Quantified { pattern: Box::new(primary), min, max, greedy, span })
    }

    fn quantifier_follows(&mut self) -> bool {
        matches!(self.parser.peek_token().token, Token::Mul | Token::Plus | Token::LBrace)
            && !(self.parser.peek_token().token == Token::LBrace && self.parser.peek_nth_token(1).token == Token::Minus)
            || self.is_question_mark()
    }

    fn is_question_mark(&mut self) -> bool {
        matches!(&self.parser.peek_token().token, Token::Placeholder(mark) if mark == "?")
    }

    fn consume_question_mark(&mut self) -> bool {
        let is = self.is_question_mark();
        if is {
            self.parser.next_token();
        }
        is
    }

    /// `* + ? {n} {n,} {,m} {n,m}` as (min, max).
    fn quantifier(&mut self) -> Result<Option<(u32, Option<u32>)>> {
        let token = self.parser.peek_token();
        let bounds = match &token.token {
            Token::Mul => (0, None),
            Token::Plus => (1, None),
            Token::Placeholder(mark) if mark == "?" => (0, Some(1)),
            Token::LBrace if self.parser.peek_nth_token(1).token != Token::Minus => {
                self.parser.next_token();
                let min = self.number()?;
                let bounds = if self.parser.consume_token(&Token::Comma) {
                    (min.unwrap_or(0), self.number()?)
                } else {
                    match min {
                        Some(n) => (n, Some(n)),
                        None => {
                            let found = self.parser.peek_token();
                            return Err(PlanError::syntax(format!(
                                "expected a number in {{n,m}}, found {}",
                                found.token
                            ))
                            .at(found.span));
                        }
                    }
                };
                self.parser.expect_token(&Token::RBrace)?;
                return Ok(Some(bounds));
            }
            _ => return Ok(None),
        };
        self.parser.next_token();
        Ok(Some(bounds))
    }

    fn number(&mut self) -> Result<Option<u32>> {
        let token = self.parser.peek_token();
        let Token::Number(text, _) = &token.token else {
            return Ok(None);
        };
        let value = text.parse::<u32>().map_err(|_| {
            PlanError::invalid(format!("a quantifier bound must be a whole number up to {}, not {text}", u32::MAX))
                .at(token.span)
        })?;
        self.parser.next_token();
        Ok(Some(value))
    }

    fn primary(&mut self) -> Result<PatternSyntax> {
        let token = self.parser.next_token();
        match &token.token {
            Token::Caret => Ok(PatternSyntax::Start),
            Token::Placeholder(mark) if mark == "$" => Ok(PatternSyntax::End),
            // `$A` and `$A$` read as placeholders and `A$` as one word:
            // split them at each `$`.
            Token::Placeholder(mark) if mark.starts_with('$') => Ok(split_at_ends(mark, token.span)),
            Token::Word(word) if word.quote_style.is_none() && word.value.contains('$') => {
                Ok(split_at_ends(&word.value, token.span))
            }

            Token::LParen => {
                if self.parser.consume_token(&Token::RParen) {
                    return Ok(PatternSyntax::Empty);
                }
                let inner = self.alternation()?;
                self.parser.expect_token(&Token::RParen)?;
                Ok(inner)
            }
            Token::LBrace if self.parser.peek_token().token == Token::Minus => {
                self.parser.next_token();
                let inner = self.alternation()?;
                self.parser.expect_token(&Token::Minus)?;
                self.parser.expect_token(&Token::RBrace)?;
                Ok(PatternSyntax::Exclude(Box::new(inner)))
            }
            Token::Word(word)
                if word.quote_style.is_none()
                    && word.value.eq_ignore_ascii_case("PERMUTE")
                    && self.parser.peek_token().token == Token::LParen =>
            {
                self.parser.next_token();
                let mut elements = vec![self.alternation()?];
                while self.parser.consume_token(&Token::Comma) {
                    elements.push(self.alternation()?);
                }
                self.parser.expect_token(&Token::RParen)?;
                Ok(PatternSyntax::Permute(elements))
            }
            Token::Word(word) => Ok(PatternSyntax::Variable(Ident {
                value: word.value.clone(),
                quote_style: word.quote_style,
                span: token.span,
            })),
            other => Err(PlanError::syntax(format!(
                "expected a pattern variable, (, ^, $, {{- or PERMUTE in PATTERN, found {other}"
            ))
            .at(token.span)),
        }
    }
}

/// `A$`, `$A`, `$A$`: variables and `$` ends, as one token.
fn split_at_ends(text: &str, span: Span) -> PatternSyntax {
    let mut parts = Vec::new();
    for (index, piece) in text.split('$').enumerate() {
        if index > 0 {
            parts.push(PatternSyntax::End);
        }
        if !piece.is_empty() {
            parts.push(PatternSyntax::Variable(Ident { value: piece.to_string(), quote_style: None, span }));
        }
    }
    if parts.len() == 1 { parts.remove(0) } else { PatternSyntax::Concat(parts) }
}

impl std::fmt::Display for PatternSyntax {
    /// The pattern in SQL syntax, fully parenthesised where it nests.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |f: &mut std::fmt::Formatter<'_>, items: &[PatternSyntax], separator: &str| {
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    f.write_str(separator)?;
                }
                match item {
                    PatternSyntax::Alternation(_) | PatternSyntax::Concat(_) if separator == " " => {
                        write!(f, "({item})")?
                    }
                    _ => write!(f, "{item}")?,
                }
            }
            Ok(())
        };
        match self {
            PatternSyntax::Variable(ident) => f.write_str(&variable_name(ident)),
            PatternSyntax::Concat(items) => list(f, items, " "),
            PatternSyntax::Alternation(items) => list(f, items, " | "),
            PatternSyntax::Quantified { pattern, min, max, greedy, .. } => {
                match pattern.as_ref() {
                    PatternSyntax::Variable(_) | PatternSyntax::Permute(_) | PatternSyntax::Exclude(_) => {
                        write!(f, "{pattern}")?
                    }
                    PatternSyntax::Empty => f.write_str("()")?,
                    _ => write!(f, "({pattern})")?,
                }
                match (min, max) {
                    (0, None) => f.write_str("*")?,
                    (1, None) => f.write_str("+")?,
                    (0, Some(1)) => f.write_str("?")?,
                    (n, None) => write!(f, "{{{n},}}")?,
                    (n, Some(m)) if n == m => write!(f, "{{{n}}}")?,
                    (0, Some(m)) => write!(f, "{{,{m}}}")?,
                    (n, Some(m)) => write!(f, "{{{n},{m}}}")?,
                }
                if !greedy {
                    f.write_str("?")?;
                }
                Ok(())
            }
            PatternSyntax::Permute(items) => {
                f.write_str("PERMUTE(")?;
                list(f, items, ", ")?;
                f.write_str(")")
            }
            PatternSyntax::Exclude(inner) => write!(f, "{{- {inner} -}}"),
            PatternSyntax::Start => f.write_str("^"),
            PatternSyntax::End => f.write_str("$"),
            PatternSyntax::Empty => f.write_str("()"),
        }
    }
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::tokenizer::Tokenizer;

    use super::*;

    fn clauses(sql: &str) -> Result<(String, Vec<PatternClause>)> {
        let dialect = SluiceDialect::default();
        let tokens =
            Tokenizer::new(&dialect, sql).tokenize_with_location().map_err(|e| PlanError::syntax(e.to_string()))?;
        let (tokens, clauses) = extract_clauses(tokens)?;
        let text = tokens
            .iter()
            .filter(|token| !matches!(token.token, Token::Whitespace(_)))
            .map(|token| token.token.to_string())
            .collect::<Vec<_>>()
            .join(" ");
        Ok((text, clauses))
    }

    fn pattern(text: &str) -> Result<String> {
        let sql = format!("SELECT * FROM t MATCH_RECOGNIZE (ORDER BY ts PATTERN ({text}) DEFINE A AS x > 0)");
        let (_, clauses) = clauses(&sql)?;
        Ok(clauses[0].pattern.to_string())
    }

    #[test]
    fn the_clause_is_replaced_by_a_stub_sqlparser_parses() {
        let sql = "SELECT * FROM ticks MATCH_RECOGNIZE (
            PARTITION BY symbol ORDER BY ts
            MEASURES FIRST(A.price) AS start_price, FINAL LAST(B.price) AS bottom, RUNNING COUNT(*) AS n
            ONE ROW PER MATCH WITH TIMEOUT ROWS
            AFTER MATCH SKIP TO LAST B
            PATTERN (A B+? C{2,}?)
            WITHIN INTERVAL '5' MINUTE
            SUBSET U = (A, B)
            DEFINE B AS B.price < PREV(B.price), C AS C.price > PREV(C.price)
        ) AS m WHERE m.n > 1";
        let (text, clauses) = clauses(sql).unwrap();
        assert!(
            text.contains(
                "MATCH_RECOGNIZE ( PATTERN ( __match_recognize_0 ) DEFINE __match_recognize_0 AS TRUE ) AS m"
            ),
            "{text}"
        );
        let clause = &clauses[0];
        assert_eq!(clause.partition_by.len(), 1);
        assert_eq!(clause.order_by[0].expr.to_string(), "ts");
        let measures: Vec<String> = clause.measures.iter().map(|m| format!("{} {}", m.expr, m.name)).collect();
        assert_eq!(measures, ["FIRST(A.price) start_price", "__final(LAST(B.price)) bottom", "__running(COUNT(*)) n"]);
        assert_eq!(clause.rows_per_match, RowsPerMatch::One { timeouts: true });
        assert_eq!(clause.skip, SkipTo::Last(Ident::new("B")));
        assert_eq!(clause.pattern.to_string(), "A B+? C{2,}?");
        assert_eq!(clause.within, Some(300_000_000_000));
        assert_eq!(clause.subsets[0].1.len(), 2);
        assert_eq!(clause.define.len(), 2);
        assert_eq!(clause.define[0].1.to_string(), "B.price < PREV(B.price)");
        // The stub parses.
        let dialect = SluiceDialect::default();
        Parser::new(&dialect).try_with_sql(&text).unwrap().parse_statement().unwrap();
    }

    #[test]
    fn every_pattern_form_reads_back() {
        for (written, read) in [
            ("A B C", "A B C"),
            ("A | B C | D", "A | B C | D"),
            ("(A | B)* C", "(A | B)* C"),
            ("A*? B+? C?? D{3}? E{2,}? F{,4}? G{1,5}?", "A*? B+? C?? D{3}? E{2,}? F{,4}? G{1,5}?"),
            ("A* B+ C? D{3} E{2,} F{,4} G{1,5}", "A* B+ C? D{3} E{2,} F{,4} G{1,5}"),
            ("PERMUTE(A, B C, D | E)", "PERMUTE(A, B C, D | E)"),
            ("A {- B+ -} C", "A {- B+ -} C"),
            ("^ A+ $", "^ A+ $"),
            ("A$", "A $"),
            ("$A", "$ A"),
            ("$A$", "$ A $"),
            ("()", "()"),
            ("() | A", "() | A"),
            ("(A+)+ B", "(A+)+ B"),
            ("((A B) | C)", "A B | C"),
            ("(A | B) C", "(A | B) C"),
            ("a b", "A B"),
        ] {
            assert_eq!(pattern(written).unwrap(), read, "{written}");
        }
    }

    #[test]
    fn bad_patterns_are_errors_with_a_position() {
        for (written, message) in [
            ("A{3,2}", "minimum above its maximum"),
            ("A**", "a quantifier cannot follow a quantifier"),
            ("A |", "expected a pattern variable"),
            ("", "the empty pattern is written ()"),
            ("A{99999999999}", "whole number"),
        ] {
            let error = pattern(written).unwrap_err();
            assert!(error.message.contains(message), "{written}: {error}");
            assert_eq!(error.line, Some(1), "{written}: {error}");
            assert!(error.column.is_some_and(|column| column > 40), "{written}: {error}");
        }
    }

    #[test]
    fn a_derived_input_moves_into_the_clause() {
        for (sql, input) in [
            (
                "SELECT * FROM (SELECT * FROM t) MATCH_RECOGNIZE (ORDER BY ts PATTERN (A)) AS m",
                "SELECT * FROM (SELECT * FROM t)",
            ),
            (
                "SELECT * FROM (SELECT a FROM t) AS s MATCH_RECOGNIZE (ORDER BY ts PATTERN (A))",
                "SELECT * FROM (SELECT a FROM t) AS s",
            ),
            (
                "SELECT * FROM (VALUES (1, 2)) t(id, value) MATCH_RECOGNIZE (ORDER BY id PATTERN (A))",
                "SELECT * FROM (VALUES (1, 2)) t(id, value)",
            ),
        ] {
            let (text, clauses) = clauses(sql).unwrap();
            assert_eq!(clauses[0].input.as_deref(), Some(input), "{sql}");
            assert!(text.contains("FROM __match_recognize_input MATCH_RECOGNIZE ("), "{text}");
        }
        let (_, clauses) = clauses("SELECT * FROM ticker t MATCH_RECOGNIZE (ORDER BY ts PATTERN (A))").unwrap();
        assert_eq!(clauses[0].input, None);
    }

    #[test]
    fn other_clause_errors() {
        let error = clauses("SELECT * FROM t MATCH_RECOGNIZE (ORDER BY ts DEFINE A AS true)").unwrap_err();
        assert!(error.message.contains("expected PATTERN"), "{error}");
        let error = clauses("SELECT * FROM t MATCH_RECOGNIZE (PATTERN (A) DEFINE A AS true ORDER BY ts)").unwrap_err();
        assert!(error.message.contains("in the order"), "{error}");
        let error = clauses("SELECT * FROM t MATCH_RECOGNIZE (PATTERN (A) WITHIN INTERVAL '999' DAY)").unwrap_err();
        assert!(error.message.contains("365 days"), "{error}");
        assert_eq!(error.column, Some(62), "{error}");
        let error = clauses("SELECT * FROM t MATCH_RECOGNIZE (AFTER MATCH SKIP SOMEWHERE PATTERN (A))").unwrap_err();
        assert!(error.message.contains("after AFTER MATCH SKIP"), "{error}");
        // Not a clause: left alone.
        let (text, found) = clauses("SELECT match_recognize FROM t").unwrap();
        assert!(found.is_empty() && text.contains("match_recognize"));
    }
}
