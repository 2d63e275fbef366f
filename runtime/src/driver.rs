//! The epoch loop of one query.
//!
//! # Algorithm
//!
//! ```text
//!   source tasks ──(bounded channel)──► driver ──► pipeline ──► QueryOutput
//!                                        │
//!   every epoch: drain the channel; per source, in arrival order:
//!     event times → lateness verdict (row by row) → drop late rows
//!     → Batch into the source's node → Watermark if it advanced
//! ```
//!
//! With an epoch interval of 0 the driver runs an epoch as soon as anything
//! arrives. Otherwise it runs one every interval, and sooner when the
//! source queue is full (the sources would otherwise stall until the tick)
//! or a source has ended. Results never depend on the interval: lateness is decided row by
//! row (see [`crate::time`]), and windows close on watermarks only.
//!
//! A query with a data directory checkpoints every `checkpoint_interval`,
//! between two epochs: the driver sends a barrier through the pipeline
//! ([`Pipeline::checkpoint`]: each node's state is taken as the barrier
//! passes it) and, once the barrier is out of the root, writes those states
//! with the sources' positions. It also logs each step it takes; starting
//! from a checkpoint and replaying that log is [`crate::recovery`]'s.
//!
//! A query with `max_lag` measures every epoch how far behind its input it
//! is and sets the rate its sources keep rows at; each logged step says the
//! rate its chunk was taken at (see [`crate::shed`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Float64Array, RecordBatch, TimestampNanosecondArray};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::{self, CheckpointStore, Counters, Manifest, SourceCheckpoint, Step, Written};
use crate::error::{Result, RuntimeError};
use crate::message::{Message, StreamBatch, Watermark};
use crate::metrics::QueryMetrics;
use crate::operator::OperatorContext;
use crate::operators::window_assign::WindowKind;
use crate::output::{OutputEvent, QueryOutput};
use crate::pipeline::Pipeline;
use crate::plan::{PlanNode, StreamPlan};
use crate::recovery::{Chunk, LogHold, Recovery, Replay};
use crate::settings::QuerySettings;
use crate::sink::{SharedSinkReport, Sink};
use crate::source::{self, ConnectorSpec, SourceContext, SourceEvent};
use crate::time::{duration_nanos, event_times};
use crate::watermark::WatermarkTracker;

/// Checkpoint failures kept in a query's report.
const MAX_CHECKPOINT_WARNINGS: usize = 10;

/// How often a query without an epoch ticker looks whether its
/// background checkpoint is written.
const CHECKPOINT_POLL: Duration = Duration::from_millis(10);

/// Checkpoint pauses kept in the report, newest last.
const RECENT_PAUSES: usize = 100;

/// The error of a query stopped by
/// [`QuerySettings::halt_after_steps`](crate::settings::QuerySettings::halt_after_steps).
pub const HALTED: &str = "halted to simulate a crash";

/// Chunks of late rows waiting to be posted to the late-rows stream.
const LATE_ROWS_QUEUE: usize = 256;

/// Source events buffered between a query's sources and its driver.
const SOURCE_QUEUE: usize = 64;

/// How often a query without an epoch ticker (`epoch_interval = 0`) moves
/// the watermark of its processing-time sources on when no rows arrive.
const PROCESSING_TIME_TICK: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, PartialEq)]
pub enum QueryStatus {
    Running,
    Finished,
    Failed(String),
    Cancelled,
}

impl QueryStatus {
    pub fn name(&self) -> &'static str {
        match self {
            QueryStatus::Running => "running",
            QueryStatus::Finished => "finished",
            QueryStatus::Failed(_) => "failed",
            QueryStatus::Cancelled => "cancelled",
        }
    }
}

/// A running (or stopped) query.
pub struct QueryHandle {
    pub metrics: Arc<QueryMetrics>,
    pub output: Arc<QueryOutput>,
    status: Arc<Mutex<QueryStatus>>,
    cancel: CancellationToken,
    /// Asks the driver to checkpoint and stop (see [`QueryHandle::shutdown`]).
    shutdown: CancellationToken,
    /// Cancelled when the driver's task has ended, however it ended.
    stopped: CancellationToken,
    /// The query's holds on http event logs: kept while the query is
    /// listed, even failed, so a restart can restore it.
    _holds: Vec<LogHold>,
    /// What its sink did, if it has one.
    pub sink: Option<SharedSinkReport>,
}

impl QueryHandle {
    pub fn status(&self) -> QueryStatus {
        self.status.lock().map(|status| status.clone()).unwrap_or(QueryStatus::Running)
    }

    /// For a server shutting down: the query takes a final checkpoint
    /// between two epochs, tells its subscribers
    /// ([`OutputEvent::Shutdown`]) and stops; it completes when the query
    /// has stopped (at once for one that already ended). Its status stays
    /// running: it resumes from that checkpoint, with nothing to replay.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        self.stopped.cancelled().await;
    }

    /// Stops the query and its sources.
    pub fn cancel(&self) {
        if let Ok(mut status) = self.status.lock()
            && *status == QueryStatus::Running
        {
            *status = QueryStatus::Cancelled;
        }
        self.cancel.cancel();
        self.output.finish(OutputEvent::Failed { message: "query cancelled".into() });
    }
}

