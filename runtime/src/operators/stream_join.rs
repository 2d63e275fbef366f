//! Stream-stream joins that remember the past: the **interval join** (a
//! time bound between the two rows) and the **unbounded join** (no bound:
//! every row is kept, or kept for the state TTL). One operator,
//! [`StreamJoin`], runs both: they share the per-side state and the probe,
//! and differ only in what purges state and whether outer rows wait.
//! The ON condition and its helpers are in
//! [`join_condition`](crate::operators::join_condition).
//!
//! # Algorithm
//!
//! Each side keeps its rows in a hash map from the join key (arrow row
//! format) to the rows with that key, each with its event time and how many
//! rows of the other side it currently matches. A batch arriving on one side
//! is probed against the other side's map: the candidate pairs become one
//! Arrow batch, the rest of the ON condition is evaluated on it in one call,
//! and the passing pairs are emitted. Then the batch's rows are stored (or,
//! for retractions, removed).
//!
//! ```text
//!   left batch ─► keys ─► probe right map ─► candidate pairs ─► ON filter ─► out
//!                    └──► store in left map (time, matches)
//! ```
//!
//! Interval join: a pair matches only when `right.time - left.time` lies in
//! `[lower, upper]`. Rows never arrive below the watermark, so a left row is
//! useless once `time + upper < watermark` and a right row once
//! `time - lower < watermark`: the watermark purges them, and an outer
//! side's rows that never matched are emitted with NULLs then, exactly once.
//! The result is append-only; its watermark is held back by the bound so
//! that no emitted row is behind it.
//!
//! Unbounded join: nothing is purged except by `state_ttl`. Outer rows
//! without a partner are emitted with NULLs at once and retracted when a
//! partner arrives; retractions on either input retract the pairs they made.
//!
//! Stored rows stay in the row-format buffer their batch was converted
//! into (entries point into it), so storing a row allocates nothing; a
//! buffer is freed when its last row leaves the state.
//!
//! A checkpoint saves each side's entries (key bytes, row bytes, time and
//! match count, in each key's order) and its `by_time` index exactly as it
//! is, stale keys included, since the index decides the order in which the
//! watermark emits unmatched outer rows. TTL clocks restart at a restore.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{Row, RowConverter, Rows};
use datafusion::common::HashMap;

use crate::error::{Result, RuntimeError};
use crate::message::{Message, Op, StreamBatch, Watermark};
use crate::metrics::QueryMetrics;
use crate::metrics::StateSize;
use crate::operator::Operator;
use crate::operators::join_condition::{
    JoinCondition, JoinKeys, JoinKind, Side, joined, null_columns, row_converter, take_columns,
};
use crate::state::{OperatorState, batch, binary_column, i64_column, rows_column, rows_from_column};
use crate::time::event_times;

/// `right.time - left.time` must lie in `[lower, upper]` (nanoseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeBound {
    /// The event-time column of each side.
    pub left_time: usize,
    pub right_time: usize,
    pub lower: i64,
    pub upper: i64,
}

impl TimeBound {
    /// How far behind the input watermark an output row can be.
    pub fn delay(&self) -> i64 {
        self.upper.max(self.lower.saturating_neg()).max(0)
    }
}

#[derive(Debug, Clone)]
pub struct StreamJoinSpec {
    pub kind: JoinKind,
    pub left_schema: SchemaRef,
    pub right_schema: SchemaRef,
    /// Equality keys and the rest of the ON condition.
    pub condition: JoinCondition,
    /// `Some` for an interval join.
    pub bound: Option<TimeBound>,
    pub output_schema: SchemaRef,
    /// Whether output rows carry ops (the planner's decision).
    pub updating: bool,
    /// Stored rows older than this (processing time) are forgotten; `None`
    /// keeps them until the watermark purges them, or forever.
    pub state_ttl: Option<Duration>,
}

/// A stored row. Interval joins keep a key's entries in time order.
struct Entry {
    row: RowAt,
    time: i64,
    /// Rows of the other side this row currently joins with.
    matches: u32,
    stored_at: Instant,
}

