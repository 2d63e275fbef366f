//! MATCH_RECOGNIZE: row pattern recognition over a stream.

pub mod matcher;
pub mod spec;