impl Drop for QueryHandle {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Starts a query: its source tasks and its driver task.
pub fn spawn_query(plan: StreamPlan, settings: QuerySettings) -> Result<QueryHandle> {
    spawn_query_subscribed(plan, settings).map(|(handle, _)| handle)
}

/// Starts a query with a first subscriber, subscribed before any source
/// runs: it sees every row from seq 0, however fast the query is.
pub fn spawn_query_subscribed(
    plan: StreamPlan,
    settings: QuerySettings,
) -> Result<(QueryHandle, mpsc::Receiver<OutputEvent>)> {
    // The query's tasks (sources, driver) run on the pipeline threads.
    let pipeline_runtime = crate::cpu::handle();
    let _on_pipeline_threads = pipeline_runtime.as_ref().map(tokio::runtime::Handle::enter);
    let metrics = Arc::new(QueryMetrics::default());
    let context = OperatorContext { metrics: metrics.clone(), parallelism: settings.parallelism };
    let pipeline = Pipeline::new(&plan, &context)?;
    let mut output =
        QueryOutput::new(plan.schema.clone(), settings.retained_rows).with_queue(settings.subscriber_queue);
    if plan.materialized {
        output = output.with_current_result()?;
    }
    let output = Arc::new(output);
    let status = Arc::new(Mutex::new(QueryStatus::Running));
    let cancel = CancellationToken::new();
    let plan_names = plan_names(&plan);
    let mut pipeline = pipeline;
    let recovery = Recovery::start(&plan, &settings, &plan_names, &mut pipeline, &output, &metrics)?;
    // The sink settles what an earlier run left before any row is written.
    let sink_report = plan.sink.as_ref().map(|_| SharedSinkReport::default());
    let sink = match (&plan.sink, &sink_report) {
        (Some(spec), Some(report)) => {
            let mut sink = crate::sink::create(spec, &plan.schema, plan.append_only, report.clone())?;
            let restored = recovery.restored.as_ref().map(|restored| restored.manifest.id);
            sink.open(restored, output.rows_published(), recovery.store.is_some())?;
            Some(sink)
        }
        _ => None,
    };
    let subscriber = output.subscribe(0);
    // A query with `max_lag` sheds the scans planned for it.
    let shed = settings.max_lag.filter(|_| plan.sources.iter().any(|spec| spec.shed)).map(|max_lag| {
        let controller = crate::shed::Controller::new(max_lag, settings.epoch_interval);
        (Arc::new(crate::shed::ShedRate::default()), controller)
    });
    if shed.is_some() {
        metrics.set_shedding(1.0, Duration::ZERO);
    }
    let (events, receiver) = mpsc::channel(SOURCE_QUEUE);
    for (index, spec) in plan.sources.iter().enumerate() {
        if recovery.source(index).is_some_and(|source| source.ended) {
            continue;
        }
        let context = SourceContext {
            index,
            events: events.clone(),
            metrics: metrics.clone(),
            cancel: cancel.child_token(),
            resume: recovery.resumes[index].clone(),
            shed: shed.as_ref().filter(|_| spec.shed).map(|(rate, _)| rate.clone()),
        };
        source::spawn(spec, context);
    }
    drop(events);
    let allowed_lateness = plan.allowed_lateness.map_or(0, duration_nanos);
    // Late rows are handed to a task that posts them, in order, to their
    // stream; a full queue drops them (they are counted as late anyway).
    let late_rows = settings.late_rows_to.clone().map(|ingest| {
        let (sender, mut receiver) = mpsc::channel::<Vec<String>>(LATE_ROWS_QUEUE);
        // Not tied to the query's cancellation: rows already routed are
        // delivered even when the query finishes right after; the task
        // ends once the driver (the sender) is gone and the queue drained.
        tokio::spawn(async move {
            while let Some(lines) = receiver.recv().await {
                // A failed append is the target stream's to report.
                let _ = ingest.publish(lines).await;
            }
        });
        sender
    });
    let driver = Driver {
        sources: plan
            .sources
            .iter()
            .enumerate()
            .map(|(index, spec)| SourceState {
                event_time_column: spec.event_time.map(|event_time| event_time.column),
                tracker: spec.event_time.map(|event_time| {
                    let mut tracker = WatermarkTracker::new(event_time.delay).with_allowed_lateness(allowed_lateness);
                    tracker.restore(recovery.source(index).and_then(|source| source.max_event_time));
                    tracker
                }),
                ended: recovery.source(index).is_some_and(|source| source.ended),
                last_active: Instant::now(),
                idle: recovery.source(index).is_some_and(|source| source.idle),
                proctime_column: spec.proctime_column,
                schema: spec.schema.clone(),
                processing_time: spec.is_processing_time(),
                window: plan.source_windows.get(index).copied().flatten(),
                position: recovery.resumes[index].position,
                replayable: !matches!(spec.connector, ConnectorSpec::Socket { .. }),
                rows_seen: recovery.source(index).map_or(0, |source| source.rows_seen),
                sample: spec.sample,
                rate_column: spec.rate_column(),
            })
            .collect(),
        pipeline,
        metrics: metrics.clone(),
        output: output.clone(),
        settings,
        late_rows,
        last_clock: recovery.last_clock(),
        restored: recovery.restored.is_some(),
        store: recovery.store,
        replay: recovery.replay,
        holds: recovery.holds.clone(),
        plan_names,
        steps: 0,
        sink,
        sink_report: sink_report.clone(),
        sink_error: None,
        shed,
    };
    let task_status = status.clone();
    let output_for_task = output.clone();
    let task_cancel = cancel.clone();
    let shutdown = CancellationToken::new();
    let stopped = CancellationToken::new();
    let (task_shutdown, task_stopped) = (shutdown.clone(), stopped.clone());
    tokio::spawn(async move {
        let _stopped = task_stopped.drop_guard();
        let result = tokio::select! {
            _ = task_cancel.cancelled() => return,
            result = driver.run(receiver, task_shutdown) => result,
        };
        let (final_status, event) = match result {
            Ok(Ended::Finished) => (QueryStatus::Finished, OutputEvent::End),
            Ok(Ended::Shutdown) => (QueryStatus::Running, OutputEvent::Shutdown),
            Err(error) => (QueryStatus::Failed(error.to_string()), OutputEvent::Failed { message: error.to_string() }),
        };
        // Status first, so a client that saw the end sees the final status.
        if let Ok(mut status) = task_status.lock() {
            *status = final_status;
        }
        output_for_task.finish(event);
        // Stop the source tasks: the query is done with them.
        task_cancel.cancel();
    });
    let holds = recovery.holds.into_iter().flatten().collect();
    Ok((
        QueryHandle { metrics, output, status, cancel, shutdown, stopped, _holds: holds, sink: sink_report },
        subscriber,
    ))
}

struct SourceState {
    event_time_column: Option<usize>,
    tracker: Option<WatermarkTracker>,
    ended: bool,
    /// When rows last arrived (or the query started).
    last_active: Instant,
    /// Declared idle to the pipeline, and no rows since.
    idle: bool,
    /// Where to put the arrival time (a PROCTIME() column).
    proctime_column: Option<usize>,
    schema: SchemaRef,
    /// Time is the clock: the watermark follows it even without rows.
    processing_time: bool,
    /// The windows this source's rows are assigned to, to count late rows
    /// per window.
    window: Option<WindowKind>,
    /// Where the source is, after the rows the pipeline has taken.
    position: u64,
    /// The source can be rewound to a position (all but sockets).
    replayable: bool,
    /// Rows the source delivered so far: the number of the next row.
    rows_seen: u64,
    /// The scan's TABLESAMPLE, if any.
    sample: Option<crate::source::SourceSample>,
    /// A shed scan's rate column (see [`crate::shed`]).
    rate_column: Option<usize>,
}

struct Driver {
    sources: Vec<SourceState>,
    pipeline: Pipeline,
    metrics: Arc<QueryMetrics>,
    output: Arc<QueryOutput>,
    settings: QuerySettings,
    late_rows: Option<mpsc::Sender<Vec<String>>>,
    /// The last processing time handed out (see `clock`).
    last_clock: i64,
    store: Option<CheckpointStore>,
    replay: Option<Replay>,
    /// The operator at each plan node, to match checkpoints to plans.
    holds: Vec<Option<LogHold>>,
    plan_names: Vec<String>,
    /// Started from a checkpoint.
    restored: bool,
    /// Steps taken by this run (see `QuerySettings::halt_after_steps`).
    steps: u64,
    /// Where the results are also written (see [`crate::sink`]).
    sink: Option<Box<dyn Sink>>,
    sink_report: Option<SharedSinkReport>,
    /// A sink that failed at a checkpoint: the query fails with it.
    sink_error: Option<RuntimeError>,
    /// A shedding query's rate, shared with its sources, and what sets it.
    shed: Option<(Arc<crate::shed::ShedRate>, crate::shed::Controller)>,
}

/// How often a query with a state limit measures its state.
const STATE_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// How a driver's run ended well.
enum Ended {
    /// Every source ended (or a LIMIT was met).
    Finished,
    /// Stopped for a shutdown after a final checkpoint.
    Shutdown,
}

impl Driver {
    async fn run(mut self, receiver: mpsc::Receiver<SourceEvent>, shutdown: CancellationToken) -> Result<Ended> {
        self.run_epochs(receiver, &shutdown).await
    }

