//! The operators a pipeline runs. Each file holds one operator: its spec
//! (what the planner produces) and the running instance. A few files hold
//! what several operators share instead: `groups` (aggregate state per
//! group), `sliding` (running aggregates over panes), `join_condition` (the
//! ON condition of the stream, lookup and temporal joins) and `window_rows`
//! (splitting a batch by window and dropping late rows).

pub mod group_aggregate;
pub(crate) mod groups;
pub mod join_condition;
pub mod limit;
pub mod lookup_join;
pub mod pane_window;
#[cfg(test)]
pub(crate) mod restore_check;
pub mod session_window;
pub(crate) mod sliding;
pub mod stateless;
pub mod stream_join;
pub mod temporal_join;
pub mod top_n;
pub mod union;
pub mod window_aggregate;
pub mod window_assign;
pub mod window_join;
pub(crate) mod window_rows;
