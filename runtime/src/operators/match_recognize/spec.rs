//! What the planner hands the `match_recognize` operator: the pattern over
//! variable numbers, each DEFINE and MEASURES expression compiled once to a
//! DataFusion physical expression over its **navigations**, and the output
//! layout.
//!
//! A navigation is one value an expression reads from the match: a column
//! of a row the match selects (`A.price`, `FIRST(A.price, 1)`,
//! `PREV(LAST(B.price), 2)`), a `CLASSIFIER()`, `MATCH_NUMBER()`, or an
//! aggregate over rows of the match (`SUM(B.price)`, `COUNT(*)`). The
//! operator evaluates the navigations of an expression into the columns
//! of a small batch (one row per candidate thread, or per output row) and
//! the physical expression over that batch: the expression itself never
//! sees the partition.

use std::sync::Arc;

use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

/// The column of an aggregated row's variable (`CLASSIFIER()` inside an
/// aggregate's argument).
pub const CLASSIFIER_COLUMN: &str = "__classifier";

/// The column of the match's number inside an aggregate's argument.
pub const MATCH_NUMBER_COLUMN: &str = "__match_number";

/// A row pattern over variable numbers (indexes into
/// [`MatchRecognizeSpec::variables`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatternSpec {
    Variable(usize),
    Concat(Vec<PatternSpec>),
    Alternation(Vec<PatternSpec>),
    /// `min..=max` repetitions (`max` `None`: unbounded); `greedy` prefers
    /// more, reluctant fewer.
    Quantified {
        pattern: Box<PatternSpec>,
        min: u32,
        max: Option<u32>,
        greedy: bool,
    },
    Permute(Vec<PatternSpec>),
    /// `{- ... -}`: matched, but its rows are left out of ALL ROWS PER MATCH.
    Exclude(Box<PatternSpec>),
    /// `^`: the partition's start.
    Start,
    /// `$`: the partition's end (only a bounded input has one).
    End,
    /// `()`: matches without consuming a row.
    Empty,
}

/// `ONE ROW PER MATCH` or `ALL ROWS PER MATCH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowsPerMatch {
    /// One row per match; with `timeouts`, also one per partial match that
    /// `WITHIN` cut off, marked in the last output column.
    One {
        timeouts: bool,
    },
    All(EmptyMatches),
}

/// What `ALL ROWS PER MATCH` does with empty matches and unmatched rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmptyMatches {
    Show,
    Omit,
    WithUnmatched,
}

/// `AFTER MATCH SKIP ...`; a target is a set of primary variables (one, or
/// a SUBSET's members).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipTo {
    PastLastRow,
    NextRow,
    First(Vec<usize>),
    Last(Vec<usize>),
}

/// Which row of the partition a navigation reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowSelect {
    /// The rows mapped to these variables; `None`: every row of the match
    /// (the universal variable, as an unqualified column is).
    pub vars: Option<Vec<usize>>,
    /// `FIRST` counts from the first such row, `LAST` (the default) from
    /// the last.
    pub from_first: bool,
    /// The logical offset `n` of `FIRST(x, n)` / `LAST(x, n)`.
    pub logical: u64,
    /// Then this many rows further in the partition: `NEXT(x, n)` is `+n`,
    /// `PREV(x, n)` is `-n`.
    pub physical: i64,
    /// `FINAL`: over the whole match, not the rows up to the current one.
    pub final_semantics: bool,
}

/// One value an expression reads from the match.
#[derive(Debug, Clone)]
pub enum Navigation {
    /// Input column `column` of the selected row (NULL without one).
    Value { column: usize, select: RowSelect },
    /// The variable the selected row is mapped to (NULL without one).
    Classifier { select: RowSelect },
    /// The match's number in its partition, from 1.
    MatchNumber,
    /// An aggregate over the rows mapped to `vars` (`None`: every row of
    /// the match); its arguments are expressions over the input's columns
    /// followed by [`CLASSIFIER_COLUMN`] (each row's variable) and
    /// [`MATCH_NUMBER_COLUMN`].
    Aggregate { aggregate: Arc<AggregateFunctionExpr>, vars: Option<Vec<usize>>, final_semantics: bool },
}

/// A DEFINE condition or a MEASURES expression, compiled.
#[derive(Debug, Clone)]
pub struct CompiledExpr {
    /// The columns of the evaluation batch, in order.
    pub navigations: Vec<Navigation>,
    /// The evaluation batch's schema (`__nav_0`, `__nav_1`, ...).
    pub schema: SchemaRef,
    /// The expression over the evaluation batch.
    pub expr: Arc<dyn PhysicalExpr>,
    /// The SQL it came from, for EXPLAIN.
    pub text: String,
}

/// A `MATCH_RECOGNIZE` clause, compiled.
#[derive(Debug, Clone)]
pub struct MatchRecognizeSpec {
    pub input_schema: SchemaRef,
    /// `PARTITION BY` input columns.
    pub partition_by: Vec<usize>,
    /// The event-time column (the first ORDER BY key).
    pub time_column: usize,
    /// Further ORDER BY keys breaking ties of event time (then arrival
    /// order).
    pub order_by: Vec<(usize, SortOptions)>,
    /// The primary pattern variables, by number.
    pub variables: Vec<String>,
    /// `SUBSET` names and their primary variables.
    pub subsets: Vec<(String, Vec<usize>)>,
    pub pattern: PatternSpec,
    /// The DEFINE condition of each variable (`None`: always true).
    pub defines: Vec<Option<CompiledExpr>>,
    /// MEASURES, by output name.
    pub measures: Vec<(String, CompiledExpr)>,
    pub rows_per_match: RowsPerMatch,
    pub skip: SkipTo,
    /// `WITHIN`: the most event time a match may span, in nanoseconds.
    pub within: Option<i64>,
    /// ONE ROW PER MATCH: partition columns, measures (and `timed_out`
    /// with timeout rows). ALL ROWS PER MATCH: partition columns, ORDER BY
    /// columns, measures, the other input columns.
    pub output_schema: SchemaRef,
    /// The output column carrying event time, if any (`MATCH_ROWTIME()`
    /// measured, or the input's time column in ALL ROWS PER MATCH).
    pub output_time: Option<usize>,
}
