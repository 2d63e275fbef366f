//! [`StreamPlan`]: what the planner hands the runtime for one query.

use datafusion::arrow::datatypes::SchemaRef;

use crate::operators::OperatorSpec;
use crate::source::SourceSpec;

/// Index of a node in [`StreamPlan::nodes`].
pub type NodeId = usize;

/// A node of the plan DAG.
#[derive(Debug, Clone)]
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
}

impl StreamPlan {
    /// A one-line-per-node rendering, for EXPLAIN and errors.
    pub fn describe(&self) -> String {
        let mut lines = Vec::new();
        self.describe_node(self.root, 0, &mut lines);
        lines.extend(self.warnings.iter().map(|warning| format!("warning: {warning}")));
        lines.join("\n")
    }

    fn describe_node(&self, node: NodeId, depth: usize, lines: &mut Vec<String>) {
        let indent = "  ".repeat(depth);
        match &self.nodes[node] {
            PlanNode::Source { index } => {
                let source = &self.sources[*index];
                let mut line = format!("{indent}source: {} ({})", source.stream, source.connector.kind());
                if let Some(columns) = source.describe_columns() {
                    line.push_str(&format!(" reading {columns}"));
                }
                lines.push(line);
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
                    other => lines.push(format!("{indent}{}", other.name())),
                }
                for input in inputs {
                    self.describe_node(*input, depth + 1, lines);
                }
            }
        }
    }
}
