//! Kafka in and out against a real Kafka-protocol broker: tansu, started
//! by the test on a free loopback port with in-memory storage
//! (`scripts/install_tansu.sh` installs it; `.ci/run` does).
//!
//! A query reads a two-partition topic (metadata columns, a malformed
//! record counted), writes a running count per user through a
//! transactional upsert sink, crashes mid-run and is restored from its
//! checkpoint; a `read_committed` consumer sees every result row once, and
//! the final counts are right. Bad brokers and topics are clear errors.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sluice::engine::{Engine, Limits, StatementResult};
use sluice::settings::Settings;

/// A tansu broker on a free loopback port, stopped when dropped.
pub struct Broker {
    child: Child,
    pub address: String,
}

impl Broker {
    pub fn start() -> Broker {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let address = format!("127.0.0.1:{port}");
        let url = format!("tcp://{address}");
        let mut child = Command::new("tansu")
            .args([
                "broker",
                "--storage-engine",
                "memory://tansu/",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu runs (install it with scripts/install_tansu.sh)");
        // tansu exits 0 even when it cannot listen: wait for the port.
        for _ in 0..200 {
            if std::net::TcpStream::connect(&address).is_ok() {
                return Broker { child, address };
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("tansu did not listen on {address}");
    }

    fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.address);
        config
    }

    pub async fn create_topic(&self, topic: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = self.config().create().unwrap();
        let topics = [NewTopic::new(topic, partitions, TopicReplication::Fixed(1))];
        for result in admin.create_topics(&topics, &AdminOptions::new()).await.unwrap() {
            result.unwrap();
        }
    }

    pub fn produce(&self, topic: &str, records: &[(i32, &str, &str)]) {
        let producer: BaseProducer = self.config().create().unwrap();
        for (partition, key, value) in records {
            producer.send(BaseRecord::to(topic).partition(*partition).key(*key).payload(*value)).unwrap();
        }
        producer.flush(Duration::from_secs(10)).unwrap();
    }

    /// Every committed record of `topic`: (sluice.seq, key, value).
    pub fn read_committed(&self, topic: &str) -> Vec<(u64, String, Option<String>)> {
        let mut config = self.config();
        config
            .set("group.id", "test-reader")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "true")
            .set("enable.auto.commit", "false");
        let consumer: BaseConsumer = config.create().unwrap();
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
        let partitions: Vec<i32> = metadata.topics()[0].partitions().iter().map(|partition| partition.id()).collect();
        let mut assignment = TopicPartitionList::new();
        for partition in &partitions {
            assignment.add_partition_offset(topic, *partition, Offset::Beginning).unwrap();
        }
        consumer.assign(&assignment).unwrap();
        let mut ended = std::collections::BTreeSet::new();
        let mut records = Vec::new();
        while ended.len() < partitions.len() {
            match consumer.poll(Duration::from_secs(10)) {
                Some(Ok(message)) => {
                    let seq = message
                        .headers()
                        .and_then(|headers| headers.iter().find(|header| header.key == "sluice.seq"))
                        .and_then(|header| std::str::from_utf8(header.value?).ok()?.parse().ok())
                        .expect("every record carries its seq");
                    let text = |bytes: Option<&[u8]>| bytes.map(|bytes| String::from_utf8_lossy(bytes).into_owned());
                    records.push((seq, text(message.key()).unwrap_or_default(), text(message.payload())));
                }
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(partition))) => {
                    ended.insert(partition);
                }
                Some(Err(error)) => panic!("reading {topic}: {error}"),
                None => panic!("reading {topic}: nothing for 10 s"),
            }
        }
        records.sort();
        records
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn click(user: usize, n: usize) -> String {
    format!("{{\"user\":\"u{user}\",\"n\":{n}}}")
}

async fn wait_stopped(engine: &Engine, id: &str) -> String {
    for _ in 0..1500 {
        let status = engine.query(id).expect("listed").handle.status();
        if status != sluice_runtime::QueryStatus::Running {
            return format!("{status:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("query {id} did not stop");
}

/// Polls until `sql` (over a materialized view) returns `expected` rows.
async fn wait_rows(engine: &Engine, sql: &str, expected: &[&str]) {
    let mut last = Vec::new();
    for _ in 0..500 {
        if let Ok(results) = engine.execute(sql, &mut Settings::new()).await
            && let Some(StatementResult::Rows { batches, .. }) = results.last()
        {
            last = datafusion::arrow::util::pretty::pretty_format_batches(batches)
                .unwrap()
                .to_string()
                .lines()
                .filter(|line| line.starts_with("| u") && !line.starts_with("| user"))
                .map(|line| line.split_whitespace().filter(|part| *part != "|").collect::<Vec<_>>().join(" "))
                .collect();
            if last == expected {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{sql}: expected {expected:?}, last {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_in_and_out_exactly_once_through_a_crash() {
    let broker = Broker::start();
    broker.create_topic("clicks", 2).await;
    let mut records: Vec<(i32, String, String)> =
        (0..12).map(|n| ((n % 2) as i32, format!("u{}", n % 3), click(n % 3, n))).collect();
    records.insert(5, (0, "bad".into(), "not json".into()));
    let borrowed: Vec<(i32, &str, &str)> =
        records.iter().map(|(partition, key, value)| (*partition, key.as_str(), value.as_str())).collect();
    broker.produce("clicks", &borrowed);

    let data = std::env::temp_dir().join(format!("sluice-kafka-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let limits = Limits { parallelism: 1, ..Limits::default() };
    let mut engine = Engine::open_with(&data, sluice_runtime::Fsync::default(), limits.clone()).await.unwrap();
    // One record per step, a checkpoint after each; the crash comes 7 steps in.
    engine.halt_queries_after(7);
    let mut settings = Settings::new();
    settings.insert("checkpoint_interval".into(), "0.001ms".into());
    settings.insert("epoch_interval".into(), "0".into());
    let declare = format!(
        "CREATE STREAM clicks (user VARCHAR, n INT, k VARCHAR METADATA FROM 'key', p INT METADATA FROM 'partition',
           o BIGINT METADATA FROM 'offset') WITH (connector = 'kafka', brokers = '{0}', topic = 'clicks', batch_rows = 1);
         CREATE SINK counts INTO KAFKA (brokers = '{0}', topic = 'counts', key = 'user')
           AS SELECT user, count(*) AS clicks, sum(n) AS total, max(o) AS last_offset FROM clicks GROUP BY user",
        broker.address
    );
    let results = engine.execute(&declare, &mut settings).await.unwrap();
    let Some(StatementResult::Query { id, .. }) = results.last() else { panic!("CREATE SINK starts a query") };
    let id = id.clone();
    let status = wait_stopped(&engine, &id).await;
    assert!(status.contains(sluice_runtime::driver::HALTED), "{status}");
    let before_crash = broker.read_committed("counts");
    assert!(!before_crash.is_empty() && before_crash.len() < 12, "committed before the crash: {before_crash:?}");
    drop(engine);

    // Restored: the rest of the topic, then more records while it runs.
    let engine = Engine::open_with(&data, sluice_runtime::Fsync::default(), limits).await.unwrap();
    let query = engine.query(&id).expect("the sink's query is restored");
    assert!(query.handle.metrics.checkpoints().restored_from.is_some());
    engine
        .execute(
            "CREATE MATERIALIZED VIEW per_user AS SELECT user, count(*) AS clicks, sum(n) AS total FROM clicks GROUP BY user",
            &mut Settings::new(),
        )
        .await
        .unwrap();
    broker.produce("clicks", &[(1, "u0", &click(0, 100))]);
    wait_rows(&engine, "SELECT * FROM per_user ORDER BY user", &["u0 5 118", "u1 4 22", "u2 4 26"]).await;
    // The sink's last transaction commits with a checkpoint.
    let mut written = Vec::new();
    for _ in 0..250 {
        written = broker.read_committed("counts");
        if written.iter().any(|(_, _, value)| value.as_deref().is_some_and(|value| value.contains("\"total\":118"))) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seqs: Vec<u64> = written.iter().map(|(seq, _, _)| *seq).collect();
    assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>(), "every result row once, in order: {written:?}");
    // Upserts: the newest value per key is the final count.
    let mut latest = std::collections::BTreeMap::new();
    for (_, key, value) in &written {
        latest.insert(key.clone(), value.clone());
    }
    assert_eq!(
        latest.get("u0").cloned().flatten().as_deref(),
        Some("{\"user\":\"u0\",\"clicks\":5,\"total\":118,\"last_offset\":6}")
    );
    assert!(written.iter().any(|(_, key, value)| key == "u1" && value.is_none()), "an update writes a tombstone first");
    let report = query.report();
    assert_eq!(report.metrics.malformed_records, 1, "{:?}", report.metrics.last_malformed);
    drop(engine);
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_brokers_and_topics_are_clear_errors() {
    let broker = Broker::start();
    let engine = Engine::new();
    let cases = [
        (format!("CREATE STREAM s (x INT) WITH (connector = 'kafka', brokers = '{}', topic = 'missing')", broker.address), "not found"),
        ("CREATE STREAM s (x INT) WITH (connector = 'kafka', brokers = '127.0.0.1:1', topic = 't')".to_string(), "cannot connect to Kafka at 127.0.0.1:1"),
        ("CREATE STREAM s (x INT) WITH (connector = 'kafka', topic = 't')".to_string(), "needs brokers"),
        ("CREATE STREAM s (x INT, k INT METADATA FROM 'key') WITH (connector = 'kafka', brokers = 'b', topic = 't', partitions = 1)".to_string(), "fills a VARCHAR column"),
        ("CREATE STREAM s (x INT, k VARCHAR METADATA FROM 'headers') WITH (connector = 'kafka', brokers = 'b', topic = 't', partitions = 1)".to_string(), "use 'key'"),
        ("CREATE STREAM s (x INT, k VARCHAR METADATA FROM 'key') WITH (connector = 'http')".to_string(), "for the kafka connector"),
    ];
    for (sql, message) in cases {
        let error = engine.execute(&sql, &mut Settings::new()).await.expect_err(&sql);
        assert!(error.message.contains(message), "{sql}: {}", error.message);
    }
    // Declared with its partitions while the broker is away: the query runs
    // and says it is retrying.
    let sql =
        "CREATE STREAM away (x INT) WITH (connector = 'kafka', brokers = '127.0.0.1:1', topic = 't', partitions = 1);
               SELECT x FROM away";
    let results = engine.execute(sql, &mut Settings::new()).await.unwrap();
    let Some(StatementResult::Query { id, .. }) = results.last() else { panic!("a query") };
    let mut status = String::new();
    for _ in 0..250 {
        status = engine
            .streams()
            .into_iter()
            .find(|stream| stream.name == "away")
            .map(|stream| stream.status)
            .unwrap_or_default();
        if status.contains("retrying") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(status.contains("cannot connect to Kafka at 127.0.0.1:1") && status.contains("retrying"), "{status}");
    assert_eq!(engine.query(id).unwrap().handle.status(), sluice_runtime::QueryStatus::Running);
    // A sink whose records Kafka refuses (over the producer's message size):
    // its query fails with the reason, in SHOW SINKS and its status.
    let data = std::env::temp_dir().join(format!("sluice-kafka-refused-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let refusing = Engine::open(&data).await.unwrap();
    broker.create_topic("words", 1).await;
    let long = format!("{{\"w\":\"{}\"}}", "x".repeat(5000));
    broker.produce("words", &[(0, "k", long.as_str())]);
    let sql = format!(
        "CREATE STREAM words (w VARCHAR) WITH (connector = 'kafka', brokers = '{0}', topic = 'words');
         CREATE SINK copies INTO KAFKA (brokers = '{0}', topic = 'copies', properties.message.max.bytes = '2000') AS SELECT w FROM words",
        broker.address
    );
    let mut settings = Settings::new();
    settings.insert("checkpoint_interval".into(), "100ms".into());
    let results = refusing.execute(&sql, &mut settings).await.unwrap();
    let Some(StatementResult::Query { id: sink_id, .. }) = results.last() else { panic!("a query") };
    let status = wait_stopped(&refusing, sink_id).await;
    assert!(status.contains("the sink failed") && status.contains("too large"), "{status}");
    let Some(StatementResult::Rows { batches, .. }) =
        refusing.execute("SHOW SINKS", &mut Settings::new()).await.unwrap().pop()
    else {
        panic!("rows")
    };
    let shown = datafusion::arrow::util::pretty::pretty_format_batches(&batches).unwrap().to_string();
    assert!(shown.contains("failed") && shown.contains("too large"), "{shown}");
    drop(refusing);
    let _ = std::fs::remove_dir_all(&data);
    // An updating result into envelope = 'append' is refused.
    let sql = format!(
        "CREATE SINK s INTO KAFKA (brokers = '{}', topic = 'x', envelope = 'append') AS SELECT x, count(*) FROM away GROUP BY x",
        broker.address
    );
    let error = engine.execute(&sql, &mut Settings::new()).await.expect_err("refused");
    assert!(error.message.contains("needs envelope = 'upsert'"), "{}", error.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_partition_has_its_own_watermark() {
    let broker = Broker::start();
    broker.create_topic("ticks", 2).await;
    let tick = |second: u32| format!("{{\"ts\":\"2026-01-01T00:00:{second:02}\",\"v\":1}}");
    // Partition 0 runs ahead to 00:00:30; partition 1 stays at 00:00:01.
    let ahead: Vec<String> = (0..30).map(tick).collect();
    let mut records: Vec<(i32, &str, &str)> = ahead.iter().map(|value| (0, "a", value.as_str())).collect();
    let slow = tick(1);
    records.push((1, "b", slow.as_str()));
    broker.produce("ticks", &records);
    let engine = Engine::new();
    let sql = format!(
        "CREATE STREAM ticks (ts TIMESTAMP, v INT, WATERMARK FOR ts AS ts)
           WITH (connector = 'kafka', brokers = '{}', topic = 'ticks');
         CREATE MATERIALIZED VIEW windows AS
           SELECT window_start, count(*) AS n FROM TUMBLE(ticks, ts, INTERVAL '10' SECOND) GROUP BY window_start, window_end",
        broker.address
    );
    engine.execute(&sql, &mut Settings::new()).await.unwrap();
    // The slow partition holds every window back (its watermark is 00:00:01).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(window_count(&engine, "windows").await.contains("| 0 "), "{}", window_count(&engine, "windows").await);
    // It moves on: windows up to its watermark close.
    let later = tick(25);
    broker.produce("ticks", &[(1, "b", later.as_str())]);
    let mut text = String::new();
    for _ in 0..250 {
        text = window_count(&engine, "windows").await;
        if text.contains("| 2 ") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(text.contains("| 2 "), "windows [0, 10) and [10, 20) closed: {text}");

    // A partition with nothing at all holds windows back until the idle
    // timeout releases it.
    broker.create_topic("quiet", 2).await;
    let records: Vec<(i32, &str, &str)> = ahead.iter().map(|value| (0, "a", value.as_str())).collect();
    broker.produce("quiet", &records);
    let sql = format!(
        "CREATE STREAM quiet (ts TIMESTAMP, v INT, WATERMARK FOR ts AS ts)
           WITH (connector = 'kafka', brokers = '{}', topic = 'quiet');
         CREATE MATERIALIZED VIEW quiet_windows AS
           SELECT window_start, count(*) AS n FROM TUMBLE(quiet, ts, INTERVAL '10' SECOND) GROUP BY window_start, window_end",
        broker.address
    );
    let mut settings = Settings::new();
    settings.insert("idle_timeout".into(), "500ms".into());
    engine.execute(&sql, &mut settings).await.unwrap();
    let mut text = String::new();
    for _ in 0..250 {
        text = window_count(&engine, "quiet_windows").await;
        if text.contains("| 2 ") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(text.contains("| 2 "), "the idle partition was released: {text}");
}

/// `SELECT count(*) FROM view`, as a printed table.
async fn window_count(engine: &Engine, view: &str) -> String {
    let results = engine.execute(&format!("SELECT count(*) FROM {view}"), &mut Settings::new()).await.unwrap();
    let Some(StatementResult::Rows { batches, .. }) = results.last() else { panic!("rows") };
    datafusion::arrow::util::pretty::pretty_format_batches(batches).unwrap().to_string()
}

/// `POST /v1/sql` to a child server; the JSON body.
async fn post_sql(url: &str, sql: &str, settings: serde_json::Value) -> serde_json::Value {
    let response = reqwest::Client::new()
        .post(format!("{url}/v1/sql"))
        .json(&serde_json::json!({"sql": sql, "settings": settings}))
        .send()
        .await
        .expect("the child server answers");
    response.json().await.expect("JSON")
}

/// The sink's commits so far, from SHOW SINKS.
async fn sink_commits(url: &str) -> u64 {
    let body = post_sql(url, "SHOW SINKS", serde_json::json!({})).await;
    body["rows"][0][7].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_run_loses_and_repeats_no_kafka_result() {
    let broker = Broker::start();
    broker.create_topic("events", 2).await;
    let dir = std::env::temp_dir().join(format!("sluice-kafka-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut server = crate::crash::ChildServer::start(&dir);
    let sql = format!(
        "CREATE STREAM events (user VARCHAR, n INT) WITH (connector = 'kafka', brokers = '{0}', topic = 'events', batch_rows = 20);
         CREATE SINK totals INTO KAFKA (brokers = '{0}', topic = 'totals', key = 'user')
           AS SELECT user, count(*) AS c, sum(n) AS s FROM events GROUP BY user",
        broker.address
    );
    let body =
        post_sql(&server.url, &sql, serde_json::json!({"checkpoint_interval": "1s", "epoch_interval": "10ms"})).await;
    assert_eq!(body["results"][1]["query_id"], "q1", "{body}");
    let users = 5;
    let mut next = 0usize;
    let mut produce = |count: usize| {
        let values: Vec<(i32, String, String)> = (next..next + count)
            .map(|n| ((n % 2) as i32, format!("u{}", n % users), format!("{{\"user\":\"u{}\",\"n\":{n}}}", n % users)))
            .collect();
        next += count;
        let records: Vec<(i32, &str, &str)> =
            values.iter().map(|(partition, key, value)| (*partition, key.as_str(), value.as_str())).collect();
        broker.produce("events", &records);
    };
    for round in 0..3 {
        produce(200);
        // Killed just after a transaction committed (tansu would hand a
        // read_committed reader the records of a transaction the kill
        // aborted: not Kafka's behaviour), with rows of the next one held.
        let committed = sink_commits(&server.url).await;
        for _ in 0..300 {
            if sink_commits(&server.url).await > committed {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        produce(50);
        tokio::time::sleep(Duration::from_millis(100 + 100 * round)).await;
        server.kill();
        server = crate::crash::ChildServer::start(&dir);
    }
    produce(100);
    let expected: std::collections::BTreeMap<String, String> = (0..users)
        .map(|user| {
            let ns: Vec<usize> = (0..next).filter(|n| n % users == user).collect();
            let total: usize = ns.iter().sum();
            (format!("u{user}"), format!("{{\"user\":\"u{user}\",\"c\":{},\"s\":{total}}}", ns.len()))
        })
        .collect();
    let mut latest = std::collections::BTreeMap::new();
    let mut written = Vec::new();
    for _ in 0..200 {
        written = broker.read_committed("totals");
        latest.clear();
        for (_, key, value) in &written {
            latest.insert(key.clone(), value.clone().unwrap_or_default());
        }
        if latest == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(latest, expected, "the final totals");
    let seqs: Vec<u64> = written.iter().map(|(seq, _, _)| *seq).collect();
    assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>(), "each result row once through 3 SIGKILLs");
    server.kill();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A Kafka backlog is lag: records produced a while before a query with
/// `max_lag` reads them are as late as their Kafka timestamps say, so it
/// sheds them; records read as they are produced are kept whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_backlog_is_lag_to_a_shedding_query() {
    let broker = Broker::start();
    broker.create_topic("backlog", 1).await;
    let values: Vec<String> = (0..20_000).map(|n| click(n % 7, n)).collect();
    let records: Vec<(i32, &str, &str)> = values.iter().map(|value| (0, "k", value.as_str())).collect();
    broker.produce("backlog", &records);
    // The backlog is two seconds old when the query starts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let engine = Engine::new();
    let mut settings = Settings::new();
    settings.insert("max_lag".into(), "400ms".into());
    let sql = format!(
        "CREATE STREAM backlog (user VARCHAR, n INT)
           WITH (connector = 'kafka', brokers = '{}', topic = 'backlog', batch_rows = 100);
         SELECT user, n, sample_rate FROM backlog",
        broker.address
    );
    let results = engine.execute(&sql, &mut settings).await.unwrap();
    let Some(StatementResult::Query { id, .. }) = results.last() else { panic!("a query") };
    let query = engine.query(id).unwrap();
    let metrics = query.handle.metrics.clone();
    let shed = || sluice_runtime::QueryMetrics::get(&metrics.rows_shed);
    let taken = || sluice_runtime::QueryMetrics::get(&metrics.rows_in) + shed();
    for _ in 0..500 {
        if taken() >= 20_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(taken(), 20_000, "the backlog was read");
    assert!(shed() > 0, "nothing of a two-second-old backlog was shed");
    // Caught up: live records come at full rate again.
    let mut rate = 0.0;
    for round in 0..100 {
        let value = click(round % 7, round);
        broker.produce("backlog", &[(0, "k", value.as_str())]);
        tokio::time::sleep(Duration::from_millis(50)).await;
        rate = metrics.shedding().map_or(0.0, |(rate, _)| rate);
        if rate == 1.0 {
            break;
        }
    }
    assert_eq!(rate, 1.0, "back to full input once caught up");
}
