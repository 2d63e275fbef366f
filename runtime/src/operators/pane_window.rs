//! HOP and CUMULATE window aggregation, from panes.
//!
//! # Algorithm
//!
//! Rows are aggregated into *panes* (slices of `gcd(size, slide)` for HOP,
//! of `step` for CUMULATE), keyed by the GROUP BY keys that are not window
//! columns. When the watermark passes a pane's end, its accumulators are
//! turned into intermediate state (a [`Partial`]) and pushed onto a FIFO of
//! panes. A window is the merge of the panes it spans; rows are never read
//! twice.
//!
//! ```text
//!   HOP size 6, slide 2 (panes of 2):
//!     panes:    | p0 | p1 | p2 | p3 | p4 |
//!     window:   [ p0   p1   p2 ]                 ends at 6
//!                    [ p1   p2   p3 ]            ends at 8: push p3, pop p0
//! ```
//!
//! The FIFO is a *two-stacks* sliding aggregation: new panes go on the
//! back stack, whose running merge is kept; when the front stack is empty
//! the back stack is flipped onto it, storing for each pane the merge of it
//! and every newer pane. The window's result is then one merge of the
//! front top with the back's running merge. Each pane is merged a constant
//! number of times, so the cost per slide does not grow with size / slide,
//! and this works for every aggregate, invertible or not (min, max,
//! count distinct): it only needs DataFusion's `merge_batch`.
//!
//! When every aggregate is invertible (count, sum, avg), the FIFO holds
//! the panes' rows instead, and running per-key aggregates add a pane's
//! rows as it enters the window and retract them (`retract_batch`) as it
//! leaves (see [`super::sliding`]).
//!
//! CUMULATE uses the same FIFO: panes of `step` are pushed as they
//! complete and popped when a new `max_size` period begins, so each window
//! `[S, S + k·step)` is the merge of the panes since `S`.
//!
//! # Checkpoints
//!
//! A snapshot holds the open panes, the queue exactly as it stands (for
//! the two stacks, the merged partials of the front and the back's running
//! merge; for retraction, the queued panes' rows and the running
//! aggregates), the next pane and window, the live panes and the
//! watermark. Nothing is recomputed on restore, so the restored operator
//! merges in the same order and emits the same rows.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Int64Array, RecordBatch, TimestampNanosecondArray};
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
    AggregateInputs, Groups, Partial, grouping_keys, key_converter, output_batch, reject_retractions,
};
use crate::operators::sliding::{PaneRows, Running, all_invertible};
use crate::operators::window_assign::WindowKind;
use crate::operators::window_rows::{Slices, for_each_on_time_row, push_row, window_times};
use crate::state::{OperatorState, i64_column};
use crate::state::{i64_batch, put_indexed, take_indexed};

/// What each GROUP BY column of the output is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupColumn {
    WindowStart,
    WindowEnd,
    WindowTime,
    /// The `i`-th key expression.
    Key(usize),
}

/// The rows of one window: its GROUP BY columns laid out as `layout` says
/// (window bounds repeated, key columns), then the aggregate values.
pub(crate) fn window_rows(
    layout: &[GroupColumn],
    schema: &SchemaRef,
    (start, end): (i64, i64),
    keys: Vec<ArrayRef>,
    values: Vec<ArrayRef>,
) -> Result<RecordBatch> {
    let rows = keys.first().map_or(0, |column| column.len()).max(values.first().map_or(0, |column| column.len()));
    let timestamps = |value: i64| Arc::new(TimestampNanosecondArray::from(vec![value; rows])) as ArrayRef;
    let mut columns: Vec<ArrayRef> = layout
        .iter()
        .map(|column| match column {
            GroupColumn::WindowStart => timestamps(start),
            GroupColumn::WindowEnd => timestamps(end),
            GroupColumn::WindowTime => timestamps(end - 1),
            GroupColumn::Key(index) => keys[*index].clone(),
        })
        .collect();
    columns.extend(values);
    output_batch(schema, columns)
}

