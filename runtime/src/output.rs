//! The output of one query: a numbered log of result rows that any number of
//! subscribers read.
//!
//! Every result row gets a sequence number (`seq`), starting at 0. The log
//! keeps the most recent rows (`retained_rows`, default 10 000) so that a
//! subscriber that connects after the query started, or reconnects, can ask
//! for rows from a given `seq` on.
//!
//! # Slow subscribers
//!
//! Each subscriber reads from its own bounded queue of
//! [`SUBSCRIBER_QUEUE`] events. Publishing never waits: a subscriber whose
//! queue is full is cut off (its queue is closed), and it can reconnect from
//! the last `seq` it saw. A slow or vanished client therefore never stalls
//! the query or the other subscribers.

use std::any::Any;
use std::collections::VecDeque;
use std::sync::{Mutex, OnceLock};

use datafusion::arrow::datatypes::SchemaRef;
use tokio::sync::mpsc;

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, Int8Array, RecordBatch};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::Int8Type;

use crate::error::Result;
use crate::message::{Op, StreamBatch, Watermark};
use crate::state::OperatorState;

/// Events a subscriber's queue holds before it is cut off.
/// Frames share their batches with the log, so a long queue costs little;
/// it must absorb a burst such as the final watermark closing every window.
pub const SUBSCRIBER_QUEUE: usize = 16_384;

/// What subscribers receive.
#[derive(Debug, Clone)]
pub enum OutputEvent {
    /// Rows numbered `seq`, `seq + 1`, ...; `shared` is what subscribers
    /// made of them, so a frame is encoded once however many read it.
    Rows { seq: u64, batch: StreamBatch, shared: SharedEncoding },
    /// The query's watermark advanced.
    Progress { watermark: Watermark },
    /// The query finished: every row has been sent.
    End,
    /// The query failed.
    Failed { message: String },
    /// The server is shutting down: the query stopped after a final
    /// checkpoint and resumes from it when the server starts again.
    Shutdown,
    /// A materialized view's current result, as inserts: what the rows
    /// before `next_seq` add up to. The changes from `next_seq` follow.
    Snapshot { next_seq: u64, rows: RecordBatch },
}

/// A slot every subscriber of one [`OutputEvent::Rows`] shares: the first
/// to need an encoding of the rows (a websocket frame, say) puts it here and
/// the others reuse it. The runtime never looks inside.
#[derive(Clone, Default)]
pub struct SharedEncoding(Arc<OnceLock<Arc<dyn Any + Send + Sync>>>);

impl SharedEncoding {
    /// The value in the slot, made by `init` if the slot is empty; `None` if
    /// it holds a value of another type.
    pub fn get_or_init<T: Any + Send + Sync>(&self, init: impl FnOnce() -> T) -> Option<&T> {
        self.0.get_or_init(|| Arc::new(init())).downcast_ref()
    }
}

impl std::fmt::Debug for SharedEncoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() { "SharedEncoding(set)" } else { "SharedEncoding(empty)" })
    }
}

/// A new subscriber's queue, and the oldest row the log still had for it.
pub struct Subscribed {
    /// The `seq` of the first row the subscriber will receive (or of the
    /// next row published, when nothing is retained). Greater than the
    /// `from_seq` asked for when older rows are no longer retained: the
    /// subscriber must be told of the gap.
    pub first_available: u64,
    pub events: mpsc::Receiver<OutputEvent>,
}

struct Log {
    next_seq: u64,
    /// Retained batches with the seq of their first row, oldest first.
    retained: VecDeque<(u64, StreamBatch, SharedEncoding)>,
    retained_rows: usize,
    watermark: Option<Watermark>,
    /// `End` or `Failed`, once the query stopped.
    terminal: Option<OutputEvent>,
    /// Each subscriber's queue and the first row it wants: a recovered
    /// query emits again rows a subscriber that came back already has.
    subscribers: Vec<(mpsc::Sender<OutputEvent>, u64)>,
    /// Subscribers cut off for a full queue.
    lagged: u64,
    /// A materialized view's current result.
    current: Option<crate::materialized::CurrentResult>,
}

/// The numbered output log of one query.
pub struct QueryOutput {
    schema: SchemaRef,
    max_retained_rows: usize,
    /// Each subscriber's queue, in events.
    queue: usize,
    // A std Mutex: held only to append or to register a subscriber, never
    // across an await.
    log: Mutex<Log>,
}