    async fn run_epochs(
        &mut self,
        mut receiver: mpsc::Receiver<SourceEvent>,
        shutdown: &CancellationToken,
    ) -> Result<Ended> {
        let mut ticker = (!self.settings.epoch_interval.is_zero()).then(|| {
            let mut ticker = tokio::time::interval(self.settings.epoch_interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker
        });
        if self.sources.is_empty() {
            return Err(RuntimeError::user("a continuous query needs at least one stream"));
        }
        // A first checkpoint records where the sources start (an http
        // stream's log position), so even an early crash resumes exactly.
        if !self.restored {
            self.checkpoint();
        }
        // Restored after it finished: nothing more to do.
        if self.pipeline.is_finished() {
            self.finish_sink()?;
            return Ok(Ended::Finished);
        }
        let mut pending = Vec::new();
        let metrics = self.metrics.clone();
        let mut last_state_check = Instant::now();
        loop {
            // A busy query may never wait below: look every epoch too.
            if shutdown.is_cancelled() {
                return Ok(self.stop_for_shutdown());
            }
            match &mut ticker {
                // A full queue holds its sources back and an ended source
                // has nothing more to wait for: neither waits for the tick.
                Some(ticker) => {
                    tokio::select! {
                        _ = ticker.tick() => {}
                        _ = take_until_full_or_ended(&mut receiver, &mut pending) => {}
                        // Someone looks at a quiet query: fresh figures now.
                        _ = metrics.state_wanted() => {
                            self.pipeline.refresh_state_figures(true);
                            continue;
                        }
                        _ = shutdown.cancelled() => return Ok(self.stop_for_shutdown()),
                    }
                }
                None if !pending.is_empty() => {}
                // Without a ticker an epoch runs per source event, and also
                // when a source is due to be declared idle or the clock of a
                // processing-time source has moved on.
                None => {
                    let wake = self.next_wake();
                    let writing = self.store.as_ref().is_some_and(CheckpointStore::is_writing);
                    let wait = async {
                        match wake {
                            Some(wake) => tokio::time::sleep_until(wake.into()).await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        event = receiver.recv() => match event {
                            Some(event) => pending.push(event),
                            None if self.replay.is_some() => {
                                return Err(RuntimeError::user(
                                    "recovery cannot replay: the sources ended before the input log did (did their data change?)",
                                ));
                            }
                            None => {
                                return Err(RuntimeError::internal("every source stopped without ending"));
                            }
                        },
                        _ = wait => {}
                        // A checkpoint written in the background is seen
                        // committed soon, rows or not.
                        _ = tokio::time::sleep(CHECKPOINT_POLL), if writing => {
                            self.poll_checkpoint();
                            continue;
                        }
                        _ = metrics.state_wanted() => {
                            self.pipeline.refresh_state_figures(true);
                            continue;
                        }
                        _ = shutdown.cancelled() => return Ok(self.stop_for_shutdown()),
                    }
                }
            }
            while let Ok(event) = receiver.try_recv() {
                pending.push(event);
            }
            let events = match self.settings.max_steps_per_epoch {
                Some(max) if pending.len() > max => pending.drain(..max).collect(),
                _ => std::mem::take(&mut pending),
            };
            // An operator bug must fail this query, not hang its subscribers.
            let epoch = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.epoch(events)));
            epoch.map_err(|panic| {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|message| message.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                RuntimeError::internal(format!("an operator panicked: {message}"))
            })??;
            if self.pipeline.is_finished() {
                // A finished query restarts finished, not from the beginning.
                self.checkpoint();
                if let Some(error) = self.sink_error.take() {
                    return Err(error);
                }
                self.finish_sink()?;
                self.pipeline.refresh_state_figures(true);
                return Ok(Ended::Finished);
            }
            self.pipeline.refresh_state_figures(false);
            if let Some(limit) = self.settings.max_state_bytes
                && last_state_check.elapsed() >= STATE_CHECK_EVERY
            {
                last_state_check = Instant::now();
                self.pipeline.check_state(limit)?;
            }
            self.poll_checkpoint();
            if self.replay.is_none() && self.store.as_ref().is_some_and(CheckpointStore::due) {
                self.checkpoint_in_background();
            }
            if let Some(error) = self.sink_error.take() {
                return Err(error);
            }
            if receiver.is_closed()
                && receiver.is_empty()
                && pending.is_empty()
                && self.replay.is_none()
                && self.sources.iter().any(|source| !source.ended)
            {
                return Err(RuntimeError::internal("a source stopped without ending"));
            }
        }
    }

