//! A condition over a query's result rows, planned once: what a websocket
//! subscriber's `?where=ip = '10.0.0.1'` asks for, so many clients can share
//! one query and each receive only its rows.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::{DFSchema, ExprSchema};
use datafusion::logical_expr::ExprSchemable;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;

use crate::error::{PlanError, Result};

/// A planned condition.
#[derive(Debug, Clone)]
pub struct ResultFilter {
    /// As the user wrote it.
    pub text: String,
    predicate: Arc<dyn PhysicalExpr>,
}

impl ResultFilter {
    /// Plans `text` (a SQL condition, as after `WHERE`) over rows of
    /// `schema`. Errors carry the column the parser points at.
    pub fn plan(text: &str, schema: &SchemaRef) -> Result<Self> {
        if text.trim().is_empty() {
            return Err(PlanError::syntax("the filter is empty: give a condition such as ip = '10.0.0.1'"));
        }
        let context = SessionContext::new();
        let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
        let expr = context.parse_sql_expr(text, &df_schema).map_err(PlanError::from)?;
        let data_type = expr.get_type(&df_schema as &dyn ExprSchema).map_err(PlanError::from)?;
        if !matches!(data_type, DataType::Boolean | DataType::Null) {
            return Err(PlanError::invalid(format!(
                "the filter {text:?} is of type {data_type}; it must be a condition (true or false)"
            )));
        }
        let predicate = context.create_physical_expr(expr, &df_schema).map_err(PlanError::from)?;
        Ok(Self { text: text.to_string(), predicate })
    }

    /// Which rows of `batch` pass (NULL does not).
    pub fn mask(&self, batch: &RecordBatch) -> Result<BooleanArray> {
        let value = self.predicate.evaluate(batch).map_err(PlanError::from)?;
        let array = value.into_array(batch.num_rows()).map_err(PlanError::from)?;
        let Some(mask) = array.as_boolean_opt() else {
            return Err(PlanError::invalid(format!("the filter {:?} did not give true or false", self.text)));
        };
        // NULL counts as false, as in WHERE.
        Ok(match mask.nulls() {
            Some(_) => mask.iter().map(|value| Some(value == Some(true))).collect(),
            None => mask.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{Field, Schema};

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("ip", DataType::Utf8, true), Field::new("n", DataType::Int64, false)]))
    }

    fn batch() -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from(vec![Some("10.0.0.1"), Some("10.0.0.2"), None])),
                Arc::new(Int64Array::from(vec![1, 2, 3])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn keeps_the_rows_that_pass() {
        let filter = ResultFilter::plan("ip = '10.0.0.1' OR n > 2", &schema()).unwrap();
        let mask = filter.mask(&batch()).unwrap();
        assert_eq!(mask.iter().collect::<Vec<_>>(), vec![Some(true), Some(false), Some(true)]);
        // NULL = '...' is NULL: not kept.
        let filter = ResultFilter::plan("ip <> '10.0.0.2'", &schema()).unwrap();
        assert_eq!(
            filter.mask(&batch()).unwrap().iter().collect::<Vec<_>>(),
            vec![Some(true), Some(false), Some(false)]
        );
    }

    #[test]
    fn bad_filters_are_refused() {
        let unknown = ResultFilter::plan("host = 'a'", &schema()).unwrap_err();
        assert!(unknown.message.contains("host"), "{unknown:?}");
        let syntax = ResultFilter::plan("ip = = 'a'", &schema()).unwrap_err();
        assert_eq!(syntax.kind, crate::error::PlanErrorKind::Syntax, "{syntax:?}");
        let not_condition = ResultFilter::plan("n + 1", &schema()).unwrap_err();
        assert!(not_condition.message.contains("must be a condition"), "{not_condition:?}");
        assert!(ResultFilter::plan("  ", &schema()).is_err());
    }
}
