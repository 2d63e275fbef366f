//! The running DAG of one query.
//!
//! # Algorithm
//!
//! Messages are delivered through one FIFO work queue: pushing a message to
//! a node runs its operator, and each message the operator emits is queued
//! for the node's consumer. Per edge, order is preserved. The pipeline, not
//! the operators, combines watermarks: a node's watermark is the minimum of
//! its inputs' watermarks, and an input that ended counts as `+∞`.
//!
//! ```text
//!   source 0 ─┐
//!             ├─► union ─► stateless ─► window_aggregate ─► stateless ─► result
//!   source 1 ─┘   min(wm0, wm1)
//! ```
//!
//! Each edge, as its consumer sees it, is `EdgeState::Active`, `Idle` or
//! `Ended`; an input's state and watermark change in one place
//! (`Input::step`), whatever message arrives.
//!
//! ## Checkpoint barriers
//!
//! At a checkpoint the driver calls [`Pipeline::checkpoint`], which pushes
//! `Barrier(id)` into every source node that has not ended. A node with one
//! input takes its state (its operator's snapshot plus its edges'
//! states) and forwards the barrier at once. A node with several inputs
//! *aligns*: it notes the barrier per input and, once it has it from every
//! input that has not ended, takes its state and forwards the barrier once.
//! The checkpoint is complete when the barrier comes out of the root.
//!
//! ```text
//!   source 0 ─B─┐
//!               ├─► join: B on port 0 ... B on port 1 → state, then B ─► root ─B─► done
//!   source 1 ─B─┘
//! ```
//!
//! Alignment is trivial here: the pipeline runs on one task and delivers
//! in FIFO order, and the driver pushes nothing but the barriers until
//! `checkpoint` returns, so by the time a barrier reaches a node every
//! message before it on that input has been taken and nothing after it can
//! arrive before the barrier's copies on the other inputs (a message that
//! did is an internal error, not a mixed checkpoint). No input ever needs
//! to be blocked or buffered. Ended nodes, which the barrier cannot reach,
//! no longer change: their state is taken as it is.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Result, RuntimeError};
use crate::message::{Message, Watermark};
use crate::metrics::{OperatorMetrics, QueryMetrics};
use crate::operator::{Operator, OperatorContext};
use crate::plan::{NodeId, PlanNode, StreamPlan};
use crate::state::OperatorState;

/// Where an edge of the DAG stands, as the node reading it sees it: the
/// state of each input of a node, and of a node's own output (what its
/// consumer's input becomes).
///
/// ```text
///   Active ──Idle──► Idle ──Batch / Watermark──► Active
///     │               │
///     └──────End──────┴──► Ended (final; its watermark is +∞)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EdgeState {
    /// Sending rows or watermarks: it holds the node's watermark back.
    Active,
    /// Idle for the idle timeout: left out of the node's watermark until it
    /// sends rows or a watermark again.
    Idle,
    /// Exhausted: nothing follows.
    Ended,
}

impl EdgeState {
    /// The state after `message` passed along the edge. The one place the
    /// states change.
    fn step(self, message: &Message) -> EdgeState {
        match (self, message) {
            (EdgeState::Ended, _) => EdgeState::Ended,
            (_, Message::End) => EdgeState::Ended,
            (_, Message::Idle) => EdgeState::Idle,
            (_, Message::Batch(_) | Message::Watermark(_)) => EdgeState::Active,
            (state, Message::Barrier(_)) => state,
        }
    }
}

/// One input of a node.
#[derive(Debug, Clone)]
struct Input {
    state: EdgeState,
    /// The largest watermark it sent (`+∞` once it ended).
    watermark: Watermark,
    /// The checkpoint barrier it delivered, while the node waits for the
    /// same barrier on its other inputs (see the module's `# Algorithm`).
    barrier: Option<u64>,
}

impl Input {
    fn step(&mut self, message: &Message) {
        self.state = self.state.step(message);
        match message {
            Message::Watermark(watermark) => self.watermark = self.watermark.max(*watermark),
            Message::End => self.watermark = Watermark::MAX,
            _ => {}
        }
    }
}

struct RunningNode {
    /// `None` for sources, which pass messages through unchanged.
    operator: Option<Box<dyn Operator>>,
    /// The consumer of this node's output and the port it reads it on.
    consumer: Option<(NodeId, usize)>,
    inputs: Vec<Input>,
    /// This node's output: `Idle` once it told its consumer it is idle (and
    /// has not sent since), `Ended` once it sent `End`.
    output: EdgeState,
    watermark: Watermark,
    /// Rows, time and watermarks, for EXPLAIN ANALYZE.
    metrics: Arc<OperatorMetrics>,
}

