//! Streams and static tables: CREATE, DROP, INSERT, SHOW, DESCRIBE, and
//! events posted to `http` streams.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use sluice_planner::ddl::{CreateStream, static_table};
use sluice_planner::statement::Located;
use sluice_planner::stream_source_spec;
use sluice_runtime::{ConnectorSpec, SourceSpec};

use super::Engine;
use super::result::{StatementResult, booleans, counts, optional_strings, strings};
use crate::catalog::{StreamEntry, TableEntry};
use crate::error::{EngineError, ErrorCode};
use crate::sql_type::sql_type;

/// A declared stream, as `GET /v1/streams` lists it.
#[derive(Debug, Clone)]
pub struct StreamInfo {
    pub name: String,
    /// The connector's kind: `http`, `file`, `generator`, ...
    pub connector: &'static str,
    pub bounded: bool,
    pub schema: SchemaRef,
    /// `ts - INTERVAL '5' SECOND`, when the stream has event time.
    pub watermark: Option<String>,
    /// What the source reports (connected, reading, ...).
    pub status: String,
    pub ddl: String,
}

impl Engine {
    pub(super) async fn create_stream(
        &self,
        create: CreateStream,
        mut ddl: String,
    ) -> Result<StatementResult, EngineError> {
        let mut spec = stream_source_spec(&create)?;
        if let ConnectorSpec::Kafka(kafka) = &mut spec.connector
            && kafka.partitions.is_empty()
            && !self.catalog_read().contains(&create.name)
        {
            // A query reads each partition as a source of its own: the
            // partitions are looked up now, and kept with the DDL so that
            // a restart does not need the broker.
            let (brokers, topic, properties) = (kafka.brokers.clone(), kafka.topic.clone(), kafka.properties.clone());
            let found = tokio::task::spawn_blocking(move || {
                sluice_runtime::source::kafka::partitions(&brokers, &topic, &properties)
            })
            .await
            .map_err(|error| EngineError::internal(error.to_string()))?;
            let partitions = found.map_err(|message| {
                EngineError::new(
                    ErrorCode::External,
                    format!("{message}; the stream needs its topic's partitions (or declare partitions = N)"),
                )
            })?;
            if let Some(close) = ddl.rfind(')') {
                ddl.insert_str(close, &format!(", partitions = '{}'", partitions.len()));
            }
            kafka.partitions = partitions;
        }
        if let (ConnectorSpec::Http(ingest), Some(state_dir)) = (&spec.connector, &self.state_dir)
            && !self.catalog_read().contains(&create.name)
        {
            // Events are logged before they are acknowledged, so a
            // recovering query reads again what it lost.
            let path = state_dir.join("streams").join(&create.name);
            ingest.open_log(&path, self.fsync).map_err(|error| {
                EngineError::new(ErrorCode::EventLog, format!("cannot open {}: {error}", path.display()))
            })?;
            // A stream created while the server runs has no restored query
            // to wait for.
            if self.data_dir.is_some() {
                ingest.allow_compaction();
            }
        }
        let mut catalog = self.catalog_write();
        if catalog.contains(&create.name) {
            if create.if_not_exists {
                return Ok(StatementResult::status("CREATE STREAM", create.name));
            }
            return Err(EngineError::from(
                sluice_planner::PlanError::invalid(format!("stream {:?} already exists", create.name))
                    .at_location(create.name_location),
            ));
        }
        catalog.insert(create.name.clone(), StreamEntry { ddl, spec });
        drop(catalog);
        self.persist()?;
        Ok(StatementResult::status("CREATE STREAM", create.name))
    }

    pub(super) fn drop_stream(
        &self,
        sql: &str,
        located: &Located,
        name: String,
        if_exists: bool,
    ) -> Result<StatementResult, EngineError> {
        // What reads it would not plan again after a restart.
        if let Some(reader) = self.readers_of(&name).into_iter().next() {
            return Err(EngineError::from(
                sluice_planner::PlanError::invalid(format!(
                    "{reader} reads {name}; drop it (or cancel the query) first"
                ))
                .near_name(sql, &name, located.start),
            ));
        }
        let mut catalog = self.catalog_write();
        let removed = catalog.remove(&name).is_some() || catalog.remove_table(&name).is_some();
        drop(catalog);
        if removed && let Some(state_dir) = &self.state_dir {
            let _ = std::fs::remove_dir_all(state_dir.join("streams").join(&name));
        }
        if !removed && !if_exists {
            return Err(EngineError::from(
                sluice_planner::PlanError::unknown(format!("stream {name:?} not found")).near_name(
                    sql,
                    &name,
                    located.start,
                ),
            ));
        }
        self.persist()?;
        Ok(StatementResult::status("DROP STREAM", name))
    }

