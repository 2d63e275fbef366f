//! Sampled aggregates against the exact answer: over many seeds, the 95 %
//! interval a sampled `count(*)` and `sum(x)` state (the estimate ±
//! `count_error(*)`, `sum_error(x)`) covers the exact value in about 95 %
//! of them; and a seed gives the same sample at every parallelism.

use sluice_tests::{RunConfig, SluiceDb};
use sqllogictest::{AsyncDB, DBOutput};

const STREAM: &str = "CREATE STREAM g (
  ts TIMESTAMP, ip VARCHAR, status INT, method VARCHAR, url VARCHAR, duration DOUBLE,
  WATERMARK FOR ts AS ts - INTERVAL '1' SECOND
) WITH (connector = 'generator', kind = 'weblog', rows = '3000', realtime = 'false', seed = '9', hosts = '30')";

async fn rows(db: &mut SluiceDb, sql: &str) -> Vec<Vec<f64>> {
    match db.run(sql).await.expect("the query runs") {
        DBOutput::Rows { rows, .. } => {
            rows.into_iter().map(|row| row.iter().map(|cell| cell.parse().expect("a number")).collect()).collect()
        }
        _ => panic!("no rows: {sql}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_95_percent_interval_covers_the_exact_answer_in_about_95_percent_of_seeds() {
    let config = RunConfig { epoch_interval: "0", batch_rows: 8192, crash_after_steps: None, parallelism: 1 };
    let mut db = SluiceDb::new(config).await;
    db.run(STREAM).await.unwrap();
    let exact = rows(&mut db, "SELECT count(*), sum(duration) FROM g").await;
    let (count, sum) = (exact[0][0], exact[0][1]);
    let seeds = 120;
    let (mut count_covered, mut sum_covered) = (0, 0);
    for seed in 0..seeds {
        let sql = format!(
            "SELECT count(*), count_error(*), sum(duration), sum_error(duration) FROM g TABLESAMPLE BERNOULLI (10) REPEATABLE ({seed})"
        );
        let estimate = rows(&mut db, &sql).await;
        let [estimated_count, count_error, estimated_sum, sum_error] = estimate[0][..] else { panic!("four columns") };
        assert!(count_error > 0.0 && sum_error > 0.0);
        count_covered += usize::from((estimated_count - count).abs() <= count_error);
        sum_covered += usize::from((estimated_sum - sum).abs() <= sum_error);
    }
    // 95 % of 120 is 114; two standard deviations of a binomial count are
    // about 4.8, and the normal approximation is a little optimistic.
    for (what, covered) in [("count", count_covered), ("sum", sum_covered)] {
        let share = covered as f64 / seeds as f64;
        println!("{what}: the 95 % interval covered the exact answer in {covered} of {seeds} seeds");
        assert!(
            (0.88..=0.995).contains(&share),
            "{what}: the interval covered the exact answer in {covered} of {seeds} seeds"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_gives_the_same_sample_at_every_parallelism_and_batching() {
    let sql = "SELECT ip, count(*), sum(status) FROM g TABLESAMPLE BERNOULLI (30) REPEATABLE (11) GROUP BY ip";
    let mut results = Vec::new();
    for (epoch_interval, parallelism) in [("0", 1), ("10ms", 2), ("1s", 2)] {
        let config = RunConfig { epoch_interval, batch_rows: 8192, crash_after_steps: None, parallelism };
        let mut db = SluiceDb::new(config).await;
        db.run(STREAM).await.unwrap();
        let DBOutput::Rows { mut rows, .. } = db.run(sql).await.unwrap() else { panic!("rows") };
        rows.sort();
        results.push(rows);
    }
    assert!(results[0].len() > 5);
    assert_eq!(results[0], results[1]);
    assert_eq!(results[0], results[2]);
}

/// The weblog generator through a burst: 2000 rows/s for 2 s, 2 M rows/s
/// for 1 s (several times what a debug build's query takes), then 2000/s
/// for 6 s. `realtime` and `stream` vary; the records do not (each is a
/// function of its number and the seed, its event time of the schedule).
fn burst_stream(stream: &str, realtime: bool) -> String {
    let rows = 2000 * 2 + 2_000_000 + 2000 * 6;
    format!(
        "CREATE STREAM {stream} (ts TIMESTAMP, ip VARCHAR, duration DOUBLE, WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
         WITH (connector = 'generator', realtime = '{realtime}', rate = '2000', hosts = '4', seed = '3',
               burst_factor = '1000', burst_after = '2', burst_seconds = '1', rows = '{rows}')"
    )
}

fn burst_query(stream: &str, errors: bool) -> String {
    let errors = if errors { ", count_error(*) AS hits_error, sum_error(duration) AS total_error" } else { "" };
    format!(
        "SELECT window_start, ip, count(*) AS hits, sum(duration) AS total{errors}
         FROM TUMBLE(TABLE {stream}, DESCRIPTOR(ts), INTERVAL '1' SECOND) GROUP BY window_start, window_end, ip"
    )
}

/// Each window's row by (window start, ip).
fn windows(frames: &[serde_json::Value]) -> std::collections::BTreeMap<(String, String), serde_json::Value> {
    frames
        .iter()
        .filter(|frame| frame["type"] == "rows")
        .flat_map(|frame| frame["rows"].as_array().cloned().unwrap_or_default())
        .map(|row| ((row["window_start"].as_str().unwrap().to_string(), row["ip"].as_str().unwrap().to_string()), row))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_behind_its_input_sheds_states_its_rate_and_error_and_returns_to_full_input() {
    let server = sluice_tests::TestServer::start().await;
    for ddl in [burst_stream("burst", true), burst_stream("exact", false)] {
        let (status, body) = server.sql(&ddl).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = server.sql_with(&burst_query("burst", true), serde_json::json!({"max_lag": "1s"})).await;
    assert_eq!(status, 200, "{body}");
    let id = body["query_id"].as_str().unwrap().to_string();
    let url = server.ws_url(&format!("/v1/queries/{id}/ws"));
    let reader = tokio::spawn(async move { sluice_tests::read_frames(&url, usize::MAX).await });
    // While it runs, its status says how it sheds.
    let mut lowest_rate: f64 = 1.0;
    let mut recovered = false;
    let mut explained = String::new();
    loop {
        let (_, report) = server.get(&format!("/v1/queries/{id}")).await;
        let shedding = &report["metrics"]["shedding"];
        assert_eq!(shedding["max_lag_ms"], 1000.0, "{report}");
        let rate = shedding["rate"].as_f64().unwrap();
        recovered |= lowest_rate < 1.0 && rate == 1.0 && report["status"] == "running";
        if rate < lowest_rate {
            lowest_rate = rate;
            let (_, body) = server.sql(&format!("EXPLAIN ANALYZE {id}")).await;
            explained = body["rows"].as_array().unwrap().iter().map(|row| row[0].as_str().unwrap()).collect();
        }
        if report["status"] != "running" {
            assert_eq!(report["status"], "finished", "{report}");
            assert!(shedding["rows_shed"].as_u64().unwrap() > 100_000, "{report}");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(lowest_rate < 0.9, "the query never shed: {lowest_rate}");
    assert!(explained.contains("shedding (max_lag 1.00 s): rate 0."), "{explained}");
    let prometheus = server.http.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let shed_total = prometheus
        .lines()
        .find_map(|line| line.strip_prefix(&format!("sluice_query_rows_shed_total{{query=\"{id}\"}} ")))
        .unwrap_or_else(|| panic!("{prometheus}"));
    assert!(shed_total.parse::<f64>().unwrap() > 0.0, "{prometheus}");
    assert!(prometheus.contains(&format!("sluice_query_sample_rate{{query=\"{id}\"}} ")), "{prometheus}");
    let (_, plan) = server.get(&format!("/v1/queries/{id}/plan")).await;
    assert!(plan["shedding"]["rows_shed"].as_u64().unwrap() > 0, "{plan}");
    let frames = reader.await.unwrap();
    assert!(frames.iter().any(|frame| frame["type"] == "progress" && frame["sample_rate"].is_number()));
    let shed = windows(&frames);

    let (status, body) = server.sql(&burst_query("exact", false)).await;
    assert_eq!(status, 200, "{body}");
    let exact_id = body["query_id"].as_str().unwrap().to_string();
    let exact =
        windows(&sluice_tests::read_frames(&server.ws_url(&format!("/v1/queries/{exact_id}/ws")), usize::MAX).await);
    assert_eq!(shed.keys().collect::<Vec<_>>(), exact.keys().collect::<Vec<_>>());
    let number = |row: &serde_json::Value, column: &str| row[column].as_f64().unwrap();
    let mut sampled = 0;
    for (key, estimate) in &shed {
        let truth = &exact[key];
        let rate = number(estimate, "sample_rate");
        if rate == 1.0 {
            // Not shed: exact, errors 0.
            assert_eq!(number(estimate, "hits"), number(truth, "hits"), "{key:?}");
            assert!((number(estimate, "total") - number(truth, "total")).abs() < 1e-6, "{key:?}");
            assert_eq!(number(estimate, "hits_error"), 0.0);
            continue;
        }
        sampled += 1;
        // Within four times the stated 95 % half-width (a scaling or
        // variance mistake is far outside; chance alone is not, p < 1e-9).
        for (column, error) in [("hits", "hits_error"), ("total", "total_error")] {
            let (got, want, half_width) = (number(estimate, column), number(truth, column), number(estimate, error));
            assert!(half_width > 0.0, "{key:?} {estimate}");
            assert!((got - want).abs() <= 4.0 * half_width, "{key:?} {column}: {got} ± {half_width}, exact {want}");
        }
    }
    assert!(sampled >= 4, "no burst window was shed: {shed:?}");
    // Full input before the burst, and again once caught up after it
    // (the last window, unless a busy machine kept the query behind until
    // the end; its status said so then).
    let first = shed.iter().next().unwrap().1;
    let last = shed.iter().next_back().unwrap().1;
    assert_eq!(number(first, "sample_rate"), 1.0, "{first}");
    assert!(recovered || number(last, "sample_rate") == 1.0, "never back to full input: {last}");
}

/// The shedding rates a query took are in its input log: restored after
/// a crash, it sheds the logged chunks exactly as before (its live rate
/// starts at 1, so a replay without the log would keep every row).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_query_sheds_the_replayed_input_exactly_as_before_the_crash() {
    use sluice_runtime::OutputEvent;
    let dir = std::env::temp_dir().join(format!("sluice-shed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let limits = sluice::engine::Limits { parallelism: 1, ..Default::default() };
    let mut settings: sluice::settings::Settings = [
        ("epoch_interval", "0"),
        ("max_lag", "1ms"),
        ("retained_rows", "100000000"),
        // Only the first checkpoint: everything after it is replayed.
        ("checkpoint_interval", "1h"),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value.to_string()))
    .collect();
    let mut engine =
        sluice::engine::Engine::open_with(&dir, sluice_runtime::Fsync::default(), limits.clone()).await.unwrap();
    engine.halt_queries_after(120);
    let stream =
        "CREATE STREAM g (ts TIMESTAMP, ip VARCHAR, duration DOUBLE, WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
        WITH (connector = 'generator', realtime = 'false', rows = '20000000', hosts = '20')";
    engine.execute(stream, &mut settings).await.unwrap();
    let results = engine.execute("SELECT ts, ip, duration, sample_rate FROM g", &mut settings).await.unwrap();
    let Some(sluice::engine::StatementResult::Query { id, .. }) = results.last() else { panic!("a query") };
    let id = id.clone();
    let collect = |engine: &sluice::engine::Engine| {
        let query = engine.query(&id).expect("the query");
        let mut events = query.handle.output.subscribe(0);
        async move {
            let mut rows = Vec::new();
            loop {
                match events.recv().await {
                    Some(OutputEvent::Rows { batch, .. }) => rows.push(batch.rows),
                    Some(OutputEvent::Progress { .. }) => {}
                    Some(OutputEvent::Failed { message }) => return (rows, Some(message)),
                    other => return (rows, other.map(|event| format!("{event:?}"))),
                }
            }
        }
    };
    let (before, ended) = collect(&engine).await;
    assert!(ended.as_deref().is_some_and(|ended| ended.contains(sluice_runtime::driver::HALTED)), "{ended:?}");
    drop(engine);
    let engine = sluice::engine::Engine::open_with(&dir, sluice_runtime::Fsync::default(), limits).await.unwrap();
    let report = engine.query(&id).unwrap().handle.metrics.checkpoints();
    assert!(report.replayed_steps > 50, "{report:?}");
    let (after, _) = collect(&engine).await;
    let flatten = |batches: &[datafusion::arrow::array::RecordBatch]| {
        datafusion::arrow::compute::concat_batches(&batches[0].schema(), batches).unwrap()
    };
    let (before, after) = (flatten(&before), flatten(&after));
    assert!(before.num_rows() > 1000);
    let rates = before.column(3).as_any().downcast_ref::<datafusion::arrow::array::Float64Array>().unwrap();
    let lowest = rates.iter().flatten().fold(1.0, f64::min);
    assert!(lowest < 1.0, "nothing was shed before the crash");
    // Every row published before the crash is published again, the same.
    assert!(after.num_rows() >= before.num_rows());
    assert_eq!(after.slice(0, before.num_rows()), before);
    drop(engine);
    let _ = std::fs::remove_dir_all(&dir);
}