impl QueryOutput {
    pub fn new(schema: SchemaRef, max_retained_rows: usize) -> Self {
        Self {
            schema,
            max_retained_rows,
            queue: SUBSCRIBER_QUEUE,
            log: Mutex::new(Log {
                next_seq: 0,
                retained: VecDeque::new(),
                retained_rows: 0,
                watermark: None,
                terminal: None,
                subscribers: Vec::new(),
                lagged: 0,
                current: None,
            }),
        }
    }

    /// The output also keeps the current result (a materialized view's).
    pub fn with_current_result(self) -> Result<Self> {
        let current = crate::materialized::CurrentResult::new(self.schema.clone())?;
        self.with_log(|log| log.current = Some(current));
        Ok(self)
    }

    /// The current result, if the output keeps it.
    pub fn current_rows(&self) -> Option<Result<RecordBatch>> {
        self.with_log(|log| log.current.as_ref().map(crate::materialized::CurrentResult::batch))
    }

    /// Rows in the current result, if the output keeps it.
    pub fn current_len(&self) -> Option<u64> {
        self.with_log(|log| log.current.as_ref().map(crate::materialized::CurrentResult::len))
    }

    /// A materialized view's subscriber: the current result first, then
    /// every change after it. `None` if the output keeps no result.
    pub fn subscribe_snapshot(&self) -> Option<Result<mpsc::Receiver<OutputEvent>>> {
        self.with_log(|log| {
            let rows = match log.current.as_ref()?.batch() {
                Ok(rows) => rows,
                Err(error) => return Some(Err(error)),
            };
            let (sender, receiver) = mpsc::channel(self.queue.max(2));
            // Cannot fail: a new queue of at least two.
            let _ = sender.try_send(OutputEvent::Snapshot { next_seq: log.next_seq, rows });
            if let Some(watermark) = log.watermark {
                let _ = sender.try_send(OutputEvent::Progress { watermark });
            }
            match &log.terminal {
                Some(terminal) => {
                    let _ = sender.try_send(terminal.clone());
                }
                None => log.subscribers.push((sender, log.next_seq)),
            }
            Some(Ok(receiver))
        })
    }