    /// The final checkpoint of a shutdown (between two epochs, so nothing
    /// is left to replay after it).
    fn stop_for_shutdown(&mut self) -> Ended {
        if self.replay.is_none() {
            self.checkpoint();
        }
        Ended::Shutdown
    }

    /// One epoch: everything the sources produced since the last one.
    fn epoch(&mut self, events: Vec<SourceEvent>) -> Result<()> {
        let watermark_before = self.metrics.watermark();
        // Latency is measured from the oldest rows the epoch reads (not
        // while replaying: those rows arrived before a crash).
        let oldest_rows = match self.replay {
            Some(_) => None,
            None => events
                .iter()
                .filter_map(|event| match event {
                    SourceEvent::Rows { rows: Some(_), sent_at, .. } => Some(*sent_at),
                    _ => None,
                })
                .min(),
        };
        // A shedding query measures how far behind its input it is.
        let lag = match (&self.replay, &self.shed) {
            (None, Some(_)) => events
                .iter()
                .filter_map(|event| match event {
                    SourceEvent::Rows { due_at, .. } => Some(due_at.elapsed()),
                    _ => None,
                })
                .max(),
            _ => None,
        };
        let mut output = Vec::new();
        for (step, rows, replayed) in self.order(events)? {
            self.apply(step, rows, replayed, &mut output)?;
            self.steps += 1;
            if self.settings.halt_after_steps == Some(self.steps) {
                return Err(RuntimeError::internal(HALTED));
            }
        }
        if self.replay.is_none() {
            self.declare_idle_sources(&mut output)?;
            self.advance_processing_time(&mut output)?;
        }
        // The steps behind this epoch's rows are logged before anyone sees
        // the rows.
        if let Some(store) = &mut self.store {
            // The http events behind this epoch's rows are on disk before
            // its steps and rows are (a power loss cannot leave the log
            // shorter than a replay needs).
            for (hold, source) in self.holds.iter().zip(&self.sources) {
                if let Some(hold) = hold {
                    hold.ingest.make_durable(source.position).map_err(|error| {
                        RuntimeError::external(format!("cannot sync the stream's event log: {error}"))
                    })?;
                }
            }
            store.flush()?;
        } else {
            // Without checkpoints nothing is read again after a restart:
            // the log is held only from where the query has read to.
            for (hold, source) in self.holds.iter().zip(&self.sources) {
                if let Some(hold) = hold {
                    hold.hold.set(source.position);
                }
            }
        }
        QueryMetrics::add(&self.metrics.epochs, 1);
        let mut published = 0;
        for message in output {
            match message {
                Message::Batch(batch) => {
                    published += batch.num_rows() as u64;
                    QueryMetrics::add(&self.metrics.rows_out, batch.num_rows() as u64);
                    if let Some(sink) = &mut self.sink {
                        let seq = self.output.rows_published();
                        sink.write(seq, &batch).map_err(|error| self.sink_failed(error))?;
                    }
                    self.output.publish(batch)?;
                }
                Message::Watermark(watermark) => self.metrics.set_watermark(watermark),
                Message::Barrier(_) | Message::End | Message::Idle => {}
            }
        }
        if let Some(oldest) = oldest_rows.filter(|_| published > 0) {
            self.metrics.record_latency(oldest.elapsed(), published);
        }
        if let Some((shared, controller)) = &mut self.shed
            && self.replay.is_none()
        {
            let lag = lag.unwrap_or_default();
            controller.observe(lag);
            if let Some(rate) = controller.step(Instant::now()) {
                shared.set(rate);
                tracing::debug!("shedding: rate {rate:.4} at a lag of {lag:?}");
            }
            self.metrics.set_shedding(controller.rate(), lag);
        }
        let watermark = self.metrics.watermark();
        if watermark > watermark_before {
            self.output.progress(watermark);
        }
        Ok(())
    }

