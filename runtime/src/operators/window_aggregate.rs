//! GROUP BY a window plus keys, computed incrementally with DataFusion
//! accumulators, emitted once per window when the watermark closes it.
//!
//! # Algorithm
//!
//! Each open window owns a hash table from group key (encoded with arrow's
//! row format) to a dense group index, and one DataFusion
//! `GroupsAccumulator` per aggregate. A batch is split by window end; each
//! slice updates its window's accumulators in one vectorised call:
//!
//! ```text
//!   batch ─► window_end per row ─┬─► window [0,10):  keys → group ids → accumulators
//!                                └─► window [10,20): keys → group ids → accumulators
//!   watermark 10 ─► close [0,10): emit keys ++ evaluate(accumulators), drop its state
//! ```
//!
//! State is the open windows only: a window's memory is freed as soon as it
//! closes, so state stays bounded by the watermark delay.
//!
//! # Checkpoints
//!
//! A snapshot holds each open window's partial aggregates, each fired
//! window's partial and the rows it last emitted (allowed lateness), the
//! early results last emitted and the windows changed since (EMIT), and the
//! watermark. The processing-time clock of EMIT EVERY restarts on restore.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::RowConverter;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

use crate::error::{Result, RuntimeError};
use crate::message::{Message, StreamBatch, Watermark};
use crate::metrics::QueryMetrics;
use crate::metrics::StateSize;
use crate::operator::Operator;
use crate::operators::groups::{
    AggregateInputs, Groups, Partial, changelog, key_converter, output_batch, reject_retractions,
};
use crate::operators::window_rows::{Slices, for_each_on_time_row, push_row, window_times};
use crate::state::{OperatorState, i64_batch, i64_column, put_indexed, take_indexed, with_schema};

#[derive(Debug, Clone)]
pub struct WindowAggregateSpec {
    pub input_schema: SchemaRef,
    /// GROUP BY expressions, the window columns among them.
    pub group_exprs: Vec<Arc<dyn PhysicalExpr>>,
    /// Evaluates, for each input row, the end of the window it belongs to.
    pub window_end: Arc<dyn PhysicalExpr>,
    pub aggregates: Vec<Arc<AggregateFunctionExpr>>,
    /// `FILTER (WHERE ...)` of each aggregate.
    pub filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    /// Group columns, then one column per aggregate.
    pub output_schema: SchemaRef,
    /// Early results (the EMIT clause), if any.
    pub emit: Option<EarlyEmit>,
    /// How long after a window fired late rows may still update it (its
    /// result is then retracted and emitted again); `None` drops them.
    pub allowed_lateness: Option<std::time::Duration>,
}

/// When open windows emit early results (the EMIT clause). Early results
/// are retracted and replaced as the window changes; the final result
/// comes when the watermark closes the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EarlyEmit {
    /// After every batch that changed the window.
    OnUpdate,
    /// At most once per interval of processing time.
    Every(std::time::Duration),
}

/// A window that fired but may still take late rows (allowed lateness).
struct FiredWindow {
    partial: Partial,
    /// The rows last emitted for it, in key order of `partial`.
    emitted: RecordBatch,
}

pub struct WindowAggregate {
    spec: WindowAggregateSpec,
    converter: RowConverter,
    /// Open windows by window end, so closing walks them in time order.
    windows: BTreeMap<i64, Groups>,
    /// Windows that fired, kept until the watermark passes end + lateness.
    fired: BTreeMap<i64, FiredWindow>,
    /// Nanoseconds; 0 drops every row of a fired window.
    allowed_lateness: i64,
    /// Early results, if the query asked for them (EMIT).
    emit: Option<EarlyEmit>,
    /// Open windows changed since their last early result.
    dirty: std::collections::BTreeSet<i64>,
    /// The early result last emitted per open window.
    early: BTreeMap<i64, RecordBatch>,
    last_early: Instant,
    watermark: Watermark,
    metrics: Arc<QueryMetrics>,
}

impl WindowAggregate {
    /// Counts the rows it drops for closed windows in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<QueryMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Emits early results of open windows (EMIT ON UPDATE / EVERY).
    pub fn with_emit(mut self, emit: Option<EarlyEmit>) -> Self {
        self.emit = emit;
        self
    }

