//! Static tables: rows loaded from a file or added with `INSERT INTO`, the
//! lookup side of a stream-table join.
//!
//! A table is shared by the engine (which inserts) and every running query
//! that joins it (which reads). Each change makes a new immutable snapshot
//! with a higher version; a join checks the version before each batch, so
//! inserts are visible to running queries from their next batch. With a
//! `PRIMARY KEY`, a row replaces the row of the same key (upsert).

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, RwLock};

use datafusion::arrow::array::{RecordBatch, UInt32Array};
use datafusion::arrow::compute::{cast, concat_batches, take};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{RowConverter, SortField};

use crate::error::{Result, RuntimeError};
use crate::source::{Format, RecordDecoder};

/// The rows of a table at one version.
#[derive(Debug, Clone)]
pub struct TableSnapshot {
    pub version: u64,
    pub rows: RecordBatch,
}

#[derive(Debug)]
pub struct StaticTable {
    pub name: String,
    pub schema: SchemaRef,
    /// Column indices of the primary key (empty: none).
    pub primary_key: Vec<usize>,
    data: RwLock<TableSnapshot>,
}

impl StaticTable {
    pub fn new(name: impl Into<String>, schema: SchemaRef, primary_key: Vec<usize>) -> Self {
        let rows = RecordBatch::new_empty(schema.clone());
        Self { name: name.into(), schema, primary_key, data: RwLock::new(TableSnapshot { version: 0, rows }) }
    }

    pub fn snapshot(&self) -> TableSnapshot {
        self.data.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    pub fn version(&self) -> u64 {
        self.data.read().unwrap_or_else(|poisoned| poisoned.into_inner()).version
    }

    /// Adds `rows` (cast to the table's column types); returns how many.
    pub fn insert(&self, rows: &RecordBatch) -> Result<usize> {
        if rows.num_columns() != self.schema.fields().len() {
            return Err(RuntimeError::user(format!(
                "table {} has {} columns, the rows have {}",
                self.name,
                self.schema.fields().len(),
                rows.num_columns()
            )));
        }
        let mut columns = Vec::with_capacity(rows.num_columns());
        for (column, field) in rows.columns().iter().zip(self.schema.fields()) {
            let column =
                if column.data_type() == field.data_type() { column.clone() } else { cast(column, field.data_type())? };
            if !field.is_nullable() && column.null_count() > 0 {
                return Err(RuntimeError::user(format!("column {} of table {} is NOT NULL", field.name(), self.name)));
            }
            columns.push(column);
        }
        let added = RecordBatch::try_new(self.schema.clone(), columns)?;
        let count = added.num_rows();
        let mut data = self.data.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        let all = concat_batches(&self.schema, [&data.rows, &added])?;
        let rows = self.upsert(all)?;
        *data = TableSnapshot { version: data.version + 1, rows };
        Ok(count)
    }

    /// Keeps the last row of each primary key (where that row is).
    fn upsert(&self, rows: RecordBatch) -> Result<RecordBatch> {
        if self.primary_key.is_empty() {
            return Ok(rows);
        }
        let fields = self
            .primary_key
            .iter()
            .map(|index| SortField::new(self.schema.field(*index).data_type().clone()))
            .collect();
        let converter = RowConverter::new(fields)?;
        let key_columns: Vec<_> = self.primary_key.iter().map(|index| rows.column(*index).clone()).collect();
        let keys = converter.convert_columns(&key_columns)?;
        let mut seen = HashSet::new();
        let mut keep: Vec<u32> =
            (0..rows.num_rows()).rev().filter(|row| seen.insert(keys.row(*row))).map(|row| row as u32).collect();
        if keep.len() == rows.num_rows() {
            return Ok(rows);
        }
        keep.reverse();
        let indices = UInt32Array::from(keep);
        let columns =
            rows.columns().iter().map(|column| take(column, &indices, None)).collect::<Result<Vec<_>, _>>()?;
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }

    /// Loads every record of a file (`header` lines skipped for CSV);
    /// returns (rows loaded, malformed records skipped, the first problem).
    pub fn load_file(&self, path: &Path, format: Format) -> Result<(usize, usize, Option<String>)> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| RuntimeError::user(format!("cannot read {}: {error}", path.display())))?;
        let mut lines: Vec<String> = text.lines().filter(|line| !line.trim().is_empty()).map(String::from).collect();
        if matches!(format, Format::Csv { header: true, .. }) && !lines.is_empty() {
            lines.remove(0);
        }
        let decoded = RecordDecoder::new(self.schema.clone(), format).decode(&lines)?;
        let loaded = self.insert(&decoded.rows)?;
        Ok((loaded, decoded.malformed, decoded.problem))
    }
}

/// A table shared between the engine and the queries joining it.
pub type TableRef = Arc<StaticTable>;

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{AsArray, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};

    #[test]
    fn inserts_replace_rows_of_the_same_primary_key() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        let table = StaticTable::new("t", schema.clone(), vec![0]);
        let rows = |ids: Vec<i64>, names: Vec<&str>| {
            RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(Int64Array::from(ids)), Arc::new(StringArray::from(names))],
            )
            .unwrap()
        };
        table.insert(&rows(vec![1, 2], vec!["a", "b"])).unwrap();
        table.insert(&rows(vec![2, 3], vec!["B", "c"])).unwrap();
        let snapshot = table.snapshot();
        assert_eq!(snapshot.version, 2);
        let ids: Vec<i64> = snapshot.rows.column(0).as_primitive::<Int64Type>().values().to_vec();
        let names: Vec<&str> = snapshot.rows.column(1).as_string::<i32>().iter().map(Option::unwrap).collect();
        assert_eq!((ids, names), (vec![1, 2, 3], vec!["a", "B", "c"]));
    }
}