    /// The steps to take for `events`: in arrival order, or while
    /// recovering, in the order the input log gives (each source's events
    /// wait in its queue until their logged turn). Replayed steps are
    /// marked `true`.
    fn order(&mut self, events: Vec<SourceEvent>) -> Result<Vec<(Step, Option<Chunk>, bool)>> {
        let Some(replay) = &mut self.replay else {
            let mut steps = Vec::with_capacity(events.len());
            for event in events {
                steps.push(self.step_of(event)?);
            }
            return Ok(steps);
        };
        let replayable: Vec<bool> = self.sources.iter().map(|source| source.replayable).collect();
        let mut steps = replay.steps(events, &replayable)?;
        if replay.caught_up() {
            // Caught up: what the sources sent beyond the log runs as usual.
            let unlogged = self.replay.take().map(Replay::into_unlogged).unwrap_or_default();
            for event in unlogged {
                steps.push(self.step_of(event)?);
            }
        }
        Ok(steps)
    }

    /// A new (not replayed) step for a source event.
    fn step_of(&mut self, event: SourceEvent) -> Result<(Step, Option<Chunk>, bool)> {
        Ok(match event {
            SourceEvent::Rows { source, rows, position, malformed, rate, shed, .. } => {
                let now = if self.sources[source].proctime_column.is_some() { self.clock() } else { 0 };
                (Step::Rows { source, position, now, rate }, Some(Chunk { rows, malformed, shed }), false)
            }
            SourceEvent::End { source } => (Step::End { source }, None, false),
            SourceEvent::Failed { source, message } => {
                return Err(RuntimeError::external(format!("source {source} failed: {message}")));
            }
        })
    }

