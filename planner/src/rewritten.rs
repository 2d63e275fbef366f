//! What the FROM-clause rewrites replaced: the planner-made tables that a
//! rewritten query scans (`__window_N`, `__temporal_N`, `__match_N`), which
//! the lowering turns back into sources and operators.

use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::sqlparser::ast::{self, Expr};
use datafusion::sql::sqlparser::tokenizer::Span;
use sluice_runtime::operators::match_recognize::spec::MatchRecognizeSpec;
use sluice_runtime::operators::window_assign::WindowKind;
use sluice_runtime::source::SourceSpec;

/// A window TVF the rewrite replaced.
#[derive(Debug, Clone)]
pub struct WindowTable {
    /// The planner-made table name (`__window_N`).
    pub table: String,
    /// The stream windowed, or `None` for a query's rows (`subquery`).
    pub source: Option<SourceSpec>,
    /// `TABLE (SELECT ...)`: windows over another query's results.
    pub subquery: Option<Box<ast::Query>>,
    /// The time column's name (for a subquery, resolved when planning).
    pub time_name: String,
    /// The subquery's plan, once planned.
    pub subquery_plan: Option<datafusion::logical_expr::LogicalPlan>,
    pub kind: WindowKind,
    /// Index of the time column in the stream.
    pub time_column: usize,
    /// `PARTITION BY` columns of a SESSION window.
    pub partition_keys: Vec<String>,
}

/// A versioned table read `FOR SYSTEM_TIME AS OF` (a temporal join), which
/// the rewrite replaced by a scan of a planner-made table.
#[derive(Debug, Clone)]
pub struct TemporalTable {
    /// The planner-made table name (`__temporal_N`).
    pub table: String,
    /// The stream whose rows are the table's versions.
    pub source: SourceSpec,
    /// The `AS OF` expression: the probing row's time attribute.
    pub as_of: Expr,
}

/// The column of a versioned table's scan that the `AS OF` time is equated
/// with in the ON condition, so that the planner keeps the probing side's
/// time column and the lowering finds it.
pub const AS_OF_COLUMN: &str = "__as_of";

impl TemporalTable {
    /// The scan's schema: the stream's columns and [`AS_OF_COLUMN`].
    pub fn schema(&self) -> datafusion::arrow::datatypes::SchemaRef {
        use datafusion::arrow::datatypes::{Field, Schema, TimeUnit};
        let mut fields: Vec<Field> = self.source.schema.fields().iter().map(|field| field.as_ref().clone()).collect();
        fields.push(Field::new(AS_OF_COLUMN, DataType::Timestamp(TimeUnit::Nanosecond, None), true));
        std::sync::Arc::new(Schema::new(fields))
    }
}

/// A MATCH_RECOGNIZE clause compiled, waiting for the lowering.
#[derive(Debug, Clone)]
pub struct PatternTable {
    /// The planner-made table name (`__match_N`).
    pub table: String,
    /// The input's plan.
    pub plan: LogicalPlan,
    pub spec: MatchRecognizeSpec,
    /// The MATCH_RECOGNIZE keyword.
    pub span: Span,
}

/// What the rewrites replaced.
#[derive(Debug, Clone, Default)]
pub struct Rewritten {
    pub windows: Vec<WindowTable>,
    pub temporal: Vec<TemporalTable>,
    pub patterns: Vec<PatternTable>,
    /// Sampled stream scans (`__sample_N`).
    pub samples: Vec<SampledTable>,
}

/// A stream scanned `TABLESAMPLE BERNOULLI | SYSTEM` (without ON): its
/// source, with the sample its query applies as rows arrive.
#[derive(Debug, Clone)]
pub struct SampledTable {
    /// The planner-made table name (`__sample_N`).
    pub table: String,
    pub source: sluice_runtime::SourceSpec,
}