    /// Keeps fired windows for `allowed_lateness` (nanoseconds) so that late
    /// rows update them: the old row is retracted and the new one emitted.
    pub fn with_allowed_lateness(mut self, allowed_lateness: i64) -> Self {
        self.allowed_lateness = allowed_lateness.max(0);
        self
    }

    pub fn new(spec: WindowAggregateSpec) -> Result<Self> {
        let converter = key_converter(&spec.group_exprs, &spec.input_schema)?;
        Ok(Self {
            spec,
            converter,
            windows: BTreeMap::new(),
            fired: BTreeMap::new(),
            allowed_lateness: 0,
            emit: None,
            dirty: Default::default(),
            early: BTreeMap::new(),
            last_early: Instant::now(),
            watermark: Watermark::MIN,
            metrics: Arc::default(),
        })
    }

    /// The rows of a window that fires; keeps its state when late rows may
    /// still update it.
    fn fire(&mut self, end: i64, window: Groups) -> Result<Option<StreamBatch>> {
        let early = self.early.remove(&end);
        self.dirty.remove(&end);
        let emitted = if self.allowed_lateness == 0 {
            self.close(window)?
        } else {
            let partial = window.into_partial()?;
            let emitted = self.evaluate_partial(&partial)?;
            self.fired.insert(end, FiredWindow { partial, emitted: emitted.clone() });
            emitted
        };
        if self.emit.is_some() || self.allowed_lateness > 0 {
            // An updating result: the final rows correct the early ones.
            return changelog(&self.spec.output_schema, early.as_ref(), &emitted);
        }
        Ok((emitted.num_rows() > 0).then(|| StreamBatch::inserts(emitted)))
    }

    fn evaluate_partial(&self, partial: &Partial) -> Result<RecordBatch> {
        let mut groups = Groups::new(&self.converter, &self.spec.aggregates)?;
        groups.merge(partial)?;
        self.close(groups)
    }

    /// Adds late rows to a fired window and returns the changes.
    fn update_fired(&mut self, end: i64, inputs: &AggregateInputs, rows: &[u32]) -> Result<Option<StreamBatch>> {
        let Some(fired) = self.fired.remove(&end) else { return Ok(None) };
        let mut groups = Groups::new(&self.converter, &self.spec.aggregates)?;
        groups.merge(&fired.partial)?;
        groups.update(inputs, rows)?;
        let partial = groups.into_partial()?;
        let current = self.evaluate_partial(&partial)?;
        let changes = changelog(&self.spec.output_schema, Some(&fired.emitted), &current)?;
        self.fired.insert(end, FiredWindow { partial, emitted: current });
        Ok(changes)
    }

    /// Early results (EMIT): the current rows of every open window that
    /// changed since its last early result, as a changelog.
    fn emit_early(&mut self, out: &mut Vec<Message>) -> Result<()> {
        let dirty: Vec<i64> = std::mem::take(&mut self.dirty).into_iter().collect();
        for end in dirty {
            let Some(window) = self.windows.remove(&end) else { continue };
            let partial = window.into_partial()?;
            let mut window = Groups::new(&self.converter, &self.spec.aggregates)?;
            window.merge(&partial)?;
            self.windows.insert(end, window);
            let current = self.evaluate_partial(&partial)?;
            if let Some(changes) = changelog(&self.spec.output_schema, self.early.get(&end), &current)? {
                out.push(Message::Batch(changes));
            }
            self.early.insert(end, current);
        }
        self.last_early = Instant::now();
        Ok(())
    }

    fn close(&self, window: Groups) -> Result<RecordBatch> {
        let (mut columns, values) = window.finish(&self.converter)?;
        columns.extend(values);
        output_batch(&self.spec.output_schema, columns)
    }
}

impl Operator for WindowAggregate {
    fn state_size(&self) -> Option<StateSize> {
        let rows = self.windows.values().map(Groups::len).sum::<usize>();
        let bytes = self.windows.values().map(Groups::bytes).sum::<usize>()
            + self.early.values().map(RecordBatch::get_array_memory_size).sum::<usize>();
        Some(StateSize { rows: rows as u64, bytes: bytes as u64 })
    }

    fn oldest_open_window(&self) -> Option<i64> {
        self.windows.keys().next().copied()
    }

