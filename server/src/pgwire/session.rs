//! One Postgres connection's state (session parameters, Sluice settings,
//! cursors) and the running of its statements, for the simple and the
//! extended query protocols alike.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::sql::sqlparser::ast;
use futures::{Sink, SinkExt, stream};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler, send_execution_response, send_query_response};
use pgwire::api::results::{FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, Type};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use sluice_planner::{Statement, parse_statements};

use super::error::{session_error, to_pg};
use super::pg_catalog;
use super::rows;
use super::statement::{PgStatement, Piece, Target, split};
use super::subscribe::{Cursor, Live};
use crate::engine::{Engine, Settings, StatementResult};
use crate::error::EngineError;

/// What one connection keeps between statements.
#[derive(Default)]
pub struct Session {
    /// Sluice query settings (`SET epoch_interval = '1s'`).
    pub settings: Settings,
    /// Postgres session parameters (`SET DateStyle`, `application_name`).
    pub parameters: BTreeMap<String, String>,
    pub cursors: HashMap<String, Cursor>,
}

/// A connection's session, kept in pgwire's per-connection extensions.
/// A std Mutex: held to read or swap a field, never across an await.
type SessionRef = Arc<Mutex<Session>>;

fn session<C: ClientInfo + ?Sized>(client: &C) -> SessionRef {
    client.session_extensions().get_or_insert_with(|| {
        let mut session = Session { parameters: default_parameters(), ..Session::default() };
        for (name, value) in client.metadata() {
            if !matches!(name.as_str(), "user" | "database") {
                session.parameters.insert(name.to_ascii_lowercase(), value.clone());
            }
        }
        Mutex::new(session)
    })
}

fn lock(session: &SessionRef) -> std::sync::MutexGuard<'_, Session> {
    session.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn default_parameters() -> BTreeMap<String, String> {
    [
        ("server_version", super::SERVER_VERSION),
        ("server_version_num", "160006"),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("datestyle", "ISO, MDY"),
        ("intervalstyle", "postgres"),
        ("timezone", "UTC"),
        ("integer_datetimes", "on"),
        ("standard_conforming_strings", "on"),
        ("transaction_isolation", "read committed"),
        ("default_transaction_isolation", "read committed"),
        ("transaction_read_only", "off"),
        ("search_path", "public"),
        ("application_name", ""),
        ("max_identifier_length", "63"),
        ("is_superuser", "on"),
        ("extra_float_digits", "1"),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value.to_string()))
    .collect()
}

/// What a statement produced, for either protocol to send.
pub enum Outcome {
    /// Rows and their command tag (`SELECT 3`, `SHOW`, `FETCH 2`).
    Rows {
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
        tag: String,
    },
    /// A command tag only.
    Done(Tag),
    /// Rows already written to the client (a subscription or COPY): only
    /// the command tag is left to send.
    Streamed(Tag),
    Begin(Tag),
    Commit(Tag),
}

/// The statement handlers of every connection.
pub struct Service {
    pub engine: Arc<Engine>,
    parser: Arc<Parser>,
}

