//! GROUP BY without a window: running state per key for the whole stream
//! (the seed's `updateStateByKey`), emitted as a changelog.
//!
//! This is the per-key path: updating inputs (retractions) and aggregates
//! whose state grows with the rows (COUNT DISTINCT, ARRAY_AGG, sketches).
//! Append-only input with fixed-size aggregate states runs on
//! [`running_groups`](crate::operators::running_groups) instead, which
//! emits the same changelog from DataFusion's `GroupsAccumulator`s.
//!
//! # Algorithm
//!
//! Each key owns one DataFusion `Accumulator` per aggregate (the sliding
//! variant where the aggregate has one, so retractions from an updating
//! input can be applied with `retract_batch`) and a count of live rows.
//! For every input batch, rows are bucketed by key, each touched key's
//! accumulators are updated (inserts) or retracted (deletes), and for every
//! touched key the operator emits
//!
//! ```text
//!   - (key, previous result)   if a result was emitted before
//!   + (key, new result)        unless the key has no rows left
//! ```
//!
//! so applying the changelog in order always gives the current result.
//! Which intermediate results appear depends on how input is batched; the
//! final state does not.
//!
//! With a state TTL, keys not updated for that long (processing time) are
//! forgotten without a retraction, as in Flink: a later row for the key
//! starts it afresh.
//!
//! # Checkpoints
//!
//! A snapshot holds one row per key: the key's row bytes, its live rows,
//! the result last emitted and each accumulator's `state()`; a restore
//! merges the states into fresh accumulators. The output order never
//! depends on the key map's order (keys leave in first-seen order within
//! each input batch), so nothing about the map's order is saved. TTL clocks
//! restart at the restore. `state()` may drain an accumulator, so a
//! snapshot also rebuilds the running operator's accumulators from the
//! saved states: both then continue from the same state. Accumulators
//! whose `state()` leaves out what retraction needs lose it at a
//! checkpoint, in the running operator as in a restored one: sliding MIN
//! and MAX keep only the current value (not their queue), COUNT and SUM
//! DISTINCT only the distinct values (not how often each occurred). With
//! insert-only input they are exact.

use datafusion::common::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{cast, filter as filter_array, take};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{OwnedRow, RowConverter, Rows};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

use crate::error::{Result, RuntimeError};
use crate::message::{Message, Op, StreamBatch};
use crate::metrics::StateSize;
use crate::operator::Operator;
use crate::operators::groups::{evaluate, feed_slice, grouping_keys, key_converter};
use crate::state::{
    OperatorState, accumulator_states, batch_of, binary_column, i64_column, merge_accumulator_state, rows_column,
    rows_from_column,
};

/// The checkpoint batch of a group aggregate: one row per key.
const KEYS_STATE: &str = "keys";

#[derive(Debug, Clone)]
pub struct GroupAggregateSpec {
    pub input_schema: SchemaRef,
    pub group_exprs: Vec<Arc<dyn PhysicalExpr>>,
    pub aggregates: Vec<Arc<AggregateFunctionExpr>>,
    pub filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    /// Group columns, then one column per aggregate.
    pub output_schema: SchemaRef,
    /// The input has retractions: keys keep sliding accumulators, which
    /// can take them back. An append-only input gets the plain ones, which
    /// keep far less (COUNT DISTINCT a set of native values instead of a
    /// map of `ScalarValue`s, MAX one value instead of every value seen).
    pub input_updating: bool,
    /// Keys not updated for this long (processing time) are forgotten;
    /// `None` keeps them forever.
    pub state_ttl: Option<Duration>,
}

struct KeyState {
    key: OwnedRow,
    accumulators: Vec<Box<dyn Accumulator>>,
    /// Rows inserted minus rows retracted.
    live_rows: i64,
    /// The result last emitted for this key.
    emitted: Option<Vec<ScalarValue>>,
    last_update: Instant,
}

