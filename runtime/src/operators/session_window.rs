//! SESSION windows: per partition key, a window closes after `gap` without
//! rows.
//!
//! # Algorithm
//!
//! Each partition keeps its open sessions as intervals `[start, last + gap)`
//! with the aggregates of their rows. A row at `ts` covers `[ts, ts + gap)`;
//! every open session it touches is merged with it (intervals and partial
//! aggregates, via DataFusion's `merge_batch`), so out-of-order rows can
//! join two sessions into one:
//!
//! ```text
//!   gap 3:   a@1 ─[1,4)        b@7 ─[7,10)
//!            c@5 touches both  ─► one session [1,10)
//! ```
//!
//! A session is emitted once the watermark passes its end. Rows are
//! assigned in arrival order, and the merge is associative and
//! commutative, so the result does not depend on batching.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, TimestampNanosecondArray};
use datafusion::arrow::compute::{cast, concat_batches};
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit, TimestampNanosecondType};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

use crate::error::Result;
use crate::message::{Message, Op, StreamBatch, Watermark};
use crate::metrics::QueryMetrics;
use crate::operator::Operator;
use crate::operators::window_aggregate::EarlyEmit;
use crate::operators::groups::{changelog, AggregateInputs, Groups, evaluate, grouping_keys, output_batch, reject_retractions};
use crate::operators::pane_window::GroupColumn;

#[derive(Debug, Clone)]
pub struct SessionWindowSpec {
    /// Nanoseconds without rows that close a session.
    pub gap: i64,
    pub input_schema: SchemaRef,
    /// Each row's event time.
    pub time: Arc<dyn PhysicalExpr>,
    /// `PARTITION BY` keys: sessions are tracked per partition.
    pub partition_exprs: Vec<Arc<dyn PhysicalExpr>>,
    /// GROUP BY expressions other than the window columns.
    pub key_exprs: Vec<Arc<dyn PhysicalExpr>>,
    pub layout: Vec<GroupColumn>,
    pub aggregates: Vec<Arc<AggregateFunctionExpr>>,
    pub filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    pub output_schema: SchemaRef,
    /// Early results (the EMIT clause), if any.
    pub emit: Option<EarlyEmit>,
}

struct Session {
    start: i64,
    /// Last event time plus the gap.
    end: i64,
    groups: Groups,
    /// Rows of the current batch waiting to be added.
    pending: Vec<u32>,
    /// The early result last emitted for this session (EMIT).
    emitted: Option<RecordBatch>,
    /// Changed since its last early result.
    dirty: bool,
}

pub struct SessionWindow {
    spec: SessionWindowSpec,
    partition_converter: RowConverter,
    key_converter: RowConverter,
    /// Open sessions per partition key, in no particular order.
    sessions: HashMap<Box<[u8]>, Vec<Session>>,
    watermark: Watermark,
    metrics: Arc<QueryMetrics>,
    last_early: Instant,
}

fn converter(exprs: &[Arc<dyn PhysicalExpr>], schema: &SchemaRef) -> Result<RowConverter> {
    let fields = exprs.iter().map(|expr| Ok(SortField::new(expr.data_type(schema)?))).collect::<Result<Vec<_>>>()?;
    Ok(RowConverter::new(fields)?)
}

impl SessionWindow {
    pub fn new(mut spec: SessionWindowSpec, metrics: Arc<QueryMetrics>) -> Result<Self> {
        spec.partition_exprs = grouping_keys(&spec.partition_exprs);
        spec.key_exprs = grouping_keys(&spec.key_exprs);
        Ok(Self {
            partition_converter: converter(&spec.partition_exprs, &spec.input_schema)?,
            key_converter: converter(&spec.key_exprs, &spec.input_schema)?,
            spec,
            sessions: HashMap::new(),
            watermark: Watermark::MIN,
            metrics,
            last_early: Instant::now(),
        })
    }

    /// Open sessions (for tests and metrics).
    pub fn open_sessions(&self) -> usize {
        self.sessions.values().map(Vec::len).sum()
    }

    /// One session's result rows.
    fn session_batch(&self, start: i64, end: i64, keys: Vec<ArrayRef>, values: Vec<ArrayRef>) -> Result<RecordBatch> {
        let rows = values.first().map_or(0, |column| column.len());
        let timestamps = |value: i64| Arc::new(TimestampNanosecondArray::from(vec![value; rows])) as ArrayRef;
        let mut columns: Vec<ArrayRef> = self
            .spec
            .layout
            .iter()
            .map(|kind| match kind {
                GroupColumn::WindowStart => timestamps(start),
                GroupColumn::WindowEnd => timestamps(end),
                GroupColumn::WindowTime => timestamps(end - 1),
                GroupColumn::Key(index) => keys[*index].clone(),
            })
            .collect();
        columns.extend(values);
        output_batch(&self.spec.output_schema, columns)
    }

    /// The current rows of an open session, keeping its state.
    fn current_rows(&self, session: &mut Session) -> Result<RecordBatch> {
        let groups = std::mem::replace(&mut session.groups, Groups::new(&self.key_converter, &self.spec.aggregates)?);
        let partial = groups.into_partial()?;
        session.groups.merge(&partial)?;
        let mut copy = Groups::new(&self.key_converter, &self.spec.aggregates)?;
        copy.merge(&partial)?;
        let (keys, values) = copy.finish(&self.key_converter)?;
        self.session_batch(session.start, session.end, keys, values)
    }

