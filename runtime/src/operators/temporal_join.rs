//! Temporal join against a versioned table fed by a stream (Flink's
//! `JOIN rates FOR SYSTEM_TIME AS OF o.ts AS r ON o.cur = r.cur`).
//!
//! # Algorithm
//!
//! The right input is the table's changelog: each row is a new version of
//! its primary key, valid from its event time. Versions are kept per key in
//! time order. With event time, a left row waits until the watermark passes
//! its time — then every version up to that time has arrived — and is
//! joined with the latest version at or before its time; rows leave in time
//! order. Versions older than the one valid at the watermark can never be
//! chosen again and are dropped. With processing time (`AS OF o.pt` on a
//! `PROCTIME()` column) each left row is joined at once with the latest
//! version, and only that version is kept.
//!
//! ```text
//!   rates ─► versions[cur] = {09:00 → 1.10, 09:05 → 1.12}
//!   order (09:03, EUR) ─► waits for watermark > 09:03 ─► joins 1.10
//! ```
//!
//! A checkpoint saves the versions (key bytes, time, row bytes), the
//! pending left rows with their (time, arrival) order, the arrival counter
//! and the watermark: the pending rows leave in that order, and the
//! watermark decides which versions a late-arriving version prunes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{OwnedRow, RowConverter};
use datafusion::physical_expr::PhysicalExpr;

use crate::error::{Result, RuntimeError};
use crate::message::{Message, StreamBatch, Watermark};
use crate::metrics::QueryMetrics;
use crate::metrics::StateSize;
use crate::operator::Operator;
use crate::operators::join_condition::{
    JoinCondition, JoinKeys, JoinKind, Side, filter_mask, joined, null_columns, nullable, row_converter, take_columns,
};
use crate::state::{OperatorState, batch, binary_column, i64_column, rows_column, rows_from_column};
use crate::time::event_times;

/// Checkpoint names.
const VERSIONS: &str = "versions";
const PENDING: &str = "pending";

#[derive(Debug, Clone)]
pub struct TemporalJoinSpec {
    /// `Inner` or `Left`.
    pub kind: JoinKind,
    pub left_schema: SchemaRef,
    pub right_schema: SchemaRef,
    /// The ON condition; its `right_keys` are the table's primary key
    /// columns, pairwise equal to `left_keys`.
    pub condition: JoinCondition,
    /// The left column whose time picks the version; `None`: processing
    /// time, the latest version.
    pub left_time: Option<usize>,
    /// The table's event-time column: when a version becomes valid.
    pub right_time: usize,
    /// The table's columns the output carries, in order; `None` is the
    /// time the version was looked up at (the left's `as_of_column`).
    pub right_output: Vec<Option<usize>>,
    pub as_of_column: usize,
    /// Conditions on the table's columns alone (as `right_output` lays
    /// them out, with that schema), checked on the version found.
    pub right_filter: Option<(Arc<dyn PhysicalExpr>, SchemaRef)>,
    pub output_schema: SchemaRef,
}

pub struct TemporalJoin {
    spec: TemporalJoinSpec,
    keys: JoinKeys,
    left_rows: RowConverter,
    right_rows: RowConverter,
    versions: HashMap<Box<[u8]>, BTreeMap<i64, OwnedRow>>,
    /// Left rows waiting for the watermark, by (time, arrival).
    pending: BTreeMap<(i64, u64), OwnedRow>,
    arrivals: u64,
    watermark: Watermark,
    metrics: Arc<QueryMetrics>,
    reported_rows: usize,
    /// The output schema with every column nullable: candidates include
    /// left rows without a version.
    candidate_schema: SchemaRef,
    /// `spec.right_filter` over a nullable schema, for the same reason.
    right_filter: Option<(Arc<dyn PhysicalExpr>, SchemaRef)>,
}

impl TemporalJoin {
    pub fn new(spec: TemporalJoinSpec, metrics: Arc<QueryMetrics>) -> Result<Self> {
        let right_filter = spec.right_filter.as_ref().map(|(filter, schema)| (filter.clone(), nullable(schema)));
        Ok(Self {
            candidate_schema: nullable(&spec.output_schema),
            right_filter,
            keys: JoinKeys::new(&spec.condition.left_keys, &spec.left_schema)?,
            left_rows: row_converter(&spec.left_schema)?,
            right_rows: row_converter(&spec.right_schema)?,
            spec,
            versions: HashMap::new(),
            pending: BTreeMap::new(),
            arrivals: 0,
            watermark: Watermark::MIN,
            metrics,
            reported_rows: 0,
        })
    }

    fn report_state(&mut self) {
        let rows = self.pending.len() + self.versions.values().map(BTreeMap::len).sum::<usize>();
        self.metrics.move_state_rows(self.reported_rows, rows);
        self.reported_rows = rows;
    }

