//! Named queries: views, materialized views and sinks.
//!
//! - A **view** is its `CREATE VIEW` text in the catalog; readers plan its
//!   query into their own pipelines (`sluice_planner::views`).
//! - A **materialized view** is a query that runs once under its name and
//!   keeps its current result (checkpointed with it): `SELECT` over
//!   materialized views only is answered from those results at once, and a
//!   subscriber gets the result as a snapshot then every change. Other
//!   continuous queries that read it plan its query into their own
//!   pipelines, as for a view.
//! - A **sink** is a query whose results are also written to files (and,
//!   next, Kafka), exactly once with its checkpoints
//!   (`sluice_runtime::sink`).
//!
//! Materialized views and sinks are queries (`qN`, listed by SHOW QUERIES,
//! recovered after a restart like any other): their `CREATE` text is what
//! the catalog keeps.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::datasource::MemTable;
use sluice_planner::PlanError;
use sluice_planner::statement::{CreateSink, CreateView, Located, NamedKind, QueryAst};
use sluice_planner::views::read_names;
use sluice_runtime::sink::{FileFormat, FileSinkSpec, KafkaSinkSpec, SinkEnvelope, SinkSpec};

use super::Engine;
use super::queries::RunningQuery;
use super::result::{StatementResult, counts, optional_strings, strings};
use crate::catalog::ViewEntry;
use crate::error::EngineError;
use crate::settings::{Settings, parse_duration};

/// Without a `rollover`, a file sink's file rolls over after this long
/// (and at every checkpoint).
const DEFAULT_ROLLOVER: std::time::Duration = std::time::Duration::from_secs(60);

/// What a named query is.
#[derive(Debug, Clone)]
pub struct Named {
    pub kind: NamedKind,
    pub name: String,
    pub sink: Option<SinkSpec>,
}

/// What a query launched for a statement becomes.
#[derive(Debug, Clone, Default)]
pub(super) struct Target {
    pub named: Option<Named>,
}

impl Engine {
    /// Whether `name` is taken by a stream, table, view, materialized view
    /// or sink.
    fn name_taken(&self, name: &str) -> bool {
        self.catalog_read().names_anything(name) || self.named_query(name).is_some()
    }

    /// The running materialized view or sink called `name`.
    pub fn named_query(&self, name: &str) -> Option<Arc<RunningQuery>> {
        self.queries_read().values().find(|query| query.named.as_ref().is_some_and(|named| named.name == name)).cloned()
    }

    fn already_exists(kind: &str, name: &str, location: sluice_planner::statement::SqlLocation) -> EngineError {
        EngineError::from(
            PlanError::invalid(format!("{name:?} already exists; {kind} names must be new")).at_location(location),
        )
    }

    /// `CREATE VIEW` and `CREATE MATERIALIZED VIEW`.
    pub(super) async fn create_view(
        &self,
        sql: &str,
        located: Located,
        view: CreateView,
        settings: &mut Settings,
    ) -> Result<StatementResult, EngineError> {
        let tag = if view.materialized { "CREATE MATERIALIZED VIEW" } else { "CREATE VIEW" };
        if self.name_taken(&view.name) {
            if view.if_not_exists {
                return Ok(StatementResult::status(tag, view.name));
            }
            return Err(Self::already_exists("view", &view.name, view.name_location));
        }
        if read_names(&view.query).contains(&view.name) {
            return Err(EngineError::from(PlanError::invalid(format!("view {} reads itself", view.name)).near_name(
                sql,
                &view.name,
                {
                    // After the name being defined: where it is read.
                    sluice_planner::statement::SqlLocation {
                        line: view.name_location.line,
                        column: view.name_location.column + view.name.len() as u64,
                    }
                },
            )));
        }
        if view.materialized {
            let target = Target {
                named: Some(Named { kind: NamedKind::MaterializedView, name: view.name.clone(), sink: None }),
            };
            let subscription = self.launch_target(sql, located.clone(), settings, None, false, &target).await?;
            self.catalog_write().insert_view(
                view.name.clone(),
                ViewEntry { ddl: located.text, query: super::queries::query_number(&subscription.query.id) },
            );
            self.persist()?;
            return Ok(StatementResult::Query {
                id: subscription.query.id.clone(),
                schema: subscription.query.schema.clone(),
                warnings: subscription.query.warnings.clone(),
            });
        }
        // Planned once now, so that a view that cannot run is refused
        // when it is created.
        let query_settings = self.query_settings(settings)?;
        self.plan(sql, &view.query, &view.patterns, located.start, &query_settings, view.emit).await?;
        self.catalog_write().insert_view(view.name.clone(), ViewEntry { ddl: located.text, query: None });
        self.persist()?;
        Ok(StatementResult::status(tag, view.name))
    }

