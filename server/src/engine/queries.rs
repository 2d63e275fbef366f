//! Continuous queries: starting them (new or restored under their id),
//! listing, looking up and dropping them, and the settings they run with.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use datafusion::arrow::datatypes::SchemaRef;
use sluice_planner::statement::Located;
use sluice_planner::{Statement, parse_statements};
use sluice_runtime::checkpoint::CheckpointConfig;
use sluice_runtime::driver::displayed_watermark;
use sluice_runtime::{ConnectorSpec, OutputEvent, QueryHandle, QueryMetrics, QuerySettings};
use tokio::sync::mpsc;

use super::Engine;
use super::named::{Named, Target};
use super::result::{StatementResult, counts, strings};
use super::status::{CheckpointStatus, Latency, MetricsReport, QueryReport};
use crate::error::EngineError;
use crate::settings::{Settings, settings_from};

/// A continuous query the engine started.
pub struct RunningQuery {
    pub id: String,
    pub sql: String,
    pub handle: QueryHandle,
    /// The schema of the query's result rows.
    pub schema: SchemaRef,
    pub plan: String,
    /// The plan it runs, for EXPLAIN ANALYZE.
    pub stream_plan: Arc<sluice_runtime::StreamPlan>,
    pub warnings: Vec<String>,
    pub started: SystemTime,
    pub settings: QuerySettings,
    /// The settings as the user gave them (kept with the catalog).
    pub request_settings: Settings,
    /// Whether every source ends (the query then finishes by itself).
    pub bounded: bool,
    /// Whether the result only grows (`false`: rows carry ops).
    pub append_only: bool,
    /// Started for one subscriber (a pgwire `SUBSCRIBE` or `SELECT`): not
    /// kept in the catalog, and dropped when its subscriber goes.
    pub transient: bool,
    /// A materialized view's or sink's name and kind.
    pub named: Option<Named>,
    /// The streams, tables and views its FROM clauses name.
    pub reads: Vec<String>,
}

/// What a query returns, known from its plan.
#[derive(Debug, Clone)]
pub struct QueryShape {
    pub schema: SchemaRef,
    /// Every source ends.
    pub bounded: bool,
    /// Rows only get added (no ops).
    pub append_only: bool,
}

/// A subscriber's view of a query: its rows from seq 0 on, or from
/// `first_available` when the oldest rows are no longer retained.
pub struct Subscription {
    pub query: Arc<RunningQuery>,
    pub events: mpsc::Receiver<OutputEvent>,
    /// The first row's `seq`: greater than 0 when rows were lost to this
    /// subscriber (it must be told).
    pub first_available: u64,
}

impl RunningQuery {
    /// What the query is doing now.
    pub fn report(&self) -> QueryReport {
        let metrics = &self.handle.metrics;
        let (subscribers, lagged_subscribers) = self.handle.output.subscriber_counts();
        QueryReport {
            id: self.id.clone(),
            sql: self.sql.clone(),
            status: self.handle.status(),
            schema: self.schema.clone(),
            epoch_interval: self.settings.epoch_interval,
            started: self.started,
            metrics: MetricsReport {
                rows_in: QueryMetrics::get(&metrics.rows_in),
                rows_out: QueryMetrics::get(&metrics.rows_out),
                epochs: QueryMetrics::get(&metrics.epochs),
                late_rows_dropped: QueryMetrics::get(&metrics.late_rows_dropped),
                malformed_records: QueryMetrics::get(&metrics.malformed_records),
                state_rows: QueryMetrics::get(&metrics.state_rows),
                latency: metrics.latency_ms(0.5).map(|p50_ms| Latency { p50_ms, p99_ms: metrics.latency_ms(0.99) }),
                last_malformed: metrics.last_malformed(),
                watermark: displayed_watermark(metrics),
                late_rows_by_window: metrics.late_by_window(),
                subscribers,
                lagged_subscribers,
                shedding: self.shedding(),
            },
            plan: self.plan.clone(),
            warnings: self.warnings.clone(),
            checkpoint: CheckpointStatus {
                interval: self.settings.checkpoint.as_ref().map(|config| config.interval),
                report: metrics.checkpoints(),
            },
        }
    }
}

