//! Operator state at a checkpoint, as Arrow batches.
//!
//! An operator's [`snapshot`](crate::operator::Operator::snapshot) returns
//! an [`OperatorState`]: named Arrow batches (rows kept for a join, the
//! partial aggregates of a window, ...) plus a few named integers (a
//! watermark, a counter). [`OperatorState::encode`] writes them as Arrow IPC
//! streams one after the other, each framed by its name and length, so one
//! file holds an operator's whole state; [`OperatorState::decode`] reads it
//! back for [`restore`](crate::operator::Operator::restore).
//!
//! The helpers below turn the shapes operators keep into batches and back:
//! keys in arrow's row format become a `Binary` column (the row bytes parse
//! back with the same converter), a set of `GroupsAccumulator`s becomes its
//! intermediate state (the columns DataFusion's `state()` gives), and one
//! `Accumulator` per key becomes rows of its `state()` scalars, restored
//! with `merge_batch`.
//!
//! A batch put with [`put_stable`](OperatorState::put_stable) promises
//! that its contents never change while its name is in use (an operator
//! names an immutable block of state by a serial number): a checkpoint
//! may then point at the copy an earlier checkpoint wrote instead of
//! writing it again (see [`crate::checkpoint`]).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BinaryArray, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::row::{RowConverter, Rows};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Accumulator;

use crate::error::{Result, RuntimeError};

/// Magic at the start of an encoded operator state.
const MAGIC: &[u8; 8] = b"SLUICEOS";

/// The state of one operator: named batches and named integers.
#[derive(Debug, Clone, Default)]
pub struct OperatorState {
    batches: BTreeMap<String, RecordBatch>,
    values: BTreeMap<String, i64>,
    /// Batches whose contents never change under their name.
    stable: BTreeSet<String>,
}

/// Where one framed batch of an encoded state lies in its file.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub name: String,
    pub offset: u64,
    pub bytes: u64,
}

