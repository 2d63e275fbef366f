//! MATCH_RECOGNIZE on random data and random patterns equals a small
//! reference matcher written here, independently of the operator: a plain
//! backtracking search in preference order, one attempt per start row, with
//! AFTER MATCH SKIP PAST LAST ROW, for every run configuration.

use sluice_tests::{RunConfig, SluiceDb};
use sqllogictest::{AsyncDB, DBOutput};

struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound
    }
}

/// A pattern over the variables A (v below the previous row's), B (v at
/// least 2) and C (v above the last A's: a DEFINE that reads the match's
/// history).
#[derive(Debug, Clone)]
enum Pattern {
    Var(usize),
    Concat(Vec<Pattern>),
    Alt(Vec<Pattern>),
    Repeat { pattern: Box<Pattern>, min: u32, max: Option<u32>, greedy: bool },
}

const NAMES: [&str; 3] = ["A", "B", "C"];

impl Pattern {
    fn random(random: &mut Lcg, depth: u32) -> Pattern {
        match if depth == 0 { 0 } else { random.next(6) } {
            0 | 1 => Pattern::Var(random.next(3) as usize),
            2 => Pattern::Concat((0..2).map(|_| Pattern::random(random, depth - 1)).collect()),
            3 => Pattern::Alt((0..2).map(|_| Pattern::random(random, depth - 1)).collect()),
            _ => {
                let min = random.next(2) as u32;
                let max = if random.next(2) == 0 { None } else { Some(min + random.next(3) as u32) };
                let greedy = random.next(2) == 0;
                Pattern::Repeat { pattern: Box::new(Pattern::random(random, depth - 1)), min, max, greedy }
            }
        }
    }

    fn uses(&self, var: usize) -> bool {
        match self {
            Pattern::Var(used) => *used == var,
            Pattern::Concat(items) | Pattern::Alt(items) => items.iter().any(|item| item.uses(var)),
            Pattern::Repeat { pattern, .. } => pattern.uses(var),
        }
    }

    fn sql(&self) -> String {
        match self {
            Pattern::Var(var) => NAMES[*var].to_string(),
            Pattern::Concat(items) => {
                items.iter().map(|item| format!("({})", item.sql())).collect::<Vec<_>>().join(" ")
            }
            Pattern::Alt(items) => items.iter().map(|item| format!("({})", item.sql())).collect::<Vec<_>>().join(" | "),
            Pattern::Repeat { pattern, min, max, greedy } => {
                let bounds = match max {
                    Some(max) => format!("{{{min},{max}}}"),
                    None => format!("{{{min},}}"),
                };
                format!("({}){bounds}{}", pattern.sql(), if *greedy { "" } else { "?" })
            }
        }
    }
}

/// Rows mapped so far: (row, variable).
type Labels = Vec<(usize, usize)>;

/// What to do when a part of the pattern matched: given the labels and the
/// next row, whether the rest matches.
type Then<'a> = &'a mut dyn FnMut(&mut Labels, usize) -> bool;

/// One partition's rows: (id, v), in event-time order.
struct Reference<'a> {
    rows: &'a [(i64, i64)],
}

impl Reference<'_> {
    fn holds(&self, var: usize, row: usize, labels: &[(usize, usize)]) -> bool {
        let v = self.rows[row].1;
        match var {
            0 => row > 0 && v < self.rows[row - 1].1,
            1 => v >= 2,
            _ => labels.iter().rev().find(|(_, var)| *var == 0).is_some_and(|(a, _)| v > self.rows[*a].1),
        }
    }

    /// Matches `items` from `row` in preference order, calling `then` with
    /// the labels and the next row at each way they can end, until `then`
    /// succeeds (the labels are then the match).
    fn search(&self, items: &[Pattern], row: usize, labels: &mut Vec<(usize, usize)>, then: Then<'_>) -> bool {
        let Some((first, rest)) = items.split_first() else { return then(labels, row) };
        let with_rest = |head: Vec<Pattern>| -> Vec<Pattern> { head.into_iter().chain(rest.iter().cloned()).collect() };
        match first {
            Pattern::Var(var) => {
                if row < self.rows.len() && self.holds(*var, row, labels) {
                    labels.push((row, *var));
                    if self.search(rest, row + 1, labels, then) {
                        return true;
                    }
                    labels.pop();
                }
                false
            }
            Pattern::Concat(parts) => self.search(&with_rest(parts.clone()), row, labels, then),
            Pattern::Alt(parts) => {
                parts.iter().any(|part| self.search(&with_rest(vec![part.clone()]), row, labels, then))
            }
            Pattern::Repeat { pattern, min, max, greedy } => {
                if *min > 0 {
                    let less = Pattern::Repeat {
                        pattern: pattern.clone(),
                        min: min - 1,
                        max: max.map(|max| max - 1),
                        greedy: *greedy,
                    };
                    return self.search(&with_rest(vec![pattern.as_ref().clone(), less]), row, labels, then);
                }
                if *max == Some(0) {
                    return self.search(rest, row, labels, then);
                }
                let more =
                    Pattern::Repeat { pattern: pattern.clone(), min: 0, max: max.map(|max| max - 1), greedy: *greedy };
                let after_more = with_rest(vec![more]);
                let once = |labels: &mut Vec<(usize, usize)>, then: Then<'_>| {
                    self.search(std::slice::from_ref(pattern.as_ref()), row, labels, &mut |labels, next| {
                        // An iteration that consumed no row ends the loop.
                        if next == row {
                            self.search(rest, next, labels, then)
                        } else {
                            self.search(&after_more, next, labels, then)
                        }
                    })
                };
                match greedy {
                    true => once(labels, then) || self.search(rest, row, labels, then),
                    false => self.search(rest, row, labels, then) || once(labels, then),
                }
            }
        }
    }

    /// ALL ROWS PER MATCH, SHOW EMPTY MATCHES, SKIP PAST LAST ROW: each
    /// output row's (id, match number, variable).
    fn matches(&self, pattern: &Pattern) -> Vec<(i64, u64, Option<usize>)> {
        let mut out = Vec::new();
        let mut number = 0;
        let mut start = 0;
        while start < self.rows.len() {
            let mut labels = Vec::new();
            if self.search(std::slice::from_ref(pattern), start, &mut labels, &mut |_, _| true) {
                number += 1;
                if labels.is_empty() {
                    out.push((self.rows[start].0, number, None));
                    start += 1;
                } else {
                    for (row, var) in &labels {
                        out.push((self.rows[*row].0, number, Some(*var)));
                    }
                    start = labels.last().map_or(start, |(row, _)| row + 1);
                }
            } else {
                start += 1;
            }
        }
        out
    }
}