    /// Drops the versions of `versions` older than the one valid at `watermark`.
    fn prune(versions: &mut BTreeMap<i64, OwnedRow>, watermark: Watermark) {
        if let Some(valid) = versions.range(..=watermark.0).next_back().map(|(time, _)| *time) {
            let newer = versions.split_off(&valid);
            *versions = newer;
        }
    }

    fn add_versions(&mut self, rows: &RecordBatch) -> Result<()> {
        let (keys, valid) = self.keys.rows(&self.spec.condition.right_keys, rows)?;
        let times = event_times(rows.column(self.spec.right_time))?;
        let full = self.right_rows.convert_columns(rows.columns())?;
        let processing_time = self.spec.left_time.is_none();
        for row in (0..rows.num_rows()).filter(|row| valid[*row]) {
            let versions = self.versions.entry(Box::from(keys.row(row).as_ref())).or_default();
            if processing_time {
                versions.clear();
                versions.insert(0, full.row(row).owned());
            } else {
                versions.insert(times[row].unwrap_or(i64::MIN), full.row(row).owned());
                Self::prune(versions, self.watermark);
            }
        }
        Ok(())
    }

    /// Joins left rows, each at its time (`None`: the latest version).
    fn join(&self, left: &RecordBatch, times: &[Option<i64>], out: &mut Vec<Message>) -> Result<()> {
        let (keys, valid) = self.keys.rows(&self.spec.condition.left_keys, left)?;
        let mut found = Vec::new();
        let mut picks: Vec<Option<u32>> = Vec::with_capacity(left.num_rows());
        for row in 0..left.num_rows() {
            let version = valid[row].then(|| self.versions.get(keys.row(row).as_ref())).flatten().and_then(
                |versions| match times[row] {
                    Some(time) => versions.range(..=time).next_back().map(|(_, version)| version),
                    None => versions.values().next_back(),
                },
            );
            picks.push(version.map(|version| {
                found.push(version.row());
                (found.len() - 1) as u32
            }));
        }
        let versions = if found.is_empty() {
            null_columns(&self.spec.right_schema, 0)
        } else {
            self.right_rows.convert_rows(found)?
        };
        let left_picks: Vec<Option<u32>> =
            picks.iter().enumerate().map(|(row, pick)| pick.map(|_| row as u32)).collect();
        let mut right: Vec<ArrayRef> = Vec::with_capacity(self.spec.right_output.len());
        for column in &self.spec.right_output {
            right.push(match column {
                Some(column) => take_columns(&versions[*column..=*column], &picks)?.remove(0),
                None => take_columns(&left.columns()[self.spec.as_of_column..=self.spec.as_of_column], &left_picks)?
                    .remove(0),
            });
        }
        let mut passing_right = vec![true; left.num_rows()];
        if let Some((filter, schema)) = &self.right_filter {
            let rows = RecordBatch::try_new(schema.clone(), right.clone())?;
            passing_right = filter_mask(Some(filter), &rows)?;
        }
        let candidates = joined(&self.candidate_schema, left.columns().to_vec(), right)?;
        let mut passing = self.spec.condition.filter_mask(&candidates)?;
        for (passes, right_passes) in passing.iter_mut().zip(passing_right) {
            *passes &= right_passes;
        }
        let outer = self.spec.kind.keeps_unmatched(Side::Left);
        let mut keep = Vec::new();
        let mut right_picks = Vec::new();
        for row in 0..left.num_rows() {
            let matched = picks[row].is_some() && passing[row];
            if matched || outer {
                keep.push(Some(row as u32));
                right_picks.push(matched.then_some(row as u32));
            }
        }
        if keep.is_empty() {
            return Ok(());
        }
        let left_columns = take_columns(left.columns(), &keep)?;
        let right_columns = take_columns(&candidates.columns()[left.num_columns()..], &right_picks)?;
        let rows = joined(&self.spec.output_schema, left_columns, right_columns)?;
        out.push(Message::Batch(StreamBatch::inserts(rows)));
        Ok(())
    }
}

impl Operator for TemporalJoin {
    fn state_size(&self) -> Option<StateSize> {
        let versions = self.versions.values().flat_map(BTreeMap::values);
        let (rows, bytes) = versions
            .chain(self.pending.values())
            .fold((0, 0), |(rows, bytes), row| (rows + 1, bytes + row.row().as_ref().len() + 16));
        let key_bytes: usize = self.versions.keys().map(|key| key.len()).sum();
        Some(StateSize { rows: rows as u64, bytes: (bytes + key_bytes) as u64 })
    }