impl Service {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { parser: Arc::new(Parser { engine: engine.clone() }), engine }
    }

    /// Runs one statement. `sql` is the whole query string (error
    /// positions are into it); `simple` says whether rows written directly
    /// need their row description first.
    async fn execute<C>(
        &self,
        client: &mut C,
        statement: PgStatement,
        sql: &str,
        format: &Format,
        simple: bool,
    ) -> PgWireResult<Outcome>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = session(client);
        let settings = lock(&session).settings.clone();
        let at = |error: EngineError, offset: usize| to_pg(&error, sql, offset);
        match statement {
            PgStatement::Engine(piece) => self.engine_statement(&session, &piece, sql).await,
            PgStatement::Catalog(piece) => {
                let parameters = lock(&session).parameters.clone();
                let (schema, batches) = pg_catalog::run(&self.engine, &parameters, &piece.text)
                    .await
                    .map_err(|error| at(error, piece.offset))?;
                Ok(Outcome::Rows { schema, batches, tag: "SELECT".into() })
            }
            PgStatement::Subscribe(target) => {
                let live = Live::start(&self.engine, &target, &settings)
                    .await
                    .map_err(|error| at(error, target_offset(&target)))?;
                live.stream(client, format, false, simple).await
            }
            PgStatement::Copy(target @ (Target::Subscribe(_) | Target::Running(_))) => {
                let live = Live::start(&self.engine, &target, &settings)
                    .await
                    .map_err(|error| at(error, target_offset(&target)))?;
                live.stream(client, format, true, simple).await
            }
            PgStatement::Copy(Target::Query(piece)) => {
                let (schema, batch) = self.select(&piece, &settings).await.map_err(|error| at(error, piece.offset))?;
                let fields = rows::fields(&schema, &Format::UnifiedText)?;
                super::subscribe::copy_out(client, &fields, &[batch]).await
            }
            PgStatement::Declare { cursor, target } => {
                let opened = if target.is_subscribe() {
                    Cursor::Live(
                        Live::start(&self.engine, &target, &settings)
                            .await
                            .map_err(|error| at(error, target_offset(&target)))?,
                    )
                } else {
                    let Target::Query(piece) = &target else { unreachable!("plain targets are queries") };
                    let (schema, batch) =
                        self.select(piece, &settings).await.map_err(|error| at(error, piece.offset))?;
                    Cursor::Buffered { schema, rows: vec![batch].into() }
                };
                lock(&session).cursors.insert(cursor, opened);
                Ok(Outcome::Done(Tag::new("DECLARE CURSOR")))
            }
            PgStatement::Fetch { cursor, count } => {
                let Some(mut opened) = lock(&session).cursors.remove(&cursor) else {
                    return Err(session_error("34000", format!("cursor \"{cursor}\" does not exist")));
                };
                let fetched = opened.fetch(count).await;
                lock(&session).cursors.insert(cursor, opened);
                let (schema, batch) = fetched?;
                Ok(Outcome::Rows { schema, batches: vec![batch], tag: "FETCH".into() })
            }
            PgStatement::Close { cursor } => {
                let mut session = lock(&session);
                match cursor {
                    Some(cursor) if session.cursors.remove(&cursor).is_none() => {
                        Err(session_error("34000", format!("cursor \"{cursor}\" does not exist")))
                    }
                    Some(_) => Ok(Outcome::Done(Tag::new("CLOSE CURSOR"))),
                    None => {
                        session.cursors.clear();
                        Ok(Outcome::Done(Tag::new("CLOSE CURSOR ALL")))
                    }
                }
            }
            PgStatement::Transaction { tag, begins: true } => Ok(Outcome::Begin(Tag::new(tag))),
            PgStatement::Transaction { tag, begins: false } => {
                // Cursors live until the transaction ends, as on Postgres
                // (without HOLD).
                lock(&session).cursors.clear();
                Ok(Outcome::Commit(Tag::new(tag)))
            }
            PgStatement::SetParameter { name, value } => {
                lock(&session).parameters.insert(name, value);
                Ok(Outcome::Done(Tag::new("SET")))
            }
            PgStatement::Reset { name } => {
                let mut session = lock(&session);
                let defaults = default_parameters();
                match name {
                    Some(name) => match defaults.get(&name) {
                        Some(value) => {
                            session.parameters.insert(name, value.clone());
                        }
                        None => {
                            session.parameters.remove(&name);
                            session.settings.remove(&name);
                        }
                    },
                    None => {
                        session.parameters = defaults;
                        session.settings.clear();
                        session.cursors.clear();
                    }
                }
                Ok(Outcome::Done(Tag::new("RESET")))
            }
            PgStatement::ShowParameter { name } => {
                let session = lock(&session);
                let batch = if name == "all" {
                    let all: Vec<(&String, &String)> =
                        session.parameters.iter().chain(session.settings.iter()).collect();
                    RecordBatch::try_from_iter(vec![
                        ("name", crate::engine::result::strings(all.iter().map(|(name, _)| name))),
                        ("setting", crate::engine::result::strings(all.iter().map(|(_, value)| value))),
                    ])
                } else {
                    let value =
                        session.parameters.get(&name).or_else(|| session.settings.get(&name)).ok_or_else(|| {
                            session_error("42704", format!("unrecognized configuration parameter \"{name}\""))
                        })?;
                    RecordBatch::try_from_iter(vec![(name.as_str(), crate::engine::result::strings([value]))])
                }
                .map_err(|error| PgWireError::ApiError(Box::new(error)))?;
                Ok(Outcome::Rows { schema: batch.schema(), batches: vec![batch], tag: "SHOW".into() })
            }
        }
    }

    /// A statement for the engine: a query runs as a bounded SELECT, the
    /// rest as over HTTP.
    async fn engine_statement(&self, session: &SessionRef, piece: &Piece, sql: &str) -> PgWireResult<Outcome> {
        let at = |error: EngineError| to_pg(&error, sql, piece.offset);
        let statements = parse_statements(&piece.text).map_err(|error| at(error.into()))?;
        let materialized = self.engine.selects_materialized(&statements);
        if !materialized && statements.iter().any(|located| matches!(located.statement, Statement::Query { .. })) {
            if pg_catalog::reads_no_stream(&self.engine, &piece.text) {
                let parameters = lock(session).parameters.clone();
                let (schema, batches) = pg_catalog::run(&self.engine, &parameters, &piece.text).await.map_err(at)?;
                return Ok(Outcome::Rows { schema, batches, tag: "SELECT".into() });
            }
            let settings = lock(session).settings.clone();
            let (schema, batch) = self.select(piece, &settings).await.map_err(at)?;
            return Ok(Outcome::Rows { schema, batches: vec![batch], tag: "SELECT".into() });
        }
        let mut settings = lock(session).settings.clone();
        let results = self.engine.execute(&piece.text, &mut settings).await.map_err(at)?;
        lock(session).settings = settings;
        let Some(result) = results.into_iter().last() else { return Ok(Outcome::Done(Tag::new("EMPTY"))) };
        Ok(match result {
            StatementResult::Status { tag, .. } => Outcome::Done(command_tag(&tag)),
            StatementResult::Rows { schema, batches } => {
                let first_word = piece.text.split_whitespace().next().unwrap_or("SELECT").to_ascii_uppercase();
                Outcome::Rows { schema, batches, tag: first_word }
            }
            // A materialized view or sink: its CREATE's tag.
            StatementResult::Query { .. } if piece.text.trim_start().to_ascii_uppercase().starts_with("CREATE") => {
                let upper = piece.text.trim_start().to_ascii_uppercase();
                let tag = if upper.starts_with("CREATE SINK") { "CREATE SINK" } else { "CREATE MATERIALIZED VIEW" };
                Outcome::Done(Tag::new(tag))
            }
            StatementResult::Query { id, .. } => Outcome::Done(Tag::new(&format!("SELECT {id}"))),
        })
    }

    /// A SELECT as Postgres runs it: to its end, returning its final rows.
    async fn select(&self, piece: &Piece, settings: &Settings) -> Result<(SchemaRef, RecordBatch), EngineError> {
        super::subscribe::select(&self.engine, &piece.text, settings).await
    }
}