/// Where a stored row is: its buffer in [`SideState::buffers`] and its
/// index there.
#[derive(Debug, Clone, Copy)]
struct RowAt {
    buffer: u32,
    index: u32,
}

/// One side's rows by key.
struct SideState {
    schema: SchemaRef,
    converter: RowConverter,
    /// The row-format buffers stored rows live in, each with how many of
    /// its rows are stored; a buffer with none left is emptied and its
    /// slot listed in `free_buffers` for reuse.
    buffers: Vec<(Rows, usize)>,
    free_buffers: Vec<u32>,
    keys: HashMap<Vec<u8>, Vec<Entry>>,
    /// Interval joins: keys with rows at each time, for purging.
    by_time: BTreeMap<i64, Vec<Box<[u8]>>>,
    rows: usize,
}

impl SideState {
    fn new(schema: &SchemaRef) -> Result<Self> {
        Ok(Self {
            schema: schema.clone(),
            converter: row_converter(schema)?,
            buffers: Vec::new(),
            free_buffers: Vec::new(),
            keys: HashMap::default(),
            by_time: BTreeMap::new(),
            rows: 0,
        })
    }

    /// Keeps `rows` as a buffer that `live` stored rows will point into.
    fn add_buffer(&mut self, rows: Rows, live: usize) -> u32 {
        match self.free_buffers.pop() {
            Some(slot) => {
                self.buffers[slot as usize] = (rows, live);
                slot
            }
            None => {
                self.buffers.push((rows, live));
                (self.buffers.len() - 1) as u32
            }
        }
    }

    fn row(&self, at: RowAt) -> Row<'_> {
        self.buffers[at.buffer as usize].0.row(at.index as usize)
    }

    /// A stored row left the state: its buffer goes with its last row.
    fn release(&mut self, at: RowAt) {
        let (rows, live) = &mut self.buffers[at.buffer as usize];
        *live = live.saturating_sub(1);
        if *live == 0 {
            *rows = self.converter.empty_rows(0, 0);
            self.free_buffers.push(at.buffer);
        }
    }

    /// Saves the entries as `{name}_entries` (`key`, `row`, `time`,
    /// `matches`; keys sorted, each key's entries in order) and the time
    /// index as `{name}_by_time` (`time`, `key`, in index order).
    fn snapshot(&self, name: &str, state: &mut OperatorState) -> Result<()> {
        let mut keys: Vec<(&Vec<u8>, &Vec<Entry>)> = self.keys.iter().collect();
        keys.sort_by_key(|(left, _)| *left);
        // Arrow's builders want iterators of known length.
        let entries: Vec<(&[u8], &Entry)> =
            keys.iter().flat_map(|(key, entries)| entries.iter().map(move |entry| (key.as_ref(), entry))).collect();
        let entries = batch(vec![
            ("key", rows_column(entries.iter().map(|(key, _)| *key))),
            ("row", rows_column(entries.iter().map(|(_, entry)| self.row(entry.row).data()))),
            ("time", Arc::new(Int64Array::from_iter_values(entries.iter().map(|(_, entry)| entry.time)))),
            (
                "matches",
                Arc::new(Int64Array::from_iter_values(entries.iter().map(|(_, entry)| i64::from(entry.matches)))),
            ),
        ])?;
        state.put(&format!("{name}_entries"), entries);
        let index: Vec<(i64, &[u8])> =
            self.by_time.iter().flat_map(|(time, keys)| keys.iter().map(move |key| (*time, key.as_ref()))).collect();
        let by_time = batch(vec![
            ("time", Arc::new(Int64Array::from_iter_values(index.iter().map(|(time, _)| *time)))),
            ("key", rows_column(index.iter().map(|(_, key)| *key))),
        ])?;
        state.put(&format!("{name}_by_time"), by_time);
        Ok(())
    }

    /// Loads what [`snapshot`](SideState::snapshot) saved.
    fn restore(&mut self, name: &str, state: &mut OperatorState) -> Result<()> {
        let entries = state.take(&format!("{name}_entries"))?;
        let keys = binary_column(&entries, "key")?;
        let row_column =
            entries.column_by_name("row").ok_or_else(|| RuntimeError::internal("join state without rows"))?;
        let rows = rows_from_column(&self.converter, row_column)?;
        let times = i64_column(&entries, "time")?;
        let matches = i64_column(&entries, "matches")?;
        let now = Instant::now();
        self.keys.clear();
        self.buffers.clear();
        self.free_buffers.clear();
        let buffer = self.add_buffer(rows, entries.num_rows());
        for index in 0..entries.num_rows() {
            let matches = u32::try_from(matches.value(index))
                .map_err(|_| RuntimeError::internal("join state has a negative match count"))?;
            let row = RowAt { buffer, index: index as u32 };
            let entry = Entry { row, time: times.value(index), matches, stored_at: now };
            self.keys.entry_ref(keys.value(index)).or_default().push(entry);
        }
        self.rows = entries.num_rows();
        let by_time = state.take(&format!("{name}_by_time"))?;
        let times = i64_column(&by_time, "time")?;
        let keys = binary_column(&by_time, "key")?;
        self.by_time.clear();
        for index in 0..by_time.num_rows() {
            self.by_time.entry(times.value(index)).or_default().push(keys.value(index).into());
        }
        Ok(())
    }
}

