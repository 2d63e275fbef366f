//! Live subscriptions over pgwire (`SUBSCRIBE`, `COPY (SUBSCRIBE ...) TO
//! STDOUT`, cursors over them) and SELECTs run to their end.
//!
//! A query started for a subscription is the subscriber's own: it is
//! subscribed before its sources run (so it is seen from seq 0), kept out
//! of the stored catalog, and dropped when the subscription ends: its
//! statement completes, is cancelled, or its connection goes. Attaching
//! to a running query (`SUBSCRIBE q7`) leaves that query alone.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::sql::sqlparser::ast;
use futures::{Sink, SinkExt};
use pgwire::api::ClientInfo;
use pgwire::api::portal::Format;
use pgwire::api::results::{FieldInfo, Tag};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::{CopyDone, CopyOutResponse};
use pgwire::messages::data::RowDescription;
use sluice_planner::{Statement, parse_statements};
use sluice_runtime::{OutputEvent, StreamBatch};
use tokio::sync::mpsc;

use super::error::session_error;
use super::rows;
use super::session::Outcome;
use super::statement::Target;
use crate::engine::{Engine, RunningQuery, Settings};
use crate::error::{EngineError, ErrorCode};

/// Drops a query started for one subscriber when the subscriber is done.
struct Owned {
    engine: Arc<Engine>,
    id: Option<String>,
}

impl Drop for Owned {
    fn drop(&mut self) {
        if let Some(id) = &self.id {
            self.engine.drop_query(id);
        }
    }
}

/// A subscription: the query, its events from seq 0, and whether it owns
/// the query.
pub struct Live {
    query: Arc<RunningQuery>,
    events: mpsc::Receiver<OutputEvent>,
    schema: SchemaRef,
    updating: bool,
    /// Rows received but not fetched yet (cursors).
    pending: VecDeque<RecordBatch>,
    ended: bool,
    /// The first row's seq: above 0 when older rows were no longer retained.
    first_available: u64,
    _owned: Owned,
}

impl Live {
    /// Starts the subscription `target` names.
    pub async fn start(engine: &Arc<Engine>, target: &Target, settings: &Settings) -> Result<Live, EngineError> {
        let (subscription, owned) = match target {
            Target::Subscribe(inner) => match inner.as_ref() {
                Target::Query(piece) => {
                    let subscription = engine.subscribe(&piece.text, settings).await?;
                    let id = subscription.query.id.clone();
                    (subscription, Some(id))
                }
                Target::Running(id) => (engine.attach(id)?, None),
                Target::Subscribe(_) => return Err(EngineError::invalid("SUBSCRIBE of a SUBSCRIBE")),
            },
            Target::Running(id) => (engine.attach(id)?, None),
            Target::Query(_) => return Err(EngineError::internal("a plain query is not a subscription")),
        };
        let updating = !subscription.query.append_only;
        let first_available = subscription.first_available;
        Ok(Live {
            first_available,
            schema: crate::numbered::subscribe_schema(&subscription.query.schema, updating),
            query: subscription.query,
            events: subscription.events,
            updating,
            pending: VecDeque::new(),
            ended: false,
            _owned: Owned { engine: engine.clone(), id: owned },
        })
    }