#[derive(Debug, Clone)]
pub struct PaneWindowSpec {
    pub kind: WindowKind,
    pub input_schema: SchemaRef,
    /// Evaluates each row's pane start (the `window_start` the window
    /// assignment gave it).
    pub pane_start: Arc<dyn PhysicalExpr>,
    /// GROUP BY expressions other than the window columns.
    pub key_exprs: Vec<Arc<dyn PhysicalExpr>>,
    /// The GROUP BY columns of the output, in order.
    pub layout: Vec<GroupColumn>,
    pub aggregates: Vec<Arc<AggregateFunctionExpr>>,
    pub filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    pub output_schema: SchemaRef,
}

/// A two-stacks FIFO of pane partials with O(1) amortised merges.
#[derive(Default)]
struct PaneQueue {
    /// (pane start, merge of this pane and every newer pane in `front`);
    /// the oldest pane is on top.
    front: Vec<(i64, Partial)>,
    /// Panes in arrival order, and the merge of all of them.
    back: Vec<(i64, Partial)>,
    back_merge: Option<Partial>,
}

/// Where panes live between their rows arriving and their leaving the window.
enum PaneStore {
    /// Any aggregates: pane partials in a two-stacks queue, merged.
    Merge { open: BTreeMap<i64, Groups>, queue: PaneQueue },
    /// Invertible aggregates (count, sum, avg): pane rows, added to running
    /// aggregates as they enter the window and retracted as they leave.
    Retract { open: BTreeMap<i64, PaneRows>, queue: VecDeque<(i64, PaneRows)>, running: Running },
}

pub struct PaneWindow {
    spec: PaneWindowSpec,
    converter: RowConverter,
    store: PaneStore,
    /// Start of the next pane to enter the queue (earlier panes are sealed).
    next_pane: Option<i64>,
    /// End of the next window to emit.
    next_end: Option<i64>,
    /// Starts of the queued panes that hold rows, oldest first.
    live_panes: std::collections::VecDeque<i64>,
    watermark: Watermark,
    metrics: Arc<QueryMetrics>,
}

impl PaneWindow {
    pub fn new(mut spec: PaneWindowSpec, metrics: Arc<QueryMetrics>) -> Result<Self> {
        // Output columns refer to keys by index, so an added constant key is never shown.
        spec.key_exprs = grouping_keys(&spec.key_exprs);
        let store = if all_invertible(&spec.aggregates) {
            PaneStore::Retract {
                open: BTreeMap::new(),
                queue: VecDeque::new(),
                running: Running::new(spec.aggregates.clone()),
            }
        } else {
            PaneStore::Merge { open: BTreeMap::new(), queue: PaneQueue::default() }
        };
        Ok(Self {
            converter: key_converter(&spec.key_exprs, &spec.input_schema)?,
            spec,
            store,
            next_pane: None,
            next_end: None,
            live_panes: Default::default(),
            watermark: Watermark::MIN,
            metrics,
        })
    }

    fn merge(&self, parts: &[&Partial]) -> Result<Partial> {
        let mut groups = Groups::new(&self.converter, &self.spec.aggregates)?;
        for part in parts {
            groups.merge(part)?;
        }
        groups.into_partial()
    }

    fn first_open_pane(&self) -> Option<i64> {
        match &self.store {
            PaneStore::Merge { open, .. } => open.keys().next().copied(),
            PaneStore::Retract { open, .. } => open.keys().next().copied(),
        }
    }

    fn add_rows(&mut self, start: i64, inputs: &AggregateInputs, rows: &[u32]) -> Result<()> {
        match &mut self.store {
            PaneStore::Merge { open, .. } => {
                let pane = match open.entry(start) {
                    std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
                    std::collections::btree_map::Entry::Vacant(entry) => {
                        entry.insert(Groups::new(&self.converter, &self.spec.aggregates)?)
                    }
                };
                pane.update(inputs, rows)?;
            }
            PaneStore::Retract { open, .. } => {
                open.entry(start).or_insert_with(PaneRows::new).add(&self.converter, inputs, rows)?
            }
        }
        Ok(())
    }

