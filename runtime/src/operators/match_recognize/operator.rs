//! The `match_recognize` operator: row pattern recognition per partition,
//! in event-time order, resumed across epochs.
//!
//! # Algorithm
//!
//! 1. **Order.** Rows wait in `pending` until the watermark passes them
//!    (event time below it: no row can come before them any more). Then
//!    they are sorted by partition, event time, the further ORDER BY keys
//!    and arrival, and appended to their partition's row store, numbered
//!    from 0 in the partition.
//! 2. **Match.** Each partition tries a match starting at its next start
//!    row with a [`Matcher`] (the automaton of [`super::matcher`]), feeding
//!    it the stored rows it has not seen; a matcher that needs rows not yet
//!    released waits, with its threads, for the next epoch. A finished
//!    attempt emits the match (or, with `WITH UNMATCHED ROWS`, the
//!    unmatched row) and the next start follows from AFTER MATCH SKIP. A
//!    new attempt re-reads rows a failed one read (as the standard defines
//!    matching), from the store. With `WITHIN`, an attempt whose next row
//!    is later than its start plus the interval, or once the watermark is,
//!    ends with what it matched (and is a timeout row if it matched
//!    nothing and timeout rows are asked for).
//! 3. **Conditions and measures.** DEFINE and MEASURES are physical
//!    expressions over their navigations (see [`super::spec`]): for each
//!    question the navigations are resolved to rows of the store and
//!    gathered into a small batch. When every DEFINE reads only the current
//!    row (and rows at physical offsets from it), its answer depends on the
//!    row alone: it is cached per row, and the matcher merges threads.
//! 4. **State.** Rows before the earliest row a live or future attempt can
//!    read (the next start, minus the furthest `PREV` offset) are dropped.
//!    A pattern without `WITHIN` whose partial match can grow without end
//!    (`A+` on rows that all satisfy A) keeps every row of it.
//! 5. **Watermark.** Output rows carry event times of rows at or after
//!    their attempt's start, so the output watermark is held back to the
//!    earliest start of a running attempt.
//! 6. **End.** At the end of the input, every attempt finishes with `$`
//!    holding.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch, StringArray, UInt32Array, new_null_array,
};
use datafusion::arrow::compute::{concat_batches, interleave, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::ColumnarValue;

use super::matcher::{Conditions, Label, Labels, Matcher, Program, Progress, Scratch};
use super::spec::{CompiledExpr, EmptyMatches, MatchRecognizeSpec, Navigation, RowSelect, RowsPerMatch, SkipTo};
use crate::error::{Result, RuntimeError};
use crate::message::{Message, StreamBatch, Watermark};
use crate::metrics::QueryMetrics;
use crate::metrics::StateSize;
use crate::operator::Operator;
use crate::state::{OperatorState, batch, binary_column, i64_column, rows_column};
use crate::time::event_times;

/// A partition's unreadable rows are dropped once there are this many (or
/// they are half its rows).
const PRUNE_RUN: usize = 64;

const PENDING_STATE: &str = "pending";
const ROWS_STATE: &str = "rows";
const PARTITIONS_STATE: &str = "partitions";
const WATERMARK_STATE: &str = "watermark";

/// One partition: its stored rows and where matching stands.
#[derive(Debug)]
struct Partition {
    /// Stored rows, in order: row `base` is the first row of `chunks[0]`,
    /// and `starts[i]` the number of `chunks[i]`'s first row.
    chunks: Vec<RecordBatch>,
    starts: Vec<u64>,
    base: u64,
    /// Rows released so far (the next row's number).
    released: u64,
    /// The row the next attempt starts at.
    start: u64,
    /// The running attempt.
    matcher: Option<Matcher>,
    /// Matches emitted so far.
    matches: u64,
    /// Rows before this have their position-only DEFINE answers.
    answered: u64,
    /// Rows before this are part of an emitted match.
    covered: u64,
    /// Event time of each stored row (parallel to the chunks).
    times: Vec<i64>,
    /// DEFINE answers per stored row and variable (position-only DEFINEs).
    answers: Answers,
}

/// Position-only DEFINE answers, per stored row and variable, in one
/// vector (`variables` entries per row).
#[derive(Debug)]
struct Answers {
    variables: usize,
    values: Vec<Option<bool>>,
}

impl Answers {
    fn get(&self, slot: usize, var: usize) -> Option<bool> {
        self.values.get(slot * self.variables + var).copied().flatten()
    }

    fn set(&mut self, slot: usize, var: usize, holds: bool) {
        if let Some(value) = self.values.get_mut(slot * self.variables + var) {
            *value = Some(holds);
        }
    }

    /// Room for `rows` more rows, unanswered.
    fn extend(&mut self, rows: usize) {
        self.values.resize(self.values.len() + rows * self.variables, None);
    }

    /// Drops the first `rows` rows.
    fn drop_front(&mut self, rows: usize) {
        self.values.drain(..(rows * self.variables).min(self.values.len()));
    }
}

impl Partition {
    fn new(variables: usize) -> Self {
        Partition {
            chunks: Vec::new(),
            starts: Vec::new(),
            base: 0,
            released: 0,
            start: 0,
            matcher: None,
            matches: 0,
            answered: 0,
            covered: 0,
            times: Vec::new(),
            answers: Answers { variables, values: Vec::new() },
        }
    }

    /// (chunk, offset) of stored row `row`.
    fn locate(&self, row: u64) -> Option<(usize, usize)> {
        if row < self.base {
            return None;
        }
        let index = self.starts.partition_point(|start| *start <= row).checked_sub(1)?;
        let offset = (row - self.starts[index]) as usize;
        (offset < self.chunks[index].num_rows()).then_some((index, offset))
    }

    /// Appends stored rows (their first row numbered `first`), merging the
    /// chunks when there are many.
    fn push_chunk(&mut self, first: u64, rows: RecordBatch) -> Result<()> {
        self.starts.push(first);
        self.chunks.push(rows);
        if self.chunks.len() > 16 {
            let merged = concat_batches(&self.chunks[0].schema(), &self.chunks)?;
            self.starts = vec![self.starts[0]];
            self.chunks = vec![merged];
        }
        Ok(())
    }

    fn time(&self, row: u64) -> Option<i64> {
        self.times.get(row.checked_sub(self.base)? as usize).copied()
    }

    fn stored(&self) -> usize {
        self.times.len()
    }
}

/// Runs a [`MatchRecognizeSpec`].
pub struct MatchRecognize {
    spec: Arc<MatchRecognizeSpec>,
    program: Program,
    /// Every DEFINE reads only the current row (see the `# Algorithm`).
    position_only: bool,
    /// The furthest a navigation reads back from a match's first row.
    lookback: u64,
    /// The furthest a navigation reads ahead (`NEXT`): a row is matched
    /// only once the rows that far after it are released (or the input
    /// ended).
    lookahead: u64,
    converter: RowConverter,
    /// Row format of the further ORDER BY keys.
    order: RowConverter,
    /// Rows the watermark has not passed yet.
    pending: Vec<RecordBatch>,
    /// Partitions by their key, in key order (output is deterministic).
    partitions: BTreeMap<Vec<u8>, Partition>,
    /// The input watermark.
    watermark: Watermark,
    /// The output watermark last sent.
    sent_watermark: Watermark,
    /// The batch aggregates' arguments read: the input's columns, made
    /// nullable, then [`super::spec::CLASSIFIER_COLUMN`] and
    /// [`super::spec::MATCH_NUMBER_COLUMN`].
    aggregate_schema: SchemaRef,
    /// The matcher's reusable buffers.
    scratch: Scratch,
    metrics: Arc<QueryMetrics>,
    reported_rows: usize,
}

impl MatchRecognize {
    pub fn new(spec: MatchRecognizeSpec, metrics: Arc<QueryMetrics>) -> Result<Self> {
        let position_only = spec.defines.iter().enumerate().all(|(var, define)| {
            define
                .as_ref()
                .is_none_or(|define| define.navigations.iter().all(|navigation| reads_position(navigation, var)))
        });
        let program = Program::compile(&spec.pattern, position_only)?;
        let mut lookback = 0u64;
        let mut lookahead = 0u64;
        let all = spec.defines.iter().flatten().chain(spec.measures.iter().map(|(_, measure)| measure));
        for compiled in all {
            for navigation in &compiled.navigations {
                if let Navigation::Value { select, .. } | Navigation::Classifier { select } = navigation {
                    lookback = lookback.max(select.physical.min(0).unsigned_abs());
                    lookahead = lookahead.max(select.physical.max(0).unsigned_abs());
                }
            }
        }
        let fields = spec
            .partition_by
            .iter()
            .map(|column| SortField::new(spec.input_schema.field(*column).data_type().clone()))
            .collect();
        let converter = RowConverter::new(fields)?;
        let order_fields: Vec<SortField> = spec
            .order_by
            .iter()
            .map(|(column, options)| {
                SortField::new_with_options(spec.input_schema.field(*column).data_type().clone(), *options)
            })
            .collect();
        let order = RowConverter::new(order_fields)?;
        let mut fields: Vec<Field> =
            spec.input_schema.fields().iter().map(|field| field.as_ref().clone().with_nullable(true)).collect();
        fields.push(Field::new(super::spec::CLASSIFIER_COLUMN, DataType::Utf8, true));
        fields.push(Field::new(super::spec::MATCH_NUMBER_COLUMN, DataType::Int64, true));
        let aggregate_schema = Arc::new(Schema::new(fields));
        Ok(MatchRecognize {
            spec: Arc::new(spec),
            program,
            position_only,
            lookback,
            lookahead,
            converter,
            order,
            pending: Vec::new(),
            partitions: BTreeMap::new(),
            watermark: Watermark::MIN,
            sent_watermark: Watermark::MIN,
            aggregate_schema,
            scratch: Scratch::default(),
            metrics,
            reported_rows: 0,
        })
    }

    /// EXPLAIN's description.
    pub fn describe(spec: &MatchRecognizeSpec) -> String {
        let name = |column: &usize| spec.input_schema.field(*column).name().clone();
        let partition: Vec<String> = spec.partition_by.iter().map(name).collect();
        let mut text = format!(
            "partition by [{}], order by {}, pattern {}",
            partition.join(", "),
            name(&spec.time_column),
            describe_pattern(&spec.pattern, &spec.variables)
        );
        if let Some(within) = spec.within {
            text.push_str(&format!(" within {:?}", std::time::Duration::from_nanos(within.unsigned_abs())));
        }
        let mut bounded = spec.within.is_some();
        if !bounded {
            bounded = !can_grow_without_end(&spec.pattern);
        }
        text.push_str(if bounded { ", state bounded" } else { ", state unbounded (no WITHIN)" });
        text
    }

    /// Releases the pending rows the watermark passed into their partitions
    /// and matches; `at_end` once the input ended.
    fn advance(&mut self, at_end: bool, out: &mut Vec<Message>) -> Result<()> {
        let released = self.release()?;
        let mut output = Vec::new();
        let keys: Vec<Vec<u8>> =
            if at_end || self.spec.within.is_some() { self.partitions.keys().cloned().collect() } else { released };
        if self.position_only {
            self.answer(&keys, at_end)?;
        }
        // Out of `self` while matching, so `run` can read the operator.
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut partitions = std::mem::take(&mut self.partitions);
        let mut result = Ok(());
        for key in keys {
            let Some(partition) = partitions.get_mut(&key) else { continue };
            result = self.run(&key, partition, at_end, &mut output, &mut scratch);
            if result.is_err() {
                break;
            }
        }
        self.partitions = partitions;
        self.scratch = scratch;
        result?;
        if !output.is_empty() {
            let rows = self.build_output(output)?;
            if rows.num_rows() > 0 {
                out.push(Message::Batch(StreamBatch::inserts(rows)));
            }
        }
        self.prune();
        self.report_state();
        // The output watermark waits for the earliest running attempt.
        let hold = self
            .partitions
            .values()
            .filter(|partition| partition.start < partition.released || partition.matcher.is_some())
            .filter_map(|partition| partition.time(partition.start))
            .min()
            .map_or(Watermark::MAX, Watermark);
        let watermark = if at_end { Watermark::MAX } else { self.watermark.min(hold) };
        if watermark > self.sent_watermark {
            self.sent_watermark = watermark;
            out.push(Message::Watermark(watermark));
        }
        Ok(())
    }

    /// Moves the pending rows below the watermark into their partitions,
    /// in order; the keys of the partitions that got rows.
    fn release(&mut self) -> Result<Vec<Vec<u8>>> {
        if self.pending.is_empty() {
            return Ok(Vec::new());
        }
        let all = if self.pending.len() == 1 {
            self.pending.remove(0)
        } else {
            let all = concat_batches(&self.spec.input_schema, &self.pending)?;
            self.pending.clear();
            all
        };
        let times = event_times(all.column(self.spec.time_column))?;
        let released = |row: &u32| times[*row as usize].is_some_and(|time| Watermark(time) < self.watermark);
        let mut below: Vec<u32> = (0..all.num_rows() as u32).filter(released).collect();
        if below.len() < all.num_rows() {
            let keep: Vec<u32> = (0..all.num_rows() as u32).filter(|row| !released(row)).collect();
            self.pending.push(take_record_batch(&all, &UInt32Array::from(keep))?);
        }
        if below.is_empty() {
            return Ok(Vec::new());
        }
        // Sort by partition (numbered in key order), time, the further
        // ORDER BY keys (in row format), then arrival.
        let key_rows = if self.spec.partition_by.is_empty() {
            None
        } else {
            let columns: Vec<ArrayRef> =
                self.spec.partition_by.iter().map(|column| all.column(*column).clone()).collect();
            Some(self.converter.convert_columns(&columns)?)
        };
        let key = |row: u32| key_rows.as_ref().map_or(&[][..], |keys| keys.row(row as usize).data());
        let mut distinct: HashMap<&[u8], u32> = HashMap::new();
        let mut numbers = vec![0u32; all.num_rows()];
        for row in &below {
            let next = distinct.len() as u32;
            numbers[*row as usize] = *distinct.entry(key(*row)).or_insert(next);
        }
        let mut ordered: Vec<(&[u8], u32)> = distinct.into_iter().collect();
        ordered.sort_unstable();
        let mut rank = vec![0u32; ordered.len()];
        for (position, (_, number)) in ordered.iter().enumerate() {
            rank[*number as usize] = position as u32;
        }
        for row in &below {
            numbers[*row as usize] = rank[numbers[*row as usize] as usize];
        }
        let time = |row: u32| times[row as usize].unwrap_or(i64::MIN);
        let in_time_order = below.windows(2).all(|pair| time(pair[0]) <= time(pair[1]));
        if in_time_order && self.spec.order_by.is_empty() {
            // Arrival is time order already: a counting sort by partition
            // (stable) is the whole sort.
            let mut starts = vec![0usize; ordered.len() + 1];
            for row in &below {
                starts[numbers[*row as usize] as usize + 1] += 1;
            }
            for index in 1..starts.len() {
                starts[index] += starts[index - 1];
            }
            let mut sorted = vec![0u32; below.len()];
            for row in &below {
                let slot = &mut starts[numbers[*row as usize] as usize];
                sorted[*slot] = *row;
                *slot += 1;
            }
            below = sorted;
        } else {
            let further = if self.spec.order_by.is_empty() {
                None
            } else {
                let columns: Vec<ArrayRef> =
                    self.spec.order_by.iter().map(|(column, _)| all.column(*column).clone()).collect();
                Some(self.order.convert_columns(&columns)?)
            };
            below.sort_unstable_by(|a, b| {
                (numbers[*a as usize], time(*a))
                    .cmp(&(numbers[*b as usize], time(*b)))
                    .then_with(|| match &further {
                        Some(rows) => rows.row(*a as usize).cmp(&rows.row(*b as usize)),
                        None => std::cmp::Ordering::Equal,
                    })
                    .then(a.cmp(b))
            });
        }
        let groups: Vec<u32> = below.iter().map(|row| numbers[*row as usize]).collect();
        let keys: Vec<Vec<u8>> = ordered.iter().map(|(key, _)| key.to_vec()).collect();
        let rows = take_record_batch(&all, &UInt32Array::from(below))?;
        let times = event_times(rows.column(self.spec.time_column))?;
        let mut touched = Vec::new();
        let mut from = 0;
        while from < rows.num_rows() {
            let mut to = from + 1;
            while to < rows.num_rows() && groups[to] == groups[from] {
                to += 1;
            }
            let key = keys[groups[from] as usize].clone();
            if !self.partitions.contains_key(&key) {
                self.partitions.insert(key.clone(), Partition::new(self.spec.variables.len()));
            }
            let Some(partition) = self.partitions.get_mut(&key) else { continue };
            let first = partition.released;
            partition.push_chunk(first, rows.slice(from, to - from))?;
            partition.times.extend(times[from..to].iter().map(|time| time.unwrap_or(i64::MIN)));
            partition.answers.extend(to - from);
            partition.released += (to - from) as u64;
            touched.push(key);
            from = to;
        }
        Ok(touched)
    }

    /// Matches in one partition as far as its released rows allow.
    fn run(
        &self,
        key: &[u8],
        partition: &mut Partition,
        at_end: bool,
        output: &mut Vec<OutputRow>,
        scratch: &mut Scratch,
    ) -> Result<()> {
        // Rows whose NEXT rows are not released yet wait.
        let limit = if at_end { partition.released } else { partition.released.saturating_sub(self.lookahead) };
        loop {
            if partition.matcher.is_none() {
                if partition.start >= partition.released {
                    break;
                }
                partition.matcher = Some(Matcher::start(&self.program, partition.start, scratch)?);
            }
            let start = partition.start;
            let Some(mut matcher) = partition.matcher.take() else { break };
            let start_time = partition.time(start).unwrap_or(i64::MIN);
            let mut progress = matcher.progress();
            let mut timed_out = false;
            while progress == Progress::Running && matcher.next_row() < limit {
                if let Some(within) = self.spec.within
                    && partition.time(matcher.next_row()).unwrap_or(i64::MAX).saturating_sub(start_time) > within
                {
                    timed_out = true;
                    break;
                }
                let mut conditions = Define { operator: self, partition };
                progress = matcher.push_row(&self.program, &mut conditions, scratch)?;
            }
            let mut partial = Vec::new();
            if progress == Progress::Running {
                let expired = self
                    .spec
                    .within
                    .is_some_and(|within| timed_out || Watermark(start_time.saturating_add(within)) < self.watermark);
                if at_end || expired {
                    partial = matcher.partial();
                    progress = matcher.finish(&self.program, at_end && !timed_out, scratch)?;
                    timed_out = !at_end || timed_out;
                } else {
                    partition.matcher = Some(matcher);
                    break;
                }
            }
            match progress {
                Progress::Matched(labels) => {
                    partition.matches += 1;
                    let number = partition.matches;
                    if let Some(last) = labels.last() {
                        partition.covered = partition.covered.max(last.row + 1);
                    }
                    partition.start = self.next_start(start, &labels)?;
                    output.push(OutputRow::Match { key: key.to_vec(), start, labels, number });
                }
                Progress::NoMatch | Progress::Running => {
                    let timeouts = matches!(self.spec.rows_per_match, RowsPerMatch::One { timeouts: true });
                    if timed_out && timeouts && !partial.is_empty() {
                        output.push(OutputRow::Timeout { key: key.to_vec(), labels: partial });
                    } else if matches!(self.spec.rows_per_match, RowsPerMatch::All(EmptyMatches::WithUnmatched))
                        && start >= partition.covered
                    {
                        output.push(OutputRow::Unmatched { key: key.to_vec(), row: start });
                    }
                    partition.start = start + 1;
                }
            }
            // Rows no attempt can read any more are dropped; rows an
            // output row reads are kept until the output is built.
        }
        Ok(())
    }

    /// Position-only DEFINEs, vectorised: each variable's condition over
    /// every row not answered yet of the partitions `keys`, in one
    /// evaluation (rows whose `NEXT` rows are not released yet wait).
    fn answer(&mut self, keys: &[Vec<u8>], at_end: bool) -> Result<()> {
        let mut parts: Vec<&Partition> = Vec::with_capacity(keys.len());
        let mut answered: Vec<&Vec<u8>> = Vec::with_capacity(keys.len());
        let mut rows: Vec<(usize, u64)> = Vec::new();
        for key in keys {
            let Some(partition) = self.partitions.get(key) else { continue };
            let limit = if at_end { partition.released } else { partition.released.saturating_sub(self.lookahead) };
            let from = partition.answered.max(partition.base);
            if from < limit {
                rows.extend((from..limit).map(|row| (parts.len(), row)));
                parts.push(partition);
                answered.push(key);
            }
        }
        if rows.is_empty() {
            return Ok(());
        }
        let mut answers: Vec<(usize, BooleanArray)> = Vec::new();
        for (var, define) in self.spec.defines.iter().enumerate() {
            let Some(define) = define else { continue };
            let mut columns = Vec::with_capacity(define.navigations.len());
            for (index, navigation) in define.navigations.iter().enumerate() {
                let field = define.schema.field(index);
                let column: ArrayRef = match navigation {
                    Navigation::Value { column, select } => {
                        let targets: Vec<(usize, Option<u64>)> = rows
                            .iter()
                            .map(|(part, row)| {
                                let target = row.checked_add_signed(select.physical);
                                (*part, target.filter(|target| *target < parts[*part].released))
                            })
                            .collect();
                        cast_to(gather(&parts, &self.spec.input_schema, *column, &targets)?, field.data_type())?
                    }
                    Navigation::Classifier { .. } => {
                        Arc::new(StringArray::from(vec![self.spec.variables[var].as_str(); rows.len()]))
                    }
                    _ => return Err(RuntimeError::internal("a position-only DEFINE with a history navigation")),
                };
                columns.push(column);
            }
            let options = datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(rows.len()));
            let batch = RecordBatch::try_new_with_options(define.schema.clone(), columns, &options)?;
            let values = match define.expr.evaluate(&batch)? {
                ColumnarValue::Array(array) => array,
                ColumnarValue::Scalar(scalar) => scalar.to_array_of_size(rows.len())?,
            };
            let values = values
                .as_boolean_opt()
                .ok_or_else(|| RuntimeError::internal("a DEFINE condition that is not BOOLEAN"))?
                .clone();
            answers.push((var, values));
        }
        let mut index = 0;
        for (part, key) in answered.into_iter().enumerate() {
            let Some(partition) = self.partitions.get_mut(key) else { continue };
            while index < rows.len() && rows[index].0 == part {
                let row = rows[index].1;
                for (var, values) in &answers {
                    let holds = values.is_valid(index) && values.value(index);
                    partition.answers.set((row - partition.base) as usize, *var, holds);
                }
                index += 1;
            }
            partition.answered = rows[index - 1].1 + 1;
        }
        Ok(())
    }

    /// Where the attempt after a match starting at `start` starts.
    fn next_start(&self, start: u64, labels: &[Label]) -> Result<u64> {
        let Some(last) = labels.last() else { return Ok(start + 1) };
        let target = |vars: &[usize], first: bool| -> Result<u64> {
            let mut rows = labels.iter().filter(|label| vars.contains(&label.var)).map(|label| label.row);
            let row = if first { rows.next() } else { rows.next_back() };
            let name = || vars.iter().map(|var| self.spec.variables[*var].as_str()).collect::<Vec<_>>().join(", ");
            let row = row.ok_or_else(|| {
                let name = name();
                RuntimeError::user(format!("AFTER MATCH SKIP TO {name}: {name} matched no row of the match"))
            })?;
            if row == start {
                return Err(RuntimeError::user(format!(
                    "AFTER MATCH SKIP TO {} would skip to the match's first row (and match it again forever)",
                    name()
                )));
            }
            Ok(row)
        };
        match &self.spec.skip {
            SkipTo::PastLastRow => Ok(last.row + 1),
            SkipTo::NextRow => Ok(start + 1),
            SkipTo::First(vars) => target(vars, true),
            SkipTo::Last(vars) => target(vars, false),
        }
    }

    /// Drops rows no attempt reads any more, after the output was built.
    fn prune(&mut self) {
        for partition in self.partitions.values_mut() {
            let keep_from = partition.start.saturating_sub(self.lookback).max(partition.base);
            let drop = (keep_from - partition.base) as usize;
            // Dropped in runs (slicing costs more than a few rows held).
            if drop == 0 || (drop < PRUNE_RUN && drop * 2 < partition.stored()) {
                continue;
            }
            let mut dropped = 0;
            while let Some(first) = partition.chunks.first() {
                let rows = first.num_rows();
                if dropped + rows <= drop {
                    partition.chunks.remove(0);
                    partition.starts.remove(0);
                    dropped += rows;
                } else {
                    // Slice the rest off the front (a merge compacts it).
                    let cut = drop - dropped;
                    partition.chunks[0] = first.slice(cut, rows - cut);
                    partition.starts[0] += cut as u64;
                    dropped = drop;
                    break;
                }
            }
            partition.times.drain(..dropped);
            partition.answers.drop_front(dropped);
            partition.base += dropped as u64;
        }
        // Partitions stay (a few numbers each): row numbers, `^` and
        // MATCH_NUMBER() go on where they were.
    }

    fn report_state(&mut self) {
        let rows = self.partitions.values().map(Partition::stored).sum::<usize>()
            + self.pending.iter().map(RecordBatch::num_rows).sum::<usize>();
        self.metrics.move_state_rows(self.reported_rows, rows);
        self.reported_rows = rows;
    }

    /// The output rows, in the order the matches were found, built in one
    /// pass over all of them: each measure is evaluated once over every
    /// output row (of every match and partition) of the epoch.
    fn build_output(&mut self, rows: Vec<OutputRow>) -> Result<RecordBatch> {
        let spec = self.spec.clone();
        // The partitions the rows read, numbered in order of appearance.
        let mut numbered: BTreeMap<&[u8], usize> = BTreeMap::new();
        let mut partitions: Vec<&Partition> = Vec::new();
        let mut layout = Layout::default();
        for row in &rows {
            let key = match row {
                OutputRow::Match { key, .. } | OutputRow::Timeout { key, .. } | OutputRow::Unmatched { key, .. } => key,
            };
            let part = match numbered.get(key.as_slice()) {
                Some(part) => *part,
                None => {
                    let partition = self.partitions.get(key).ok_or_else(|| {
                        RuntimeError::internal("match_recognize: an output row of an unknown partition")
                    })?;
                    partitions.push(partition);
                    numbered.insert(key, partitions.len() - 1);
                    partitions.len() - 1
                }
            };
            layout.add(spec.rows_per_match, part, row);
        }
        let count = layout.ats.len();
        let evaluation = Evaluation { operator: self, partitions: &partitions };
        let mut measures = Vec::with_capacity(spec.measures.len());
        for (_, measure) in &spec.measures {
            let values = evaluation.evaluate(measure, &layout.ats)?;
            // An unmatched row (WITH UNMATCHED ROWS) has NULL measures.
            let values = if layout.unmatched.iter().any(|unmatched| *unmatched) {
                datafusion::arrow::compute::nullif(&values, &BooleanArray::from(layout.unmatched.clone()))?
            } else {
                values
            };
            measures.push(values);
        }
        let take = |column: usize, rows: &[(usize, Option<u64>)]| gather(&partitions, &spec.input_schema, column, rows);
        let mut out: Vec<ArrayRef> = Vec::with_capacity(spec.output_schema.fields().len());
        for column in &spec.partition_by {
            out.push(take(*column, &layout.anchors)?);
        }
        match spec.rows_per_match {
            RowsPerMatch::One { timeouts } => {
                out.extend(measures);
                if timeouts {
                    out.push(Arc::new(BooleanArray::from(layout.timed_out)));
                }
            }
            RowsPerMatch::All(_) => {
                let mut placed = spec.partition_by.clone();
                for column in std::iter::once(spec.time_column).chain(spec.order_by.iter().map(|(column, _)| *column)) {
                    if !placed.contains(&column) {
                        out.push(take(column, &layout.inputs)?);
                        placed.push(column);
                    }
                }
                out.extend(measures);
                for column in 0..spec.input_schema.fields().len() {
                    if !placed.contains(&column) {
                        out.push(take(column, &layout.inputs)?);
                    }
                }
            }
        }
        let arrays = out
            .into_iter()
            .zip(spec.output_schema.fields())
            .map(|(array, field)| cast_to(array, field.data_type()))
            .collect::<Result<Vec<_>>>()?;
        let options = datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(count));
        Ok(RecordBatch::try_new_with_options(spec.output_schema.clone(), arrays, &options)?)
    }
}

