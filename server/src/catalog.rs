//! Declared streams, static tables and views, by name.

use std::collections::BTreeMap;

use sluice_runtime::{SourceSpec, TableRef};

/// A stream as declared.
#[derive(Debug, Clone)]
pub struct StreamEntry {
    /// The `CREATE STREAM` text.
    pub ddl: String,
    pub spec: SourceSpec,
}

/// A static table as declared, with the INSERTs that filled it (replayed
/// after a restart).
#[derive(Debug, Clone)]
pub struct TableEntry {
    /// The `CREATE TABLE` text.
    pub ddl: String,
    pub table: TableRef,
    pub inserts: Vec<String>,
}

/// A view or a materialized view, as declared.
#[derive(Debug, Clone)]
pub struct ViewEntry {
    /// The `CREATE [MATERIALIZED] VIEW` text.
    pub ddl: String,
    /// A materialized view's query number (`qN`); `None` for a view.
    pub query: Option<u64>,
}

#[derive(Debug, Default)]
pub struct Catalog {
    streams: BTreeMap<String, StreamEntry>,
    tables: BTreeMap<String, TableEntry>,
    views: BTreeMap<String, ViewEntry>,
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

    /// Whether a stream or a table is called `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.streams.contains_key(name) || self.tables.contains_key(name)
    }

    /// Whether a stream, table or view is called `name`.
    pub fn names_anything(&self, name: &str) -> bool {
        self.contains(name) || self.views.contains_key(name)
    }

    pub fn insert_view(&mut self, name: String, entry: ViewEntry) {
        self.views.insert(name, entry);
    }

    pub fn remove_view(&mut self, name: &str) -> Option<ViewEntry> {
        self.views.remove(name)
    }

    pub fn view_entry(&self, name: &str) -> Option<&ViewEntry> {
        self.views.get(name)
    }

    pub fn views(&self) -> impl Iterator<Item = (&String, &ViewEntry)> {
        self.views.iter()
    }

    pub fn insert_table(&mut self, name: String, entry: TableEntry) {
        self.tables.insert(name, entry);
    }

    pub fn remove_table(&mut self, name: &str) -> Option<TableEntry> {
        self.tables.remove(name)
    }

    pub fn table_entry(&self, name: &str) -> Option<&TableEntry> {
        self.tables.get(name)
    }

    pub fn table_entry_mut(&mut self, name: &str) -> Option<&mut TableEntry> {
        self.tables.get_mut(name)
    }

    pub fn tables(&self) -> impl Iterator<Item = (&String, &TableEntry)> {
        self.tables.iter()
    }
}

impl sluice_planner::Catalog for Catalog {
    fn stream(&self, name: &str) -> Option<SourceSpec> {
        self.streams.get(name).map(|entry| entry.spec.clone())
    }

    fn stream_names(&self) -> Vec<String> {
        self.streams.keys().cloned().collect()
    }

    fn table(&self, name: &str) -> Option<TableRef> {
        self.tables.get(name).map(|entry| entry.table.clone())
    }

    fn table_names(&self) -> Vec<String> {
        self.tables.keys().cloned().collect()
    }

    fn view(&self, name: &str) -> Option<String> {
        self.views.get(name).map(|entry| entry.ddl.clone())
    }
}