pub struct GroupAggregate {
    spec: GroupAggregateSpec,
    /// Key columns that are output (a constant key added for a global
    /// aggregate is not).
    shown_keys: usize,
    converter: RowConverter,
    keys: HashMap<Box<[u8]>, KeyState>,
    last_expiry: Instant,
}

impl GroupAggregate {
    pub fn new(mut spec: GroupAggregateSpec) -> Result<Self> {
        // Without GROUP BY there is one group, keyed by a constant not shown.
        let shown_keys = spec.group_exprs.len();
        spec.group_exprs = grouping_keys(&spec.group_exprs);
        Ok(Self {
            shown_keys,
            converter: key_converter(&spec.group_exprs, &spec.input_schema)?,
            spec,
            keys: HashMap::default(),
            last_expiry: Instant::now(),
        })
    }

    /// Keys currently held (for metrics and tests).
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    fn expire(&mut self, now: Instant) {
        let Some(ttl) = self.spec.state_ttl else { return };
        // Scanning every key is O(keys); do it at most once per tenth of the TTL.
        if now.duration_since(self.last_expiry) < ttl / 10 {
            return;
        }
        self.last_expiry = now;
        self.keys.retain(|_, state| now.duration_since(state.last_update) < ttl);
    }
}

/// Aggregates whose `Accumulator::state()` (plain and sliding) reads the
/// accumulator without changing it.
const NON_DRAINING_STATE: [&str; 9] = ["count", "sum", "min", "max", "avg", "bool_and", "bool_or", "bit_and", "bit_or"];

impl Operator for GroupAggregate {
    fn state_size(&self) -> Option<StateSize> {
        let bytes: usize = self
            .keys
            .iter()
            .map(|(key, state)| {
                let emitted = state.emitted.as_ref().map_or(0, |values| values.iter().map(ScalarValue::size).sum());
                // The key twice (the map's and the row's), the accumulators.
                2 * key.len() + emitted + state.accumulators.iter().map(|accumulator| accumulator.size()).sum::<usize>()
            })
            .sum();
        Some(StateSize { rows: self.keys.len() as u64, bytes: bytes as u64 })
    }

    fn on_batch(&mut self, _port: usize, batch: StreamBatch, out: &mut Vec<Message>) -> Result<()> {
        let now = Instant::now();
        self.expire(now);
        let rows = &batch.rows;
        if rows.num_rows() == 0 {
            return Ok(());
        }
        let key_columns = self.spec.group_exprs.iter().map(|expr| evaluate(expr, rows)).collect::<Result<Vec<_>>>()?;
        let keys = self.converter.convert_columns(&key_columns)?;
        let (runs, permutation) = bucket(&keys, batch.ops.as_deref());
        let inputs = self
            .spec
            .aggregates
            .iter()
            .zip(&self.spec.filters)
            .map(|(aggregate, filter)| AggregateInput::new(aggregate, filter.as_ref(), rows, &permutation, &runs))
            .collect::<Result<Vec<_>>>()?;
        let mut changes = Changes::default();
        for (run_index, run) in runs.iter().enumerate() {
            let key = keys.row(run.first as usize);
            if !self.keys.contains_key(key.data()) {
                let state = KeyState {
                    key: key.owned(),
                    accumulators: new_accumulators(&self.spec)?,
                    live_rows: 0,
                    emitted: None,
                    last_update: now,
                };
                self.keys.insert(key.data().into(), state);
            }
            let state = self.keys.get_mut(key.data()).ok_or_else(|| RuntimeError::internal("a key vanished"))?;
            state.live_rows += run.inserted as i64 - run.deleted as i64;
            state.last_update = now;
            for (accumulator, input) in state.accumulators.iter_mut().zip(&inputs) {
                input.feed(accumulator.as_mut(), run_index)?;
            }
            if let Some(previous) = state.emitted.take() {
                changes.push(Op::Delete, run.first, previous);
            }
            if state.live_rows > 0 {
                let values = state.accumulators.iter_mut().map(|accumulator| accumulator.evaluate()).collect::<Result<
                    Vec<_>,
                    _,
                >>(
                )?;
                state.emitted = Some(values.clone());
                changes.push(Op::Insert, run.first, values);
            } else {
                self.keys.remove(key.data());
            }
        }
        if !changes.ops.is_empty() {
            out.push(Message::Batch(self.changes_batch(&keys, changes)?));
        }
        Ok(())
    }

