//! Recovery of one query: what it starts from, and the replay of the
//! steps logged after its newest checkpoint.
//!
//! # Algorithm
//!
//! (The checkpoint and input-log formats are in [`crate::checkpoint`].)
//!
//! ```text
//!   newest good checkpoint ──► pipeline, output, metrics, source trackers
//!   its manifest's positions ─► where each source task resumes
//!   logged steps after it ───► each source cuts its batches at the logged
//!                               positions; the driver takes the steps again
//!                               in log order, then goes on live
//! ```
//!
//! While replaying, events from the sources wait in one queue per source
//! until the log says it is their turn: sources run concurrently, so their
//! events arrive interleaved by timing, but the log fixes the order the
//! driver took them in before the crash. A socket cannot be rewound: its
//! logged rows are skipped (at-most-once). Once every logged step is taken,
//! whatever the sources sent beyond the log is taken as new steps.

use std::collections::VecDeque;

use datafusion::arrow::array::RecordBatch;

use crate::checkpoint::{CheckpointStore, Restored, SourceCheckpoint, Step};
use crate::error::{Result, RuntimeError};
use crate::message::Watermark;
use crate::metrics::{QueryMetrics, RecoveryTimes};
use crate::output::QueryOutput;
use crate::pipeline::Pipeline;
use crate::plan::StreamPlan;
use crate::settings::QuerySettings;
use crate::source::http::Hold;
use crate::source::{ConnectorSpec, HttpIngest, Malformed, Resume, SourceEvent};

/// A source's rows (if any decoded), malformed records, and rows shed.
pub(crate) struct Chunk {
    pub rows: Option<RecordBatch>,
    pub malformed: Malformed,
    pub shed: u64,
}

/// What a query starts from: fresh, or restored from a checkpoint with
/// steps to replay.
pub(crate) struct Recovery {
    /// The query's checkpoints, if it keeps any.
    pub store: Option<CheckpointStore>,
    /// The checkpoint it was restored from, if any.
    pub restored: Option<Restored>,
    /// The logged steps still to take again, if any.
    pub replay: Option<Replay>,
    /// Where each source resumes, by source index.
    pub resumes: Vec<Resume>,
    /// What the query holds of each http stream's event log, by source
    /// index: from where its oldest kept checkpoint (or its start) reads.
    pub holds: Vec<Option<LogHold>>,
}

/// A query's hold on one http stream's event log.
#[derive(Debug, Clone)]
pub(crate) struct LogHold {
    pub ingest: std::sync::Arc<HttpIngest>,
    pub hold: Hold,
}

impl Recovery {
    /// Opens the query's checkpoint store (if it has one), restores the
    /// newest good checkpoint into the fresh `pipeline`, `output` and
    /// `metrics`, and says where each source starts reading.
    pub fn start(
        plan: &StreamPlan,
        settings: &QuerySettings,
        plan_names: &[String],
        pipeline: &mut Pipeline,
        output: &QueryOutput,
        metrics: &QueryMetrics,
    ) -> Result<Self> {
        // Recovery: the newest good checkpoint, and the steps logged after it.
        let (store, restored) = match &settings.checkpoint {
            Some(config) => {
                let mut store = CheckpointStore::new(config.clone())?;
                let (restored, warnings) = store.load(plan_names)?;
                metrics.update_checkpoints(|report| report.warnings = warnings);
                (Some(store), restored)
            }
            None => (None, None),
        };
        let mut replay = None;
        // A new query reads an http stream from what is posted next, and
        // holds the log from there.
        let mut holds: Vec<Option<LogHold>> = Vec::new();
        let mut resumes: Vec<Resume> = Vec::new();
        for spec in &plan.sources {
            let (hold, position) = match &spec.connector {
                ConnectorSpec::Http(ingest) => {
                    let (hold, position) = ingest.hold_here();
                    (Some(LogHold { ingest: ingest.clone(), hold }), position)
                }
                _ => (None, 0),
            };
            holds.push(hold);
            resumes.push(Resume { position, ..Default::default() });
        }
        if let (Some(restored), Some(store)) = (&restored, &store) {
            // Restored: held from the oldest checkpoint a recovery may
            // fall back to.
            let kept = store.kept_positions();
            for (index, hold) in holds.iter().enumerate() {
                if let Some(hold) = hold {
                    let oldest = kept.iter().filter_map(|positions| positions.get(index)).min();
                    let checkpointed = restored.manifest.sources.get(index).map(|source| source.position);
                    hold.hold.set(oldest.copied().or(checkpointed).unwrap_or(0));
                }
            }
        }
        if let Some(restored) = &restored {
            let started = std::time::Instant::now();
            pipeline.restore(restored.nodes.clone())?;
            output.restore(restored.output.clone())?;
            let restore_ms = started.elapsed().as_secs_f64() * 1000.0;
            for (resume, checkpoint) in resumes.iter_mut().zip(&restored.manifest.sources) {
                resume.position = checkpoint.position;
            }
            for step in &restored.replay {
                if let Step::Rows { source, position, rate, .. } = step
                    && let Some(resume) = resumes.get_mut(*source)
                {
                    resume.boundaries.push_back(*position);
                    // A socket's positions are all 0 and its logged rows
                    // are not read again: its chunks take the live rate.
                    if !matches!(plan.sources[*source].connector, ConnectorSpec::Socket { .. }) {
                        resume.rates.insert(*position, *rate);
                    }
                }
            }
            replay = (!restored.replay.is_empty()).then(|| Replay {
                steps: restored.replay.clone(),
                queues: plan.sources.iter().map(|_| VecDeque::new()).collect(),
            });
            let counters = &restored.manifest.counters;
            for (counter, value) in [
                (&metrics.rows_in, counters.rows_in),
                (&metrics.rows_out, counters.rows_out),
                (&metrics.epochs, counters.epochs),
                (&metrics.late_rows_dropped, counters.late_rows_dropped),
                (&metrics.malformed_records, counters.malformed_records),
                (&metrics.rows_shed, counters.rows_shed),
            ] {
                QueryMetrics::add(counter, value);
            }
            metrics.set_watermark(Watermark(counters.watermark));
            if counters.watermark != Watermark::MIN.0 {
                output.progress(Watermark(counters.watermark));
            }
            metrics.update_checkpoints(|report| {
                report.restored_from = Some(restored.manifest.id);
                report.replayed_steps = restored.replay.len() as u64;
                report.recovery = Some(RecoveryTimes {
                    bytes: restored.bytes,
                    read_ms: restored.read_ms,
                    decode_ms: restored.decode_ms,
                    restore_ms,
                });
            });
        }
        Ok(Self { store, restored, replay, resumes, holds })
    }