impl OperatorState {
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty() && self.values.is_empty()
    }

    pub fn put(&mut self, name: &str, batch: RecordBatch) {
        self.batches.insert(name.to_string(), batch);
    }

    /// Puts a batch that will never change while `name` is in use, so a
    /// checkpoint may reuse the copy an earlier one wrote.
    pub fn put_stable(&mut self, name: &str, batch: RecordBatch) {
        self.stable.insert(name.to_string());
        self.batches.insert(name.to_string(), batch);
    }

    pub fn is_stable(&self, name: &str) -> bool {
        self.stable.contains(name)
    }

    /// The names of the stable batches.
    pub fn stable_names(&self) -> impl Iterator<Item = &str> {
        self.stable.iter().map(String::as_str)
    }

    pub fn put_value(&mut self, name: &str, value: i64) {
        self.values.insert(name.to_string(), value);
    }

    /// The batch saved as `name`; an error if the checkpoint has none (it
    /// was written by a different plan).
    pub fn take(&mut self, name: &str) -> Result<RecordBatch> {
        self.batches.remove(name).ok_or_else(|| missing(name))
    }

    pub fn value(&self, name: &str) -> Result<i64> {
        self.values.get(name).copied().ok_or_else(|| missing(name))
    }

    /// Removes and returns the integer saved as `name`, if any.
    pub fn take_value(&mut self, name: &str) -> Option<i64> {
        self.values.remove(name)
    }

    /// Puts `inner`'s batches and integers under `prefix/` (the state of
    /// one part of an operator, such as a key group).
    pub fn nest(&mut self, prefix: &str, inner: OperatorState) {
        for name in inner.stable {
            self.stable.insert(format!("{prefix}/{name}"));
        }
        for (name, batch) in inner.batches {
            self.batches.insert(format!("{prefix}/{name}"), batch);
        }
        for (name, value) in inner.values {
            self.values.insert(format!("{prefix}/{name}"), value);
        }
    }

    /// Takes out what [`nest`](OperatorState::nest) put under `prefix/`.
    pub fn unnest(&mut self, prefix: &str) -> OperatorState {
        let start = format!("{prefix}/");
        let stable = self.stable.iter().filter_map(|name| name.strip_prefix(&start).map(str::to_string)).collect();
        self.stable.retain(|name| !name.starts_with(&start));
        OperatorState {
            batches: take_prefixed(&mut self.batches, &start),
            values: take_prefixed(&mut self.values, &start),
            stable,
        }
    }

    /// Removes and returns the batches named `prefix/...`, named by what
    /// follows the prefix, in name order.
    pub fn take_all(&mut self, prefix: &str) -> Vec<(String, RecordBatch)> {
        let inner = self.unnest(prefix);
        inner.batches.into_iter().collect()
    }

    /// Rows held, for reporting.
    pub fn num_rows(&self) -> usize {
        self.batches.values().map(RecordBatch::num_rows).sum()
    }

    pub fn encode(&self) -> Result<Vec<u8>> {
        Ok(self.encode_except(|_| false)?.0)
    }

    /// Encodes the integers and every batch but those `skip` names (stable
    /// batches an earlier checkpoint holds), and says where each stable
    /// batch written lies in the bytes.
    pub fn encode_except(&self, skip: impl Fn(&str) -> bool) -> Result<(Vec<u8>, Vec<Frame>)> {
        let mut out = MAGIC.to_vec();
        let mut frames = Vec::new();
        let values = values_batch(&self.values)?;
        let batches = self.batches.iter().filter(|(name, _)| !skip(name)).map(|(n, b)| (n.as_str(), b));
        for (name, batch) in std::iter::once(("", &values)).chain(batches) {
            let offset = out.len() as u64;
            let mut ipc = Vec::new();
            let mut writer = StreamWriter::try_new(&mut ipc, batch.schema_ref())?;
            writer.write(batch)?;
            writer.finish()?;
            drop(writer);
            out.extend_from_slice(&(name.len() as u32).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&(ipc.len() as u64).to_le_bytes());
            out.extend_from_slice(&ipc);
            if self.stable.contains(name) {
                frames.push(Frame { name: name.to_string(), offset, bytes: out.len() as u64 - offset });
            }
        }
        Ok((out, frames))
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let corrupt = || RuntimeError::internal("operator state is truncated or corrupt");
        let rest = bytes.strip_prefix(MAGIC.as_slice()).ok_or_else(corrupt)?;
        let mut state = OperatorState::default();
        state.decode_frames(rest, true)?;
        Ok(state)
    }

    /// Adds stable batches framed as [`encode_except`](Self::encode_except)
    /// frames them (a slice of an earlier checkpoint's file).
    pub fn decode_stable(&mut self, frames: &[u8]) -> Result<()> {
        self.decode_frames(frames, false)
    }

    /// Decodes frames; the first is the integers if `first`.
    fn decode_frames(&mut self, mut rest: &[u8], mut first: bool) -> Result<()> {
        let corrupt = || RuntimeError::internal("operator state is truncated or corrupt");
        while !rest.is_empty() {
            let name_len = u32::from_le_bytes(rest.get(..4).ok_or_else(corrupt)?.try_into().map_err(|_| corrupt())?);
            rest = &rest[4..];
            let name =
                std::str::from_utf8(rest.get(..name_len as usize).ok_or_else(corrupt)?).map_err(|_| corrupt())?;
            rest = &rest[name_len as usize..];
            let len = u64::from_le_bytes(rest.get(..8).ok_or_else(corrupt)?.try_into().map_err(|_| corrupt())?);
            rest = &rest[8..];
            let ipc = rest.get(..usize::try_from(len).map_err(|_| corrupt())?).ok_or_else(corrupt)?;
            rest = &rest[ipc.len()..];
            let reader = StreamReader::try_new(Cursor::new(ipc), None)?;
            let schema = reader.schema();
            let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
            let batch = datafusion::arrow::compute::concat_batches(&schema, &batches)?;
            if std::mem::take(&mut first) {
                for (index, field) in batch.schema().fields().iter().enumerate() {
                    let column = batch.column(index).as_primitive::<datafusion::arrow::datatypes::Int64Type>();
                    if !column.is_empty() {
                        self.values.insert(field.name().clone(), column.value(0));
                    }
                }
            } else {
                self.batches.insert(name.to_string(), batch);
            }
        }
        Ok(())
    }
}

