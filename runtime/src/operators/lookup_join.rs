//! Stream-table join against a static table: each stream row is joined with
//! the table's rows as they are when the row arrives (Flink's lookup join).
//!
//! # Algorithm
//!
//! The table's rows are indexed once per table version by join key (arrow
//! row format → row numbers). Each stream batch is probed in one pass: the
//! candidate pairs become one batch, the rest of the ON condition is
//! evaluated on it, and the passing pairs (plus, for an outer join, the
//! stream rows left without one, with NULLs) are emitted in stream order.
//! Rows keep their op, so an updating stream gives an updating result.
//! When the table changes (`INSERT INTO`), the index is rebuilt before the
//! next batch; rows joined earlier are not revisited.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;

use datafusion::arrow::compute::concat_batches;
use datafusion::execution::TaskContext;

use crate::error::{Result, RuntimeError};
use crate::message::{Message, StreamBatch};
use crate::metrics::StateSize;
use crate::operator::Operator;
use crate::operators::join_condition::{JoinCondition, JoinKeys, JoinKind, Side, joined, take_columns};
use crate::operators::stateless::{StatelessSpec, run_plan};
use crate::table::TableRef;

#[derive(Debug, Clone)]
pub struct LookupJoinSpec {
    /// `Inner`, or the outer kind that keeps the stream's unmatched rows.
    pub kind: JoinKind,
    /// Where the stream's columns are in the output (the join's left or right).
    pub stream_side: Side,
    pub table: TableRef,
    /// What the join reads of the table (its columns, filters on it): a
    /// DataFusion plan run on the table's rows whenever they change.
    pub table_plan: StatelessSpec,
    pub stream_schema: SchemaRef,
    /// The ON condition by the join's sides: the stream's keys are
    /// `condition.keys(stream_side)`, the table's (over `table_plan`'s
    /// output) the other side's.
    pub condition: JoinCondition,
    pub output_schema: SchemaRef,
}

pub struct LookupJoin {
    spec: LookupJoinSpec,
    keys: JoinKeys,
    version: Option<u64>,
    rows: Option<RecordBatch>,
    index: HashMap<Box<[u8]>, Vec<u32>>,
    task: Arc<TaskContext>,
}

impl LookupJoin {
    pub fn new(spec: LookupJoinSpec) -> Result<Self> {
        let keys = JoinKeys::new(spec.condition.keys(spec.stream_side), &spec.stream_schema)?;
        Ok(Self {
            spec,
            keys,
            version: None,
            rows: None,
            index: HashMap::new(),
            task: Arc::new(TaskContext::default()),
        })
    }

    /// Rebuilds the index when the table changed.
    fn refresh(&mut self) -> Result<()> {
        if self.version == Some(self.spec.table.version()) {
            return Ok(());
        }
        let snapshot = self.spec.table.snapshot();
        let feed = self.spec.table_plan.feed.lock().map(|mut slot| slot.push_back(snapshot.rows));
        feed.map_err(|_| RuntimeError::internal("feed slot poisoned"))?;
        let plan = &self.spec.table_plan.plan;
        let rows = concat_batches(&plan.schema(), &run_plan(plan, &self.task)?)?;
        let (keys, valid) = self.keys.rows(self.spec.condition.keys(self.spec.stream_side.other()), &rows)?;
        self.index.clear();
        for row in (0..rows.num_rows()).filter(|row| valid[*row]) {
            self.index.entry(Box::from(keys.row(row).as_ref())).or_default().push(row as u32);
        }
        self.version = Some(snapshot.version);
        self.rows = Some(rows);
        Ok(())
    }

    fn assemble(
        &self,
        stream: Vec<datafusion::arrow::array::ArrayRef>,
        table: Vec<datafusion::arrow::array::ArrayRef>,
    ) -> Result<RecordBatch> {
        match self.spec.stream_side {
            Side::Left => joined(&self.spec.output_schema, stream, table),
            Side::Right => joined(&self.spec.output_schema, table, stream),
        }
    }
}

impl Operator for LookupJoin {
    fn state_size(&self) -> Option<StateSize> {
        let rows = self.rows.as_ref().map_or(0, RecordBatch::num_rows);
        let index: usize = self.index.iter().map(|(key, positions)| key.len() + 4 * positions.len() + 24).sum();
        let bytes = self.rows.as_ref().map_or(0, RecordBatch::get_array_memory_size) + index;
        Some(StateSize { rows: rows as u64, bytes: bytes as u64 })
    }

    fn on_batch(&mut self, _port: usize, batch: StreamBatch, out: &mut Vec<Message>) -> Result<()> {
        self.refresh()?;
        let Some(table) = &self.rows else { return Ok(()) };
        let stream = &batch.rows;
        let (keys, valid) = self.keys.rows(self.spec.condition.keys(self.spec.stream_side), stream)?;
        let (mut pair_stream, mut pair_table) = (Vec::new(), Vec::new());
        for row in (0..stream.num_rows()).filter(|row| valid[*row]) {
            if let Some(matches) = self.index.get(keys.row(row).as_ref()) {
                for table_row in matches {
                    pair_stream.push(Some(row as u32));
                    pair_table.push(Some(*table_row));
                }
            }
        }
        let passing = if pair_stream.is_empty() {
            Vec::new()
        } else {
            let candidates = self
                .assemble(take_columns(stream.columns(), &pair_stream)?, take_columns(table.columns(), &pair_table)?)?;
            self.spec.condition.filter_mask(&candidates)?
        };
        let outer = self.spec.kind.keeps_unmatched(self.spec.stream_side);
        let (mut picks_stream, mut picks_table) = (Vec::new(), Vec::new());
        let mut pair = 0;
        for row in 0..stream.num_rows() {
            let mut matched = false;
            while pair < pair_stream.len() && pair_stream[pair] == Some(row as u32) {
                if passing[pair] {
                    matched = true;
                    picks_stream.push(Some(row as u32));
                    picks_table.push(pair_table[pair]);
                }
                pair += 1;
            }
            if !matched && outer {
                picks_stream.push(Some(row as u32));
                picks_table.push(None);
            }
        }
        if picks_stream.is_empty() {
            return Ok(());
        }
        let rows = self
            .assemble(take_columns(stream.columns(), &picks_stream)?, take_columns(table.columns(), &picks_table)?)?;
        let ops = batch.ops.as_ref().map(|ops| picks_stream.iter().map(|row| ops[row.unwrap_or(0) as usize]).collect());
        out.push(Message::Batch(StreamBatch { rows, ops }));
        Ok(())
    }
}
