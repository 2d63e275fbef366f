//! The engine: the catalog of streams and the running queries, and the
//! execution of SQL statements against them. HTTP handlers, the websocket,
//! the test suites and the demo all go through [`Engine::execute`].
//!
//! The engine returns typed data ([`StatementResult`], [`QueryReport`],
//! [`EngineError`]); front ends render it (JSON for HTTP and websockets,
//! tables for the REPL).
//!
//! Parts:
//! - this file: [`Engine`], opening a data directory, statement dispatch,
//!   planning, writing the catalog;
//! - [`streams`]: CREATE/DROP/INSERT/SHOW/DESCRIBE of streams and tables,
//!   and events posted to `http` streams;
//! - [`queries`]: starting, listing and dropping continuous queries;
//! - [`status`]: a query's status as a typed report;
//! - [`result`]: what a statement returns.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use sluice_planner::statement::Located;
use sluice_planner::{PlanOptions, Statement, parse_statements, plan_query};
use sluice_runtime::QuerySettings;
use sluice_runtime::operators::window_aggregate::EarlyEmit;
use sluice_runtime::source::ConnectorSpec;

use crate::catalog::Catalog;
use crate::error::{EngineError, ErrorCode};
use crate::persist;

pub mod explain;
pub mod named;
pub mod queries;
pub mod result;
pub mod status;
pub mod streams;

pub use crate::settings::Settings;
pub use queries::{QueryShape, RunningQuery, Subscription};
pub use result::StatementResult;
pub use status::{CheckpointStatus, Latency, MetricsReport, QueryReport};
pub use streams::{Relation, StreamInfo};

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
    /// What one request or the whole server may hold.
    limits: Limits,
    /// Set by [`Engine::shutdown`]: no new work is taken.
    shutting_down: std::sync::atomic::AtomicBool,
    /// How event logs and input logs are synced (`--fsync`).
    fsync: sluice_runtime::Fsync,
}

/// Limits that turn what would exhaust the server into clear errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of SQL text in one request (`--max-sql-bytes`).
    pub max_sql_bytes: usize,
    /// Statements in one request (`--max-statements`).
    pub max_statements: usize,
    /// Queries running at once (`--max-queries`); restored queries always
    /// start.
    pub max_queries: usize,
    /// Subscribers of one query (`--max-subscribers-per-query`).
    pub max_subscribers_per_query: usize,
    /// Subscribers of all queries (`--max-subscribers`).
    pub max_subscribers: usize,
    /// The most `retained_rows` a query may ask for (`--max-retained-rows`).
    pub max_retained_rows: usize,
    /// Bytes of operator state one query may hold (`--max-state-bytes`);
    /// a query over it fails with `state_limit_exceeded`.
    pub max_state_bytes: Option<u64>,
    /// HTTP, websocket and Postgres connections open at once
    /// (`--max-connections`); more are answered with an error and closed.
    pub max_connections: usize,
    /// Threads a query's key-partitioned operators run on unless it sets
    /// `parallelism` (`--parallelism`; default one per core).
    pub parallelism: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_sql_bytes: 1024 * 1024,
            max_statements: 1000,
            max_queries: 1000,
            max_subscribers_per_query: 10_000,
            max_subscribers: 50_000,
            max_retained_rows: 100_000_000,
            max_state_bytes: Some(8 * 1024 * 1024 * 1024),
            max_connections: 10_000,
            parallelism: sluice_runtime::settings::default_parallelism(),
        }
    }
}

