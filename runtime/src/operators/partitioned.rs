//! Key-partitioned execution of a stateful operator: a hash exchange in
//! front of `K` instances of it, each holding the state of the keys that
//! hash to it, run on up to `parallelism` threads at once.
//!
//! # Algorithm
//!
//! ```text
//!                ┌─► group 0 ─┐
//!   batch ─hash─►├─► group 1 ─┼─► merge ─► out
//!                └─► group K ─┘
//! ```
//!
//! Each input row goes to key group `hash(keys) * K >> 64`, where the keys
//! are the operator's own (GROUP BY keys, join keys, PARTITION BY, ...), so
//! every key's rows meet in one instance and each instance computes exactly
//! what the whole operator would for its keys. `K`, the *key groups*, is
//! part of the plan (`max_parallelism`, as in Flink); the number of threads
//! is not: the groups are split into `parallelism` contiguous runs, one per
//! thread, only for a call with enough rows to be worth a thread.
//!
//! The merge makes the output a function of the input alone, whatever the
//! threads: the instances' rows in group order, each group's in its own
//! order, and for an operator that emits in event-time order (windows,
//! matches) first by that time, so that windows closing at one watermark
//! come out as they would had the watermark closed them one by one. The
//! watermark out is the least the instances forwarded (a join holds it back
//! per key group).
//!
//! A checkpoint holds each group's state under its number, so a query
//! checkpointed at one parallelism restores at any other; the key groups
//! must match (a different `max_parallelism` is refused at restore).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{cast, concat_batches, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Int64Type, SchemaRef};
use datafusion::common::hash_utils::{RandomState, create_hashes};
use datafusion::physical_expr::PhysicalExpr;

use crate::error::{Result, RuntimeError};
use crate::message::{Message, Op, StreamBatch, Watermark};
use crate::metrics::StateSize;
use crate::operator::Operator;
use crate::operators::groups::evaluate;
use crate::state::OperatorState;

/// Rows in one call below which the groups run on the calling thread: a
/// thread costs tens of microseconds to start.
const PARALLEL_ROWS: usize = 4096;

/// The hash that assigns keys to groups. Fixed, so that a restored query
/// sends each key where its state is.
const HASH_STATE: RandomState = RandomState::with_seed(0x5eed_5eed_u64);

/// How an operator's input splits by key.
#[derive(Debug, Clone)]
pub struct Partitioning {
    /// Per input port, the expressions whose values are the key.
    pub keys: Vec<Vec<Arc<dyn PhysicalExpr>>>,
    /// The output column of event time the operator emits in order of
    /// (a window's end, a match's time), if any.
    pub time_column: Option<usize>,
    /// The operator emits each window as one batch (what lets a sort or
    /// limit above it apply per window): so does the merge, one batch per
    /// value of `time_column`.
    pub batch_per_window: bool,
    /// Keys (of input 0) the groups read from columns appended to each
    /// batch, as the exchange evaluated them, and the schema with them.
    pub appended: Option<(Vec<usize>, SchemaRef)>,
}

impl Partitioning {
    /// Rows split by `keys` (per input port); nothing appended yet.
    pub fn new(keys: Vec<Vec<Arc<dyn PhysicalExpr>>>, time_column: Option<usize>, batch_per_window: bool) -> Self {
        Self { keys, time_column, batch_per_window, appended: None }
    }

    /// For EXPLAIN: `hash [auction@0]`, one list per input.
    pub fn describe(&self) -> String {
        let ports = self.keys.iter().map(|keys| {
            let keys = keys.iter().map(ToString::to_string).collect::<Vec<_>>();
            format!("[{}]", keys.join(", "))
        });
        format!("hash {}", ports.collect::<Vec<_>>().join(" and "))
    }
}

pub struct Partitioned {
    partitioning: Partitioning,
    groups: Vec<Box<dyn Operator>>,
    threads: usize,
    hashes: Vec<u64>,
    /// Rows taken since the last watermark: closing windows is worth
    /// threads only after a busy epoch.
    rows_since_watermark: usize,
    /// The watermark each group forwarded last, and the one forwarded.
    group_watermarks: Vec<Option<Watermark>>,
    watermark: Option<Watermark>,
}

/// Which group of `groups` a key's hash goes to.
fn group_of(hash: u64, groups: usize) -> usize {
    ((u128::from(hash) * groups as u128) >> 64) as usize
}