    /// Source `index` as checkpointed (its watermark tracker, whether it
    /// had ended or gone idle), if the query was restored.
    pub fn source(&self, index: usize) -> Option<&SourceCheckpoint> {
        self.restored.as_ref().and_then(|restored| restored.manifest.sources.get(index))
    }

    /// The last processing time handed out before the checkpoint (0 when
    /// fresh), so the clock never goes back across a restart.
    pub fn last_clock(&self) -> i64 {
        self.restored.as_ref().map_or(0, |restored| restored.manifest.last_clock)
    }
}

/// Recovery in progress: the logged steps still to take again, and what the
/// sources sent meanwhile, per source.
pub(crate) struct Replay {
    steps: VecDeque<Step>,
    queues: Vec<VecDeque<SourceEvent>>,
}

impl Replay {
    /// Queues `events` per source and takes the logged steps, in log order,
    /// as far as their sources' events are there (each marked replayed).
    /// `replayable[source]`: the source can be rewound (all but sockets).
    pub fn steps(&mut self, events: Vec<SourceEvent>, replayable: &[bool]) -> Result<Vec<(Step, Option<Chunk>, bool)>> {
        for event in events {
            let source = match &event {
                SourceEvent::Rows { source, .. } | SourceEvent::End { source } => *source,
                SourceEvent::Failed { source, message } => {
                    return Err(RuntimeError::external(format!("source {source} failed: {message}")));
                }
            };
            self.queues[source].push_back(event);
        }
        let mut steps = Vec::new();
        while let Some(step) = self.steps.front().cloned() {
            match step {
                Step::Rows { source, position, .. } if !replayable[source] => {
                    // A socket's rows are gone: at-most-once.
                    let _ = position;
                }
                Step::Rows { source, position, .. } => match self.queues[source].pop_front() {
                    None => break,
                    Some(SourceEvent::Rows { rows, position: got, malformed, shed, .. }) if got == position => {
                        steps.push((step, Some(Chunk { rows, malformed, shed }), true));
                    }
                    Some(other) => {
                        return Err(RuntimeError::user(format!(
                            "recovery cannot replay source {source}: the input log has rows up to position {position}, the source gave {} (did its data change?)",
                            match other {
                                SourceEvent::Rows { position, .. } => format!("rows up to {position}"),
                                _ => "its end".to_string(),
                            }
                        )));
                    }
                },
                Step::End { source } if replayable[source] => match self.queues[source].pop_front() {
                    None => break,
                    Some(SourceEvent::End { .. }) => steps.push((step, None, true)),
                    Some(_) => {
                        return Err(RuntimeError::user(format!(
                            "recovery cannot replay source {source}: the input log has its end, the source gave more rows (did its data change?)"
                        )));
                    }
                },
                Step::End { .. } => {}
                Step::Idle { .. } | Step::Clock { .. } => steps.push((step, None, true)),
            }
            self.steps.pop_front();
        }
        Ok(steps)
    }

    /// Every logged step has been taken again.
    pub fn caught_up(&self) -> bool {
        self.steps.is_empty()
    }

    /// What the sources sent beyond the log, per source in arrival order:
    /// it runs as usual, as new steps.
    pub fn into_unlogged(self) -> Vec<SourceEvent> {
        self.queues.into_iter().flatten().collect()
    }
}