    /// Seals pane `start` (empty if it got no rows) and enters it into the window.
    fn seal_and_push(&mut self, start: i64) -> Result<()> {
        let live = match &mut self.store {
            PaneStore::Merge { open, .. } => {
                let sealed = match open.remove(&start) {
                    Some(groups) => groups.into_partial()?,
                    None => Groups::new(&self.converter, &self.spec.aggregates)?.into_partial()?,
                };
                let live = sealed.keys.num_rows() > 0;
                self.push_partial(start, sealed)?;
                live
            }
            PaneStore::Retract { open, queue, running } => {
                let rows = open.remove(&start).unwrap_or_else(PaneRows::new);
                running.apply(&rows, false)?;
                let live = !rows.is_empty();
                queue.push_back((start, rows));
                live
            }
        };
        if live {
            self.live_panes.push_back(start);
        }
        Ok(())
    }

    fn push_partial(&mut self, start: i64, pane: Partial) -> Result<()> {
        let PaneStore::Merge { queue, .. } = &mut self.store else { return Ok(()) };
        let previous = queue.back_merge.take();
        let back_merge = match &previous {
            Some(previous) => self.merge(&[previous, &pane])?,
            None => self.merge(&[&pane])?,
        };
        let PaneStore::Merge { queue, .. } = &mut self.store else { return Ok(()) };
        queue.back_merge = Some(back_merge);
        queue.back.push((start, pane));
        Ok(())
    }

    /// Drops panes that start before `start`.
    fn pop_panes_before(&mut self, start: i64) -> Result<()> {
        while self.live_panes.front().is_some_and(|pane| *pane < start) {
            self.live_panes.pop_front();
        }
        if let PaneStore::Retract { queue, running, .. } = &mut self.store {
            while queue.front().is_some_and(|(pane, _)| *pane < start) {
                if let Some((_, rows)) = queue.pop_front() {
                    running.apply(&rows, true)?;
                }
            }
            return Ok(());
        }
        loop {
            let PaneStore::Merge { queue, .. } = &mut self.store else { return Ok(()) };
            if queue.front.is_empty() {
                if queue.back.first().is_none_or(|(first, _)| *first >= start) {
                    return Ok(());
                }
                // Flip: newest first, each entry merging itself with newer ones.
                let back = std::mem::take(&mut queue.back);
                queue.back_merge = None;
                let mut suffix: Option<Partial> = None;
                let mut front = Vec::with_capacity(back.len());
                for (pane_start, pane) in back.into_iter().rev() {
                    let merged = match &suffix {
                        Some(newer) => self.merge(&[&pane, newer])?,
                        None => pane,
                    };
                    suffix = Some(merged.clone());
                    front.push((pane_start, merged));
                }
                let PaneStore::Merge { queue, .. } = &mut self.store else { return Ok(()) };
                queue.front = front;
            }
            let PaneStore::Merge { queue, .. } = &mut self.store else { return Ok(()) };
            match queue.front.last() {
                Some((first, _)) if *first < start => {
                    queue.front.pop();
                }
                _ => return Ok(()),
            }
        }
    }

    /// The window over everything in the queue: key columns and values.
    fn window_values(&mut self) -> Result<Option<(Vec<ArrayRef>, Vec<ArrayRef>)>> {
        match &mut self.store {
            PaneStore::Merge { queue, .. } => {
                let mut groups = Groups::new(&self.converter, &self.spec.aggregates)?;
                if let Some((_, front)) = queue.front.last() {
                    groups.merge(front)?;
                }
                if let Some(back) = &queue.back_merge {
                    groups.merge(back)?;
                }
                if groups.len() == 0 {
                    return Ok(None);
                }
                Ok(Some(groups.finish(&self.converter)?))
            }
            PaneStore::Retract { running, .. } => running.evaluate(&self.converter),
        }
    }

    fn clear_queue(&mut self) {
        self.live_panes.clear();
        match &mut self.store {
            PaneStore::Merge { queue, .. } => *queue = PaneQueue::default(),
            PaneStore::Retract { queue, running, .. } => {
                queue.clear();
                running.clear();
            }
        }
    }