impl RunningQuery {
    /// How the query sheds, if it runs with `max_lag`.
    pub fn shedding(&self) -> Option<super::status::Shedding> {
        let metrics = &self.handle.metrics;
        let (rate, lag_ms) = metrics.shedding()?;
        Some(super::status::Shedding {
            max_lag: self.settings.max_lag?,
            rate,
            rows_shed: QueryMetrics::get(&metrics.rows_shed),
            lag_ms,
        })
    }
}

/// The number in a query id `qN`; `None` for anything else (including
/// numbers too large to be an id).
pub(super) fn query_number(id: &str) -> Option<u64> {
    id.strip_prefix('q')?.parse().ok()
}

impl Engine {
    /// Restarts a stored query under its id.
    pub(super) async fn start_stored_query(
        &self,
        number: u64,
        sql: &str,
        settings: &mut Settings,
    ) -> Result<(), EngineError> {
        let mut statements = parse_statements(sql)?;
        let Some(located) = statements.pop() else { return Ok(()) };
        self.next_query.fetch_max(number.saturating_add(1), Ordering::Relaxed);
        let named = match &located.statement {
            Statement::Query { .. } => None,
            Statement::CreateView(view) if view.materialized => Some(Named {
                kind: sluice_planner::statement::NamedKind::MaterializedView,
                name: view.name.clone(),
                sink: None,
            }),
            Statement::CreateSink(sink) => Some(Named {
                kind: sluice_planner::statement::NamedKind::Sink,
                name: sink.name.clone(),
                sink: Some(super::named::sink_spec(sink)?),
            }),
            _ => return Err(EngineError::internal(format!("stored query q{number} is not a query"))),
        };
        let text = located.text.clone();
        let target = Target { named: named.clone() };
        self.launch_target(sql, located, settings, Some(number), false, &target).await?;
        if let Some(named) = named.filter(|named| named.kind == sluice_planner::statement::NamedKind::MaterializedView)
        {
            self.catalog_write().insert_view(named.name, crate::catalog::ViewEntry { ddl: text, query: Some(number) });
        }
        Ok(())
    }

    pub(super) async fn start_query(
        &self,
        sql: &str,
        located: Located,
        settings: &mut Settings,
        number: Option<u64>,
    ) -> Result<StatementResult, EngineError> {
        let Subscription { query, .. } = self.launch(sql, located, settings, number, false).await?;
        Ok(StatementResult::Query {
            id: query.id.clone(),
            schema: query.schema.clone(),
            warnings: query.warnings.clone(),
        })
    }

    /// Starts the one query in `sql` for one subscriber, who sees it from
    /// its first row. The query is not kept in the catalog; the subscriber
    /// drops it (with [`Engine::drop_query`]) when done.
    pub async fn subscribe(&self, sql: &str, settings: &Settings) -> Result<Subscription, EngineError> {
        let located = self.single_query(sql)?;
        self.launch(sql, located, &mut settings.clone(), None, true).await
    }

    /// Like [`subscribe`](Engine::subscribe), but the query is kept like
    /// one submitted over HTTP (listed, recovered after a restart) and
    /// outlives its first subscriber.
    pub async fn subscribe_kept(&self, sql: &str, settings: &Settings) -> Result<Subscription, EngineError> {
        let located = self.single_query(sql)?;
        let subscription = self.launch(sql, located, &mut settings.clone(), None, false).await?;
        self.persist()?;
        Ok(subscription)
    }

    /// What the one query in `sql` returns, without running it.
    pub async fn describe_query(&self, sql: &str, settings: &Settings) -> Result<QueryShape, EngineError> {
        let located = self.single_query(sql)?;
        let Statement::Query { query, emit, patterns } = &located.statement else {
            return Err(EngineError::internal("single_query returns a query"));
        };
        let query_settings = self.query_settings(settings)?;
        let plan = self.plan(sql, query, patterns, located.start, &query_settings, *emit).await?;
        Ok(QueryShape {
            schema: plan.schema.clone(),
            bounded: plan.sources.iter().all(|source| source.connector.is_bounded()),
            append_only: plan.append_only,
        })
    }

