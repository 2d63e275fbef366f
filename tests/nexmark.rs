//! Nexmark: every query file plans (or says why not), and the supported
//! ones run on a small bounded input with the rows DataFusion batch SQL
//! gives over the same events.

use sluice::engine::Settings;

/// The queries Sluice cannot run yet, each file saying why.
const UNSUPPORTED: [&str; 4] = ["q6", "q9", "q18", "q19"];

#[tokio::test]
async fn every_nexmark_query_plans_or_says_why_not() {
    let engine = sluice::Engine::new();
    engine.execute(&sluice::nexmark::streams(Some(1000), 1000.0, false), &mut Settings::new()).await.unwrap();
    let mut failures = Vec::new();
    for (name, text) in sluice::nexmark::queries() {
        assert!(text.starts_with("-- Nexmark "), "{name} needs a header comment");
        let statement = sluice::nexmark::statement(&text);
        let result = engine.execute(&format!("EXPLAIN {statement}"), &mut Settings::new()).await;
        let unsupported = UNSUPPORTED.contains(&name.as_str());
        match (result, unsupported) {
            (Ok(_), false) => {}
            (Err(_), true) if text.contains("does not run yet") => {}
            (Err(error), true) => failures.push(format!("{name} must say why it does not run: {error:?}")),
            (Ok(_), true) => failures.push(format!("{name} plans now: take it off UNSUPPORTED")),
            (Err(error), false) => failures.push(format!("{name}: {error:?}")),
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