impl RunningNode {
    /// The node's state at a checkpoint: its operator's state plus the
    /// watermarks, idleness and ends of its inputs and of its output.
    fn snapshot(&mut self) -> Result<OperatorState> {
        let mut state = match &mut self.operator {
            Some(operator) => operator.snapshot()?,
            None => OperatorState::default(),
        };
        for (port, input) in self.inputs.iter().enumerate() {
            state.put_value(&format!("__input_watermark_{port}"), input.watermark.0);
            state.put_value(&format!("__input_ended_{port}"), i64::from(input.state == EdgeState::Ended));
            state.put_value(&format!("__input_idle_{port}"), i64::from(input.state == EdgeState::Idle));
        }
        state.put_value("__idle", i64::from(self.output == EdgeState::Idle));
        state.put_value("__watermark", self.watermark.0);
        state.put_value("__ended", i64::from(self.output == EdgeState::Ended));
        Ok(state)
    }

    /// Loads a [`snapshot`](RunningNode::snapshot) (of this format or of
    /// the one before edge states, which kept a flag per state: an ended
    /// edge that was also flagged idle is ended, as it always behaved).
    fn restore(&mut self, state: OperatorState) -> Result<()> {
        let edge = |ended: i64, idle: i64| match (ended != 0, idle != 0) {
            (true, _) => EdgeState::Ended,
            (false, true) => EdgeState::Idle,
            (false, false) => EdgeState::Active,
        };
        for (port, input) in self.inputs.iter_mut().enumerate() {
            input.watermark = Watermark(state.value(&format!("__input_watermark_{port}"))?);
            input.state =
                edge(state.value(&format!("__input_ended_{port}"))?, state.value(&format!("__input_idle_{port}"))?);
        }
        self.output = edge(state.value("__ended")?, state.value("__idle")?);
        self.watermark = Watermark(state.value("__watermark")?);
        if let Some(operator) = &mut self.operator {
            operator.restore(state)?;
        }
        Ok(())
    }
}

/// A running pipeline: push messages in at source nodes, collect the root's
/// output.
pub struct Pipeline {
    nodes: Vec<RunningNode>,
    root: NodeId,
    /// Node id of each source, by source index.
    source_nodes: Vec<NodeId>,
    /// During [`checkpoint`](Pipeline::checkpoint): each node's state, taken
    /// when the barrier passed it.
    barrier_states: Vec<Option<OperatorState>>,
    query_metrics: Arc<QueryMetrics>,
    /// When the state figures were last refreshed.
    refreshed_at: Option<Instant>,
}

/// How often state figures are refreshed while someone watches.
const REFRESH_EVERY: Duration = Duration::from_secs(1);

impl EdgeState {
    fn name(self) -> &'static str {
        match self {
            EdgeState::Active => "active",
            EdgeState::Idle => "idle",
            EdgeState::Ended => "ended",
        }
    }
}

impl Pipeline {
    pub fn new(plan: &StreamPlan, context: &OperatorContext) -> Result<Self> {
        let mut nodes = Vec::with_capacity(plan.nodes.len());
        let mut source_nodes = vec![usize::MAX; plan.sources.len()];
        for (id, node) in plan.nodes.iter().enumerate() {
            let (operator, inputs, name) = match node {
                PlanNode::Source { index } => {
                    source_nodes[*index] = id;
                    let source = &plan.sources[*index];
                    let name = match &source.connector {
                        crate::source::ConnectorSpec::Kafka(kafka) if kafka.partition.is_some() => {
                            format!("source: {} partition {}", source.stream, kafka.partition.unwrap_or_default())
                        }
                        _ => format!("source: {}", source.stream),
                    };
                    (None, 1, name)
                }
                PlanNode::Operator { spec, inputs } => {
                    (Some(spec.instantiate_in(context, plan.key_groups)?), inputs.len(), spec.name().to_string())
                }
            };
            let input = Input { state: EdgeState::Active, watermark: Watermark::MIN, barrier: None };
            nodes.push(RunningNode {
                operator,
                consumer: None,
                inputs: vec![input; inputs],
                output: EdgeState::Active,
                watermark: Watermark::MIN,
                metrics: Arc::new(OperatorMetrics::new(name)),
            });
        }
        for (id, node) in plan.nodes.iter().enumerate() {
            if let PlanNode::Operator { inputs, .. } = node {
                for (port, input) in inputs.iter().enumerate() {
                    nodes[*input].consumer = Some((id, port));
                }
            }
        }
        // Every node but the root must feed another: a dangling node's rows
        // would be lost (or worse, taken for results).
        if let Some(orphan) = (0..nodes.len()).find(|id| *id != plan.root && nodes[*id].consumer.is_none()) {
            let message = format!("plan node {orphan} feeds nothing:\n{}", plan.describe());
            return Err(RuntimeError::internal(message));
        }
        let barrier_states = nodes.iter().map(|_| None).collect();
        context.metrics.set_operators(nodes.iter().map(|node| node.metrics.clone()).collect());
        let mut pipeline = Self {
            nodes,
            root: plan.root,
            source_nodes,
            barrier_states,
            query_metrics: context.metrics.clone(),
            refreshed_at: None,
        };
        pipeline.refresh_state_figures(true);
        Ok(pipeline)
    }