/// Where the output rows of an epoch are evaluated, one entry per output
/// row: the position in its match, the row its partition columns come
/// from, the input row it shows (ALL ROWS PER MATCH), and its flags.
#[derive(Default)]
struct Layout<'a> {
    ats: Vec<At<'a>>,
    anchors: Vec<(usize, Option<u64>)>,
    inputs: Vec<(usize, Option<u64>)>,
    timed_out: Vec<bool>,
    unmatched: Vec<bool>,
}

impl<'a> Layout<'a> {
    /// The output rows of one match, timeout or unmatched row of partition
    /// `part`.
    fn add(&mut self, rows_per_match: RowsPerMatch, part: usize, row: &'a OutputRow) {
        let (labels, number, timed_out, anchor): (&[Label], u64, bool, u64) = match row {
            OutputRow::Match { labels, number, start, .. } => (labels, *number, false, *start),
            OutputRow::Timeout { labels, .. } => (labels, 0, true, labels.first().map_or(0, |label| label.row)),
            OutputRow::Unmatched { row, .. } => (&[], 0, false, *row),
        };
        let at = |position: Option<usize>| At { part, labels, number, position };
        let mut push = |position: Option<usize>, input: Option<u64>| {
            self.ats.push(at(position));
            self.anchors.push((part, Some(anchor)));
            self.inputs.push((part, input));
            self.timed_out.push(timed_out);
            self.unmatched.push(matches!(row, OutputRow::Unmatched { .. }));
        };
        match (rows_per_match, row) {
            (RowsPerMatch::One { .. }, _) => push(None, None),
            (RowsPerMatch::All(_), OutputRow::Unmatched { row, .. }) => push(None, Some(*row)),
            (RowsPerMatch::All(mode), OutputRow::Match { start, .. }) => {
                if labels.is_empty() {
                    if mode != EmptyMatches::Omit {
                        push(None, Some(*start));
                    }
                } else {
                    for (index, label) in labels.iter().enumerate() {
                        if !label.excluded {
                            push(Some(index), Some(label.row));
                        }
                    }
                }
            }
            (RowsPerMatch::All(_), OutputRow::Timeout { .. }) => {}
        }
    }
}