    /// Takes one step, logging it unless it is being replayed.
    fn apply(&mut self, step: Step, chunk: Option<Chunk>, replayed: bool, output: &mut Vec<Message>) -> Result<()> {
        if !replayed && let Some(store) = &mut self.store {
            store.log(&step)?;
        }
        match step {
            Step::Rows { source, position, now, rate } => {
                self.sources[source].position = position;
                if let Some(Chunk { rows, malformed, shed }) = chunk {
                    self.metrics.record_malformed(malformed.records, malformed.problem);
                    QueryMetrics::add(&self.metrics.rows_shed, shed);
                    if let Some(rows) = rows.filter(|rows| rows.num_rows() > 0) {
                        let state = &mut self.sources[source];
                        let first_row = state.rows_seen;
                        state.rows_seen += rows.num_rows() as u64;
                        // A sampled scan keeps the rows its numbers select.
                        let rows = match state.sample {
                            Some(sample) => filter_record_batch(&rows, &sample.keep(first_row, rows.num_rows()))?,
                            None => rows,
                        };
                        if rows.num_rows() > 0 {
                            // The chance each row had of being kept.
                            let kept = rate * state.sample.map_or(1.0, |sample| sample.fraction.min(1.0));
                            self.ingest(source, rows, now, kept, replayed, output)?;
                        }
                    }
                }
            }
            Step::End { source } => {
                self.sources[source].ended = true;
                self.pipeline.push_source(source, Message::End, output)?;
            }
            Step::Idle { source } => {
                self.sources[source].idle = true;
                self.pipeline.push_source(source, Message::Idle, output)?;
            }
            Step::Clock { source, now } => {
                self.last_clock = self.last_clock.max(now);
                let Some(tracker) = self.sources[source].tracker.as_mut() else { return Ok(()) };
                let before = tracker.watermark();
                tracker.observe(&[Some(now)]);
                if tracker.watermark() > before {
                    self.pipeline.push_source(source, Message::Watermark(tracker.watermark()), output)?;
                }
            }
        }
        Ok(())
    }

    /// A checkpoint, waited for: the first (where the sources start), a
    /// finished query's and a shutdown's. A failure is reported on the
    /// query, which goes on (the previous checkpoint stays valid).
    fn checkpoint(&mut self) {
        self.take_checkpoint(true);
    }

    /// A periodic checkpoint: the query pauses only to snapshot its
    /// operators (immutable Arrow batches); a thread of its own encodes and
    /// writes them while epochs go on, and [`poll_checkpoint`]
    /// (Self::poll_checkpoint) sees its manifest committed.
    fn checkpoint_in_background(&mut self) {
        self.take_checkpoint(false);
    }

    fn take_checkpoint(&mut self, wait: bool) {
        let Some(store) = &mut self.store else { return };
        // The pause counts any wait for the write before (one at a time).
        let started = Instant::now();
        if let Some(written) = store.wait() {
            self.checkpoint_written(written);
        }
        match self.begin_checkpoint() {
            Ok(()) => {
                let pause_ms = started.elapsed().as_secs_f64() * 1000.0;
                self.metrics.update_checkpoints(|report| {
                    report.last_pause_ms = Some(pause_ms);
                    if report.recent_pauses_ms.len() >= RECENT_PAUSES {
                        report.recent_pauses_ms.remove(0);
                    }
                    report.recent_pauses_ms.push((pause_ms * 100.0).round() / 100.0);
                });
            }
            Err(error) => self.checkpoint_failed(error),
        }
        if wait && let Some(written) = self.store.as_mut().and_then(CheckpointStore::wait) {
            self.checkpoint_written(written);
        }
    }

    /// A checkpoint written in the background, once it is.
    fn poll_checkpoint(&mut self) {
        if let Some(written) = self.store.as_mut().and_then(CheckpointStore::poll) {
            self.checkpoint_written(written);
        }
    }

    fn checkpoint_written(&mut self, written: Result<Written>) {
        match written {
            Ok(written) => {
                self.metrics.update_checkpoints(|report| {
                    report.last_id = Some(written.manifest.id);
                    report.last_taken_at_ms = Some(written.manifest.taken_at_ms);
                    report.last_bytes = Some(written.bytes);
                    report.last_reused_bytes = Some(written.reused_bytes);
                    report.last_duration_ms = Some(written.write_ms);
                });
                if let Some(sink) = &mut self.sink
                    && let Err(error) = sink.commit(written.manifest.id)
                {
                    // Committed with the next checkpoint, or after a restart.
                    self.checkpoint_failed(RuntimeError::external(format!("the sink cannot commit: {error}")));
                }
                self.release_logs();
            }
            Err(error) => self.checkpoint_failed(error),
        }
    }

    fn checkpoint_failed(&self, error: RuntimeError) {
        tracing::warn!("checkpoint failed: {error}");
        self.metrics.update_checkpoints(|report| {
            // The newest few, not one per failed try forever.
            if report.warnings.len() >= MAX_CHECKPOINT_WARNINGS {
                report.warnings.remove(0);
            }
            report.warnings.push(format!("checkpoint failed: {error}"));
        });
    }

    /// After a checkpoint: each http log is held only from where the
    /// oldest kept checkpoint reads, and segments before that may go.
    fn release_logs(&self) {
        let Some(store) = &self.store else { return };
        if self.holds.iter().all(Option::is_none) {
            return;
        }
        let kept = store.kept_positions();
        for (index, hold) in self.holds.iter().enumerate() {
            let Some(hold) = hold else { continue };
            if let Some(oldest) = kept.iter().filter_map(|positions| positions.get(index)).min() {
                hold.hold.set(*oldest);
            }
            if let Err(error) = hold.ingest.compact() {
                tracing::warn!("cannot delete old event log segments: {error}");
            }
        }
    }