    /// Fails once the operators hold more than `limit` bytes, naming the
    /// largest; refreshes the state figures while at it.
    pub fn check_state(&mut self, limit: u64) -> Result<()> {
        self.refresh_state_figures(true);
        let reports: Vec<_> =
            self.nodes.iter().enumerate().map(|(node, running)| running.metrics.report(node)).collect();
        let total: u64 = reports.iter().filter_map(|report| report.state_bytes).sum();
        if total <= limit {
            return Ok(());
        }
        let largest = reports.iter().max_by_key(|report| report.state_bytes.unwrap_or(0));
        let detail = largest.map_or_else(String::new, |report| {
            format!(
                "; the largest is node {} ({}) with {} rows, {} bytes",
                report.node,
                report.name,
                report.state_rows.unwrap_or(0),
                report.state_bytes.unwrap_or(0)
            )
        });
        Err(RuntimeError::user(format!(
            "state_limit_exceeded: the query's operators hold {total} bytes, over the limit of {limit} (--max-state-bytes){detail}"
        )))
    }

    /// Refreshes each node's state figures (see [`OperatorMetrics`]) if
    /// someone watches the query and a second has passed, or if `force`.
    /// The driver calls it after each epoch and when the query ends.
    pub fn refresh_state_figures(&mut self, force: bool) {
        let due = self.refreshed_at.is_none_or(|at| at.elapsed() >= REFRESH_EVERY);
        if !(force || (due && self.query_metrics.observed())) {
            return;
        }
        self.refreshed_at = Some(Instant::now());
        self.query_metrics.state_refreshed();
        for node in &self.nodes {
            let (size, oldest) = match &node.operator {
                Some(operator) => (operator.state_size(), operator.oldest_open_window()),
                None => (None, None),
            };
            let inputs = node.inputs.iter().map(|input| (input.watermark.0, input.state.name())).collect();
            node.metrics.set_state(size, oldest, inputs);
        }
    }

    /// Checkpoint `barrier`: pushes `Message::Barrier(barrier)` into every
    /// source node that has not ended and returns every node's state, by
    /// node id, as the barrier found it (see the module's `# Algorithm`).
    /// Call it between two pushes of other messages.
    pub fn checkpoint(&mut self, barrier: u64) -> Result<Vec<OperatorState>> {
        let result = self.pass_barrier(barrier);
        // A failed checkpoint leaves no barrier behind: the query goes on.
        for node in &mut self.nodes {
            for input in &mut node.inputs {
                input.barrier = None;
            }
        }
        let states = std::mem::replace(&mut self.barrier_states, self.nodes.iter().map(|_| None).collect());
        result?;
        states
            .into_iter()
            .zip(self.nodes.iter_mut())
            .enumerate()
            .map(|(id, (state, node))| match state {
                Some(state) => Ok(state),
                // Ended: the barrier stops short of it, and it no longer
                // changes.
                None if node.output == EdgeState::Ended => node.snapshot(),
                None => {
                    Err(RuntimeError::internal(format!("checkpoint barrier {barrier} never reached plan node {id}")))
                }
            })
            .collect()
    }