/// Whether `navigation`, in the DEFINE of `var`, reads only the current row
/// (or rows at physical offsets from it).
fn reads_position(navigation: &Navigation, var: usize) -> bool {
    let current = |select: &RowSelect| {
        !select.from_first && select.logical == 0 && select.vars.as_ref().is_none_or(|vars| vars.contains(&var))
    };
    match navigation {
        Navigation::Value { select, .. } => current(select),
        Navigation::Classifier { select } => current(select) && select.physical == 0,
        Navigation::MatchNumber | Navigation::Aggregate { .. } => false,
    }
}

/// Whether a partial match of `pattern` can take rows without end.
pub fn can_grow_without_end(pattern: &super::spec::PatternSpec) -> bool {
    use super::spec::PatternSpec;
    match pattern {
        PatternSpec::Quantified { max: None, .. } => true,
        PatternSpec::Quantified { pattern, .. } | PatternSpec::Exclude(pattern) => can_grow_without_end(pattern),
        PatternSpec::Concat(items) | PatternSpec::Alternation(items) | PatternSpec::Permute(items) => {
            items.iter().any(can_grow_without_end)
        }
        _ => false,
    }
}

/// The pattern in SQL syntax, with its variables' names.
pub fn describe_pattern(pattern: &super::spec::PatternSpec, variables: &[String]) -> String {
    use super::spec::PatternSpec;
    let list = |items: &[PatternSpec], separator: &str| {
        items
            .iter()
            .map(|item| match item {
                PatternSpec::Alternation(_) | PatternSpec::Concat(_) if separator == " " => {
                    format!("({})", describe_pattern(item, variables))
                }
                _ => describe_pattern(item, variables),
            })
            .collect::<Vec<_>>()
            .join(separator)
    };
    match pattern {
        PatternSpec::Variable(var) => variables.get(*var).cloned().unwrap_or_default(),
        PatternSpec::Concat(items) => list(items, " "),
        PatternSpec::Alternation(items) => list(items, " | "),
        PatternSpec::Permute(items) => format!("PERMUTE({})", list(items, ", ")),
        PatternSpec::Exclude(inner) => format!("{{- {} -}}", describe_pattern(inner, variables)),
        PatternSpec::Start => "^".into(),
        PatternSpec::End => "$".into(),
        PatternSpec::Empty => "()".into(),
        PatternSpec::Quantified { pattern, min, max, greedy } => {
            let inner = match pattern.as_ref() {
                PatternSpec::Variable(_) | PatternSpec::Permute(_) | PatternSpec::Exclude(_) | PatternSpec::Empty => {
                    describe_pattern(pattern, variables)
                }
                _ => format!("({})", describe_pattern(pattern, variables)),
            };
            let quantifier = match (min, max) {
                (0, None) => "*".to_string(),
                (1, None) => "+".to_string(),
                (0, Some(1)) => "?".to_string(),
                (n, None) => format!("{{{n},}}"),
                (n, Some(m)) if n == m => format!("{{{n}}}"),
                (0, Some(m)) => format!("{{,{m}}}"),
                (n, Some(m)) => format!("{{{n},{m}}}"),
            };
            format!("{inner}{quantifier}{}", if *greedy { "" } else { "?" })
        }
    }
}