    /// Subscribes to a materialized view's current result and its changes
    /// (`None` if `id` is no materialized view).
    pub fn attach_snapshot(&self, id: &str) -> Result<Option<Subscription>, EngineError> {
        let query = self.query(id).ok_or_else(|| EngineError::not_found(format!("query {id:?} not found")))?;
        self.check_subscriber_room(Some(&query))?;
        match query.handle.output.subscribe_snapshot() {
            None => Ok(None),
            Some(Err(error)) => Err(EngineError::internal(error.to_string())),
            Some(Ok(events)) => {
                let first_available = query.handle.output.rows_published();
                Ok(Some(Subscription { query, events, first_available }))
            }
        }
    }

    /// Subscribes to a running query from the oldest row it retains.
    pub fn attach(&self, id: &str) -> Result<Subscription, EngineError> {
        let query = self.query(id).ok_or_else(|| EngineError::not_found(format!("query {id:?} not found")))?;
        self.check_subscriber_room(Some(&query))?;
        let subscribed = query.handle.output.subscribe_at(0);
        Ok(Subscription { query, events: subscribed.events, first_available: subscribed.first_available })
    }

    fn single_query(&self, sql: &str) -> Result<Located, EngineError> {
        let mut statements = self.parse(sql)?;
        match (statements.pop(), statements.is_empty()) {
            (Some(located), true) if matches!(located.statement, Statement::Query { .. }) => Ok(located),
            _ => Err(EngineError::invalid("expected one SELECT query")),
        }
    }

    async fn launch(
        &self,
        sql: &str,
        located: Located,
        settings: &mut Settings,
        number: Option<u64>,
        transient: bool,
    ) -> Result<Subscription, EngineError> {
        self.launch_target(sql, located, settings, number, transient, &Target::default()).await
    }