    /// Snapshots every operator and the output and hands them to the
    /// store's writer.
    fn begin_checkpoint(&mut self) -> Result<()> {
        let Some(barrier) = self.store.as_ref().map(CheckpointStore::next_id) else {
            return Err(RuntimeError::internal("no checkpoint store"));
        };
        // The barrier has reached the result when this returns.
        let nodes = self.pipeline.checkpoint(barrier)?;
        let output = self.output.snapshot()?;
        let metrics = &self.metrics;
        let manifest = Manifest {
            format_version: checkpoint::FORMAT_VERSION,
            id: 0,
            taken_at_ms: checkpoint::now_ms(),
            plan: self.plan_names.clone(),
            sources: self
                .sources
                .iter()
                .map(|source| SourceCheckpoint {
                    position: source.position,
                    max_event_time: source.tracker.as_ref().and_then(WatermarkTracker::max_event_time),
                    ended: source.ended,
                    idle: source.idle,
                    rows_seen: source.rows_seen,
                })
                .collect(),
            last_clock: self.last_clock,
            counters: Counters {
                rows_in: QueryMetrics::get(&metrics.rows_in),
                rows_out: QueryMetrics::get(&metrics.rows_out),
                epochs: QueryMetrics::get(&metrics.epochs),
                late_rows_dropped: QueryMetrics::get(&metrics.late_rows_dropped),
                malformed_records: QueryMetrics::get(&metrics.malformed_records),
                watermark: metrics.watermark().0,
                rows_shed: QueryMetrics::get(&metrics.rows_shed),
            },
            files: Vec::new(),
        };
        for (hold, source) in self.holds.iter().zip(&self.sources) {
            if let Some(hold) = hold {
                hold.ingest
                    .make_durable(source.position)
                    .map_err(|error| RuntimeError::external(format!("cannot sync the stream's event log: {error}")))?;
            }
        }
        // Everything the sink was given so far belongs to this checkpoint.
        if let Some(sink) = &mut self.sink
            && let Err(error) = sink.prepare(barrier)
        {
            // The query cannot go on without its sink (rows would pile up
            // unwritten): it fails with the sink's error.
            let failed = self.sink_failed(error);
            self.sink_error = Some(RuntimeError::external(failed.to_string()));
            return Err(failed);
        }
        let Some(store) = &mut self.store else { return Err(RuntimeError::internal("no checkpoint store")) };
        store.begin(manifest, nodes, output)?;
        Ok(())
    }

    /// The query ended: the sink makes everything visible. (With
    /// checkpoints, the final one committed it already.)
    fn finish_sink(&mut self) -> Result<()> {
        let Some(sink) = &mut self.sink else { return Ok(()) };
        let error = match sink.finish() {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        Err(self.sink_failed(error))
    }

    /// A failed sink fails its query (a row it lost would be a row lost).
    fn sink_failed(&self, error: RuntimeError) -> RuntimeError {
        let message = format!("the sink failed: {error}");
        if let Some(report) = &self.sink_report {
            crate::sink::update(report, |report| report.last_error = Some(message.clone()));
        }
        RuntimeError::external(message)
    }

    /// When a query without an epoch ticker must run an epoch although no
    /// source sent anything: when the first active event-time source reaches
    /// the idle timeout, and every [`PROCESSING_TIME_TICK`] while a
    /// processing-time source runs. `None` while replaying (the input log
    /// says when those steps happened).
    fn next_wake(&self) -> Option<Instant> {
        if self.replay.is_some() {
            return None;
        }
        let running = || self.sources.iter().filter(|source| !source.ended);
        let idle = self.settings.idle_timeout.and_then(|timeout| {
            running()
                .filter(|source| source.tracker.is_some() && !source.idle)
                .map(|source| source.last_active + timeout)
                .min()
        });
        let clock = running().any(|source| source.processing_time).then(|| Instant::now() + PROCESSING_TIME_TICK);
        idle.into_iter().chain(clock).min()
    }

    /// Processing time, in nanoseconds since the epoch, never going back.
    fn clock(&mut self) -> i64 {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, duration_nanos);
        self.last_clock = self.last_clock.max(now);
        self.last_clock
    }

    /// Processing-time sources: the watermark is the clock, rows or not.
    fn advance_processing_time(&mut self, output: &mut Vec<Message>) -> Result<()> {
        for source in 0..self.sources.len() {
            if !self.sources[source].processing_time || self.sources[source].ended {
                continue;
            }
            let now = self.clock();
            let state = &self.sources[source];
            let Some(tracker) = state.tracker.as_ref() else { continue };
            if now.saturating_sub(tracker.delay()) > tracker.watermark().0 {
                self.apply(Step::Clock { source, now }, None, false, output)?;
            }
        }
        Ok(())
    }

    /// Sources with event time that sent nothing for the idle timeout stop
    /// holding back the watermark until they send rows again.
    fn declare_idle_sources(&mut self, output: &mut Vec<Message>) -> Result<()> {
        let Some(timeout) = self.settings.idle_timeout else {
            return Ok(());
        };
        for source in 0..self.sources.len() {
            let state = &self.sources[source];
            if state.tracker.is_some() && !state.ended && !state.idle && state.last_active.elapsed() >= timeout {
                self.apply(Step::Idle { source }, None, false, output)?;
            }
        }
        Ok(())
    }

