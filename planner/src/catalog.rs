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