    /// `CREATE SINK name INTO kind (options) AS query`.
    pub(super) async fn create_sink(
        &self,
        sql: &str,
        located: Located,
        sink: CreateSink,
        settings: &mut Settings,
    ) -> Result<StatementResult, EngineError> {
        if self.name_taken(&sink.name) {
            if sink.if_not_exists {
                return Ok(StatementResult::status("CREATE SINK", sink.name));
            }
            return Err(Self::already_exists("sink", &sink.name, sink.name_location));
        }
        let spec = sink_spec(&sink)?;
        let target = Target { named: Some(Named { kind: NamedKind::Sink, name: sink.name.clone(), sink: Some(spec) }) };
        let subscription = self.launch_target(sql, located, settings, None, false, &target).await?;
        self.persist()?;
        Ok(StatementResult::Query {
            id: subscription.query.id.clone(),
            schema: subscription.query.schema.clone(),
            warnings: subscription.query.warnings.clone(),
        })
    }

    /// `DROP VIEW`, `DROP MATERIALIZED VIEW`, `DROP SINK`.
    pub(super) fn drop_named(
        &self,
        sql: &str,
        located: &Located,
        kind: NamedKind,
        name: String,
        if_exists: bool,
    ) -> Result<StatementResult, EngineError> {
        let tag = format!("DROP {}", kind.describe().to_uppercase());
        let not_found = || {
            EngineError::from(PlanError::unknown(format!("{} {name:?} not found", kind.describe())).near_name(
                sql,
                &name,
                located.start,
            ))
        };
        let found = match kind {
            NamedKind::View => self.catalog_read().view_entry(&name).is_some_and(|entry| entry.query.is_none()),
            _ => self
                .named_query(&name)
                .is_some_and(|query| query.named.as_ref().is_some_and(|named| named.kind == kind)),
        };
        if !found {
            return if if_exists { Ok(StatementResult::status(tag, name)) } else { Err(not_found()) };
        }
        if let Some(reader) = self.readers_of(&name).into_iter().next() {
            return Err(EngineError::from(
                PlanError::invalid(format!("{reader} reads {name}; drop it first")).near_name(
                    sql,
                    &name,
                    located.start,
                ),
            ));
        }
        self.catalog_write().remove_view(&name);
        if let Some(query) = self.named_query(&name) {
            self.drop_query(&query.id);
        }
        self.persist()?;
        Ok(StatementResult::status(tag, name))
    }

    /// The views, materialized views and sinks whose query reads `name`
    /// (as `view v`, `sink s`, ...).
    pub(super) fn readers_of(&self, name: &str) -> Vec<String> {
        let mut readers = Vec::new();
        for (view, entry) in self.catalog_read().views() {
            if entry.query.is_none()
                && view != name
                && sluice_planner::views::view_query(&entry.ddl)
                    .is_ok_and(|(query, _)| read_names(&query).iter().any(|read| read == name))
            {
                readers.push(format!("view {view}"));
            }
        }
        for query in self.queries() {
            // Finished queries hold nothing back (one that cannot plan again
            // after a restart is dropped with an error in the log).
            let running = query.handle.status() == sluice_runtime::QueryStatus::Running;
            if query.transient || !running || !query.reads.iter().any(|read| read == name) {
                continue;
            }
            match &query.named {
                Some(named) if named.name == name => {}
                Some(named) => readers.push(format!("{} {}", named.kind.describe(), named.name)),
                None => readers.push(format!("query {}", query.id)),
            }
        }
        readers
    }