fn missing(name: &str) -> RuntimeError {
    RuntimeError::internal(format!("the checkpoint has no {name:?} state for this operator"))
}

/// Removes the entries of `map` named `start...` and returns them named
/// without it.
fn take_prefixed<V>(map: &mut BTreeMap<String, V>, start: &str) -> BTreeMap<String, V> {
    let mut rest = map.split_off(start);
    let after: Vec<String> = rest.keys().skip_while(|name| name.starts_with(start)).take(1).cloned().collect();
    if let Some(first_after) = after.first() {
        let mut tail = rest.split_off(first_after);
        map.append(&mut tail);
    }
    rest.into_iter().map(|(name, value)| (name[start.len()..].to_string(), value)).collect()
}

fn values_batch(values: &BTreeMap<String, i64>) -> Result<RecordBatch> {
    let fields: Vec<Field> = values.keys().map(|name| Field::new(name, DataType::Int64, false)).collect();
    let columns: Vec<ArrayRef> =
        values.values().map(|value| Arc::new(Int64Array::from(vec![*value])) as ArrayRef).collect();
    let options = datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(1));
    Ok(RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), columns, &options)?)
}

/// A batch of the given named columns (all of one length).
pub fn batch(columns: Vec<(&str, ArrayRef)>) -> Result<RecordBatch> {
    let rows = columns.first().map_or(0, |(_, column)| column.len());
    let fields: Vec<Field> =
        columns.iter().map(|(name, column)| Field::new(*name, column.data_type().clone(), true)).collect();
    let options = datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(rows));
    let columns = columns.into_iter().map(|(_, column)| column).collect();
    Ok(RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), columns, &options)?)
}

/// Row-format keys as a `Binary` column.
pub fn rows_column<'a>(rows: impl IntoIterator<Item = &'a [u8]>) -> ArrayRef {
    Arc::new(BinaryArray::from_iter_values(rows))
}

/// A `Binary` column of row-format keys back as `Rows` of `converter`.
pub fn rows_from_column(converter: &RowConverter, column: &ArrayRef) -> Result<Rows> {
    let column = column.as_binary_opt::<i32>().ok_or_else(|| RuntimeError::internal("keys are not binary"))?;
    let parser = converter.parser();
    let mut rows = converter.empty_rows(column.len(), column.values().len());
    for bytes in column.iter() {
        rows.push(parser.parse(bytes.unwrap_or_default()));
    }
    Ok(rows)
}

/// The named integer column `name` of `batch`.
pub fn i64_column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a Int64Array> {
    batch
        .column_by_name(name)
        .and_then(|column| column.as_primitive_opt::<datafusion::arrow::datatypes::Int64Type>())
        .ok_or_else(|| missing(name))
}

/// The binary column `name` of `batch`.
pub fn binary_column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a BinaryArray> {
    batch.column_by_name(name).and_then(|column| column.as_binary_opt::<i32>()).ok_or_else(|| missing(name))
}

/// The `state()` of one `Accumulator` per row, as columns `{prefix}{i}`
/// (one per state field), appended to `columns`.
pub fn accumulator_states(
    accumulators: &mut [&mut dyn Accumulator],
    prefix: &str,
    columns: &mut Vec<(String, ArrayRef)>,
) -> Result<()> {
    let states = accumulators.iter_mut().map(|accumulator| Ok(accumulator.state()?)).collect::<Result<Vec<_>>>()?;
    let fields = states.first().map_or(0, Vec::len);
    for field in 0..fields {
        let values = states.iter().map(|state| state[field].clone());
        columns.push((format!("{prefix}{field}"), ScalarValue::iter_to_array(values)?));
    }
    Ok(())
}

/// Merges row `row` of the state columns `{prefix}{i}` into `accumulator`.
pub fn merge_accumulator_state(
    accumulator: &mut dyn Accumulator,
    batch: &RecordBatch,
    prefix: &str,
    row: usize,
) -> Result<()> {
    let mut states = Vec::new();
    while let Some(column) = batch.column_by_name(&format!("{prefix}{}", states.len())) {
        states.push(column.slice(row, 1));
    }
    Ok(accumulator.merge_batch(&states)?)
}

