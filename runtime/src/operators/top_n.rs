//! Top-N over a whole stream: `ROW_NUMBER() OVER (PARTITION BY k ORDER BY
//! o) AS rn ... WHERE rn <= N`, kept up to date as rows arrive and emitted
//! as a changelog (Flink's Rank operator; Nexmark q9, q18, q19).
//!
//! # Algorithm
//!
//! Each partition key owns an ordered map from (ORDER BY key in arrow's row
//! format, arrival number) to the row (also in row format). Ties on the
//! ORDER BY key rank in arrival order, so the ranks never depend on how the
//! input was batched. With an append-only input a row that falls out of the
//! top N can never come back, so only N rows are kept per partition and a
//! row ranking below the last of a full partition is rejected without
//! touching it; with an updating input every row is kept, so that a
//! retraction in the top N lets the next row in.
//!
//! For each input batch, the top N of every partition the batch changes is
//! copied before its first change; after the batch, the old and new top N
//! are compared:
//!
//! ```text
//!   ranks shown:   per rank r, if the row at r changed: - (old row, r), + (new row, r)
//!   ranks hidden:  - each row that left the top N, + each row that entered
//! ```
//!
//! All retractions of a batch come before its insertions, so applying the
//! changelog in order always gives the current top N of every partition.
//!
//! # Checkpoints
//!
//! A snapshot holds every kept row (partition key, ORDER BY key, arrival
//! number, row bytes) and the next arrival number.

use std::collections::BTreeMap;

use datafusion::common::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, UInt64Array};
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::physical_expr::{PhysicalExpr, PhysicalSortExpr};

use crate::error::{Result, RuntimeError};
use crate::message::{Message, Op, StreamBatch};
use crate::metrics::QueryMetrics;
use crate::metrics::StateSize;
use crate::operator::Operator;
use crate::operators::groups::{evaluate, grouping_keys, key_converter, output_batch};
use crate::state::{OperatorState, batch, binary_column, i64_column, rows_column};

/// The checkpoint batch: one row per kept row.
const ROWS_STATE: &str = "rows";
/// The checkpoint value: the next arrival number.
const NEXT_STATE: &str = "next_arrival";

#[derive(Debug, Clone)]
pub struct TopNSpec {
    pub input_schema: SchemaRef,
    /// `PARTITION BY`; none means one partition.
    pub partition_exprs: Vec<Arc<dyn PhysicalExpr>>,
    /// The `ORDER BY` of the `OVER` clause.
    pub order: Vec<PhysicalSortExpr>,
    /// Rows ranked per partition: `ROW_NUMBER() <= limit`.
    pub limit: usize,
    /// Whether the row number is read downstream. If not, a row whose rank
    /// changes within the top N is not re-emitted.
    pub ranks_shown: bool,
    /// Whether the input has retractions (then every row is kept).
    pub input_updating: bool,
    /// The input's columns, then the row number (UInt64).
    pub output_schema: SchemaRef,
}

impl TopNSpec {
    /// For EXPLAIN: `2 per [ip@0] by [duration@1 DESC], ranks hidden`.
    pub fn describe(&self) -> String {
        let list = |items: Vec<String>| items.join(", ");
        let partition = list(self.partition_exprs.iter().map(ToString::to_string).collect());
        let order = list(self.order.iter().map(ToString::to_string).collect());
        let ranks = if self.ranks_shown { "shown" } else { "hidden" };
        let kept = if self.input_updating { ", every input row kept" } else { "" };
        let per = if partition.is_empty() { String::new() } else { format!(" per [{partition}]") };
        format!("{}{per} by [{order}], ranks {ranks}{kept}", self.limit)
    }
}

/// Where a row sorts within its partition: ORDER BY key, then arrival.
type Position = (Box<[u8]>, u64);

/// One partition's rows in rank order.
type Partition = BTreeMap<Position, Arc<[u8]>>;

/// A partition's top N before a batch changed it: (arrival, row) per rank.
type Ranked = Vec<(u64, Arc<[u8]>)>;

pub struct TopN {
    spec: TopNSpec,
    partition_converter: RowConverter,
    order_converter: RowConverter,
    row_converter: RowConverter,
    partitions: HashMap<Vec<u8>, Partition>,
    next_arrival: u64,
    kept_rows: usize,
    metrics: Arc<QueryMetrics>,
    reported_rows: usize,
}