/// `INSERT 3` is Postgres's `INSERT 0 3`.
fn command_tag(tag: &str) -> Tag {
    match tag.strip_prefix("INSERT ").and_then(|rows| rows.parse().ok()) {
        Some(rows) => Tag::new("INSERT").with_oid(0).with_rows(rows),
        None => Tag::new(tag),
    }
}

fn target_offset(target: &Target) -> usize {
    match target {
        Target::Query(piece) => piece.offset,
        Target::Subscribe(inner) => target_offset(inner),
        Target::Running(_) => 0,
    }
}

#[async_trait]
impl SimpleQueryHandler for Service {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statements = split(query);
        if statements.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        let mut responses = Vec::new();
        for statement in statements {
            let streams = matches!(statement, PgStatement::Subscribe(_) | PgStatement::Copy(_));
            if streams {
                // Earlier statements' responses go out before the rows.
                for response in responses.drain(..) {
                    send_response(client, response).await?;
                }
            }
            match self.execute(client, statement, query, &Format::UnifiedText, true).await {
                Ok(outcome) => responses.push(response(outcome, &Format::UnifiedText)?),
                Err(PgWireError::UserError(error)) => {
                    // Like Postgres: a failed statement ends the string.
                    responses.push(Response::Error(error));
                    break;
                }
                Err(other) => return Err(other),
            }
        }
        Ok(responses)
    }
}