/// An output row waiting to be built.
#[derive(Debug)]
enum OutputRow {
    Match { key: Vec<u8>, start: u64, labels: Vec<Label>, number: u64 },
    Timeout { key: Vec<u8>, labels: Vec<Label> },
    Unmatched { key: Vec<u8>, row: u64 },
}

/// Column `column` of stored rows of `partitions`, each `(partition,
/// row)` (NULL where the row is `None` or not stored), in one interleave.
fn gather(
    partitions: &[&Partition],
    schema: &SchemaRef,
    column: usize,
    rows: &[(usize, Option<u64>)],
) -> Result<ArrayRef> {
    let data_type = schema.field(column).data_type();
    let null = new_null_array(data_type, 1);
    let mut sources: Vec<&dyn Array> = Vec::new();
    let mut first = Vec::with_capacity(partitions.len());
    for partition in partitions {
        first.push(sources.len());
        sources.extend(partition.chunks.iter().map(|chunk| chunk.column(column).as_ref()));
    }
    sources.push(null.as_ref());
    let null_source = sources.len() - 1;
    let indices: Vec<(usize, usize)> = rows
        .iter()
        .map(|(part, row)| {
            row.and_then(|row| partitions[*part].locate(row))
                .map_or((null_source, 0), |(chunk, offset)| (first[*part] + chunk, offset))
        })
        .collect();
    Ok(interleave(&sources, &indices)?)
}

