//! The Kafka sink: one record per result row, exactly once through a
//! transactional producer whose transactions follow the checkpoints.
//!
//! # Exactly once
//!
//! Rows are kept until a checkpoint's barrier; there, one transaction
//! writes them (each record carries its row's `seq` in a `sluice.seq`
//! header) and commits before the checkpoint is written. A restarted query
//! first calls `init_transactions` with the sink's `transactional.id`,
//! which aborts a transaction a crash left open, then reads the topic's
//! committed records back to the newest `sluice.seq`: rows up to it are
//! not written again. Since a recovered query emits the same rows under
//! the same seqs, a `read_committed` consumer sees every row once,
//! whichever moment the crash came at. (The sink must be the topic's only
//! writer.) Keeping rows to the barrier means they become visible once per
//! checkpoint, as in Flink and Arroyo.
//!
//! With `delivery = 'at-least-once'` rows are sent at once without
//! transactions and flushed at each checkpoint: lower latency, and a crash
//! may write rows again. A query without checkpoints sends at once too.
//!
//! # Envelopes
//!
//! - `append` (append-only results): the value is the row as JSON.
//! - `upsert`: the key is the `key` column; an insert writes the row, a
//!   delete a tombstone (no value), as a compacted topic wants.
//! - `debezium`: `{"before": row|null, "after": row|null, "op": "c"|"d"}`.

use std::sync::Mutex;
use std::time::Duration;

use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::util::display::array_value_to_string;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::{SharedSinkReport, Sink, update};
use crate::error::{Result, RuntimeError};
use crate::message::{Op, StreamBatch};
use crate::source::kafka::{LOOKUP_TIMEOUT, client_config};

/// The header holding a record's row `seq`.
pub const SEQ_HEADER: &str = "sluice.seq";

/// How long a transaction or flush may take.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkEnvelope {
    Append,
    Upsert,
    Debezium,
}

impl SinkEnvelope {
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "append" => Some(Self::Append),
            "upsert" => Some(Self::Upsert),
            "debezium" => Some(Self::Debezium),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Append => "append",
            Self::Upsert => "upsert",
            Self::Debezium => "debezium",
        }
    }
}

#[derive(Debug, Clone)]
pub struct KafkaSinkSpec {
    pub brokers: String,
    pub topic: String,
    pub envelope: SinkEnvelope,
    /// The column whose value is each record's key.
    pub key: Option<String>,
    /// Transactions with the checkpoints (`false`: at least once).
    pub exactly_once: bool,
    /// The producer's `transactional.id` (stable across restarts).
    pub transactional_id: String,
    /// Extra librdkafka settings (`properties.x = y` options).
    pub properties: Vec<(String, String)>,
}

/// Keeps the newest delivery failure, which fails the sink.
#[derive(Default)]
struct DeliveryContext {
    failure: Mutex<Option<String>>,
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _opaque: ()) {
        if let Err((error, _)) = result
            && let Ok(mut failure) = self.failure.lock()
        {
            *failure = Some(error.to_string());
        }
    }
}

/// A record ready to send.
struct Record {
    seq: u64,
    key: Option<String>,
    value: Option<String>,
}

pub struct KafkaSink {
    spec: KafkaSinkSpec,
    key_column: Option<usize>,
    producer: ThreadedProducer<DeliveryContext>,
    /// Rows waiting for the next barrier (exactly once).
    held: Vec<Record>,
    /// Rows at or below this seq are in the topic already.
    written_through: Option<u64>,
    transactional: bool,
    /// The query takes checkpoints (else rows count as committed once sent).
    checkpoints: bool,
    report: SharedSinkReport,
}

fn external(what: &str, error: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::external(format!("{what}: {error}"))
}

impl KafkaSink {
    pub fn new(spec: KafkaSinkSpec, schema: SchemaRef, append_only: bool, report: SharedSinkReport) -> Result<Self> {
        if !append_only && spec.envelope == SinkEnvelope::Append {
            return Err(RuntimeError::user(
                "an updating result needs envelope = 'upsert' (with key = column) or 'debezium' in a Kafka sink",
            ));
        }
        let key_column = match &spec.key {
            Some(key) => Some(
                schema
                    .index_of(key)
                    .map_err(|_| RuntimeError::user(format!("the sink's key column {key:?} is not in the result")))?,
            ),
            None if spec.envelope == SinkEnvelope::Upsert => {
                return Err(RuntimeError::user("envelope = 'upsert' needs key = <column>"));
            }
            None => None,
        };
        let mut config = client_config(&spec.brokers, &spec.properties);
        config.set("message.timeout.ms", "30000");
        if spec.exactly_once {
            config.set("transactional.id", &spec.transactional_id);
        }
        let producer: ThreadedProducer<DeliveryContext> = config
            .create_with_context(DeliveryContext::default())
            .map_err(|error| external(&format!("cannot make a Kafka producer for {}", spec.brokers), error))?;
        Ok(Self {
            spec,
            key_column,
            producer,
            held: Vec::new(),
            written_through: None,
            transactional: false,
            checkpoints: false,
            report,
        })
    }