    /// `CREATE TABLE` without a watermark: a static table, loaded from its
    /// file now if it has one.
    pub(super) fn create_table(&self, create: &CreateStream, ddl: String) -> Result<StatementResult, EngineError> {
        let status = || StatementResult::status("CREATE TABLE", create.name.clone());
        if self.catalog_read().contains(&create.name) {
            if create.if_not_exists {
                return Ok(status());
            }
            return Err(EngineError::from(
                sluice_planner::PlanError::invalid(format!("{:?} already exists", create.name))
                    .at_location(create.name_location),
            ));
        }
        let (table, file) = static_table(create)?;
        if let Some((path, format)) = file {
            let (_, malformed, problem) = table
                .load_file(&path, format)
                .map_err(|error| EngineError::invalid(format!("table {}: {error}", create.name)))?;
            if malformed > 0 {
                tracing::warn!(
                    "table {}: {malformed} malformed records skipped ({})",
                    create.name,
                    problem.unwrap_or_default()
                );
            }
        }
        let entry = TableEntry { ddl, table: Arc::new(table), inserts: Vec::new() };
        self.catalog_write().insert_table(create.name.clone(), entry);
        self.persist()?;
        Ok(status())
    }

    /// `INSERT INTO table VALUES ...`: DataFusion evaluates the rows (with
    /// casts to the columns' types); running queries see them from their
    /// next batch.
    pub(super) async fn insert(
        &self,
        sql: &str,
        located: &Located,
        table: &str,
        statement: sluice_planner::statement::AstStatement,
    ) -> Result<StatementResult, EngineError> {
        let target = self.catalog_read().table_entry(table).map(|entry| entry.table.clone());
        let Some(target) = target else {
            let is_stream = self.catalog_read().get(table).is_some();
            let message = if is_stream {
                format!("{table} is a stream; INSERT INTO writes to static tables (POST events to an 'http' stream)")
            } else {
                format!("table {table:?} not found")
            };
            return Err(EngineError::from(sluice_planner::PlanError::unknown(message).near_name(
                sql,
                table,
                located.start,
            )));
        };
        let rows = sluice_planner::evaluate_insert(&target, statement).await.map_err(|error| {
            let error = error.near_name(sql, table, located.start);
            EngineError::from(error)
        })?;
        let count =
            target.insert(&rows).map_err(|error| EngineError::invalid(format!("INSERT INTO {table}: {error}")))?;
        if let Some(entry) = self.catalog_write().table_entry_mut(table) {
            entry.inserts.push(located.text.clone());
        }
        self.persist()?;
        Ok(StatementResult::Status { tag: format!("INSERT {count}"), name: Some(table.to_string()) })
    }

    /// `SHOW TABLES`.
    pub(super) fn show_tables(&self) -> Result<StatementResult, EngineError> {
        let catalog = self.catalog_read();
        let tables: Vec<_> = catalog.tables().map(|(name, entry)| (name, &entry.table)).collect();
        StatementResult::rows(vec![
            ("name", strings(tables.iter().map(|(name, _)| name))),
            ("rows", counts(tables.iter().map(|(_, table)| table.snapshot().rows.num_rows() as u64))),
            (
                "primary_key",
                strings(tables.iter().map(|(_, table)| {
                    let key: Vec<&str> =
                        table.primary_key.iter().map(|index| table.schema.field(*index).name().as_str()).collect();
                    key.join(", ")
                })),
            ),
        ])
    }

    /// `SHOW STREAMS`.
    pub(super) fn show_streams(&self) -> Result<StatementResult, EngineError> {
        let streams = self.streams();
        StatementResult::rows(vec![
            ("name", strings(streams.iter().map(|stream| &stream.name))),
            ("connector", strings(streams.iter().map(|stream| stream.connector))),
            ("watermark", optional_strings(streams.iter().map(|stream| stream.watermark.clone()))),
            ("status", strings(streams.iter().map(|stream| &stream.status))),
        ])
    }

    /// `DESCRIBE name`: a table's columns and key, or a stream's columns
    /// and watermark.
    pub(super) fn describe(&self, sql: &str, located: &Located, name: &str) -> Result<StatementResult, EngineError> {
        let catalog = self.catalog_read();
        if let Some(entry) = catalog.table_entry(name) {
            let table = &entry.table;
            let fields = table.schema.fields();
            return StatementResult::rows(vec![
                ("column", strings(fields.iter().map(|field| field.name()))),
                ("type", strings(fields.iter().map(|field| sql_type(field.data_type())))),
                ("nullable", booleans(fields.iter().map(|field| field.is_nullable()))),
                (
                    "key",
                    optional_strings(
                        (0..fields.len())
                            .map(|index| table.primary_key.contains(&index).then(|| "PRIMARY KEY".to_string())),
                    ),
                ),
            ]);
        }
        let entry = catalog.get(name).ok_or_else(|| {
            EngineError::from(sluice_planner::PlanError::unknown(format!("stream {name:?} not found")).near_name(
                sql,
                name,
                located.start,
            ))
        })?;
        let fields = entry.spec.schema.fields();
        let watermarks = fields.iter().enumerate().map(|(index, field)| {
            entry
                .spec
                .event_time
                .filter(|event_time| event_time.column == index)
                .map(|event_time| format!("{} - {}", field.name(), human_duration(event_time.delay)))
        });
        StatementResult::rows(vec![
            ("column", strings(fields.iter().map(|field| field.name()))),
            ("type", strings(fields.iter().map(|field| sql_type(field.data_type())))),
            ("nullable", booleans(fields.iter().map(|field| field.is_nullable()))),
            ("watermark", optional_strings(watermarks)),
        ])
    }