    /// Writes every row to the client as it comes, as data rows or COPY
    /// lines, until the query ends (bounded input) or the client cancels
    /// (pgwire then drops this future: the subscription is dropped with it).
    pub async fn stream<C>(mut self, client: &mut C, format: &Format, copy: bool, simple: bool) -> PgWireResult<Outcome>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let format = if copy { Format::UnifiedText } else { format.clone() };
        let fields = rows::fields(&self.schema, &format)?;
        if copy {
            let columns = fields.len();
            client
                .send(PgWireBackendMessage::CopyOutResponse(CopyOutResponse::new(0, columns as i16, vec![0; columns])))
                .await?;
        } else if simple {
            let description = RowDescription::new(fields.iter().map(Into::into).collect());
            client.send(PgWireBackendMessage::RowDescription(description)).await?;
        }
        if self.first_available > 0 {
            // Never a silent jump: say which rows this subscriber misses.
            let message = format!(
                "rows 0 to {} of {} are no longer retained; this subscription starts at seq {}",
                self.first_available - 1,
                self.query.id,
                self.first_available
            );
            let notice = ErrorInfo::new("NOTICE".into(), "01000".into(), message);
            client.feed(PgWireBackendMessage::NoticeResponse(notice.into())).await?;
        }
        let mut sent = 0usize;
        while let Some(batch) = self.next_batch().await? {
            sent += batch.num_rows();
            if copy {
                for line in rows::copy_lines(&fields, &batch)? {
                    client.feed(PgWireBackendMessage::CopyData(line)).await?;
                }
            } else {
                for row in rows::data_rows(&fields, batch) {
                    client.feed(PgWireBackendMessage::DataRow(row?)).await?;
                }
            }
            // Each batch reaches the client at once: a live query's rows
            // must not wait in a buffer.
            client.flush().await?;
        }
        if copy {
            client.feed(PgWireBackendMessage::CopyDone(CopyDone::new())).await?;
            return Ok(Outcome::Streamed(Tag::new("COPY").with_rows(sent)));
        }
        Ok(Outcome::Streamed(Tag::new("SUBSCRIBE").with_rows(sent)))
    }

    /// The next rows (with their `seq` and `op` columns); `None` once the
    /// query ended.
    async fn next_batch(&mut self) -> PgWireResult<Option<RecordBatch>> {
        if let Some(batch) = self.pending.pop_front() {
            return Ok(Some(batch));
        }
        while !self.ended {
            let event = self.events.recv().await;
            if let Some(batch) = self.on_event(event)? {
                return Ok(Some(batch));
            }
        }
        Ok(None)
    }

    fn on_event(&mut self, event: Option<OutputEvent>) -> PgWireResult<Option<RecordBatch>> {
        match event {
            Some(OutputEvent::Rows { seq, batch, .. }) => {
                let numbered = crate::numbered::subscribe_batch(&self.schema, seq, &batch, self.updating)
                    .map_err(|error| PgWireError::ApiError(Box::new(error)))?;
                Ok(Some(numbered))
            }
            Some(OutputEvent::Snapshot { next_seq, rows }) => {
                // The current result counts as the rows before `next_seq`.
                let seq = next_seq.saturating_sub(rows.num_rows() as u64);
                let numbered =
                    crate::numbered::subscribe_batch(&self.schema, seq, &StreamBatch::inserts(rows), self.updating)
                        .map_err(|error| PgWireError::ApiError(Box::new(error)))?;
                Ok(Some(numbered))
            }
            Some(OutputEvent::Progress { .. }) => Ok(None),
            Some(OutputEvent::End) => {
                self.ended = true;
                Ok(None)
            }
            Some(OutputEvent::Failed { message }) => {
                self.ended = true;
                Err(session_error("XX000", format!("query {} failed: {message}", self.query.id)))
            }
            Some(OutputEvent::Shutdown) => {
                self.ended = true;
                Err(shutting_down())
            }
            None => {
                self.ended = true;
                Err(lagged(&self.query))
            }
        }
    }

    /// Up to `count` rows (all with `None`): waits for the first one, then
    /// takes what has arrived without waiting, as Materialize's FETCH does.
    pub async fn fetch(&mut self, count: Option<usize>) -> PgWireResult<RecordBatch> {
        let mut batches = Vec::new();
        let mut rows = 0;
        let wanted = count.unwrap_or(usize::MAX);
        if wanted > 0
            && let Some(batch) = self.next_batch().await?
        {
            rows += batch.num_rows();
            batches.push(batch);
        }
        loop {
            if rows >= wanted {
                break;
            }
            if let Some(batch) = self.pending.pop_front() {
                rows += batch.num_rows();
                batches.push(batch);
                continue;
            }
            if self.ended {
                break;
            }
            match self.events.try_recv() {
                Ok(event) => {
                    if let Some(batch) = self.on_event(Some(event))? {
                        rows += batch.num_rows();
                        batches.push(batch);
                    }
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    self.on_event(None)?;
                }
            }
        }
        let all = concat_batches(&self.schema, &batches).map_err(|error| PgWireError::ApiError(Box::new(error)))?;
        if all.num_rows() > wanted {
            self.pending.push_front(all.slice(wanted, all.num_rows() - wanted));
            return Ok(all.slice(0, wanted));
        }
        Ok(all)
    }
}