    fn failure(&self) -> Result<()> {
        match self.producer.context().failure.lock().ok().and_then(|mut failure| failure.take()) {
            Some(failure) => {
                Err(RuntimeError::external(format!("Kafka refused a record for {}: {failure}", self.spec.topic)))
            }
            None => Ok(()),
        }
    }

    fn send(&self, record: &Record) -> Result<()> {
        let seq = record.seq.to_string();
        let headers = OwnedHeaders::new().insert(Header { key: SEQ_HEADER, value: Some(seq.as_bytes()) });
        let mut base: BaseRecord<'_, str, str> = BaseRecord::to(&self.spec.topic).headers(headers);
        if let Some(key) = &record.key {
            base = base.key(key.as_str());
        }
        if let Some(value) = &record.value {
            base = base.payload(value.as_str());
        }
        let mut base = base;
        loop {
            match self.producer.send(base) {
                Ok(()) => return Ok(()),
                Err((
                    rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    again,
                )) => {
                    // The producer's queue drains in its own thread.
                    std::thread::sleep(Duration::from_millis(5));
                    base = again;
                }
                Err((error, _)) => return Err(external(&format!("cannot send to {}", self.spec.topic), error)),
            }
        }
    }

    /// The rows as records.
    fn records(&self, seq: u64, batch: &StreamBatch) -> Result<Vec<Record>> {
        let lines = row_json(&batch.rows)?;
        let mut records = Vec::with_capacity(lines.len());
        for (row, json) in lines.into_iter().enumerate() {
            let op = batch.ops.as_ref().map_or(Op::Insert, |ops| ops[row]);
            let key = match self.key_column {
                Some(column) if !batch.rows.column(column).is_null(row) => Some(
                    array_value_to_string(batch.rows.column(column), row)
                        .map_err(|error| external("cannot write a key", error))?,
                ),
                _ => None,
            };
            let value = match (self.spec.envelope, op) {
                (SinkEnvelope::Append, _) | (SinkEnvelope::Upsert, Op::Insert) => Some(json),
                (SinkEnvelope::Upsert, Op::Delete) => None,
                (SinkEnvelope::Debezium, Op::Insert) => Some(format!(r#"{{"before":null,"after":{json},"op":"c"}}"#)),
                (SinkEnvelope::Debezium, Op::Delete) => Some(format!(r#"{{"before":{json},"after":null,"op":"d"}}"#)),
            };
            records.push(Record { seq: seq + row as u64, key, value });
        }
        Ok(records)
    }

    /// The newest `sluice.seq` committed to the topic, if any.
    fn newest_committed_seq(&self) -> Result<Option<u64>> {
        let mut config = client_config(&self.spec.brokers, &self.spec.properties);
        config
            .set("group.id", format!("{}-recovery", self.spec.transactional_id))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("isolation.level", "read_committed");
        let consumer: BaseConsumer =
            config.create().map_err(|error| external("cannot make a Kafka consumer", error))?;
        let metadata = consumer
            .fetch_metadata(Some(&self.spec.topic), LOOKUP_TIMEOUT)
            .map_err(|error| external(&format!("cannot connect to Kafka at {}", self.spec.brokers), error))?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|topic| topic.name() == self.spec.topic)
            .flat_map(|topic| topic.partitions().iter().map(|partition| partition.id()))
            .collect();
        let mut newest: Option<u64> = None;
        let mut assignment = TopicPartitionList::new();
        for partition in &partitions {
            assignment
                .add_partition_offset(&self.spec.topic, *partition, Offset::Beginning)
                .map_err(|error| external("cannot read the sink's topic", error))?;
        }
        if partitions.is_empty() {
            return Ok(None);
        }
        consumer.assign(&assignment).map_err(|error| external("cannot read the sink's topic", error))?;
        // Every partition read to its end (the whole topic: simple, and
        // bounded by what the sink wrote).
        let mut ended = std::collections::BTreeSet::new();
        let deadline = std::time::Instant::now() + COMMIT_TIMEOUT;
        while ended.len() < partitions.len() {
            if std::time::Instant::now() > deadline {
                return Err(RuntimeError::external(format!("cannot read {} back to its end", self.spec.topic)));
            }
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(message)) => {
                    let seq = message.headers().and_then(|headers| {
                        headers
                            .iter()
                            .find(|header| header.key == SEQ_HEADER)
                            .and_then(|header| std::str::from_utf8(header.value?).ok()?.parse::<u64>().ok())
                    });
                    if let Some(seq) = seq {
                        newest = Some(newest.map_or(seq, |newest| newest.max(seq)));
                    }
                }
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(partition))) => {
                    ended.insert(partition);
                }
                Some(Err(error)) => return Err(external(&format!("cannot read {} back", self.spec.topic), error)),
                None => {}
            }
        }
        Ok(newest)
    }
}

