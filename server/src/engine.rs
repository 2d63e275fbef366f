//! The engine: the catalog of streams and the running queries, and the
//! execution of SQL statements against them. HTTP handlers, the test
//! suites and the demo all go through [`Engine::execute`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::{Value, json};
use sluice_planner::ddl::{CreateStream, static_table};
use sluice_planner::statement::Located;
use sluice_planner::{PlanOptions, Statement, parse_statements, plan_query, stream_source_spec};
use sluice_runtime::checkpoint::CheckpointConfig;
use sluice_runtime::driver::displayed_watermark;
use sluice_runtime::metrics::CheckpointReport;
use sluice_runtime::operators::window_aggregate::EarlyEmit;
use sluice_runtime::{ConnectorSpec, QueryHandle, QueryMetrics, QuerySettings, QueryStatus, SourceSpec};

use crate::catalog::{Catalog, StreamEntry, TableEntry};
use crate::error::ApiError;
use crate::json;
use crate::persist;
use axum::http::StatusCode;

/// What one statement returned.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum StatementResult {
    /// DDL and SET: `{"status": "CREATE STREAM", ...}`.
    Status {
        status: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// A finite result (SHOW, DESCRIBE, EXPLAIN).
    Rows { columns: Value, rows: Vec<Value> },
    /// A continuous query was started.
    Query {
        query_id: String,
        columns: Value,
        subscribe: String,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        warnings: Vec<String>,
    },
}

/// A continuous query the engine started.
pub struct RunningQuery {
    pub id: String,
    pub sql: String,
    pub handle: QueryHandle,
    pub columns: Value,
    pub plan: String,
    pub warnings: Vec<String>,
    pub started: SystemTime,
    pub settings: QuerySettings,
    /// The settings as the user gave them (kept with the catalog).
    pub request_settings: Settings,
}

impl RunningQuery {
    pub fn status_json(&self) -> Value {
        let metrics = &self.handle.metrics;
        let status = self.handle.status();
        let mut value = json!({
            "query_id": self.id,
            "sql": self.sql,
            "status": status.name(),
            "columns": self.columns,
            "subscribe": format!("/v1/queries/{}/ws", self.id),
            "epoch_interval_ms": self.settings.epoch_interval.as_millis() as u64,
            "started_at_ms": self
                .started
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_millis() as u64),
            "metrics": {
                "rows_in": QueryMetrics::get(&metrics.rows_in),
                "rows_out": QueryMetrics::get(&metrics.rows_out),
                "epochs": QueryMetrics::get(&metrics.epochs),
                "late_rows_dropped": QueryMetrics::get(&metrics.late_rows_dropped),
                "malformed_records": QueryMetrics::get(&metrics.malformed_records),
                "state_rows": QueryMetrics::get(&metrics.state_rows),
                "latency_ms": metrics.latency_ms(0.5).map(|p50| json!({
                    "p50": p50,
                    "p99": metrics.latency_ms(0.99),
                })),
                "last_malformed": metrics.last_malformed(),
                "watermark": displayed_watermark(metrics).map(json::timestamp),
                "late_rows_by_window": metrics
                    .late_by_window()
                    .into_iter()
                    .map(|(start, rows)| json!({"window_start": json::timestamp(start), "rows": rows}))
                    .collect::<Vec<_>>(),
            },
            "plan": self.plan,
            "warnings": self.warnings,
            "checkpoint": checkpoint_json(&self.settings, &metrics.checkpoints()),
        });
        if let QueryStatus::Failed(error) = status {
            value["error"] = json!(error);
        }
        value
    }
}

/// The checkpoint part of a query's status.
fn checkpoint_json(settings: &QuerySettings, report: &CheckpointReport) -> Value {
    json!({
        "enabled": settings.checkpoint.is_some(),
        "interval_ms": settings.checkpoint.as_ref().map(|config| config.interval.as_millis() as u64),
        "last_id": report.last_id,
        "last_at": report.last_taken_at_ms.map(|ms| json::timestamp(ms as i64 * 1_000_000)),
        "last_bytes": report.last_bytes,
        "last_duration_ms": report.last_duration_ms,
        "restored_from": report.restored_from,
        "replayed_steps": report.replayed_steps,
        "warnings": report.warnings,
    })
}

