//! GROUP BY without a window over an append-only input, on DataFusion's
//! `GroupsAccumulator`s: the vectorised path of [`group_aggregate`]
//! (crate::operators::group_aggregate), for many keys.
//!
//! # Algorithm
//!
//! The per-key path keeps one `Accumulator` object per aggregate per key
//! and feeds each key's slice of a batch to it: for a million keys, a
//! million objects and, per batch, a call (and a `ScalarValue` result) per
//! touched key. Here each key's state is a row of Arrow columns: the
//! aggregates' intermediate `state()` (what DataFusion's partial
//! aggregation exchanges) and the result last emitted. For each input batch:
//!
//! 1. the keys (arrow's row format) are looked up in one map, giving each
//!    key a slot and each touched key a dense local group index, in
//!    first-seen order;
//! 2. a fresh `GroupsAccumulator` per aggregate merges the touched keys'
//!    saved states (gathered with one `interleave` per column) and then
//!    takes the batch's rows in one `update_batch`;
//! 3. its `state()` is the touched keys' new state; merged into a second
//!    fresh accumulator, its `evaluate()` is their new result;
//! 4. out goes, per touched key in first-seen order, `-` its previous
//!    result (if any) and `+` the new one, exactly as the per-key path;
//! 5. the new states and results are appended as one chunk, and the slots
//!    point at it.
//!
//! So a batch costs work in proportion to its rows and the keys it
//! touches, all of it vectorised, and none in proportion to the keys held.
//! Superseded rows stay in their chunk until it holds no live key (it is
//! dropped) or until the chunks hold twice the live keys (the live rows of
//! the chunks less than half live are gathered into one chunk): memory
//! stays within about twice the live state.
//!
//! Merging a saved state back per batch is exact for every aggregate (it
//! is how DataFusion combines partial aggregates) and cheap for those
//! whose state is a few fixed values. Aggregates whose state grows with
//! the rows (COUNT DISTINCT's set, ARRAY_AGG's list, sketches) would be
//! copied whole at every touch: they keep the per-key path, as do updating
//! inputs (a `GroupsAccumulator` cannot take rows back). See
//! [`eligible`].
//!
//! # Checkpoints
//!
//! Each chunk also holds the keys of its rows, and is named by a serial
//! number. A snapshot is the chunks as they are (`chunk/{serial}`: their
//! arrays are immutable, so the snapshot shares them and the checkpoint's
//! writer encodes them while the query goes on) and per chunk a bitmap of
//! its rows that are some key's current one (`live/{serial}`). The query
//! pauses only to set the bits (a pass over the slots). A chunk never
//! changes under its serial, so it is put as stable state: a checkpoint
//! writes the chunks added since the last one and the bitmaps, and points
//! at the earlier checkpoints' copies of the rest (incremental
//! checkpoints, see [`crate::checkpoint`]). Superseded rows in a chunk are
//! saved too (at most about as many as live ones, see above); a restore
//! drops chunks with no live row.

use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{interleave, take};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::row::RowConverter;
use datafusion::common::HashMap;
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};

use crate::error::{Result, RuntimeError};
use crate::message::{Message, Op, StreamBatch};
use crate::metrics::StateSize;
use crate::operator::Operator;
use crate::operators::group_aggregate::GroupAggregateSpec;
use crate::operators::groups::{AggregateInputs, create_accumulator, grouping_keys, key_converter, output_batch};
use crate::state::{OperatorState, batch_of, rows_column};

/// Chunks of fewer rows are small (batches of a slow input): once there
/// are more than [`SMALL_CHUNKS`] of them, they are gathered into one.
/// Chunks of a fast input are larger and never copied for this (the copy
/// would cost about as much as the aggregation).
const SMALL_CHUNK_ROWS: usize = 512;
const SMALL_CHUNKS: usize = 32;