/// Names of the two sides' state.
const SIDE_NAMES: [&str; 2] = ["left", "right"];

pub struct StreamJoin {
    spec: StreamJoinSpec,
    keys: JoinKeys,
    sides: [SideState; 2],
    state_ttl: Option<Duration>,
    last_expiry: Instant,
    metrics: Arc<QueryMetrics>,
    reported_rows: usize,
    watermark_out: Watermark,
}

/// One output row: its op, the probing batch's row and the candidate pair
/// whose other-side row it carries (`None`: NULLs).
type OutputRow = (Op, Option<u32>, Option<u32>);

impl StreamJoin {
    pub fn new(spec: StreamJoinSpec, state_ttl: Option<Duration>, metrics: Arc<QueryMetrics>) -> Result<Self> {
        let keys = JoinKeys::new(&spec.condition.left_keys, &spec.left_schema)?;
        let sides = [SideState::new(&spec.left_schema)?, SideState::new(&spec.right_schema)?];
        Ok(Self {
            spec,
            keys,
            sides,
            state_ttl,
            last_expiry: Instant::now(),
            metrics,
            reported_rows: 0,
            watermark_out: Watermark::MIN,
        })
    }

    fn side_index(side: Side) -> usize {
        match side {
            Side::Left => 0,
            Side::Right => 1,
        }
    }

    /// (this side, other side), mutably.
    fn states(&mut self, side: Side) -> (&mut SideState, &mut SideState) {
        let (left, right) = self.sides.split_at_mut(1);
        match side {
            Side::Left => (&mut left[0], &mut right[0]),
            Side::Right => (&mut right[0], &mut left[0]),
        }
    }

    fn report_state(&mut self) {
        let rows = self.sides[0].rows + self.sides[1].rows;
        self.metrics.move_state_rows(self.reported_rows, rows);
        self.reported_rows = rows;
    }

    /// Rows of the current state, both sides (for tests and benchmarks).
    pub fn state_rows(&self) -> usize {
        self.sides[0].rows + self.sides[1].rows
    }

    /// Assembles left ++ right from the probing side's and the other's columns.
    fn assemble(&self, side: Side, this: Vec<ArrayRef>, other: Vec<ArrayRef>) -> Result<RecordBatch> {
        match side {
            Side::Left => joined(&self.spec.output_schema, this, other),
            Side::Right => joined(&self.spec.output_schema, other, this),
        }
    }

    fn emit(&self, rows: RecordBatch, ops: Vec<Op>, out: &mut Vec<Message>) {
        if rows.num_rows() == 0 {
            return;
        }
        let ops = self.spec.updating.then_some(ops);
        out.push(Message::Batch(StreamBatch { rows, ops }));
    }

    fn expire_by_ttl(&mut self) {
        let Some(ttl) = self.state_ttl else { return };
        if self.last_expiry.elapsed() < ttl / 10 {
            return;
        }
        self.last_expiry = Instant::now();
        for side in &mut self.sides {
            let mut expired = Vec::new();
            side.keys.retain(|_, entries| {
                entries.retain(|entry| {
                    let keep = entry.stored_at.elapsed() < ttl;
                    if !keep {
                        expired.push(entry.row);
                    }
                    keep
                });
                !entries.is_empty()
            });
            for row in expired {
                side.release(row);
            }
            side.rows = side.keys.values().map(Vec::len).sum();
        }
    }
}

