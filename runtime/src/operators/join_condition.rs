//! What every stream join shares: the join kinds and sides, the ON
//! condition ([`JoinCondition`]: equality keys and the residual filter),
//! and the helpers that evaluate it (keys into the row format, the filter
//! into a mask) and assemble joined batches. Used by the stream join
//! (interval and unbounded), the lookup join and the temporal join.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, UInt32Array, new_null_array};
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::physical_expr::PhysicalExpr;

use crate::error::{Result, RuntimeError};
use crate::operators::groups::output_batch;

/// Which rows without a partner a join keeps (with NULLs for the other side).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    Inner,
    Left,
    Right,
    Full,
}

impl JoinKind {
    pub fn keeps_unmatched(self, side: Side) -> bool {
        matches!((self, side), (JoinKind::Full, _) | (JoinKind::Left, Side::Left) | (JoinKind::Right, Side::Right))
    }
}

/// The two inputs of a join: port 0 is the left, port 1 the right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Left,
    Right,
}

impl Side {
    pub fn of_port(port: usize) -> Side {
        if port == 0 { Side::Left } else { Side::Right }
    }

    pub fn other(self) -> Side {
        match self {
            Side::Left => Side::Right,
            Side::Right => Side::Left,
        }
    }
}

/// A join's ON condition as the runtime evaluates it: equality keys, pairwise
/// `left_keys[i] = right_keys[i]` (each over its own side's schema), and the
/// rest of the condition over the output schema (left ++ right).
#[derive(Debug, Clone)]
pub struct JoinCondition {
    pub left_keys: Vec<Arc<dyn PhysicalExpr>>,
    pub right_keys: Vec<Arc<dyn PhysicalExpr>>,
    pub filter: Option<Arc<dyn PhysicalExpr>>,
}

impl JoinCondition {
    /// The keys over `side`'s schema.
    pub fn keys(&self, side: Side) -> &[Arc<dyn PhysicalExpr>] {
        match side {
            Side::Left => &self.left_keys,
            Side::Right => &self.right_keys,
        }
    }

    /// `true` where the residual filter holds on the joined `batch`.
    pub(crate) fn filter_mask(&self, batch: &RecordBatch) -> Result<Vec<bool>> {
        filter_mask(self.filter.as_ref(), batch)
    }
}

/// Evaluates join keys into the row format; both sides use one converter
/// so equal keys have equal bytes.
pub(crate) struct JoinKeys {
    converter: RowConverter,
    types: Vec<DataType>,
}

impl JoinKeys {
    pub fn new(exprs: &[Arc<dyn PhysicalExpr>], schema: &SchemaRef) -> Result<Self> {
        let types = exprs.iter().map(|expr| Ok(expr.data_type(schema)?)).collect::<Result<Vec<_>>>()?;
        let converter = RowConverter::new(types.iter().map(|data_type| SortField::new(data_type.clone())).collect())?;
        Ok(Self { converter, types })
    }

    /// The key of each row, and whether it can match at all (SQL: a NULL
    /// key equals nothing).
    pub fn rows(&self, exprs: &[Arc<dyn PhysicalExpr>], batch: &RecordBatch) -> Result<(Rows, Vec<bool>)> {
        let mut columns = Vec::with_capacity(exprs.len());
        for (expr, data_type) in exprs.iter().zip(&self.types) {
            let column = expr.evaluate(batch)?.into_array(batch.num_rows())?;
            columns.push(if column.data_type() == data_type { column } else { cast(&column, data_type)? });
        }
        let valid = (0..batch.num_rows()).map(|row| columns.iter().all(|column| column.is_valid(row))).collect();
        Ok((self.converter.convert_columns(&columns)?, valid))
    }
}

/// Evaluates a join's residual condition: `true` where it holds.
pub(crate) fn filter_mask(filter: Option<&Arc<dyn PhysicalExpr>>, batch: &RecordBatch) -> Result<Vec<bool>> {
    let Some(filter) = filter else { return Ok(vec![true; batch.num_rows()]) };
    let mask = filter.evaluate(batch)?.into_array(batch.num_rows())?;
    let mask = mask
        .as_any()
        .downcast_ref::<BooleanArray>()
        .ok_or_else(|| RuntimeError::internal("a join condition did not evaluate to booleans"))?;
    Ok((0..mask.len()).map(|row| mask.is_valid(row) && mask.value(row)).collect())
}

/// `columns` picked at `indices`; `None` gives NULL.
pub(crate) fn take_columns(columns: &[ArrayRef], indices: &[Option<u32>]) -> Result<Vec<ArrayRef>> {
    let indices = UInt32Array::from(indices.to_vec());
    columns.iter().map(|column| Ok(take(column.as_ref(), &indices, None)?)).collect()
}

/// NULL columns of `schema`'s types.
pub(crate) fn null_columns(schema: &SchemaRef, rows: usize) -> Vec<ArrayRef> {
    schema.fields().iter().map(|field| new_null_array(field.data_type(), rows)).collect()
}

/// A joined batch from the columns of each side.
pub(crate) fn joined(schema: &SchemaRef, left: Vec<ArrayRef>, right: Vec<ArrayRef>) -> Result<RecordBatch> {
    let mut columns = left;
    columns.extend(right);
    output_batch(schema, columns)
}

/// A row-format converter for whole rows of `schema`.
pub(crate) fn row_converter(schema: &SchemaRef) -> Result<RowConverter> {
    let fields = schema.fields().iter().map(|field| SortField::new(field.data_type().clone())).collect();
    Ok(RowConverter::new(fields)?)
}

/// `schema` with every column nullable (for candidate pairs, where a side
/// may be missing).
pub(crate) fn nullable(schema: &SchemaRef) -> SchemaRef {
    let fields = schema.fields().iter().map(|field| field.as_ref().clone().with_nullable(true));
    Arc::new(datafusion::arrow::datatypes::Schema::new(fields.collect::<Vec<_>>()))
}