    /// Columns of [`KEYS_STATE`]: `key` (row bytes), `live_rows`,
    /// `has_emitted`, `emitted{i}` (the last result, one per aggregate;
    /// unset where `has_emitted` is false) and `state{a}_{field}` (the
    /// `state()` of aggregate `a`).
    fn snapshot(&mut self) -> Result<OperatorState> {
        let mut entries: Vec<(&Box<[u8]>, &mut KeyState)> = self.keys.iter_mut().collect();
        // Sorted by key, so that equal states give equal checkpoints.
        entries.sort_by_key(|(left, _)| *left);
        let mut columns = vec![
            ("key".to_string(), rows_column(entries.iter().map(|(_, state)| state.key.row().data()))),
            (
                "live_rows".to_string(),
                Arc::new(Int64Array::from_iter_values(entries.iter().map(|(_, state)| state.live_rows))) as ArrayRef,
            ),
            (
                "has_emitted".to_string(),
                Arc::new(BooleanArray::from_iter(entries.iter().map(|(_, state)| Some(state.emitted.is_some()))))
                    as ArrayRef,
            ),
        ];
        for aggregate in 0..self.spec.aggregates.len() {
            let mut accumulators: Vec<&mut dyn Accumulator> = Vec::with_capacity(entries.len());
            for (_, state) in entries.iter_mut() {
                let accumulator =
                    state.accumulators.get_mut(aggregate).ok_or_else(|| missing_accumulator(aggregate))?;
                accumulators.push(accumulator.as_mut());
            }
            accumulator_states(&mut accumulators, &state_prefix(aggregate), &mut columns)?;
        }
        // `state()` may have drained the accumulators (median, string_agg):
        // continue from the saved state, as a restored operator does. The
        // common aggregates' `state()` only reads, and rebuilding a million
        // keys' accumulators would take most of the checkpoint's time.
        if self.spec.aggregates.iter().any(|aggregate| !NON_DRAINING_STATE.contains(&aggregate.fun().name())) {
            let accumulator_batch = batch_of(columns.clone())?;
            for (row, (_, state)) in entries.iter_mut().enumerate() {
                state.accumulators = restored_accumulators(&self.spec, &accumulator_batch, row)?;
            }
        }
        if !entries.is_empty() {
            for aggregate in 0..self.spec.aggregates.len() {
                let values = entries
                    .iter_mut()
                    .map(|(_, state)| match &state.emitted {
                        Some(values) => values.get(aggregate).cloned().ok_or_else(|| missing_accumulator(aggregate)),
                        // Any value of the right type fills the slot.
                        None => Ok(state
                            .accumulators
                            .get_mut(aggregate)
                            .ok_or_else(|| missing_accumulator(aggregate))?
                            .evaluate()?),
                    })
                    .collect::<Result<Vec<_>>>()?;
                columns.push((format!("emitted{aggregate}"), ScalarValue::iter_to_array(values)?));
            }
        }
        let mut state = OperatorState::default();
        state.put(KEYS_STATE, batch_of(columns)?);
        Ok(state)
    }