async fn send_response<C>(client: &mut C, response: Response) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    match response {
        Response::Query(query) => send_query_response(client, query, true).await,
        Response::Execution(tag) | Response::TransactionStart(tag) | Response::TransactionEnd(tag) => {
            send_execution_response(client, tag).await
        }
        Response::Error(error) => Ok(client.feed(PgWireBackendMessage::ErrorResponse((*error).into())).await?),
        _ => Ok(()),
    }
}

/// An outcome as pgwire's response.
fn response(outcome: Outcome, format: &Format) -> PgWireResult<Response> {
    Ok(match outcome {
        Outcome::Rows { schema, batches, tag } => {
            let fields = rows::fields(&schema, format)?;
            let data: Vec<_> = batches.into_iter().flat_map(|batch| rows::data_rows(&fields, batch)).collect();
            let mut response = QueryResponse::new(fields, stream::iter(data));
            response.set_command_tag(&tag);
            Response::Query(response)
        }
        Outcome::Done(tag) | Outcome::Streamed(tag) => Response::Execution(tag),
        Outcome::Begin(tag) => Response::TransactionStart(tag),
        Outcome::Commit(tag) => Response::TransactionEnd(tag),
    })
}

/// A statement of the extended protocol, classified and described when
/// parsed (Describe needs its columns before it runs).
#[derive(Debug, Clone)]
pub struct Prepared {
    sql: String,
    statement: Option<PgStatement>,
    schema: SchemaRef,
    parameters: usize,
}

pub struct Parser {
    engine: Arc<Engine>,
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Prepared;

    async fn parse_sql<C>(&self, client: &C, sql: &str, types: &[Option<Type>]) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let parameters = placeholders(sql);
        // Described with a stand-in value for every parameter (not NULL:
        // `x = NULL` folds the whole query away).
        let numeric = |index: usize| {
            matches!(
                types.get(index).cloned().flatten(),
                Some(Type::INT2 | Type::INT4 | Type::INT8 | Type::FLOAT4 | Type::FLOAT8 | Type::NUMERIC)
            )
        };
        let stand_ins: Vec<Option<String>> =
            (0..parameters).map(|index| Some(if numeric(index) { "1" } else { "" }.to_string())).collect();
        let described = substitute_typed(sql, &stand_ins, &(0..parameters).map(numeric).collect::<Vec<_>>());
        let mut statements = split(&described);
        if statements.len() > 1 {
            return Err(session_error("42601", "cannot insert multiple commands into a prepared statement"));
        }
        let Some(statement) = statements.pop() else {
            return Ok(Some(Prepared {
                sql: sql.into(),
                statement: None,
                schema: Arc::new(Schema::empty()),
                parameters,
            }));
        };
        let session = session(client);
        let schema =
            describe(&self.engine, &session, &statement).await.map_err(|error| to_pg(&error, &described, 0))?;
        Ok(Some(Prepared { sql: sql.into(), statement: Some(statement), schema, parameters }))
    }

    fn get_parameter_types(&self, statement: &Prepared) -> PgWireResult<Vec<Type>> {
        Ok(vec![Type::TEXT; statement.parameters])
    }

    fn get_result_schema(&self, statement: &Prepared, format: Option<&Format>) -> PgWireResult<Vec<FieldInfo>> {
        let format = format.cloned().unwrap_or_default();
        Ok(rows::fields(&statement.schema, &format)?.as_ref().clone())
    }
}

