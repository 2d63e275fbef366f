//! What the planner needs to know about the server's catalog.

use sluice_runtime::source::SourceSpec;
use sluice_runtime::table::TableRef;

/// What the planner needs to know about the server's catalog.
pub trait Catalog: Send + Sync {
    /// The stream called `name` (already normalised), if any.
    fn stream(&self, name: &str) -> Option<SourceSpec>;
    /// Every stream's name.
    fn stream_names(&self) -> Vec<String>;
    /// The static table called `name`, if any.
    fn table(&self, _name: &str) -> Option<TableRef> {
        None
    }
    /// Every static table's name.
    fn table_names(&self) -> Vec<String> {
        Vec::new()
    }
    /// The `CREATE VIEW` text of the view called `name`, if any; readers
    /// plan its query into their own (see [`crate::views`]).
    fn view(&self, _name: &str) -> Option<String> {
        None
    }
}

/// A catalog as a shedding query (`SET max_lag`) sees it: each stream
/// with the rate column its query fills (see
/// [`sluice_runtime::shed`]).
pub struct Shedding<'a>(pub &'a dyn Catalog);

impl Catalog for Shedding<'_> {
    fn stream(&self, name: &str) -> Option<SourceSpec> {
        self.0.stream(name).map(SourceSpec::shed)
    }

    fn stream_names(&self) -> Vec<String> {
        self.0.stream_names()
    }

    fn table(&self, name: &str) -> Option<TableRef> {
        self.0.table(name)
    }

    fn table_names(&self) -> Vec<String> {
        self.0.table_names()
    }

    fn view(&self, name: &str) -> Option<String> {
        self.0.view(name)
    }
}
