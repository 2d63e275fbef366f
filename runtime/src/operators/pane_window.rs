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

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, TimestampNanosecondArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit, TimestampNanosecondType};
use datafusion::arrow::row::RowConverter;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

use crate::error::Result;
use crate::message::{Message, StreamBatch, Watermark};
use crate::metrics::QueryMetrics;
use crate::operator::Operator;
use crate::operators::groups::{
    AggregateInputs, Groups, Partial, evaluate, grouping_keys, key_converter, output_batch, reject_retractions,
};
use crate::operators::sliding::{PaneRows, Running, all_invertible};
use crate::operators::window_assign::WindowKind;

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
}

impl Operator for PaneWindow {
    fn on_batch(&mut self, _port: usize, batch: StreamBatch, _out: &mut Vec<Message>) -> Result<()> {
        reject_retractions(&batch)?;
        let rows = &batch.rows;
        if rows.num_rows() == 0 {
            return Ok(());
        }
        let starts = cast(&evaluate(&self.spec.pane_start, rows)?, &DataType::Timestamp(TimeUnit::Nanosecond, None))?;
        let starts = starts.as_primitive::<TimestampNanosecondType>();
        let inputs = AggregateInputs::evaluate(
            &self.converter,
            &self.spec.key_exprs,
            &self.spec.aggregates,
            &self.spec.filters,
            rows,
        )?;
        let mut slices: Vec<(i64, Vec<u32>)> = Vec::new();
        let mut late_rows = 0;
        for row in 0..rows.num_rows() {
            if starts.is_null(row) {
                continue;
            }
            let start = starts.value(row);
            if self.next_pane.is_some_and(|next| start < next) {
                late_rows += 1;
                continue;
            }
            match slices.iter_mut().find(|(pane, _)| *pane == start) {
                Some((_, indices)) => indices.push(row as u32),
                None => slices.push((start, vec![row as u32])),
            }
        }
        if late_rows > 0 {
            QueryMetrics::add(&self.metrics.late_rows_dropped, late_rows);
        }
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
                    // the earliest open pane.
                    let Some(first) = self.first_open_pane() else {
                        break;
                    };
                    let end = kind.first_end_after(first);
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
                pane += kind.pane_size();
            }
            self.next_pane = Some(pane);
            let start = kind.start_of_window_ending(end);
            self.pop_panes_before(start)?;
            if let Some((keys, values)) = self.window_values()? {
                out.push(Message::Batch(StreamBatch::inserts(self.emit(keys, values, start, end)?)));
            }
            let next_end = end + kind.end_step();
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
}
