//! Aggregates per group key with DataFusion `GroupsAccumulator`s: the
//! building block of the window operators.
//!
//! [`Groups`] holds the running aggregates of one set of rows (a tumbling
//! window, a pane of a hopping window). Keys are encoded with arrow's row
//! format and mapped to dense group indices, so each batch updates every
//! accumulator in one vectorised call. A [`Partial`] is the intermediate
//! state of a `Groups` (DataFusion's `state()`), which can be merged into
//! other `Groups`: associative merging is how panes combine into windows
//! without re-reading rows.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, BooleanArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{cast, filter, interleave, take};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Accumulator, EmitTo, GroupsAccumulator};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::expressions::Literal;
use datafusion::physical_expr::{GroupsAccumulatorAdapter, PhysicalExpr};

use crate::error::{Result, RuntimeError};
use crate::message::{Op, StreamBatch};

/// What the aggregates read from one input batch, evaluated once.
pub(crate) struct AggregateInputs {
    pub keys: Rows,
    pub arguments: Vec<Vec<ArrayRef>>,
    pub filters: Vec<Option<BooleanArray>>,
    pub num_rows: usize,
}

/// Builds an output batch, casting columns whose type differs from the
/// schema's (an accumulator may return a wider type than the plan says).
pub(crate) fn output_batch(schema: &SchemaRef, columns: Vec<ArrayRef>) -> Result<RecordBatch> {
    let columns =
        columns
            .into_iter()
            .zip(schema.fields())
            .map(|(column, field)| {
                if column.data_type() == field.data_type() { Ok(column) } else { Ok(cast(&column, field.data_type())?) }
            })
            .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// The changelog from `old` to `new` rows of one window: for each key whose
/// row changed, the old row retracted and the new one inserted. Keys keep
/// their order and new keys come last, so row i of `old` and row i of `new`
/// are the same key.
pub(crate) fn changelog(
    schema: &SchemaRef,
    old: Option<&RecordBatch>,
    new: &RecordBatch,
) -> Result<Option<StreamBatch>> {
    let Some(old) = old else {
        let ops = vec![Op::Insert; new.num_rows()];
        return Ok((new.num_rows() > 0).then(|| StreamBatch { rows: new.clone(), ops: Some(ops) }));
    };
    let fields = schema.fields().iter().map(|field| SortField::new(field.data_type().clone()));
    let rows_converter = RowConverter::new(fields.collect())?;
    let old_rows = rows_converter.convert_columns(old.columns())?;
    let new_rows = rows_converter.convert_columns(new.columns())?;
    let mut picks: Vec<(usize, usize)> = Vec::new();
    let mut ops = Vec::new();
    for index in 0..new.num_rows().max(old.num_rows()) {
        let same = index < old.num_rows() && index < new.num_rows() && old_rows.row(index) == new_rows.row(index);
        if same {
            continue;
        }
        if index < old.num_rows() {
            picks.push((0, index));
            ops.push(Op::Delete);
        }
        if index < new.num_rows() {
            picks.push((1, index));
            ops.push(Op::Insert);
        }
    }
    if picks.is_empty() {
        return Ok(None);
    }
    let columns = (0..new.num_columns())
        .map(|column| Ok(interleave(&[old.column(column).as_ref(), new.column(column).as_ref()], &picks)?))
        .collect::<Result<Vec<_>>>()?;
    let rows = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(Some(StreamBatch { rows, ops: Some(ops) }))
}

/// Window aggregates read append-only input.
pub(crate) fn reject_retractions(batch: &StreamBatch) -> Result<()> {
    match &batch.ops {
        Some(ops) if ops.contains(&Op::Delete) => {
            Err(RuntimeError::user("a window aggregate cannot read an updating input (it has retractions)"))
        }
        _ => Ok(()),
    }
}

/// Adds (or, with `retract`, removes) rows `indices` of `arguments`, less
/// those a `FILTER (WHERE ...)` mask rejects, to one per-key accumulator.
pub(crate) fn feed(
    accumulator: &mut dyn Accumulator,
    arguments: &[ArrayRef],
    mask: Option<&BooleanArray>,
    indices: &UInt32Array,
    retract: bool,
) -> Result<()> {
    let mut values = arguments.iter().map(|argument| Ok(take(argument, indices, None)?)).collect::<Result<Vec<_>>>()?;
    if let Some(mask) = mask {
        let mask = take(mask, indices, None)?;
        values = values.iter().map(|value| Ok(filter(value, mask.as_boolean())?)).collect::<Result<Vec<_>>>()?;
    }
    if !retract {
        return Ok(accumulator.update_batch(&values)?);
    }
    if !accumulator.supports_retract_batch() {
        return Err(RuntimeError::user("this aggregate cannot take retractions from an updating input"));
    }
    Ok(accumulator.retract_batch(&values)?)
}

/// Like [`feed`], for the rows `offset..offset + length` of arguments
/// already permuted so that each group's rows are contiguous (and already
/// filtered by the aggregate's `FILTER (WHERE ...)`): slices instead of a
/// `take` per group.
pub(crate) fn feed_slice(
    accumulator: &mut dyn Accumulator,
    arguments: &[ArrayRef],
    (offset, length): (usize, usize),
    retract: bool,
) -> Result<()> {
    let values: Vec<ArrayRef> = arguments.iter().map(|argument| argument.slice(offset, length)).collect();
    if !retract {
        return Ok(accumulator.update_batch(&values)?);
    }
    if !accumulator.supports_retract_batch() {
        return Err(RuntimeError::user("this aggregate cannot take retractions from an updating input"));
    }
    Ok(accumulator.retract_batch(&values)?)
}

/// A row-format converter for the keys `exprs` evaluate to.
pub(crate) fn key_converter(exprs: &[Arc<dyn PhysicalExpr>], schema: &SchemaRef) -> Result<RowConverter> {
    let fields = exprs.iter().map(|expr| Ok(SortField::new(expr.data_type(schema)?))).collect::<Result<Vec<_>>>()?;
    Ok(RowConverter::new(fields)?)
}

/// The key expressions to group by: `exprs`, or one constant when there
/// are none (the row format cannot count rows of zero columns).
pub(crate) fn grouping_keys(exprs: &[Arc<dyn PhysicalExpr>]) -> Vec<Arc<dyn PhysicalExpr>> {
    if exprs.is_empty() { vec![Arc::new(Literal::new(ScalarValue::Boolean(Some(true))))] } else { exprs.to_vec() }
}

pub(crate) fn evaluate(expr: &Arc<dyn PhysicalExpr>, rows: &RecordBatch) -> Result<ArrayRef> {
    Ok(expr.evaluate(rows)?.into_array(rows.num_rows())?)
}

impl AggregateInputs {
    pub fn evaluate(
        converter: &RowConverter,
        key_exprs: &[Arc<dyn PhysicalExpr>],
        aggregates: &[Arc<AggregateFunctionExpr>],
        filters: &[Option<Arc<dyn PhysicalExpr>>],
        rows: &RecordBatch,
    ) -> Result<Self> {
        let key_columns = key_exprs.iter().map(|expr| evaluate(expr, rows)).collect::<Result<Vec<_>>>()?;
        let keys = converter.convert_columns(&key_columns)?;
        let arguments = aggregates
            .iter()
            .map(|aggregate| {
                aggregate.expressions().iter().map(|expr| evaluate(expr, rows)).collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        let filters = filters
            .iter()
            .map(|filter| filter.as_ref().map(|filter| Ok(evaluate(filter, rows)?.as_boolean().clone())).transpose())
            .collect::<Result<Vec<Option<BooleanArray>>>>()?;
        Ok(Self { keys, arguments, filters, num_rows: rows.num_rows() })
    }
}

/// The intermediate state of some [`Groups`], one row per key.
#[derive(Clone)]
pub(crate) struct Partial {
    pub keys: Rows,
    /// Per aggregate, its state columns.
    pub states: Vec<Vec<ArrayRef>>,
}

impl Partial {
    /// As a batch for a checkpoint: `key` (row bytes), then each
    /// aggregate's state columns `s{aggregate}_{field}`.
    pub fn to_batch(&self) -> Result<RecordBatch> {
        let mut columns = vec![("key".to_string(), crate::state::rows_column(self.keys.iter().map(|row| row.data())))];
        for (aggregate, states) in self.states.iter().enumerate() {
            for (field, state) in states.iter().enumerate() {
                columns.push((format!("s{aggregate}_{field}"), state.clone()));
            }
        }
        crate::state::batch_of(columns)
    }

    /// Reads [`to_batch`](Partial::to_batch)'s output back.
    pub fn from_batch(batch: &RecordBatch, converter: &RowConverter, aggregates: usize) -> Result<Self> {
        let key = batch.column_by_name("key").ok_or_else(|| RuntimeError::internal("partial state without keys"))?;
        let keys = crate::state::rows_from_column(converter, key)?;
        let states = (0..aggregates)
            .map(|aggregate| {
                let mut columns = Vec::new();
                while let Some(column) = batch.column_by_name(&format!("s{aggregate}_{}", columns.len())) {
                    columns.push(column.clone());
                }
                columns
            })
            .collect();
        Ok(Self { keys, states })
    }
}

pub(crate) struct Groups {
    group_ids: HashMap<Box<[u8]>, usize>,
    keys: Rows,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
}

/// A `GroupsAccumulator` for `aggregate`: its own, or per-group
/// `Accumulator`s behind DataFusion's adapter where it has none.
pub(crate) fn create_accumulator(aggregate: &Arc<AggregateFunctionExpr>) -> Result<Box<dyn GroupsAccumulator>> {
    if aggregate.groups_accumulator_supported() {
        return Ok(aggregate.create_groups_accumulator()?);
    }
    let aggregate = Arc::clone(aggregate);
    Ok(Box::new(GroupsAccumulatorAdapter::new(move || aggregate.create_accumulator())))
}

impl Groups {
    pub fn new(converter: &RowConverter, aggregates: &[Arc<AggregateFunctionExpr>]) -> Result<Self> {
        let accumulators = aggregates.iter().map(create_accumulator).collect::<Result<Vec<_>>>()?;
        Ok(Self { group_ids: HashMap::new(), keys: converter.empty_rows(0, 0), accumulators })
    }

    pub fn len(&self) -> usize {
        self.keys.num_rows()
    }

    /// Bytes held: the keys (in the rows and in their index) and the
    /// accumulators.
    pub fn bytes(&self) -> usize {
        let index = self.group_ids.len() * (std::mem::size_of::<usize>() + 16);
        2 * self.keys.size() + index + self.accumulators.iter().map(|accumulator| accumulator.size()).sum::<usize>()
    }

    fn group_of(&mut self, key: datafusion::arrow::row::Row<'_>) -> usize {
        match self.group_ids.get(key.as_ref()) {
            Some(&group) => group,
            None => {
                let group = self.keys.num_rows();
                self.group_ids.insert(key.as_ref().into(), group);
                self.keys.push(key);
                group
            }
        }
    }

    /// Adds the rows `rows` (indices into the batch `inputs` came from).
    pub fn update(&mut self, inputs: &AggregateInputs, rows: &[u32]) -> Result<()> {
        let group_indices: Vec<usize> = rows.iter().map(|&row| self.group_of(inputs.keys.row(row as usize))).collect();
        let total_groups = self.len();
        let whole_batch = rows.len() == inputs.num_rows;
        let take_indices = UInt32Array::from(rows.to_vec());
        for ((accumulator, arguments), filter) in
            self.accumulators.iter_mut().zip(&inputs.arguments).zip(&inputs.filters)
        {
            if whole_batch {
                accumulator.update_batch(arguments, &group_indices, filter.as_ref(), total_groups)?;
                continue;
            }
            let arguments = arguments
                .iter()
                .map(|argument| Ok(take(argument.as_ref(), &take_indices, None)?))
                .collect::<Result<Vec<_>>>()?;
            let filter = filter
                .as_ref()
                .map(|filter| Ok::<_, RuntimeError>(take(filter, &take_indices, None)?.as_boolean().clone()))
                .transpose()?;
            accumulator.update_batch(&arguments, &group_indices, filter.as_ref(), total_groups)?;
        }
        Ok(())
    }

    /// Merges another set's intermediate state into this one.
    pub fn merge(&mut self, partial: &Partial) -> Result<()> {
        if partial.keys.num_rows() == 0 {
            return Ok(());
        }
        let group_indices: Vec<usize> = partial.keys.iter().map(|key| self.group_of(key)).collect();
        let total_groups = self.len();
        for (accumulator, states) in self.accumulators.iter_mut().zip(&partial.states) {
            accumulator.merge_batch(states, &group_indices, total_groups)?;
        }
        Ok(())
    }

    /// The intermediate state, for merging elsewhere.
    pub fn into_partial(mut self) -> Result<Partial> {
        let states = self
            .accumulators
            .iter_mut()
            .map(|accumulator| Ok(accumulator.state(EmitTo::All)?))
            .collect::<Result<Vec<_>>>()?;
        Ok(Partial { keys: self.keys, states })
    }

    /// The intermediate state for a checkpoint, leaving these groups as
    /// they were (DataFusion's `state()` drains the accumulators, so the
    /// state is merged back into fresh ones, keeping the group order).
    pub fn snapshot(&mut self, converter: &RowConverter, aggregates: &[Arc<AggregateFunctionExpr>]) -> Result<Partial> {
        let taken = std::mem::replace(self, Groups::new(converter, aggregates)?);
        let partial = taken.into_partial()?;
        self.merge(&partial)?;
        Ok(partial)
    }

    /// Groups holding a checkpointed [`Partial`].
    pub fn restored(
        converter: &RowConverter,
        aggregates: &[Arc<AggregateFunctionExpr>],
        partial: &Partial,
    ) -> Result<Self> {
        let mut groups = Groups::new(converter, aggregates)?;
        groups.merge(partial)?;
        Ok(groups)
    }

    /// The final values: key columns, then one column per aggregate.
    pub fn finish(mut self, converter: &RowConverter) -> Result<(Vec<ArrayRef>, Vec<ArrayRef>)> {
        let keys = converter.convert_rows(self.keys.iter())?;
        let values = self
            .accumulators
            .iter_mut()
            .map(|accumulator| Ok(accumulator.evaluate(EmitTo::All)?))
            .collect::<Result<Vec<_>>>()?;
        Ok((keys, values))
    }
}