/// `call` on each of `groups` (with its number), on up to `threads`
/// threads; the results in group order.
fn map_groups<T: Send>(
    groups: &mut [Box<dyn Operator>],
    threads: usize,
    call: impl Fn(usize, &mut dyn Operator) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let threads = threads.clamp(1, groups.len().max(1));
    if threads == 1 {
        return groups.iter_mut().enumerate().map(|(group, operator)| call(group, operator.as_mut())).collect();
    }
    let per_thread = groups.len().div_ceil(threads);
    let call = &call;
    let run = |first: usize, chunk: &mut [Box<dyn Operator>]| -> Result<Vec<T>> {
        chunk.iter_mut().enumerate().map(|(index, operator)| call(first + index, operator.as_mut())).collect()
    };
    let run = &run;
    let results: Vec<Result<Vec<T>>> = std::thread::scope(|scope| {
        let mut chunks = groups.chunks_mut(per_thread).enumerate();
        // The first run on this thread, the others on their own.
        let first = chunks.next();
        let handles: Vec<_> =
            chunks.map(|(index, chunk)| scope.spawn(move || run(index * per_thread, chunk))).collect();
        let mut results: Vec<Result<Vec<T>>> = first.into_iter().map(|(_, chunk)| run(0, chunk)).collect();
        results.extend(handles.into_iter().map(|handle| {
            handle.join().unwrap_or_else(|_| Err(RuntimeError::internal("a key group's thread panicked")))
        }));
        results
    });
    let mut all = Vec::with_capacity(groups.len());
    for run in results {
        all.extend(run?);
    }
    Ok(all)
}

impl Partitioned {
    /// `groups` fresh instances of one spec, run on up to `threads` threads.
    pub fn new(partitioning: Partitioning, groups: Vec<Box<dyn Operator>>, threads: usize) -> Self {
        let count = groups.len();
        Self {
            partitioning,
            groups,
            threads: threads.max(1),
            hashes: Vec::new(),
            rows_since_watermark: 0,
            group_watermarks: vec![None; count],
            watermark: None,
        }
    }

    /// The rows of `batch` per group (`None` for a group with none).
    fn split(&mut self, port: usize, batch: StreamBatch) -> Result<Vec<Option<StreamBatch>>> {
        let count = self.groups.len();
        let keys = self
            .partitioning
            .keys
            .get(port)
            .ok_or_else(|| RuntimeError::internal(format!("no partition keys for input {port}")))?;
        let columns = keys.iter().map(|key| evaluate(key, &batch.rows)).collect::<Result<Vec<ArrayRef>>>()?;
        self.hashes.clear();
        self.hashes.resize(batch.num_rows(), 0);
        create_hashes(&columns, &HASH_STATE, &mut self.hashes)?;
        let mut batch = batch;
        if let (0, Some((evaluated, schema))) = (port, &self.partitioning.appended) {
            let mut all = batch.rows.columns().to_vec();
            all.extend(evaluated.iter().map(|&index| Arc::clone(&columns[index])));
            batch.rows = RecordBatch::try_new(Arc::clone(schema), all)?;
        }
        let mut rows: Vec<Vec<u32>> = vec![Vec::new(); count];
        for (row, hash) in self.hashes.iter().enumerate() {
            rows[group_of(*hash, count)].push(row as u32);
        }
        let mut split: Vec<Option<StreamBatch>> = (0..count).map(|_| None).collect();
        let mut busy = rows.iter().enumerate().filter(|(_, rows)| !rows.is_empty()).map(|(group, _)| group);
        if let (Some(only), None) = (busy.next(), busy.next()) {
            split[only] = Some(batch);
            return Ok(split);
        }
        for (group, rows) in rows.into_iter().enumerate().filter(|(_, rows)| !rows.is_empty()) {
            let ops = batch.ops.as_ref().map(|ops| rows.iter().map(|row| ops[*row as usize]).collect::<Vec<Op>>());
            let taken = take_record_batch(&batch.rows, &UInt32Array::from(rows))?;
            split[group] = Some(StreamBatch { rows: taken, ops });
        }
        Ok(split)
    }

