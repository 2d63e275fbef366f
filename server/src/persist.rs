//! The catalog on disk, so that streams and queries survive a restart.
//!
//! `DATA_DIR/catalog.json` holds the DDL text of every stream and the SQL
//! and settings of every query, with its id. It is rewritten after every
//! change: written to a temporary file, synced, and renamed over the old
//! one, so a crash at any moment leaves either the old or the new catalog.
//! A restarted server replays the DDL and restarts the queries under their
//! ids; replayable sources (files, generators) run again from the start and,
//! queries being deterministic, give the same rows with the same `seq`s.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::settings::Settings;

/// Bumped when the layout changes; an older server refuses a newer catalog.
pub const FORMAT_VERSION: u32 = 1;

const CATALOG_FILE: &str = "catalog.json";

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StoredCatalog {
    pub format_version: u32,
    pub streams: Vec<StoredStream>,
    /// Static tables: their DDL and the INSERTs that filled them.
    #[serde(default)]
    pub tables: Vec<StoredTable>,
    pub queries: Vec<StoredQuery>,
    /// Views (not materialized: those are queries), in creation order.
    #[serde(default)]
    pub views: Vec<StoredView>,
    /// The number the next query id gets (ids are never reused).
    #[serde(default)]
    pub next_query: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredStream {
    pub name: String,
    pub ddl: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredView {
    pub name: String,
    pub ddl: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredTable {
    pub name: String,
    pub ddl: String,
    pub inserts: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredQuery {
    /// The number in the query id `qN`.
    pub number: u64,
    pub sql: String,
    pub settings: Settings,
}

fn catalog_path(data_dir: &Path) -> PathBuf {
    data_dir.join(CATALOG_FILE)
}

/// Reads the stored catalog; `None` for a new data directory.
pub fn load(data_dir: &Path) -> Result<Option<StoredCatalog>, String> {
    let path = catalog_path(data_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(format!("cannot read {}: {error}", path.display())),
    };
    let version: serde_json::Value =
        serde_json::from_str(&text).map_err(|error| format!("{} is not a Sluice catalog: {error}", path.display()))?;
    let found = version["format_version"].as_u64().unwrap_or(0);
    if found != u64::from(FORMAT_VERSION) {
        return Err(format!(
            "{} was written in catalog format {found}, this server reads format {FORMAT_VERSION}; use a matching Sluice version or another --data-dir",
            path.display()
        ));
    }
    serde_json::from_str(&text).map(Some).map_err(|error| format!("{} is damaged: {error}", path.display()))
}

/// Writes the catalog atomically (temporary file, fsync, rename).
pub fn save(data_dir: &Path, catalog: &StoredCatalog) -> std::io::Result<()> {
    std::fs::create_dir_all(data_dir)?;
    let path = catalog_path(data_dir);
    let temporary = data_dir.join(format!("{CATALOG_FILE}.tmp"));
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(serde_json::to_string_pretty(catalog).map_err(std::io::Error::other)?.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, &path)?;
    // Make the rename itself durable.
    if let Ok(directory) = std::fs::File::open(data_dir) {
        let _ = directory.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_other_versions() {
        let directory = std::env::temp_dir().join(format!("sluice-persist-{}", std::process::id()));
        let catalog = StoredCatalog {
            format_version: FORMAT_VERSION,
            streams: vec![StoredStream {
                name: "s".into(),
                ddl: "CREATE STREAM s (x INT) WITH (connector = 'http')".into(),
            }],
            tables: vec![StoredTable {
                name: "t".into(),
                ddl: "CREATE TABLE t (x INT)".into(),
                inserts: vec!["INSERT INTO t VALUES (1)".into()],
            }],
            queries: vec![StoredQuery { number: 3, sql: "SELECT x FROM s".into(), settings: Settings::new() }],
            views: vec![StoredView { name: "v".into(), ddl: "CREATE VIEW v AS SELECT x FROM s".into() }],
            next_query: 5,
        };
        assert_eq!(load(&directory).unwrap(), None);
        save(&directory, &catalog).unwrap();
        assert_eq!(load(&directory).unwrap(), Some(catalog));
        std::fs::write(directory.join(CATALOG_FILE), r#"{"format_version": 99}"#).unwrap();
        assert!(load(&directory).unwrap_err().contains("catalog format 99"));
        let _ = std::fs::remove_dir_all(directory);
    }
}
