//! LIMIT and OFFSET over an unbounded stream (no ORDER BY): skips the first
//! `skip` rows in arrival order, passes the next `fetch` rows, then the
//! query ends, as in Flink SQL. Without a LIMIT (`OFFSET n` alone) every row
//! after the first `skip` passes and the query runs on.

use datafusion::arrow::datatypes::SchemaRef;

use crate::error::{Result, RuntimeError};
use crate::message::{Message, StreamBatch};
use crate::operator::Operator;
use crate::state::OperatorState;

#[derive(Debug, Clone)]
pub struct LimitSpec {
    pub schema: SchemaRef,
    /// `OFFSET`: rows dropped first.
    pub skip: usize,
    /// `LIMIT`: rows passed after them; `None` passes all.
    pub fetch: Option<usize>,
}

pub struct Limit {
    spec: LimitSpec,
    /// Rows seen so far, skipped ones included.
    seen: usize,
}

impl Limit {
    pub fn new(spec: LimitSpec) -> Self {
        Self { spec, seen: 0 }
    }

    /// What EXPLAIN shows after `limit`: ` (fetch 3, skip 2)` for `LIMIT 3
    /// OFFSET 2`, as DataFusion's limits say it.
    pub(crate) fn describe(spec: &LimitSpec) -> String {
        match (spec.fetch, spec.skip) {
            (Some(fetch), 0) => format!(" (fetch {fetch})"),
            (Some(fetch), skip) => format!(" (fetch {fetch}, skip {skip})"),
            (None, skip) => format!(" (skip {skip})"),
        }
    }

    /// One past the last row passed: `skip + fetch`, unbounded without a
    /// LIMIT.
    fn end(&self) -> Option<usize> {
        self.spec.fetch.map(|fetch| self.spec.skip.saturating_add(fetch))
    }
}

impl Operator for Limit {
    fn on_batch(&mut self, _port: usize, batch: StreamBatch, out: &mut Vec<Message>) -> Result<()> {
        // LIMIT and OFFSET are user input: `LIMIT 18446744073709551615 OFFSET 1`
        // must not overflow.
        let end = self.end().unwrap_or(usize::MAX);
        let rows = batch.num_rows();
        let first = self.spec.skip.saturating_sub(self.seen).min(rows);
        let last = end.saturating_sub(self.seen).min(rows);
        self.seen = self.seen.saturating_add(rows);
        if last > first {
            out.push(Message::Batch(batch.slice(first, last - first)));
        }
        Ok(())
    }

    fn is_finished(&self) -> bool {
        self.end().is_some_and(|end| self.seen >= end)
    }

    fn snapshot(&mut self) -> Result<OperatorState> {
        let mut state = OperatorState::default();
        let seen = i64::try_from(self.seen).map_err(|_| RuntimeError::internal("LIMIT row count overflow"))?;
        state.put_value("seen", seen);
        Ok(state)
    }

    fn restore(&mut self, state: OperatorState) -> Result<()> {
        self.seen = usize::try_from(state.value("seen")?)
            .map_err(|_| RuntimeError::internal("LIMIT state has a negative row count"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn passes_the_first_rows_across_batches() {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let mut limit = Limit::new(LimitSpec { schema: schema.clone(), skip: 1, fetch: Some(3) });
        let mut out = Vec::new();
        for values in [vec![1, 2], vec![3], vec![4, 5, 6]] {
            let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(values))]).unwrap();
            limit.on_batch(0, StreamBatch::inserts(batch), &mut out).unwrap();
        }
        let got: Vec<i64> = out
            .iter()
            .flat_map(|message| match message {
                Message::Batch(batch) => {
                    batch.rows.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec()
                }
                _ => vec![],
            })
            .collect();
        assert_eq!(got, vec![2, 3, 4]);
        assert!(limit.is_finished());
    }

    #[test]
    fn restores_the_rows_seen() {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let batch = |values: Vec<i64>| {
            let rows = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(values))]).unwrap();
            (0, Message::Batch(StreamBatch::inserts(rows)))
        };
        let messages = vec![batch(vec![1, 2]), batch(vec![3]), batch(vec![4, 5, 6]), batch(vec![7]), (0, Message::End)];
        let spec = LimitSpec { schema: schema.clone(), skip: 1, fetch: Some(4) };
        let new = || Box::new(Limit::new(spec.clone())) as Box<dyn Operator>;
        let straight = crate::operators::restore_check::assert_restores(new, &messages);
        assert_eq!(straight, vec!["+ 2", "+ 3", "+ 4", "+ 5"]);
    }

    #[test]
    fn a_huge_limit_and_offset_do_not_overflow() {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let mut limit = Limit::new(LimitSpec { schema: schema.clone(), skip: 1, fetch: Some(usize::MAX) });
        let batch = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2, 3]))]).unwrap();
        let mut out = Vec::new();
        limit.on_batch(0, StreamBatch::inserts(batch), &mut out).unwrap();
        assert!(matches!(&out[..], [Message::Batch(batch)] if batch.num_rows() == 2));
        assert!(!limit.is_finished());
    }

    #[test]
    fn an_offset_alone_skips_rows_then_passes_all_and_restores() {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let batch = |values: Vec<i64>| {
            let rows = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(values))]).unwrap();
            (0, Message::Batch(StreamBatch::inserts(rows)))
        };
        let messages = vec![batch(vec![1, 2]), batch(vec![3]), batch(vec![4, 5, 6]), batch(vec![7]), (0, Message::End)];
        let spec = LimitSpec { schema: schema.clone(), skip: 3, fetch: None };
        let new = || Box::new(Limit::new(spec.clone())) as Box<dyn Operator>;
        let straight = crate::operators::restore_check::assert_restores(new, &messages);
        assert_eq!(straight, vec!["+ 4", "+ 5", "+ 6", "+ 7"]);
        let mut limit = Limit::new(spec.clone());
        let mut out = Vec::new();
        for (_, message) in messages {
            if let Message::Batch(batch) = message {
                limit.on_batch(0, batch, &mut out).unwrap();
            }
        }
        assert!(!limit.is_finished(), "without a LIMIT the query runs on");
    }
}