/// Catalog plus queries. Cheap to share: wrap in `Arc`.
pub struct Engine {
    // std RwLocks: held for map look-ups and inserts only, never across an
    // await (planning works on a snapshot of the catalog).
    catalog: RwLock<Catalog>,
    queries: RwLock<BTreeMap<u64, Arc<RunningQuery>>>,
    next_query: AtomicU64,
    /// Where the catalog is kept across restarts; `None` keeps it in memory.
    data_dir: Option<PathBuf>,
    // Serialises catalog writes so the file always reflects a whole state.
    persist_lock: std::sync::Mutex<()>,
    /// Where queries checkpoint and http streams log their events; set
    /// before the stored catalog is replayed (unlike `data_dir`, which
    /// turns on writing the catalog once it is whole).
    state_dir: Option<PathBuf>,
    /// Held from choosing a new query's id to registering it.
    start_lock: std::sync::Mutex<()>,
    /// Recovery tests: new (not restored) queries stop abruptly after this
    /// many source events.
    halt_after_steps: Option<u64>,
}

impl Default for Engine {
    fn default() -> Self {
        Self::new()
    }
}

/// Per-request settings, from the request body and `SET` statements.
pub type Settings = BTreeMap<String, String>;

impl Engine {
    pub fn new() -> Self {
        Self {
            catalog: RwLock::new(Catalog::default()),
            queries: RwLock::new(BTreeMap::new()),
            next_query: AtomicU64::new(1),
            data_dir: None,
            persist_lock: std::sync::Mutex::new(()),
            state_dir: None,
            start_lock: std::sync::Mutex::new(()),
            halt_after_steps: None,
        }
    }

