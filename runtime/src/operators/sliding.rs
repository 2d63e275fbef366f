//! Running aggregates per key with retraction: the sliding-window path for
//! invertible aggregates (count, sum, avg).
//!
//! # Algorithm
//!
//! Each key keeps one DataFusion sliding `Accumulator` per aggregate. A
//! pane's rows are kept until the pane leaves the window; entering the
//! window they are added (`update_batch`), leaving it they are retracted
//! (`retract_batch`). The work per slide is the rows of the entering and
//! leaving panes, whatever the window's size:
//!
//! ```text
//!   window [p1 p2 p3]  ─slide─►  [p2 p3 p4]:  running += p4;  running -= p1
//! ```
//!
//! # Checkpoints
//!
//! Pane rows are saved as they are, chunk by chunk. The running aggregates
//! are saved as each key's accumulator `state()`, not rebuilt from the
//! panes in the window on restore: a float sum that added and retracted
//! rows carries rounding a fresh sum of the same rows does not, and the
//! restored operator must give the very same values.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{concat, take};
use datafusion::arrow::row::{OwnedRow, RowConverter, Rows};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

use crate::error::{Result, RuntimeError};
use crate::operators::groups::{AggregateInputs, feed};
use crate::state::{
    OperatorState, accumulator_states, batch_of, i64_column, merge_accumulator_state, rows_column, rows_from_column,
};

/// Whether every aggregate can be maintained by adding and retracting rows.
pub(crate) fn all_invertible(aggregates: &[Arc<AggregateFunctionExpr>]) -> bool {
    aggregates.iter().all(|aggregate| {
        !aggregate.is_distinct()
            && matches!(aggregate.fun().name(), "count" | "sum" | "avg" | "mean")
            && aggregate.create_sliding_accumulator().is_ok()
    })
}

/// The rows of one pane, kept to be retracted later.
pub(crate) struct PaneRows {
    chunks: Vec<Chunk>,
}

impl PaneRows {
    /// Rows held.
    pub fn len(&self) -> usize {
        self.chunks.iter().map(|chunk| chunk.keys.num_rows()).sum()
    }

    /// Bytes held: keys, aggregate arguments and filters.
    pub fn bytes(&self) -> usize {
        self.chunks
            .iter()
            .map(|chunk| {
                let arguments: usize =
                    chunk.arguments.iter().flatten().map(|array| array.get_array_memory_size()).sum();
                let filters: usize = chunk.filters.iter().flatten().map(|filter| filter.get_array_memory_size()).sum();
                chunk.keys.size() + arguments + filters
            })
            .sum()
    }
}

struct Chunk {
    keys: Rows,
    arguments: Vec<Vec<ArrayRef>>,
    filters: Vec<Option<BooleanArray>>,
}