    /// Updates accumulators only: a window's rows go out when it closes.
    fn on_batch(&mut self, _port: usize, batch: StreamBatch, out: &mut Vec<Message>) -> Result<()> {
        reject_retractions(&batch)?;
        let rows = &batch.rows;
        let num_rows = rows.num_rows();
        if num_rows == 0 {
            return Ok(());
        }
        let ends = window_times(&self.spec.window_end, rows)?;
        let inputs = AggregateInputs::evaluate(
            &self.converter,
            &self.spec.group_exprs,
            &self.spec.aggregates,
            &self.spec.filters,
            rows,
        )?;

        // Split the rows by window, keeping arrival order within each window.
        let mut slices = Slices::new();
        let mut late_slices = Slices::new();
        let (watermark, fired) = (self.watermark, &self.fired);
        // Behind the watermark and not a fired window that still takes late
        // rows: past the allowed lateness, or late for this operator though
        // not for its source (an input back from idleness).
        let is_late = |end: i64| Watermark(end) <= watermark && !fired.contains_key(&end);
        for_each_on_time_row(&ends, &self.metrics, is_late, |row, end| {
            let into = if Watermark(end) <= watermark { &mut late_slices } else { &mut slices };
            push_row(into, end, row);
            Ok(())
        })?;

        for (end, indices) in late_slices {
            if let Some(changes) = self.update_fired(end, &inputs, &indices)? {
                out.push(Message::Batch(changes));
            }
        }
        for (end, indices) in slices {
            if !self.windows.contains_key(&end) {
                self.windows.insert(end, Groups::new(&self.converter, &self.spec.aggregates)?);
            }
            if let Some(window) = self.windows.get_mut(&end) {
                window.update(&inputs, &indices)?;
            }
            if self.emit.is_some() {
                self.dirty.insert(end);
            }
        }
        let due = match self.emit {
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
        if let Some(EarlyEmit::Every(interval)) = self.emit
            && self.last_early.elapsed() >= interval
        {
            self.emit_early(out)?;
        }
        while let Some(entry) = self.windows.first_entry() {
            if Watermark(*entry.key()) > watermark {
                break;
            }
            let end = *entry.key();
            let window = entry.remove();
            if let Some(rows) = self.fire(end, window)? {
                out.push(Message::Batch(rows));
            }
        }
        // Fired windows past their allowed lateness are final.
        let lateness = self.allowed_lateness;
        self.fired.retain(|end, _| Watermark(end.saturating_add(lateness)) > watermark);
        out.push(Message::Watermark(watermark));
        Ok(())
    }

    fn snapshot(&mut self) -> Result<OperatorState> {
        let mut state = OperatorState::default();
        state.put_value("watermark", self.watermark.0);
        let mut open = Vec::with_capacity(self.windows.len());
        for (end, window) in &mut self.windows {
            open.push((*end, window.snapshot(&self.converter, &self.spec.aggregates)?.to_batch()?));
        }
        put_indexed(&mut state, "windows", open)?;
        let fired =
            self.fired.iter().map(|(end, fired)| Ok((*end, fired.partial.to_batch()?))).collect::<Result<_>>()?;
        put_indexed(&mut state, "fired", fired)?;
        let fired_rows = self.fired.iter().map(|(end, fired)| (*end, fired.emitted.clone())).collect();
        put_indexed(&mut state, "fired_rows", fired_rows)?;
        put_indexed(&mut state, "early", self.early.iter().map(|(end, rows)| (*end, rows.clone())).collect())?;
        state.put("dirty", i64_batch("end", self.dirty.iter().copied())?);
        Ok(state)
    }

    fn restore(&mut self, mut state: OperatorState) -> Result<()> {
        let (converter, aggregates) = (&self.converter, &self.spec.aggregates);
        let schema = &self.spec.output_schema;
        self.watermark = Watermark(state.value("watermark")?);
        for (end, batch) in take_indexed(&mut state, "windows")? {
            let partial = Partial::from_batch(&batch, converter, aggregates.len())?;
            self.windows.insert(end, Groups::restored(converter, aggregates, &partial)?);
        }
        let fired_rows = take_indexed(&mut state, "fired_rows")?;
        let fired = take_indexed(&mut state, "fired")?;
        if fired.len() != fired_rows.len() {
            return Err(RuntimeError::internal("the checkpoint's fired windows and their rows do not match"));
        }
        for ((end, partial), (rows_end, emitted)) in fired.into_iter().zip(fired_rows) {
            if end != rows_end {
                return Err(RuntimeError::internal("the checkpoint's fired windows and their rows do not match"));
            }
            let partial = Partial::from_batch(&partial, converter, aggregates.len())?;
            self.fired.insert(end, FiredWindow { partial, emitted: with_schema(schema, emitted)? });
        }
        for (end, rows) in take_indexed(&mut state, "early")? {
            self.early.insert(end, with_schema(schema, rows)?);
        }
        self.dirty = i64_column(&state.take("dirty")?, "end")?.values().iter().copied().collect();
        // Processing time does not survive a restart: EMIT EVERY waits a
        // whole interval again.
        self.last_early = Instant::now();
        Ok(())
    }
}

impl WindowAggregate {
    /// Number of windows currently open (for metrics and tests).
    pub fn open_windows(&self) -> usize {
        self.windows.len()
    }
}

#[cfg(test)]
pub(crate) fn group_count(operator: &WindowAggregate) -> usize {
    operator.windows.values().map(Groups::len).sum()
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::ArrayRef;
    use datafusion::arrow::array::{Int64Array, StringArray, TimestampNanosecondArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::functions_aggregate::count::count_udaf;
    use datafusion::functions_aggregate::sum::sum_udaf;
    use datafusion::physical_expr::aggregate::AggregateExprBuilder;
    use datafusion::physical_expr::expressions::col;

    use super::*;

    fn spec() -> WindowAggregateSpec {
        let input = Arc::new(Schema::new(vec![
            Field::new("key", DataType::Utf8, false),
            Field::new("value", DataType::Int64, false),
            Field::new("window_end", DataType::Timestamp(TimeUnit::Nanosecond, None), false),
        ]));
        let count = AggregateExprBuilder::new(count_udaf(), vec![col("value", &input).unwrap()])
            .schema(input.clone())
            .alias("n")
            .build()
            .unwrap();
        let sum = AggregateExprBuilder::new(sum_udaf(), vec![col("value", &input).unwrap()])
            .schema(input.clone())
            .alias("total")
            .build()
            .unwrap();
        let output = Arc::new(Schema::new(vec![
            Field::new("window_end", DataType::Timestamp(TimeUnit::Nanosecond, None), false),
            Field::new("key", DataType::Utf8, false),
            Field::new("n", DataType::Int64, false),
            Field::new("total", DataType::Int64, true),
        ]));
        WindowAggregateSpec {
            group_exprs: vec![col("window_end", &input).unwrap(), col("key", &input).unwrap()],
            window_end: col("window_end", &input).unwrap(),
            aggregates: vec![Arc::new(count), Arc::new(sum)],
            filters: vec![None, None],
            output_schema: output,
            input_schema: input,
            emit: None,
            allowed_lateness: None,
        }
    }

    fn batch(spec: &WindowAggregateSpec, rows: &[(&str, i64, i64)]) -> StreamBatch {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(rows.iter().map(|row| row.0).collect::<Vec<_>>())),
            Arc::new(Int64Array::from(rows.iter().map(|row| row.1).collect::<Vec<_>>())),
            Arc::new(TimestampNanosecondArray::from(rows.iter().map(|row| row.2).collect::<Vec<_>>())),
        ];
        StreamBatch::inserts(RecordBatch::try_new(spec.input_schema.clone(), columns).unwrap())
    }

