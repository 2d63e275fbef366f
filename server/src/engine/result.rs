//! What a statement returns, as typed data for any front end to render:
//! HTTP and websockets as JSON, the REPL as tables, pgwire as row
//! descriptions and data rows.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;

use crate::error::EngineError;

/// What one statement returned.
#[derive(Debug, Clone)]
pub enum StatementResult {
    /// DDL, INSERT and SET: the command tag (`CREATE STREAM`, `INSERT 3`,
    /// `SET`) and the object it named.
    Status { tag: String, name: Option<String> },
    /// A finite result (SHOW, DESCRIBE, EXPLAIN).
    Rows { schema: SchemaRef, batches: Vec<RecordBatch> },
    /// A continuous query was started; its rows come from its output.
    Query { id: String, schema: SchemaRef, warnings: Vec<String> },
}

impl StatementResult {
    pub fn status(tag: impl Into<String>, name: impl Into<String>) -> Self {
        StatementResult::Status { tag: tag.into(), name: Some(name.into()) }
    }

    /// One batch of the named columns.
    pub fn rows(columns: Vec<(&str, ArrayRef)>) -> Result<Self, EngineError> {
        let batch = RecordBatch::try_from_iter(columns).map_err(|error| EngineError::internal(error.to_string()))?;
        Ok(StatementResult::Rows { schema: batch.schema(), batches: vec![batch] })
    }
}

/// A string column.
pub(crate) fn strings<S: AsRef<str>>(values: impl IntoIterator<Item = S>) -> ArrayRef {
    use datafusion::arrow::array::StringArray;
    Arc::new(values.into_iter().map(|value| Some(value.as_ref().to_string())).collect::<StringArray>())
}

/// A string column with nulls.
pub(crate) fn optional_strings(values: impl IntoIterator<Item = Option<String>>) -> ArrayRef {
    use datafusion::arrow::array::StringArray;
    Arc::new(values.into_iter().collect::<StringArray>())
}

/// A column of counts.
pub(crate) fn counts(values: impl IntoIterator<Item = u64>) -> ArrayRef {
    use datafusion::arrow::array::UInt64Array;
    Arc::new(values.into_iter().map(Some).collect::<UInt64Array>())
}

/// A boolean column.
pub(crate) fn booleans(values: impl IntoIterator<Item = bool>) -> ArrayRef {
    use datafusion::arrow::array::BooleanArray;
    Arc::new(values.into_iter().map(Some).collect::<BooleanArray>())
}