    fn on_batch(&mut self, port: usize, batch: StreamBatch, out: &mut Vec<Message>) -> Result<()> {
        let rows = &batch.rows;
        if rows.num_rows() == 0 {
            return Ok(());
        }
        if port == 1 {
            self.add_versions(rows)?;
        } else if let Some(time_column) = self.spec.left_time {
            let times = event_times(rows.column(time_column))?;
            let full = self.left_rows.convert_columns(rows.columns())?;
            for (row, time) in times.iter().enumerate() {
                self.arrivals += 1;
                self.pending.insert((time.unwrap_or(i64::MIN), self.arrivals), full.row(row).owned());
            }
        } else {
            self.join(rows, &vec![None; rows.num_rows()], out)?;
        }
        self.report_state();
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Watermark, out: &mut Vec<Message>) -> Result<()> {
        self.watermark = watermark;
        if self.spec.left_time.is_some() {
            // Rows before the watermark: every version they can see is here.
            let later =
                if watermark == Watermark::MAX { BTreeMap::new() } else { self.pending.split_off(&(watermark.0, 0)) };
            let ready = std::mem::replace(&mut self.pending, later);
            if !ready.is_empty() {
                let times: Vec<Option<i64>> = ready.keys().map(|(time, _)| Some(*time)).collect();
                let columns = self.left_rows.convert_rows(ready.values().map(|row| row.row()))?;
                let left = RecordBatch::try_new(self.spec.left_schema.clone(), columns)?;
                self.join(&left, &times, out)?;
            }
            for versions in self.versions.values_mut() {
                Self::prune(versions, watermark);
            }
        }
        self.report_state();
        out.push(Message::Watermark(watermark));
        Ok(())
    }

    /// `versions`: `key`, `time`, `row` (keys sorted, each key's versions
    /// in time order); `pending`: `time`, `arrival`, `row` in the order
    /// they will be joined.
    fn snapshot(&mut self) -> Result<OperatorState> {
        let mut keys: Vec<_> = self.versions.iter().collect();
        keys.sort_by_key(|(left, _)| *left);
        // Arrow's builders want iterators of known length.
        let versions: Vec<(&[u8], i64, &OwnedRow)> = keys
            .iter()
            .flat_map(|(key, versions)| versions.iter().map(move |(time, row)| (key.as_ref(), *time, row)))
            .collect();
        let mut state = OperatorState::default();
        state.put(
            VERSIONS,
            batch(vec![
                ("key", rows_column(versions.iter().map(|(key, _, _)| *key))),
                ("time", Arc::new(Int64Array::from_iter_values(versions.iter().map(|(_, time, _)| *time)))),
                ("row", rows_column(versions.iter().map(|(_, _, row)| row.row().data()))),
            ])?,
        );
        let arrivals = self.pending.keys().map(|(_, arrival)| i64::try_from(*arrival)).collect::<Result<Vec<_>, _>>();
        let arrivals = arrivals.map_err(|_| RuntimeError::internal("temporal join arrivals overflow"))?;
        state.put(
            PENDING,
            batch(vec![
                ("time", Arc::new(Int64Array::from_iter_values(self.pending.keys().map(|(time, _)| *time)))),
                ("arrival", Arc::new(Int64Array::from(arrivals))),
                ("row", rows_column(self.pending.values().map(|row| row.row().data()))),
            ])?,
        );
        let arrivals =
            i64::try_from(self.arrivals).map_err(|_| RuntimeError::internal("temporal join arrivals overflow"))?;
        state.put_value("arrivals", arrivals);
        state.put_value("watermark", self.watermark.0);
        Ok(state)
    }

    fn restore(&mut self, mut state: OperatorState) -> Result<()> {
        let versions = state.take(VERSIONS)?;
        let keys = binary_column(&versions, "key")?;
        let times = i64_column(&versions, "time")?;
        let rows = rows_from_column(&self.right_rows, saved_rows(&versions)?)?;
        self.versions.clear();
        for index in 0..versions.num_rows() {
            let key_versions = self.versions.entry(keys.value(index).into()).or_default();
            key_versions.insert(times.value(index), rows.row(index).owned());
        }
        let pending = state.take(PENDING)?;
        let times = i64_column(&pending, "time")?;
        let arrivals = i64_column(&pending, "arrival")?;
        let rows = rows_from_column(&self.left_rows, saved_rows(&pending)?)?;
        self.pending.clear();
        for index in 0..pending.num_rows() {
            let arrival = u64::try_from(arrivals.value(index))
                .map_err(|_| RuntimeError::internal("temporal join state has a negative arrival"))?;
            self.pending.insert((times.value(index), arrival), rows.row(index).owned());
        }
        self.arrivals = u64::try_from(state.value("arrivals")?)
            .map_err(|_| RuntimeError::internal("temporal join state has a negative arrival count"))?;
        self.watermark = Watermark(state.value("watermark")?);
        self.report_state();
        Ok(())
    }
}

