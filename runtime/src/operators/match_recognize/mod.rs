//! MATCH_RECOGNIZE: row pattern recognition over a stream. The
//! [`spec`] is what the planner compiles a clause to, the [`matcher`] the
//! pattern's automaton, and the [`operator`] runs them per partition in
//! event-time order.

pub mod matcher;
pub mod operator;
pub mod spec;