    pub fn stream(&self, name: &str) -> Option<SourceSpec> {
        self.catalog_read().get(name).map(|entry| entry.spec.clone())
    }

    /// Every stream and table with its schema (pgwire's `pg_catalog`).
    pub fn relations(&self) -> Vec<Relation> {
        let catalog = self.catalog_read();
        let streams = catalog.streams().map(|(name, entry)| Relation {
            name: name.clone(),
            schema: entry.spec.schema.clone(),
            description: format!("stream ({} connector)", entry.spec.connector.kind()),
            rows: None,
        });
        let tables = catalog.tables().map(|(name, entry)| Relation {
            name: name.clone(),
            schema: entry.table.schema.clone(),
            description: "table".to_string(),
            rows: Some(entry.table.snapshot().rows),
        });
        let mut relations: Vec<Relation> = streams.chain(tables).collect();
        relations.sort_by(|a, b| a.name.cmp(&b.name));
        relations
    }

    /// Every declared stream, by name.
    pub fn streams(&self) -> Vec<StreamInfo> {
        self.catalog_read()
            .streams()
            .map(|(name, entry)| {
                let spec = &entry.spec;
                StreamInfo {
                    name: name.clone(),
                    connector: spec.connector.kind(),
                    bounded: spec.connector.is_bounded(),
                    schema: spec.schema.clone(),
                    watermark: spec.event_time.map(|event_time| {
                        format!(
                            "{} - {}",
                            spec.schema.field(event_time.column).name(),
                            human_duration(event_time.delay)
                        )
                    }),
                    status: spec.status.get(),
                    ddl: entry.ddl.clone(),
                }
            })
            .collect()
    }

    /// Delivers JSON events to the running queries of an `http` stream,
    /// waiting at most `wait` for a query that is a whole queue of posts
    /// behind (`None`: as long as it takes); then refused with `too_many`.
    pub async fn ingest(
        &self,
        stream: &str,
        lines: Vec<String>,
        wait: Option<std::time::Duration>,
    ) -> Result<usize, EngineError> {
        let spec = self.stream(stream).ok_or_else(|| EngineError::not_found(format!("stream {stream:?} not found")))?;
        match &spec.connector {
            // On its own task: a client that goes away mid-post must not
            // cancel it between the append and the delivery.
            ConnectorSpec::Http(ingest) => {
                let ingest = ingest.clone();
                let posted = tokio::spawn(async move { ingest.publish_within(lines, wait).await })
                    .await
                    .map_err(|error| EngineError::internal(format!("the post's task failed: {error}")))?;
                posted.map_err(|error| match error {
                sluice_runtime::source::http::PublishError::Io(error) => EngineError::new(
                    if error.kind() == std::io::ErrorKind::StorageFull {
                        ErrorCode::StorageFull
                    } else {
                        ErrorCode::EventLog
                    },
                    format!("nothing was taken from this post to {stream:?}: {error}"),
                ),
                sluice_runtime::source::http::PublishError::Behind { queue } => EngineError::new(
                    ErrorCode::TooMany,
                    format!(
                        "a query reading {stream:?} is {queue} posts behind; nothing was taken: retry after a second, or POST with ?wait=true"
                    ),
                ),
                })
            }
            other => Err(EngineError::invalid(format!(
                "stream {stream:?} reads from its {} connector; only 'http' streams accept events",
                other.kind()
            ))),
        }
    }
}

fn human_duration(nanos: i64) -> String {
    if nanos % 1_000_000_000 == 0 {
        format!("INTERVAL '{}' SECOND", nanos / 1_000_000_000)
    } else {
        format!("INTERVAL '{}' MILLISECOND", nanos / 1_000_000)
    }
}

/// A stream or table as a catalog lists it.
#[derive(Debug, Clone)]
pub struct Relation {
    pub name: String,
    pub schema: datafusion::arrow::datatypes::SchemaRef,
    /// "stream (file connector)", "table".
    pub description: String,
    /// A static table's rows; `None` for a stream.
    pub rows: Option<datafusion::arrow::array::RecordBatch>,
}