    fn pass_barrier(&mut self, barrier: u64) -> Result<()> {
        let mut output = Vec::new();
        for source in 0..self.source_nodes.len() {
            if self.nodes[self.source_nodes[source]].output != EdgeState::Ended {
                self.push_source(source, Message::Barrier(barrier), &mut output)?;
            }
        }
        // Only the barrier moved: no operator emits anything for it.
        if let Some(other) = output.iter().find(|message| !matches!(message, Message::Barrier(_))) {
            return Err(RuntimeError::internal(format!("a checkpoint barrier made the pipeline emit {other:?}")));
        }
        let reached_root = output.iter().any(|message| matches!(message, Message::Barrier(id) if *id == barrier));
        if !reached_root && !self.is_finished() {
            return Err(RuntimeError::internal(format!("checkpoint barrier {barrier} never reached the result")));
        }
        Ok(())
    }

    /// Loads the states of a [`checkpoint`](Pipeline::checkpoint) into this
    /// fresh pipeline.
    pub fn restore(&mut self, states: Vec<OperatorState>) -> Result<()> {
        if states.len() != self.nodes.len() {
            return Err(RuntimeError::internal(format!(
                "the checkpoint has {} plan nodes, the plan {}",
                states.len(),
                self.nodes.len()
            )));
        }
        for (node, state) in self.nodes.iter_mut().zip(states) {
            node.restore(state)?;
        }
        Ok(())
    }

    pub fn is_finished(&self) -> bool {
        self.nodes[self.root].output == EdgeState::Ended
    }

    /// Pushes `message` into the pipeline at source `source`; the root's
    /// output is appended to `output`.
    pub fn push_source(&mut self, source: usize, message: Message, output: &mut Vec<Message>) -> Result<()> {
        let node = self.source_nodes[source];
        let mut queue = VecDeque::from([(node, 0, message)]);
        let mut emitted = Vec::new();
        while let Some((node, port, message)) = queue.pop_front() {
            self.deliver(node, port, message, &mut emitted)?;
            let consumer = self.nodes[node].consumer;
            for message in emitted.drain(..) {
                match &message {
                    Message::End => self.nodes[node].output = EdgeState::Ended,
                    Message::Batch(batch) => self.nodes[node].metrics.batch_out(batch.num_rows()),
                    Message::Watermark(watermark) => self.nodes[node].metrics.set_watermark_out(*watermark),
                    _ => {}
                }
                match consumer {
                    Some((consumer, port)) => queue.push_back((consumer, port, message)),
                    None => output.push(message),
                }
            }
        }
        Ok(())
    }

    fn deliver(&mut self, id: NodeId, port: usize, message: Message, out: &mut Vec<Message>) -> Result<()> {
        let node = &mut self.nodes[id];
        if node.output == EdgeState::Ended {
            return Ok(());
        }
        let input = &mut node.inputs[port];
        if input.barrier.is_some() && !matches!(message, Message::Barrier(_)) {
            // Cannot happen on one task (see `# Algorithm`); if it did, the
            // checkpoint would mix states from before and after.
            return Err(RuntimeError::internal(format!("{message:?} overtook a checkpoint barrier at plan node {id}")));
        }
        input.step(&message);
        if matches!(message, Message::Batch(_) | Message::Watermark(_)) {
            node.output = node.output.step(&message);
        }
        let started = Instant::now();
        let result = Self::run(node, port, message, out, &mut self.barrier_states[id]);
        if node.operator.is_some() {
            node.metrics.busy(started);
        }
        result?;
        if node.operator.as_ref().is_some_and(|operator| operator.is_finished()) {
            out.push(Message::End);
        }
        Ok(())
    }

    /// Hands one message to the node's operator (see [`Pipeline::deliver`]).
    fn run(
        node: &mut RunningNode,
        port: usize,
        message: Message,
        out: &mut Vec<Message>,
        barrier_state: &mut Option<OperatorState>,
    ) -> Result<()> {
        match message {
            Message::Batch(batch) => {
                node.metrics.batch_in(batch.num_rows());
                match &mut node.operator {
                    Some(operator) => operator.on_batch(port, batch, out)?,
                    None => out.push(Message::Batch(batch)),
                }
            }
            Message::Watermark(_) => advance(node, out)?,
            Message::Idle => {
                advance(node, out)?;
                let mut waiting = node.inputs.iter().filter(|input| input.state != EdgeState::Ended).peekable();
                let all_idle = waiting.peek().is_some() && waiting.all(|input| input.state == EdgeState::Idle);
                if node.output != EdgeState::Idle && all_idle {
                    node.output = EdgeState::Idle;
                    out.push(Message::Idle);
                }
            }
            Message::End => {
                advance(node, out)?;
                if node.inputs.iter().all(|input| input.state == EdgeState::Ended) {
                    if let Some(operator) = &mut node.operator {
                        operator.on_end(out)?;
                    }
                    out.push(Message::End);
                }
            }
            Message::Barrier(barrier) => {
                node.inputs[port].barrier = Some(barrier);
                let aligned =
                    node.inputs.iter().all(|input| input.state == EdgeState::Ended || input.barrier == Some(barrier));
                if aligned {
                    for input in &mut node.inputs {
                        input.barrier = None;
                    }
                    *barrier_state = Some(node.snapshot()?);
                    out.push(Message::Barrier(barrier));
                }
            }
        }
        Ok(())
    }
}

