//! A materialized view's current result: its changelog applied.
//!
//! Rows are kept in Arrow's row format (so any column types compare and
//! hash as bytes) with how many times each is in the result: an insert
//! adds one, a delete takes one away, and a row at zero is gone. The
//! result comes back out as one batch, in row-format order (deterministic).

use std::collections::BTreeMap;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{OwnedRow, RowConverter, SortField};

use crate::error::{Result, RuntimeError};
use crate::message::{Op, StreamBatch};

pub struct CurrentResult {
    schema: SchemaRef,
    converter: RowConverter,
    rows: BTreeMap<OwnedRow, u64>,
    /// Rows in the result, counting repeats.
    len: u64,
}

impl CurrentResult {
    pub fn new(schema: SchemaRef) -> Result<Self> {
        let fields = schema.fields().iter().map(|field| SortField::new(field.data_type().clone())).collect();
        Ok(Self { converter: RowConverter::new(fields)?, schema, rows: BTreeMap::new(), len: 0 })
    }

    /// Applies a batch of the changelog.
    pub fn apply(&mut self, batch: &StreamBatch) -> Result<()> {
        let rows = self.converter.convert_columns(batch.rows.columns())?;
        for (index, row) in rows.iter().enumerate() {
            let op = batch.ops.as_ref().map_or(Op::Insert, |ops| ops[index]);
            match op {
                Op::Insert => {
                    *self.rows.entry(row.owned()).or_insert(0) += 1;
                    self.len += 1;
                }
                Op::Delete => {
                    let key = row.owned();
                    let Some(count) = self.rows.get_mut(&key) else {
                        return Err(RuntimeError::internal(
                            "a materialized view was told to delete a row it does not hold",
                        ));
                    };
                    *count -= 1;
                    self.len -= 1;
                    if *count == 0 {
                        self.rows.remove(&key);
                    }
                }
            }
        }
        Ok(())
    }

    /// Rows in the result, counting repeats.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The result as one batch.
    pub fn batch(&self) -> Result<RecordBatch> {
        let repeated = self.rows.iter().flat_map(|(row, count)| std::iter::repeat_n(row.row(), *count as usize));
        let columns = self.converter.convert_rows(repeated)?;
        if columns.is_empty() {
            return Ok(RecordBatch::new_empty(self.schema.clone()));
        }
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }

    /// Starts again from a batch [`batch`](Self::batch) gave (a
    /// checkpoint's).
    pub fn restore(&mut self, batch: &RecordBatch) -> Result<()> {
        self.rows.clear();
        self.len = 0;
        self.apply(&StreamBatch::inserts(batch.clone()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{AsArray, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};

    use super::*;

    fn batch(schema: &SchemaRef, keys: &[&str], counts: &[i64], ops: Option<Vec<Op>>) -> StreamBatch {
        let rows = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(StringArray::from(keys.to_vec())), Arc::new(Int64Array::from(counts.to_vec()))],
        )
        .unwrap();
        StreamBatch { rows, ops }
    }

    #[test]
    fn a_changelog_applied_leaves_the_current_rows() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("n", DataType::Int64, false),
        ]));
        let mut current = CurrentResult::new(schema.clone()).unwrap();
        current.apply(&batch(&schema, &["a", "b"], &[1, 1], None)).unwrap();
        current
            .apply(&batch(&schema, &["a", "a", "b"], &[1, 2, 1], Some(vec![Op::Delete, Op::Insert, Op::Delete])))
            .unwrap();
        let result = current.batch().unwrap();
        assert_eq!(result.num_rows(), 1);
        assert_eq!(result.column(0).as_string::<i32>().value(0), "a");
        assert_eq!(result.column(1).as_primitive::<Int64Type>().value(0), 2);
        let mut restored = CurrentResult::new(schema.clone()).unwrap();
        restored.restore(&result).unwrap();
        assert_eq!(restored.batch().unwrap(), result);
        let error = restored.apply(&batch(&schema, &["z"], &[0], Some(vec![Op::Delete]))).unwrap_err();
        assert!(error.to_string().contains("does not hold"));
    }
}