    /// Calls `call` on each group with an input, on several threads if
    /// `parallel`; the groups' outputs in group order, or the first
    /// group's error.
    fn run<I: Send>(
        &mut self,
        inputs: Vec<Option<I>>,
        parallel: bool,
        call: impl Fn(&mut dyn Operator, I, &mut Vec<Message>) -> Result<()> + Sync,
    ) -> Result<Vec<Vec<Message>>> {
        let busy = inputs.iter().filter(|input| input.is_some()).count();
        let threads = if parallel { self.threads.min(busy) } else { 1 };
        let inputs: Vec<std::sync::Mutex<Option<I>>> = inputs.into_iter().map(std::sync::Mutex::new).collect();
        map_groups(&mut self.groups, threads, |group, operator| {
            let mut output = Vec::new();
            let input = inputs[group].lock().map_err(|_| RuntimeError::internal("a key group's input lock"))?.take();
            if let Some(input) = input {
                call(operator, input, &mut output)?;
            }
            Ok(output)
        })
    }

    /// The groups' outputs as one, in the order the module doc says.
    fn merge(&mut self, outputs: Vec<Vec<Message>>, out: &mut Vec<Message>) -> Result<()> {
        let mut batches = Vec::new();
        for (group, messages) in outputs.into_iter().enumerate() {
            for message in messages {
                match message {
                    Message::Batch(batch) if batch.num_rows() == 0 => {}
                    Message::Batch(batch) => batches.push((group, batch)),
                    Message::Watermark(watermark) => self.group_watermarks[group] = Some(watermark),
                    other => {
                        return Err(RuntimeError::internal(format!("a key group emitted {other:?}")));
                    }
                }
            }
        }
        let several_groups = batches.windows(2).any(|pair| pair[0].0 != pair[1].0);
        match self.partitioning.time_column {
            Some(column) if several_groups => {
                let merged = by_time(batches, column)?;
                if self.partitioning.batch_per_window {
                    out.extend(per_window(merged, column)?.into_iter().map(Message::Batch));
                } else {
                    out.push(Message::Batch(merged));
                }
            }
            // One batch for the call, as the whole operator emits: a
            // consumer of a changelog emits per batch it is given.
            _ if batches.len() > 1 => out.push(Message::Batch(concatenated(batches)?)),
            _ => out.extend(batches.into_iter().map(|(_, batch)| Message::Batch(batch))),
        }
        let least = self.group_watermarks.iter().copied().min().flatten();
        if let Some(least) = least
            && self.watermark.is_none_or(|watermark| watermark < least)
        {
            self.watermark = Some(least);
            out.push(Message::Watermark(least));
        }
        Ok(())
    }
}

/// The batches as one, in order.
fn concatenated(batches: Vec<(usize, StreamBatch)>) -> Result<StreamBatch> {
    let schema = batches[0].1.rows.schema();
    let updating = batches.iter().any(|(_, batch)| batch.ops.is_some());
    let ops = updating.then(|| {
        let mut ops = Vec::new();
        for (_, batch) in &batches {
            match &batch.ops {
                Some(batch_ops) => ops.extend_from_slice(batch_ops),
                None => ops.extend(std::iter::repeat_n(Op::Insert, batch.num_rows())),
            }
        }
        ops
    });
    let rows = concat_batches(&schema, batches.iter().map(|(_, batch)| &batch.rows))?;
    Ok(StreamBatch { rows, ops })
}

/// The batches as one, stably sorted by `column` (event time).
fn by_time(batches: Vec<(usize, StreamBatch)>, column: usize) -> Result<StreamBatch> {
    let StreamBatch { rows, ops } = concatenated(batches)?;
    let updating = ops.is_some();
    let ops = ops.unwrap_or_default();
    let times = cast(rows.column(column), &DataType::Int64)?;
    let times = times.as_primitive::<Int64Type>();
    let mut order: Vec<(i64, u32)> = (0..rows.num_rows())
        .map(|row| (if times.is_null(row) { i64::MIN } else { times.value(row) }, row as u32))
        .collect();
    order.sort_unstable();
    let indices = UInt32Array::from(order.iter().map(|(_, row)| *row).collect::<Vec<_>>());
    let rows: RecordBatch = take_record_batch(&rows, &indices)?;
    let ops = updating.then(|| order.iter().map(|(_, row)| ops[*row as usize]).collect());
    Ok(StreamBatch { rows, ops })
}

/// A batch sorted by `column` cut into runs of equal values.
fn per_window(batch: StreamBatch, column: usize) -> Result<Vec<StreamBatch>> {
    let times = cast(batch.rows.column(column), &DataType::Int64)?;
    let times = times.as_primitive::<Int64Type>();
    let mut windows = Vec::new();
    let mut start = 0;
    for row in 1..=batch.num_rows() {
        if row == batch.num_rows()
            || times.is_null(row) != times.is_null(start)
            || times.value(row) != times.value(start)
        {
            windows.push(batch.slice(start, row - start));
            start = row;
        }
    }
    Ok(windows)
}

