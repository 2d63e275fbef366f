//! Arrow batches and schemas as JSON, for the HTTP API and websocket frames.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Schema, TimeUnit};
use datafusion::arrow::json::WriterBuilder;
use datafusion::arrow::json::writer::JsonArray;
use serde_json::{Map, Value, json};

use crate::error::ApiError;

/// `[{"name", "type"}]`, with SQL type names.
pub fn columns(schema: &Schema) -> Value {
    Value::Array(
        schema
            .fields()
            .iter()
            .map(|field| json!({"name": field.name(), "type": sql_type(field.data_type())}))
            .collect(),
    )
}

pub fn sql_type(data_type: &DataType) -> String {
    match data_type {
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INT".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => "BIGINT UNSIGNED".into(),
        DataType::Float16 | DataType::Float32 => "REAL".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "VARCHAR".into(),
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        DataType::Timestamp(_, None) => "TIMESTAMP".into(),
        DataType::Timestamp(_, Some(_)) => "TIMESTAMP WITH TIME ZONE".into(),
        DataType::Duration(TimeUnit::Nanosecond) | DataType::Interval(_) => "INTERVAL".into(),
        DataType::Decimal128(precision, scale) => format!("DECIMAL({precision},{scale})"),
        DataType::List(field) | DataType::LargeList(field) => {
            format!("{}[]", sql_type(field.data_type()))
        }
        other => other.to_string(),
    }
}

/// Rows as JSON objects keyed by column name; nulls are explicit.
pub fn rows(batch: &RecordBatch) -> Result<Vec<Map<String, Value>>, ApiError> {
    if batch.num_rows() == 0 {
        return Ok(Vec::new());
    }
    let mut writer = WriterBuilder::new().with_explicit_nulls(true).build::<_, JsonArray>(Vec::new());
    writer.write(batch).map_err(|error| ApiError::internal(error.to_string()))?;
    writer.finish().map_err(|error| ApiError::internal(error.to_string()))?;
    let bytes = writer.into_inner();
    serde_json::from_slice(&bytes).map_err(|error| ApiError::internal(error.to_string()))
}

/// Rows as arrays of values in column order (for tabular results).
pub fn row_values(batch: &RecordBatch) -> Result<Vec<Value>, ApiError> {
    let names: Vec<String> = batch.schema().fields().iter().map(|field| field.name().clone()).collect();
    Ok(rows(batch)?
        .into_iter()
        .map(|mut row| Value::Array(names.iter().map(|name| row.remove(name).unwrap_or(Value::Null)).collect()))
        .collect())
}

/// A watermark (nanoseconds since the epoch) as an ISO-8601 UTC timestamp.
pub fn timestamp(nanos: i64) -> Value {
    let array = datafusion::arrow::array::TimestampNanosecondArray::from(vec![nanos]);
    match datafusion::arrow::util::display::array_value_to_string(&array, 0) {
        Ok(text) => Value::String(text),
        Err(_) => Value::Null,
    }
}