    fn restore(&mut self, mut state: OperatorState) -> Result<()> {
        let batch = state.take(KEYS_STATE)?;
        let key_column =
            batch.column_by_name("key").ok_or_else(|| RuntimeError::internal("group aggregate state without keys"))?;
        let keys = rows_from_column(&self.converter, key_column)?;
        let key_bytes = binary_column(&batch, "key")?;
        let live_rows = i64_column(&batch, "live_rows")?;
        let has_emitted = batch
            .column_by_name("has_emitted")
            .and_then(|column| column.as_boolean_opt())
            .ok_or_else(|| RuntimeError::internal("group aggregate state without has_emitted"))?;
        // A snapshot without keys has no `emitted` columns.
        let emitted_columns = if batch.num_rows() == 0 {
            Vec::new()
        } else {
            (0..self.spec.aggregates.len())
                .map(|aggregate| {
                    let column = batch.column_by_name(&format!("emitted{aggregate}"));
                    column.ok_or_else(|| missing_accumulator(aggregate))
                })
                .collect::<Result<Vec<_>>>()?
        };
        let now = Instant::now();
        self.keys.clear();
        for row in 0..batch.num_rows() {
            let emitted = if has_emitted.value(row) {
                let values = emitted_columns.iter().map(|column| ScalarValue::try_from_array(column, row));
                Some(values.collect::<Result<Vec<_>, _>>()?)
            } else {
                None
            };
            let state = KeyState {
                key: keys.row(row).owned(),
                accumulators: restored_accumulators(&self.spec, &batch, row)?,
                live_rows: live_rows.value(row),
                emitted,
                last_update: now,
            };
            self.keys.insert(key_bytes.value(row).into(), state);
        }
        self.last_expiry = now;
        Ok(())
    }
}

fn state_prefix(aggregate: usize) -> String {
    format!("state{aggregate}_")
}

fn missing_accumulator(aggregate: usize) -> RuntimeError {
    RuntimeError::internal(format!("group aggregate state has nothing for aggregate {aggregate}"))
}

/// Fresh accumulators for `spec`'s aggregates holding row `row` of the
/// saved states in `batch`.
fn restored_accumulators(
    spec: &GroupAggregateSpec,
    batch: &RecordBatch,
    row: usize,
) -> Result<Vec<Box<dyn Accumulator>>> {
    let mut accumulators = new_accumulators(spec)?;
    for (aggregate, accumulator) in accumulators.iter_mut().enumerate() {
        merge_accumulator_state(accumulator.as_mut(), batch, &state_prefix(aggregate), row)?;
    }
    Ok(accumulators)
}

fn new_accumulators(spec: &GroupAggregateSpec) -> Result<Vec<Box<dyn Accumulator>>> {
    let new = |aggregate: &Arc<AggregateFunctionExpr>| match spec.input_updating {
        true => aggregate.create_sliding_accumulator().or_else(|_| aggregate.create_accumulator()),
        false => aggregate.create_accumulator(),
    };
    spec.aggregates.iter().map(|aggregate| Ok(new(aggregate)?)).collect()
}

/// One key's rows in a batch: a row holding the key, and where its inserts
/// and then its retractions lie in the batch's permutation.
struct Run {
    first: u32,
    start: usize,
    inserted: usize,
    deleted: usize,
}

/// Groups the rows of a batch by key: the keys in first-seen order (so the
/// output order depends only on the input), and the permutation of row
/// indices that puts each key's inserts, then its retractions, side by
/// side. Two passes over the rows, no allocation per row.
fn bucket(keys: &Rows, ops: Option<&[Op]>) -> (Vec<Run>, Vec<u32>) {
    let mut ids: HashMap<&[u8], usize> = HashMap::default();
    let mut runs: Vec<Run> = Vec::new();
    let mut placed: Vec<(usize, bool)> = Vec::with_capacity(keys.num_rows());
    for row in 0..keys.num_rows() {
        let id = *ids.entry(keys.row(row).data()).or_insert_with(|| {
            runs.push(Run { first: row as u32, start: 0, inserted: 0, deleted: 0 });
            runs.len() - 1
        });
        let delete = ops.is_some_and(|ops| ops[row] == Op::Delete);
        match delete {
            true => runs[id].deleted += 1,
            false => runs[id].inserted += 1,
        }
        placed.push((id, delete));
    }
    // Next free slot of each key's inserts and of its retractions.
    let mut next: Vec<[usize; 2]> = Vec::with_capacity(runs.len());
    let mut offset = 0;
    for run in &mut runs {
        run.start = offset;
        next.push([offset, offset + run.inserted]);
        offset += run.inserted + run.deleted;
    }
    let mut permutation = vec![0u32; keys.num_rows()];
    for (row, (id, delete)) in placed.into_iter().enumerate() {
        let slot = &mut next[id][usize::from(delete)];
        permutation[*slot] = row as u32;
        *slot += 1;
    }
    (runs, permutation)
}