const KEY_GROUPS: &str = "key_groups";
const WATERMARK: &str = "watermark";

impl Operator for Partitioned {
    fn on_batch(&mut self, port: usize, batch: StreamBatch, out: &mut Vec<Message>) -> Result<()> {
        let rows = batch.num_rows();
        self.rows_since_watermark += rows;
        let inputs = self.split(port, batch)?;
        let outputs = self.run(inputs, rows >= PARALLEL_ROWS, |group, input, out| group.on_batch(port, input, out))?;
        self.merge(outputs, out)
    }

    fn on_watermark(&mut self, watermark: Watermark, out: &mut Vec<Message>) -> Result<()> {
        let parallel = std::mem::take(&mut self.rows_since_watermark) >= PARALLEL_ROWS;
        let inputs = vec![Some(watermark); self.groups.len()];
        let outputs = self.run(inputs, parallel, |group, watermark, out| group.on_watermark(watermark, out))?;
        self.merge(outputs, out)
    }

    fn on_end(&mut self, out: &mut Vec<Message>) -> Result<()> {
        let inputs = vec![Some(()); self.groups.len()];
        let outputs = self.run(inputs, true, |group, (), out| group.on_end(out))?;
        self.merge(outputs, out)
    }

    fn is_finished(&self) -> bool {
        self.groups.iter().all(|group| group.is_finished())
    }

    fn snapshot(&mut self) -> Result<OperatorState> {
        // Each group's snapshot on the threads: the query waits for the
        // slowest run of groups, not for all of them one after another.
        let states = map_groups(&mut self.groups, self.threads, |_, operator| operator.snapshot())?;
        let mut state = OperatorState::default();
        state.put_value(KEY_GROUPS, self.groups.len() as i64);
        if let Some(watermark) = self.watermark {
            state.put_value(WATERMARK, watermark.0);
        }
        for (group, mut inner) in states.into_iter().enumerate() {
            if let Some(watermark) = self.group_watermarks[group] {
                inner.put_value("partitioned.watermark", watermark.0);
            }
            state.nest(&group.to_string(), inner);
        }
        Ok(state)
    }

    fn restore(&mut self, mut state: OperatorState) -> Result<()> {
        let saved = state.value(KEY_GROUPS).map_err(|_| {
            RuntimeError::User(
                "the checkpoint was taken before this operator was split into key groups; restart the query without it"
                    .into(),
            )
        })?;
        if saved != self.groups.len() as i64 {
            return Err(RuntimeError::User(format!(
                "the checkpoint holds {saved} key groups but the query now has {} (max_parallelism); set max_parallelism = {saved} to restore it",
                self.groups.len()
            )));
        }
        self.watermark = state.value(WATERMARK).ok().map(Watermark);
        let mut inners = Vec::with_capacity(self.groups.len());
        for group in 0..self.groups.len() {
            let mut inner = state.unnest(&group.to_string());
            self.group_watermarks[group] = inner.take_value("partitioned.watermark").map(Watermark);
            inners.push(std::sync::Mutex::new(Some(inner)));
        }
        map_groups(&mut self.groups, self.threads, |group, operator| {
            let inner = inners[group].lock().map_err(|_| RuntimeError::internal("a key group's state lock"))?.take();
            let inner = inner.unwrap_or_default();
            operator.restore(inner)
        })?;
        Ok(())
    }

    fn state_size(&self) -> Option<StateSize> {
        let sizes: Vec<StateSize> = self.groups.iter().filter_map(|group| group.state_size()).collect();
        (!sizes.is_empty()).then(|| StateSize {
            rows: sizes.iter().map(|size| size.rows).sum(),
            bytes: sizes.iter().map(|size| size.bytes).sum(),
        })
    }

    fn oldest_open_window(&self) -> Option<i64> {
        self.groups.iter().filter_map(|group| group.oldest_open_window()).min()
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Int64Array, TimestampNanosecondArray};
    use datafusion::arrow::datatypes::{Field, Schema, TimeUnit};
    use datafusion::functions_aggregate::count::count_udaf;
    use datafusion::functions_aggregate::sum::sum_udaf;
    use datafusion::physical_expr::aggregate::AggregateExprBuilder;
    use datafusion::physical_expr::expressions::col;

