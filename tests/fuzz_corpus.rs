//! The fuzz targets (`sluice_tests::fuzz`) over the corpus `cargo fuzz`
//! built (`fuzz/corpus/<target>/`) and the inputs that once broke them
//! (`fuzz/regressions/<target>/`): none may panic. A short run of every
//! target on each test run; the long runs are `fuzz/run.sh`.

use std::path::Path;

/// Replays on a thread with a 64 MiB stack: a debug build's frames are
/// several times a release build's, and inputs nested up to the SQL
/// parser's limit (deeper ones are refused: "statement nested too deeply")
/// overflow a test thread's 2 MiB in debug, not the release server's.
fn replay(target: &'static str) {
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(move || replay_here(target))
        .unwrap()
        .join()
        .unwrap_or_else(|_| panic!("{target}: a corpus input failed (see above)"));
}

fn replay_here(target: &str) {
    let (_, run) = sluice_tests::fuzz::TARGETS.iter().find(|(name, _)| *name == target).expect("a target");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("fuzz");
    let mut inputs = 0;
    for dir in [root.join("corpus").join(target), root.join("regressions").join(target)] {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        let mut paths: Vec<_> = entries.flatten().map(|entry| entry.path()).collect();
        paths.sort();
        for path in paths {
            // A fuzzer running meanwhile may have reduced it away.
            let Ok(bytes) = std::fs::read(&path) else { continue };
            if std::env::var_os("SLUICE_FUZZ_VERBOSE").is_some() {
                eprintln!("{}", path.display());
            }
            let outcome = std::panic::catch_unwind(|| run(&bytes));
            assert!(outcome.is_ok(), "{target} panicked on {}", path.display());
            inputs += 1;
        }
    }
    assert!(inputs > 0, "no corpus for {target} under {}", root.display());
}

#[test]
fn sql() {
    replay("sql");
}

#[test]
fn records() {
    replay("records");
}

#[test]
fn http() {
    replay("http");
}

#[test]
fn pgwire() {
    replay("pgwire");
}

#[test]
fn storage() {
    replay("storage");
}
