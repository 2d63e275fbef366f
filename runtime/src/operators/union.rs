//! UNION ALL: rows of every input, relabelled with the union's schema.
//! Watermarks are combined (minimum over inputs) by the pipeline.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;

use crate::error::Result;
use crate::message::{Message, StreamBatch};
use crate::operator::Operator;

#[derive(Debug, Clone)]
pub struct UnionSpec {
    pub schema: SchemaRef,
}

pub struct Union {
    spec: UnionSpec,
}

impl Union {
    pub fn new(spec: UnionSpec) -> Self {
        Self { spec }
    }
}

impl Operator for Union {
    fn on_batch(&mut self, _port: usize, batch: StreamBatch, out: &mut Vec<Message>) -> Result<()> {
        let rows = RecordBatch::try_new(self.spec.schema.clone(), batch.rows.columns().to_vec())?;
        out.push(Message::Batch(StreamBatch { rows, ops: batch.ops }));
        Ok(())
    }
}