    fn emit(&self, keys: Vec<ArrayRef>, values: Vec<ArrayRef>, start: i64, end: i64) -> Result<RecordBatch> {
        window_rows(&self.spec.layout, &self.spec.output_schema, (start, end), keys, values)
    }

    fn partials(&self, state: &mut OperatorState, name: &str) -> Result<Vec<(i64, Partial)>> {
        take_indexed(state, name)?
            .into_iter()
            .map(|(start, batch)| {
                Ok((start, Partial::from_batch(&batch, &self.converter, self.spec.aggregates.len())?))
            })
            .collect()
    }
}

/// Partials keyed by pane start, as batches for [`put_indexed`].
fn partial_batches<'a>(partials: impl IntoIterator<Item = (i64, &'a Partial)>) -> Result<Vec<(i64, RecordBatch)>> {
    partials.into_iter().map(|(start, partial)| Ok((start, partial.to_batch()?))).collect()
}

/// `next_pane` and `next_end`, each null when unset, as a one-row batch.
fn position_batch(next_pane: Option<i64>, next_end: Option<i64>) -> Result<RecordBatch> {
    let column = |value: Option<i64>| Arc::new(Int64Array::from(vec![value])) as ArrayRef;
    crate::state::batch(vec![("next_pane", column(next_pane)), ("next_end", column(next_end))])
}

fn optional_i64(batch: &RecordBatch, name: &str) -> Result<Option<i64>> {
    let column = i64_column(batch, name)?;
    if column.len() != 1 {
        return Err(RuntimeError::internal(format!("the checkpoint's {name} is not one value")));
    }
    Ok(column.is_valid(0).then(|| column.value(0)))
}

impl Operator for PaneWindow {
    fn state_size(&self) -> Option<StateSize> {
        let (rows, bytes) = match &self.store {
            PaneStore::Merge { open, queue } => {
                let queued = queue.front.len() + queue.back.len();
                (
                    open.values().map(Groups::len).sum::<usize>() + queued,
                    open.values().map(Groups::bytes).sum::<usize>(),
                )
            }
            PaneStore::Retract { open, queue, .. } => {
                let panes = open.values().chain(queue.iter().map(|(_, rows)| rows));
                panes.fold((0, 0), |(rows, bytes), pane| (rows + pane.len(), bytes + pane.bytes()))
            }
        };
        Some(StateSize { rows: rows as u64, bytes: bytes as u64 })
    }

    fn oldest_open_window(&self) -> Option<i64> {
        self.next_end
    }