fn lagged(query: &RunningQuery) -> PgWireError {
    session_error(
        "53400",
        format!(
            "subscriber too slow for query {}: it fell more than the output queue behind and was cut off",
            query.id
        ),
    )
}

/// An open cursor.
pub enum Cursor {
    Live(Live),
    /// A plain query's final rows.
    Buffered {
        schema: SchemaRef,
        rows: VecDeque<RecordBatch>,
    },
}

impl Cursor {
    pub fn schema(&self) -> SchemaRef {
        match self {
            Cursor::Live(live) => live.schema.clone(),
            Cursor::Buffered { schema, .. } => schema.clone(),
        }
    }

    pub async fn fetch(&mut self, count: Option<usize>) -> PgWireResult<(SchemaRef, RecordBatch)> {
        match self {
            Cursor::Live(live) => Ok((live.schema.clone(), live.fetch(count).await?)),
            Cursor::Buffered { schema, rows } => {
                let all: Vec<RecordBatch> = rows.drain(..).collect();
                let all = concat_batches(schema, &all).map_err(|error| PgWireError::ApiError(Box::new(error)))?;
                let wanted = count.unwrap_or(usize::MAX).min(all.num_rows());
                if wanted < all.num_rows() {
                    rows.push_back(all.slice(wanted, all.num_rows() - wanted));
                }
                Ok((schema.clone(), all.slice(0, wanted)))
            }
        }
    }
}

/// Writes `batches` as `COPY ... TO STDOUT` text.
pub async fn copy_out<C>(client: &mut C, fields: &Arc<Vec<FieldInfo>>, batches: &[RecordBatch]) -> PgWireResult<Outcome>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let columns = fields.len();
    client
        .send(PgWireBackendMessage::CopyOutResponse(CopyOutResponse::new(0, columns as i16, vec![0; columns])))
        .await?;
    let mut sent = 0;
    for batch in batches {
        for line in rows::copy_lines(fields, batch)? {
            client.feed(PgWireBackendMessage::CopyData(line)).await?;
        }
        sent += batch.num_rows();
    }
    client.feed(PgWireBackendMessage::CopyDone(CopyDone::new())).await?;
    Ok(Outcome::Streamed(Tag::new("COPY").with_rows(sent)))
}

/// Postgres' admin shutdown: "terminating connection due to administrator
/// command".
fn shutting_down() -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".into(),
        "57P01".into(),
        "terminating connection: the Sluice server is shutting down".into(),
    )))
}

/// A SELECT run as Postgres runs it: to its end, returning its final rows
/// (a changelog consolidated). Over unbounded input it needs a LIMIT on an
/// append-only result; otherwise it would never finish.
///
/// A top-level `ORDER BY` (with its `LIMIT`/`OFFSET`) sorts the final rows,
/// as a batch query would: the query runs without it (a stream has no
/// order to give), then DataFusion sorts what it returned.
pub async fn select(
    engine: &Arc<Engine>,
    sql: &str,
    settings: &Settings,
) -> Result<(SchemaRef, RecordBatch), EngineError> {
    if let Some(sorted) = SortedSelect::of(sql)
        && engine.describe_query(&sorted.inner, settings).await.is_ok_and(|shape| shape.bounded)
    {
        let (schema, batch) = Box::pin(select(engine, &sorted.inner, settings)).await?;
        return sorted.sort(schema, batch).await;
    }
    let shape = engine.describe_query(sql, settings).await?;
    let limit = limit_of(sql);
    if !shape.bounded && (limit.is_none() || !shape.append_only) {
        let why =
            if limit.is_some() { "its result updates, so it never settles" } else { "it reads an unbounded stream" };
        return Err(EngineError::new(
            ErrorCode::Unsupported,
            format!(
                "this SELECT would never finish: {why}. Use SUBSCRIBE ({sql}) (or COPY (SUBSCRIBE ({sql})) TO STDOUT in psql) to follow it{}",
                if shape.append_only { ", or add a LIMIT" } else { "" }
            ),
        ));
    }
    let subscription = engine.subscribe(sql, settings).await?;
    let _owned = Owned { engine: engine.clone(), id: Some(subscription.query.id.clone()) };
    let mut events = subscription.events;
    let mut batches: Vec<StreamBatch> = Vec::new();
    let mut rows = 0usize;
    loop {
        match events.recv().await {
            Some(OutputEvent::Rows { batch, .. }) => {
                rows += batch.num_rows();
                batches.push(batch);
                if limit.is_some_and(|limit| rows >= limit) {
                    break;
                }
            }
            Some(OutputEvent::Snapshot { rows: current, .. }) => {
                rows += current.num_rows();
                batches.push(StreamBatch::inserts(current));
            }
            Some(OutputEvent::Progress { .. }) => {}
            Some(OutputEvent::End) => break,
            Some(OutputEvent::Failed { message }) => return Err(EngineError::invalid(message)),
            Some(OutputEvent::Shutdown) => {
                return Err(EngineError::new(ErrorCode::ShuttingDown, "the server is shutting down"));
            }
            None => {
                return Err(EngineError::new(
                    ErrorCode::External,
                    format!("the result of {} came faster than this connection read it", subscription.query.id),
                ));
            }
        }
    }
    let schema = subscription.query.schema.clone();
    let mut batch = rows::consolidate(&schema, &batches).map_err(|error| EngineError::internal(error.to_string()))?;
    if let Some(limit) = limit
        && batch.num_rows() > limit
    {
        batch = batch.slice(0, limit);
    }
    Ok((schema, batch))
}

