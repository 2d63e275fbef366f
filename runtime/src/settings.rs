//! [`QuerySettings`]: how one query runs (epochs, retention, checkpoints,
//! idle inputs), as opposed to *what* it computes, which its
//! [`StreamPlan`](crate::plan::StreamPlan) alone says.
//!
//! A leaf module: the driver reads these settings, operators never do (the
//! durations that change results, allowed lateness and state TTL, reach
//! them through their specs).

use std::sync::Arc;
use std::time::Duration;

use crate::checkpoint::CheckpointConfig;
use crate::source::HttpIngest;

/// Per-query settings.
#[derive(Debug, Clone)]
pub struct QuerySettings {
    /// Time between epochs; zero runs an epoch whenever data arrives.
    pub epoch_interval: Duration,
    /// Result rows kept for subscribers that join late or reconnect.
    pub retained_rows: usize,
    /// Events a subscriber may fall behind before it is cut off (see
    /// [`crate::output`]).
    pub subscriber_queue: usize,
    /// The query fails with `state_limit_exceeded` once its operators hold
    /// more than this many bytes (checked about every two seconds).
    pub max_state_bytes: Option<u64>,
    /// Keys of an unbounded GROUP BY not updated for this long (processing
    /// time) are forgotten; `None` keeps them forever. Planned into the
    /// specs that keep such state; the runtime never reads it from here.
    pub state_ttl: Option<Duration>,
    /// An input with event time that sends nothing for this long stops
    /// holding back the query's watermark; `None` waits for it forever.
    pub idle_timeout: Option<Duration>,
    /// How long after a tumbling window fired late rows may still update it
    /// (its result is then retracted and emitted again); `None` drops them.
    /// Planned into the window specs and [`StreamPlan::allowed_lateness`](crate::plan::StreamPlan::allowed_lateness);
    /// the runtime never reads it from here.
    pub allowed_lateness: Option<Duration>,
    /// Where late rows go besides being counted: an `http` stream other
    /// queries read (the "route" late-data policy).
    pub late_rows_to: Option<Arc<HttpIngest>>,
    /// Where and how often to checkpoint; `None` runs without (a server
    /// without a data directory, tests, benchmarks). Set by the server from
    /// `checkpoint_interval` and the query's id.
    pub checkpoint: Option<CheckpointConfig>,
    /// `SET checkpoint_interval`: how often a query of a server with a data
    /// directory checkpoints; `None` turns checkpoints off.
    pub checkpoint_interval: Option<Duration>,
    /// Stops the query abruptly after this many steps (source events taken),
    /// as a crash would: in the middle of an epoch, without publishing it,
    /// without a final checkpoint. For recovery tests only.
    pub halt_after_steps: Option<u64>,
    /// At most this many source events per epoch (the rest wait for the
    /// next one); `None` takes everything that arrived. Recovery tests use
    /// 1 so that a checkpoint can fall between any two events.
    pub max_steps_per_epoch: Option<usize>,
    /// Threads the key groups of one operator run on at once (`SET
    /// parallelism`); results do not depend on it.
    pub parallelism: usize,
    /// `SET max_lag`: the query sheds input (see [`crate::shed`]) to stay
    /// within this of it. Planned into the sources' specs (the rate
    /// column); the driver reads the bound from here.
    pub max_lag: Option<Duration>,
    /// Key groups of each operator with per-key state (`SET
    /// max_parallelism`). Planned into [`StreamPlan::key_groups`](crate::plan::StreamPlan::key_groups);
    /// the runtime never reads it from here.
    pub max_parallelism: usize,
}

/// Key groups an operator with per-key state is split into unless a query
/// says otherwise: the most threads it can use, and what its checkpoints
/// are cut into.
pub const DEFAULT_KEY_GROUPS: usize = 8;

/// The threads a query uses unless it sets `parallelism`: one per core.
pub fn default_parallelism() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

impl Default for QuerySettings {
    fn default() -> Self {
        Self {
            epoch_interval: Duration::from_millis(100),
            retained_rows: 10_000,
            subscriber_queue: crate::output::SUBSCRIBER_QUEUE,
            max_state_bytes: None,
            state_ttl: None,
            idle_timeout: None,
            allowed_lateness: None,
            late_rows_to: None,
            checkpoint: None,
            checkpoint_interval: Some(Duration::from_secs(5)),
            halt_after_steps: None,
            max_steps_per_epoch: None,
            parallelism: default_parallelism(),
            max_lag: None,
            max_parallelism: DEFAULT_KEY_GROUPS,
        }
    }
}