/// The `row` column of a checkpoint batch.
fn saved_rows(batch: &RecordBatch) -> Result<&ArrayRef> {
    batch.column_by_name("row").ok_or_else(|| RuntimeError::internal("temporal join state without rows"))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{StringArray, TimestampNanosecondArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use datafusion::physical_expr::expressions::Column;

    use super::*;
    use crate::operators::restore_check::assert_restores;

    /// (ts, cur, value): orders carry an amount, rates a rate.
    fn schema(value: &str) -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), false),
            Field::new("cur", DataType::Utf8, false),
            Field::new(value, DataType::Int64, false),
        ]))
    }

    /// `orders LEFT JOIN rates FOR SYSTEM_TIME AS OF orders.ts ON cur`
    /// (processing time when `event_time` is false).
    fn spec(event_time: bool) -> TemporalJoinSpec {
        let (left, right) = (schema("amount"), schema("rate"));
        let key =
            |schema: &SchemaRef| -> Arc<dyn PhysicalExpr> { Arc::new(Column::new_with_schema("cur", schema).unwrap()) };
        let mut fields = left.fields().to_vec();
        fields.extend(right.fields().iter().map(|field| Arc::new(field.as_ref().clone().with_nullable(true))));
        TemporalJoinSpec {
            kind: JoinKind::Left,
            condition: JoinCondition { left_keys: vec![key(&left)], right_keys: vec![key(&right)], filter: None },
            left_time: event_time.then_some(0),
            right_time: 0,
            right_output: vec![Some(0), Some(1), Some(2)],
            as_of_column: 0,
            right_filter: None,
            output_schema: Arc::new(Schema::new(fields)),
            left_schema: left,
            right_schema: right,
        }
    }

    fn rows(port: usize, rows: &[(i64, &str, i64)]) -> (usize, Message) {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(TimestampNanosecondArray::from_iter_values(rows.iter().map(|row| row.0))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|row| row.1))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|row| row.2))),
        ];
        let schema = if port == 0 { schema("amount") } else { schema("rate") };
        (port, Message::Batch(StreamBatch::inserts(RecordBatch::try_new(schema, columns).unwrap())))
    }

    fn messages() -> Vec<(usize, Message)> {
        vec![
            rows(1, &[(0, "EUR", 110), (0, "USD", 100)]),
            rows(0, &[(3, "EUR", 1), (4, "GBP", 2)]),
            (0, Message::Watermark(Watermark(2))),
            rows(1, &[(5, "EUR", 112)]),
            rows(0, &[(6, "EUR", 3), (3, "USD", 4)]),
            (1, Message::Watermark(Watermark(5))),
            rows(1, &[(7, "USD", 101), (8, "EUR", 115), (6, "GBP", 90)]),
            rows(0, &[(9, "USD", 5), (6, "EUR", 6), (7, "GBP", 7)]),
            (0, Message::Watermark(Watermark(7))),
            rows(0, &[(8, "EUR", 8)]),
            (0, Message::Watermark(Watermark::MAX)),
            (0, Message::End),
        ]
    }

    #[test]
    fn an_event_time_temporal_join_restores_versions_and_pending_rows() {
        let spec = spec(true);
        let new = || {
            Box::new(TemporalJoin::new(spec.clone(), Arc::new(QueryMetrics::default())).unwrap()) as Box<dyn Operator>
        };
        let straight = assert_restores(new, &messages());
        // The GBP order at 4 has no version: NULLs; the EUR order at 6 sees
        // the rate valid from 5.
        assert!(straight.iter().any(|row| row.contains("000004, GBP, 2, , , ")), "{straight:?}");
        assert!(
            straight.iter().any(|row| row.contains("000006, EUR, 3, 1970-01-01T00:00:00.000000005, EUR, 112")),
            "{straight:?}"
        );
    }

    #[test]
    fn a_restore_counts_its_rows_in_the_state_gauge() {
        let metrics = Arc::new(QueryMetrics::default());
        let mut first = TemporalJoin::new(spec(true), metrics.clone()).unwrap();
        let mut out = Vec::new();
        for (port, message) in messages().into_iter().take(2) {
            let Message::Batch(batch) = message else { continue };
            first.on_batch(port, batch, &mut out).unwrap();
        }
        let state = first.snapshot().unwrap();
        let mut restored = TemporalJoin::new(spec(true), metrics.clone()).unwrap();
        restored.restore(state).unwrap();
        // Two versions and two pending orders, once per operator.
        assert_eq!(QueryMetrics::get(&metrics.state_rows), 8);
    }

    #[test]
    fn a_processing_time_temporal_join_restores_latest_versions() {
        let spec = spec(false);
        let new = || {
            Box::new(TemporalJoin::new(spec.clone(), Arc::new(QueryMetrics::default())).unwrap()) as Box<dyn Operator>
        };
        let straight = assert_restores(new, &messages());
        assert!(straight.iter().any(|row| row.ends_with("EUR, 115")), "{straight:?}");
    }
}