    /// Watermarks a source's rows, drops late ones, and pushes the rest.
    fn ingest(
        &mut self,
        source: usize,
        rows: RecordBatch,
        now: i64,
        kept: f64,
        replayed: bool,
        output: &mut Vec<Message>,
    ) -> Result<()> {
        QueryMetrics::add(&self.metrics.rows_in, rows.num_rows() as u64);
        let state = &self.sources[source];
        let rows = match (state.proctime_column, state.rate_column) {
            (None, None) => rows,
            (proctime, rate) => {
                with_added_columns(rows, &state.schema, proctime.map(|column| (column, now)), rate.map(|_| kept))?
            }
        };
        let state = &mut self.sources[source];
        state.last_active = Instant::now();
        state.idle = false;
        let (Some(column), Some(tracker)) = (state.event_time_column, state.tracker.as_mut()) else {
            return self.pipeline.push_source(source, Message::Batch(StreamBatch::inserts(rows)), output);
        };
        let before = tracker.watermark();
        let times = event_times(rows.column(column))?;
        let verdict = tracker.observe(&times);
        let after = tracker.watermark();
        QueryMetrics::add(&self.metrics.late_rows_dropped, verdict.late_rows as u64);
        self.metrics.record_malformed(
            verdict.rows_without_event_time as u64,
            (verdict.rows_without_event_time > 0).then(|| "record without an event time".to_string()),
        );
        if verdict.late_rows > 0
            && let Some(kind) = self.sources[source].window
        {
            let mut per_window: BTreeMap<i64, u64> = BTreeMap::new();
            for (time, late) in times.iter().zip(verdict.late.iter()) {
                if let (Some(time), Some(true)) = (time, late) {
                    *per_window.entry(kind.pane_start(*time)).or_default() += 1;
                }
            }
            for (window_start, rows) in per_window {
                self.metrics.record_late_window(window_start, rows);
            }
        }
        // Replayed late rows were routed before the crash.
        if verdict.late_rows > 0
            && !replayed
            && let Some(sender) = &self.late_rows
        {
            let late = filter_record_batch(&rows, &verdict.late)?;
            let _ = sender.try_send(json_lines(&late)?);
        }
        let rows = if verdict.late_rows + verdict.rows_without_event_time > 0 {
            filter_record_batch(&rows, &verdict.keep)?
        } else {
            rows
        };
        if rows.num_rows() > 0 {
            self.pipeline.push_source(source, Message::Batch(StreamBatch::inserts(rows)), output)?;
        }
        if after > before {
            self.pipeline.push_source(source, Message::Watermark(after), output)?;
        }
        Ok(())
    }
}

/// Takes source events into `pending` until a queue's worth
/// ([`SOURCE_QUEUE`]) is there or a source ended or failed; never returns
/// once the sources are gone (the epoch ticker then drives the loop).
/// Cancel-safe: whatever was received is in `pending`.
async fn take_until_full_or_ended(receiver: &mut mpsc::Receiver<SourceEvent>, pending: &mut Vec<SourceEvent>) {
    while pending.len() < SOURCE_QUEUE {
        let Some(event) = receiver.recv().await else {
            return std::future::pending().await;
        };
        let last = matches!(event, SourceEvent::End { .. } | SourceEvent::Failed { .. });
        pending.push(event);
        if last {
            return;
        }
    }
}

/// The operator at each node of `plan` (sources as `source`).
fn plan_names(plan: &StreamPlan) -> Vec<String> {
    plan.nodes
        .iter()
        .map(|node| match node {
            PlanNode::Source { .. } => "source".to_string(),
            PlanNode::Operator { spec, .. } => spec.name().to_string(),
        })
        .collect()
}

/// Adds the columns the query fills: a shed scan's rate (last) and a
/// PROCTIME() column holding the arrival time (at its place), giving the
/// stream's full `schema`.
fn with_added_columns(
    rows: RecordBatch,
    schema: &SchemaRef,
    arrival: Option<(usize, i64)>,
    rate: Option<f64>,
) -> Result<RecordBatch> {
    let mut columns = rows.columns().to_vec();
    if let Some(rate) = rate {
        columns.push(Arc::new(Float64Array::from(vec![rate; rows.num_rows()])));
    }
    if let Some((column, now)) = arrival {
        columns.insert(column.min(columns.len()), Arc::new(TimestampNanosecondArray::from(vec![now; rows.num_rows()])));
    }
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// Rows as JSON lines, for posting to an `http` stream.
fn json_lines(rows: &RecordBatch) -> Result<Vec<String>> {
    let mut writer = datafusion::arrow::json::LineDelimitedWriter::new(Vec::new());
    writer.write(rows)?;
    writer.finish()?;
    let text = String::from_utf8(writer.into_inner()).map_err(|error| RuntimeError::internal(error.to_string()))?;
    Ok(text.lines().map(str::to_string).collect())
}

/// Current watermark as reported to users: `None` before any event time.
pub fn displayed_watermark(metrics: &QueryMetrics) -> Option<i64> {
    let watermark = metrics.watermark();
    (watermark != Watermark::MIN).then_some(watermark.0)
}
