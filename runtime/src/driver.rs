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
//! arrives. Results never depend on the interval: lateness is decided row by
//! row (see [`crate::time`]), and windows close on watermarks only.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::arrow::array::{RecordBatch, TimestampNanosecondArray};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::error::{Result, RuntimeError};
use crate::message::{Message, StreamBatch, Watermark};
use crate::metrics::QueryMetrics;
use crate::operator::OperatorContext;
use crate::operator::OperatorSpec;
use crate::operators::window_assign::WindowKind;
use crate::output::{OutputEvent, QueryOutput};
use crate::pipeline::Pipeline;
use crate::plan::{PlanNode, StreamPlan};
use crate::source::{self, HttpIngest, SourceContext, SourceEvent};
use crate::time::{WatermarkTracker, event_times};

/// Chunks of late rows waiting to be posted to the late-rows stream.
const LATE_ROWS_QUEUE: usize = 256;

/// Source events buffered between a query's sources and its driver.
const SOURCE_QUEUE: usize = 64;

/// Per-query settings.
#[derive(Debug, Clone)]
pub struct QuerySettings {
    /// Time between epochs; zero runs an epoch whenever data arrives.
    pub epoch_interval: Duration,
    /// Result rows kept for subscribers that join late or reconnect.
    pub retained_rows: usize,
    /// Keys of an unbounded GROUP BY not updated for this long (processing
    /// time) are forgotten; `None` keeps them forever.
    pub state_ttl: Option<Duration>,
    /// An input with event time that sends nothing for this long stops
    /// holding back the query's watermark; `None` waits for it forever.
    pub idle_timeout: Option<Duration>,
    /// How long after a tumbling window fired late rows may still update it
    /// (its result is then retracted and emitted again); `None` drops them.
    pub allowed_lateness: Option<Duration>,
    /// Where late rows go besides being counted: an `http` stream other
    /// queries read (the "route" late-data policy).
    pub late_rows_to: Option<Arc<HttpIngest>>,
}

impl Default for QuerySettings {
    fn default() -> Self {
        Self {
            epoch_interval: Duration::from_millis(100),
            retained_rows: 10_000,
            state_ttl: None,
            idle_timeout: None,
            allowed_lateness: None,
            late_rows_to: None,
        }
    }
}

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
}

