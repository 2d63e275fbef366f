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

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, BooleanArray, UInt32Array};
use datafusion::arrow::compute::take;
use datafusion::arrow::row::{OwnedRow, RowConverter, Rows};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

use crate::error::{Result, RuntimeError};
use crate::operators::groups::{AggregateInputs, feed};

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
