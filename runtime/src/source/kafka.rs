//! The Kafka source: one partition of a topic, read by offset.
//!
//! A Kafka stream is planned as one source per partition (joined by a
//! union), so each partition has its own watermark, idle timeout and
//! position, as Flink's per-split watermarks: a slow partition holds the
//! query back, an idle one is released. A source's position is the next
//! offset plus one (0: nothing read yet), checkpointed with the query;
//! recovery seeks back to it and cuts its chunks where the input log says,
//! so a recovered query sees the same batches. Offsets committed to the
//! consumer group (when `group` is set) are informational.
//!
//! Records are decoded as lines (`json`, `csv`, `text`) or taken whole
//! (`raw`); columns declared `METADATA FROM 'key' | 'partition' | 'offset'
//! | 'timestamp'` are filled from the record. A record that does not decode
//! is counted as malformed and the query runs on.

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{
    ArrayRef, BinaryArray, Int32Array, Int64Array, RecordBatch, StringArray, TimestampNanosecondArray,
};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

use super::decode::{Format, RecordDecoder};
use super::{Malformed, SourceContext, SourceSpec, SourceStatus};

/// How long a source waits for more records before it hands over what it
/// has.
const GATHER: Duration = Duration::from_millis(5);

/// How long metadata and offset look-ups may take.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct KafkaSpec {
    pub brokers: String,
    pub topic: String,
    pub format: KafkaFormat,
    pub start: KafkaStart,
    /// The consumer group offsets are committed to (informational).
    pub group: Option<String>,
    /// Every partition of the topic, found when the stream was declared.
    pub partitions: Vec<i32>,
    /// The partition this source reads (set when the query is planned).
    pub partition: Option<i32>,
    /// Columns (indices into the stream's schema) filled from the record.
    pub metadata: Vec<(usize, KafkaMetadata)>,
    /// Records per chunk at most.
    pub batch_rows: usize,
    /// Extra librdkafka settings (`properties.x = y` options).
    pub properties: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub enum KafkaFormat {
    /// Each record's value is one line in this format.
    Lines(Format),
    /// The value, whole, in the one column that is not metadata.
    Raw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaStart {
    Earliest,
    Latest,
    /// The first record at or after this time (milliseconds since the epoch).
    Timestamp(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaMetadata {
    Key,
    Partition,
    Offset,
    Timestamp,
}

impl KafkaMetadata {
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "key" => Some(Self::Key),
            "partition" => Some(Self::Partition),
            "offset" => Some(Self::Offset),
            "timestamp" => Some(Self::Timestamp),
            _ => None,
        }
    }

    /// The column type it fills.
    pub fn data_type(self) -> DataType {
        match self {
            Self::Key => DataType::Utf8,
            Self::Partition => DataType::Int32,
            Self::Offset => DataType::Int64,
            Self::Timestamp => DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Nanosecond, None),
        }
    }
}

/// Reports connection trouble on the stream's status, as the socket
/// source does.
struct StatusContext {
    status: Arc<SourceStatus>,
    brokers: String,
}

impl ClientContext for StatusContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.status.set(format!("cannot connect to Kafka at {}: {reason} ({error}); retrying", self.brokers));
    }
}

impl rdkafka::consumer::ConsumerContext for StatusContext {}