impl QueryHandle {
    pub fn status(&self) -> QueryStatus {
        self.status.lock().map(|status| status.clone()).unwrap_or(QueryStatus::Running)
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
    let metrics = Arc::new(QueryMetrics::default());
    let context = OperatorContext { settings: settings.clone(), metrics: metrics.clone() };
    let pipeline = Pipeline::new(&plan, &context)?;
    let output = Arc::new(QueryOutput::new(plan.schema.clone(), settings.retained_rows));
    let status = Arc::new(Mutex::new(QueryStatus::Running));
    let cancel = CancellationToken::new();
    let (events, receiver) = mpsc::channel(SOURCE_QUEUE);
    for (index, spec) in plan.sources.iter().enumerate() {
        let context =
            SourceContext { index, events: events.clone(), metrics: metrics.clone(), cancel: cancel.child_token() };
        source::spawn(spec, context);
    }
    drop(events);
    let allowed_lateness = settings.allowed_lateness.map_or(0, |lateness| lateness.as_nanos() as i64);
    // Late rows are handed to a task that posts them, in order, to their
    // stream; a full queue drops them (they are counted as late anyway).
    let late_rows = settings.late_rows_to.clone().map(|ingest| {
        let (sender, mut receiver) = mpsc::channel::<Vec<String>>(LATE_ROWS_QUEUE);
        // Not tied to the query's cancellation: rows already routed are
        // delivered even when the query finishes right after; the task
        // ends once the driver (the sender) is gone and the queue drained.
        tokio::spawn(async move {
            while let Some(lines) = receiver.recv().await {
                ingest.publish(lines).await;
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
                tracker: spec
                    .event_time
                    .map(|event_time| WatermarkTracker::new(event_time.delay).with_allowed_lateness(allowed_lateness)),
                ended: false,
                last_active: Instant::now(),
                idle: false,
                proctime_column: spec.proctime_column,
                schema: spec.schema.clone(),
                processing_time: spec.is_processing_time(),
                window: window_of_source(&plan, index),
            })
            .collect(),
        pipeline,
        metrics: metrics.clone(),
        output: output.clone(),
        settings,
        late_rows,
        last_clock: 0,
    };
    let task_status = status.clone();
    let output_for_task = output.clone();
    let task_cancel = cancel.clone();
    tokio::spawn(async move {
        let result = tokio::select! {
            _ = task_cancel.cancelled() => return,
            result = driver.run(receiver) => result,
        };
        let (final_status, event) = match result {
            Ok(()) => (QueryStatus::Finished, OutputEvent::End),
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
    Ok(QueryHandle { metrics, output, status, cancel })
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
}

impl Driver {
    async fn run(mut self, mut receiver: mpsc::Receiver<SourceEvent>) -> Result<()> {
        let mut ticker = (!self.settings.epoch_interval.is_zero()).then(|| {
            let mut ticker = tokio::time::interval(self.settings.epoch_interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker
        });
        if self.sources.is_empty() {
            return Err(RuntimeError::user("a continuous query needs at least one stream"));
        }
        let mut pending = Vec::new();
        loop {
            match &mut ticker {
                Some(ticker) => {
                    ticker.tick().await;
                }
                None => match receiver.recv().await {
                    Some(event) => pending.push(event),
                    None => {
                        return Err(RuntimeError::internal("every source stopped without ending"));
                    }
                },
            }
            while let Ok(event) = receiver.try_recv() {
                pending.push(event);
            }
            let events = std::mem::take(&mut pending);
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
                return Ok(());
            }
            if receiver.is_closed() && receiver.is_empty() && self.sources.iter().any(|source| !source.ended) {
                return Err(RuntimeError::internal("a source stopped without ending"));
            }
        }
    }

    /// One epoch: everything the sources produced since the last one.
    fn epoch(&mut self, events: Vec<SourceEvent>) -> Result<()> {
        let watermark_before = self.metrics.watermark();
        let mut output = Vec::new();
        for event in events {
            match event {
                SourceEvent::Rows { source, rows } => self.ingest(source, rows, &mut output)?,
                SourceEvent::End { source } => {
                    self.sources[source].ended = true;
                    self.pipeline.push_source(source, Message::End, &mut output)?;
                }
                SourceEvent::Failed { source, message } => {
                    return Err(RuntimeError::external(format!("source {source} failed: {message}")));
                }
            }
        }
        self.declare_idle_sources(&mut output)?;
        self.advance_processing_time(&mut output)?;
        QueryMetrics::add(&self.metrics.epochs, 1);
        for message in output {
            match message {
                Message::Batch(batch) => {
                    QueryMetrics::add(&self.metrics.rows_out, batch.num_rows() as u64);
                    self.output.publish(batch);
                }
                Message::Watermark(watermark) => self.metrics.set_watermark(watermark),
                Message::Barrier(_) | Message::End | Message::Idle => {}
            }
        }
        let watermark = self.metrics.watermark();
        if watermark > watermark_before {
            self.output.progress(watermark);
        }
        Ok(())
    }

    /// Processing time, in nanoseconds since the epoch, never going back.
    fn clock(&mut self) -> i64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos() as i64);
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
            let state = &mut self.sources[source];
            let Some(tracker) = state.tracker.as_mut() else { continue };
            let before = tracker.watermark();
            tracker.observe(&[Some(now)]);
            if tracker.watermark() > before {
                self.pipeline.push_source(source, Message::Watermark(tracker.watermark()), output)?;
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
            let state = &mut self.sources[source];
            if state.tracker.is_some() && !state.ended && !state.idle && state.last_active.elapsed() >= timeout {
                state.idle = true;
                self.pipeline.push_source(source, Message::Idle, output)?;
            }
        }
        Ok(())
    }

    /// Watermarks a source's rows, drops late ones, and pushes the rest.
    fn ingest(
        &mut self,
        source: usize,
        rows: datafusion::arrow::array::RecordBatch,
        output: &mut Vec<Message>,
    ) -> Result<()> {
        QueryMetrics::add(&self.metrics.rows_in, rows.num_rows() as u64);
        let rows = match self.sources[source].proctime_column {
            Some(column) => {
                let schema = self.sources[source].schema.clone();
                with_arrival_time(rows, &schema, column, self.clock())?
            }
            None => rows,
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
        if verdict.late_rows > 0
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

/// The window kind of the window assignment reading source `index`, if any.
fn window_of_source(plan: &StreamPlan, index: usize) -> Option<WindowKind> {
    let node =
        plan.nodes.iter().position(|node| matches!(node, PlanNode::Source { index: source } if *source == index))?;
    plan.nodes.iter().find_map(|candidate| match candidate {
        PlanNode::Operator { spec: OperatorSpec::WindowAssign(spec), inputs } if inputs.contains(&node) => {
            Some(spec.kind)
        }
        _ => None,
    })
}

/// Inserts a PROCTIME() column holding `now` at `column`, giving the
/// stream's full `schema`.
fn with_arrival_time(rows: RecordBatch, schema: &SchemaRef, column: usize, now: i64) -> Result<RecordBatch> {
    let mut columns = rows.columns().to_vec();
    columns.insert(column.min(columns.len()), Arc::new(TimestampNanosecondArray::from(vec![now; rows.num_rows()])));
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