    /// An engine whose catalog lives in `data_dir`: streams and queries
    /// stored there are restored (queries under their old ids).
    pub async fn open(data_dir: &Path) -> Result<Self, ApiError> {
        let mut engine = Self::new();
        engine.state_dir = Some(data_dir.to_path_buf());
        let stored = persist::load(data_dir)
            .map_err(|message| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "data_dir", message))?;
        if let Some(stored) = stored {
            for stream in &stored.streams {
                engine.execute(&stream.ddl, &mut Settings::new()).await?;
            }
            for table in &stored.tables {
                engine.execute(&table.ddl, &mut Settings::new()).await?;
                for insert in &table.inserts {
                    engine.execute(insert, &mut Settings::new()).await?;
                }
            }
            for query in &stored.queries {
                let mut settings = query.settings.clone();
                engine.start_stored_query(query.number, &query.sql, &mut settings).await?;
            }
            engine.next_query.fetch_max(stored.next_query, Ordering::Relaxed);
        }
        engine.data_dir = Some(data_dir.to_path_buf());
        engine.persist()?;
        Ok(engine)
    }

    /// Recovery tests: queries submitted from now on take one source event
    /// per epoch and stop abruptly after `steps` of them, as if the server
    /// crashed.
    pub fn halt_queries_after(&mut self, steps: u64) {
        self.halt_after_steps = Some(steps);
    }

    /// Restarts a stored query under its id.
    async fn start_stored_query(&self, number: u64, sql: &str, settings: &mut Settings) -> Result<(), ApiError> {
        let mut statements = parse_statements(sql)?;
        let Some(located) = statements.pop() else { return Ok(()) };
        let Statement::Query { query, emit } = located.statement.clone() else {
            return Err(ApiError::internal(format!("stored query q{number} is not a query")));
        };
        self.next_query.fetch_max(number + 1, Ordering::Relaxed);
        self.start_query(sql, located, &query, emit, settings, Some(number)).await.map(|_| ())
    }

    /// Writes the catalog to the data directory, if there is one.
    fn persist(&self) -> Result<(), ApiError> {
        let Some(data_dir) = &self.data_dir else { return Ok(()) };
        let _guard = self.persist_lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let streams = self
            .catalog_read()
            .streams()
            .map(|(name, entry)| persist::StoredStream { name: name.clone(), ddl: entry.ddl.clone() })
            .collect();
        let tables = self
            .catalog_read()
            .tables()
            .map(|(name, entry)| persist::StoredTable {
                name: name.clone(),
                ddl: entry.ddl.clone(),
                inserts: entry.inserts.clone(),
            })
            .collect();
        let queries = self
            .queries_read()
            .iter()
            .map(|(number, query)| persist::StoredQuery {
                number: *number,
                sql: query.sql.clone(),
                settings: query.request_settings.clone(),
            })
            .collect();
        let next_query = self.next_query.load(Ordering::Relaxed);
        let catalog =
            persist::StoredCatalog { format_version: persist::FORMAT_VERSION, streams, tables, queries, next_query };
        persist::save(data_dir, &catalog).map_err(|error| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "data_dir", format!("cannot write the catalog: {error}"))
        })
    }

    fn catalog_read(&self) -> std::sync::RwLockReadGuard<'_, Catalog> {
        self.catalog.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn catalog_write(&self) -> std::sync::RwLockWriteGuard<'_, Catalog> {
        self.catalog.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn queries_read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<u64, Arc<RunningQuery>>> {
        self.queries.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn queries_write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<u64, Arc<RunningQuery>>> {
        self.queries.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Executes every statement of `sql` in order. `settings` apply to the
    /// queries started; `SET` statements update them for later statements.
    pub async fn execute(&self, sql: &str, settings: &mut Settings) -> Result<Vec<StatementResult>, ApiError> {
        let statements = parse_statements(sql)?;
        let mut results = Vec::new();
        for located in statements {
            results.push(self.execute_one(sql, located, settings).await?);
        }
        Ok(results)
    }

    async fn execute_one(
        &self,
        sql: &str,
        located: Located,
        settings: &mut Settings,
    ) -> Result<StatementResult, ApiError> {
        match located.statement.clone() {
            Statement::CreateStream(create) if create.is_static_table() => self.create_table(&create, located.text),
            Statement::Insert { table, statement } => self.insert(sql, &located, &table, *statement).await,
            Statement::ShowTables => {
                let rows = self
                    .catalog_read()
                    .tables()
                    .map(|(name, entry)| {
                        let table = &entry.table;
                        let key: Vec<&str> =
                            table.primary_key.iter().map(|index| table.schema.field(*index).name().as_str()).collect();
                        json!([name, table.snapshot().rows.num_rows(), key.join(", ")])
                    })
                    .collect();
                Ok(StatementResult::Rows { columns: name_columns(&["name", "rows", "primary_key"]), rows })
            }
            Statement::CreateStream(create) => {
                let spec = stream_source_spec(&create)?;
                if let (ConnectorSpec::Http(ingest), Some(state_dir)) = (&spec.connector, &self.state_dir)
                    && !self.catalog_read().contains(&create.name)
                {
                    // Events are logged before they are acknowledged, so a
                    // recovering query reads again what it lost.
                    let path = state_dir.join("streams").join(&create.name).join("events.log");
                    ingest.open_log(&path).map_err(|error| {
                        ApiError::new(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "event_log",
                            format!("cannot open {}: {error}", path.display()),
                        )
                    })?;
                }
                let mut catalog = self.catalog_write();
                if catalog.contains(&create.name) {
                    if create.if_not_exists {
                        return Ok(StatementResult::Status { status: "CREATE STREAM".into(), name: Some(create.name) });
                    }
                    return Err(ApiError::from(
                        sluice_planner::PlanError::invalid(format!("stream {:?} already exists", create.name))
                            .at_location(create.name_location),
                    ));
                }
                catalog.insert(create.name.clone(), StreamEntry { ddl: located.text, spec });
                drop(catalog);
                self.persist()?;
                Ok(StatementResult::Status { status: "CREATE STREAM".into(), name: Some(create.name) })
            }
            Statement::DropStream { name, if_exists } => {
                let mut catalog = self.catalog_write();
                let removed = catalog.remove(&name).is_some() || catalog.remove_table(&name).is_some();
                drop(catalog);
                if removed && let Some(state_dir) = &self.state_dir {
                    let _ = std::fs::remove_dir_all(state_dir.join("streams").join(&name));
                }
                if !removed && !if_exists {
                    return Err(ApiError::from(
                        sluice_planner::PlanError::unknown(format!("stream {name:?} not found")).near_name(
                            sql,
                            &name,
                            located.start,
                        ),
                    ));
                }
                self.persist()?;
                Ok(StatementResult::Status { status: "DROP STREAM".into(), name: Some(name) })
            }
            Statement::ShowStreams => {
                let rows = self
                    .streams_json()
                    .into_iter()
                    .map(|stream| json!([stream["name"], stream["connector"], stream["watermark"], stream["status"]]))
                    .collect();
                Ok(StatementResult::Rows { columns: name_columns(&["name", "connector", "watermark", "status"]), rows })
            }
            Statement::ShowQueries => {
                let rows = self
                    .queries()
                    .iter()
                    .map(|query| {
                        let status = query.status_json();
                        let metrics = &status["metrics"];
                        json!([
                            query.id,
                            status["status"],
                            metrics["rows_in"],
                            metrics["rows_out"],
                            metrics["late_rows_dropped"],
                            metrics["malformed_records"]
                        ])
                    })
                    .collect();
                let columns = ["query_id", "status", "rows_in", "rows_out", "late_rows_dropped", "malformed_records"];
                Ok(StatementResult::Rows { columns: name_columns(&columns), rows })
            }
            Statement::Describe { name } if self.catalog_read().table_entry(&name).is_some() => {
                let catalog = self.catalog_read();
                let Some(entry) = catalog.table_entry(&name) else { return Err(ApiError::internal("table vanished")) };
                let table = &entry.table;
                let rows = table
                    .schema
                    .fields()
                    .iter()
                    .enumerate()
                    .map(|(index, field)| {
                        let key = table.primary_key.contains(&index).then_some("PRIMARY KEY");
                        json!([field.name(), json::sql_type(field.data_type()), field.is_nullable(), key])
                    })
                    .collect();
                Ok(StatementResult::Rows { columns: name_columns(&["column", "type", "nullable", "key"]), rows })
            }
            Statement::Describe { name } => {
                let catalog = self.catalog_read();
                let entry = catalog.get(&name).ok_or_else(|| {
                    ApiError::from(sluice_planner::PlanError::unknown(format!("stream {name:?} not found")).near_name(
                        sql,
                        &name,
                        located.start,
                    ))
                })?;
                let rows = entry
                    .spec
                    .schema
                    .fields()
                    .iter()
                    .enumerate()
                    .map(|(index, field)| {
                        let watermark = entry
                            .spec
                            .event_time
                            .filter(|event_time| event_time.column == index)
                            .map(|event_time| format!("{} - {}", field.name(), human_duration(event_time.delay)));
                        json!([field.name(), json::sql_type(field.data_type()), field.is_nullable(), watermark])
                    })
                    .collect();
                Ok(StatementResult::Rows { columns: name_columns(&["column", "type", "nullable", "watermark"]), rows })
            }
            Statement::Set { name, value } => {
                self.query_settings(&[(name.clone(), value.clone())].into_iter().collect())?;
                settings.insert(name.clone(), value);
                Ok(StatementResult::Status { status: "SET".into(), name: Some(name) })
            }
            Statement::Explain { query, emit } => {
                let plan = self.plan(sql, &query, located.start, &self.query_settings(settings)?, emit).await?;
                let rows = plan.describe().lines().map(|line| json!([line])).collect();
                Ok(StatementResult::Rows { columns: name_columns(&["plan"]), rows })
            }
            Statement::Query { query, emit } => {
                let result = self.start_query(sql, located, &query, emit, settings, None).await?;
                self.persist()?;
                Ok(result)
            }
        }
    }

    async fn start_query(
        &self,
        sql: &str,
        located: Located,
        query: &sluice_planner::statement::QueryAst,
        emit: Option<EarlyEmit>,
        settings: &mut Settings,
        number: Option<u64>,
    ) -> Result<StatementResult, ApiError> {
        let restored_query = number.is_some();
        let mut query_settings = self.query_settings(settings)?;
        if !restored_query && let Some(halt) = self.halt_after_steps {
            query_settings.halt_after_steps = Some(halt);
            query_settings.max_steps_per_epoch = Some(1);
        }
        let plan = self.plan(sql, query, located.start, &query_settings, emit).await?;
        let columns = json::columns(&plan.schema);
        let description = plan.describe();
        let warnings = plan.warnings.clone();
        // Numbered once it runs, so failed statements use up no id.
        let guard = self.start_lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let number = number.unwrap_or_else(|| self.next_query.load(Ordering::Relaxed));
        let id = format!("q{number}");
        if let Some(state_dir) = &self.state_dir
            && let Some(interval) = query_settings.checkpoint_interval
        {
            let dir = state_dir.join("queries").join(&id);
            if !restored_query {
                // Ids are never reused; this is a leftover of a crash.
                let _ = std::fs::remove_dir_all(&dir);
            }
            query_settings.checkpoint = Some(CheckpointConfig { dir, interval });
        }
        let handle = sluice_runtime::spawn_query(plan, query_settings.clone())?;
        self.next_query.fetch_max(number + 1, Ordering::Relaxed);
        drop(guard);
        let query = Arc::new(RunningQuery {
            id: id.clone(),
            sql: located.text,
            handle,
            columns: columns.clone(),
            plan: description,
            warnings: warnings.clone(),
            started: SystemTime::now(),
            settings: query_settings,
            request_settings: settings.clone(),
        });
        self.queries_write().insert(number, query);
        Ok(StatementResult::Query { subscribe: format!("/v1/queries/{id}/ws"), query_id: id, columns, warnings })
    }

    async fn plan(
        &self,
        sql: &str,
        query: &sluice_planner::statement::QueryAst,
        start: sluice_planner::statement::SqlLocation,
        settings: &QuerySettings,
        emit: Option<EarlyEmit>,
    ) -> Result<sluice_runtime::StreamPlan, ApiError> {
        // Plan against a snapshot so no lock is held across the await.
        let snapshot = self.catalog_snapshot();
        let options = PlanOptions { allowed_lateness: settings.allowed_lateness, emit, state_ttl: settings.state_ttl };
        Ok(plan_query(&snapshot, query, sql, start, &options).await?)
    }

    fn catalog_snapshot(&self) -> Catalog {
        let catalog = self.catalog_read();
        let mut snapshot = Catalog::default();
        for (name, entry) in catalog.streams() {
            snapshot.insert(name.clone(), entry.clone());
        }
        for (name, entry) in catalog.tables() {
            snapshot.insert_table(name.clone(), entry.clone());
        }
        snapshot
    }

    /// `CREATE TABLE` without a watermark: a static table, loaded from its
    /// file now if it has one.
    fn create_table(&self, create: &CreateStream, ddl: String) -> Result<StatementResult, ApiError> {
        let status = || StatementResult::Status { status: "CREATE TABLE".into(), name: Some(create.name.clone()) };
        if self.catalog_read().contains(&create.name) {
            if create.if_not_exists {
                return Ok(status());
            }
            return Err(ApiError::from(
                sluice_planner::PlanError::invalid(format!("{:?} already exists", create.name))
                    .at_location(create.name_location),
            ));
        }
        let (table, file) = static_table(create)?;
        if let Some((path, format)) = file {
            let (_, malformed, problem) = table
                .load_file(&path, format)
                .map_err(|error| ApiError::bad_request("invalid", format!("table {}: {error}", create.name)))?;
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
    async fn insert(
        &self,
        sql: &str,
        located: &Located,
        table: &str,
        statement: sluice_planner::statement::AstStatement,
    ) -> Result<StatementResult, ApiError> {
        let target = self.catalog_read().table_entry(table).map(|entry| entry.table.clone());
        let Some(target) = target else {
            let is_stream = self.catalog_read().get(table).is_some();
            let message = if is_stream {
                format!("{table} is a stream; INSERT INTO writes to static tables (POST events to an 'http' stream)")
            } else {
                format!("table {table:?} not found")
            };
            return Err(ApiError::from(sluice_planner::PlanError::unknown(message).near_name(
                sql,
                table,
                located.start,
            )));
        };
        let rows = sluice_planner::evaluate_insert(&target, statement).await.map_err(|error| {
            let error = error.near_name(sql, table, located.start);
            ApiError::from(error)
        })?;
        let count = target
            .insert(&rows)
            .map_err(|error| ApiError::bad_request("invalid", format!("INSERT INTO {table}: {error}")))?;
        if let Some(entry) = self.catalog_write().table_entry_mut(table) {
            entry.inserts.push(located.text.clone());
        }
        self.persist()?;
        Ok(StatementResult::Status { status: format!("INSERT {count}"), name: Some(table.to_string()) })
    }

    /// Query settings from a request's settings, with streams resolved.
    pub fn query_settings(&self, settings: &Settings) -> Result<QuerySettings, ApiError> {
        let mut query = settings_from(settings)?;
        if let Some(stream) = settings.get("late_rows_to") {
            let name = stream.to_ascii_lowercase();
            let spec = self.stream(&name).ok_or_else(|| {
                ApiError::bad_request("unknown_object", format!("late_rows_to names unknown stream {name:?}"))
            })?;
            match spec.connector {
                ConnectorSpec::Http(ingest) => query.late_rows_to = Some(ingest),
                other => {
                    return Err(ApiError::bad_request(
                        "invalid",
                        format!(
                            "late_rows_to needs an 'http' stream for other queries to read; {name:?} is {}",
                            other.kind()
                        ),
                    ));
                }
            }
        }
        Ok(query)
    }

    pub fn queries(&self) -> Vec<Arc<RunningQuery>> {
        self.queries_read().values().cloned().collect()
    }

    pub fn query(&self, id: &str) -> Option<Arc<RunningQuery>> {
        let number: u64 = id.strip_prefix('q')?.parse().ok()?;
        self.queries_read().get(&number).cloned()
    }

    /// Cancels and forgets a query.
    pub fn drop_query(&self, id: &str) -> Option<Arc<RunningQuery>> {
        let number: u64 = id.strip_prefix('q')?.parse().ok()?;
        let query = self.queries_write().remove(&number)?;
        query.handle.cancel();
        if let Some(checkpoint) = &query.settings.checkpoint {
            let _ = std::fs::remove_dir_all(&checkpoint.dir);
        }
        if let Err(error) = self.persist() {
            tracing::error!("{error}");
        }
        Some(query)
    }

    pub fn stream(&self, name: &str) -> Option<SourceSpec> {
        self.catalog_read().get(name).map(|entry| entry.spec.clone())
    }

    pub fn streams_json(&self) -> Vec<Value> {
        self.catalog_read()
            .streams()
            .map(|(name, entry)| {
                let spec = &entry.spec;
                json!({
                    "name": name,
                    "connector": spec.connector.kind(),
                    "bounded": spec.connector.is_bounded(),
                    "columns": json::columns(&spec.schema),
                    "watermark": spec.event_time.map(|event_time| format!(
                        "{} - {}", spec.schema.field(event_time.column).name(), human_duration(event_time.delay)
                    )),
                    "status": spec.status.get(),
                    "ddl": entry.ddl,
                })
            })
            .collect()
    }

    /// Delivers JSON events to the running queries of an `http` stream.
    pub async fn ingest(&self, stream: &str, lines: Vec<String>) -> Result<usize, ApiError> {
        let spec = self.stream(stream).ok_or_else(|| ApiError::not_found(format!("stream {stream:?} not found")))?;
        match &spec.connector {
            ConnectorSpec::Http(ingest) => ingest.publish(lines).await.map_err(|error| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "event_log",
                    format!("cannot append to the event log of {stream:?}: {error}"),
                )
            }),
            other => Err(ApiError::bad_request(
                "invalid",
                format!(
                    "stream {stream:?} reads from its {} connector; only 'http' streams accept events",
                    other.kind()
                ),
            )),
        }
    }
}

/// Reads query settings; unknown names and bad values are errors.
pub fn settings_from(settings: &Settings) -> Result<QuerySettings, ApiError> {
    let mut query = QuerySettings::default();
    for (name, value) in settings {
        let duration = || {
            parse_duration(value, name == "epoch_interval_ms").ok_or_else(|| {
                ApiError::bad_request(
                    "invalid",
                    format!("{name} must be a duration such as '500ms' or '5s', not {value:?}"),
                )
            })
        };
        // Zero turns an optional duration off.
        let optional = || duration().map(|duration| (!duration.is_zero()).then_some(duration));
        match name.as_str() {
            "epoch_interval" | "epoch_interval_ms" => query.epoch_interval = duration()?,
            "idle_timeout" => query.idle_timeout = optional()?,
            "allowed_lateness" => query.allowed_lateness = optional()?,
            "checkpoint_interval" => query.checkpoint_interval = optional()?,
            "state_ttl" => query.state_ttl = optional()?,
            "retained_rows" => {
                query.retained_rows = value.parse().map_err(|_| {
                    ApiError::bad_request("invalid", format!("retained_rows must be a whole number, not {value:?}"))
                })?;
            }
            // Resolved against the catalog by `Engine::query_settings`.
            "late_rows_to" => {}
            other => {
                return Err(ApiError::bad_request(
                    "invalid",
                    format!(
                        "unknown setting {other:?}; known: allowed_lateness, checkpoint_interval, epoch_interval, idle_timeout, late_rows_to, retained_rows, state_ttl"
                    ),
                ));
            }
        }
    }
    Ok(query)
}

/// `100ms`, `1s`, `0`, `2.5s`, or a bare number of milliseconds.
pub fn parse_duration(text: &str, bare_is_millis: bool) -> Option<Duration> {
    let text = text.trim().to_ascii_lowercase();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let millis = match unit.trim() {
        "" if bare_is_millis || number == 0.0 => number,
        "" => number,
        "ms" => number,
        "s" | "sec" | "second" | "seconds" => number * 1000.0,
        "m" | "min" | "minute" | "minutes" => number * 60_000.0,
        "h" | "hour" | "hours" => number * 3_600_000.0,
        _ => return None,
    };
    (millis.is_finite() && millis >= 0.0).then(|| Duration::from_secs_f64(millis / 1000.0))
}

fn human_duration(nanos: i64) -> String {
    if nanos % 1_000_000_000 == 0 {
        format!("INTERVAL '{}' SECOND", nanos / 1_000_000_000)
    } else {
        format!("INTERVAL '{}' MILLISECOND", nanos / 1_000_000)
    }
}

fn name_columns(names: &[&str]) -> Value {
    Value::Array(names.iter().map(|name| json!({"name": name, "type": "VARCHAR"})).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("100ms", false), Some(Duration::from_millis(100)));
        assert_eq!(parse_duration("1s", false), Some(Duration::from_secs(1)));
        assert_eq!(parse_duration("0", false), Some(Duration::ZERO));
        assert_eq!(parse_duration("10", true), Some(Duration::from_millis(10)));
        assert_eq!(parse_duration("fast", false), None);
    }
}