impl Default for Engine {
    fn default() -> Self {
        Self::new()
    }
}

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
            limits: Limits::default(),
            shutting_down: std::sync::atomic::AtomicBool::new(false),
            fsync: sluice_runtime::Fsync::default(),
        }
    }

    pub fn fsync(&self) -> sluice_runtime::Fsync {
        self.fsync
    }

    fn allow_compaction(&self) {
        for (_, entry) in self.catalog_read().streams() {
            if let ConnectorSpec::Http(ingest) = &entry.spec.connector {
                ingest.allow_compaction();
                if let Err(error) = ingest.compact() {
                    tracing::warn!("cannot delete old event log segments: {error}");
                }
            }
        }
    }

    /// The engine with `limits` instead of the defaults.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// For a server shutting down: takes no new work, and stops every
    /// query after a final checkpoint, telling its subscribers
    /// (`shutting_down`), within `timeout`. Returns the queries that did not
    /// stop in time. A restarted server resumes each from its checkpoint.
    pub async fn shutdown(&self, timeout: std::time::Duration) -> Vec<String> {
        self.shutting_down.store(true, Ordering::SeqCst);
        let queries: Vec<Arc<RunningQuery>> = self.queries_read().values().cloned().collect();
        let stops = queries.iter().map(|query| async move {
            match tokio::time::timeout(timeout, query.handle.shutdown()).await {
                Ok(()) => None,
                Err(_) => Some(query.id.clone()),
            }
        });
        futures::future::join_all(stops).await.into_iter().flatten().collect()
    }

    fn refuse_when_shutting_down(&self) -> Result<(), EngineError> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(EngineError::new(
                ErrorCode::ShuttingDown,
                "the server is shutting down; try again once it is back",
            ));
        }
        Ok(())
    }

    /// Parses a request, refusing texts and statement counts over the
    /// limits.
    fn parse(&self, sql: &str) -> Result<Vec<Located>, EngineError> {
        self.refuse_when_shutting_down()?;
        if sql.len() > self.limits.max_sql_bytes {
            return Err(EngineError::new(
                ErrorCode::TooLarge,
                format!(
                    "the SQL text is {} bytes; this server takes at most {} (--max-sql-bytes)",
                    sql.len(),
                    self.limits.max_sql_bytes
                ),
            ));
        }
        let statements = parse_statements(sql)?;
        if statements.len() > self.limits.max_statements {
            return Err(EngineError::invalid(format!(
                "{} statements in one request; this server takes at most {} (--max-statements)",
                statements.len(),
                self.limits.max_statements
            )));
        }
        Ok(statements)
    }

    /// Whether `query` (or any query, with `None`) may take one more
    /// subscriber.
    pub fn check_subscriber_room(&self, query: Option<&RunningQuery>) -> Result<(), EngineError> {
        let too_many = |message: String| Err(EngineError::new(ErrorCode::TooMany, message));
        if let Some(query) = query {
            let (subscribers, _) = query.handle.output.subscriber_counts();
            if subscribers >= self.limits.max_subscribers_per_query {
                return too_many(format!(
                    "query {} has {subscribers} subscribers, the most one query takes (--max-subscribers-per-query {})",
                    query.id, self.limits.max_subscribers_per_query
                ));
            }
        }
        let total: usize = self.queries_read().values().map(|query| query.handle.output.subscriber_counts().0).sum();
        if total >= self.limits.max_subscribers {
            return too_many(format!(
                "the server has {total} subscribers, the most it takes (--max-subscribers {})",
                self.limits.max_subscribers
            ));
        }
        Ok(())
    }

    /// An engine whose catalog lives in `data_dir`: streams and queries
    /// stored there are restored (queries under their old ids).
    pub async fn open(data_dir: &Path) -> Result<Self, EngineError> {
        Self::open_with(data_dir, sluice_runtime::Fsync::default(), Limits::default()).await
    }

    /// [`open`](Self::open), syncing logs as `fsync` says, restored queries
    /// running under `limits`.
    pub async fn open_with(data_dir: &Path, fsync: sluice_runtime::Fsync, limits: Limits) -> Result<Self, EngineError> {
        let mut engine = Self::new().with_limits(limits);
        engine.fsync = fsync;
        engine.state_dir = Some(data_dir.to_path_buf());
        let stored = persist::load(data_dir).map_err(|message| EngineError::new(ErrorCode::DataDir, message))?;
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
            // Views as they were (each was checked when it was created; the
            // materialized views they may read come back with the queries).
            for view in &stored.views {
                engine
                    .catalog_write()
                    .insert_view(view.name.clone(), crate::catalog::ViewEntry { ddl: view.ddl.clone(), query: None });
            }
            for query in &stored.queries {
                let mut settings = query.settings.clone();
                // One query that cannot start again (what it read was
                // changed by hand, say) must not keep the server down.
                if let Err(error) = engine.start_stored_query(query.number, &query.sql, &mut settings).await {
                    tracing::error!("stored query q{} cannot start again and is dropped: {error}", query.number);
                }
            }
            engine.next_query.fetch_max(stored.next_query, Ordering::Relaxed);
        }
        // Every restored query holds what it needs of the event logs now.
        engine.allow_compaction();
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

    /// Writes the catalog to the data directory, if there is one.
    fn persist(&self) -> Result<(), EngineError> {
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
            .filter(|(_, query)| !query.transient)
            .map(|(number, query)| persist::StoredQuery {
                number: *number,
                sql: query.sql.clone(),
                settings: query.request_settings.clone(),
            })
            .collect();
        let views = self
            .catalog_read()
            .views()
            .filter(|(_, entry)| entry.query.is_none())
            .map(|(name, entry)| persist::StoredView { name: name.clone(), ddl: entry.ddl.clone() })
            .collect();
        let next_query = self.next_query.load(Ordering::Relaxed);
        let catalog = persist::StoredCatalog {
            format_version: persist::FORMAT_VERSION,
            streams,
            tables,
            queries,
            views,
            next_query,
        };
        persist::save(data_dir, &catalog).map_err(|error| {
            let code = if error.kind() == std::io::ErrorKind::StorageFull {
                ErrorCode::StorageFull
            } else {
                ErrorCode::DataDir
            };
            EngineError::new(code, format!("cannot write the catalog: {error}"))
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
    pub async fn execute(&self, sql: &str, settings: &mut Settings) -> Result<Vec<StatementResult>, EngineError> {
        let statements = self.parse(sql)?;
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
    ) -> Result<StatementResult, EngineError> {
        match located.statement.clone() {
            Statement::CreateStream(create) if create.is_static_table() => self.create_table(&create, located.text),
            Statement::Insert { table, statement } => self.insert(sql, &located, &table, *statement).await,
            Statement::ShowTables => self.show_tables(),
            Statement::CreateStream(create) => self.create_stream(*create, located.text).await,
            Statement::DropStream { name, if_exists } => self.drop_stream(sql, &located, name, if_exists),
            Statement::ShowStreams => self.show_streams(),
            Statement::ShowQueries => self.show_queries(),
            Statement::ShowViews => self.show_views(),
            Statement::ShowSinks => self.show_sinks(),
            Statement::CreateView(view) => self.create_view(sql, located.clone(), *view, settings).await,
            Statement::CreateSink(sink) => self.create_sink(sql, located.clone(), *sink, settings).await,
            Statement::DropNamed { kind, name, if_exists } => self.drop_named(sql, &located, kind, name, if_exists),
            Statement::Describe { name } => self.describe(sql, &located, &name),
            Statement::Set { name, value } => {
                self.query_settings(&[(name.clone(), value.clone())].into_iter().collect())?;
                settings.insert(name.clone(), value);
                Ok(StatementResult::status("SET", name))
            }
            Statement::Explain { query, emit, patterns } => {
                let settings = self.query_settings(settings)?;
                let plan = self.plan(sql, &query, &patterns, located.start, &settings, emit).await?;
                let description = plan.describe();
                StatementResult::rows(vec![("plan", result::strings(description.lines()))])
            }
            Statement::ExplainAnalyze { query_id } => {
                let query = self.query(&query_id).ok_or_else(|| {
                    let mut error = EngineError::not_found(format!(
                        "query {query_id:?} not found; SHOW QUERIES lists the running queries"
                    ));
                    error.line = Some(located.start.line);
                    error.column = Some(located.start.column);
                    error
                })?;
                let lines = explain::Analysis::of(&query).await.lines();
                StatementResult::rows(vec![("plan", result::strings(lines))])
            }
            Statement::Query { query, patterns, .. } if patterns.is_empty() && reads_no_relation(&query) => {
                // `SELECT 1`, `SELECT version()`: answered at once, as a
                // batch query (no stream to follow).
                constant_query(&query).await
            }
            Statement::Query { query, patterns, .. }
                if let Some(views) = patterns.is_empty().then(|| self.reads_only_materialized(&query)).flatten() =>
            {
                // Like Materialize's SELECT: the current rows, once.
                self.select_materialized(&query, views).await
            }
            Statement::Query { .. } => {
                let result = self.start_query(sql, located, settings, None).await?;
                self.persist()?;
                Ok(result)
            }
        }
    }

    async fn plan(
        &self,
        sql: &str,
        query: &sluice_planner::statement::QueryAst,
        patterns: &[sluice_planner::pattern_clause::PatternClause],
        start: sluice_planner::statement::SqlLocation,
        settings: &QuerySettings,
        emit: Option<EarlyEmit>,
    ) -> Result<sluice_runtime::StreamPlan, EngineError> {
        // Plan against a snapshot so no lock is held across the await.
        let snapshot = self.catalog_snapshot();
        let options = PlanOptions {
            allowed_lateness: settings.allowed_lateness,
            emit,
            state_ttl: settings.state_ttl,
            key_groups: settings.max_parallelism,
            shed: settings.max_lag.is_some(),
        };
        Ok(plan_query(&snapshot, query, patterns, sql, start, &options).await?)
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
        for (name, entry) in catalog.views() {
            snapshot.insert_view(name.clone(), entry.clone());
        }
        snapshot
    }
}

/// Whether `query` is one SELECT with no FROM (a constant query).
pub(crate) fn reads_no_relation(query: &sluice_planner::statement::QueryAst) -> bool {
    use datafusion::sql::sqlparser::ast::SetExpr;
    query.with.is_none() && matches!(query.body.as_ref(), SetExpr::Select(select) if select.from.is_empty())
}

/// Runs a constant query through DataFusion and returns its rows.
async fn constant_query(query: &sluice_planner::statement::QueryAst) -> Result<StatementResult, EngineError> {
    let context = datafusion::prelude::SessionContext::new();
    let frame = context.sql(&query.to_string()).await.map_err(|error| EngineError::invalid(error.to_string()))?;
    let schema: datafusion::arrow::datatypes::SchemaRef = Arc::new(frame.schema().as_arrow().clone());
    let batches = frame.collect().await.map_err(|error| EngineError::invalid(error.to_string()))?;
    Ok(StatementResult::Rows { schema, batches })
}
