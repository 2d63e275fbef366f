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

use std::collections::VecDeque;

use crate::error::{Result, RuntimeError};
use crate::message::{Message, Watermark};
use crate::operator::{Operator, OperatorContext};
use crate::plan::{NodeId, PlanNode, StreamPlan};
use crate::state::OperatorState;

struct RunningNode {
    /// `None` for sources, which pass messages through unchanged.
    operator: Option<Box<dyn Operator>>,
    /// The consumer of this node's output and the port it reads it on.
    consumer: Option<(NodeId, usize)>,
    input_watermarks: Vec<Watermark>,
    inputs_ended: Vec<bool>,
    inputs_idle: Vec<bool>,
    /// This node told its consumer it is idle (and has not sent since).
    idle: bool,
    watermark: Watermark,
    ended: bool,
}

/// A running pipeline: push messages in at source nodes, collect the root's
/// output.
pub struct Pipeline {
    nodes: Vec<RunningNode>,
    root: NodeId,
    /// Node id of each source, by source index.
    source_nodes: Vec<NodeId>,
}

impl Pipeline {
    pub fn new(plan: &StreamPlan, context: &OperatorContext) -> Result<Self> {
        let mut nodes = Vec::with_capacity(plan.nodes.len());
        let mut source_nodes = vec![usize::MAX; plan.sources.len()];
        for (id, node) in plan.nodes.iter().enumerate() {
            let (operator, inputs) = match node {
                PlanNode::Source { index } => {
                    source_nodes[*index] = id;
                    (None, 1)
                }
                PlanNode::Operator { spec, inputs } => (Some(spec.instantiate(context)?), inputs.len()),
            };
            nodes.push(RunningNode {
                operator,
                consumer: None,
                input_watermarks: vec![Watermark::MIN; inputs],
                inputs_ended: vec![false; inputs],
                inputs_idle: vec![false; inputs],
                idle: false,
                watermark: Watermark::MIN,
                ended: false,
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
        Ok(Self { nodes, root: plan.root, source_nodes })
    }

    /// Every node's state at a checkpoint, by node id: its operator's
    /// state plus the watermarks, idleness and ends of its inputs.
    pub fn snapshot(&mut self) -> Result<Vec<OperatorState>> {
        self.nodes
            .iter_mut()
            .map(|node| {
                let mut state = match &mut node.operator {
                    Some(operator) => operator.snapshot()?,
                    None => OperatorState::default(),
                };
                for port in 0..node.input_watermarks.len() {
                    state.put_value(&format!("__input_watermark_{port}"), node.input_watermarks[port].0);
                    state.put_value(&format!("__input_ended_{port}"), i64::from(node.inputs_ended[port]));
                    state.put_value(&format!("__input_idle_{port}"), i64::from(node.inputs_idle[port]));
                }
                state.put_value("__idle", i64::from(node.idle));
                state.put_value("__watermark", node.watermark.0);
                state.put_value("__ended", i64::from(node.ended));
                Ok(state)
            })
            .collect()
    }

    /// Loads a [`snapshot`](Pipeline::snapshot) into this fresh pipeline.
    pub fn restore(&mut self, states: Vec<OperatorState>) -> Result<()> {
        if states.len() != self.nodes.len() {
            return Err(RuntimeError::internal(format!(
                "the checkpoint has {} plan nodes, the plan {}",
                states.len(),
                self.nodes.len()
            )));
        }
        for (node, state) in self.nodes.iter_mut().zip(states) {
            for port in 0..node.input_watermarks.len() {
                node.input_watermarks[port] = Watermark(state.value(&format!("__input_watermark_{port}"))?);
                node.inputs_ended[port] = state.value(&format!("__input_ended_{port}"))? != 0;
                node.inputs_idle[port] = state.value(&format!("__input_idle_{port}"))? != 0;
            }
            node.idle = state.value("__idle")? != 0;
            node.watermark = Watermark(state.value("__watermark")?);
            node.ended = state.value("__ended")? != 0;
            if let Some(operator) = &mut node.operator {
                operator.restore(state)?;
            }
        }
        Ok(())
    }

    pub fn is_finished(&self) -> bool {
        self.nodes[self.root].ended
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
                if matches!(message, Message::End) {
                    self.nodes[node].ended = true;
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
        if node.ended {
            return Ok(());
        }
        if matches!(message, Message::Batch(_) | Message::Watermark(_)) {
            node.inputs_idle[port] = false;
            node.idle = false;
        }
        match message {
            Message::Batch(batch) => match &mut node.operator {
                Some(operator) => operator.on_batch(port, batch, out)?,
                None => out.push(Message::Batch(batch)),
            },
            Message::Watermark(watermark) => {
                node.input_watermarks[port] = node.input_watermarks[port].max(watermark);
                advance(node, out)?;
            }
            Message::Idle => {
                node.inputs_idle[port] = true;
                advance(node, out)?;
                let waiting = (0..node.inputs_idle.len()).filter(|input| !node.inputs_ended[*input]);
                if !node.idle && waiting.clone().count() > 0 && waiting.clone().all(|input| node.inputs_idle[input]) {
                    node.idle = true;
                    out.push(Message::Idle);
                }
            }
            Message::End => {
                node.inputs_ended[port] = true;
                node.input_watermarks[port] = Watermark::MAX;
                advance(node, out)?;
                if node.inputs_ended.iter().all(|ended| *ended) {
                    if let Some(operator) = &mut node.operator {
                        operator.on_end(out)?;
                    }
                    out.push(Message::End);
                    return Ok(());
                }
            }
            Message::Barrier(id) => out.push(Message::Barrier(id)),
        }
        if node.operator.as_ref().is_some_and(|operator| operator.is_finished()) {
            out.push(Message::End);
        }
        Ok(())
    }
}

/// Passes the node's combined watermark to its operator when it advanced:
/// the minimum over inputs that have neither ended nor gone idle.
fn advance(node: &mut RunningNode, out: &mut Vec<Message>) -> Result<()> {
    let inputs = 0..node.input_watermarks.len();
    let active = inputs.filter(|input| !node.inputs_idle[*input] && !node.inputs_ended[*input]);
    let combined = match active.map(|input| node.input_watermarks[input]).min() {
        Some(watermark) => watermark,
        None if node.inputs_ended.iter().all(|ended| *ended) => Watermark::MAX,
        // Every input still running is idle: hold the watermark.
        None => return Ok(()),
    };
    if combined > node.watermark {
        node.watermark = combined;
        match &mut node.operator {
            Some(operator) => operator.on_watermark(combined, out)?,
            None => out.push(Message::Watermark(combined)),
        }
    }
    Ok(())
}