/// Whether `spec` runs here: an append-only input, and aggregates whose
/// intermediate state is a few scalar values (not a list, a map or a
/// sketch's bytes, which would be copied whole at every touch).
pub fn eligible(spec: &GroupAggregateSpec) -> bool {
    !spec.input_updating
        && spec.aggregates.iter().all(|aggregate| {
            !aggregate.is_distinct()
                && aggregate.state_fields().is_ok_and(|fields| {
                    fields.iter().all(|field| {
                        let data_type = field.data_type();
                        (data_type.is_primitive() || matches!(data_type, DataType::Boolean | DataType::Null))
                            || matches!(data_type, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
                    })
                })
        })
}

/// Where a key's state is: a chunk and a row of it.
#[derive(Clone, Copy)]
struct Slot {
    chunk: u32,
    row: u32,
    last_update: Instant,
}

/// Rows of state: per aggregate its state columns, then per aggregate its
/// last emitted result (see [`RunningGroups::split`]); and how many of the
/// rows are some key's current one.
struct Chunk {
    columns: Vec<ArrayRef>,
    /// The key (row bytes) of each row.
    keys: ArrayRef,
    live: usize,
    /// Names the chunk in checkpoints: never reused, and the chunk never
    /// changes.
    serial: u64,
}

impl Chunk {
    fn rows(&self) -> usize {
        self.keys.len()
    }

    fn bytes(&self) -> usize {
        self.columns.iter().chain([&self.keys]).map(|column| column.get_array_memory_size()).sum()
    }
}

pub struct RunningGroups {
    spec: GroupAggregateSpec,
    /// Key columns that are output (a constant key added for a global
    /// aggregate is not).
    shown_keys: usize,
    converter: RowConverter,
    /// State columns of each aggregate.
    state_fields: Vec<usize>,
    /// Key (row bytes) to its slot.
    keys: HashMap<Box<[u8]>, usize>,
    slots: Vec<Option<Slot>>,
    free_slots: Vec<usize>,
    chunks: Vec<Option<Chunk>>,
    free_chunks: Vec<u32>,
    /// Rows in all chunks, live or superseded.
    chunk_rows: usize,
    /// Scratch: each slot's group index in the batch being added
    /// (`u32::MAX` between batches).
    local_of: Vec<u32>,
    last_expiry: Instant,
    next_serial: u64,
}

impl RunningGroups {
    pub fn new(mut spec: GroupAggregateSpec) -> Result<Self> {
        let shown_keys = spec.group_exprs.len();
        spec.group_exprs = grouping_keys(&spec.group_exprs);
        let state_fields =
            spec.aggregates.iter().map(|aggregate| Ok(aggregate.state_fields()?.len())).collect::<Result<Vec<_>>>()?;
        Ok(Self {
            shown_keys,
            converter: key_converter(&spec.group_exprs, &spec.input_schema)?,
            state_fields,
            spec,
            keys: HashMap::default(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            chunks: Vec::new(),
            free_chunks: Vec::new(),
            chunk_rows: 0,
            local_of: Vec::new(),
            last_expiry: Instant::now(),
            next_serial: 0,
        })
    }

    fn accumulators(&self) -> Result<Vec<Box<dyn GroupsAccumulator>>> {
        self.spec.aggregates.iter().map(create_accumulator).collect()
    }

    /// Adds a chunk of `columns` (and its rows' `keys`) with `live` live
    /// rows, under a new serial.
    fn add_chunk(&mut self, columns: Vec<ArrayRef>, keys: ArrayRef, live: usize) -> u32 {
        let chunk = Chunk { columns, keys, live, serial: self.next_serial };
        self.next_serial += 1;
        self.insert_chunk(chunk)
    }

    fn insert_chunk(&mut self, chunk: Chunk) -> u32 {
        self.chunk_rows += chunk.rows();
        match self.free_chunks.pop() {
            Some(id) => {
                self.chunks[id as usize] = Some(chunk);
                id
            }
            None => {
                self.chunks.push(Some(chunk));
                (self.chunks.len() - 1) as u32
            }
        }
    }

    /// A row of chunk `id` is no key's any more.
    fn release_row(&mut self, id: u32) {
        let Some(Some(chunk)) = self.chunks.get_mut(id as usize) else { return };
        chunk.live -= 1;
        if chunk.live == 0 {
            self.chunk_rows -= chunk.rows();
            self.chunks[id as usize] = None;
            self.free_chunks.push(id);
        }
    }

    fn new_slot(&mut self, slot: Slot) -> usize {
        match self.free_slots.pop() {
            Some(index) => {
                self.slots[index] = Some(slot);
                index
            }
            None => {
                self.slots.push(Some(slot));
                self.slots.len() - 1
            }
        }
    }

    /// The chunks as `interleave` sources, and each chunk id's position
    /// among them.
    fn sources(&self) -> (Vec<&Chunk>, Vec<usize>) {
        let mut positions = vec![usize::MAX; self.chunks.len()];
        let mut sources = Vec::new();
        for (id, chunk) in self.chunks.iter().enumerate() {
            if let Some(chunk) = chunk {
                positions[id] = sources.len();
                sources.push(chunk);
            }
        }
        (sources, positions)
    }

    /// The saved columns at `picks` (chunk position, row).
    fn gather(&self, picks: &[(usize, usize)]) -> Result<Vec<ArrayRef>> {
        let (sources, _) = self.sources();
        let width = sources.first().map_or(0, |chunk| chunk.columns.len());
        (0..width)
            .map(|column| {
                let arrays: Vec<&dyn Array> = sources.iter().map(|chunk| chunk.columns[column].as_ref()).collect();
                Ok(interleave(&arrays, picks)?)
            })
            .collect()
    }

    /// The keys at `picks`.
    fn gather_keys(&self, picks: &[(usize, usize)]) -> Result<ArrayRef> {
        let (sources, _) = self.sources();
        let arrays: Vec<&dyn Array> = sources.iter().map(|chunk| chunk.keys.as_ref()).collect();
        Ok(interleave(&arrays, picks)?)
    }

    /// A chunk's columns as per aggregate its state columns, and per
    /// aggregate its result.
    fn split(&self, mut columns: Vec<ArrayRef>) -> (Vec<Vec<ArrayRef>>, Vec<ArrayRef>) {
        let emitted = columns.split_off(columns.len().saturating_sub(self.spec.aggregates.len()));
        let mut columns = columns.into_iter();
        let states = self.state_fields.iter().map(|&fields| columns.by_ref().take(fields).collect()).collect();
        (states, emitted)
    }

    /// Where each slot's row is among [`sources`](Self::sources).
    fn pick(&self, slot: &Slot, positions: &[usize]) -> (usize, usize) {
        (positions[slot.chunk as usize], slot.row as usize)
    }

    /// Once superseded rows outnumber live ones, gathers the live rows of
    /// the chunks less than half live into one new chunk. Chunks mostly
    /// live are left as they are (a checkpoint need not write them again),
    /// and afterwards every chunk is at least half live. Small chunks (one
    /// per batch: a few hundred rows at low rates) are gathered into one
    /// once there are more than [`SMALL_CHUNKS`], so chunks stay few and
    /// large (cheap to gather from and to checkpoint).
    fn compact(&mut self) -> Result<()> {
        let live = self.keys.len();
        if self.chunk_rows > 2 * live + 4096 && self.chunks.iter().flatten().count() > 1 {
            self.regather(|chunk| chunk.live * 2 < chunk.rows(), false)?;
        }
        let small = self.chunks.iter().flatten().filter(|chunk| chunk.rows() < SMALL_CHUNK_ROWS).count();
        if small > SMALL_CHUNKS {
            self.regather(|chunk| chunk.rows() < SMALL_CHUNK_ROWS, true)?;
        }
        Ok(())
    }

    /// Gathers the live rows of the chunks `which` picks into one new
    /// chunk. `by_keys`: find them by looking their rows' keys up (for a
    /// few small chunks) rather than by a pass over every slot.
    fn regather(&mut self, which: impl Fn(&Chunk) -> bool, by_keys: bool) -> Result<()> {
        let picked: Vec<bool> = self.chunks.iter().map(|chunk| chunk.as_ref().is_some_and(&which)).collect();
        let (_, positions) = self.sources();
        let mut picks = Vec::new();
        let mut moved = Vec::new();
        if by_keys {
            for (id, chunk) in self.chunks.iter().enumerate() {
                let Some(chunk) = chunk.as_ref().filter(|_| picked[id]) else { continue };
                let keys = chunk.keys.as_binary_opt::<i32>().ok_or_else(|| RuntimeError::internal("chunk keys"))?;
                for row in 0..keys.len() {
                    let Some(&index) = self.keys.get(keys.value(row)) else { continue };
                    if let Some(slot) = &self.slots[index]
                        && slot.chunk as usize == id
                        && slot.row as usize == row
                    {
                        picks.push(self.pick(slot, &positions));
                        moved.push(index);
                    }
                }
            }
        } else {
            for (index, slot) in self.slots.iter().enumerate() {
                if let Some(slot) = slot
                    && picked.get(slot.chunk as usize).copied().unwrap_or(false)
                {
                    picks.push(self.pick(slot, &positions));
                    moved.push(index);
                }
            }
        }
        let columns = self.gather(&picks)?;
        let keys = self.gather_keys(&picks)?;
        for (id, picked) in picked.into_iter().enumerate() {
            if picked && let Some(chunk) = self.chunks[id].take() {
                self.chunk_rows -= chunk.rows();
                self.free_chunks.push(id as u32);
            }
        }
        if moved.is_empty() {
            return Ok(());
        }
        let id = self.add_chunk(columns, keys, moved.len());
        for (row, index) in moved.into_iter().enumerate() {
            if let Some(slot) = &mut self.slots[index] {
                slot.chunk = id;
                slot.row = row as u32;
            }
        }
        Ok(())
    }

    fn expire(&mut self, now: Instant) {
        let Some(ttl) = self.spec.state_ttl else { return };
        // Scanning every key is O(keys); do it at most once per tenth of the TTL.
        if now.duration_since(self.last_expiry) < ttl / 10 {
            return;
        }
        self.last_expiry = now;
        let mut expired = Vec::new();
        self.keys.retain(|_, index| {
            let keep = self.slots[*index].is_some_and(|slot| now.duration_since(slot.last_update) < ttl);
            if !keep {
                expired.push(*index);
            }
            keep
        });
        for index in expired {
            if let Some(slot) = self.slots[index].take() {
                self.release_row(slot.chunk);
            }
            self.free_slots.push(index);
        }
    }
}

impl Operator for RunningGroups {
    fn state_size(&self) -> Option<StateSize> {
        let keys: usize = self.keys.keys().map(|key| key.len() + 16).sum();
        let slots = self.slots.len() * std::mem::size_of::<Option<Slot>>();
        let chunks: usize = self.chunks.iter().flatten().map(Chunk::bytes).sum();
        Some(StateSize { rows: self.keys.len() as u64, bytes: (keys + slots + chunks) as u64 })
    }

    fn on_batch(&mut self, _port: usize, batch: StreamBatch, out: &mut Vec<Message>) -> Result<()> {
        if batch.ops.as_ref().is_some_and(|ops| ops.contains(&Op::Delete)) {
            return Err(RuntimeError::internal("the vectorised GROUP BY was given retractions"));
        }
        let now = Instant::now();
        self.expire(now);
        if batch.rows.num_rows() == 0 {
            return Ok(());
        }
        let inputs = AggregateInputs::evaluate(
            &self.converter,
            &self.spec.group_exprs,
            &self.spec.aggregates,
            &self.spec.filters,
            &batch.rows,
        )?;
        // 1. Slots and local group indices, keys in first-seen order.
        let mut local_of = std::mem::take(&mut self.local_of);
        let mut touched: Vec<usize> = Vec::new();
        let mut first_rows: Vec<u32> = Vec::new();
        let mut group_indices = Vec::with_capacity(inputs.num_rows);
        for row in 0..inputs.num_rows {
            let key = inputs.keys.row(row);
            let slot = match self.keys.get(key.data()) {
                Some(&slot) => slot,
                None => {
                    let slot = self.new_slot(Slot { chunk: u32::MAX, row: 0, last_update: now });
                    self.keys.insert(key.data().into(), slot);
                    slot
                }
            };
            if local_of.len() <= slot {
                local_of.resize(slot + 1, u32::MAX);
            }
            if local_of[slot] == u32::MAX {
                local_of[slot] = touched.len() as u32;
                touched.push(slot);
                first_rows.push(row as u32);
            }
            group_indices.push(local_of[slot] as usize);
        }
        for &slot in &touched {
            local_of[slot] = u32::MAX;
        }
        self.local_of = local_of;
        let groups = touched.len();
        // 2. The touched keys' saved state, then the batch.
        let (_, positions) = self.sources();
        let mut picks = Vec::new();
        let mut seen_locals = Vec::new();
        for (local, &index) in touched.iter().enumerate() {
            if let Some(slot) = &self.slots[index]
                && slot.chunk != u32::MAX
            {
                picks.push(self.pick(slot, &positions));
                seen_locals.push(local);
            }
        }
        let (old_states, old_emitted) = match picks.is_empty() {
            true => (Vec::new(), Vec::new()),
            false => self.split(self.gather(&picks)?),
        };
        let mut accumulators = self.accumulators()?;
        for (aggregate, accumulator) in accumulators.iter_mut().enumerate() {
            if !picks.is_empty() {
                accumulator.merge_batch(&old_states[aggregate], &seen_locals, groups)?;
            }
            accumulator.update_batch(
                &inputs.arguments[aggregate],
                &group_indices,
                inputs.filters[aggregate].as_ref(),
                groups,
            )?;
        }
        // 3. New states, and the results they give.
        let states = accumulators
            .iter_mut()
            .map(|accumulator| Ok(accumulator.state(EmitTo::All)?))
            .collect::<Result<Vec<_>>>()?;
        let all_locals: Vec<usize> = (0..groups).collect();
        let mut results = Vec::with_capacity(states.len());
        for (aggregate, state) in self.spec.aggregates.iter().zip(&states) {
            let mut accumulator = create_accumulator(aggregate)?;
            accumulator.merge_batch(state, &all_locals, groups)?;
            results.push(accumulator.evaluate(EmitTo::All)?);
        }
        // 4. The changelog: per key, its previous result out, its new one in.
        let mut ops = Vec::with_capacity(groups + picks.len());
        let mut key_picks = Vec::with_capacity(groups + picks.len());
        let mut value_picks = Vec::with_capacity(groups + picks.len());
        let mut seen = seen_locals.iter().enumerate().peekable();
        for local in 0..groups {
            if let Some((old, _)) = seen.next_if(|(_, seen_local)| **seen_local == local) {
                ops.push(Op::Delete);
                key_picks.push(local as u32);
                value_picks.push((0, old));
            }
            ops.push(Op::Insert);
            key_picks.push(local as u32);
            value_picks.push((1, local));
        }
        let key_columns = self.converter.convert_rows(first_rows.iter().map(|&row| inputs.keys.row(row as usize)))?;
        let key_indices = UInt32Array::from(key_picks);
        let mut columns = key_columns
            .iter()
            .take(self.shown_keys)
            .map(|column| Ok(take(column.as_ref(), &key_indices, None)?))
            .collect::<Result<Vec<_>>>()?;
        for (aggregate, result) in results.iter().enumerate() {
            let column = match old_emitted.get(aggregate) {
                Some(old) => interleave(&[old.as_ref(), result.as_ref()], &value_picks)?,
                None => result.clone(),
            };
            columns.push(column);
        }
        let rows = output_batch(&self.spec.output_schema, columns)?;
        out.push(Message::Batch(StreamBatch { rows, ops: Some(ops) }));
        // 5. The new rows become the touched keys' state.
        let columns = states.into_iter().flatten().chain(results).collect();
        let keys = rows_column(first_rows.iter().map(|&row| inputs.keys.row(row as usize).data()));
        let id = self.add_chunk(columns, keys, groups);
        for (local, &index) in touched.iter().enumerate() {
            let previous = self.slots[index].replace(Slot { chunk: id, row: local as u32, last_update: now });
            if let Some(previous) = previous
                && previous.chunk != u32::MAX
            {
                self.release_row(previous.chunk);
            }
        }
        self.compact()
    }

    /// Zero-copy: the chunks as they are (their arrays are immutable and
    /// shared with the snapshot), and per chunk a bitmap of its live rows.
    fn snapshot(&mut self) -> Result<OperatorState> {
        let mut live: Vec<Vec<bool>> =
            self.chunks.iter().map(|chunk| vec![false; chunk.as_ref().map_or(0, Chunk::rows)]).collect();
        for slot in self.slots.iter().flatten() {
            // A key whose first batch failed half-way has no state yet.
            if let Some(row) = live.get_mut(slot.chunk as usize).and_then(|rows| rows.get_mut(slot.row as usize)) {
                *row = true;
            }
        }
        let mut state = OperatorState::default();
        for (chunk, live) in self.chunks.iter().zip(live) {
            let Some(chunk) = chunk else { continue };
            let columns = chunk.columns.iter().enumerate().map(|(index, column)| (format!("c{index}"), column.clone()));
            let columns = std::iter::once(("key".to_string(), chunk.keys.clone())).chain(columns);
            state.put_stable(&format!("chunk/{}", chunk.serial), batch_of(columns.collect())?);
            let live = Arc::new(BooleanArray::from(live)) as ArrayRef;
            state.put(&format!("live/{}", chunk.serial), batch_of(vec![("live".to_string(), live)])?);
        }
        state.put_value("next_serial", self.next_serial as i64);
        Ok(state)
    }

    fn restore(&mut self, mut state: OperatorState) -> Result<()> {
        let corrupt = |what: &str| RuntimeError::internal(format!("groups state {what}"));
        let now = Instant::now();
        self.keys.clear();
        self.slots.clear();
        self.free_slots.clear();
        self.chunks.clear();
        self.free_chunks.clear();
        self.chunk_rows = 0;
        self.last_expiry = now;
        self.next_serial = u64::try_from(state.value("next_serial")?).map_err(|_| corrupt("has a bad serial"))?;
        let width = self.state_fields.iter().sum::<usize>() + self.spec.aggregates.len();
        let mut live: std::collections::HashMap<String, RecordBatch> = state.take_all("live").into_iter().collect();
        let keys: usize =
            live.values().map(|bits| bits.column(0).as_boolean_opt().map_or(0, BooleanArray::true_count)).sum();
        self.keys.reserve(keys);
        self.slots.reserve(keys);
        for (serial, batch) in state.take_all("chunk") {
            let bits = live.remove(&serial).ok_or_else(|| corrupt("has a chunk without its live rows"))?;
            let serial: u64 = serial.parse().map_err(|_| corrupt("has a bad serial"))?;
            let bits = bits.column(0).as_boolean_opt().ok_or_else(|| corrupt("has live rows of another type"))?;
            if batch.num_columns() != width + 1 || bits.len() != batch.num_rows() || serial >= self.next_serial {
                return Err(corrupt("of another shape"));
            }
            let keys = batch.column(0).as_binary_opt::<i32>().ok_or_else(|| corrupt("has keys of another type"))?;
            let rows: Vec<u32> = (0..bits.len()).filter(|&row| bits.value(row)).map(|row| row as u32).collect();
            if rows.is_empty() {
                continue;
            }
            let chunk = Chunk {
                columns: batch.columns()[1..].to_vec(),
                keys: batch.column(0).clone(),
                live: rows.len(),
                serial,
            };
            let id = self.insert_chunk(chunk);
            for row in rows {
                let slot = self.new_slot(Slot { chunk: id, row, last_update: now });
                if self.keys.insert(keys.value(row as usize).into(), slot).is_some() {
                    return Err(corrupt("holds a key twice"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::functions_aggregate::average::avg_udaf;
    use datafusion::functions_aggregate::count::count_udaf;
    use datafusion::functions_aggregate::min_max::max_udaf;
    use datafusion::functions_aggregate::sum::sum_udaf;
    use datafusion::logical_expr::Operator as BinaryOperator;
    use datafusion::physical_expr::aggregate::AggregateExprBuilder;
    use datafusion::physical_expr::expressions::{binary, cast, col, lit};

    use super::*;
    use crate::operators::group_aggregate::GroupAggregate;
    use crate::operators::restore_check::assert_restores;

    /// `key, count(*) FILTER (WHERE value > 1), sum(value), avg(value),
    /// max(value)` by key (or over all rows).
    fn spec(keyed: bool) -> GroupAggregateSpec {
        let input = Arc::new(Schema::new(vec![
            Field::new("key", DataType::Utf8, false),
            Field::new("value", DataType::Int64, false),
        ]));
        let value = col("value", &input).unwrap();
        let as_float = cast(value.clone(), &input, DataType::Float64).unwrap();
        let aggregate = |function, argument, alias: &str| {
            let builder = AggregateExprBuilder::new(function, vec![argument]);
            Arc::new(builder.schema(input.clone()).alias(alias).build().unwrap())
        };
        let mut fields = vec![
            Field::new("big", DataType::Int64, false),
            Field::new("total", DataType::Int64, true),
            Field::new("mean", DataType::Float64, true),
            Field::new("top", DataType::Int64, true),
        ];
        if keyed {
            fields.insert(0, Field::new("key", DataType::Utf8, false));
        }
        GroupAggregateSpec {
            group_exprs: if keyed { vec![col("key", &input).unwrap()] } else { vec![] },
            aggregates: vec![
                aggregate(count_udaf(), value.clone(), "big"),
                aggregate(sum_udaf(), value.clone(), "total"),
                aggregate(avg_udaf(), as_float, "mean"),
                aggregate(max_udaf(), value.clone(), "top"),
            ],
            filters: vec![Some(binary(value, BinaryOperator::Gt, lit(1_i64), &input).unwrap()), None, None, None],
            output_schema: Arc::new(Schema::new(fields)),
            input_schema: input,
            input_updating: false,
            state_ttl: None,
        }
    }

    fn batch(spec: &GroupAggregateSpec, rows: &[(&str, i64)]) -> (usize, Message) {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(rows.iter().map(|row| row.0).collect::<Vec<_>>())),
            Arc::new(Int64Array::from(rows.iter().map(|row| row.1).collect::<Vec<_>>())),
        ];
        let rows = RecordBatch::try_new(spec.input_schema.clone(), columns).unwrap();
        (0, Message::Batch(StreamBatch { rows, ops: None }))
    }

    fn input(spec: &GroupAggregateSpec) -> Vec<(usize, Message)> {
        vec![
            batch(spec, &[("a", 1), ("b", 5), ("a", 3), ("a", 3), ("b", 1)]),
            batch(spec, &[("c", 0)]),
            (0, Message::Watermark(crate::message::Watermark(10))),
            batch(spec, &[("a", 7), ("c", 2), ("a", 1)]),
            batch(spec, &[("d", 4), ("b", 2)]),
            (0, Message::End),
        ]
    }

    #[test]
    fn emits_the_same_changelog_as_the_per_key_path() {
        for keyed in [true, false] {
            let spec = spec(keyed);
            assert!(eligible(&spec));
            let vectorised = assert_restores(|| Box::new(RunningGroups::new(spec.clone()).unwrap()), &input(&spec));
            let per_key = assert_restores(|| Box::new(GroupAggregate::new(spec.clone()).unwrap()), &input(&spec));
            assert_eq!(vectorised, per_key);
            if keyed {
                assert_eq!(
                    &vectorised[..6],
                    [
                        "+ a, 2, 7, 2.3333333333333335, 3",
                        "+ b, 1, 6, 3.0, 5",
                        "+ c, 0, 0, 0.0, 0",
                        "watermark 10",
                        "- a, 2, 7, 2.3333333333333335, 3",
                        "+ a, 3, 15, 3.0, 7"
                    ]
                );
            }
        }
    }

    #[test]
    fn compacts_superseded_rows_and_keeps_results() {
        let spec = spec(true);
        let mut operator = RunningGroups::new(spec.clone()).unwrap();
        let keys: Vec<String> = (0..3000).map(|key| format!("k{key}")).collect();
        // Key k0 is touched once; the others many times: chunks empty out
        // or get compacted.
        let mut out = Vec::new();
        for round in 0..20_i64 {
            let rows: Vec<(&str, i64)> =
                keys.iter().skip(usize::from(round > 0)).map(|key| (key.as_str(), round)).collect();
            let (_, Message::Batch(batch)) = batch(&spec, &rows) else { unreachable!() };
            operator.on_batch(0, batch, &mut out).unwrap();
        }
        assert!(
            operator.chunk_rows <= 2 * operator.keys.len() + 4096,
            "{} rows for {} keys",
            operator.chunk_rows,
            operator.keys.len()
        );
        let Some(Message::Batch(last)) = out.last() else { panic!("no output") };
        // k1's last insert: 20 rows, sum 0 + 1 + ... + 19.
        let totals = last.rows.column(2).as_any().downcast_ref::<Int64Array>().unwrap();
        let means = last.rows.column(3).as_any().downcast_ref::<Float64Array>().unwrap();
        assert_eq!(totals.value(1), 190);
        assert_eq!(means.value(1), 9.5);
        // And k0 (in one chunk with nothing else live) still answers.
        let (_, Message::Batch(batch)) = batch(&spec, &[("k0", 100)]) else { unreachable!() };
        let mut out = Vec::new();
        operator.on_batch(0, batch, &mut out).unwrap();
        let Some(Message::Batch(batch)) = out.last() else { panic!("no output") };
        let totals = batch.rows.column(2).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!((totals.value(0), totals.value(1)), (0, 100));
    }

    #[test]
    fn a_snapshot_after_a_few_keys_changed_shares_the_other_chunks() {
        let spec = spec(true);
        let mut operator = RunningGroups::new(spec.clone()).unwrap();
        let mut out = Vec::new();
        let keys: Vec<String> = (0..1000).map(|key| format!("k{key}")).collect();
        for rows in keys.chunks(100) {
            let rows: Vec<(&str, i64)> = rows.iter().map(|key| (key.as_str(), 1)).collect();
            let (_, Message::Batch(input)) = batch(&spec, &rows) else { unreachable!() };
            operator.on_batch(0, input, &mut out).unwrap();
        }
        let first = operator.snapshot().unwrap();
        let (_, Message::Batch(input)) = batch(&spec, &[("k5", 2), ("k999", 2)]) else { unreachable!() };
        operator.on_batch(0, input, &mut out).unwrap();
        let second = operator.snapshot().unwrap();
        let first_names: Vec<&str> = first.stable_names().collect();
        let second_names: Vec<&str> = second.stable_names().collect();
        // Ten chunks of a hundred keys, then one more of the two touched.
        assert_eq!(first_names.len(), 10);
        assert_eq!(second_names.len(), 11);
        assert!(first_names.iter().all(|name| second_names.contains(name)));
        // Restored from the second, k5 answers from its new row.
        let mut restored = RunningGroups::new(spec.clone()).unwrap();
        restored.restore(OperatorState::decode(&second.encode().unwrap()).unwrap()).unwrap();
        assert_eq!(restored.keys.len(), 1000);
        let (_, Message::Batch(input)) = batch(&spec, &[("k5", 3)]) else { unreachable!() };
        let mut out = Vec::new();
        restored.on_batch(0, input, &mut out).unwrap();
        let Some(Message::Batch(batch)) = out.last() else { panic!("no output") };
        let totals = batch.rows.column(2).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!((totals.value(0), totals.value(1)), (3, 6));
        // New chunks after the restore do not reuse a serial.
        let names: Vec<String> = restored.snapshot().unwrap().stable_names().map(str::to_string).collect();
        assert!(names.contains(&"chunk/11".to_string()), "{names:?}");
    }

    #[test]
    fn distinct_and_updating_inputs_keep_the_per_key_path() {
        let mut updating = spec(true);
        updating.input_updating = true;
        assert!(!eligible(&updating));
    }
}