/// What one aggregate reads from a batch: its arguments with the rows in
/// key order and those its `FILTER (WHERE ...)` rejects left out, and
/// where each key's inserts and retractions are in them. Filtering once
/// per batch, not once per key, leaves each key a zero-copy slice.
struct AggregateInput {
    arguments: Vec<ArrayRef>,
    /// Per run of [`bucket`]: start, inserts, retractions.
    runs: Vec<(usize, usize, usize)>,
}

impl AggregateInput {
    fn new(
        aggregate: &AggregateFunctionExpr,
        filter: Option<&Arc<dyn PhysicalExpr>>,
        rows: &RecordBatch,
        permutation: &[u32],
        runs: &[Run],
    ) -> Result<Self> {
        let permutation = UInt32Array::from(permutation.to_vec());
        let arguments = aggregate
            .expressions()
            .iter()
            .map(|expr| Ok(take(&evaluate(expr, rows)?, &permutation, None)?))
            .collect::<Result<Vec<_>>>()?;
        let Some(filter) = filter else {
            let runs = runs.iter().map(|run| (run.start, run.inserted, run.deleted)).collect();
            return Ok(Self { arguments, runs });
        };
        let mask = take(evaluate(filter, rows)?.as_boolean(), &permutation, None)?;
        let mask = mask.as_boolean();
        // kept[i]: rows before i the filter keeps (NULL rejects).
        let mut kept = Vec::with_capacity(mask.len() + 1);
        kept.push(0);
        for row in 0..mask.len() {
            kept.push(kept[row] + usize::from(mask.is_valid(row) && mask.value(row)));
        }
        let arguments =
            arguments.iter().map(|argument| Ok(filter_array(argument, mask)?)).collect::<Result<Vec<_>>>()?;
        let runs = runs
            .iter()
            .map(|run| {
                let (start, middle, end) =
                    (run.start, run.start + run.inserted, run.start + run.inserted + run.deleted);
                (kept[start], kept[middle] - kept[start], kept[end] - kept[middle])
            })
            .collect();
        Ok(Self { arguments, runs })
    }

    /// Adds run `run`'s inserts to `accumulator` and takes its retractions
    /// back.
    fn feed(&self, accumulator: &mut dyn Accumulator, run: usize) -> Result<()> {
        let Some(&(start, inserted, deleted)) = self.runs.get(run) else {
            return Err(RuntimeError::internal("aggregate input without the run"));
        };
        for (offset, length, retract) in [(start, inserted, false), (start + inserted, deleted, true)] {
            if length > 0 {
                feed_slice(accumulator, &self.arguments, (offset, length), retract)?;
            }
        }
        Ok(())
    }
}

/// Result rows to emit: per row its op, a batch row holding its key, and
/// the aggregate values.
#[derive(Default)]
struct Changes {
    ops: Vec<Op>,
    key_rows: Vec<u32>,
    values: Vec<Vec<ScalarValue>>,
}

impl Changes {
    fn push(&mut self, op: Op, key_row: u32, values: Vec<ScalarValue>) {
        self.ops.push(op);
        self.key_rows.push(key_row);
        self.values.push(values);
    }
}

