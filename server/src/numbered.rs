//! A subscription's rows as one Arrow batch: `seq` (the row's number in
//! the query's output), `op` (`+`/`-`, for updating results) and the
//! query's columns. What pgwire's SUBSCRIBE and the websocket's Arrow
//! format send.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use sluice_runtime::StreamBatch;

/// The schema of a subscription's rows: `seq`, `op` (for updating
/// results) and the query's columns.
pub fn subscribe_schema(schema: &Schema, updating: bool) -> SchemaRef {
    let mut columns = vec![Arc::new(Field::new("seq", DataType::Int64, false))];
    if updating {
        columns.push(Arc::new(Field::new("op", DataType::Utf8, false)));
    }
    columns.extend(schema.fields().iter().cloned());
    Arc::new(Schema::new(columns))
}

/// `batch` numbered from `seq`, with its ops when `updating`.
pub fn subscribe_batch(
    schema: &SchemaRef,
    seq: u64,
    batch: &StreamBatch,
    updating: bool,
) -> Result<RecordBatch, ArrowError> {
    let rows = batch.num_rows();
    let mut columns: Vec<ArrayRef> =
        vec![Arc::new(Int64Array::from_iter_values((0..rows).map(|row| (seq + row as u64) as i64)))];
    if updating {
        let ops = (0..rows).map(|row| batch.ops.as_ref().map_or("+", |ops| ops[row].symbol()));
        columns.push(Arc::new(StringArray::from_iter_values(ops)));
    }
    columns.extend(batch.rows.columns().iter().cloned());
    RecordBatch::try_new(schema.clone(), columns)
}