/// A client configuration for `brokers` with the stream's properties.
pub fn client_config(brokers: &str, properties: &[(String, String)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    for (key, value) in properties {
        config.set(key, value);
    }
    config
}

/// The partitions of `topic` (blocking, up to [`LOOKUP_TIMEOUT`]).
pub fn partitions(brokers: &str, topic: &str, properties: &[(String, String)]) -> Result<Vec<i32>, String> {
    let consumer: BaseConsumer = client_config(brokers, properties)
        .create()
        .map_err(|error| format!("cannot make a Kafka client for {brokers}: {error}"))?;
    let metadata = consumer
        .fetch_metadata(Some(topic), LOOKUP_TIMEOUT)
        .map_err(|error| format!("cannot connect to Kafka at {brokers}: {error}"))?;
    let Some(found) = metadata.topics().iter().find(|found| found.name() == topic) else {
        return Err(format!("topic {topic:?} not found on {brokers}"));
    };
    if let Some(error) = found.error() {
        let code = rdkafka::types::RDKafkaErrorCode::from(error);
        if code == rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition {
            return Err(format!("topic {topic:?} not found on {brokers}"));
        }
        return Err(format!("topic {topic:?} on {brokers}: {code}"));
    }
    if found.partitions().is_empty() {
        return Err(format!("topic {topic:?} not found on {brokers} (it has no partitions)"));
    }
    Ok(found.partitions().iter().map(|partition| partition.id()).collect())
}

/// Where a fresh source starts in `partition`.
fn start_offset(kafka: &KafkaSpec, partition: i32) -> Result<Offset, String> {
    match kafka.start {
        KafkaStart::Earliest => Ok(Offset::Beginning),
        KafkaStart::Latest => Ok(Offset::End),
        KafkaStart::Timestamp(ms) => {
            let consumer: BaseConsumer =
                client_config(&kafka.brokers, &kafka.properties).create().map_err(|error| error.to_string())?;
            let mut wanted = TopicPartitionList::new();
            wanted
                .add_partition_offset(&kafka.topic, partition, Offset::Offset(ms))
                .map_err(|error| error.to_string())?;
            let found = consumer.offsets_for_times(wanted, LOOKUP_TIMEOUT).map_err(|error| error.to_string())?;
            Ok(found.elements().first().map_or(Offset::End, |element| element.offset()))
        }
    }
}

pub async fn run(kafka: &KafkaSpec, spec: &SourceSpec, context: SourceContext) {
    let Some(partition) = kafka.partition else {
        context.fail("internal: a Kafka source was planned without its partition".into()).await;
        return;
    };
    let position = context.resume.position;
    let offset = if position > 0 {
        Offset::Offset(position as i64 - 1)
    } else {
        let lookup = kafka.clone();
        match tokio::task::spawn_blocking(move || start_offset(&lookup, partition)).await {
            Ok(Ok(offset)) => offset,
            Ok(Err(message)) => {
                context.fail(format!("cannot find where to start reading {}: {message}", kafka.topic)).await;
                return;
            }
            Err(error) => {
                context.fail(format!("cannot find where to start reading {}: {error}", kafka.topic)).await;
                return;
            }
        }
    };
    let mut config = client_config(&kafka.brokers, &kafka.properties);
    config
        .set("group.id", kafka.group.as_deref().unwrap_or("sluice"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("isolation.level", "read_committed");
    let context_for_status = StatusContext { status: spec.status.clone(), brokers: kafka.brokers.clone() };
    let consumer: StreamConsumer<StatusContext> = match config.create_with_context(context_for_status) {
        Ok(consumer) => consumer,
        Err(error) => {
            context.fail(format!("cannot make a Kafka consumer for {}: {error}", kafka.brokers)).await;
            return;
        }
    };
    let mut assignment = TopicPartitionList::new();
    if let Err(error) =
        assignment.add_partition_offset(&kafka.topic, partition, offset).and_then(|()| consumer.assign(&assignment))
    {
        context.fail(format!("cannot read {} partition {partition}: {error}", kafka.topic)).await;
        return;
    }
    let reader = Reader::new(kafka, spec);
    let mut boundaries = context.resume.boundaries.clone();
    let mut pending: Option<OwnedMessage> = None;
    loop {
        let first = match pending.take() {
            Some(message) => message,
            None => match consumer.recv().await {
                Ok(message) => message.detach(),
                Err(error) => {
                    spec.status.set(format!(
                        "cannot connect to Kafka at {} to read {}: {error}; retrying",
                        kafka.brokers, kafka.topic
                    ));
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            },
        };
        spec.status.set("reading");
        let mut records = vec![first];
        // A replayed chunk ends where the log says it did.
        let limit = boundaries.front().copied();
        let ends_at_limit = |records: &[OwnedMessage]| {
            limit.is_some_and(|limit| records.last().is_some_and(|last| last.offset() as u64 + 2 >= limit))
        };
        while records.len() < kafka.batch_rows && !ends_at_limit(&records) {
            match tokio::time::timeout(GATHER, consumer.recv()).await {
                Ok(Ok(message)) => {
                    let message = message.detach();
                    if limit.is_some_and(|limit| message.offset() as u64 + 2 > limit) {
                        pending = Some(message);
                        break;
                    }
                    records.push(message);
                }
                _ if limit.is_some() => continue,
                _ => break,
            }
        }
        if limit.is_some_and(|limit| records.last().is_some_and(|last| last.offset() as u64 + 2 >= limit)) {
            boundaries.pop_front();
        }
        let Some(last) = records.last() else { continue };
        let position = last.offset() as u64 + 2;
        let (rows, malformed) = reader.decode(&records);
        if !context.send_due(rows, malformed, position, due_at(&records)).await {
            return;
        }
        if kafka.group.is_some() {
            let mut committed = TopicPartitionList::new();
            if committed.add_partition_offset(&kafka.topic, partition, Offset::Offset(position as i64 - 1)).is_ok() {
                // Informational: a failed commit changes nothing.
                let _ = consumer.commit(&committed, CommitMode::Async);
            }
        }
    }
}

/// Turns records into rows of the stream.
struct Reader {
    /// What the source sends (every column but a PROCTIME() one).
    output: SchemaRef,
    /// The columns decoded from the value.
    payload: SchemaRef,
    decoder: Option<RecordDecoder>,
    /// For each output column: the metadata it is, if any.
    metadata: Vec<Option<KafkaMetadata>>,
}

impl Reader {
    fn new(kafka: &KafkaSpec, spec: &SourceSpec) -> Self {
        let output = spec.decoded_schema();
        let metadata: Vec<Option<KafkaMetadata>> = output
            .fields()
            .iter()
            .map(|field| {
                let index = spec.schema.index_of(field.name()).ok()?;
                kafka.metadata.iter().find(|(column, _)| *column == index).map(|(_, kind)| *kind)
            })
            .collect();
        let payload_columns: Vec<usize> =
            (0..output.fields().len()).filter(|index| metadata[*index].is_none()).collect();
        let payload = Arc::new(output.project(&payload_columns).unwrap_or_else(|_| output.as_ref().clone()));
        let decoder = match &kafka.format {
            KafkaFormat::Lines(format) => Some(RecordDecoder::new(payload.clone(), format.clone())),
            KafkaFormat::Raw => None,
        };
        Self { output, payload, decoder, metadata }
    }

    fn decode(&self, records: &[OwnedMessage]) -> (Option<RecordBatch>, Malformed) {
        match self.rows(records) {
            Ok((kept, payload, malformed)) => match self.assemble(&kept, payload) {
                Ok(rows) => (Some(rows), malformed),
                Err(error) => (None, Malformed { records: records.len() as u64, problem: Some(error) }),
            },
            Err(problem) => (None, Malformed { records: records.len() as u64, problem: Some(problem) }),
        }
    }

    /// The records that decoded and their payload columns.
    fn rows<'a>(&self, records: &'a [OwnedMessage]) -> Result<(Vec<&'a OwnedMessage>, RecordBatch, Malformed), String> {
        let Some(decoder) = &self.decoder else {
            let column: ArrayRef = match self.payload.fields().first().map(|field| field.data_type()) {
                Some(DataType::Binary) => {
                    Arc::new(records.iter().map(|record| record.payload()).collect::<BinaryArray>())
                }
                _ => Arc::new(
                    records
                        .iter()
                        .map(|record| record.payload().map(|bytes| String::from_utf8_lossy(bytes).into_owned()))
                        .collect::<StringArray>(),
                ),
            };
            let batch = RecordBatch::try_new(self.payload.clone(), vec![column]).map_err(|error| error.to_string())?;
            return Ok((records.iter().collect(), batch, Malformed::default()));
        };
        let line = |record: &OwnedMessage| String::from_utf8_lossy(record.payload().unwrap_or_default()).into_owned();
        let lines: Vec<String> = records.iter().map(line).collect();
        let decoded = decoder.decode(&lines).map_err(|error| error.to_string())?;
        if decoded.malformed == 0 {
            return Ok((records.iter().collect(), decoded.rows, Malformed::default()));
        }
        // Some did not decode: one at a time, to know which rows are whose.
        let mut kept = Vec::new();
        let mut batches = Vec::new();
        let mut malformed = Malformed::default();
        for (record, line) in records.iter().zip(lines) {
            match decoder.decode(&[line]) {
                Ok(one) if one.malformed == 0 && one.rows.num_rows() == 1 => {
                    kept.push(record);
                    batches.push(one.rows);
                }
                Ok(one) => {
                    malformed.records += 1;
                    malformed.problem = one.problem.or(malformed.problem);
                }
                Err(error) => {
                    malformed.records += 1;
                    malformed.problem = Some(error.to_string());
                }
            }
        }
        let batch =
            datafusion::arrow::compute::concat_batches(&self.payload, &batches).map_err(|error| error.to_string())?;
        Ok((kept, batch, malformed))
    }

    fn assemble(&self, records: &[&OwnedMessage], payload: RecordBatch) -> Result<RecordBatch, String> {
        let mut next_payload = 0;
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.output.fields().len());
        for kind in &self.metadata {
            let column: ArrayRef = match kind {
                None => {
                    next_payload += 1;
                    payload.column(next_payload - 1).clone()
                }
                Some(KafkaMetadata::Key) => Arc::new(
                    records
                        .iter()
                        .map(|record| record.key().map(|key| String::from_utf8_lossy(key).into_owned()))
                        .collect::<StringArray>(),
                ),
                Some(KafkaMetadata::Partition) => {
                    Arc::new(records.iter().map(|record| record.partition()).collect::<Int32Array>())
                }
                Some(KafkaMetadata::Offset) => {
                    Arc::new(records.iter().map(|record| record.offset()).collect::<Int64Array>())
                }
                Some(KafkaMetadata::Timestamp) => Arc::new(
                    records
                        .iter()
                        .map(|record| record.timestamp().to_millis().map(|ms| ms.saturating_mul(1_000_000)))
                        .collect::<TimestampNanosecondArray>(),
                ),
            };
            columns.push(column);
        }
        RecordBatch::try_new(self.output.clone(), columns).map_err(|error| error.to_string())
    }
}

/// When the first of `records` was due: its Kafka timestamp (the time it
/// was produced or appended), as an instant; now if it has none or one in
/// the future. A shedding query's lag then counts the broker's backlog, as
/// Flink's fetch lag does.
fn due_at(records: &[OwnedMessage]) -> std::time::Instant {
    let now = std::time::Instant::now();
    let Some(produced) = records.first().and_then(|record| record.timestamp().to_millis()) else { return now };
    let wall_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_millis() as i64);
    let age = Duration::from_millis(wall_ms.saturating_sub(produced).max(0) as u64);
    now.checked_sub(age).unwrap_or(now)
}