impl GroupAggregate {
    /// The changelog batch: key columns (all keys converted back at once),
    /// then one column per aggregate.
    fn changes_batch(&self, keys: &Rows, changes: Changes) -> Result<StreamBatch> {
        let key_columns = self.converter.convert_rows(changes.key_rows.iter().map(|row| keys.row(*row as usize)))?;
        let mut columns: Vec<ArrayRef> = key_columns.into_iter().take(self.shown_keys).collect();
        // The values move into one column per aggregate.
        let aggregates = self.spec.aggregates.len();
        let mut per_aggregate: Vec<Vec<ScalarValue>> =
            (0..aggregates).map(|_| Vec::with_capacity(changes.values.len())).collect();
        for values in changes.values {
            if values.len() != aggregates {
                return Err(missing_accumulator(values.len()));
            }
            for (column, value) in per_aggregate.iter_mut().zip(values) {
                column.push(value);
            }
        }
        for values in per_aggregate {
            columns.push(ScalarValue::iter_to_array(values)?);
        }
        let columns = columns
            .into_iter()
            .zip(self.spec.output_schema.fields())
            .map(|(column, field)| match column.data_type() == field.data_type() {
                true => Ok(column),
                false => Ok(cast(&column, field.data_type())?),
            })
            .collect::<Result<Vec<_>>>()?;
        let rows = RecordBatch::try_new(self.spec.output_schema.clone(), columns)?;
        Ok(StreamBatch { rows, ops: Some(changes.ops) })
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::ArrayRef;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::functions_aggregate::average::avg_udaf;
    use datafusion::functions_aggregate::sum::sum_udaf;
    use datafusion::physical_expr::aggregate::AggregateExprBuilder;
    use datafusion::physical_expr::expressions::{cast, col};

    use super::*;
    use crate::operators::restore_check::assert_restores;

    fn spec() -> GroupAggregateSpec {
        let input = Arc::new(Schema::new(vec![
            Field::new("key", DataType::Utf8, false),
            Field::new("value", DataType::Int64, false),
        ]));
        let sum = AggregateExprBuilder::new(sum_udaf(), vec![col("value", &input).unwrap()])
            .schema(input.clone())
            .alias("total")
            .build()
            .unwrap();
        GroupAggregateSpec {
            group_exprs: vec![col("key", &input).unwrap()],
            aggregates: vec![Arc::new(sum)],
            filters: vec![None],
            output_schema: Arc::new(Schema::new(vec![
                Field::new("key", DataType::Utf8, false),
                Field::new("total", DataType::Int64, true),
            ])),
            input_schema: input,
            input_updating: true,
            state_ttl: None,
        }
    }

    fn batch(spec: &GroupAggregateSpec, rows: &[(&str, i64)], ops: Option<Vec<Op>>) -> StreamBatch {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(rows.iter().map(|row| row.0).collect::<Vec<_>>())),
            Arc::new(Int64Array::from(rows.iter().map(|row| row.1).collect::<Vec<_>>())),
        ];
        StreamBatch { rows: RecordBatch::try_new(spec.input_schema.clone(), columns).unwrap(), ops }
    }

    fn changelog(out: &[Message]) -> Vec<String> {
        out.iter()
            .filter_map(|message| match message {
                Message::Batch(batch) => Some(batch),
                _ => None,
            })
            .flat_map(|batch| {
                let table = pretty_format_batches(std::slice::from_ref(&batch.rows)).unwrap().to_string();
                let lines: Vec<String> =
                    table.lines().skip(3).filter(|line| !line.starts_with('+')).map(str::to_string).collect();
                let ops = batch.ops.clone().unwrap();
                lines.into_iter().zip(ops).map(|(line, op)| format!("{} {line}", op.symbol())).collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn emits_retraction_and_new_row_for_changed_keys_only() {
        let spec = spec();
        let mut operator = GroupAggregate::new(spec.clone()).unwrap();
        let mut out = Vec::new();
        operator.on_batch(0, batch(&spec, &[("a", 1), ("b", 2), ("a", 3)], None), &mut out).unwrap();
        operator.on_batch(0, batch(&spec, &[("b", 5)], None), &mut out).unwrap();
        assert_eq!(
            changelog(&out),
            vec!["+ | a   | 4     |", "+ | b   | 2     |", "- | b   | 2     |", "+ | b   | 7     |"]
        );
    }

    #[test]
    fn retractions_from_an_updating_input_remove_keys() {
        let spec = spec();
        let mut operator = GroupAggregate::new(spec.clone()).unwrap();
        let mut out = Vec::new();
        operator.on_batch(0, batch(&spec, &[("a", 1), ("a", 2)], None), &mut out).unwrap();
        out.clear();
        operator.on_batch(0, batch(&spec, &[("a", 2)], Some(vec![Op::Delete])), &mut out).unwrap();
        operator.on_batch(0, batch(&spec, &[("a", 1)], Some(vec![Op::Delete])), &mut out).unwrap();
        assert_eq!(changelog(&out), vec!["- | a   | 3     |", "+ | a   | 1     |", "- | a   | 1     |"]);
        assert_eq!(operator.key_count(), 0);
    }

    /// SUM and AVG of `value`, by `key` or (`keyed == false`) over all rows.
    fn sum_and_average_spec(keyed: bool) -> GroupAggregateSpec {
        let input = spec().input_schema;
        let value = col("value", &input).unwrap();
        // The planner casts AVG's argument to a float; so does this test.
        let value_as_float = cast(value.clone(), &input, DataType::Float64).unwrap();
        let aggregate = |function, argument, alias: &str| {
            let builder = AggregateExprBuilder::new(function, vec![argument]);
            Arc::new(builder.schema(input.clone()).alias(alias).build().unwrap())
        };
        let mut fields = vec![Field::new("total", DataType::Int64, true), Field::new("mean", DataType::Float64, true)];
        if keyed {
            fields.insert(0, Field::new("key", DataType::Utf8, false));
        }
        GroupAggregateSpec {
            group_exprs: if keyed { vec![col("key", &input).unwrap()] } else { vec![] },
            aggregates: vec![aggregate(sum_udaf(), value, "total"), aggregate(avg_udaf(), value_as_float, "mean")],
            filters: vec![None, None],
            output_schema: Arc::new(Schema::new(fields)),
            input_schema: input,
            input_updating: true,
            state_ttl: None,
        }
    }

    /// Inserts and retractions that add keys, change them, remove them
    /// entirely and bring one back.
    fn updating_input(spec: &GroupAggregateSpec) -> Vec<(usize, Message)> {
        use Op::{Delete, Insert};
        let batch = |rows: &[(&str, i64)], ops: Option<Vec<Op>>| (0, Message::Batch(batch(spec, rows, ops)));
        vec![
            batch(&[("a", 1), ("b", 2), ("a", 3)], None),
            batch(&[("b", 5), ("c", 7)], None),
            (0, Message::Watermark(crate::message::Watermark(10))),
            batch(&[("a", 1), ("c", 4)], Some(vec![Delete, Insert])),
            batch(&[("c", 7), ("c", 4), ("b", 2)], Some(vec![Delete, Delete, Insert])),
            batch(&[("c", 9), ("a", 3)], Some(vec![Insert, Delete])),
            batch(&[("b", 2), ("d", 1), ("b", 5)], Some(vec![Delete, Insert, Delete])),
            (0, Message::End),
        ]
    }

    #[test]
    fn restores_keys_accumulators_and_emitted_rows() {
        let spec = sum_and_average_spec(true);
        let new = || Box::new(GroupAggregate::new(spec.clone()).unwrap()) as Box<dyn Operator>;
        let straight = assert_restores(new, &updating_input(&spec));
        assert!(straight.iter().any(|row| row.starts_with("- c")), "{straight:?}");
        assert!(straight.contains(&"+ c, 9, 9.0".to_string()), "{straight:?}");
    }

    #[test]
    fn restores_a_global_aggregate() {
        let spec = sum_and_average_spec(false);
        let new = || {
            Box::new(
                GroupAggregate::new(GroupAggregateSpec { state_ttl: Some(Duration::from_secs(3600)), ..spec.clone() })
                    .unwrap(),
            ) as Box<dyn Operator>
        };
        let straight = assert_restores(new, &updating_input(&spec));
        assert!(!straight.is_empty());
    }

    /// `key, count(*), count(DISTINCT value) FILTER (WHERE value > 1),
    /// max(value)` by key over an append-only input (plain accumulators).
    fn distinct_filter_max_spec() -> GroupAggregateSpec {
        use datafusion::functions_aggregate::count::count_udaf;
        use datafusion::functions_aggregate::min_max::max_udaf;
        use datafusion::logical_expr::Operator as BinaryOperator;
        use datafusion::physical_expr::expressions::{binary, lit};
        let input = spec().input_schema;
        let value = col("value", &input).unwrap();
        let aggregate = |function, distinct: bool, alias: &str| {
            let builder = AggregateExprBuilder::new(function, vec![value.clone()]).schema(input.clone()).alias(alias);
            Arc::new(if distinct { builder.distinct() } else { builder }.build().unwrap())
        };
        let above_one = binary(value.clone(), BinaryOperator::Gt, lit(1_i64), &input).unwrap();
        GroupAggregateSpec {
            group_exprs: vec![col("key", &input).unwrap()],
            aggregates: vec![
                aggregate(count_udaf(), false, "rows"),
                aggregate(count_udaf(), true, "big_values"),
                aggregate(max_udaf(), false, "top"),
            ],
            filters: vec![None, Some(above_one), None],
            output_schema: Arc::new(Schema::new(vec![
                Field::new("key", DataType::Utf8, false),
                Field::new("rows", DataType::Int64, false),
                Field::new("big_values", DataType::Int64, false),
                Field::new("top", DataType::Int64, true),
            ])),
            input_schema: input,
            input_updating: false,
            state_ttl: None,
        }
    }

    #[test]
    fn an_append_only_input_gets_plain_accumulators_with_filters_applied_per_key() {
        let spec = distinct_filter_max_spec();
        let new = || Box::new(GroupAggregate::new(spec.clone()).unwrap()) as Box<dyn Operator>;
        let append = |rows: &[(&str, i64)]| (0, Message::Batch(batch(&spec, rows, None)));
        let input = vec![
            append(&[("a", 1), ("b", 5), ("a", 3), ("a", 3), ("b", 1)]),
            append(&[("c", 0)]),
            append(&[("a", 7), ("c", 2), ("a", 1)]),
            (0, Message::End),
        ];
        let straight = assert_restores(new, &input);
        assert_eq!(
            straight,
            vec![
                "+ a, 3, 1, 3",
                "+ b, 2, 1, 5",
                "+ c, 1, 0, 0",
                "- a, 3, 1, 3",
                "+ a, 5, 2, 7",
                "- c, 1, 0, 0",
                "+ c, 2, 1, 2",
            ]
        );
        // Plain accumulators cannot take retractions back.
        let mut operator = new();
        let retraction = batch(&spec, &[("a", 1)], Some(vec![Op::Delete]));
        assert!(operator.on_batch(0, retraction, &mut Vec::new()).is_err());
    }

    #[test]
    fn state_ttl_forgets_idle_keys() {
        let spec = spec();
        let mut operator =
            GroupAggregate::new(GroupAggregateSpec { state_ttl: Some(Duration::from_millis(20)), ..spec.clone() })
                .unwrap();
        let mut out = Vec::new();
        operator.on_batch(0, batch(&spec, &[("a", 1)], None), &mut out).unwrap();
        std::thread::sleep(Duration::from_millis(40));
        operator.on_batch(0, batch(&spec, &[("b", 1)], None), &mut out).unwrap();
        assert_eq!(operator.key_count(), 1);
    }
}