fn cast_to(array: ArrayRef, data_type: &DataType) -> Result<ArrayRef> {
    if array.data_type() == data_type {
        return Ok(array);
    }
    Ok(datafusion::arrow::compute::cast(&array, data_type)?)
}

/// One place an expression is evaluated: a position in a match (or in a
/// thread's rows) of one of the evaluation's partitions.
#[derive(Debug, Clone, Copy)]
struct At<'a> {
    part: usize,
    labels: &'a [Label],
    /// The match's number (0: no match, a timeout row).
    number: u64,
    /// RUNNING: the labels up to this index; `None`: the whole match.
    position: Option<usize>,
}

impl At<'_> {
    /// The labels a navigation considers.
    fn considered(&self, final_semantics: bool) -> &[Label] {
        match (self.position, final_semantics) {
            (Some(index), false) => &self.labels[..=index.min(self.labels.len().saturating_sub(1))],
            _ => self.labels,
        }
    }

    fn number(&self) -> Option<i64> {
        (self.number > 0).then(|| i64::try_from(self.number).unwrap_or(i64::MAX))
    }
}

/// Evaluates expressions at many places at once, over rows of several
/// partitions: each navigation becomes one column of one batch.
struct Evaluation<'a> {
    operator: &'a MatchRecognize,
    partitions: &'a [&'a Partition],
}