    fn emitted(out: &[Message]) -> String {
        let batches: Vec<RecordBatch> = out
            .iter()
            .filter_map(|message| match message {
                Message::Batch(batch) => Some(batch.rows.clone()),
                _ => None,
            })
            .collect();
        pretty_format_batches(&batches).unwrap().to_string()
    }

    #[test]
    fn emits_each_window_once_when_the_watermark_passes_its_end() {
        let spec = spec();
        let mut operator = WindowAggregate::new(spec.clone()).unwrap();
        let mut out = Vec::new();
        operator.on_batch(0, batch(&spec, &[("a", 1, 10), ("b", 2, 10), ("a", 3, 20)]), &mut out).unwrap();
        operator.on_batch(0, batch(&spec, &[("a", 4, 10)]), &mut out).unwrap();
        assert_eq!(group_count(&operator), 3);
        operator.on_watermark(Watermark(9), &mut out).unwrap();
        assert_eq!(emitted(&out), "++\n++");
        operator.on_watermark(Watermark(10), &mut out).unwrap();
        let expected = [
            "+-------------------------------+-----+---+-------+",
            "| window_end                    | key | n | total |",
            "+-------------------------------+-----+---+-------+",
            "| 1970-01-01T00:00:00.000000010 | a   | 2 | 5     |",
            "| 1970-01-01T00:00:00.000000010 | b   | 1 | 2     |",
            "+-------------------------------+-----+---+-------+",
        ];
        assert_eq!(emitted(&out), expected.join("\n"));
        assert_eq!(operator.open_windows(), 1);
        out.clear();
        operator.on_watermark(Watermark::MAX, &mut out).unwrap();
        assert!(emitted(&out).contains("| a   | 1 | 3     |"));
        assert_eq!(operator.open_windows(), 0);
    }

