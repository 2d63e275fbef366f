//! Arrow results as Postgres rows: field descriptions and data rows (text
//! or binary, by arrow-pg), COPY text lines, and the consolidation of a
//! changelog into its final rows.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use arrow_pg::datatypes::arrow_schema_to_pg_fields;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::{concat_batches, filter_record_batch};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};
use pgwire::api::portal::Format;
use pgwire::api::results::{CopyEncoder, CopyTextOptions, FieldInfo};
use pgwire::error::PgWireResult;
use pgwire::messages::copy::CopyData;
use pgwire::messages::data::DataRow;
use sluice_runtime::{Op, StreamBatch};

/// Postgres field descriptions of `schema` in `format`.
pub fn fields(schema: &Schema, format: &Format) -> PgWireResult<Arc<Vec<FieldInfo>>> {
    arrow_schema_to_pg_fields(schema, format, None).map(Arc::new)
}

/// The data rows of `batch`.
pub fn data_rows(fields: &Arc<Vec<FieldInfo>>, batch: RecordBatch) -> Vec<PgWireResult<DataRow>> {
    arrow_pg::encode_recordbatch(fields.clone(), batch).collect()
}

/// The COPY text lines of `batch` (tab-separated, `\N` for NULL).
pub fn copy_lines(fields: &Arc<Vec<FieldInfo>>, batch: &RecordBatch) -> PgWireResult<Vec<CopyData>> {
    let mut encoder = CopyEncoder::new_text(fields.clone(), CopyTextOptions::default());
    let schema = batch.schema();
    let mut lines = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        for (index, field) in fields.iter().enumerate() {
            arrow_pg::encoder::encode_value(&mut encoder, batch.column(index), row, schema.field(index), field)?;
        }
        lines.push(encoder.take_copy());
    }
    Ok(lines)
}

/// The rows a changelog leaves: every deletion cancels the oldest equal
/// insertion before it. Rows keep the order they were inserted in.
pub fn consolidate(
    schema: &SchemaRef,
    batches: &[StreamBatch],
) -> Result<RecordBatch, datafusion::arrow::error::ArrowError> {
    let rows: Vec<RecordBatch> = batches.iter().map(|batch| batch.rows.clone()).collect();
    let all = concat_batches(schema, &rows)?;
    if batches.iter().all(|batch| batch.ops.is_none()) {
        return Ok(all);
    }
    let ops: Vec<Op> = batches
        .iter()
        .flat_map(|batch| (0..batch.num_rows()).map(|row| batch.ops.as_ref().map_or(Op::Insert, |ops| ops[row])))
        .collect();
    let converter =
        RowConverter::new(schema.fields().iter().map(|field| SortField::new(field.data_type().clone())).collect())?;
    let keys = converter.convert_columns(all.columns())?;
    let mut live: HashMap<_, VecDeque<usize>> = HashMap::new();
    let mut keep = vec![false; all.num_rows()];
    for (row, op) in ops.iter().enumerate() {
        let key = keys.row(row);
        match op {
            Op::Insert => {
                keep[row] = true;
                live.entry(key).or_default().push_back(row);
            }
            Op::Delete => {
                if let Some(inserted) = live.get_mut(&key).and_then(|inserted| inserted.pop_front()) {
                    keep[inserted] = false;
                }
            }
        }
    }
    filter_record_batch(&all, &keep.into_iter().collect())
}
