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
//! CUMULATE uses the same FIFO: panes of `step` are pushed as they
//! complete and popped when a new `max_size` period begins, so each window
//! `[S, S + k·step)` is the merge of the panes since `S`.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, TimestampNanosecondArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit, TimestampNanosecondType};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

use crate::error::Result;
use crate::message::{Message, StreamBatch, Watermark};
use crate::metrics::QueryMetrics;
use crate::operator::Operator;
use crate::operators::groups::{
    AggregateInputs, Groups, Partial, evaluate, grouping_keys, output_batch, reject_retractions,
};
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

pub struct PaneWindow {
    spec: PaneWindowSpec,
    converter: RowConverter,
    open_panes: BTreeMap<i64, Groups>,
    queue: PaneQueue,
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
        let fields = spec
            .key_exprs
            .iter()
            .map(|expr| Ok(SortField::new(expr.data_type(&spec.input_schema)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            converter: RowConverter::new(fields)?,
            spec,
            open_panes: BTreeMap::new(),
            queue: PaneQueue::default(),
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

    fn push_pane(&mut self, start: i64, pane: Partial) -> Result<()> {
        let back_merge = match self.queue.back_merge.take() {
            Some(previous) => self.merge(&[&previous, &pane])?,
            None => self.merge(&[&pane])?,
        };
        self.queue.back_merge = Some(back_merge);
        if pane.keys.num_rows() > 0 {
            self.live_panes.push_back(start);
        }
        self.queue.back.push((start, pane));
        Ok(())
    }

    /// Drops panes that start before `start`.
    fn pop_panes_before(&mut self, start: i64) -> Result<()> {
        while self.live_panes.front().is_some_and(|pane| *pane < start) {
            self.live_panes.pop_front();
        }
        loop {
            if self.queue.front.is_empty() {
                if self.queue.back.first().is_none_or(|(first, _)| *first >= start) {
                    return Ok(());
                }
                // Flip: newest first, each entry merging itself with newer ones.
                let mut suffix: Option<Partial> = None;
                for (pane_start, pane) in std::mem::take(&mut self.queue.back).into_iter().rev() {
                    let merged = match &suffix {
                        Some(newer) => self.merge(&[&pane, newer])?,
                        None => pane,
                    };
                    suffix = Some(merged.clone());
                    self.queue.front.push((pane_start, merged));
                }
                self.queue.back_merge = None;
            }
            match self.queue.front.last() {
                Some((first, _)) if *first < start => {
                    self.queue.front.pop();
                }
                _ => return Ok(()),
            }
        }
    }

    /// The merged window over everything in the queue.
    fn window_result(&self) -> Result<Option<Groups>> {
        let mut groups = Groups::new(&self.converter, &self.spec.aggregates)?;
        if let Some((_, front)) = self.queue.front.last() {
            groups.merge(front)?;
        }
        if let Some(back) = &self.queue.back_merge {
            groups.merge(back)?;
        }
        Ok((groups.len() > 0).then_some(groups))
    }

    fn emit(&self, groups: Groups, start: i64, end: i64) -> Result<RecordBatch> {
        let (keys, values) = groups.finish(&self.converter)?;
        let rows = keys.first().map_or(0, |column| column.len()).max(values.first().map_or(0, |column| column.len()));
        let timestamps = |value: i64| Arc::new(TimestampNanosecondArray::from(vec![value; rows])) as ArrayRef;
        let mut columns: Vec<ArrayRef> = self
            .spec
            .layout
            .iter()
            .map(|column| match column {
                GroupColumn::WindowStart => timestamps(start),
                GroupColumn::WindowEnd => timestamps(end),
                GroupColumn::WindowTime => timestamps(end - 1),
                GroupColumn::Key(index) => keys[*index].clone(),
            })
            .collect();
        columns.extend(values);
        output_batch(&self.spec.output_schema, columns)
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
            if !self.open_panes.contains_key(&start) {
                self.open_panes.insert(start, Groups::new(&self.converter, &self.spec.aggregates)?);
            }
            if let Some(pane) = self.open_panes.get_mut(&start) {
                pane.update(&inputs, &indices)?;
            }
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
                    let Some(&first) = self.open_panes.keys().next() else {
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
                let sealed = match self.open_panes.remove(&pane) {
                    Some(groups) => groups.into_partial()?,
                    None => Groups::new(&self.converter, &self.spec.aggregates)?.into_partial()?,
                };
                self.push_pane(pane, sealed)?;
                pane += kind.pane_size();
            }
            self.next_pane = Some(pane);
            let start = kind.start_of_window_ending(end);
            self.pop_panes_before(start)?;
            if let Some(groups) = self.window_result()? {
                out.push(Message::Batch(StreamBatch::inserts(self.emit(groups, start, end)?)));
            }
            let next_end = end + kind.end_step();
            let next_start = kind.start_of_window_ending(next_end);
            if self.live_panes.iter().any(|pane| *pane >= next_start) {
                self.next_end = Some(next_end);
            } else {
                // No queued rows reach the next window: skip the empty
                // windows rather than stepping through them.
                self.queue = PaneQueue::default();
                self.live_panes.clear();
                self.next_end = None;
            }
        }
        out.push(Message::Watermark(watermark));
        Ok(())
    }
}