    /// Subscribers' queues hold `events` (at least 1) instead of
    /// [`SUBSCRIBER_QUEUE`].
    pub fn with_queue(mut self, events: usize) -> Self {
        self.queue = events.max(1);
        self
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn with_log<T>(&self, f: impl FnOnce(&mut Log) -> T) -> T {
        let mut log = match self.log.lock() {
            Ok(log) => log,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut log)
    }

    /// Appends rows to the log and sends them to every subscriber.
    pub fn publish(&self, batch: StreamBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let max_retained_rows = self.max_retained_rows;
        self.with_log(|log| {
            if let Some(current) = &mut log.current {
                current.apply(&batch)?;
            }
            let seq = log.next_seq;
            log.next_seq += batch.num_rows() as u64;
            log.retained_rows += batch.num_rows();
            let shared = SharedEncoding::default();
            log.retained.push_back((seq, batch.clone(), shared.clone()));
            while log.retained_rows > max_retained_rows && log.retained.len() > 1 {
                if let Some((_, dropped, _)) = log.retained.pop_front() {
                    log.retained_rows -= dropped.num_rows();
                }
            }
            broadcast(log, OutputEvent::Rows { seq, batch, shared });
            Ok(())
        })
    }

    pub fn progress(&self, watermark: Watermark) {
        self.with_log(|log| {
            log.watermark = Some(watermark);
            broadcast(log, OutputEvent::Progress { watermark });
        });
    }

    /// The query stopped, normally (`End`) or not (`Failed`).
    pub fn finish(&self, event: OutputEvent) {
        self.with_log(|log| {
            if log.terminal.is_none() {
                log.terminal = Some(event.clone());
                broadcast(log, event);
                log.subscribers.clear();
            }
        });
    }

    /// The next `seq` and the retained rows, for a checkpoint.
    pub fn snapshot(&self) -> Result<OperatorState> {
        self.with_log(|log| {
            let mut state = OperatorState::default();
            state.put_value("next_seq", log.next_seq as i64);
            let first = log.retained.front().map_or(log.next_seq, |(seq, _, _)| *seq);
            state.put_value("first_seq", first as i64);
            let batches: Vec<RecordBatch> = log.retained.iter().map(|(_, batch, _)| batch.rows.clone()).collect();
            state.put("rows", concat_batches(&self.schema, &batches)?);
            let ops = log.retained.iter().flat_map(|(_, batch, _)| {
                (0..batch.num_rows())
                    .map(|row| batch.ops.as_ref().map_or(1i8, |ops| if ops[row] == Op::Insert { 1 } else { -1 }))
            });
            let ops: ArrayRef = Arc::new(Int8Array::from_iter_values(ops));
            state.put("ops", crate::state::batch(vec![("op", ops)])?);
            if let Some(current) = &log.current {
                state.put("current", current.batch()?);
            }
            Ok(state)
        })
    }

    /// Continues numbering after a checkpoint, with its retained rows.
    pub fn restore(&self, mut state: OperatorState) -> Result<()> {
        let next_seq = state.value("next_seq")? as u64;
        let first_seq = state.value("first_seq")? as u64;
        let rows = state.take("rows")?;
        let ops_batch = state.take("ops")?;
        let ops_column = ops_batch.column(0).as_primitive::<Int8Type>();
        let ops = (ops_column.values().iter().any(|op| *op < 0))
            .then(|| ops_column.values().iter().map(|op| if *op < 0 { Op::Delete } else { Op::Insert }).collect());
        let rows = RecordBatch::try_new(self.schema.clone(), rows.columns().to_vec())?;
        let current = match state.take("current") {
            Ok(current) => Some(RecordBatch::try_new(self.schema.clone(), current.columns().to_vec())?),
            Err(_) => None,
        };
        self.with_log(|log| {
            if let (Some(kept), Some(rows)) = (&mut log.current, &current) {
                kept.restore(rows)?;
            }
            log.next_seq = next_seq;
            log.retained.clear();
            log.retained_rows = rows.num_rows();
            if rows.num_rows() > 0 {
                log.retained.push_back((first_seq, StreamBatch { rows, ops }, SharedEncoding::default()));
            }
            Ok(())
        })
    }

    /// Rows published so far.
    pub fn rows_published(&self) -> u64 {
        self.with_log(|log| log.next_seq)
    }

    /// Subscribers now connected, and how many were cut off for falling
    /// behind since the query started.
    pub fn subscriber_counts(&self) -> (usize, u64) {
        self.with_log(|log| {
            log.subscribers.retain(|(subscriber, _)| !subscriber.is_closed());
            (log.subscribers.len(), log.lagged)
        })
    }

    /// Subscribes from row `from_seq` on (rows older than the retained ones
    /// are gone; the replay starts at the oldest retained row).
    pub fn subscribe(&self, from_seq: u64) -> mpsc::Receiver<OutputEvent> {
        self.subscribe_at(from_seq).events
    }

    /// [`subscribe`](QueryOutput::subscribe), saying where the rows it
    /// receives start.
    pub fn subscribe_at(&self, from_seq: u64) -> Subscribed {
        self.with_log(|log| {
            let first_available = log.retained.front().map_or(log.next_seq, |(seq, _, _)| *seq).max(from_seq);
            let backlog: Vec<OutputEvent> = log
                .retained
                .iter()
                .filter(|(seq, batch, _)| seq + batch.num_rows() as u64 > from_seq)
                .map(|(seq, batch, shared)| {
                    let skip = from_seq.saturating_sub(*seq) as usize;
                    if skip == 0 {
                        return OutputEvent::Rows { seq: *seq, batch: batch.clone(), shared: shared.clone() };
                    }
                    let rest = batch.slice(skip, batch.num_rows() - skip);
                    OutputEvent::Rows { seq: seq + skip as u64, batch: rest, shared: SharedEncoding::default() }
                })
                .chain(log.watermark.map(|watermark| OutputEvent::Progress { watermark }))
                .chain(log.terminal.clone())
                .collect();
            let (sender, receiver) = mpsc::channel(self.queue.max(backlog.len() + 1));
            for event in backlog {
                // Cannot fail: the queue was sized for the backlog.
                let _ = sender.try_send(event);
            }
            if log.terminal.is_none() {
                log.subscribers.push((sender, from_seq));
            }
            Subscribed { first_available, events: receiver }
        })
    }
}

fn broadcast(log: &mut Log, event: OutputEvent) {
    // Full or closed queues are dropped: see "Slow subscribers" above.
    let mut lagged = 0;
    log.subscribers.retain(|(subscriber, from_seq)| {
        let event = match &event {
            // Rows it already has are not sent again.
            OutputEvent::Rows { seq, batch, .. } if seq + batch.num_rows() as u64 <= *from_seq => return true,
            OutputEvent::Rows { seq, batch, .. } if seq < from_seq => {
                let skip = (from_seq - seq) as usize;
                let rest = batch.slice(skip, batch.num_rows() - skip);
                OutputEvent::Rows { seq: *from_seq, batch: rest, shared: SharedEncoding::default() }
            }
            event => event.clone(),
        };
        subscriber.try_send(event).is_ok() || {
            lagged += u64::from(!subscriber.is_closed());
            false
        }
    });
    log.lagged += lagged;
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn rows(schema: &SchemaRef, values: Vec<i64>) -> StreamBatch {
        StreamBatch::inserts(RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(values))]).unwrap())
    }

    #[test]
    fn late_subscriber_replays_from_seq() {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let output = QueryOutput::new(schema.clone(), 100);
        output.publish(rows(&schema, vec![1, 2, 3])).unwrap();
        output.publish(rows(&schema, vec![4, 5])).unwrap();
        output.finish(OutputEvent::End);
        let mut receiver = output.subscribe(2);
        match receiver.try_recv().unwrap() {
            OutputEvent::Rows { seq, batch, .. } => {
                assert_eq!(seq, 2);
                assert_eq!(batch.num_rows(), 1);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(receiver.try_recv().unwrap(), OutputEvent::Rows { seq: 3, .. }));
        assert!(matches!(receiver.try_recv().unwrap(), OutputEvent::End));
    }

    /// A subscriber that comes back at row 4 of a query recovered from an
    /// earlier checkpoint gets the re-emitted rows from 4 on only.
    #[test]
    fn a_subscriber_ahead_of_the_output_gets_no_row_twice() {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let output = QueryOutput::new(schema.clone(), 100);
        let mut receiver = output.subscribe(4);
        output.publish(rows(&schema, vec![0, 1, 2])).unwrap();
        output.publish(rows(&schema, vec![3, 4, 5])).unwrap();
        output.publish(rows(&schema, vec![6])).unwrap();
        let mut seen = Vec::new();
        while let Ok(OutputEvent::Rows { seq, batch, .. }) = receiver.try_recv() {
            let values = batch.rows.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
            seen.push((seq, values.values().to_vec()));
        }
        assert_eq!(seen, vec![(4, vec![4, 5]), (6, vec![6])]);
    }

    #[test]
    fn a_full_subscriber_is_cut_off_without_blocking() {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let output = QueryOutput::new(schema.clone(), 10);
        let mut slow = output.subscribe(0);
        for value in 0..(SUBSCRIBER_QUEUE as i64 + 10) {
            output.publish(rows(&schema, vec![value])).unwrap();
        }
        let mut received = 0;
        while let Ok(event) = slow.try_recv() {
            assert!(matches!(event, OutputEvent::Rows { .. }));
            received += 1;
        }
        assert_eq!(received, SUBSCRIBER_QUEUE);
        assert!(slow.is_closed() || slow.try_recv().is_err());
        assert_eq!(output.rows_published(), SUBSCRIBER_QUEUE as u64 + 10);
        assert_eq!(output.subscriber_counts(), (0, 1));
    }

    #[test]
    fn a_subscriber_is_told_where_the_retained_rows_start() {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let output = QueryOutput::new(schema.clone(), 4);
        for value in 0..5 {
            output.publish(rows(&schema, vec![value * 2, value * 2 + 1])).unwrap();
        }
        // 10 rows published, the last 4 (seq 6 to 9) retained.
        let from_start = output.subscribe_at(0);
        assert_eq!(from_start.first_available, 6);
        let mut events = from_start.events;
        assert!(matches!(events.try_recv().unwrap(), OutputEvent::Rows { seq: 6, .. }));
        assert_eq!(output.subscribe_at(7).first_available, 7);
        assert_eq!(output.subscribe_at(12).first_available, 12);
        // Nothing retained yet: the next row is the first available.
        let empty = QueryOutput::new(schema, 4);
        assert_eq!(empty.subscribe_at(0).first_available, 0);
    }

    #[test]
    fn subscribers_of_one_event_share_its_encoding() {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let output = QueryOutput::new(schema.clone(), 100);
        let mut first = output.subscribe(0);
        let mut second = output.subscribe(0);
        output.publish(rows(&schema, vec![1])).unwrap();
        let encoded = |event: OutputEvent, text: &'static str| match event {
            OutputEvent::Rows { shared, .. } => shared.get_or_init(|| text.to_string()).cloned(),
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(encoded(first.try_recv().unwrap(), "first").as_deref(), Some("first"));
        assert_eq!(encoded(second.try_recv().unwrap(), "second").as_deref(), Some("first"));
        // A late subscriber replaying the retained batch shares it too.
        assert_eq!(encoded(output.subscribe(0).try_recv().unwrap(), "late").as_deref(), Some("first"));
    }
}
