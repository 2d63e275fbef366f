//! Declared streams, by name.

use std::collections::BTreeMap;

use sluice_runtime::SourceSpec;

/// A stream as declared.
#[derive(Debug, Clone)]
pub struct StreamEntry {
    /// The `CREATE STREAM` text.
    pub ddl: String,
    pub spec: SourceSpec,
}

#[derive(Debug, Default)]
pub struct Catalog {
    streams: BTreeMap<String, StreamEntry>,
}

impl Catalog {
    pub fn insert(&mut self, name: String, entry: StreamEntry) {
        self.streams.insert(name, entry);
    }

    pub fn remove(&mut self, name: &str) -> Option<StreamEntry> {
        self.streams.remove(name)
    }

    pub fn get(&self, name: &str) -> Option<&StreamEntry> {
        self.streams.get(name)
    }

    pub fn streams(&self) -> impl Iterator<Item = (&String, &StreamEntry)> {
        self.streams.iter()
    }
}

impl sluice_planner::Catalog for Catalog {
    fn stream(&self, name: &str) -> Option<SourceSpec> {
        self.streams.get(name).map(|entry| entry.spec.clone())
    }

    fn stream_names(&self) -> Vec<String> {
        self.streams.keys().cloned().collect()
    }
}