    /// `SHOW VIEWS`: views and materialized views.
    pub(super) fn show_views(&self) -> Result<StatementResult, EngineError> {
        let views: Vec<(String, ViewEntry)> =
            self.catalog_read().views().map(|(name, entry)| (name.clone(), entry.clone())).collect();
        let queries: Vec<Option<Arc<RunningQuery>>> =
            views.iter().map(|(name, entry)| entry.query.and_then(|_| self.named_query(name))).collect();
        StatementResult::rows(vec![
            ("name", strings(views.iter().map(|(name, _)| name))),
            (
                "kind",
                strings(
                    views.iter().map(|(_, entry)| if entry.query.is_some() { "materialized view" } else { "view" }),
                ),
            ),
            ("query_id", optional_strings(queries.iter().map(|query| query.as_ref().map(|query| query.id.clone())))),
            (
                "status",
                optional_strings(
                    queries.iter().map(|query| query.as_ref().map(|query| query.handle.status().name().to_string())),
                ),
            ),
            (
                "rows",
                counts(
                    queries
                        .iter()
                        .map(|query| query.as_ref().and_then(|query| query.handle.output.current_len()).unwrap_or(0)),
                ),
            ),
            ("definition", strings(views.iter().map(|(_, entry)| &entry.ddl))),
        ])
    }

    /// `SHOW SINKS`.
    pub(super) fn show_sinks(&self) -> Result<StatementResult, EngineError> {
        let sinks: Vec<(Arc<RunningQuery>, Named)> = self
            .queries()
            .into_iter()
            .filter_map(|query| {
                let named = query.named.clone().filter(|named| named.kind == NamedKind::Sink)?;
                Some((query, named))
            })
            .collect();
        let reports: Vec<_> = sinks
            .iter()
            .map(|(query, _)| {
                query
                    .handle
                    .sink
                    .as_ref()
                    .and_then(|report| report.lock().ok().map(|report| report.clone()))
                    .unwrap_or_default()
            })
            .collect();
        StatementResult::rows(vec![
            ("name", strings(sinks.iter().map(|(_, named)| &named.name))),
            ("kind", strings(sinks.iter().map(|(_, named)| named.sink.as_ref().map_or("", SinkSpec::kind)))),
            (
                "target",
                strings(sinks.iter().map(|(_, named)| named.sink.as_ref().map(SinkSpec::target).unwrap_or_default())),
            ),
            ("query_id", strings(sinks.iter().map(|(query, _)| &query.id))),
            ("status", strings(sinks.iter().map(|(query, _)| query.handle.status().name()))),
            ("rows_written", counts(reports.iter().map(|report| report.rows_written))),
            ("rows_committed", counts(reports.iter().map(|report| report.rows_committed))),
            ("commits", counts(reports.iter().map(|report| report.commits))),
            ("last_error", optional_strings(reports.iter().map(|report| report.last_error.clone()))),
        ])
    }