/// Passes the node's combined watermark to its operator when it advanced:
/// the minimum over inputs that are not idle, an ended input counting as
/// `+∞` (so once the only inputs left are idle, an ended one releases the
/// node, whichever of the two happened first).
fn advance(node: &mut RunningNode, out: &mut Vec<Message>) -> Result<()> {
    let not_idle = node.inputs.iter().filter(|input| input.state != EdgeState::Idle);
    let combined = match not_idle.map(|input| input.watermark).min() {
        Some(watermark) => watermark,
        // Every input is idle: hold the watermark.
        None => return Ok(()),
    };
    if combined > node.watermark {
        node.watermark = combined;
        node.metrics.set_watermark_in(combined);
        match &mut node.operator {
            Some(operator) => operator.on_watermark(combined, out)?,
            None => out.push(Message::Watermark(combined)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

    use super::*;
    use crate::message::StreamBatch;
    use crate::operators::OperatorSpec;
    use crate::operators::union::UnionSpec;
    use crate::source::{ConnectorSpec, SourceSpec};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]))
    }

    /// Two sources into a union (node 2), the result.
    fn union_of_two() -> Pipeline {
        let source = |stream: &str| SourceSpec {
            stream: stream.into(),
            primary_key: Vec::new(),
            schema: schema(),
            event_time: None,
            proctime_column: None,
            connector: ConnectorSpec::Http(Arc::default()),
            columns: None,
            status: Arc::default(),
            sample: None,
            shed: false,
        };
        let plan = StreamPlan {
            sources: vec![source("a"), source("b")],
            nodes: vec![
                PlanNode::Source { index: 0 },
                PlanNode::Source { index: 1 },
                PlanNode::Operator { spec: OperatorSpec::Union(UnionSpec { schema: schema() }), inputs: vec![0, 1] },
            ],
            root: 2,
            schema: schema(),
            append_only: true,
            warnings: Vec::new(),
            allowed_lateness: None,
            source_windows: vec![None, None],
            key_groups: 1,
            sink: None,
            materialized: false,
        };
        Pipeline::new(&plan, &OperatorContext::default()).unwrap()
    }

    fn rows(values: Vec<i64>) -> Message {
        let batch = RecordBatch::try_new(schema(), vec![Arc::new(Int64Array::from(values))]).unwrap();
        Message::Batch(StreamBatch::inserts(batch))
    }

    #[test]
    fn the_barrier_is_aligned_at_a_join_point_and_comes_out_of_the_root_once() {
        let mut pipeline = union_of_two();
        let mut output = Vec::new();
        pipeline.push_source(0, rows(vec![1, 2]), &mut output).unwrap();
        pipeline.push_source(0, Message::Watermark(Watermark(10)), &mut output).unwrap();
        pipeline.push_source(1, Message::Watermark(Watermark(7)), &mut output).unwrap();
        output.clear();
        // The union waits for the barrier on both inputs, then forwards it.
        pipeline.push_source(0, Message::Barrier(4), &mut output).unwrap();
        assert!(output.is_empty(), "{output:?}");
        pipeline.push_source(1, Message::Barrier(4), &mut output).unwrap();
        assert!(matches!(output.as_slice(), [Message::Barrier(4)]), "{output:?}");
        // Nothing may overtake a barrier on an input still waiting for the
        // others' barrier.
        let mut pipeline = union_of_two();
        pipeline.push_source(0, Message::Barrier(5), &mut Vec::new()).unwrap();
        assert!(pipeline.push_source(0, rows(vec![3]), &mut Vec::new()).is_err());
    }

    #[test]
    fn a_checkpoint_takes_each_nodes_state_and_restores_it() {
        let mut pipeline = union_of_two();
        let mut output = Vec::new();
        pipeline.push_source(0, Message::Watermark(Watermark(10)), &mut output).unwrap();
        pipeline.push_source(1, Message::Watermark(Watermark(7)), &mut output).unwrap();
        pipeline.push_source(1, Message::Idle, &mut output).unwrap();
        let states = pipeline.checkpoint(1).unwrap();
        assert_eq!(states.len(), 3);
        let union = &states[2];
        assert_eq!(union.value("__input_watermark_0").unwrap(), 10);
        assert_eq!(union.value("__input_idle_1").unwrap(), 1);
        assert_eq!(union.value("__watermark").unwrap(), 10);
        // A source that ended gets no barrier; its state is taken as it is.
        pipeline.push_source(0, Message::End, &mut output).unwrap();
        let states = pipeline.checkpoint(2).unwrap();
        assert_eq!(states[0].value("__ended").unwrap(), 1);
        assert_eq!(states[2].value("__input_ended_0").unwrap(), 1);
        let mut restored = union_of_two();
        restored.restore(states.clone()).unwrap();
        let again = restored.checkpoint(3).unwrap();
        let encoded = |states: &[OperatorState]| states.iter().map(|state| state.encode().unwrap()).collect::<Vec<_>>();
        assert_eq!(encoded(&again), encoded(&states));
        // The restored pipeline goes on as the original would.
        let (mut left, mut right) = (Vec::new(), Vec::new());
        pipeline.push_source(1, Message::End, &mut left).unwrap();
        restored.push_source(1, Message::End, &mut right).unwrap();
        assert_eq!(format!("{left:?}"), format!("{right:?}"));
        assert!(pipeline.is_finished() && restored.is_finished());
        // Once finished, a checkpoint still has every node.
        assert_eq!(pipeline.checkpoint(4).unwrap().len(), 3);
    }

    #[test]
    fn a_snapshot_that_flagged_an_ended_input_idle_too_restores_it_ended() {
        let mut pipeline = union_of_two();
        let mut states = pipeline.checkpoint(1).unwrap();
        states[2].put_value("__input_ended_0", 1);
        states[2].put_value("__input_idle_0", 1);
        states[2].put_value("__input_watermark_0", Watermark::MAX.0);
        let mut restored = union_of_two();
        restored.restore(states).unwrap();
        let mut output = Vec::new();
        // Input 0 ended: the union's watermark follows input 1 alone.
        restored.push_source(1, Message::Watermark(Watermark(5)), &mut output).unwrap();
        assert!(matches!(output.as_slice(), [Message::Watermark(Watermark(5))]), "{output:?}");
        let states = restored.checkpoint(2).unwrap();
        assert_eq!(states[2].value("__input_ended_0").unwrap(), 1);
        assert_eq!(states[2].value("__input_idle_0").unwrap(), 0);
    }

    #[test]
    fn an_ended_input_releases_a_node_whose_other_inputs_are_idle_in_either_order() {
        let watermarks = |output: &[Message]| {
            output
                .iter()
                .filter_map(|message| match message {
                    Message::Watermark(watermark) => Some(*watermark),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        // The idle input goes idle first, then the other one ends.
        let mut pipeline = union_of_two();
        let mut output = Vec::new();
        pipeline.push_source(0, Message::Watermark(Watermark(10)), &mut output).unwrap();
        pipeline.push_source(1, Message::Idle, &mut output).unwrap();
        pipeline.push_source(0, Message::End, &mut output).unwrap();
        assert_eq!(watermarks(&output), [Watermark(10), Watermark::MAX]);
        // The other input ends first (its end holds nothing), then the
        // quiet one goes idle.
        let mut pipeline = union_of_two();
        let mut output = Vec::new();
        pipeline.push_source(0, Message::Watermark(Watermark(10)), &mut output).unwrap();
        pipeline.push_source(0, Message::End, &mut output).unwrap();
        assert_eq!(watermarks(&output), []);
        pipeline.push_source(1, Message::Idle, &mut output).unwrap();
        assert_eq!(watermarks(&output), [Watermark::MAX]);
        // Idle alone holds the watermark.
        let mut pipeline = union_of_two();
        let mut output = Vec::new();
        pipeline.push_source(0, Message::Watermark(Watermark(10)), &mut output).unwrap();
        pipeline.push_source(1, Message::Watermark(Watermark(3)), &mut output).unwrap();
        pipeline.push_source(0, Message::Idle, &mut output).unwrap();
        pipeline.push_source(1, Message::Idle, &mut output).unwrap();
        assert_eq!(watermarks(&output), [Watermark(3)]);
    }
}
