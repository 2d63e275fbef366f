//! [`StreamPlan`]: what the planner hands the runtime for one query. The
//! plan is the whole contract: with the sources' own specs it says
//! everything that decides the query's results (no query setting reaches an
//! operator except through its spec), and EXPLAIN renders it.

use std::time::Duration;

use datafusion::arrow::datatypes::SchemaRef;

use crate::operators::OperatorSpec;
use crate::operators::window_assign::WindowKind;
use crate::source::SourceSpec;

/// Index of a node in [`StreamPlan::nodes`].
pub type NodeId = usize;

/// A node of the plan DAG.
#[derive(Debug, Clone)]
// A plan has a handful of nodes, built once per query: boxing the spec
// would buy nothing but an indirection in every planner match.
#[allow(clippy::large_enum_variant)]
pub enum PlanNode {
    /// Rows of `plan.sources[index]`, after watermarking and the lateness check.
    Source { index: usize },
    /// An operator reading the outputs of `inputs`, in port order.
    Operator { spec: OperatorSpec, inputs: Vec<NodeId> },
}

/// A continuous query as a DAG of operator specs over sources. Every node
/// feeds exactly one consumer; `root`'s output is the query's result.
#[derive(Debug, Clone)]
pub struct StreamPlan {
    pub sources: Vec<SourceSpec>,
    pub nodes: Vec<PlanNode>,
    pub root: NodeId,
    /// The schema of the result.
    pub schema: SchemaRef,
    /// Whether the result is append-only (`false`: rows carry ops).
    pub append_only: bool,
    /// What the user should know about how the query will run (state that
    /// grows without bound, ...).
    pub warnings: Vec<String>,
    /// Rows this far below their source's watermark are still let in (to
    /// update windows that fired); `None` drops every row below it.
    pub allowed_lateness: Option<Duration>,
    /// Per source (by index), the windows a window assignment reading it
    /// directly puts its rows in, so the driver can count late rows per
    /// window. Filled by [`with_source_windows`](StreamPlan::with_source_windows).
    pub source_windows: Vec<Option<WindowKind>>,
    /// Operators whose state is per key run as this many instances, each
    /// for the keys that hash to it (`max_parallelism`; see
    /// [`partitioned`](crate::operators::partitioned)); 1 keeps each whole.
    pub key_groups: usize,
    /// Where the results are also written, exactly once with the
    /// checkpoints (`CREATE SINK`); `None` for subscribers only.
    pub sink: Option<crate::sink::SinkSpec>,
    /// The output keeps the current result (the changelog applied) for
    /// snapshots and one-off reads (`CREATE MATERIALIZED VIEW`).
    pub materialized: bool,
}

impl StreamPlan {
    /// Fills [`source_windows`](StreamPlan::source_windows) from the nodes:
    /// the planner calls it on the finished plan.
    pub fn with_source_windows(mut self) -> Self {
        let mut windows = vec![None; self.sources.len()];
        for node in &self.nodes {
            let PlanNode::Operator { spec: OperatorSpec::WindowAssign(spec), inputs } = node else { continue };
            for input in inputs {
                if let Some(PlanNode::Source { index }) = self.nodes.get(*input)
                    && let Some(window) = windows.get_mut(*index)
                {
                    // The first assignment reading the source, as before.
                    window.get_or_insert(spec.kind);
                }
            }
        }
        self.source_windows = windows;
        self
    }

    /// A one-line-per-node rendering, for EXPLAIN and errors.
    pub fn describe(&self) -> String {
        self.describe_with(&|_| Vec::new())
    }

    /// [`describe`](StreamPlan::describe) with `annotate(node)`'s lines
    /// under each node (EXPLAIN ANALYZE's figures).
    pub fn describe_with(&self, annotate: &dyn Fn(NodeId) -> Vec<String>) -> String {
        let mut lines = Vec::new();
        self.describe_node(self.root, 0, &mut lines, annotate);
        lines.extend(self.warnings.iter().map(|warning| format!("warning: {warning}")));
        lines.join("\n")
    }

    /// The source nodes `node` reads from, directly or not.
    pub fn sources_under(&self, node: NodeId) -> Vec<NodeId> {
        match &self.nodes[node] {
            PlanNode::Source { .. } => vec![node],
            PlanNode::Operator { inputs, .. } => inputs.iter().flat_map(|input| self.sources_under(*input)).collect(),
        }
    }