    /// `SELECT * FROM v` of a materialized view `v`, as a subscription: its
    /// current result, then the changes (Materialize's `SUBSCRIBE v`).
    /// `None` for any other SQL.
    pub fn subscribe_materialized(&self, sql: &str) -> Option<Result<super::Subscription, EngineError>> {
        use datafusion::sql::sqlparser::ast::{SelectItem, SetExpr, TableFactor};
        let mut statements = sluice_planner::parse_statements(sql).ok()?;
        let Some(sluice_planner::Statement::Query { query, patterns, emit: None }) =
            statements.pop().map(|located| located.statement)
        else {
            return None;
        };
        let SetExpr::Select(select) = query.body.as_ref() else { return None };
        let plain = statements.is_empty()
            && patterns.is_empty()
            && query.with.is_none()
            && query.order_by.is_none()
            && query.limit_clause.is_none()
            && select.selection.is_none()
            && select.having.is_none()
            && select.distinct.is_none()
            && matches!(select.projection.as_slice(), [SelectItem::Wildcard(_)])
            && select.from.len() == 1
            && select.from[0].joins.is_empty();
        if !plain {
            return None;
        }
        let TableFactor::Table { name, args: None, .. } = &select.from[0].relation else { return None };
        let view = self.named_query(&sluice_planner::names::object_name(name))?;
        if view.named.as_ref()?.kind != NamedKind::MaterializedView {
            return None;
        }
        self.attach_snapshot(&view.id).transpose()
    }

    /// Whether `statements` are one SELECT over materialized views only
    /// (answered at once, from their results).
    pub fn selects_materialized(&self, statements: &[Located]) -> bool {
        match statements {
            [located] => match &located.statement {
                sluice_planner::Statement::Query { query, patterns, .. } => {
                    patterns.is_empty() && self.reads_only_materialized(query).is_some()
                }
                _ => false,
            },
            _ => false,
        }
    }

    /// The materialized views a query reads, if it reads nothing else: it
    /// is then answered once, from their current results.
    pub(super) fn reads_only_materialized(&self, query: &QueryAst) -> Option<Vec<(String, Arc<RunningQuery>)>> {
        let names = read_names(query);
        if names.is_empty() {
            return None;
        }
        names
            .into_iter()
            .map(|name| {
                let query = self.named_query(&name)?;
                (query.named.as_ref()?.kind == NamedKind::MaterializedView).then_some((name, query))
            })
            .collect()
    }

    /// `SELECT ... FROM` materialized views only: their current results
    /// queried as tables, once.
    pub(super) async fn select_materialized(
        &self,
        query: &QueryAst,
        views: Vec<(String, Arc<RunningQuery>)>,
    ) -> Result<StatementResult, EngineError> {
        let context = datafusion::prelude::SessionContext::new();
        for (name, view) in views {
            let rows = match view.handle.output.current_rows() {
                Some(Ok(rows)) => rows,
                Some(Err(error)) => return Err(EngineError::internal(error.to_string())),
                None => return Err(EngineError::internal(format!("materialized view {name} keeps no result"))),
            };
            let table = MemTable::try_new(rows.schema(), vec![vec![rows]])
                .map_err(|error| EngineError::internal(error.to_string()))?;
            context
                .register_table(name.as_str(), Arc::new(table))
                .map_err(|error| EngineError::internal(error.to_string()))?;
        }
        let frame = context.sql(&query.to_string()).await.map_err(|error| EngineError::invalid(error.to_string()))?;
        let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
        let batches = frame.collect().await.map_err(|error| EngineError::invalid(error.to_string()))?;
        Ok(StatementResult::Rows { schema, batches })
    }
}