/// A SELECT with a top-level ORDER BY, split into the query to run and the
/// sort (and LIMIT/OFFSET) to apply to its final rows.
pub struct SortedSelect {
    /// The query without its ORDER BY, LIMIT and OFFSET.
    pub inner: String,
    /// `ORDER BY ... [LIMIT n] [OFFSET m]`.
    sort: String,
}

impl SortedSelect {
    /// `None` when `sql` is not one SELECT with a top-level ORDER BY (or
    /// holds MATCH_RECOGNIZE or EMIT, which the split would not keep).
    pub fn of(sql: &str) -> Option<SortedSelect> {
        let statements = parse_statements(sql).ok()?;
        let [located] = statements.as_slice() else { return None };
        let Statement::Query { query, emit: None, patterns } = &located.statement else { return None };
        let order_by = query.order_by.as_ref()?;
        if !patterns.is_empty() || query.fetch.is_some() {
            return None;
        }
        let mut inner = query.as_ref().clone();
        inner.order_by = None;
        inner.limit_clause = None;
        let limit = query.limit_clause.as_ref().map_or_else(String::new, |limit| limit.to_string());
        Some(SortedSelect { inner: inner.to_string(), sort: format!("{order_by}{limit}") })
    }

    /// Sorts `batch` (the result of [`inner`](SortedSelect::inner)).
    async fn sort(&self, schema: SchemaRef, batch: RecordBatch) -> Result<(SchemaRef, RecordBatch), EngineError> {
        let context = datafusion::prelude::SessionContext::new();
        let table = datafusion::datasource::MemTable::try_new(schema.clone(), vec![vec![batch]])
            .map_err(|error| EngineError::internal(error.to_string()))?;
        context
            .register_table("sluice_result", Arc::new(table))
            .map_err(|error| EngineError::internal(error.to_string()))?;
        let sorted = async {
            let frame = context.sql(&format!("SELECT * FROM sluice_result {}", self.sort)).await?;
            frame.collect().await
        };
        let batches = sorted.await.map_err(|error| {
            EngineError::invalid(format!(
                "{} sorts the SELECT's result rows, so it may name only result columns (or their positions): {}",
                self.sort.trim(),
                sluice_planner::PlanError::from(error).message
            ))
        })?;
        let batch = concat_batches(&schema, &batches).map_err(|error| EngineError::internal(error.to_string()))?;
        Ok((schema, batch))
    }
}

/// The LIMIT of a query, when it is a number.
fn limit_of(sql: &str) -> Option<usize> {
    let statements = parse_statements(sql).ok()?;
    let Statement::Query { query, .. } = &statements.first()?.statement else { return None };
    match &query.limit_clause {
        Some(ast::LimitClause::LimitOffset { limit: Some(ast::Expr::Value(value)), .. }) => match &value.value {
            ast::Value::Number(number, _) => number.parse().ok(),
            _ => None,
        },
        _ => None,
    }
}