    fn on_batch(&mut self, _port: usize, batch: StreamBatch, _out: &mut Vec<Message>) -> Result<()> {
        reject_retractions(&batch)?;
        let rows = &batch.rows;
        if rows.num_rows() == 0 {
            return Ok(());
        }
        let starts = window_times(&self.spec.pane_start, rows)?;
        let inputs = AggregateInputs::evaluate(
            &self.converter,
            &self.spec.key_exprs,
            &self.spec.aggregates,
            &self.spec.filters,
            rows,
        )?;
        let mut slices = Slices::new();
        let next_pane = self.next_pane;
        let is_late = |start: i64| next_pane.is_some_and(|next| start < next);
        for_each_on_time_row(&starts, &self.metrics, is_late, |row, start| {
            push_row(&mut slices, start, row);
            Ok(())
        })?;
        for (start, indices) in slices {
            self.add_rows(start, &inputs, &indices)?;
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Watermark, out: &mut Vec<Message>) -> Result<()> {
        self.watermark = watermark;
        let kind = self.spec.kind;
        loop {
            let end = match self.next_end {
                Some(end) => end,
                None => {
                    // Nothing pending: the next window is the first holding
                    // the earliest open pane, or the watermark if it is
                    // older: a row still to come may be as old as the
                    // watermark, and must find its windows open.
                    let Some(first) = self.first_open_pane() else {
                        break;
                    };
                    let end = kind.first_end_after(first.min(watermark.0));
                    let start = kind.start_of_window_ending(end);
                    self.next_pane = Some(self.next_pane.map_or(start, |next| next.max(start)));
                    self.next_end = Some(end);
                    end
                }
            };
            if Watermark(end) > watermark {
                break;
            }
            // Seal and enqueue every pane up to the window's end, empty ones too.
            let mut pane = self.next_pane.unwrap_or(end);
            while pane < end {
                self.seal_and_push(pane)?;
                // Saturates at `i64::MAX`, where `end` stops the loop.
                pane = pane.saturating_add(kind.pane_size().max(1));
            }
            self.next_pane = Some(pane);
            let start = kind.start_of_window_ending(end);
            self.pop_panes_before(start)?;
            if let Some((keys, values)) = self.window_values()? {
                out.push(Message::Batch(StreamBatch::inserts(self.emit(keys, values, start, end)?)));
            }
            let Some(next_end) = end.checked_add(kind.end_step().max(1)) else {
                // The window ending at `i64::MAX` is the last there can be.
                self.clear_queue();
                self.next_end = None;
                break;
            };
            let next_start = kind.start_of_window_ending(next_end);
            if self.live_panes.iter().any(|pane| *pane >= next_start) {
                self.next_end = Some(next_end);
            } else {
                // No queued rows reach the next window: skip the empty
                // windows rather than stepping through them.
                self.clear_queue();
                self.next_end = None;
            }
        }
        out.push(Message::Watermark(watermark));
        Ok(())
    }

    fn snapshot(&mut self) -> Result<OperatorState> {
        let mut state = OperatorState::default();
        state.put_value("watermark", self.watermark.0);
        state.put("position", position_batch(self.next_pane, self.next_end)?);
        state.put("live_panes", i64_batch("start", self.live_panes.iter().copied())?);
        match &mut self.store {
            PaneStore::Merge { open, queue } => {
                let mut panes = Vec::with_capacity(open.len());
                for (start, groups) in open.iter_mut() {
                    panes.push((*start, groups.snapshot(&self.converter, &self.spec.aggregates)?.to_batch()?));
                }
                put_indexed(&mut state, "open", panes)?;
                put_indexed(
                    &mut state,
                    "front",
                    partial_batches(queue.front.iter().map(|(start, partial)| (*start, partial)))?,
                )?;
                put_indexed(
                    &mut state,
                    "back",
                    partial_batches(queue.back.iter().map(|(start, partial)| (*start, partial)))?,
                )?;
                // Zero or one entry.
                put_indexed(
                    &mut state,
                    "back_merge",
                    partial_batches(queue.back_merge.iter().map(|partial| (0, partial)))?,
                )?;
            }
            PaneStore::Retract { open, queue, running } => {
                let open = open.iter().map(|(start, rows)| Ok((*start, rows.to_batch()?))).collect::<Result<_>>()?;
                put_indexed(&mut state, "open", open)?;
                let queue = queue.iter().map(|(start, rows)| Ok((*start, rows.to_batch()?))).collect::<Result<_>>()?;
                put_indexed(&mut state, "queue", queue)?;
                running.snapshot(&mut state, "running")?;
            }
        }
        Ok(state)
    }

    fn restore(&mut self, mut state: OperatorState) -> Result<()> {
        self.watermark = Watermark(state.value("watermark")?);
        let position = state.take("position")?;
        self.next_pane = optional_i64(&position, "next_pane")?;
        self.next_end = optional_i64(&position, "next_end")?;
        self.live_panes = i64_column(&state.take("live_panes")?, "start")?.values().iter().copied().collect();
        let aggregates = self.spec.aggregates.len();
        match &self.store {
            PaneStore::Merge { .. } => {
                let mut restored = BTreeMap::new();
                for (start, partial) in self.partials(&mut state, "open")? {
                    restored.insert(start, Groups::restored(&self.converter, &self.spec.aggregates, &partial)?);
                }
                let front = self.partials(&mut state, "front")?;
                let back = self.partials(&mut state, "back")?;
                let back_merge = self.partials(&mut state, "back_merge")?.pop().map(|(_, partial)| partial);
                self.store = PaneStore::Merge { open: restored, queue: PaneQueue { front, back, back_merge } };
            }
            PaneStore::Retract { .. } => {
                let rows = |(start, batch): (i64, RecordBatch)| {
                    Ok((start, PaneRows::from_batch(&batch, &self.converter, aggregates)?))
                };
                let open = take_indexed(&mut state, "open")?.into_iter().map(rows).collect::<Result<_>>()?;
                let queue = take_indexed(&mut state, "queue")?.into_iter().map(rows).collect::<Result<_>>()?;
                let mut running = Running::new(self.spec.aggregates.clone());
                running.restore(&mut state, "running", &self.converter)?;
                self.store = PaneStore::Retract { open, queue, running };
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Float64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use datafusion::functions_aggregate::average::avg_udaf;
    use datafusion::functions_aggregate::count::count_udaf;
    use datafusion::functions_aggregate::min_max::max_udaf;
    use datafusion::functions_aggregate::sum::sum_udaf;
    use datafusion::logical_expr::AggregateUDF;
    use datafusion::physical_expr::aggregate::AggregateExprBuilder;
    use datafusion::physical_expr::expressions::col;

    use super::*;

    fn timestamp() -> DataType {
        DataType::Timestamp(TimeUnit::Nanosecond, None)
    }

    fn input_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("key", DataType::Utf8, false),
            Field::new("value", DataType::Int64, false),
            Field::new("ratio", DataType::Float64, false),
            Field::new("pane_start", timestamp(), false),
        ]))
    }

