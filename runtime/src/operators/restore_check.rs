//! Test support: an operator restored from a snapshot taken between any two
//! messages must continue exactly as the operator that was never stopped.

use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::message::Message;
use crate::operator::Operator;
use crate::state::OperatorState;

/// A message's visible content: rows with their ops, or a watermark.
fn describe(message: &Message) -> Vec<String> {
    match message {
        Message::Batch(batch) => (0..batch.num_rows())
            .map(|row| {
                let op = batch.ops.as_ref().map_or("+", |ops| ops[row].symbol());
                let values: Vec<String> = batch
                    .rows
                    .columns()
                    .iter()
                    .map(|column| {
                        ArrayFormatter::try_new(column.as_ref(), &FormatOptions::default())
                            .map(|formatter| formatter.value(row).to_string())
                            .unwrap_or_default()
                    })
                    .collect();
                format!("{op} {}", values.join(", "))
            })
            .collect(),
        Message::Watermark(watermark) => vec![format!("watermark {}", watermark.0)],
        other => vec![format!("{other:?}")],
    }
}

fn run(operator: &mut dyn Operator, messages: &[(usize, Message)], out: &mut Vec<String>) {
    for (port, message) in messages {
        let mut emitted = Vec::new();
        match message.clone() {
            Message::Batch(batch) => operator.on_batch(*port, batch, &mut emitted).unwrap(),
            Message::Watermark(watermark) => operator.on_watermark(watermark, &mut emitted).unwrap(),
            Message::End => operator.on_end(&mut emitted).unwrap(),
            other => panic!("not an operator input: {other:?}"),
        }
        out.extend(emitted.iter().flat_map(describe));
    }
}

/// Runs `messages` (port, message) straight through one operator, and for
/// every split point through one operator up to the split, a snapshot
/// (encoded and decoded), and a fresh operator restored from it; every run
/// must emit the same rows. Watermarks are passed to `on_watermark` and
/// `End` to `on_end` as the pipeline would. Returns the straight output.
pub(crate) fn assert_restores(new: impl Fn() -> Box<dyn Operator>, messages: &[(usize, Message)]) -> Vec<String> {
    let mut straight = Vec::new();
    run(new().as_mut(), messages, &mut straight);
    for split in 0..=messages.len() {
        let mut output = Vec::new();
        let mut first = new();
        run(first.as_mut(), &messages[..split], &mut output);
        let state = first.snapshot().unwrap();
        // The snapshot must not disturb the operator it was taken from.
        let mut continued = output.clone();
        run(first.as_mut(), &messages[split..], &mut continued);
        assert_eq!(continued, straight, "the operator changed after a snapshot at message {split}");
        let state = OperatorState::decode(&state.encode().unwrap()).unwrap();
        let mut second = new();
        second.restore(state).unwrap();
        run(second.as_mut(), &messages[split..], &mut output);
        assert_eq!(output, straight, "restored from a snapshot at message {split}");
    }
    straight
}