impl TopN {
    pub fn new(mut spec: TopNSpec, metrics: Arc<QueryMetrics>) -> Result<Self> {
        spec.partition_exprs = grouping_keys(&spec.partition_exprs);
        let partition_converter = key_converter(&spec.partition_exprs, &spec.input_schema)?;
        let order_fields = spec
            .order
            .iter()
            .map(|sort| Ok(SortField::new_with_options(sort.expr.data_type(&spec.input_schema)?, sort.options)))
            .collect::<Result<Vec<_>>>()?;
        let order_converter = RowConverter::new(order_fields)?;
        let row_fields = spec.input_schema.fields().iter().map(|field| SortField::new(field.data_type().clone()));
        let row_converter = RowConverter::new(row_fields.collect())?;
        Ok(Self {
            spec,
            partition_converter,
            order_converter,
            row_converter,
            partitions: HashMap::default(),
            next_arrival: 0,
            kept_rows: 0,
            metrics,
            reported_rows: 0,
        })
    }

    /// The ranked rows of `partition`: its first `limit` entries.
    fn ranked(&self, partition: &Partition) -> Ranked {
        let top = partition.iter().take(self.spec.limit);
        top.map(|((_, arrival), row)| (*arrival, row.clone())).collect()
    }

    /// Whether an inserted row at `order` cannot enter `partition`'s top N
    /// and need not be kept (append-only input only).
    fn rejected(&self, partition: Option<&Partition>, order: &[u8]) -> bool {
        if self.spec.input_updating {
            return false;
        }
        if self.spec.limit == 0 {
            return true;
        }
        match partition {
            Some(partition) if partition.len() >= self.spec.limit => {
                // A new row ranks after every row with an equal key.
                partition.last_key_value().is_some_and(|((last, _), _)| last.as_ref() <= order)
            }
            _ => false,
        }
    }

    /// The changes from `old` to `new` top N of one partition.
    fn diff(&self, old: &Ranked, new: &Ranked, deletes: &mut Vec<Change>, inserts: &mut Vec<Change>) {
        if self.spec.ranks_shown {
            for rank in 0..old.len().max(new.len()) {
                match (old.get(rank), new.get(rank)) {
                    (Some((before, _)), Some((after, _))) if before == after => {}
                    (before, after) => {
                        if let Some((_, row)) = before {
                            deletes.push((rank as u64 + 1, row.clone()));
                        }
                        if let Some((_, row)) = after {
                            inserts.push((rank as u64 + 1, row.clone()));
                        }
                    }
                }
            }
            return;
        }
        let arrivals = |ranked: &Ranked| ranked.iter().map(|(arrival, _)| *arrival).collect::<Vec<_>>();
        let (old_arrivals, new_arrivals) = (arrivals(old), arrivals(new));
        for (rank, (arrival, row)) in old.iter().enumerate() {
            if !new_arrivals.contains(arrival) {
                deletes.push((rank as u64 + 1, row.clone()));
            }
        }
        for (rank, (arrival, row)) in new.iter().enumerate() {
            if !old_arrivals.contains(arrival) {
                inserts.push((rank as u64 + 1, row.clone()));
            }
        }
    }

    /// The output batch of `changes` (rank, row bytes), each with `ops`.
    fn changes_batch(&self, changes: &[Change], ops: Vec<Op>) -> Result<StreamBatch> {
        let parser = self.row_converter.parser();
        let rows = changes.iter().map(|(_, row)| parser.parse(row));
        let mut columns = self.row_converter.convert_rows(rows)?;
        columns.push(Arc::new(UInt64Array::from_iter_values(changes.iter().map(|(rank, _)| *rank))) as ArrayRef);
        Ok(StreamBatch { rows: output_batch(&self.spec.output_schema, columns)?, ops: Some(ops) })
    }

    fn report_state(&mut self) {
        self.metrics.move_state_rows(self.reported_rows, self.kept_rows);
        self.reported_rows = self.kept_rows;
    }
}

/// A row of the output: its rank and its bytes.
type Change = (u64, Arc<[u8]>);

impl Operator for TopN {
    fn state_size(&self) -> Option<StateSize> {
        let bytes: usize = self
            .partitions
            .iter()
            .map(|(key, partition)| key.len() + partition.values().map(|row| row.len() + 48).sum::<usize>())
            .sum();
        Some(StateSize { rows: self.kept_rows as u64, bytes: bytes as u64 })
    }