impl Operator for StreamJoin {
    fn state_size(&self) -> Option<StateSize> {
        let bytes: usize = self
            .sides
            .iter()
            .map(|side| {
                let keys: usize = side.keys.keys().map(|key| key.len() + 24).sum();
                side.buffers.iter().map(|(rows, _)| rows.size()).sum::<usize>() + keys
            })
            .sum();
        Some(StateSize { rows: self.state_rows() as u64, bytes: bytes as u64 })
    }

    fn on_batch(&mut self, port: usize, batch: StreamBatch, out: &mut Vec<Message>) -> Result<()> {
        let side = Side::of_port(port);
        let rows = &batch.rows;
        if rows.num_rows() == 0 {
            return Ok(());
        }
        self.expire_by_ttl();
        let key_exprs = self.spec.condition.keys(side);
        let (keys, valid) = self.keys.rows(key_exprs, rows)?;
        let bound = self.spec.bound;
        let times = match bound {
            Some(bound) => {
                let column = if side == Side::Left { bound.left_time } else { bound.right_time };
                Some(event_times(rows.column(column))?)
            }
            None => None,
        };
        let time_of = |row: usize| times.as_ref().and_then(|times| times[row]).unwrap_or(i64::MIN);
        let this_outer = self.spec.kind.keeps_unmatched(side);
        let other_outer = self.spec.kind.keeps_unmatched(side.other());
        let unbounded = bound.is_none();

        // Candidate pairs: (probing row, index among the key's entries).
        let mut pair_rows: Vec<u32> = Vec::new();
        let mut pair_entries: Vec<u32> = Vec::new();
        let other_columns = {
            let other = &self.sides[Self::side_index(side.other())];
            let mut other_rows = Vec::new();
            for row in (0..rows.num_rows()).filter(|row| valid[*row]) {
                let Some(entries) = other.keys.get(keys.row(row).as_ref()) else { continue };
                // Interval joins keep entries in time order: only the ones
                // within the bound are visited.
                let range = match bound {
                    Some(bound) => {
                        let time = time_of(row);
                        let (from, to) = match side {
                            Side::Left => (time.saturating_add(bound.lower), time.saturating_add(bound.upper)),
                            Side::Right => (time.saturating_sub(bound.upper), time.saturating_sub(bound.lower)),
                        };
                        entries.partition_point(|entry| entry.time < from)
                            ..entries.partition_point(|entry| entry.time <= to)
                    }
                    None => 0..entries.len(),
                };
                for index in range {
                    pair_rows.push(row as u32);
                    pair_entries.push(index as u32);
                    other_rows.push(other.row(entries[index].row));
                }
            }
            if other_rows.is_empty() { None } else { Some(other.converter.convert_rows(other_rows)?) }
        };
        let passing = match &other_columns {
            Some(other_columns) => {
                let this_columns =
                    take_columns(rows.columns(), &pair_rows.iter().map(|row| Some(*row)).collect::<Vec<_>>())?;
                let candidates = self.assemble(side, this_columns, other_columns.clone())?;
                self.spec.condition.filter_mask(&candidates)?
            }
            None => Vec::new(),
        };

        let full_rows = self.sides[Self::side_index(side)].converter.convert_columns(rows.columns())?;
        let ops = batch.ops.as_deref();
        let mut output: Vec<OutputRow> = Vec::new();
        let (this, other) = self.states(side);
        // The batch's rows are stored where they were converted. The batch
        // holds one count of its own until it is done, so that its rows
        // stay readable whatever it retracts.
        let inserts = ops.map_or(rows.num_rows(), |ops| ops.iter().filter(|op| **op == Op::Insert).count());
        let buffer = this.add_buffer(full_rows, inserts + 1);
        let now = Instant::now();
        let mut pair = 0;
        for row in 0..rows.num_rows() {
            let op = ops.map_or(Op::Insert, |ops| ops[row]);
            let key = keys.row(row);
            let mut count = 0u32;
            while pair < pair_rows.len() && pair_rows[pair] as usize == row {
                if passing[pair] {
                    count += 1;
                    let entry = other
                        .keys
                        .get_mut(key.as_ref())
                        .and_then(|entries| entries.get_mut(pair_entries[pair] as usize))
                        .ok_or_else(|| RuntimeError::internal("join state changed while probing"))?;
                    let (this_row, that) = (Some(row as u32), Some(pair as u32));
                    match op {
                        Op::Insert => {
                            if other_outer && unbounded && entry.matches == 0 {
                                output.push((Op::Delete, None, that));
                            }
                            output.push((Op::Insert, this_row, that));
                            entry.matches += 1;
                        }
                        Op::Delete => {
                            output.push((Op::Delete, this_row, that));
                            entry.matches = entry.matches.saturating_sub(1);
                            if other_outer && unbounded && entry.matches == 0 {
                                output.push((Op::Insert, None, that));
                            }
                        }
                    }
                }
                pair += 1;
            }
            let at = RowAt { buffer, index: row as u32 };
            match op {
                Op::Insert => {
                    if this_outer && unbounded && count == 0 {
                        output.push((Op::Insert, Some(row as u32), None));
                    }
                    let time = time_of(row);
                    let entries = this.keys.entry_ref(key.as_ref()).or_default();
                    let entry = Entry { row: at, time, matches: count, stored_at: now };
                    if bound.is_some() {
                        let position = entries.partition_point(|entry| entry.time <= time);
                        entries.insert(position, entry);
                    } else {
                        entries.push(entry);
                    }
                    this.rows += 1;
                    if bound.is_some() {
                        let keys_at = this.by_time.entry(time).or_default();
                        if keys_at.last().is_none_or(|last| last.as_ref() != key.as_ref()) {
                            keys_at.push(Box::from(key.as_ref()));
                        }
                    }
                }
                Op::Delete => {
                    let retracted = this.row(at);
                    let Some(entries) = this.keys.get(key.as_ref()) else { continue };
                    let Some(position) = entries.iter().position(|entry| this.row(entry.row) == retracted) else {
                        continue;
                    };
                    let Some(entries) = this.keys.get_mut(key.as_ref()) else { continue };
                    let removed = entries.remove(position);
                    if entries.is_empty() {
                        this.keys.remove(key.as_ref());
                    }
                    this.release(removed.row);
                    this.rows -= 1;
                    if this_outer && unbounded && removed.matches == 0 {
                        output.push((Op::Delete, Some(row as u32), None));
                    }
                }
            }
        }
        this.release(RowAt { buffer, index: 0 });
        self.report_state();
        if output.is_empty() {
            return Ok(());
        }
        let ops: Vec<Op> = output.iter().map(|(op, _, _)| *op).collect();
        let this_indices: Vec<Option<u32>> = output.iter().map(|(_, this, _)| *this).collect();
        let that_indices: Vec<Option<u32>> = output.iter().map(|(_, _, that)| *that).collect();
        let this_columns = take_columns(rows.columns(), &this_indices)?;
        let other_schema = &self.sides[Self::side_index(side.other())].schema;
        let other_columns = match &other_columns {
            Some(columns) => take_columns(columns, &that_indices)?,
            None => null_columns(other_schema, output.len()),
        };
        let batch = self.assemble(side, this_columns, other_columns)?;
        self.emit(batch, ops, out);
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Watermark, out: &mut Vec<Message>) -> Result<()> {
        let Some(bound) = self.spec.bound else {
            // Pairs of an unbounded join can be of any age: no time
            // promise can be made about them until the inputs end.
            if watermark == Watermark::MAX {
                out.push(Message::Watermark(watermark));
            }
            return Ok(());
        };
        for side in [Side::Left, Side::Right] {
            // Rows with a time below `limit` can match no future row.
            let limit = match side {
                Side::Left => watermark.0.saturating_sub(bound.upper),
                Side::Right => watermark.0.saturating_add(bound.lower),
            };
            let outer = self.spec.kind.keeps_unmatched(side);
            let state = &mut self.sides[Self::side_index(side)];
            let mut unmatched = Vec::new();
            let mut purged = Vec::new();
            while let Some(entry) = state.by_time.first_entry() {
                if *entry.key() >= limit {
                    break;
                }
                for key in entry.remove() {
                    let Some(entries) = state.keys.get_mut(key.as_ref()) else { continue };
                    let expired = entries.partition_point(|entry| entry.time < limit);
                    for entry in entries.drain(..expired) {
                        if outer && entry.matches == 0 {
                            unmatched.push(entry.row);
                        }
                        purged.push(entry.row);
                    }
                    state.rows -= expired;
                    if entries.is_empty() {
                        state.keys.remove(key.as_ref());
                    }
                }
            }
            let columns = match unmatched.is_empty() {
                true => None,
                false => Some(state.converter.convert_rows(unmatched.iter().map(|at| state.row(*at)))?),
            };
            for at in purged {
                state.release(at);
            }
            if let Some(columns) = columns {
                let other = null_columns(&self.sides[Self::side_index(side.other())].schema, unmatched.len());
                let rows = match side {
                    Side::Left => joined(&self.spec.output_schema, columns, other)?,
                    Side::Right => joined(&self.spec.output_schema, other, columns)?,
                };
                let count = rows.num_rows();
                self.emit(rows, vec![Op::Insert; count], out);
            }
        }
        self.report_state();
        let held_back =
            if watermark == Watermark::MAX { watermark } else { Watermark(watermark.0.saturating_sub(bound.delay())) };
        if held_back > self.watermark_out {
            self.watermark_out = held_back;
            out.push(Message::Watermark(held_back));
        }
        Ok(())
    }

