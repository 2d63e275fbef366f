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
//!
//! # Checkpoints
//!
//! A snapshot holds every open and fired session (partition, bounds,
//! partial aggregates, the rows last emitted, whether it changed since) in
//! the order its partition lists them, since that order decides which
//! session absorbs which, and the watermark. The processing-time clock of
//! EMIT EVERY restarts on restore.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::RowConverter;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

use crate::error::{Result, RuntimeError};
use crate::message::{Message, Op, StreamBatch, Watermark};
use crate::metrics::QueryMetrics;
use crate::metrics::StateSize;
use crate::operator::Operator;
use crate::operators::groups::{
    AggregateInputs, Groups, Partial, changelog, evaluate, grouping_keys, key_converter, reject_retractions,
};
use crate::operators::pane_window::{GroupColumn, window_rows};
use crate::operators::window_aggregate::EarlyEmit;
use crate::operators::window_rows::{for_each_on_time_row, window_times};
use crate::state::with_schema;
use crate::state::{OperatorState, binary_column, i64_column, rows_column};

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
    /// How long after a session fired late rows may still reopen it (its
    /// row is then retracted and emitted again); `None` drops them.
    pub allowed_lateness: Option<std::time::Duration>,
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
    /// Closed sessions late rows may still join (allowed lateness), kept
    /// until the watermark passes their end plus the lateness.
    fired: HashMap<Box<[u8]>, Vec<Session>>,
    /// Nanoseconds.
    allowed_lateness: i64,
}

impl SessionWindow {
    pub fn new(mut spec: SessionWindowSpec, metrics: Arc<QueryMetrics>) -> Result<Self> {
        spec.partition_exprs = grouping_keys(&spec.partition_exprs);
        spec.key_exprs = grouping_keys(&spec.key_exprs);
        Ok(Self {
            partition_converter: key_converter(&spec.partition_exprs, &spec.input_schema)?,
            key_converter: key_converter(&spec.key_exprs, &spec.input_schema)?,
            spec,
            sessions: HashMap::new(),
            watermark: Watermark::MIN,
            metrics,
            last_early: Instant::now(),
            fired: HashMap::new(),
            allowed_lateness: 0,
        })
    }

    /// Keeps closed sessions for `allowed_lateness` (nanoseconds): late rows
    /// that reach one reopen it, and its row is retracted and emitted again.
    pub fn with_allowed_lateness(mut self, allowed_lateness: i64) -> Self {
        self.allowed_lateness = allowed_lateness.max(0);
        self
    }

    /// Open sessions (for tests and metrics).
    pub fn open_sessions(&self) -> usize {
        self.sessions.values().map(Vec::len).sum()
    }