    /// count(value), sum(value), sum(ratio), avg(ratio) per key, and
    /// max(value) too (not invertible) when `with_max`.
    fn window(kind: WindowKind, with_max: bool) -> PaneWindow {
        let input = input_schema();
        let aggregate = |function: Arc<AggregateUDF>, column: &str, alias: &str| {
            let expr = AggregateExprBuilder::new(function, vec![col(column, &input).unwrap()])
                .schema(input.clone())
                .alias(alias)
                .build()
                .unwrap();
            Arc::new(expr)
        };
        let mut aggregates = vec![
            aggregate(count_udaf(), "value", "n"),
            aggregate(sum_udaf(), "value", "total"),
            aggregate(sum_udaf(), "ratio", "ratio_total"),
            aggregate(avg_udaf(), "ratio", "ratio_avg"),
        ];
        let mut fields = vec![
            Field::new("window_start", timestamp(), false),
            Field::new("window_end", timestamp(), false),
            Field::new("key", DataType::Utf8, false),
            Field::new("n", DataType::Int64, false),
            Field::new("total", DataType::Int64, true),
            Field::new("ratio_total", DataType::Float64, true),
            Field::new("ratio_avg", DataType::Float64, true),
        ];
        if with_max {
            aggregates.push(aggregate(max_udaf(), "value", "top"));
            fields.push(Field::new("top", DataType::Int64, true));
        }
        let spec = PaneWindowSpec {
            kind,
            pane_start: col("pane_start", &input).unwrap(),
            key_exprs: vec![col("key", &input).unwrap()],
            layout: vec![GroupColumn::WindowStart, GroupColumn::WindowEnd, GroupColumn::Key(0)],
            filters: vec![None; aggregates.len()],
            aggregates,
            output_schema: Arc::new(Schema::new(fields)),
            input_schema: input,
        };
        PaneWindow::new(spec, Arc::default()).unwrap()
    }