    use super::*;
    use crate::operators::OperatorSpec;
    use crate::operators::group_aggregate::GroupAggregateSpec;
    use crate::operators::restore_check::assert_restores;

    /// `SELECT k, count(*), sum(v) FROM s GROUP BY k`.
    fn group_by() -> OperatorSpec {
        let input = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("v", DataType::Int64, false),
        ]));
        let value = col("v", &input).unwrap();
        let aggregate = |function, alias: &str| {
            let builder = AggregateExprBuilder::new(function, vec![value.clone()]);
            Arc::new(builder.schema(input.clone()).alias(alias).build().unwrap())
        };
        OperatorSpec::GroupAggregate(GroupAggregateSpec {
            group_exprs: vec![col("k", &input).unwrap()],
            aggregates: vec![aggregate(count_udaf(), "n"), aggregate(sum_udaf(), "total")],
            filters: vec![None, None],
            output_schema: Arc::new(Schema::new(vec![
                Field::new("k", DataType::Int64, false),
                Field::new("n", DataType::Int64, false),
                Field::new("total", DataType::Int64, true),
            ])),
            input_schema: input,
            input_updating: false,
            state_ttl: None,
        })
    }

    fn rows(spec: &OperatorSpec, keys: impl Iterator<Item = i64>) -> (usize, Message) {
        let OperatorSpec::GroupAggregate(aggregate) = spec else { unreachable!() };
        let keys: Vec<i64> = keys.collect();
        let values: Vec<i64> = keys.iter().map(|key| key * 10).collect();
        let rows = RecordBatch::try_new(
            aggregate.input_schema.clone(),
            vec![Arc::new(Int64Array::from(keys)), Arc::new(Int64Array::from(values))],
        )
        .unwrap();
        (0, Message::Batch(StreamBatch::inserts(rows)))
    }

    /// Small batches, then batches big enough to run on threads.
    fn input(spec: &OperatorSpec) -> Vec<(usize, Message)> {
        vec![
            rows(spec, [1, 2, 3, 1].into_iter()),
            (0, Message::Watermark(Watermark(5))),
            rows(spec, (0..6000).map(|row| row % 700)),
            rows(spec, [2].into_iter()),
            (0, Message::Watermark(Watermark(9))),
            rows(spec, (0..5000).map(|row| (row * 7) % 1000)),
            (0, Message::End),
        ]
    }

    fn split(spec: &OperatorSpec, key_groups: usize, threads: usize) -> Box<dyn Operator> {
        let context = crate::operator::OperatorContext { parallelism: threads, ..Default::default() };
        spec.instantiate_in(&context, key_groups).unwrap()
    }

    #[test]
    fn every_parallelism_gives_the_same_rows_and_restores() {
        let spec = group_by();
        let messages = input(&spec);
        let one = assert_restores(|| split(&spec, 4, 1), &messages);
        let two = assert_restores(|| split(&spec, 4, 2), &messages);
        let three = assert_restores(|| split(&spec, 4, 3), &messages);
        assert_eq!(one, two);
        assert_eq!(one, three);
        // The same final result as the whole operator (in another order).
        let whole = assert_restores(|| spec.instantiate(&Default::default()).unwrap(), &messages);
        let last = |lines: &[String]| {
            let mut result = std::collections::BTreeMap::new();
            for line in lines.iter().filter_map(|line| line.strip_prefix("+ ")) {
                let key = line.split(", ").next().unwrap().to_string();
                result.insert(key, line.to_string());
            }
            result
        };
        assert_eq!(last(&one), last(&whole));
        assert_eq!(last(&one).len(), 1000);
        assert_eq!(last(&one)["2"], "2, 16, 320");
        // One watermark out per watermark in.
        assert_eq!(one.iter().filter(|line| line.starts_with("watermark")).count(), 2);
    }

    #[test]
    fn keys_that_are_expressions_reach_the_groups_evaluated() {
        let OperatorSpec::GroupAggregate(mut aggregate) = group_by() else { unreachable!() };
        let key = col("k", &aggregate.input_schema).unwrap();
        let modulo = datafusion::physical_expr::expressions::binary(
            key,
            datafusion::logical_expr::Operator::Modulo,
            datafusion::physical_expr::expressions::lit(7_i64),
            &aggregate.input_schema,
        )
        .unwrap();
        aggregate.group_exprs = vec![modulo];
        let spec = OperatorSpec::GroupAggregate(aggregate);
        let (split_spec, partitioning) = spec.with_evaluated_keys(spec.partitioning().unwrap()).unwrap();
        let OperatorSpec::GroupAggregate(split_aggregate) = &split_spec else { unreachable!() };
        assert!(split_aggregate.group_exprs[0].is::<datafusion::physical_expr::expressions::Column>());
        assert_eq!(
            partitioning.appended.as_ref().map(|(keys, schema)| (keys.clone(), schema.fields().len())),
            Some((vec![0], 3))
        );
        let messages = input(&spec);
        let split_rows = assert_restores(|| split(&spec, 4, 2), &messages);
        let whole = assert_restores(|| spec.instantiate(&Default::default()).unwrap(), &messages);
        let last = |lines: &[String]| {
            let mut result = std::collections::BTreeMap::new();
            for line in lines.iter().filter_map(|line| line.strip_prefix("+ ")) {
                result.insert(line.split(", ").next().unwrap().to_string(), line.to_string());
            }
            result
        };
        assert_eq!(last(&split_rows), last(&whole));
        assert_eq!(last(&whole).len(), 7);
    }

    #[test]
    fn a_checkpoint_taken_on_two_threads_restores_on_one() {
        let spec = group_by();
        let messages = input(&spec);
        let straight = assert_restores(|| split(&spec, 4, 2), &messages);
        let mut first = split(&spec, 4, 2);
        let mut output = Vec::new();
        for (port, message) in &messages[..3] {
            let Message::Batch(batch) = message.clone() else {
                first.on_watermark(Watermark(5), &mut output).unwrap();
                continue;
            };
            first.on_batch(*port, batch, &mut output).unwrap();
        }
        let state = OperatorState::decode(&first.snapshot().unwrap().encode().unwrap()).unwrap();
        let mut second = split(&spec, 4, 1);
        second.restore(state.clone()).unwrap();
        for (port, message) in &messages[3..] {
            match message.clone() {
                Message::Batch(batch) => second.on_batch(*port, batch, &mut output).unwrap(),
                Message::Watermark(watermark) => second.on_watermark(watermark, &mut output).unwrap(),
                _ => second.on_end(&mut output).unwrap(),
            }
        }
        let rows = |messages: &[Message]| {
            messages
                .iter()
                .filter_map(|message| match message {
                    Message::Batch(batch) => Some(batch.num_rows()),
                    _ => None,
                })
                .sum::<usize>()
        };
        let straight_rows = straight.iter().filter(|line| !line.starts_with("watermark")).count();
        assert_eq!(rows(&output), straight_rows);
        // Other key groups: refused with the setting to use.
        let error = split(&spec, 8, 1).restore(state).err().unwrap().to_string();
        assert!(error.contains("holds 4 key groups") && error.contains("max_parallelism = 4"), "{error}");
    }

    #[test]
    fn keys_spread_over_the_groups_and_stay_there() {
        let groups = 8;
        let mut counts = vec![0; groups];
        let keys = Arc::new(Int64Array::from_iter_values(0..10_000)) as ArrayRef;
        let mut hashes = vec![0; 10_000];
        create_hashes(std::slice::from_ref(&keys), &HASH_STATE, &mut hashes).unwrap();
        for hash in &hashes {
            counts[group_of(*hash, groups)] += 1;
        }
        assert!(counts.iter().all(|count| (1_000..1_500).contains(count)), "{counts:?}");
        // The same key always hashes alike (a restored query relies on it).
        let mut again = vec![0; 10_000];
        create_hashes(&[keys], &HASH_STATE, &mut again).unwrap();
        assert_eq!(hashes, again);
    }

    #[test]
    fn batches_of_several_groups_merge_in_time_order_then_group_order() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("window_end", DataType::Timestamp(TimeUnit::Nanosecond, None), false),
        ]));
        let batch = |keys: Vec<i64>, ends: Vec<i64>| {
            StreamBatch::inserts(
                RecordBatch::try_new(
                    schema.clone(),
                    vec![Arc::new(Int64Array::from(keys)), Arc::new(TimestampNanosecondArray::from(ends))],
                )
                .unwrap(),
            )
        };
        let merged =
            by_time(vec![(0, batch(vec![1, 2], vec![20, 10])), (1, batch(vec![3, 4], vec![10, 20]))], 1).unwrap();
        let keys = merged.rows.column(0).as_primitive::<Int64Type>().values().to_vec();
        assert_eq!(keys, vec![2, 3, 1, 4]);
    }
}