    fn on_batch(&mut self, _port: usize, batch: StreamBatch, out: &mut Vec<Message>) -> Result<()> {
        let rows = &batch.rows;
        if rows.num_rows() == 0 {
            return Ok(());
        }
        let partition_columns =
            self.spec.partition_exprs.iter().map(|expr| evaluate(expr, rows)).collect::<Result<Vec<_>>>()?;
        let partition_keys = self.partition_converter.convert_columns(&partition_columns)?;
        let order_columns =
            self.spec.order.iter().map(|sort| evaluate(&sort.expr, rows)).collect::<Result<Vec<_>>>()?;
        let order_keys = self.order_converter.convert_columns(&order_columns)?;
        let full_rows = self.row_converter.convert_columns(rows.columns())?;

        // The top N of each partition this batch changes, before its first
        // change, in first-change order.
        let mut touched: Vec<(Box<[u8]>, Ranked)> = Vec::new();
        let mut touched_index: HashMap<Vec<u8>, usize> = HashMap::default();
        for row in 0..rows.num_rows() {
            let arrival = self.next_arrival;
            self.next_arrival += 1;
            let key = partition_keys.row(row);
            let order = order_keys.row(row);
            let op = batch.ops.as_ref().map_or(Op::Insert, |ops| ops[row]);
            let partition = self.partitions.get(key.as_ref());
            let position = match op {
                Op::Insert if self.rejected(partition, order.as_ref()) => continue,
                Op::Insert => None,
                Op::Delete => {
                    // The first kept row with this ORDER BY key and contents.
                    let Some(partition) = partition else { continue };
                    let from = (Box::<[u8]>::from(order.as_ref()), 0);
                    let to = (Box::<[u8]>::from(order.as_ref()), u64::MAX);
                    let found =
                        partition.range(from..=to).find(|(_, kept)| kept.as_ref() == full_rows.row(row).as_ref());
                    let Some((position, _)) = found else { continue };
                    Some(position.clone())
                }
            };
            if !touched_index.contains_key(key.as_ref()) {
                let before = partition.map(|partition| self.ranked(partition)).unwrap_or_default();
                touched_index.insert(key.as_ref().into(), touched.len());
                touched.push((key.as_ref().into(), before));
            }
            let partition = self.partitions.entry_ref(key.as_ref()).or_default();
            match position {
                Some(position) => {
                    partition.remove(&position);
                    self.kept_rows -= 1;
                }
                None => {
                    partition.insert((order.as_ref().into(), arrival), full_rows.row(row).as_ref().into());
                    self.kept_rows += 1;
                    if !self.spec.input_updating && partition.len() > self.spec.limit {
                        partition.pop_last();
                        self.kept_rows -= 1;
                    }
                }
            }
        }

        let (mut deletes, mut inserts) = (Vec::new(), Vec::new());
        for (key, before) in &touched {
            let after = match self.partitions.get(key.as_ref()) {
                Some(partition) => self.ranked(partition),
                None => Vec::new(),
            };
            self.diff(before, &after, &mut deletes, &mut inserts);
            if self.partitions.get(key.as_ref()).is_some_and(BTreeMap::is_empty) {
                self.partitions.remove(key.as_ref());
            }
        }
        self.report_state();
        let mut ops = vec![Op::Delete; deletes.len()];
        ops.resize(deletes.len() + inserts.len(), Op::Insert);
        deletes.extend(inserts);
        if !deletes.is_empty() {
            out.push(Message::Batch(self.changes_batch(&deletes, ops)?));
        }
        Ok(())
    }