    #[test]
    fn restores_open_fired_and_early_windows_from_a_snapshot() {
        let spec = spec();
        let rows = |rows: &[(&str, i64, i64)]| (0, Message::Batch(batch(&spec, rows)));
        let messages = vec![
            rows(&[("a", 1, 10), ("b", 2, 10), ("a", 3, 20)]),
            rows(&[("a", 4, 10)]),
            (0, Message::Watermark(Watermark(9))),
            (0, Message::Watermark(Watermark(10))),
            // Late for window 10, which an allowed lateness of 10 keeps until 20.
            rows(&[("c", 5, 20), ("b", 6, 10), ("a", 7, 30)]),
            (0, Message::Watermark(Watermark(20))),
            // Window 10 is final now; window 20 still takes late rows.
            rows(&[("a", 8, 10), ("d", 9, 20), ("b", 10, 30)]),
            (0, Message::Watermark(Watermark(25))),
            (0, Message::Watermark(Watermark::MAX)),
            (0, Message::End),
        ];
        let configurations = [
            (0, None),
            (10, None),
            (10, Some(EarlyEmit::OnUpdate)),
            (0, Some(EarlyEmit::Every(std::time::Duration::ZERO))),
        ];
        for (lateness, emit) in configurations {
            let new = || {
                let operator = WindowAggregate::new(spec.clone()).unwrap().with_allowed_lateness(lateness);
                Box::new(operator.with_emit(emit)) as Box<dyn Operator>
            };
            let output = crate::operators::restore_check::assert_restores(new, &messages);
            assert!(output.iter().any(|line| line.starts_with("+ ")), "{output:?}");
            if lateness > 0 || emit.is_some() {
                assert!(output.iter().any(|line| line.starts_with("- ")), "no retraction in {output:?}");
            }
        }
        // Windows stay dirty between messages only under EMIT EVERY, until
        // its interval of processing time passes: compare them directly.
        let every = Some(EarlyEmit::Every(std::time::Duration::from_secs(3600)));
        let mut operator = WindowAggregate::new(spec.clone()).unwrap().with_emit(every);
        operator.on_batch(0, batch(&spec, &[("a", 1, 10), ("b", 2, 20)]), &mut Vec::new()).unwrap();
        let state = OperatorState::decode(&operator.snapshot().unwrap().encode().unwrap()).unwrap();
        let mut restored = WindowAggregate::new(spec.clone()).unwrap().with_emit(every);
        restored.restore(state).unwrap();
        assert_eq!(restored.dirty, std::collections::BTreeSet::from([10, 20]));
    }

    #[test]
    fn a_huge_allowed_lateness_in_the_spec_keeps_fired_windows_open() {
        // 300 years is more nanoseconds than an i64 holds: converted with
        // `as i64` it wrapped negative and late rows were dropped.
        let lateness = std::time::Duration::from_secs(300 * 365 * 86_400);
        let spec = WindowAggregateSpec { allowed_lateness: Some(lateness), ..spec() };
        let context = crate::operator::OperatorContext::default();
        let mut operator = crate::operators::OperatorSpec::WindowAggregate(spec.clone()).instantiate(&context).unwrap();
        let mut out = Vec::new();
        operator.on_batch(0, batch(&spec, &[("a", 1, 10)]), &mut out).unwrap();
        operator.on_watermark(Watermark(1_000), &mut out).unwrap();
        operator.on_batch(0, batch(&spec, &[("a", 2, 10)]), &mut out).unwrap();
        let retracted = out.iter().any(|message| match message {
            Message::Batch(batch) => batch.ops.as_ref().is_some_and(|ops| ops.contains(&crate::message::Op::Delete)),
            _ => false,
        });
        assert!(retracted, "the late row did not update the fired window: {out:?}");
    }
}
