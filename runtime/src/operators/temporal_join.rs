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

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{OwnedRow, RowConverter};
use datafusion::physical_expr::PhysicalExpr;

use crate::error::Result;
use crate::message::{Message, StreamBatch, Watermark};
use crate::metrics::QueryMetrics;
use crate::operator::Operator;
use crate::operators::join::{
    JoinKeys, JoinKind, Side, filter_mask, joined, null_columns, nullable, row_converter, take_columns,
};
use crate::time::event_times;

#[derive(Debug, Clone)]
pub struct TemporalJoinSpec {
    /// `Inner` or `Left`.
    pub kind: JoinKind,
    pub left_schema: SchemaRef,
    pub right_schema: SchemaRef,
    pub left_keys: Vec<Arc<dyn PhysicalExpr>>,
    /// The table's primary key columns, pairwise equal to `left_keys`.
    pub right_keys: Vec<Arc<dyn PhysicalExpr>>,
    /// The rest of the ON condition, over the output schema.
    pub filter: Option<Arc<dyn PhysicalExpr>>,
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
            keys: JoinKeys::new(&spec.left_keys, &spec.left_schema)?,
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
        let (keys, valid) = self.keys.rows(&self.spec.right_keys, rows)?;
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
        let (keys, valid) = self.keys.rows(&self.spec.left_keys, left)?;
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
        let mut passing = filter_mask(self.spec.filter.as_ref(), &candidates)?;
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
}
