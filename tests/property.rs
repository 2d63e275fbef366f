//! Windowed results and joins on random data equal DataFusion batch SQL over the
//! same data (`date_bin` buckets), for TUMBLE and HOP, whatever the epoch
//! interval and batch size.

use datafusion::prelude::{CsvReadOptions, SessionContext};
use sluice_tests::{RunConfig, SluiceDb, batch_sql_rows};
use sqllogictest::{AsyncDB, DBOutput};

/// A small deterministic generator (no OS randomness: failures must replay).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound
    }
}

/// Rows `ts,k,v` with event time advancing and disorder below 1 s, so the
/// 2-second watermark delay lets every row in.
fn random_csv(seed: u64, rows: usize) -> String {
    let mut random = Lcg(seed);
    let mut csv = String::from("ts,k,v\n");
    let start: i64 = 1_481_014_715_000;
    for index in 0..rows {
        let millis = start + index as i64 * 37 - random.next(900) as i64;
        let seconds = millis.div_euclid(1000);
        let time = chrono_free_timestamp(seconds, millis.rem_euclid(1000));
        csv.push_str(&format!("{time},k{},{}\n", random.next(7), random.next(1000) as i64 - 300));
    }
    csv
}

/// `YYYY-MM-DDTHH:MM:SS.mmm` for a time on 2016-12-06 (the data stays within that day).
fn chrono_free_timestamp(epoch_seconds: i64, millis: i64) -> String {
    let day_start = 1_480_982_400; // 2016-12-06T00:00:00Z
    let second_of_day = epoch_seconds - day_start;
    format!(
        "2016-12-06T{:02}:{:02}:{:02}.{millis:03}",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    )
}

async fn batch_rows(path: &str, sql: &str) -> Vec<Vec<String>> {
    let context = SessionContext::new();
    context.register_csv("t", path, CsvReadOptions::new()).await.unwrap();
    batch_sql_rows(&context, sql).await
}

