//! Runs every `.slt` file under `sql/` once per [`RUN_CONFIGS`] entry: the
//! same expected rows must come out whatever the epoch interval and however
//! the input is split into batches. Set `SLT_FILTER` to run some files only.
//!
//! `SLT_COMPLETE=1` regenerates the expected results (as DataFusion's
//! `--complete`): each file is first rewritten with what the first
//! configuration produces, then checked against every configuration as
//! usual, so a regenerated file still has to hold in all of them.

use sluice_tests::{RUN_CONFIGS, SluiceDb, sql_dir};
use sqllogictest::{default_column_validator, default_normalizer, default_validator};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqllogictest_files() {
    let filter = std::env::var("SLT_FILTER").unwrap_or_default();
    let complete = std::env::var_os("SLT_COMPLETE").is_some_and(|value| !value.is_empty() && value != "0");
    let mut files: Vec<_> = std::fs::read_dir(sql_dir())
        .expect("tests/sql exists")
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|extension| extension == "slt"))
        .filter(|path| path.display().to_string().contains(&filter))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files found");
    let mut failures = Vec::new();
    for file in &files {
        if complete {
            let config = RUN_CONFIGS[0];
            let mut runner = sqllogictest::Runner::new(move || async move { Ok(SluiceDb::new(config).await) });
            if let Err(error) = runner
                .update_test_file(file, " ", default_validator, default_normalizer, default_column_validator)
                .await
            {
                failures.push(format!("{}: cannot regenerate: {error}", file.display()));
                continue;
            }
        }
        for config in RUN_CONFIGS {
            let mut runner = sqllogictest::Runner::new(move || async move { Ok(SluiceDb::new(config).await) });
            if let Err(error) = runner.run_file_async(file).await {
                failures.push(format!("{} with {config:?}:\n{error}", file.display()));
            }
        }
    }
    assert!(failures.is_empty(), "{} failure(s):\n\n{}", failures.len(), failures.join("\n\n"));
    let recoveries = sluice_tests::RECOVERIES.load(std::sync::atomic::Ordering::Relaxed);
    let replayed = sluice_tests::REPLAYED_STEPS.load(std::sync::atomic::Ordering::Relaxed);
    println!("crash-and-recover runs: {recoveries} queries restored, {replayed} logged steps replayed");
    if filter.is_empty() {
        assert!(recoveries >= 20 && replayed > 0, "recovery barely exercised: {recoveries} restores, {replayed} steps");
    }
}