    /// Starts the query of `located` (a SELECT, a materialized view's or a
    /// sink's) as `target` says.
    pub(super) async fn launch_target(
        &self,
        sql: &str,
        located: Located,
        settings: &mut Settings,
        number: Option<u64>,
        transient: bool,
        target: &Target,
    ) -> Result<Subscription, EngineError> {
        let Some((query, emit, patterns)) = located.statement.query_parts() else {
            return Err(EngineError::internal("start_query takes a query"));
        };
        let emit = &emit;
        let restored_query = number.is_some();
        if !restored_query {
            let running = self
                .queries_read()
                .values()
                .filter(|query| query.handle.status() == sluice_runtime::QueryStatus::Running)
                .count();
            if running >= self.limits.max_queries {
                return Err(EngineError::new(
                    crate::error::ErrorCode::TooMany,
                    format!(
                        "{running} queries are running, the most this server runs (--max-queries {}); cancel one (DELETE /v1/queries/ID) first",
                        self.limits.max_queries
                    ),
                ));
            }
            if transient {
                self.check_subscriber_room(None)?;
            }
        }
        let mut query_settings = self.query_settings(settings)?;
        if !restored_query && let Some(halt) = self.halt_after_steps {
            query_settings.halt_after_steps = Some(halt);
            query_settings.max_steps_per_epoch = Some(1);
        }
        let mut plan = self.plan(sql, query, patterns, located.start, &query_settings, *emit).await?;
        if let Some(named) = &target.named {
            plan.sink = named.sink.clone();
            plan.materialized = named.kind == sluice_planner::statement::NamedKind::MaterializedView;
        }
        let reads = sluice_planner::views::read_names(query);
        let schema = plan.schema.clone();
        let bounded = plan.sources.iter().all(|source| source.connector.is_bounded());
        let append_only = plan.append_only;
        let description = plan.describe();
        let warnings = plan.warnings.clone();
        let stream_plan = Arc::new(plan.clone());
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
            query_settings.checkpoint = Some(CheckpointConfig { dir, interval, fsync: self.fsync });
        }
        let (handle, events) = sluice_runtime::spawn_query_subscribed(plan, query_settings.clone())?;
        self.next_query.fetch_max(number.saturating_add(1), Ordering::Relaxed);
        drop(guard);
        let query = Arc::new(RunningQuery {
            id: id.clone(),
            sql: located.text,
            handle,
            schema: schema.clone(),
            plan: description,
            stream_plan,
            warnings: warnings.clone(),
            started: SystemTime::now(),
            settings: query_settings,
            request_settings: settings.clone(),
            bounded,
            append_only,
            transient,
            named: target.named.clone(),
            reads,
        });
        self.queries_write().insert(number, query.clone());
        Ok(Subscription { query, events, first_available: 0 })
    }

    /// Query settings from a request's settings, with streams resolved.
    pub fn query_settings(&self, settings: &Settings) -> Result<QuerySettings, EngineError> {
        let mut query = settings_from(settings)?;
        if query.retained_rows > self.limits.max_retained_rows {
            return Err(EngineError::invalid(format!(
                "retained_rows = {} is over this server's limit of {} (--max-retained-rows)",
                query.retained_rows, self.limits.max_retained_rows
            )));
        }
        query.max_state_bytes = self.limits.max_state_bytes;
        if !settings.contains_key("parallelism") {
            query.parallelism = self.limits.parallelism;
        }
        if let Some(stream) = settings.get("late_rows_to") {
            let name = stream.to_ascii_lowercase();
            let spec = self.stream(&name).ok_or_else(|| {
                EngineError::new(
                    crate::error::ErrorCode::UnknownObject,
                    format!("late_rows_to names unknown stream {name:?}"),
                )
            })?;
            match spec.connector {
                ConnectorSpec::Http(ingest) => query.late_rows_to = Some(ingest),
                other => {
                    return Err(EngineError::invalid(format!(
                        "late_rows_to needs an 'http' stream for other queries to read; {name:?} is {}",
                        other.kind()
                    )));
                }
            }
        }
        Ok(query)
    }

    pub fn queries(&self) -> Vec<Arc<RunningQuery>> {
        self.queries_read().values().cloned().collect()
    }

    pub fn query(&self, id: &str) -> Option<Arc<RunningQuery>> {
        self.queries_read().get(&query_number(id)?).cloned()
    }

    /// Cancels and forgets a query.
    pub fn drop_query(&self, id: &str) -> Option<Arc<RunningQuery>> {
        let query = self.queries_write().remove(&query_number(id)?)?;
        query.handle.cancel();
        if let Some(named) = &query.named {
            self.catalog_write().remove_view(&named.name);
        }
        if let Some(checkpoint) = &query.settings.checkpoint {
            let _ = std::fs::remove_dir_all(&checkpoint.dir);
        }
        if let Err(error) = self.persist() {
            tracing::error!("{error}");
        }
        Some(query)
    }

    /// `SHOW QUERIES`.
    pub(super) fn show_queries(&self) -> Result<StatementResult, EngineError> {
        let reports: Vec<_> = self.queries().iter().map(|query| query.report()).collect();
        StatementResult::rows(vec![
            ("query_id", strings(reports.iter().map(|report| &report.id))),
            ("status", strings(reports.iter().map(|report| report.status.name()))),
            ("rows_in", counts(reports.iter().map(|report| report.metrics.rows_in))),
            ("rows_out", counts(reports.iter().map(|report| report.metrics.rows_out))),
            ("late_rows_dropped", counts(reports.iter().map(|report| report.metrics.late_rows_dropped))),
            ("malformed_records", counts(reports.iter().map(|report| report.metrics.malformed_records))),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_ids() {
        assert_eq!(query_number("q7"), Some(7));
        assert_eq!(query_number("q99999999999999999999"), None);
        assert_eq!(query_number("7"), None);
        assert_eq!(query_number("q-1"), None);
    }
}