impl Evaluation<'_> {
    /// `compiled` at each of `ats`.
    fn evaluate(&self, compiled: &CompiledExpr, ats: &[At]) -> Result<ArrayRef> {
        let count = ats.len();
        let mut columns = Vec::with_capacity(compiled.navigations.len());
        for (index, navigation) in compiled.navigations.iter().enumerate() {
            let field = compiled.schema.field(index);
            columns.push(self.navigation(navigation, field, ats)?);
        }
        let options = datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(count));
        let batch = RecordBatch::try_new_with_options(compiled.schema.clone(), columns, &options)?;
        Ok(match compiled.expr.evaluate(&batch)? {
            ColumnarValue::Array(array) => array,
            ColumnarValue::Scalar(scalar) => scalar.to_array_of_size(count)?,
        })
    }

    fn select(&self, select: &RowSelect, at: &At) -> Option<u64> {
        // FIRST counts from the match's first row over the whole match, as
        // Trino does (`FIRST(x, 2)` is the third row even before it is
        // reached); LAST counts back from the current row when RUNNING.
        let labels = if select.from_first { at.labels } else { at.considered(select.final_semantics) };
        let mut rows = labels
            .iter()
            .filter(|label| select.vars.as_ref().is_none_or(|vars| vars.contains(&label.var)))
            .map(|label| label.row);
        let logical = usize::try_from(select.logical).ok()?;
        let row = if select.from_first { rows.nth(logical) } else { rows.rev().nth(logical) }?;
        let row = i64::try_from(row).ok()?.checked_add(select.physical)?;
        let row = u64::try_from(row).ok()?;
        (row < self.partitions[at.part].released).then_some(row)
    }

    fn navigation(&self, navigation: &Navigation, field: &Field, ats: &[At]) -> Result<ArrayRef> {
        let spec = &self.operator.spec;
        match navigation {
            Navigation::Value { column, select } => {
                let rows: Vec<(usize, Option<u64>)> = ats.iter().map(|at| (at.part, self.select(select, at))).collect();
                cast_to(gather(self.partitions, &spec.input_schema, *column, &rows)?, field.data_type())
            }
            Navigation::Classifier { select } => {
                let names: Vec<Option<&str>> = ats
                    .iter()
                    .map(|at| {
                        // A physical offset may reach past the current row,
                        // within the match (past it: NULL).
                        let row = self.select(select, at)?;
                        let label = at.labels.iter().find(|label| label.row == row)?;
                        spec.variables.get(label.var).map(String::as_str)
                    })
                    .collect();
                Ok(Arc::new(StringArray::from(names)))
            }
            // A timeout row is no match: no number.
            Navigation::MatchNumber => Ok(Arc::new(Int64Array::from_iter(ats.iter().map(At::number)))),
            Navigation::Aggregate { aggregate, vars, final_semantics } => {
                // Every place's rows in one batch, grouped by place.
                let mut rows = Vec::new();
                let mut names = Vec::new();
                let mut numbers = Vec::new();
                let mut groups = Vec::new();
                for (group, at) in ats.iter().enumerate() {
                    let labels = at.considered(*final_semantics);
                    for label in
                        labels.iter().filter(|label| vars.as_ref().is_none_or(|vars| vars.contains(&label.var)))
                    {
                        rows.push((at.part, Some(label.row)));
                        names.push(spec.variables.get(label.var).map(String::as_str));
                        numbers.push(at.number());
                        groups.push(group);
                    }
                }
                let mut columns = (0..spec.input_schema.fields().len())
                    .map(|column| gather(self.partitions, &spec.input_schema, column, &rows))
                    .collect::<Result<Vec<_>>>()?;
                // Each row's variable and the match's number follow.
                columns.push(Arc::new(StringArray::from(names)));
                columns.push(Arc::new(Int64Array::from(numbers)));
                let options = datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(rows.len()));
                let input =
                    RecordBatch::try_new_with_options(self.operator.aggregate_schema.clone(), columns, &options)?;
                let arguments = aggregate
                    .expressions()
                    .iter()
                    .map(|expr| expr.evaluate(&input).and_then(|value| value.into_array(input.num_rows())))
                    .collect::<datafusion::common::Result<Vec<_>>>()?;
                let array = if aggregate.groups_accumulator_supported() {
                    // A groups accumulator expects every group to get a row
                    // (as in a hash aggregate): places without rows take
                    // the value of an accumulator that saw none.
                    let mut dense = Vec::with_capacity(groups.len());
                    let mut place_group = vec![None; ats.len()];
                    let mut seen = 0;
                    for group in &groups {
                        let id = *place_group[*group].get_or_insert_with(|| {
                            seen += 1;
                            seen - 1
                        });
                        dense.push(id);
                    }
                    let mut accumulator = aggregate.create_groups_accumulator()?;
                    accumulator.update_batch(&arguments, &dense, None, seen)?;
                    let values = accumulator.evaluate(datafusion::logical_expr::EmitTo::All)?;
                    if seen == ats.len() {
                        values
                    } else {
                        let empty = aggregate.create_accumulator()?.evaluate()?.to_array_of_size(1)?;
                        let empty = cast_to(empty, values.data_type())?;
                        let indices: Vec<(usize, usize)> =
                            place_group.iter().map(|id| id.map_or((1, 0), |id| (0, id))).collect();
                        interleave(&[values.as_ref(), empty.as_ref()], &indices)?
                    }
                } else {
                    // One accumulator per place, over its run of rows.
                    let mut values = Vec::with_capacity(ats.len());
                    let mut from = 0;
                    for group in 0..ats.len() {
                        let to = from + groups[from..].iter().take_while(|row_group| **row_group == group).count();
                        let slice: Vec<ArrayRef> =
                            arguments.iter().map(|argument| argument.slice(from, to - from)).collect();
                        let mut accumulator = aggregate.create_accumulator()?;
                        accumulator.update_batch(&slice)?;
                        values.push(accumulator.evaluate()?);
                        from = to;
                    }
                    if values.is_empty() {
                        new_null_array(field.data_type(), 0)
                    } else {
                        ScalarValue::iter_to_array(values)?
                    }
                };
                cast_to(array, field.data_type())
            }
        }
    }
}

/// The matcher's questions, answered from the partition's rows.
struct Define<'a> {
    operator: &'a MatchRecognize,
    partition: &'a mut Partition,
}

impl Conditions for Define<'_> {
    fn holds(&mut self, var: usize, row: u64, labels: &Labels) -> Result<bool> {
        let Some(define) = self.operator.spec.defines.get(var).and_then(Option::as_ref) else {
            return Ok(true);
        };
        let slot = row.checked_sub(self.partition.base).map(|slot| slot as usize);
        if self.operator.position_only
            && let Some(answer) = slot.and_then(|slot| self.partition.answers.get(slot, var))
        {
            return Ok(answer);
        }
        let labels = if self.operator.position_only { Vec::new() } else { labels.to_vec() };
        let mut labels = labels;
        labels.push(Label { row, var, excluded: false });
        let position = labels.len() - 1;
        // The match being attempted is the partition's next.
        let number = self.partition.matches + 1;
        let evaluation = Evaluation { operator: self.operator, partitions: &[&*self.partition] };
        let at = At { part: 0, labels: &labels, number, position: Some(position) };
        let value = evaluation.evaluate(define, &[at])?;
        let holds = value.as_boolean_opt().is_some_and(|values| values.is_valid(0) && values.value(0));
        if self.operator.position_only
            && let Some(slot) = slot
        {
            self.partition.answers.set(slot, var, holds);
        }
        Ok(holds)
    }
}