    /// One session's result rows.
    fn session_batch(&self, start: i64, end: i64, keys: Vec<ArrayRef>, values: Vec<ArrayRef>) -> Result<RecordBatch> {
        window_rows(&self.spec.layout, &self.spec.output_schema, (start, end), keys, values)
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
    fn state_size(&self) -> Option<StateSize> {
        let sessions = self.sessions.values().chain(self.fired.values()).flatten();
        let (rows, bytes) = sessions.fold((0, 0), |(rows, bytes), session| {
            let emitted = session.emitted.as_ref().map_or(0, RecordBatch::get_array_memory_size);
            (rows + session.groups.len(), bytes + session.groups.bytes() + emitted)
        });
        let key_bytes: usize = self.sessions.keys().map(|key| key.len()).sum();
        Some(StateSize { rows: rows as u64, bytes: (bytes + key_bytes) as u64 })
    }

    fn oldest_open_window(&self) -> Option<i64> {
        self.sessions.values().flatten().map(|session| session.end).min()
    }

    fn on_batch(&mut self, _port: usize, batch: StreamBatch, out: &mut Vec<Message>) -> Result<()> {
        reject_retractions(&batch)?;
        let rows = &batch.rows;
        if rows.num_rows() == 0 {
            return Ok(());
        }
        let gap = self.spec.gap;
        let times = window_times(&self.spec.time, rows)?;
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
        // The partitions the batch touches, each once, in first-seen order
        // (a set beside the list: a million keys must not mean a scan per row).
        let mut touched: Vec<Box<[u8]>> = Vec::new();
        let mut seen: std::collections::HashSet<&[u8]> = std::collections::HashSet::new();
        let (watermark, allowed_lateness) = (self.watermark, self.allowed_lateness);
        let is_late = |ts: i64| Watermark(ts.saturating_add(gap).saturating_add(allowed_lateness)) <= watermark;
        for_each_on_time_row(&times, &self.metrics, is_late, |row, ts| {
            let partition: Box<[u8]> = partitions.row(row).as_ref().into();
            if seen.insert(partitions.row(row).data()) {
                touched.push(partition.clone());
            }
            let mut no_fired = Vec::new();
            let fired = self.fired.get_mut(&partition).unwrap_or(&mut no_fired);
            let sessions = self.sessions.entry(partition).or_default();
            let (mut start, mut end) = (ts, ts.saturating_add(gap));
            let mut merged: Option<Session> = None;
            // Merge every session (open or fired) the row's interval touches,
            // until the grown interval touches no more.
            loop {
                let mut grew = false;
                for list in [&mut *sessions, &mut *fired] {
                    let mut index = 0;
                    while index < list.len() {
                        let candidate = &list[index];
                        if candidate.start <= end && start <= candidate.end {
                            let session = list.swap_remove(index);
                            start = start.min(session.start);
                            end = end.max(session.end);
                            grew = true;
                            merged = Some(match merged {
                                None => session,
                                Some(mut into) => {
                                    // The absorbed session's rows no longer stand alone.
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
                }
                if !grew {
                    break;
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
            Ok(())
        })?;
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
        if self.allowed_lateness > 0 {
            // Late rows may have reopened sessions the watermark already passed.
            self.close_sessions(out)?;
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Watermark, out: &mut Vec<Message>) -> Result<()> {
        self.watermark = watermark;
        self.close_sessions(out)?;
        // Fired sessions past their allowed lateness are final.
        let lateness = self.allowed_lateness;
        self.fired.retain(|_, sessions| {
            sessions.retain(|session| Watermark(session.end.saturating_add(lateness)) > watermark);
            !sessions.is_empty()
        });
        out.push(Message::Watermark(watermark));
        Ok(())
    }

    fn snapshot(&mut self) -> Result<OperatorState> {
        let mut state = OperatorState::default();
        state.put_value("watermark", self.watermark.0);
        let (converter, aggregates) = (&self.key_converter, &self.spec.aggregates);
        put_sessions(&mut state, "sessions", &mut self.sessions, converter, aggregates)?;
        put_sessions(&mut state, "fired", &mut self.fired, converter, aggregates)?;
        Ok(state)
    }

    fn restore(&mut self, mut state: OperatorState) -> Result<()> {
        self.watermark = Watermark(state.value("watermark")?);
        self.sessions = self.take_sessions(&mut state, "sessions")?;
        self.fired = self.take_sessions(&mut state, "fired")?;
        // Processing time does not survive a restart: EMIT EVERY waits a
        // whole interval again.
        self.last_early = Instant::now();
        Ok(())
    }
}

impl SessionWindow {
    /// Emits every open session the watermark has passed.
    fn close_sessions(&mut self, out: &mut Vec<Message>) -> Result<()> {
        let watermark = self.watermark;
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
        for (partition, mut session) in closed {
            if self.allowed_lateness > 0 {
                // Keep it for late rows; the final rows correct earlier ones.
                let rows = self.current_rows(&mut session)?;
                if let Some(changes) = changelog(&self.spec.output_schema, session.emitted.as_ref(), &rows)? {
                    out.push(Message::Batch(changes));
                }
                session.emitted = Some(rows);
                session.dirty = false;
                self.fired.entry(partition).or_default().push(session);
                continue;
            }
            let (start, end, emitted) = (session.start, session.end, session.emitted);
            let (keys, values) = session.groups.finish(&self.key_converter)?;
            let rows = self.session_batch(start, end, keys, values)?;
            if self.spec.emit.is_some() {
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
        Ok(())
    }
}

/// Saves `sessions` as the batch `name`, one row per session (its
/// `partition`, `start`, `end`, `dirty`, and whether it has `emitted`
/// rows), partitions in key order and each partition's sessions in
/// their order; then per session `i` its partial aggregates `name/i`
/// and the rows it last emitted, `name/i/emitted`.
fn put_sessions(
    state: &mut OperatorState,
    name: &str,
    sessions: &mut HashMap<Box<[u8]>, Vec<Session>>,
    converter: &RowConverter,
    aggregates: &[Arc<AggregateFunctionExpr>],
) -> Result<()> {
    let mut partitions: Vec<(&Box<[u8]>, &mut Vec<Session>)> = sessions.iter_mut().collect();
    partitions.sort_by_key(|(a, _)| *a);
    let mut keys: Vec<&[u8]> = Vec::new();
    let (mut starts, mut ends, mut dirty, mut emitted) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (partition, list) in partitions {
        for session in list.iter_mut() {
            if !session.pending.is_empty() {
                return Err(RuntimeError::internal("a session holds rows of an unfinished batch at a checkpoint"));
            }
            let index = keys.len();
            let partial = session.groups.snapshot(converter, aggregates)?;
            state.put(&format!("{name}/{index}"), partial.to_batch()?);
            if let Some(emitted) = &session.emitted {
                state.put(&format!("{name}/{index}/emitted"), emitted.clone());
            }
            keys.push(partition);
            starts.push(session.start);
            ends.push(session.end);
            dirty.push(i64::from(session.dirty));
            emitted.push(i64::from(session.emitted.is_some()));
        }
    }
    let column = |values: Vec<i64>| Arc::new(Int64Array::from(values)) as ArrayRef;
    let index = crate::state::batch(vec![
        ("partition", rows_column(keys)),
        ("start", column(starts)),
        ("end", column(ends)),
        ("dirty", column(dirty)),
        ("emitted", column(emitted)),
    ])?;
    state.put(name, index);
    Ok(())
}

impl SessionWindow {
    /// Reads [`put_sessions`]'s batches back.
    fn take_sessions(&self, state: &mut OperatorState, name: &str) -> Result<HashMap<Box<[u8]>, Vec<Session>>> {
        let index = state.take(name)?;
        let partitions = binary_column(&index, "partition")?;
        let (starts, ends) = (i64_column(&index, "start")?, i64_column(&index, "end")?);
        let (dirty, emitted) = (i64_column(&index, "dirty")?, i64_column(&index, "emitted")?);
        let mut sessions: HashMap<Box<[u8]>, Vec<Session>> = HashMap::new();
        for row in 0..index.num_rows() {
            let partial = state.take(&format!("{name}/{row}"))?;
            let partial = Partial::from_batch(&partial, &self.key_converter, self.spec.aggregates.len())?;
            let emitted_rows = match emitted.value(row) {
                0 => None,
                _ => Some(with_schema(&self.spec.output_schema, state.take(&format!("{name}/{row}/emitted"))?)?),
            };
            let session = Session {
                start: starts.value(row),
                end: ends.value(row),
                groups: Groups::restored(&self.key_converter, &self.spec.aggregates, &partial)?,
                pending: Vec::new(),
                emitted: emitted_rows,
                dirty: dirty.value(row) != 0,
            };
            sessions.entry(partitions.value(row).into()).or_default().push(session);
        }
        Ok(sessions)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{StringArray, TimestampNanosecondArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::functions_aggregate::count::count_udaf;
    use datafusion::physical_expr::aggregate::AggregateExprBuilder;
    use datafusion::physical_expr::expressions::col;

    use super::*;

    fn timestamp() -> DataType {
        DataType::Timestamp(TimeUnit::Nanosecond, None)
    }

    fn window(allowed_lateness: i64) -> (SessionWindow, SchemaRef) {
        window_with(allowed_lateness, None)
    }

    fn window_with(allowed_lateness: i64, emit: Option<EarlyEmit>) -> (SessionWindow, SchemaRef) {
        let input =
            Arc::new(Schema::new(vec![Field::new("key", DataType::Utf8, false), Field::new("ts", timestamp(), false)]));
        let count = AggregateExprBuilder::new(count_udaf(), vec![col("ts", &input).unwrap()])
            .schema(input.clone())
            .alias("n")
            .build()
            .unwrap();
        let output = Arc::new(Schema::new(vec![
            Field::new("window_start", timestamp(), false),
            Field::new("window_end", timestamp(), false),
            Field::new("key", DataType::Utf8, false),
            Field::new("n", DataType::Int64, false),
        ]));
        let spec = SessionWindowSpec {
            gap: 5,
            input_schema: input.clone(),
            time: col("ts", &input).unwrap(),
            partition_exprs: vec![col("key", &input).unwrap()],
            key_exprs: vec![col("key", &input).unwrap()],
            layout: vec![GroupColumn::WindowStart, GroupColumn::WindowEnd, GroupColumn::Key(0)],
            aggregates: vec![Arc::new(count)],
            filters: vec![None],
            output_schema: output,
            emit,
            allowed_lateness: None,
        };
        let operator = SessionWindow::new(spec, Arc::default()).unwrap().with_allowed_lateness(allowed_lateness);
        (operator, input)
    }

    fn rows(schema: &SchemaRef, rows: &[(&str, i64)]) -> StreamBatch {
        let keys = StringArray::from(rows.iter().map(|row| row.0).collect::<Vec<_>>());
        let times = TimestampNanosecondArray::from(rows.iter().map(|row| row.1).collect::<Vec<_>>());
        StreamBatch::inserts(RecordBatch::try_new(schema.clone(), vec![Arc::new(keys), Arc::new(times)]).unwrap())
    }

    fn changes(out: &[Message]) -> Vec<String> {
        out.iter()
            .filter_map(|message| match message {
                Message::Batch(batch) => Some(batch),
                _ => None,
            })
            .flat_map(|batch| {
                let table = pretty_format_batches(std::slice::from_ref(&batch.rows)).unwrap().to_string();
                let lines: Vec<String> =
                    table.lines().skip(3).filter(|line| !line.starts_with('+')).map(str::to_string).collect();
                let ops = batch.ops.clone().unwrap_or_else(|| vec![Op::Insert; lines.len()]);
                lines
                    .into_iter()
                    .zip(ops)
                    .map(|(line, op)| {
                        format!("{} {}", op.symbol(), line.split_whitespace().collect::<Vec<_>>().join(" "))
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn rows_merge_sessions_and_close_on_the_watermark() {
        let (mut operator, schema) = window(0);
        let mut out = Vec::new();
        operator.on_batch(0, rows(&schema, &[("a", 1), ("a", 10), ("b", 3)]), &mut out).unwrap();
        assert_eq!(operator.open_sessions(), 3);
        operator.on_batch(0, rows(&schema, &[("a", 5)]), &mut out).unwrap();
        assert_eq!(operator.open_sessions(), 2, "a@5 joins a@1 and a@10");
        operator.on_watermark(Watermark(20), &mut out).unwrap();
        assert_eq!(
            changes(&out),
            vec![
                "+ | 1970-01-01T00:00:00.000000003 | 1970-01-01T00:00:00.000000008 | b | 1 |",
                "+ | 1970-01-01T00:00:00.000000001 | 1970-01-01T00:00:00.000000015 | a | 3 |",
            ]
        );
    }

    #[test]
    fn a_late_row_reopens_a_fired_session_within_the_allowed_lateness() {
        let (mut operator, schema) = window(10);
        let mut out = Vec::new();
        operator.on_batch(0, rows(&schema, &[("a", 10)]), &mut out).unwrap();
        operator.on_watermark(Watermark(20), &mut out).unwrap();
        operator.on_batch(0, rows(&schema, &[("a", 14)]), &mut out).unwrap();
        assert_eq!(
            changes(&out),
            vec![
                "+ | 1970-01-01T00:00:00.000000010 | 1970-01-01T00:00:00.000000015 | a | 1 |",
                "- | 1970-01-01T00:00:00.000000010 | 1970-01-01T00:00:00.000000015 | a | 1 |",
                "+ | 1970-01-01T00:00:00.000000010 | 1970-01-01T00:00:00.000000019 | a | 2 |",
            ]
        );
        // Past end + lateness, the session is final and late rows are dropped.
        out.clear();
        operator.on_watermark(Watermark(40), &mut out).unwrap();
        operator.on_batch(0, rows(&schema, &[("a", 18)]), &mut out).unwrap();
        assert_eq!(changes(&out), Vec::<String>::new());
    }

    #[test]
    fn restores_open_and_fired_sessions_from_a_snapshot() {
        let schema = window(0).1;
        let batch = |batch: &[(&str, i64)]| (0, Message::Batch(rows(&schema, batch)));
        let messages = vec![
            batch(&[("a", 1), ("a", 10), ("b", 3)]),
            // a@5 joins a@1 and a@10; a@30 starts a third session of a.
            batch(&[("a", 5), ("a", 30), ("c", 4)]),
            (0, Message::Watermark(Watermark(9))),
            // Late for b's session [3, 8), which a lateness of 10 reopens.
            batch(&[("b", 6), ("c", 20), ("a", 33)]),
            (0, Message::Watermark(Watermark(20))),
            // Reopens a's fired [1, 15); c@22 joins c@20.
            batch(&[("a", 14), ("c", 22), ("d", 25)]),
            (0, Message::Watermark(Watermark(40))),
            // Past a's end plus the lateness: dropped.
            batch(&[("a", 18), ("b", 41)]),
            (0, Message::Watermark(Watermark::MAX)),
            (0, Message::End),
        ];
        let configurations = [(0, None), (10, None), (0, Some(EarlyEmit::OnUpdate)), (10, Some(EarlyEmit::OnUpdate))];
        for (lateness, emit) in configurations {
            let new = || Box::new(window_with(lateness, emit).0) as Box<dyn Operator>;
            let output = crate::operators::restore_check::assert_restores(new, &messages);
            assert!(output.iter().any(|line| line.starts_with("+ ")), "{output:?}");
            if lateness > 0 || emit.is_some() {
                assert!(output.iter().any(|line| line.starts_with("- ")), "no retraction in {output:?}");
            }
        }
        // Sessions stay dirty between messages only under EMIT EVERY, until
        // its interval of processing time passes: compare them directly.
        let every = Some(EarlyEmit::Every(std::time::Duration::from_secs(3600)));
        let dirty = |operator: &SessionWindow| {
            let mut sessions: Vec<(i64, i64, bool)> = operator
                .sessions
                .values()
                .flatten()
                .map(|session| (session.start, session.end, session.dirty))
                .collect();
            sessions.sort();
            sessions
        };
        let mut operator = window_with(0, every).0;
        operator.on_batch(0, rows(&schema, &[("a", 1), ("b", 3)]), &mut Vec::new()).unwrap();
        let state = OperatorState::decode(&operator.snapshot().unwrap().encode().unwrap()).unwrap();
        let mut restored = window_with(0, every).0;
        restored.restore(state).unwrap();
        assert_eq!(dirty(&restored), vec![(1, 6, true), (3, 8, true)]);
        assert_eq!(dirty(&restored), dirty(&operator));
    }

    #[test]
    fn sessions_near_i64_max_close_without_overflow() {
        let (mut operator, schema) = window(i64::MAX);
        let mut out = Vec::new();
        operator
            .on_batch(0, rows(&schema, &[("a", i64::MAX - 2), ("a", i64::MAX), ("b", i64::MIN)]), &mut out)
            .unwrap();
        operator.on_watermark(Watermark(i64::MAX - 1), &mut out).unwrap();
        operator.on_watermark(Watermark::MAX, &mut out).unwrap();
        let changes = changes(&out);
        assert!(changes.iter().any(|line| line.ends_with("| a | 2 |")), "{changes:?}");
    }
}