/// The columns a statement will return, without running it (except
/// SHOW/DESCRIBE/EXPLAIN, which are cheap and change nothing).
#[allow(clippy::collapsible_match)]
async fn describe(engine: &Engine, session: &SessionRef, statement: &PgStatement) -> Result<SchemaRef, EngineError> {
    let settings = lock(session).settings.clone();
    let empty = || Arc::new(Schema::empty());
    Ok(match statement {
        PgStatement::Engine(piece) => {
            let statements = parse_statements(&piece.text)?;
            match statements.first().map(|located| &located.statement) {
                Some(Statement::Query { .. }) if engine.selects_materialized(&statements) => {
                    match engine.execute(&piece.text, &mut settings.clone()).await?.pop() {
                        Some(StatementResult::Rows { schema, .. }) => schema,
                        _ => empty(),
                    }
                }
                Some(Statement::Query { .. }) if pg_catalog::reads_no_stream(engine, &piece.text) => {
                    let parameters = lock(session).parameters.clone();
                    pg_catalog::schema(engine, &parameters, &piece.text).await?
                }
                Some(Statement::Query { .. }) => match super::subscribe::SortedSelect::of(&piece.text) {
                    // Sorting keeps the columns.
                    Some(sorted) => engine.describe_query(&sorted.inner, &settings).await?.schema,
                    None => engine.describe_query(&piece.text, &settings).await?.schema,
                },
                Some(
                    Statement::ShowStreams
                    | Statement::ShowTables
                    | Statement::ShowViews
                    | Statement::ShowSinks
                    | Statement::ShowQueries
                    | Statement::Describe { .. }
                    | Statement::Explain { .. },
                ) => match engine.execute(&piece.text, &mut settings.clone()).await?.pop() {
                    Some(StatementResult::Rows { schema, .. }) => schema,
                    _ => empty(),
                },
                _ => empty(),
            }
        }
        PgStatement::Catalog(piece) => {
            let parameters = lock(session).parameters.clone();
            pg_catalog::schema(engine, &parameters, &piece.text).await?
        }
        PgStatement::Subscribe(target) => match target {
            Target::Subscribe(inner) => match inner.as_ref() {
                Target::Query(piece) => {
                    let shape = engine.describe_query(&piece.text, &settings).await?;
                    crate::numbered::subscribe_schema(&shape.schema, !shape.append_only)
                }
                Target::Running(id) => {
                    let query =
                        engine.query(id).ok_or_else(|| EngineError::not_found(format!("query {id:?} not found")))?;
                    crate::numbered::subscribe_schema(&query.schema, !query.append_only)
                }
                Target::Subscribe(_) => empty(),
            },
            _ => empty(),
        },
        PgStatement::Fetch { cursor, .. } => match lock(session).cursors.get(cursor) {
            Some(cursor) => cursor.schema(),
            None => empty(),
        },
        PgStatement::ShowParameter { name } => Arc::new(Schema::new(vec![datafusion::arrow::datatypes::Field::new(
            name,
            datafusion::arrow::datatypes::DataType::Utf8,
            true,
        )])),
        _ => empty(),
    })
}