impl Operator for MatchRecognize {
    fn state_size(&self) -> Option<StateSize> {
        let batches = self.pending.iter().chain(self.partitions.values().flat_map(|partition| &partition.chunks));
        let (rows, bytes) = batches
            .fold((0, 0), |(rows, bytes), batch| (rows + batch.num_rows(), bytes + batch.get_array_memory_size()));
        Some(StateSize { rows: rows as u64, bytes: bytes as u64 })
    }

    fn on_batch(&mut self, _port: usize, batch: StreamBatch, _out: &mut Vec<Message>) -> Result<()> {
        if batch.ops.as_ref().is_some_and(|ops| ops.iter().any(|op| *op != crate::message::Op::Insert)) {
            return Err(RuntimeError::user("MATCH_RECOGNIZE reads append-only input; it got a retraction"));
        }
        if batch.num_rows() == 0 {
            return Ok(());
        }
        // Rows below the watermark came too late to be ordered: dropped and
        // counted as late.
        let times = event_times(batch.rows.column(self.spec.time_column))?;
        let on_time: Vec<u32> = (0..batch.num_rows() as u32)
            .filter(|row| times[*row as usize].is_some_and(|time| Watermark(time) >= self.watermark))
            .collect();
        let late = batch.num_rows() - on_time.len();
        if late > 0 {
            QueryMetrics::add(&self.metrics.late_rows_dropped, late as u64);
        }
        let rows = if late > 0 { take_record_batch(&batch.rows, &UInt32Array::from(on_time))? } else { batch.rows };
        self.pending.push(rows);
        self.report_state();
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Watermark, out: &mut Vec<Message>) -> Result<()> {
        self.watermark = self.watermark.max(watermark);
        self.advance(watermark == Watermark::MAX, out)
    }

    fn on_end(&mut self, out: &mut Vec<Message>) -> Result<()> {
        self.watermark = Watermark::MAX;
        self.advance(true, out)
    }

    fn snapshot(&mut self) -> Result<OperatorState> {
        let mut state = OperatorState::default();
        let schema = &self.spec.input_schema;
        let pending = concat_batches(schema, &self.pending)?;
        state.put(PENDING_STATE, pending);
        // Stored rows with their partition and number.
        let mut keys: Vec<&[u8]> = Vec::new();
        let mut numbers = Vec::new();
        let mut chunks = Vec::new();
        for (key, partition) in &self.partitions {
            let mut row = partition.base;
            for chunk in &partition.chunks {
                for _ in 0..chunk.num_rows() {
                    keys.push(key);
                    numbers.push(row as i64);
                    row += 1;
                }
                chunks.push(chunk.clone());
            }
        }
        let rows = concat_batches(schema, &chunks)?;
        let mut columns: Vec<(String, ArrayRef)> = schema
            .fields()
            .iter()
            .zip(rows.columns())
            .map(|(field, column)| (field.name().clone(), column.clone()))
            .collect();
        columns.push(("__partition".into(), rows_column(keys.iter().copied())));
        columns.push(("__row".into(), Arc::new(Int64Array::from(numbers))));
        state.put(ROWS_STATE, crate::state::batch_of(columns)?);
        let mut partition_keys: Vec<&[u8]> = Vec::new();
        let mut scalars: Vec<[i64; 5]> = Vec::new();
        let mut matchers: Vec<Vec<u8>> = Vec::new();
        for (key, partition) in &self.partitions {
            partition_keys.push(key);
            scalars.push([
                partition.base as i64,
                partition.released as i64,
                partition.start as i64,
                partition.matches as i64,
                partition.covered as i64,
            ]);
            let snapshot = partition.matcher.as_ref().map(Matcher::snapshot);
            let mut bytes = Vec::new();
            if let Some(values) = snapshot {
                bytes.push(1u8);
                for value in values {
                    bytes.extend(value.to_le_bytes());
                }
            }
            matchers.push(bytes);
        }
        let column =
            |index: usize| -> ArrayRef { Arc::new(Int64Array::from_iter_values(scalars.iter().map(|s| s[index]))) };
        state.put(
            PARTITIONS_STATE,
            batch(vec![
                ("key", rows_column(partition_keys.iter().copied())),
                ("base", column(0)),
                ("released", column(1)),
                ("start", column(2)),
                ("matches", column(3)),
                ("covered", column(4)),
                ("matcher", rows_column(matchers.iter().map(Vec::as_slice))),
            ])?,
        );
        state.put_value(WATERMARK_STATE, self.watermark.0);
        state.put_value("sent_watermark", self.sent_watermark.0);
        Ok(state)
    }

