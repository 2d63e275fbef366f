//! Every ready-made query under `queries/weblog` and `queries/cep` plans
//! against the demo streams.

use sluice::engine::Settings;

#[tokio::test]
async fn every_query_file_plans_against_the_demo_streams() {
    let engine = sluice::Engine::new();
    sluice::demo::register(&engine).await.unwrap();
    let queries = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../queries");
    let mut planned = 0;
    let entries = ["weblog", "cep"].into_iter().flat_map(|folder| std::fs::read_dir(queries.join(folder)).unwrap());
    for entry in entries {
        let path = entry.unwrap().path();
        let sql = std::fs::read_to_string(&path).unwrap();
        assert!(sql.starts_with("-- "), "{} needs a header comment", path.display());
        // The header comment comes first; EXPLAIN goes before the statement.
        let statement: String = sql.lines().filter(|line| !line.starts_with("--")).collect::<Vec<_>>().join("\n");
        // Leading `SET name = value;` statements set the query's settings.
        let mut settings = Settings::new();
        let mut statement = statement.trim();
        while statement.to_ascii_uppercase().starts_with("SET ") {
            let (set, rest) = statement.split_once(';').unwrap();
            engine.execute(set, &mut settings).await.unwrap();
            statement = rest.trim();
        }
        let result = engine.execute(&format!("EXPLAIN {statement}"), &mut settings).await;
        assert!(result.is_ok(), "{}: {:?}", path.display(), result.err());
        planned += 1;
    }
    assert!(planned >= 15, "{planned} queries");
}
