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