    /// Early results of every session changed since its last one.
    fn emit_early(&mut self, out: &mut Vec<Message>) -> Result<()> {
        let mut sessions = std::mem::take(&mut self.sessions);
        let mut partitions: Vec<&Box<[u8]>> = sessions.keys().collect();
        partitions.sort();
        let partitions: Vec<Box<[u8]>> = partitions.into_iter().cloned().collect();
        for partition in partitions {
            for session in sessions.get_mut(&partition).into_iter().flatten() {
                if !session.dirty {
                    continue;
                }
                session.dirty = false;
                let current = self.current_rows(session)?;
                if let Some(changes) = changelog(&self.spec.output_schema, session.emitted.as_ref(), &current)? {
                    out.push(Message::Batch(changes));
                }
                session.emitted = Some(current);
            }
        }
        self.sessions = sessions;
        self.last_early = Instant::now();
        Ok(())
    }
}

impl Operator for SessionWindow {
    fn on_batch(&mut self, _port: usize, batch: StreamBatch, out: &mut Vec<Message>) -> Result<()> {
        reject_retractions(&batch)?;
        let rows = &batch.rows;
        if rows.num_rows() == 0 {
            return Ok(());
        }
        let gap = self.spec.gap;
        let times = cast(&evaluate(&self.spec.time, rows)?, &DataType::Timestamp(TimeUnit::Nanosecond, None))?;
        let times = times.as_primitive::<TimestampNanosecondType>();
        let partition_columns =
            self.spec.partition_exprs.iter().map(|expr| evaluate(expr, rows)).collect::<Result<Vec<_>>>()?;
        let partitions = self.partition_converter.convert_columns(&partition_columns)?;
        let inputs = AggregateInputs::evaluate(
            &self.key_converter,
            &self.spec.key_exprs,
            &self.spec.aggregates,
            &self.spec.filters,
            rows,
        )?;
        let mut late_rows = 0;
        let mut touched: Vec<Box<[u8]>> = Vec::new();
        for row in 0..rows.num_rows() {
            if times.is_null(row) {
                continue;
            }
            let ts = times.value(row);
            if Watermark(ts.saturating_add(gap)) <= self.watermark {
                late_rows += 1;
                continue;
            }
            let partition: Box<[u8]> = partitions.row(row).as_ref().into();
            let sessions = self.sessions.entry(partition.clone()).or_default();
            if !touched.contains(&partition) {
                touched.push(partition);
            }
            let (mut start, mut end) = (ts, ts.saturating_add(gap));
            let mut merged: Option<Session> = None;
            let mut index = 0;
            while index < sessions.len() {
                let session = &sessions[index];
                if session.start <= end && start <= session.end {
                    let session = sessions.swap_remove(index);
                    start = start.min(session.start);
                    end = end.max(session.end);
                    merged = Some(match merged {
                        None => session,
                        Some(mut into) => {
                            // The absorbed session's early rows are no longer a session.
                            if let Some(emitted) = session.emitted {
                                let ops = vec![Op::Delete; emitted.num_rows()];
                                out.push(Message::Batch(StreamBatch { rows: emitted, ops: Some(ops) }));
                            }
                            into.groups.merge(&session.groups.into_partial()?)?;
                            into.pending.extend(session.pending);
                            into
                        }
                    });
                } else {
                    index += 1;
                }
            }
            let mut session = match merged {
                Some(session) => session,
                None => Session {
                    start,
                    end,
                    groups: Groups::new(&self.key_converter, &self.spec.aggregates)?,
                    pending: Vec::new(),
                    emitted: None,
                    dirty: false,
                },
            };
            session.start = start;
            session.end = end;
            session.pending.push(row as u32);
            session.dirty = true;
            sessions.push(session);
        }
        if late_rows > 0 {
            QueryMetrics::add(&self.metrics.late_rows_dropped, late_rows);
        }
        for partition in touched {
            for session in self.sessions.get_mut(&partition).into_iter().flatten() {
                if !session.pending.is_empty() {
                    let pending = std::mem::take(&mut session.pending);
                    session.groups.update(&inputs, &pending)?;
                }
            }
        }
        let due = match self.spec.emit {
            Some(EarlyEmit::OnUpdate) => true,
            Some(EarlyEmit::Every(interval)) => self.last_early.elapsed() >= interval,
            None => false,
        };
        if due {
            self.emit_early(out)?;
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Watermark, out: &mut Vec<Message>) -> Result<()> {
        self.watermark = watermark;
        let mut closed: Vec<(Box<[u8]>, Session)> = Vec::new();
        self.sessions.retain(|partition, sessions| {
            let mut index = 0;
            while index < sessions.len() {
                if Watermark(sessions[index].end) <= watermark {
                    closed.push((partition.clone(), sessions.swap_remove(index)));
                } else {
                    index += 1;
                }
            }
            !sessions.is_empty()
        });
        // Hash order is arbitrary: emit in a fixed order.
        closed.sort_by(|(a_key, a), (b_key, b)| (a.end, a.start, a_key).cmp(&(b.end, b.start, b_key)));
        let mut batches = Vec::new();
        for (_, session) in closed {
            let (start, end, emitted) = (session.start, session.end, session.emitted);
            let (keys, values) = session.groups.finish(&self.key_converter)?;
            let rows = self.session_batch(start, end, keys, values)?;
            if self.spec.emit.is_some() {
                // The final rows correct the early ones.
                if let Some(changes) = changelog(&self.spec.output_schema, emitted.as_ref(), &rows)? {
                    out.push(Message::Batch(changes));
                }
            } else {
                batches.push(rows);
            }
        }
        if !batches.is_empty() {
            out.push(Message::Batch(StreamBatch::inserts(concat_batches(&self.spec.output_schema, &batches)?)));
        }
        out.push(Message::Watermark(watermark));
        Ok(())
    }
}