    fn snapshot(&mut self) -> Result<OperatorState> {
        let mut state = OperatorState::default();
        for (side, name) in self.sides.iter().zip(SIDE_NAMES) {
            side.snapshot(name, &mut state)?;
        }
        state.put_value("watermark_out", self.watermark_out.0);
        Ok(state)
    }

    fn restore(&mut self, mut state: OperatorState) -> Result<()> {
        for (side, name) in self.sides.iter_mut().zip(SIDE_NAMES) {
            side.restore(name, &mut state)?;
        }
        self.watermark_out = Watermark(state.value("watermark_out")?);
        self.last_expiry = Instant::now();
        self.report_state();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Array;
    use datafusion::arrow::array::{AsArray, Int64Array, TimestampNanosecondArray};
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, TimeUnit};
    use datafusion::physical_expr::PhysicalExpr;
    use datafusion::physical_expr::expressions::Column;

    fn schema(nullable: bool) -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), nullable),
            Field::new("k", DataType::Int64, nullable),
        ]))
    }

    fn rows(times: Vec<i64>, keys: Vec<i64>) -> StreamBatch {
        let columns: Vec<ArrayRef> =
            vec![Arc::new(TimestampNanosecondArray::from(times)), Arc::new(Int64Array::from(keys))];
        StreamBatch::inserts(RecordBatch::try_new(schema(false), columns).unwrap())
    }

    /// (left ts, right ts) of each output row; NULL as -1.
    fn pairs(out: &[Message]) -> Vec<(i64, i64)> {
        let mut pairs = Vec::new();
        for message in out {
            if let Message::Batch(batch) = message {
                let value = |column: usize, row: usize| {
                    let array = batch.rows.column(column);
                    if array.is_null(row) {
                        -1
                    } else {
                        array.as_primitive::<datafusion::arrow::datatypes::TimestampNanosecondType>().value(row)
                    }
                };
                pairs.extend((0..batch.num_rows()).map(|row| (value(0, row), value(2, row))));
            }
        }
        pairs
    }

    fn join_spec(kind: JoinKind, bound: Option<TimeBound>, updating: bool) -> StreamJoinSpec {
        let key =
            |schema: &SchemaRef| -> Arc<dyn PhysicalExpr> { Arc::new(Column::new_with_schema("k", schema).unwrap()) };
        let mut fields = schema(true).fields().to_vec();
        fields.extend(schema(true).fields().iter().cloned());
        StreamJoinSpec {
            kind,
            left_schema: schema(false),
            right_schema: schema(false),
            condition: JoinCondition {
                left_keys: vec![key(&schema(false))],
                right_keys: vec![key(&schema(false))],
                filter: None,
            },
            bound,
            output_schema: Arc::new(Schema::new(fields)),
            updating,
            state_ttl: None,
        }
    }

    fn interval_left_spec() -> StreamJoinSpec {
        join_spec(JoinKind::Left, Some(TimeBound { left_time: 0, right_time: 0, lower: 0, upper: 10 }), false)
    }

    fn batch(port: usize, times: Vec<i64>, keys: Vec<i64>) -> (usize, Message) {
        (port, Message::Batch(rows(times, keys)))
    }

    fn retractions(port: usize, times: Vec<i64>, keys: Vec<i64>) -> (usize, Message) {
        let count = times.len();
        (port, Message::Batch(StreamBatch { ops: Some(vec![Op::Delete; count]), ..rows(times, keys) }))
    }

    #[test]
    fn the_watermark_purges_rows_and_emits_unmatched_outer_rows_once() {
        let spec = interval_left_spec();
        let metrics = Arc::new(QueryMetrics::default());
        let mut join = StreamJoin::new(spec, None, metrics.clone()).unwrap();
        let mut out = Vec::new();
        join.on_batch(0, rows(vec![100, 105], vec![1, 2]), &mut out).unwrap();
        join.on_batch(1, rows(vec![108, 120], vec![1, 1]), &mut out).unwrap();
        // 120 - 100 is outside [0, 10]: only one pair.
        assert_eq!(pairs(&out), vec![(100, 108)]);
        assert_eq!(join.state_rows(), 4);

        out.clear();
        join.on_watermark(Watermark(111), &mut out).unwrap();
        // Left 100 (matched) and right 108 are useless now; left 105 can
        // still meet a right row at 111..=115, right 120 a left row at 111..=120.
        assert_eq!(pairs(&out), vec![]);
        assert_eq!(join.state_rows(), 2);
        assert_eq!(QueryMetrics::get(&metrics.state_rows), 2);
        assert!(matches!(out.last(), Some(Message::Watermark(Watermark(101)))));

        out.clear();
        join.on_watermark(Watermark(200), &mut out).unwrap();
        assert_eq!(pairs(&out), vec![(105, -1)]);
        assert_eq!(join.state_rows(), 0);
        let keys: Vec<i64> = match &out[0] {
            Message::Batch(batch) => batch.rows.column(1).as_primitive::<Int64Type>().values().to_vec(),
            other => panic!("{other:?}"),
        };
        assert_eq!(keys, vec![2]);
    }

    #[test]
    fn an_interval_left_join_restores_rows_index_and_watermark() {
        let spec = interval_left_spec();
        let messages = vec![
            batch(0, vec![100, 105], vec![1, 2]),
            batch(1, vec![108, 120], vec![1, 1]),
            (0, Message::Watermark(Watermark(111))),
            batch(0, vec![112, 115, 112], vec![1, 3, 4]),
            batch(1, vec![118, 125, 113], vec![3, 1, 4]),
            (0, Message::Watermark(Watermark(124))),
            batch(0, vec![140, 140, 141], vec![2, 5, 2]),
            batch(1, vec![145, 124], vec![2, 6]),
            (0, Message::Watermark(Watermark(150))),
            batch(0, vec![160], vec![7]),
            (0, Message::Watermark(Watermark::MAX)),
            (0, Message::End),
        ];
        let new = || {
            let join = StreamJoin::new(spec.clone(), None, Arc::new(QueryMetrics::default())).unwrap();
            Box::new(join) as Box<dyn Operator>
        };
        let straight = crate::operators::restore_check::assert_restores(new, &messages);
        // Unmatched left rows leave with NULLs as the watermark passes them.
        assert!(straight.iter().filter(|row| row.ends_with(", , ")).count() >= 3, "{straight:?}");
        assert!(straight.iter().any(|row| row.starts_with("+ 1970-01-01T00:00:00.000000140, 2")), "{straight:?}");

        // The state gauge counts the restored rows.
        let metrics = Arc::new(QueryMetrics::default());
        let mut first = StreamJoin::new(spec.clone(), None, metrics.clone()).unwrap();
        let mut out = Vec::new();
        first.on_batch(0, rows(vec![100, 105], vec![1, 2]), &mut out).unwrap();
        first.on_batch(1, rows(vec![108], vec![1]), &mut out).unwrap();
        let state = first.snapshot().unwrap();
        let mut restored = StreamJoin::new(spec, None, metrics.clone()).unwrap();
        restored.restore(state).unwrap();
        assert_eq!(restored.state_rows(), 3);
        assert_eq!(QueryMetrics::get(&metrics.state_rows), 6);
    }

    /// Stored rows live in their batch's buffer: it is freed with the last
    /// of them, whether retracted, purged or retracted by the batch that
    /// stored it.
    #[test]
    fn a_buffer_is_freed_with_its_last_stored_row() {
        let live_buffers = |join: &StreamJoin, side: usize| {
            join.sides[side].buffers.iter().filter(|(rows, _)| rows.num_rows() > 0).count()
        };
        let mut join =
            StreamJoin::new(join_spec(JoinKind::Inner, None, true), None, Arc::new(QueryMetrics::default())).unwrap();
        let mut out = Vec::new();
        join.on_batch(0, rows(vec![1, 2], vec![1, 2]), &mut out).unwrap();
        join.on_batch(0, rows(vec![3], vec![1]), &mut out).unwrap();
        assert_eq!(live_buffers(&join, 0), 2);
        // One row of the first batch goes: its buffer stays for the other.
        let (_, retract) = retractions(0, vec![1], vec![1]);
        let Message::Batch(retract) = retract else { unreachable!() };
        join.on_batch(0, retract, &mut out).unwrap();
        assert_eq!((live_buffers(&join, 0), join.state_rows()), (2, 2));
        // A batch that stores a row and retracts it and another.
        let mixed =
            StreamBatch { ops: Some(vec![Op::Insert, Op::Delete, Op::Delete]), ..rows(vec![4, 4, 2], vec![3, 3, 2]) };
        join.on_batch(0, mixed, &mut out).unwrap();
        assert_eq!((live_buffers(&join, 0), join.state_rows()), (1, 1));
        join.on_batch(1, rows(vec![5], vec![1]), &mut out).unwrap();
        assert_eq!(pairs(&out), vec![(3, 5)]);
        let (_, retract) = retractions(0, vec![3], vec![1]);
        let Message::Batch(retract) = retract else { unreachable!() };
        join.on_batch(0, retract, &mut out).unwrap();
        assert_eq!((live_buffers(&join, 0), join.state_rows()), (0, 1));
        // Freed slots are reused.
        join.on_batch(0, rows(vec![6], vec![1]), &mut out).unwrap();
        assert_eq!(join.sides[0].buffers.len(), 3);
    }

    #[test]
    fn an_unbounded_full_join_restores_matches_and_outer_rows() {
        let spec = join_spec(JoinKind::Full, None, true);
        let messages = vec![
            batch(0, vec![1, 2], vec![1, 2]),
            batch(1, vec![3], vec![1]),
            batch(1, vec![4, 5], vec![5, 1]),
            retractions(0, vec![1], vec![1]),
            (1, Message::Watermark(Watermark(10))),
            batch(0, vec![6, 7], vec![5, 1]),
            retractions(1, vec![4], vec![5]),
            retractions(1, vec![3], vec![1]),
            batch(1, vec![8], vec![2]),
            (0, Message::Watermark(Watermark::MAX)),
            (0, Message::End),
        ];
        let new = || {
            let join = StreamJoin::new(spec.clone(), None, Arc::new(QueryMetrics::default())).unwrap();
            Box::new(join) as Box<dyn Operator>
        };
        let straight = crate::operators::restore_check::assert_restores(new, &messages);
        // Right row 4 was first unmatched, then matched, then retracted.
        let right_4 = straight.iter().filter(|row| row.ends_with("00.000000004, 5")).count();
        assert_eq!(right_4, 4, "{straight:?}");
    }
}