/// Each row as a JSON object.
fn row_json(rows: &RecordBatch) -> Result<Vec<String>> {
    let mut writer = datafusion::arrow::json::LineDelimitedWriter::new(Vec::new());
    writer.write(rows)?;
    writer.finish()?;
    let text = String::from_utf8(writer.into_inner()).map_err(|error| external("cannot write JSON", error))?;
    Ok(text.lines().map(str::to_string).collect())
}

impl Sink for KafkaSink {
    fn open(&mut self, restored: Option<u64>, _next_seq: u64, checkpoints: bool) -> Result<()> {
        self.transactional = self.spec.exactly_once && checkpoints;
        self.checkpoints = checkpoints;
        if !self.transactional {
            return Ok(());
        }
        // Aborts what a crashed run left open, and fences it.
        self.producer
            .init_transactions(COMMIT_TIMEOUT)
            .map_err(|error| external(&format!("cannot start transactions on {}", self.spec.brokers), error))?;
        if restored.is_some() {
            self.written_through = self.newest_committed_seq()?;
        }
        Ok(())
    }

    fn write(&mut self, seq: u64, batch: &StreamBatch) -> Result<()> {
        let mut records = self.records(seq, batch)?;
        if let Some(through) = self.written_through {
            records.retain(|record| record.seq > through);
        }
        update(&self.report, |report| report.rows_written += records.len() as u64);
        if self.transactional {
            self.held.extend(records);
            return Ok(());
        }
        for record in &records {
            self.send(record)?;
        }
        self.failure()?;
        if !self.checkpoints {
            // Sent at once, with nothing to wait for.
            update(&self.report, |report| report.rows_committed += records.len() as u64);
        }
        Ok(())
    }

    fn prepare(&mut self, _id: u64) -> Result<()> {
        if !self.transactional {
            self.producer.flush(COMMIT_TIMEOUT).map_err(|error| external("cannot flush to Kafka", error))?;
            self.failure()?;
            update(&self.report, |report| {
                report.rows_committed = report.rows_written;
                report.commits += 1;
            });
            return Ok(());
        }
        if self.held.is_empty() {
            return Ok(());
        }
        let held = std::mem::take(&mut self.held);
        let result = (|| {
            self.producer.begin_transaction().map_err(|error| external("cannot begin a Kafka transaction", error))?;
            for record in &held {
                self.send(record)?;
            }
            self.producer
                .commit_transaction(COMMIT_TIMEOUT)
                .map_err(|error| external(&format!("cannot commit to {}", self.spec.topic), error))?;
            self.failure()
        })();
        match result {
            Ok(()) => {
                let rows = held.len() as u64;
                if let Some(last) = held.last() {
                    self.written_through = Some(last.seq);
                }
                update(&self.report, |report| {
                    report.rows_committed += rows;
                    report.commits += 1;
                });
                Ok(())
            }
            Err(error) => {
                let _ = self.producer.abort_transaction(COMMIT_TIMEOUT);
                // Kept for the next checkpoint.
                self.held = held;
                Err(error)
            }
        }
    }

    fn commit(&mut self, _id: u64) -> Result<()> {
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        if self.transactional {
            return self.prepare(0);
        }
        self.producer.flush(COMMIT_TIMEOUT).map_err(|error| external("cannot flush to Kafka", error))?;
        self.failure()
    }
}
