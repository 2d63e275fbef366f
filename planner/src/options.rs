//! Query settings that change the plan.

use sluice_runtime::operators::window_aggregate::EarlyEmit;

/// Query settings that change the plan.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Late rows may update fired tumbling windows for this long, so their
    /// results are updating (retractions), not emitted once.
    pub allowed_lateness: Option<std::time::Duration>,
    /// The query's EMIT clause.
    pub emit: Option<EarlyEmit>,
    /// Unbounded state not updated for this long is forgotten.
    pub state_ttl: Option<std::time::Duration>,
    /// Key groups of each operator with per-key state (`max_parallelism`):
    /// the most threads it can use, fixed for the query's checkpoints.
    pub key_groups: usize,
    /// `SET max_lag`: the query sheds its input under load, so its scans
    /// carry each row's rate and its aggregates are estimates (see
    /// [`crate::sample`]).
    pub shed: bool,
}