    fn describe_node(
        &self,
        node: NodeId,
        depth: usize,
        lines: &mut Vec<String>,
        annotate: &dyn Fn(NodeId) -> Vec<String>,
    ) {
        let indent = "  ".repeat(depth);
        let annotations = |lines: &mut Vec<String>| {
            lines.extend(annotate(node).into_iter().map(|line| format!("{indent}    {line}")));
        };
        match &self.nodes[node] {
            PlanNode::Source { index } => {
                let source = &self.sources[*index];
                let mut line = format!("{indent}source: {} ({})", source.stream, source.connector.kind());
                if let crate::source::ConnectorSpec::Kafka(kafka) = &source.connector
                    && let Some(partition) = kafka.partition
                {
                    line = format!("{indent}source: {} (kafka {} partition {partition})", source.stream, kafka.topic);
                }
                if let Some(columns) = source.describe_columns() {
                    line.push_str(&format!(" reading {columns}"));
                }
                lines.push(line);
                annotations(lines);
            }
            PlanNode::Operator { spec, inputs } => {
                match spec {
                    // The DataFusion plan of a stateless segment, one line per node.
                    OperatorSpec::Stateless(spec) => {
                        let plan = datafusion::physical_plan::displayable(spec.plan.as_ref()).indent(false).to_string();
                        let mut lines_of_plan = plan.lines().filter(|line| !line.trim().is_empty());
                        let first = lines_of_plan.next().unwrap_or_default().trim();
                        lines.push(format!("{indent}stateless: {first}"));
                        for line in lines_of_plan {
                            lines.push(format!("{indent}  {line}"));
                        }
                    }
                    OperatorSpec::TopN(spec) => lines.push(format!("{indent}top_n: {}", spec.describe())),
                    OperatorSpec::MatchRecognize(spec) => lines.push(format!(
                        "{indent}match_recognize: {}",
                        crate::operators::match_recognize::operator::MatchRecognize::describe(spec)
                    )),
                    other => {
                        let settings = match other {
                            OperatorSpec::WindowAggregate(spec) => describe("allowed lateness", spec.allowed_lateness),
                            OperatorSpec::SessionWindow(spec) => describe("allowed lateness", spec.allowed_lateness),
                            OperatorSpec::GroupAggregate(spec) => describe("state ttl", spec.state_ttl),
                            OperatorSpec::StreamJoin(spec) => describe("state ttl", spec.state_ttl),
                            OperatorSpec::Limit(spec) => crate::operators::limit::Limit::describe(spec),
                            _ => String::new(),
                        };
                        lines.push(format!("{indent}{}{settings}", other.name()));
                    }
                }
                if self.key_groups > 1
                    && let Some(partitioning) = spec.partitioning()
                {
                    lines.push(format!(
                        "{indent}  exchange: {} into {} key groups",
                        partitioning.describe(),
                        self.key_groups
                    ));
                }
                annotations(lines);
                for input in inputs {
                    self.describe_node(*input, depth + 1, lines, annotate);
                }
            }
        }
    }
}

/// ` (what 5s)` for a duration that is set, nothing otherwise.
fn describe(what: &str, duration: Option<Duration>) -> String {
    duration.map_or_else(String::new, |duration| format!(" ({what} {})", human(duration)))
}

/// A duration in the largest unit that shows it exactly, as `SET` takes it
/// (`1h`, `90s`, `250ms`); other durations as Rust prints them.
fn human(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    let units: [(u128, &str); 4] =
        [(3_600_000_000_000, "h"), (60_000_000_000, "min"), (1_000_000_000, "s"), (1_000_000, "ms")];
    match units.iter().find(|(unit, _)| nanos > 0 && nanos.is_multiple_of(*unit)) {
        Some((unit, name)) => format!("{}{name}", nanos / unit),
        None => format!("{duration:?}"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    use super::*;
    use crate::operators::union::UnionSpec;
    use crate::operators::window_assign::WindowAssignSpec;
    use crate::source::ConnectorSpec;

    #[test]
    fn the_plan_says_which_windows_each_source_feeds() {
        let schema =
            Arc::new(Schema::new(vec![Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), false)]));
        let source = |stream: &str| SourceSpec {
            stream: stream.into(),
            primary_key: Vec::new(),
            schema: schema.clone(),
            event_time: None,
            proctime_column: None,
            connector: ConnectorSpec::Http(Arc::default()),
            columns: None,
            status: Arc::default(),
            sample: None,
            shed: false,
        };
        let kind = WindowKind::Tumble { size: 10, offset: 0 };
        let assign = WindowAssignSpec::new(kind, 0, &schema);
        let plan = StreamPlan {
            sources: vec![source("a"), source("b")],
            nodes: vec![
                PlanNode::Source { index: 0 },
                PlanNode::Operator { spec: OperatorSpec::WindowAssign(assign.clone()), inputs: vec![0] },
                PlanNode::Source { index: 1 },
                PlanNode::Operator {
                    spec: OperatorSpec::Union(UnionSpec { schema: assign.output_schema.clone() }),
                    inputs: vec![1, 2],
                },
            ],
            root: 3,
            schema: assign.output_schema.clone(),
            append_only: true,
            warnings: Vec::new(),
            allowed_lateness: None,
            source_windows: Vec::new(),
            key_groups: 1,
            sink: None,
            materialized: false,
        }
        .with_source_windows();
        assert!(matches!(plan.source_windows.as_slice(), [Some(WindowKind::Tumble { size: 10, .. }), None]));
    }

    #[test]
    fn durations_show_in_the_unit_set_takes() {
        assert_eq!(describe("state ttl", None), "");
        assert_eq!(describe("state ttl", Some(Duration::from_secs(3600))), " (state ttl 1h)");
        assert_eq!(human(Duration::from_secs(90)), "90s");
        assert_eq!(human(Duration::from_millis(250)), "250ms");
        assert_eq!(human(Duration::from_secs(120)), "2min");
        assert_eq!(human(Duration::from_nanos(1_500)), "1.5µs");
    }
}