/// A batch of named columns whose names are owned strings.
pub fn batch_of(columns: Vec<(String, ArrayRef)>) -> Result<RecordBatch> {
    batch(columns.iter().map(|(name, column)| (name.as_str(), column.clone())).collect())
}

/// Saves batches keyed by a time (a window end, a pane start) as the batch
/// `name`, listing the times, and one batch `name/i` each. Separate batches
/// because their schemas may differ: the partial of an empty set of groups
/// has no state columns.
pub fn put_indexed(state: &mut OperatorState, name: &str, entries: Vec<(i64, RecordBatch)>) -> Result<()> {
    state.put(name, i64_batch("time", entries.iter().map(|(time, _)| *time))?);
    for (position, (_, batch)) in entries.into_iter().enumerate() {
        state.put(&format!("{name}/{position}"), batch);
    }
    Ok(())
}

/// Reads [`put_indexed`]'s batches back, in the order they were saved.
pub fn take_indexed(state: &mut OperatorState, name: &str) -> Result<Vec<(i64, RecordBatch)>> {
    let index = state.take(name)?;
    let times = i64_column(&index, "time")?;
    times
        .values()
        .iter()
        .enumerate()
        .map(|(position, time)| Ok((*time, state.take(&format!("{name}/{position}"))?)))
        .collect()
}

/// A batch of one `Int64` column.
pub fn i64_batch(name: &str, values: impl IntoIterator<Item = i64>) -> Result<RecordBatch> {
    batch(vec![(name, Arc::new(Int64Array::from_iter_values(values)) as ArrayRef)])
}

/// A checkpointed output batch with the operator's own output schema (as
/// read back it carries the schema it was written with).
pub fn with_schema(schema: &SchemaRef, batch: RecordBatch) -> Result<RecordBatch> {
    Ok(RecordBatch::try_new(schema.clone(), batch.columns().to_vec())?)
}

/// CRC-32 (IEEE) of `bytes`, to detect a corrupt checkpoint file.
pub fn checksum(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::StringArray;

    use super::*;

    #[test]
    fn state_round_trips_batches_and_values() {
        let mut state = OperatorState::default();
        state.put_value("watermark", -5);
        let rows = batch(vec![
            ("key", rows_column([b"a".as_slice(), b"bc".as_slice()])),
            ("name", Arc::new(StringArray::from(vec![Some("x"), None])) as ArrayRef),
        ])
        .unwrap();
        state.put("rows", rows.clone());
        state.put("empty", batch(vec![("time", Arc::new(Int64Array::from(Vec::<i64>::new())) as ArrayRef)]).unwrap());
        let bytes = state.encode().unwrap();
        let mut back = OperatorState::decode(&bytes).unwrap();
        assert_eq!(back.value("watermark").unwrap(), -5);
        assert_eq!(back.take("rows").unwrap(), rows);
        assert_eq!(back.take("empty").unwrap().num_rows(), 0);
        assert!(back.take("rows").is_err());
        assert!(OperatorState::decode(&bytes[..bytes.len() - 3]).is_err());
        assert!(OperatorState::decode(b"nonsense").is_err());
    }

    #[test]
    fn nested_states_come_back_out_whole_and_alone() {
        let mut whole = OperatorState::default();
        for part in [1, 10, 2] {
            let mut inner = OperatorState::default();
            inner.put_value("n", part);
            inner.put("rows", batch(vec![("x", Arc::new(Int64Array::from(vec![part])) as ArrayRef)]).unwrap());
            whole.nest(&part.to_string(), inner);
        }
        let mut one = whole.unnest("1");
        assert_eq!(one.take_value("n"), Some(1));
        assert_eq!(one.take("rows").unwrap().num_rows(), 1);
        assert!(one.is_empty());
        // "10/..." sorts right after "1/...": it stays.
        assert_eq!(whole.unnest("10").value("n").unwrap(), 10);
        assert_eq!(whole.unnest("2").value("n").unwrap(), 2);
        assert!(whole.is_empty());
    }
}