async fn stream_rows(path: &str, sql: &str, config: RunConfig) -> Vec<Vec<String>> {
    let mut db = SluiceDb::new(config).await;
    let ddl = format!(
        "CREATE STREAM t (ts TIMESTAMP, k VARCHAR, v BIGINT, WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
         WITH (connector = 'file', path = '{path}', format = 'csv', header = 'true', batch_rows = '{}')",
        config.batch_rows
    );
    db.run(&ddl).await.unwrap();
    match db.run(sql).await.unwrap() {
        DBOutput::Rows { mut rows, .. } => {
            rows.sort();
            rows
        }
        _ => panic!("no rows"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_match_datafusion_batch_sql_on_random_data() {
    let directory = std::env::temp_dir().join(format!("sluice-property-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let cases = [
        (
            "SELECT window_start, k, count(*), sum(v), min(v), max(v)
             FROM TUMBLE(t, ts, INTERVAL '5' SECOND) GROUP BY window_start, window_end, k",
            "SELECT date_bin(INTERVAL '5 seconds', ts, TIMESTAMP '1970-01-01') AS ws, k, count(*), sum(v), min(v), max(v)
             FROM t GROUP BY 1, 2",
        ),
        (
            "SELECT window_start, k, count(*), sum(v), min(v), max(v)
             FROM HOP(t, ts, INTERVAL '2' SECOND, INTERVAL '6' SECOND) GROUP BY window_start, window_end, k",
            "SELECT date_bin(INTERVAL '2 seconds', ts, TIMESTAMP '1970-01-01') - back AS ws,
                    k, count(*), sum(v), min(v), max(v)
             FROM t CROSS JOIN (VALUES (INTERVAL '0 seconds'), (INTERVAL '2 seconds'), (INTERVAL '4 seconds')) AS o(back)
             GROUP BY 1, 2",
        ),
        // Only invertible aggregates: the add-and-retract path.
        (
            "SELECT window_start, k, count(*), sum(v), avg(v)
             FROM HOP(t, ts, INTERVAL '1' SECOND, INTERVAL '4' SECOND) GROUP BY window_start, window_end, k",
            "SELECT date_bin(INTERVAL '1 seconds', ts, TIMESTAMP '1970-01-01') - back AS ws,
                    k, count(*), sum(v), avg(v)
             FROM t CROSS JOIN (VALUES (INTERVAL '0 seconds'), (INTERVAL '1 seconds'), (INTERVAL '2 seconds'),
                                       (INTERVAL '3 seconds')) AS o(back)
             GROUP BY 1, 2",
        ),
        (
            "SELECT window_start, count(DISTINCT k), sum(v)
             FROM HOP(t, ts, INTERVAL '2' SECOND, INTERVAL '5' SECOND) GROUP BY window_start, window_end",
            // Windows of 5 s ending on even seconds start on odd ones.
            "SELECT ws, count(DISTINCT k), sum(v) FROM (
               SELECT date_bin(INTERVAL '1 seconds', ts, TIMESTAMP '1970-01-01') - back AS ws, k, v
               FROM t CROSS JOIN (VALUES (INTERVAL '0 seconds'), (INTERVAL '1 seconds'), (INTERVAL '2 seconds'),
                                         (INTERVAL '3 seconds'), (INTERVAL '4 seconds')) AS o(back))
             WHERE CAST(extract(epoch FROM ws) AS BIGINT) % 2 = 1
             GROUP BY ws",
        ),
    ];
    for seed in 1..=3u64 {
        let path = directory.join(format!("data-{seed}.csv"));
        std::fs::write(&path, random_csv(seed, 1500)).unwrap();
        let path = path.display().to_string();
        for (stream_sql, batch_sql) in cases {
            let expected = batch_rows(&path, batch_sql).await;
            assert!(expected.len() > 10, "{batch_sql}");
            for config in sluice_tests::RUN_CONFIGS {
                let got = stream_rows(&path, stream_sql, config).await;
                assert_eq!(got, expected, "seed {seed}, {config:?}: {stream_sql}");
            }
        }
    }
    let _ = std::fs::remove_dir_all(directory);
}

/// DataFusion batch SQL over tables `a` and `b`; NULL as the runner prints it.
async fn batch_join_rows(paths: [&str; 2], sql: &str) -> Vec<Vec<String>> {
    let context = SessionContext::new();
    context.register_csv("a", paths[0], CsvReadOptions::new()).await.unwrap();
    context.register_csv("b", paths[1], CsvReadOptions::new()).await.unwrap();
    batch_sql_rows(&context, sql).await
}

async fn stream_join_rows(paths: [&str; 2], sql: &str, config: RunConfig) -> Vec<Vec<String>> {
    let mut db = SluiceDb::new(config).await;
    for (name, path) in ["a", "b"].into_iter().zip(paths) {
        let ddl = format!(
            "CREATE STREAM {name} (ts TIMESTAMP, k VARCHAR, v BIGINT, WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
             WITH (connector = 'file', path = '{path}', format = 'csv', header = 'true', batch_rows = '{}')",
            config.batch_rows
        );
        db.run(&ddl).await.unwrap();
    }
    match db.run(sql).await.unwrap() {
        DBOutput::Rows { mut rows, .. } => {
            rows.sort();
            rows
        }
        _ => panic!("no rows"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_match_datafusion_batch_joins_on_random_data() {
    let directory = std::env::temp_dir().join(format!("sluice-property-joins-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let bound = "a.k = b.k AND b.ts BETWEEN a.ts - INTERVAL '1' SECOND AND a.ts + INTERVAL '2' SECOND";
    let cases = [
        (
            format!("SELECT a.k, a.v, b.v FROM a JOIN b ON {bound}"),
            format!("SELECT a.k, a.v, b.v FROM a JOIN b ON {bound}"),
        ),
        (
            format!("SELECT a.k, a.v, b.v FROM a LEFT JOIN b ON {bound} AND b.v > a.v"),
            format!("SELECT a.k, a.v, b.v FROM a LEFT JOIN b ON {bound} AND b.v > a.v"),
        ),
        (
            format!("SELECT a.v, b.k, b.v FROM a FULL JOIN b ON {bound} AND b.v < 0"),
            format!("SELECT a.v, b.k, b.v FROM a FULL JOIN b ON {bound} AND b.v < 0"),
        ),
        (
            "SELECT a.window_start, a.k, a.v, b.v
             FROM TUMBLE(a, ts, INTERVAL '5' SECOND) a JOIN TUMBLE(b, ts, INTERVAL '5' SECOND) b
               ON a.window_start = b.window_start AND a.window_end = b.window_end AND a.k = b.k"
                .to_string(),
            "SELECT date_bin(INTERVAL '5 seconds', a.ts, TIMESTAMP '1970-01-01') AS ws, a.k, a.v, b.v
             FROM a JOIN b ON a.k = b.k
               AND date_bin(INTERVAL '5 seconds', a.ts, TIMESTAMP '1970-01-01')
                 = date_bin(INTERVAL '5 seconds', b.ts, TIMESTAMP '1970-01-01')"
                .to_string(),
        ),
    ];
    for seed in 1..=2u64 {
        let paths = [0, 1].map(|side| {
            let path = directory.join(format!("data-{seed}-{side}.csv"));
            std::fs::write(&path, random_csv(seed * 10 + side, 800)).unwrap();
            path.display().to_string()
        });
        let paths = [paths[0].as_str(), paths[1].as_str()];
        for (stream_sql, batch_sql) in &cases {
            let expected = batch_join_rows(paths, batch_sql).await;
            assert!(expected.len() > 100, "{batch_sql}");
            for config in sluice_tests::RUN_CONFIGS {
                let got = stream_join_rows(paths, stream_sql, config).await;
                assert!(
                    got == expected,
                    "seed {seed}, {config:?}: {stream_sql}: {} rows, expected {}",
                    got.len(),
                    expected.len()
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(directory);
}

/// Key groups run on one thread or two: the same changelog, row for row
/// and seq for seq, over batches big enough to be split across threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallelism_changes_no_row_and_no_seq() {
    let directory = std::env::temp_dir().join(format!("sluice-parallel-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let path = directory.join("data.csv");
    std::fs::write(&path, random_csv(7, 40_000)).unwrap();
    let path = path.display().to_string();
    let queries = [
        "SELECT v, count(*), sum(v), max(k) FROM t GROUP BY v",
        "SELECT window_start, v % 50, count(*), min(k) FROM TUMBLE(t, ts, INTERVAL '1' SECOND)
         GROUP BY window_start, window_end, v % 50",
        "SELECT window_start, v % 50, count(*), sum(v) FROM HOP(t, ts, INTERVAL '1' SECOND, INTERVAL '3' SECOND)
         GROUP BY window_start, window_end, v % 50",
        "SELECT v, k, rn FROM (SELECT v, k, ROW_NUMBER() OVER (PARTITION BY v % 100 ORDER BY k DESC) AS rn FROM t)
         WHERE rn <= 2",
    ];
    for sql in queries {
        let mut changelogs = Vec::new();
        for parallelism in [1, 2] {
            let config = RunConfig { epoch_interval: "1s", batch_rows: 8192, crash_after_steps: None, parallelism };
            let mut db = SluiceDb::new(config).await;
            let ddl = format!(
                "CREATE STREAM t (ts TIMESTAMP, k VARCHAR, v BIGINT, WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
                 WITH (connector = 'file', path = '{path}', format = 'csv', header = 'true', batch_rows = '8192')"
            );
            db.run(&ddl).await.unwrap();
            changelogs.push(db.changelog(sql).await.unwrap());
        }
        assert!(changelogs[0].len() > 200, "{sql}: {} rows", changelogs[0].len());
        assert_eq!(changelogs[0], changelogs[1], "{sql}");
    }
    let _ = std::fs::remove_dir_all(directory);
}