    /// Rows `(key, value, ratio, event time)`, each with its pane's start.
    fn rows(kind: WindowKind, rows: &[(&str, i64, f64, i64)]) -> (usize, Message) {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(rows.iter().map(|row| row.0).collect::<Vec<_>>())),
            Arc::new(Int64Array::from(rows.iter().map(|row| row.1).collect::<Vec<_>>())),
            Arc::new(Float64Array::from(rows.iter().map(|row| row.2).collect::<Vec<_>>())),
            Arc::new(TimestampNanosecondArray::from(rows.iter().map(|row| kind.pane_start(row.3)).collect::<Vec<_>>())),
        ];
        (0, Message::Batch(StreamBatch::inserts(RecordBatch::try_new(input_schema(), columns).unwrap())))
    }

    #[test]
    fn restores_hop_and_cumulate_panes_from_a_snapshot() {
        let kinds = [
            WindowKind::Hop { size: 6, slide: 2, offset: 0 },
            WindowKind::Cumulate { step: 2, max_size: 6, offset: 0 },
        ];
        for kind in kinds {
            let messages = vec![
                rows(kind, &[("a", 1, 0.1, 1), ("b", 2, 0.5, 3)]),
                rows(kind, &[("a", 2, 0.2, 3), ("a", 3, 0.3, 5)]),
                (0, Message::Watermark(Watermark(4))),
                rows(kind, &[("a", 4, 0.4, 7), ("b", 5, 0.7, 6)]),
                (0, Message::Watermark(Watermark(8))),
                // a@2 is late (its pane is sealed) and dropped. For HOP, a's
                // ratio sum in [8, 14) reads 0.4999999999999999 after its
                // adds and retractions; rebuilt from the panes it would be 0.5.
                rows(kind, &[("a", 9, 0.9, 2), ("c", 6, 0.6, 9), ("a", 5, 0.5, 9)]),
                (0, Message::Watermark(Watermark(12))),
                // After a gap: the queue empties and windows skip ahead.
                rows(kind, &[("b", 7, 0.1, 40), ("a", 8, 0.2, 41)]),
                // a@41 is still live in the queue for HOP's next windows.
                (0, Message::Watermark(Watermark(42))),
                (0, Message::Watermark(Watermark::MAX)),
                (0, Message::End),
            ];
            for with_max in [false, true] {
                let retracting = matches!(window(kind, with_max).store, PaneStore::Retract { .. });
                assert_eq!(retracting, !with_max, "max is not invertible");
                let new = || Box::new(window(kind, with_max)) as Box<dyn Operator>;
                let output = crate::operators::restore_check::assert_restores(new, &messages);
                assert!(output.iter().any(|line| line.starts_with("+ ")), "{output:?}");
            }
        }
    }

    #[test]
    fn windows_near_i64_max_fire_without_overflow() {
        let kinds = [
            WindowKind::Hop { size: 6, slide: 2, offset: 0 },
            WindowKind::Cumulate { step: 2, max_size: 6, offset: 0 },
            WindowKind::Hop { size: 1 << 62, slide: 1 << 61, offset: 0 },
        ];
        for kind in kinds {
            for with_max in [false, true] {
                let mut operator = window(kind, with_max);
                let mut out = Vec::new();
                let rows = rows(kind, &[("a", 1, 0.1, i64::MAX - 3), ("a", 2, 0.2, i64::MAX), ("b", 3, 0.3, 0)]);
                let Message::Batch(batch) = rows.1 else { unreachable!() };
                operator.on_batch(0, batch, &mut out).unwrap();
                operator.on_watermark(Watermark(i64::MAX - 1), &mut out).unwrap();
                operator.on_watermark(Watermark::MAX, &mut out).unwrap();
                assert!(out.iter().any(|message| matches!(message, Message::Batch(_))), "{kind:?}");
            }
        }
    }

    #[test]
    fn a_row_older_than_the_first_one_still_finds_its_first_windows() {
        // HOP 6 s every 2 s. The first row is at 7; the watermark (3) then
        // lets in a row at 5, whose first window is [0, 6).
        let kind = WindowKind::Hop { size: 6, slide: 2, offset: 0 };
        let messages = vec![
            rows(kind, &[("a", 1, 0.1, 7)]),
            (0, Message::Watermark(Watermark(3))),
            rows(kind, &[("a", 2, 0.2, 5)]),
            (0, Message::Watermark(Watermark::MAX)),
            (0, Message::End),
        ];
        for with_max in [false, true] {
            let new = || Box::new(window(kind, with_max)) as Box<dyn Operator>;
            let output = crate::operators::restore_check::assert_restores(new, &messages);
            let windows: Vec<&str> = output.iter().filter(|line| line.starts_with("+ ")).map(String::as_str).collect();
            assert_eq!(windows.len(), 4, "[0, 6), [2, 8), [4, 10), [6, 12): {output:?}");
            assert!(windows[0].contains("1970-01-01T00:00:00, 1970-01-01T00:00:00.000000006, a, 1, 2"), "{output:?}");
        }
    }
}