impl PaneRows {
    pub fn new() -> Self {
        Self { chunks: Vec::new() }
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Keeps rows `rows` of the batch `inputs` came from.
    pub fn add(&mut self, converter: &RowConverter, inputs: &AggregateInputs, rows: &[u32]) -> Result<()> {
        let indices = UInt32Array::from(rows.to_vec());
        let mut keys = converter.empty_rows(rows.len(), 0);
        for row in rows {
            keys.push(inputs.keys.row(*row as usize));
        }
        let arguments = inputs
            .arguments
            .iter()
            .map(|arguments| {
                arguments.iter().map(|argument| Ok(take(argument, &indices, None)?)).collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        let filters = inputs
            .filters
            .iter()
            .map(|mask| mask.as_ref().map(|mask| Ok(take(mask, &indices, None)?.as_boolean().clone())).transpose())
            .collect::<Result<Vec<_>>>()?;
        self.chunks.push(Chunk { keys, arguments, filters });
        Ok(())
    }

    /// The rows as one batch for a checkpoint: `chunk` (each row's chunk),
    /// `key` (row bytes), the arguments `a{aggregate}_{argument}` and the
    /// `FILTER` masks `f{aggregate}`. Chunks stay apart because they are
    /// fed to the accumulators one call each.
    pub fn to_batch(&self) -> Result<RecordBatch> {
        let chunk_of = self
            .chunks
            .iter()
            .enumerate()
            .flat_map(|(index, chunk)| std::iter::repeat_n(index as i64, chunk.keys.num_rows()));
        // The binary builder wants an iterator of known length.
        let keys: Vec<&[u8]> = self.chunks.iter().flat_map(|chunk| chunk.keys.iter().map(|row| row.data())).collect();
        let mut columns = vec![
            ("chunk".to_string(), Arc::new(Int64Array::from_iter_values(chunk_of)) as ArrayRef),
            ("key".to_string(), rows_column(keys)),
        ];
        let Some(first) = self.chunks.first() else { return batch_of(columns) };
        // Every chunk has the same aggregates' arguments and masks.
        for (aggregate, arguments) in first.arguments.iter().enumerate() {
            for argument in 0..arguments.len() {
                let arrays: Vec<&dyn Array> =
                    self.chunks.iter().map(|chunk| chunk.arguments[aggregate][argument].as_ref()).collect();
                columns.push((format!("a{aggregate}_{argument}"), concat(&arrays)?));
            }
        }
        for aggregate in 0..first.filters.len() {
            let masks: Option<Vec<&dyn Array>> = self
                .chunks
                .iter()
                .map(|chunk| chunk.filters[aggregate].as_ref().map(|mask| mask as &dyn Array))
                .collect();
            if let Some(masks) = masks {
                columns.push((format!("f{aggregate}"), concat(&masks)?));
            }
        }
        batch_of(columns)
    }

    /// Reads [`to_batch`](PaneRows::to_batch)'s output back.
    pub fn from_batch(batch: &RecordBatch, converter: &RowConverter, aggregates: usize) -> Result<Self> {
        let chunk_of = i64_column(batch, "chunk")?;
        let key = batch.column_by_name("key").ok_or_else(|| RuntimeError::internal("pane rows without keys"))?;
        let mut chunks = Vec::new();
        let mut offset = 0;
        while offset < batch.num_rows() {
            let chunk = chunk_of.value(offset);
            let length = chunk_of.values()[offset..].iter().take_while(|other| **other == chunk).count();
            let keys = rows_from_column(converter, &key.slice(offset, length))?;
            let arguments = (0..aggregates)
                .map(|aggregate| {
                    let mut arguments = Vec::new();
                    while let Some(column) = batch.column_by_name(&format!("a{aggregate}_{}", arguments.len())) {
                        arguments.push(column.slice(offset, length));
                    }
                    arguments
                })
                .collect();
            let filters = (0..aggregates)
                .map(|aggregate| match batch.column_by_name(&format!("f{aggregate}")) {
                    None => Ok(None),
                    Some(mask) => {
                        let mask =
                            mask.as_boolean_opt().ok_or_else(|| RuntimeError::internal("a mask is not boolean"))?;
                        Ok(Some(mask.slice(offset, length)))
                    }
                })
                .collect::<Result<Vec<_>>>()?;
            chunks.push(Chunk { keys, arguments, filters });
            offset += length;
        }
        Ok(Self { chunks })
    }
}

struct RunningKey {
    key: OwnedRow,
    accumulators: Vec<Box<dyn Accumulator>>,
    rows: i64,
    /// First-seen order, for a deterministic output order.
    order: u64,
}

/// Running aggregates of the panes currently in the window.
pub(crate) struct Running {
    aggregates: Vec<Arc<AggregateFunctionExpr>>,
    keys: HashMap<Box<[u8]>, RunningKey>,
    next_order: u64,
}

impl Running {
    pub fn new(aggregates: Vec<Arc<AggregateFunctionExpr>>) -> Self {
        Self { aggregates, keys: HashMap::new(), next_order: 0 }
    }

    pub fn clear(&mut self) {
        self.keys.clear();
    }

    /// Saves the running aggregates as the batch `name` (per key, oldest
    /// first: `key`, `order`, `rows` and each aggregate's state columns
    /// `s{aggregate}_{field}`) and the value `name.next_order`.
    pub fn snapshot(&mut self, state: &mut OperatorState, name: &str) -> Result<()> {
        let mut keys: Vec<&mut RunningKey> = self.keys.values_mut().collect();
        keys.sort_by_key(|key| key.order);
        let mut columns = vec![
            ("key".to_string(), rows_column(keys.iter().map(|key| key.key.row().data()))),
            ("order".to_string(), Arc::new(Int64Array::from_iter_values(keys.iter().map(|key| key.order as i64))) as _),
            ("rows".to_string(), Arc::new(Int64Array::from_iter_values(keys.iter().map(|key| key.rows))) as _),
        ];
        for aggregate in 0..self.aggregates.len() {
            let mut accumulators: Vec<&mut dyn Accumulator> =
                keys.iter_mut().map(|key| key.accumulators[aggregate].as_mut()).collect();
            accumulator_states(&mut accumulators, &format!("s{aggregate}_"), &mut columns)?;
        }
        state.put(name, batch_of(columns)?);
        state.put_value(&format!("{name}.next_order"), self.next_order as i64);
        Ok(())
    }

    /// Loads [`snapshot`](Running::snapshot)'s state into empty running
    /// aggregates: fresh sliding accumulators merge each key's state.
    pub fn restore(&mut self, state: &mut OperatorState, name: &str, converter: &RowConverter) -> Result<()> {
        let batch = state.take(name)?;
        let key = batch.column_by_name("key").ok_or_else(|| RuntimeError::internal("running state without keys"))?;
        let keys = rows_from_column(converter, key)?;
        let (orders, rows) = (i64_column(&batch, "order")?, i64_column(&batch, "rows")?);
        self.keys.clear();
        for row in 0..batch.num_rows() {
            let mut accumulators = self
                .aggregates
                .iter()
                .map(|aggregate| Ok(aggregate.create_sliding_accumulator()?))
                .collect::<Result<Vec<_>>>()?;
            for (aggregate, accumulator) in accumulators.iter_mut().enumerate() {
                merge_accumulator_state(accumulator.as_mut(), &batch, &format!("s{aggregate}_"), row)?;
            }
            let key = keys.row(row);
            let running =
                RunningKey { key: key.owned(), accumulators, rows: rows.value(row), order: orders.value(row) as u64 };
            self.keys.insert(key.as_ref().into(), running);
        }
        self.next_order = state.value(&format!("{name}.next_order"))? as u64;
        Ok(())
    }

    /// Adds (`retract == false`) or retracts a pane's rows.
    pub fn apply(&mut self, pane: &PaneRows, retract: bool) -> Result<()> {
        for chunk in &pane.chunks {
            let mut order: Vec<Box<[u8]>> = Vec::new();
            let mut rows_of: HashMap<Box<[u8]>, Vec<u32>> = HashMap::new();
            for row in 0..chunk.keys.num_rows() {
                let key: Box<[u8]> = chunk.keys.row(row).as_ref().into();
                rows_of
                    .entry(key.clone())
                    .or_insert_with(|| {
                        order.push(key);
                        Vec::new()
                    })
                    .push(row as u32);
            }
            for key in order {
                let Some(rows) = rows_of.remove(&key) else { continue };
                if !self.keys.contains_key(&key) {
                    if retract {
                        return Err(RuntimeError::internal("retracting rows of a key not in the window"));
                    }
                    let accumulators = self
                        .aggregates
                        .iter()
                        .map(|aggregate| Ok(aggregate.create_sliding_accumulator()?))
                        .collect::<Result<Vec<_>>>()?;
                    let first = chunk.keys.row(rows[0] as usize).owned();
                    self.keys
                        .insert(key.clone(), RunningKey { key: first, accumulators, rows: 0, order: self.next_order });
                    self.next_order += 1;
                }
                let Some(state) = self.keys.get_mut(&key) else { continue };
                let indices = UInt32Array::from(rows.clone());
                for ((accumulator, arguments), mask) in
                    state.accumulators.iter_mut().zip(&chunk.arguments).zip(&chunk.filters)
                {
                    feed(accumulator.as_mut(), arguments, mask.as_ref(), &indices, retract)?;
                }
                state.rows += if retract { -(rows.len() as i64) } else { rows.len() as i64 };
                if state.rows <= 0 {
                    self.keys.remove(&key);
                }
            }
        }
        Ok(())
    }

    /// The current values: key columns, then one column per aggregate;
    /// `None` when no key has rows.
    pub fn evaluate(&mut self, converter: &RowConverter) -> Result<Option<(Vec<ArrayRef>, Vec<ArrayRef>)>> {
        if self.keys.is_empty() {
            return Ok(None);
        }
        let mut states: Vec<&mut RunningKey> = self.keys.values_mut().collect();
        states.sort_by_key(|state| state.order);
        let keys = converter.convert_rows(states.iter().map(|state| state.key.row()))?;
        let mut columns: Vec<Vec<ScalarValue>> = vec![Vec::with_capacity(states.len()); self.aggregates.len()];
        for state in states {
            for (column, accumulator) in columns.iter_mut().zip(state.accumulators.iter_mut()) {
                column.push(accumulator.evaluate()?);
            }
        }
        let values =
            columns.into_iter().map(|column| Ok(ScalarValue::iter_to_array(column)?)).collect::<Result<Vec<_>>>()?;
        Ok(Some((keys, values)))
    }
}
