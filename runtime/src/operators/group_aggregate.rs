//! GROUP BY without a window: running state per key for the whole stream
//! (the seed's `updateStateByKey`), emitted as a changelog.
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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{OwnedRow, RowConverter};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

use crate::error::{Result, RuntimeError};
use crate::message::{Message, Op, StreamBatch};
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
    state_ttl: Option<Duration>,
    last_expiry: Instant,
}

impl GroupAggregate {
    pub fn new(mut spec: GroupAggregateSpec, state_ttl: Option<Duration>) -> Result<Self> {
        // Without GROUP BY there is one group, keyed by a constant not shown.
        let shown_keys = spec.group_exprs.len();
        spec.group_exprs = grouping_keys(&spec.group_exprs);
        Ok(Self {
            shown_keys,
            converter: key_converter(&spec.group_exprs, &spec.input_schema)?,
            spec,
            keys: HashMap::new(),
            state_ttl,
            last_expiry: Instant::now(),
        })
    }

    /// Keys currently held (for metrics and tests).
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    fn expire(&mut self, now: Instant) {
        let Some(ttl) = self.state_ttl else { return };
        // Scanning every key is O(keys); do it at most once per tenth of the TTL.
        if now.duration_since(self.last_expiry) < ttl / 10 {
            return;
        }
        self.last_expiry = now;
        self.keys.retain(|_, state| now.duration_since(state.last_update) < ttl);
    }

    fn output_row(&self, state: &KeyState, values: &[ScalarValue]) -> Result<Vec<ScalarValue>> {
        let keys = self.converter.convert_rows([state.key.row()])?;
        let mut row = keys
            .iter()
            .take(self.shown_keys)
            .map(|column| ScalarValue::try_from_array(column, 0))
            .collect::<Result<Vec<_>, _>>()?;
        row.extend(values.iter().cloned());
        Ok(row)
    }
}

/// Aggregates whose `Accumulator::state()` (plain and sliding) reads the
/// accumulator without changing it.
const NON_DRAINING_STATE: [&str; 9] = ["count", "sum", "min", "max", "avg", "bool_and", "bool_or", "bit_and", "bit_or"];