    /// Columns of [`ROWS_STATE`]: `partition`, `order` and `row` (row
    /// bytes) and `arrival`, in partition and rank order.
    fn snapshot(&mut self) -> Result<OperatorState> {
        let mut partitions: Vec<(&Vec<u8>, &Partition)> = self.partitions.iter().collect();
        partitions.sort_by_key(|(key, _)| *key);
        let entries: Vec<(&[u8], &Position, &[u8])> = partitions
            .iter()
            .flat_map(|(key, partition)| partition.iter().map(|(position, row)| (key.as_ref(), position, row.as_ref())))
            .collect();
        let arrivals = entries
            .iter()
            .map(|(_, (_, arrival), _)| i64::try_from(*arrival))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|_| RuntimeError::internal("top-N arrival number overflow"))?;
        let rows = batch(vec![
            ("partition", rows_column(entries.iter().map(|(key, _, _)| *key))),
            ("order", rows_column(entries.iter().map(|(_, (order, _), _)| order.as_ref()))),
            ("arrival", Arc::new(Int64Array::from(arrivals)) as ArrayRef),
            ("row", rows_column(entries.iter().map(|(_, _, row)| *row))),
        ])?;
        let mut state = OperatorState::default();
        state.put(ROWS_STATE, rows);
        let next = i64::try_from(self.next_arrival).map_err(|_| RuntimeError::internal("top-N arrival overflow"))?;
        state.put_value(NEXT_STATE, next);
        Ok(state)
    }

    fn restore(&mut self, mut state: OperatorState) -> Result<()> {
        let rows = state.take(ROWS_STATE)?;
        let (partition, order) = (binary_column(&rows, "partition")?, binary_column(&rows, "order")?);
        let (arrival, row) = (i64_column(&rows, "arrival")?, binary_column(&rows, "row")?);
        for index in 0..rows.num_rows() {
            let position = (Box::<[u8]>::from(order.value(index)), arrival.value(index) as u64);
            let entry = self.partitions.entry_ref(partition.value(index)).or_default();
            entry.insert(position, row.value(index).into());
        }
        self.kept_rows = rows.num_rows();
        self.next_arrival = u64::try_from(state.value(NEXT_STATE)?)
            .map_err(|_| RuntimeError::internal("top-N state has a negative arrival number"))?;
        self.report_state();
        Ok(())
    }
}