/// A sink's options, checked: `INTO FILE (path = '...', format = 'jsonl' |
/// 'csv' | 'parquet', rollover = '1 minute' | rows)`.
pub(super) fn sink_spec(sink: &CreateSink) -> Result<SinkSpec, EngineError> {
    let at = |location| move |error: PlanError| EngineError::from(error.at_location(location));
    match sink.kind.as_str() {
        "file" => {
            let mut path = None;
            let mut format = FileFormat::Jsonl;
            let mut rollover_rows = None;
            let mut rollover = Some(DEFAULT_ROLLOVER);
            for (key, value, location) in &sink.options {
                let location = *location;
                match key.as_str() {
                    "path" => path = Some(std::path::PathBuf::from(value)),
                    "format" => {
                        format = FileFormat::parse(value).ok_or_else(|| {
                            at(location)(PlanError::invalid(format!(
                                "a file sink writes format 'jsonl', 'csv' or 'parquet', not {value:?}"
                            )))
                        })?;
                    }
                    "rollover" => {
                        if let Ok(rows) = value.parse::<u64>() {
                            if rows == 0 {
                                return Err(at(location)(PlanError::invalid(
                                    "rollover takes a positive number of rows",
                                )));
                            }
                            rollover_rows = Some(rows);
                            rollover = None;
                        } else {
                            let duration = parse_duration(value, false).map_err(|_| {
                                at(location)(PlanError::invalid(format!(
                                    "rollover is a number of rows or a duration such as '1 minute', not {value:?}"
                                )))
                            })?;
                            if duration.is_zero() {
                                return Err(at(location)(PlanError::invalid("rollover takes a positive duration")));
                            }
                            rollover = Some(duration);
                        }
                    }
                    other => {
                        return Err(at(location)(PlanError::invalid(format!(
                            "a file sink takes path, format and rollover, not {other:?}"
                        ))));
                    }
                }
            }
            let path = path
                .ok_or_else(|| at(sink.kind_location)(PlanError::invalid("a file sink needs path = '<directory>'")))?;
            let spec = FileSinkSpec { path, format, rollover_rows, rollover };
            spec.check_writable().map_err(|message| at(sink.kind_location)(PlanError::invalid(message)))?;
            Ok(SinkSpec::File(spec))
        }
        "kafka" => {
            let mut brokers = None;
            let mut topic = None;
            let mut envelope = None;
            let mut key = None;
            let mut exactly_once = true;
            let mut properties = Vec::new();
            for (option, value, location) in &sink.options {
                let location = *location;
                match option.as_str() {
                    "brokers" => brokers = Some(value.clone()),
                    "topic" => topic = Some(value.clone()),
                    "format" if value.eq_ignore_ascii_case("json") => {}
                    "format" => {
                        return Err(at(location)(PlanError::invalid(format!(
                            "a Kafka sink writes format 'json', not {value:?}"
                        ))));
                    }
                    "envelope" => {
                        envelope = Some(SinkEnvelope::parse(value).ok_or_else(|| {
                            at(location)(PlanError::invalid(format!(
                                "envelope is 'append', 'upsert' or 'debezium', not {value:?}"
                            )))
                        })?);
                    }
                    "key" => key = Some(value.to_ascii_lowercase()),
                    "delivery" => {
                        exactly_once = match value.to_ascii_lowercase().as_str() {
                            "exactly-once" | "exactly_once" => true,
                            "at-least-once" | "at_least_once" => false,
                            _ => {
                                return Err(at(location)(PlanError::invalid(format!(
                                    "delivery is 'exactly-once' or 'at-least-once', not {value:?}"
                                ))));
                            }
                        };
                    }
                    other if other.starts_with("properties.") => {
                        properties.push((other["properties.".len()..].to_string(), value.clone()));
                    }
                    other => {
                        return Err(at(location)(PlanError::invalid(format!(
                            "a Kafka sink takes brokers, topic, format, envelope, key, delivery and properties.*, not {other:?}"
                        ))));
                    }
                }
            }
            let brokers = brokers.ok_or_else(|| {
                at(sink.kind_location)(PlanError::invalid("a Kafka sink needs brokers = 'host:port'"))
            })?;
            let topic =
                topic.ok_or_else(|| at(sink.kind_location)(PlanError::invalid("a Kafka sink needs topic = '...'")))?;
            let envelope = envelope.unwrap_or(if key.is_some() { SinkEnvelope::Upsert } else { SinkEnvelope::Append });
            Ok(SinkSpec::Kafka(KafkaSinkSpec {
                transactional_id: format!("sluice-sink-{}-{topic}", sink.name),
                brokers,
                topic,
                envelope,
                key,
                exactly_once,
                properties,
            }))
        }
        other => Err(at(sink.kind_location)(PlanError::invalid(format!(
            "a sink writes INTO FILE or INTO KAFKA, not INTO {}",
            other.to_uppercase()
        )))),
    }
}