/// How many `$n` placeholders `sql` has (the highest n).
pub(crate) fn placeholders(sql: &str) -> usize {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize()
        .unwrap_or_default()
        .iter()
        .filter_map(|token| match token {
            Token::Placeholder(name) => name.strip_prefix('$')?.parse::<usize>().ok(),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

/// `sql` with each `$n` replaced by its value as a SQL literal (NULL when
/// absent). Sluice plans each statement once with its values, so binding
/// is substitution (a string literal is typed by where it is used, as
/// Postgres types an unknown-typed parameter).
fn substitute(sql: &str, values: &[Option<String>]) -> String {
    substitute_typed(sql, values, &[])
}

/// As [`substitute`]; values marked numeric, and whole numbers after
/// `LIMIT` or `OFFSET`, are written as numbers.
pub(crate) fn substitute_typed(sql: &str, values: &[Option<String>], numeric: &[bool]) -> String {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::keywords::Keyword;
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize() else { return sql.to_string() };
    if !tokens.iter().any(|token| matches!(token, Token::Placeholder(_))) {
        return sql.to_string();
    }
    let mut previous_word: Option<Keyword> = None;
    let mut text = String::with_capacity(sql.len());
    for token in &tokens {
        match token {
            Token::Placeholder(name) => {
                let index = name.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()).and_then(|n| n.checked_sub(1));
                let value = index.and_then(|index| values.get(index));
                let counted = matches!(previous_word, Some(Keyword::LIMIT | Keyword::OFFSET));
                let is_numeric = index.is_some_and(|index| numeric.get(index) == Some(&true));
                text.push_str(&match value {
                    Some(Some(value))
                        if (counted && value.parse::<u64>().is_ok())
                            || (is_numeric && value.parse::<f64>().is_ok()) =>
                    {
                        value.clone()
                    }
                    Some(Some(value)) => ast::Value::SingleQuotedString(value.clone()).to_string(),
                    _ => "NULL".to_string(),
                });
            }
            other => text.push_str(&other.to_string()),
        }
        match token {
            Token::Whitespace(_) => {}
            Token::Word(word) => previous_word = Some(word.keyword),
            _ => previous_word = None,
        }
    }
    text
}

/// A bound parameter as text (text format as sent; binary decoded by its
/// type).
fn parameter_text(portal: &Portal<Prepared>, index: usize) -> PgWireResult<Option<String>> {
    let Some(Some(bytes)) = portal.parameters.get(index) else { return Ok(None) };
    if !portal.parameter_format.is_binary(index) {
        return Ok(Some(String::from_utf8_lossy(bytes).into_owned()));
    }
    let declared = portal.statement.parameter_types.get(index).cloned().flatten().unwrap_or(Type::TEXT);
    Ok(match declared {
        Type::INT2 => portal.parameter::<i16>(index, &declared)?.map(|value| value.to_string()),
        Type::INT4 => portal.parameter::<i32>(index, &declared)?.map(|value| value.to_string()),
        Type::INT8 => portal.parameter::<i64>(index, &declared)?.map(|value| value.to_string()),
        Type::FLOAT4 => portal.parameter::<f32>(index, &declared)?.map(|value| value.to_string()),
        Type::FLOAT8 => portal.parameter::<f64>(index, &declared)?.map(|value| value.to_string()),
        Type::BOOL => portal.parameter::<bool>(index, &declared)?.map(|value| value.to_string()),
        _ => Some(String::from_utf8_lossy(bytes).into_owned()),
    })
}

#[async_trait]
impl ExtendedQueryHandler for Service {
    type Statement = Prepared;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        self.parser.clone()
    }

    async fn do_query<C>(&self, client: &mut C, portal: &Portal<Prepared>, _max_rows: usize) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let prepared = &portal.statement.statement;
        if prepared.statement.is_none() {
            return Ok(Response::EmptyQuery);
        }
        let values =
            (0..prepared.parameters).map(|index| parameter_text(portal, index)).collect::<PgWireResult<Vec<_>>>()?;
        let sql = substitute(&prepared.sql, &values);
        let Some(statement) = split(&sql).pop() else { return Ok(Response::EmptyQuery) };
        let format = portal.result_column_format.clone();
        let outcome = self.execute(client, statement, &sql, &format, false).await?;
        response(outcome, &format)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_become_literals() {
        assert_eq!(placeholders("SELECT $1, $2 FROM t WHERE a = $1"), 2);
        assert_eq!(
            substitute("SELECT * FROM t WHERE a = $1 AND b = $2", &[Some("it's".into()), None]),
            "SELECT * FROM t WHERE a = 'it''s' AND b = NULL"
        );
        assert_eq!(substitute("SELECT '$1'", &[]), "SELECT '$1'");
    }

    #[test]
    fn insert_tags_are_postgres_tags() {
        let tag: pgwire::messages::response::CommandComplete = command_tag("INSERT 3").into();
        assert_eq!(tag.tag, "INSERT 0 3");
    }
}

#[cfg(test)]
mod substitute_tests {
    #[test]
    fn keeps_the_query() {
        assert_eq!(
            super::substitute("SELECT ip, status FROM wl WHERE status = $1", &[None]),
            "SELECT ip, status FROM wl WHERE status = NULL"
        );
    }

    #[test]
    fn counts_after_limit_and_offset_are_numbers() {
        let values = [Some("5".to_string()), Some("2".to_string()), Some("x".to_string())];
        assert_eq!(
            super::substitute("SELECT a FROM t WHERE b = $1 LIMIT $2 OFFSET $1", &values),
            "SELECT a FROM t WHERE b = '5' LIMIT 2 OFFSET 5"
        );
        assert_eq!(super::substitute_typed("SELECT $1, $3", &values, &[true, false, true]), "SELECT 5, 'x'");
    }
}