async fn stream_rows(path: &str, sql: &str, config: RunConfig) -> Vec<Vec<String>> {
    let mut db = SluiceDb::new(config).await;
    let ddl = format!(
        "CREATE STREAM t (ts TIMESTAMP, k VARCHAR, id BIGINT, v BIGINT, WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
         WITH (connector = 'file', path = '{path}', format = 'csv', header = 'true', batch_rows = '{}')",
        config.batch_rows
    );
    db.run(&ddl).await.unwrap();
    match db.run(sql).await {
        Ok(DBOutput::Rows { mut rows, .. }) => {
            rows.sort();
            rows
        }
        Ok(_) => panic!("{sql}: no rows"),
        Err(error) => panic!("{sql}: {error}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patterns_match_a_backtracking_reference_on_random_data() {
    let directory = std::env::temp_dir().join(format!("sluice-pattern-property-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let mut random = Lcg(11);
    let mut compared = 0;
    let mut labelled = 0;
    for case in 0..24 {
        // Rows a second apart, three partitions, small values.
        let rows = 20 + random.next(20) as usize;
        let mut csv = String::from("ts,k,id,v\n");
        let mut partitions: Vec<Vec<(i64, i64)>> = vec![Vec::new(); 3];
        for id in 0..rows as i64 {
            let key = random.next(3) as usize;
            let v = random.next(5) as i64;
            csv.push_str(&format!("2020-01-01T00:{:02}:{:02},k{key},{id},{v}\n", id / 60, id % 60));
            partitions[key].push((id, v));
        }
        let path = directory.join(format!("case-{case}.csv"));
        std::fs::write(&path, csv).unwrap();
        let pattern = Pattern::random(&mut random, 3);
        let mut expected: Vec<Vec<String>> = Vec::new();
        for (key, rows) in partitions.iter().enumerate() {
            for (id, number, var) in (Reference { rows }).matches(&pattern) {
                let var = var.map_or("NULL".to_string(), |var| NAMES[var].to_string());
                expected.push(vec![format!("k{key}"), id.to_string(), number.to_string(), var]);
            }
        }
        expected.sort();
        labelled += expected.iter().filter(|row| row[3] != "NULL").count();
        let defines: Vec<&str> = ["A AS A.v < PREV(A.v)", "B AS B.v >= 2", "C AS C.v > A.v"]
            .into_iter()
            .enumerate()
            .filter(|(var, _)| pattern.uses(*var))
            .map(|(_, define)| define)
            .collect();
        let sql = format!(
            "SELECT k, id, n, var FROM t MATCH_RECOGNIZE (
               PARTITION BY k ORDER BY ts
               MEASURES MATCH_NUMBER() AS n, CLASSIFIER() AS var
               ALL ROWS PER MATCH
               PATTERN ({})
               DEFINE {}
             ) AS m",
            pattern.sql(),
            defines.join(", ")
        );
        let path = path.display().to_string();
        for config in sluice_tests::RUN_CONFIGS {
            let got = stream_rows(&path, &sql, config).await;
            assert_eq!(got, expected, "case {case}, {config:?}: {sql}");
            compared += 1;
        }
    }
    assert_eq!(compared, 24 * sluice_tests::RUN_CONFIGS.len());
    // The cases match rows, not only empty matches.
    assert!(labelled > 100, "{labelled} rows matched");
    let _ = std::fs::remove_dir_all(directory);
}