/// The sort options of `ORDER BY expr [ASC|DESC] [NULLS FIRST|LAST]`.
pub fn sort_options(ascending: bool, nulls_first: bool) -> SortOptions {
    SortOptions { descending: !ascending, nulls_first }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{AsArray, Int64Array, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, UInt64Type};
    use datafusion::physical_expr::expressions::col;

    use super::*;
    use crate::operators::restore_check::assert_restores;

    fn input_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("k", DataType::Utf8, false), Field::new("price", DataType::Int64, false)]))
    }

    fn spec(limit: usize, ranks_shown: bool, input_updating: bool) -> TopNSpec {
        let input = input_schema();
        let mut fields: Vec<Field> = input.fields().iter().map(|field| field.as_ref().clone()).collect();
        fields.push(Field::new("rn", DataType::UInt64, false));
        TopNSpec {
            partition_exprs: vec![col("k", &input).unwrap()],
            order: vec![PhysicalSortExpr { expr: col("price", &input).unwrap(), options: sort_options(false, true) }],
            limit,
            ranks_shown,
            input_updating,
            output_schema: Arc::new(Schema::new(fields)),
            input_schema: input,
        }
    }

    fn rows(values: &[(&str, i64)], ops: Option<Vec<Op>>) -> Message {
        let keys = StringArray::from_iter_values(values.iter().map(|(key, _)| *key));
        let prices = Int64Array::from_iter_values(values.iter().map(|(_, price)| *price));
        let batch = RecordBatch::try_new(input_schema(), vec![Arc::new(keys), Arc::new(prices)]).unwrap();
        Message::Batch(StreamBatch { rows: batch, ops })
    }

    fn run(spec: TopNSpec, messages: &[Message]) -> Vec<String> {
        let mut operator = TopN::new(spec, Arc::new(QueryMetrics::default())).unwrap();
        let mut lines = Vec::new();
        for message in messages {
            let Message::Batch(batch) = message.clone() else { continue };
            let mut out = Vec::new();
            operator.on_batch(0, batch, &mut out).unwrap();
            for message in out {
                let Message::Batch(batch) = message else { continue };
                let keys = batch.rows.column(0).as_string::<i32>();
                let prices = batch.rows.column(1).as_primitive::<Int64Type>();
                let ranks = batch.rows.column(2).as_primitive::<UInt64Type>();
                for row in 0..batch.num_rows() {
                    let op = batch.ops.as_ref().map_or("+", |ops| ops[row].symbol());
                    lines.push(format!("{op} {} {} #{}", keys.value(row), prices.value(row), ranks.value(row)));
                }
            }
        }
        lines
    }

    /// Applies a changelog of "op k price #rank" lines: the final top N.
    fn materialize(lines: &[String]) -> Vec<String> {
        let mut rows: Vec<String> = Vec::new();
        for line in lines {
            let (op, row) = line.split_once(' ').unwrap();
            if op == "+" {
                rows.push(row.to_string());
            } else {
                let at = rows.iter().position(|kept| kept == row).expect("retracted row was emitted");
                rows.remove(at);
            }
        }
        rows.sort();
        rows
    }

    #[test]
    fn keeps_the_top_two_per_key_with_changing_ranks() {
        let messages = [rows(&[("a", 10), ("b", 5), ("a", 20)], None), rows(&[("a", 15), ("a", 1)], None)];
        let lines = run(spec(2, true, false), &messages);
        assert_eq!(
            lines,
            vec!["+ a 20 #1", "+ a 10 #2", "+ b 5 #1", "- a 10 #2", "+ a 15 #2"],
            "within a batch, rows are compared with the top N before the batch"
        );
        assert_eq!(materialize(&lines), vec!["a 15 #2", "a 20 #1", "b 5 #1"]);
    }

    #[test]
    fn hidden_ranks_emit_only_rows_entering_and_leaving() {
        let messages = [rows(&[("a", 10)], None), rows(&[("a", 20)], None), rows(&[("a", 30)], None)];
        let lines = run(spec(2, false, false), &messages);
        assert_eq!(lines, vec!["+ a 10 #1", "+ a 20 #1", "- a 10 #2", "+ a 30 #1"]);
    }

    #[test]
    fn ties_rank_in_arrival_order_whatever_the_batching() {
        let values = [("a", 7), ("a", 7), ("a", 9), ("a", 7), ("b", 1), ("a", 9)];
        let whole = materialize(&run(spec(3, true, false), &[rows(&values, None)]));
        let single: Vec<Message> = values.iter().map(|value| rows(&[*value], None)).collect();
        assert_eq!(materialize(&run(spec(3, true, false), &single)), whole);
        assert_eq!(whole, vec!["a 7 #3", "a 9 #1", "a 9 #2", "b 1 #1"]);
    }

    #[test]
    fn a_retraction_lets_the_next_row_in() {
        let messages = [
            rows(&[("a", 10), ("a", 20), ("a", 30)], Some(vec![Op::Insert; 3])),
            rows(&[("a", 30)], Some(vec![Op::Delete])),
            rows(&[("a", 20), ("a", 10)], Some(vec![Op::Delete, Op::Delete])),
        ];
        let lines = run(spec(2, true, true), &messages);
        assert_eq!(
            lines,
            vec![
                "+ a 30 #1",
                "+ a 20 #2",
                "- a 30 #1",
                "- a 20 #2",
                "+ a 20 #1",
                "+ a 10 #2",
                "- a 20 #1",
                "- a 10 #2"
            ]
        );
        assert!(materialize(&lines).is_empty());
    }

    #[test]
    fn append_only_input_keeps_n_rows_per_key() {
        let metrics = Arc::new(QueryMetrics::default());
        let mut operator = TopN::new(spec(2, true, false), metrics.clone()).unwrap();
        let values: Vec<(&str, i64)> =
            (0..100).map(|price| if price % 2 == 0 { ("a", price) } else { ("b", price) }).collect();
        let Message::Batch(batch) = rows(&values, None) else { unreachable!() };
        operator.on_batch(0, batch, &mut Vec::new()).unwrap();
        assert_eq!(QueryMetrics::get(&metrics.state_rows), 4);
    }

    #[test]
    fn restores_between_any_two_batches() {
        let messages = vec![
            (0, rows(&[("a", 10), ("b", 5)], Some(vec![Op::Insert; 2]))),
            (0, rows(&[("a", 15), ("a", 12)], Some(vec![Op::Insert; 2]))),
            (0, rows(&[("a", 15)], Some(vec![Op::Delete]))),
            (0, Message::Watermark(crate::message::Watermark(100))),
            (0, rows(&[("b", 7), ("a", 3)], Some(vec![Op::Insert; 2]))),
        ];
        let lines = assert_restores(
            || Box::new(TopN::new(spec(2, true, true), Arc::new(QueryMetrics::default())).unwrap()),
            &messages,
        );
        assert!(lines.iter().any(|line| line.starts_with("- ")), "{lines:?}");
        let appended = vec![
            (0, rows(&[("a", 10), ("b", 5)], None)),
            (0, rows(&[("a", 15), ("a", 12), ("a", 11)], None)),
            (0, rows(&[("a", 16)], None)),
        ];
        assert_restores(
            || Box::new(TopN::new(spec(2, false, false), Arc::new(QueryMetrics::default())).unwrap()),
            &appended,
        );
    }
}