    fn restore(&mut self, mut state: OperatorState) -> Result<()> {
        let schema = self.spec.input_schema.clone();
        let pending = crate::state::with_schema(&schema, state.take(PENDING_STATE)?)?;
        if pending.num_rows() > 0 {
            self.pending.push(pending);
        }
        let partitions = state.take(PARTITIONS_STATE)?;
        let keys = binary_column(&partitions, "key")?;
        let matchers = binary_column(&partitions, "matcher")?;
        let value =
            |name: &str, index: usize| -> Result<u64> { Ok(i64_column(&partitions, name)?.value(index) as u64) };
        for index in 0..partitions.num_rows() {
            let mut partition = Partition::new(self.spec.variables.len());
            partition.base = value("base", index)?;
            partition.released = value("released", index)?;
            partition.start = value("start", index)?;
            partition.matches = value("matches", index)?;
            partition.covered = value("covered", index)?;
            let bytes = matchers.value(index);
            if bytes.first() == Some(&1) {
                let values: Vec<i64> = bytes[1..]
                    .chunks_exact(8)
                    .map(|chunk| i64::from_le_bytes(chunk.try_into().unwrap_or_default()))
                    .collect();
                partition.matcher = Some(Matcher::restore(&values)?);
            }
            self.partitions.insert(keys.value(index).to_vec(), partition);
        }
        let rows = state.take(ROWS_STATE)?;
        let row_keys = binary_column(&rows, "__partition")?.clone();
        let columns: Vec<ArrayRef> = (0..schema.fields().len()).map(|column| rows.column(column).clone()).collect();
        let stored = RecordBatch::try_new(schema.clone(), columns)?;
        let times = event_times(stored.column(self.spec.time_column))?;
        let mut from = 0;
        while from < stored.num_rows() {
            let mut to = from + 1;
            while to < stored.num_rows() && row_keys.value(to) == row_keys.value(from) {
                to += 1;
            }
            let partition = self
                .partitions
                .get_mut(row_keys.value(from))
                .ok_or_else(|| RuntimeError::internal("match_recognize state: rows of an unknown partition"))?;
            let first = partition.base + partition.stored() as u64;
            partition.push_chunk(first, stored.slice(from, to - from))?;
            partition.times.extend(times[from..to].iter().map(|time| time.unwrap_or(i64::MIN)));
            partition.answers.extend(to - from);
            from = to;
        }
        self.watermark = Watermark(state.value(WATERMARK_STATE)?);
        self.sent_watermark = Watermark(state.value("sent_watermark")?);
        self.report_state();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::TimestampNanosecondArray;
    use datafusion::arrow::datatypes::TimeUnit;
    use datafusion::functions_aggregate::count::count_udaf;
    use datafusion::logical_expr::Operator as BinaryOperator;
    use datafusion::physical_expr::aggregate::AggregateExprBuilder;
    use datafusion::physical_expr::expressions::{binary, col, lit};

    use super::*;
    use crate::operators::match_recognize::spec::PatternSpec;
    use crate::operators::restore_check::assert_restores;

    fn input_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), false),
            Field::new("k", DataType::Utf8, false),
            Field::new("price", DataType::Int64, false),
        ]))
    }

    fn current(physical: i64) -> RowSelect {
        RowSelect { vars: None, from_first: false, logical: 0, physical, final_semantics: false }
    }

    /// `price <op> PREV(price)` for the variable being defined.
    fn against_previous(op: BinaryOperator) -> CompiledExpr {
        let schema = Arc::new(Schema::new(vec![
            Field::new("__nav_0", DataType::Int64, true),
            Field::new("__nav_1", DataType::Int64, true),
        ]));
        let expr = binary(col("__nav_0", &schema).unwrap(), op, col("__nav_1", &schema).unwrap(), &schema).unwrap();
        CompiledExpr {
            navigations: vec![
                Navigation::Value { column: 2, select: current(0) },
                Navigation::Value { column: 2, select: current(-1) },
            ],
            schema,
            expr,
            text: "price vs PREV(price)".into(),
        }
    }

    /// A measure reading one navigation.
    fn measure(navigation: Navigation, data_type: DataType) -> CompiledExpr {
        let schema = Arc::new(Schema::new(vec![Field::new("__nav_0", data_type, true)]));
        let expr = col("__nav_0", &schema).unwrap();
        CompiledExpr { navigations: vec![navigation], schema, expr, text: String::new() }
    }

    /// V shapes per key: STRT DOWN+ UP+, ONE ROW PER MATCH, measures
    /// (first price, bottom price, count of rows, match number).
    fn v_shape(rows_per_match: RowsPerMatch, within: Option<i64>) -> MatchRecognizeSpec {
        let input = input_schema();
        let last_of = |var: usize| RowSelect { vars: Some(vec![var]), ..current(0) };
        let count = Arc::new(
            AggregateExprBuilder::new(count_udaf(), vec![lit(1_i64)]).schema(input.clone()).alias("n").build().unwrap(),
        );
        let measures = vec![
            (
                "start_price".to_string(),
                measure(
                    Navigation::Value { column: 2, select: RowSelect { from_first: true, ..last_of(0) } },
                    DataType::Int64,
                ),
            ),
            ("bottom".to_string(), measure(Navigation::Value { column: 2, select: last_of(1) }, DataType::Int64)),
            (
                "rows".to_string(),
                measure(Navigation::Aggregate { aggregate: count, vars: None, final_semantics: true }, DataType::Int64),
            ),
            ("number".to_string(), measure(Navigation::MatchNumber, DataType::Int64)),
        ];
        let mut fields = vec![Field::new("k", DataType::Utf8, false)];
        fields.extend(measures.iter().map(|(name, _)| Field::new(name, DataType::Int64, true)));
        if rows_per_match == (RowsPerMatch::One { timeouts: true }) {
            fields.push(Field::new("timed_out", DataType::Boolean, false));
        }
        let plus = |var| PatternSpec::Quantified {
            pattern: Box::new(PatternSpec::Variable(var)),
            min: 1,
            max: None,
            greedy: true,
        };
        MatchRecognizeSpec {
            input_schema: input,
            partition_by: vec![1],
            time_column: 0,
            order_by: Vec::new(),
            variables: vec!["STRT".into(), "DOWN".into(), "UP".into()],
            subsets: Vec::new(),
            pattern: PatternSpec::Concat(vec![PatternSpec::Variable(0), plus(1), plus(2)]),
            defines: vec![None, Some(against_previous(BinaryOperator::Lt)), Some(against_previous(BinaryOperator::Gt))],
            measures,
            rows_per_match,
            skip: SkipTo::PastLastRow,
            within,
            output_schema: Arc::new(Schema::new(fields)),
            output_time: None,
        }
    }

    fn rows(values: &[(i64, &str, i64)]) -> Message {
        let batch = RecordBatch::try_new(
            input_schema(),
            vec![
                Arc::new(TimestampNanosecondArray::from_iter_values(values.iter().map(|(ts, _, _)| *ts))),
                Arc::new(StringArray::from_iter_values(values.iter().map(|(_, k, _)| *k))),
                Arc::new(Int64Array::from_iter_values(values.iter().map(|(_, _, price)| *price))),
            ],
        )
        .unwrap();
        Message::Batch(StreamBatch::inserts(batch))
    }

    fn messages() -> Vec<(usize, Message)> {
        vec![
            // Out of order within the watermark delay: sorted by time.
            (0, rows(&[(2, "a", 8), (1, "a", 10), (1, "b", 5)])),
            (0, rows(&[(3, "a", 9), (2, "b", 4)])),
            (0, Message::Watermark(Watermark(3))),
            (0, rows(&[(4, "a", 12), (3, "b", 3), (5, "a", 7)])),
            // Late: below the watermark, dropped.
            (0, rows(&[(1, "a", 100)])),
            (0, Message::Watermark(Watermark(5))),
            (0, rows(&[(6, "a", 6), (4, "b", 6), (7, "a", 9), (5, "b", 2)])),
            (0, Message::Watermark(Watermark(8))),
            (0, Message::Watermark(Watermark::MAX)),
            (0, Message::End),
        ]
    }

    fn new(spec: MatchRecognizeSpec) -> impl Fn() -> Box<dyn Operator> {
        move || Box::new(MatchRecognize::new(spec.clone(), Arc::new(QueryMetrics::default())).unwrap())
    }

    #[test]
    fn v_shapes_per_partition_restore_between_any_two_messages() {
        let out = assert_restores(new(v_shape(RowsPerMatch::One { timeouts: false }, None)), &messages());
        // a: 10 8 9 12 | 7 6 9; b: 5 4 3 2 (no rise). The rows (1, a, 100)
        // and (4, b, 6) came below the watermark: late, dropped.
        let rows: Vec<String> = out.iter().filter(|line| line.starts_with('+')).cloned().collect();
        assert_eq!(rows, vec!["+ a, 10, 8, 4, 1", "+ a, 7, 6, 3, 2"]);
        // The watermark comes out once rows no running attempt can use are
        // behind it.
        assert!(out.iter().any(|line| line == "watermark 9223372036854775807"), "{out:?}");
    }

    #[test]
    fn within_cuts_partial_matches_into_timeout_rows_and_restores() {
        let out = assert_restores(new(v_shape(RowsPerMatch::One { timeouts: true }, Some(2))), &messages());
        let mut rows: Vec<&str> = out.iter().filter(|line| line.starts_with('+')).map(String::as_str).collect();
        rows.sort();
        // A match cut short by WITHIN keeps what it matched (a's first V,
        // three rows); attempts that cannot complete any more (their next
        // row, or the watermark, past their start + 2 ns) are timeout rows
        // with the rows they had.
        assert_eq!(
            rows,
            [
                "+ a, 10, 8, 3, 1, false",
                "+ a, 12, 6, 3, , true",
                "+ a, 7, 6, 3, 2, false",
                "+ b, 2, , 1, , true",
                "+ b, 3, 2, 2, , true",
                "+ b, 4, 3, 2, , true",
                "+ b, 5, 3, 3, , true",
            ]
        );
    }
}