impl Operator for GroupAggregate {
    fn on_batch(&mut self, _port: usize, batch: StreamBatch, out: &mut Vec<Message>) -> Result<()> {
        let now = Instant::now();
        self.expire(now);
        let rows = &batch.rows;
        let num_rows = rows.num_rows();
        if num_rows == 0 {
            return Ok(());
        }
        let key_columns = self.spec.group_exprs.iter().map(|expr| evaluate(expr, rows)).collect::<Result<Vec<_>>>()?;
        let keys = self.converter.convert_columns(&key_columns)?;
        let arguments = self
            .spec
            .aggregates
            .iter()
            .map(|aggregate| {
                aggregate.expressions().iter().map(|expr| evaluate(expr, rows)).collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        let filters = self
            .spec
            .filters
            .iter()
            .map(|filter| filter.as_ref().map(|filter| Ok(evaluate(filter, rows)?.as_boolean().clone())).transpose())
            .collect::<Result<Vec<Option<BooleanArray>>>>()?;

        // Bucket row indices by (key, op), keeping first-seen key order so
        // the output order is deterministic for a given input.
        let mut order: Vec<Box<[u8]>> = Vec::new();
        // Per key: row indices of inserts, then of retractions.
        type Rows = (Vec<u32>, Vec<u32>);
        let mut buckets: HashMap<Box<[u8]>, Rows> = HashMap::new();
        for row in 0..num_rows {
            let key: Box<[u8]> = keys.row(row).as_ref().into();
            let op = batch.ops.as_ref().map_or(Op::Insert, |ops| ops[row]);
            let bucket = buckets.entry(key.clone()).or_insert_with(|| {
                order.push(key);
                (Vec::new(), Vec::new())
            });
            match op {
                Op::Insert => bucket.0.push(row as u32),
                Op::Delete => bucket.1.push(row as u32),
            }
        }

        // One `take` per argument puts each key's rows side by side (its
        // inserts, then its retractions); each key then reads slices.
        let mut permutation: Vec<u32> = Vec::with_capacity(num_rows);
        let mut runs = Vec::with_capacity(order.len());
        for key in order {
            let Some((inserts, deletes)) = buckets.remove(&key) else {
                continue;
            };
            let first = inserts.first().or(deletes.first()).copied().unwrap_or(0);
            runs.push((key, permutation.len(), inserts.len(), deletes.len(), first));
            permutation.extend(inserts);
            permutation.extend(deletes);
        }
        let permutation = UInt32Array::from(permutation);
        let arguments = arguments
            .iter()
            .map(|columns| {
                columns.iter().map(|column| Ok(take(column, &permutation, None)?)).collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        let filters = filters
            .iter()
            .map(|mask| mask.as_ref().map(|mask| Ok(take(mask, &permutation, None)?.as_boolean().clone())).transpose())
            .collect::<Result<Vec<Option<BooleanArray>>>>()?;

        let mut changes: Vec<(Op, Vec<ScalarValue>)> = Vec::new();
        for (key, start, inserted, deleted, first) in runs {
            if !self.keys.contains_key(&key) {
                let state = KeyState {
                    key: keys.row(first as usize).owned(),
                    accumulators: new_accumulators(&self.spec)?,
                    live_rows: 0,
                    emitted: None,
                    last_update: now,
                };
                self.keys.insert(key.clone(), state);
            }
            let Some(mut state) = self.keys.remove(&key) else {
                continue;
            };
            for (offset, length, retract) in [(start, inserted, false), (start + inserted, deleted, true)] {
                if length == 0 {
                    continue;
                }
                state.live_rows += if retract { -(length as i64) } else { length as i64 };
                for ((accumulator, arguments), mask) in state.accumulators.iter_mut().zip(&arguments).zip(&filters) {
                    feed_slice(accumulator.as_mut(), arguments, mask.as_ref(), (offset, length), retract)?;
                }
            }
            state.last_update = now;
            if let Some(previous) = state.emitted.take() {
                changes.push((Op::Delete, self.output_row(&state, &previous)?));
            }
            if state.live_rows > 0 {
                let values = state.accumulators.iter_mut().map(|accumulator| accumulator.evaluate()).collect::<Result<
                    Vec<_>,
                    _,
                >>(
                )?;
                changes.push((Op::Insert, self.output_row(&state, &values)?));
                state.emitted = Some(values);
                self.keys.insert(key, state);
            }
        }
        if !changes.is_empty() {
            out.push(Message::Batch(self.changes_batch(changes)?));
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
    spec.aggregates
        .iter()
        .map(|aggregate| Ok(aggregate.create_sliding_accumulator().or_else(|_| aggregate.create_accumulator())?))
        .collect()
}

impl GroupAggregate {
    fn changes_batch(&self, changes: Vec<(Op, Vec<ScalarValue>)>) -> Result<StreamBatch> {
        let ops: Vec<Op> = changes.iter().map(|(op, _)| *op).collect();
        let columns = self
            .spec
            .output_schema
            .fields()
            .iter()
            .enumerate()
            .map(|(index, field)| {
                let column = ScalarValue::iter_to_array(changes.iter().map(|(_, row)| row[index].clone()))?;
                Ok(if column.data_type() == field.data_type() { column } else { cast(&column, field.data_type())? })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(StreamBatch { rows: RecordBatch::try_new(self.spec.output_schema.clone(), columns)?, ops: Some(ops) })
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
        let mut operator = GroupAggregate::new(spec.clone(), None).unwrap();
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
        let mut operator = GroupAggregate::new(spec.clone(), None).unwrap();
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
        let new = || Box::new(GroupAggregate::new(spec.clone(), None).unwrap()) as Box<dyn Operator>;
        let straight = assert_restores(new, &updating_input(&spec));
        assert!(straight.iter().any(|row| row.starts_with("- c")), "{straight:?}");
        assert!(straight.contains(&"+ c, 9, 9.0".to_string()), "{straight:?}");
    }

    #[test]
    fn restores_a_global_aggregate() {
        let spec = sum_and_average_spec(false);
        let new = || {
            Box::new(GroupAggregate::new(spec.clone(), Some(Duration::from_secs(3600))).unwrap()) as Box<dyn Operator>
        };
        let straight = assert_restores(new, &updating_input(&spec));
        assert!(!straight.is_empty());
    }

    #[test]
    fn state_ttl_forgets_idle_keys() {
        let spec = spec();
        let mut operator = GroupAggregate::new(spec.clone(), Some(Duration::from_millis(20))).unwrap();
        let mut out = Vec::new();
        operator.on_batch(0, batch(&spec, &[("a", 1)], None), &mut out).unwrap();
        std::thread::sleep(Duration::from_millis(40));
        operator.on_batch(0, batch(&spec, &[("b", 1)], None), &mut out).unwrap();
        assert_eq!(operator.key_count(), 1);
    }
}
