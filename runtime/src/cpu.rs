//! The threads pipelines run on, apart from the runtime that serves the API.
//!
//! A query's driver and its sources do CPU work for as long as input
//! comes (decoding, operators, encoding results). Run on the tokio
//! runtime that also answers HTTP requests and websocket frames, a heavy
//! query would sit in front of every API response on its worker. So
//! queries start on a runtime of their own (threads named
//! `sluice-pipeline`), as DataFusion's users do with a dedicated executor;
//! the operating system shares the cores between it and the API's
//! workers, and an API task never waits behind an epoch.
//!
//! [`set_pipeline_threads`] chooses the size once, before the first query
//! (default: one thread per core). With 0, queries run on whatever
//! runtime starts them, as before this module existed (kept to measure
//! the difference: `sluice bench api`).

use std::sync::OnceLock;

use tokio::runtime::{Handle, Runtime};

static THREADS: OnceLock<usize> = OnceLock::new();
static RUNTIME: OnceLock<Option<Runtime>> = OnceLock::new();

/// Sets how many threads run pipelines (0: the caller's runtime). Only
/// the first call before any query starts counts (the first query fixes
/// the size); later calls return false.
pub fn set_pipeline_threads(threads: usize) -> bool {
    THREADS.set(threads).is_ok()
}

/// The pipeline threads there are (0: queries run on the caller's runtime).
pub fn pipeline_threads() -> usize {
    *THREADS.get_or_init(default_threads)
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}

/// The runtime queries start on, or `None` to use the caller's.
pub(crate) fn handle() -> Option<Handle> {
    RUNTIME
        .get_or_init(|| {
            let threads = pipeline_threads();
            if threads == 0 {
                return None;
            }
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .thread_name("sluice-pipeline")
                .enable_all()
                .build();
            match runtime {
                Ok(runtime) => Some(runtime),
                Err(error) => {
                    tracing::warn!(%error, "cannot start the pipeline threads; queries share the API's");
                    None
                }
            }
        })
        .as_ref()
        .map(|runtime| runtime.handle().clone())
}
