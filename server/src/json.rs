//! The engine's typed results as JSON, for the HTTP API and websocket
//! frames: Arrow batches and schemas, statement results, query reports and
//! stream listings. Only HTTP and the websocket render JSON; the engine
//! never does.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::Schema;
use datafusion::arrow::json::WriterBuilder;
use datafusion::arrow::json::writer::JsonArray;
use serde_json::{Map, Value, json};

use crate::engine::{CheckpointStatus, QueryReport, StatementResult, StreamInfo};
use crate::error::EngineError;
pub use crate::sql_type::sql_type;

/// `[{"name", "type"}]`, with SQL type names.
pub fn columns(schema: &Schema) -> Value {
    Value::Array(
        schema
            .fields()
            .iter()
            .map(|field| json!({"name": field.name(), "type": sql_type(field.data_type())}))
            .collect(),
    )
}

/// Rows as JSON objects keyed by column name; nulls are explicit.
pub fn rows(batch: &RecordBatch) -> Result<Vec<Map<String, Value>>, EngineError> {
    if batch.num_rows() == 0 {
        return Ok(Vec::new());
    }
    let bytes = rows_text(batch)?;
    serde_json::from_slice(&bytes).map_err(|error| EngineError::internal(error.to_string()))
}

/// Rows as the text of a JSON array of objects (what [`rows`] parses):
/// for frames written without building JSON values.
pub fn rows_text(batch: &RecordBatch) -> Result<Vec<u8>, EngineError> {
    if batch.num_rows() == 0 {
        return Ok(b"[]".to_vec());
    }
    let mut writer = WriterBuilder::new().with_explicit_nulls(true).build::<_, JsonArray>(Vec::new());
    writer.write(batch).map_err(|error| EngineError::internal(error.to_string()))?;
    writer.finish().map_err(|error| EngineError::internal(error.to_string()))?;
    Ok(writer.into_inner())
}

/// Rows as arrays of values in column order (for tabular results).
pub fn row_values(batch: &RecordBatch) -> Result<Vec<Value>, EngineError> {
    let names: Vec<String> = batch.schema().fields().iter().map(|field| field.name().clone()).collect();
    Ok(rows(batch)?
        .into_iter()
        .map(|mut row| Value::Array(names.iter().map(|name| row.remove(name).unwrap_or(Value::Null)).collect()))
        .collect())
}

/// A watermark (nanoseconds since the epoch) as an ISO-8601 UTC timestamp.
pub fn timestamp(nanos: i64) -> Value {
    let array = datafusion::arrow::array::TimestampNanosecondArray::from(vec![nanos]);
    match datafusion::arrow::util::display::array_value_to_string(&array, 0) {
        Ok(text) => Value::String(text),
        Err(_) => Value::Null,
    }
}

/// Where a query's results are subscribed to.
pub fn subscribe_path(query_id: &str) -> String {
    format!("/v1/queries/{query_id}/ws")
}

/// `{"status", "name"?}`, `{"columns", "rows"}` or
/// `{"query_id", "columns", "subscribe", "warnings"?}`.
///
/// The columns of a finite result are listed as `VARCHAR` whatever their
/// Arrow type, as the API always has; their values keep their JSON types.
pub fn statement_result(result: &StatementResult) -> Result<Value, EngineError> {
    Ok(match result {
        StatementResult::Status { tag, name } => {
            let mut value = json!({"status": tag});
            if let Some(name) = name {
                value["name"] = json!(name);
            }
            value
        }
        StatementResult::Rows { schema, batches } => {
            let columns: Vec<Value> =
                schema.fields().iter().map(|field| json!({"name": field.name(), "type": "VARCHAR"})).collect();
            let mut rows = Vec::new();
            for batch in batches {
                rows.extend(row_values(batch)?);
            }
            json!({"columns": columns, "rows": rows})
        }
        StatementResult::Query { id, schema, warnings } => {
            let mut value = json!({"query_id": id, "columns": columns(schema), "subscribe": subscribe_path(id)});
            if !warnings.is_empty() {
                value["warnings"] = json!(warnings);
            }
            value
        }
    })
}

/// What `GET /v1/queries/{id}` returns.
pub fn query_report(report: &QueryReport) -> Value {
    let metrics = &report.metrics;
    let mut value = json!({
        "query_id": report.id,
        "sql": report.sql,
        "status": report.status.name(),
        "columns": columns(&report.schema),
        "subscribe": subscribe_path(&report.id),
        "epoch_interval_ms": report.epoch_interval.as_millis() as u64,
        "started_at_ms": report
            .started
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as u64),
        "metrics": {
            "rows_in": metrics.rows_in,
            "rows_out": metrics.rows_out,
            "epochs": metrics.epochs,
            "late_rows_dropped": metrics.late_rows_dropped,
            "malformed_records": metrics.malformed_records,
            "state_rows": metrics.state_rows,
            "latency_ms": metrics.latency.map(|latency| json!({
                "p50": latency.p50_ms,
                "p99": latency.p99_ms,
            })),
            "last_malformed": metrics.last_malformed,
            "watermark": metrics.watermark.map(timestamp),
            "late_rows_by_window": metrics
                .late_rows_by_window
                .iter()
                .map(|(start, rows)| json!({"window_start": timestamp(*start), "rows": rows}))
                .collect::<Vec<_>>(),
            "subscribers": metrics.subscribers,
            "lagged_subscribers": metrics.lagged_subscribers,
            "shedding": metrics.shedding.map(shedding),
        },
        "plan": report.plan,
        "warnings": report.warnings,
        "checkpoint": checkpoint(&report.checkpoint),
    });
    if let Some(error) = report.error() {
        value["error"] = json!(error);
    }
    value
}

/// A shedding query's figures (`SET max_lag`).
pub fn shedding(shedding: crate::engine::status::Shedding) -> Value {
    json!({
        "max_lag_ms": shedding.max_lag.as_secs_f64() * 1000.0,
        "rate": shedding.rate,
        "rows_shed": shedding.rows_shed,
        "lag_ms": shedding.lag_ms,
    })
}

/// `GET /v1/queries/{id}/plan`: EXPLAIN ANALYZE as data.
pub fn analysis(query_id: &str, analysis: &crate::engine::explain::Analysis) -> Value {
    let total: f64 = analysis.operators.iter().map(|operator| operator.busy_ms).sum();
    let optional_time = |nanos: Option<i64>| nanos.map(timestamp);
    let operators: Vec<Value> = analysis
        .operators
        .iter()
        .map(|operator| {
            json!({
                "node": operator.node,
                "operator": operator.name,
                "inputs": match &analysis.plan.nodes[operator.node] {
                    sluice_runtime::PlanNode::Operator { inputs, .. } => json!(inputs),
                    sluice_runtime::PlanNode::Source { .. } => json!([]),
                },
                "rows_in": operator.rows_in,
                "batches_in": operator.batches_in,
                "rows_out": operator.rows_out,
                "batches_out": operator.batches_out,
                "busy_ms": operator.busy_ms,
                "busy_share": if total > 0.0 { operator.busy_ms / total } else { 0.0 },
                "watermark_in": optional_time(operator.watermark_in),
                "watermark_out": optional_time(operator.watermark_out),
                "state_rows": operator.state_rows,
                "state_bytes": operator.state_bytes,
                "oldest_open_window_end": optional_time(operator.oldest_open_window_end),
                "input_states": operator.inputs.iter().map(|(watermark, state)| json!({
                    "watermark": optional_time(*watermark),
                    "state": state,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "query_id": query_id,
        "root": analysis.plan.root,
        "late_rows_dropped": analysis.late_rows,
        "shedding": analysis.shedding.map(shedding),
        "text": analysis.lines(),
        "operators": operators,
    })
}

/// The checkpoint part of a query's status.
fn checkpoint(status: &CheckpointStatus) -> Value {
    let report = &status.report;
    json!({
        "enabled": status.interval.is_some(),
        "interval_ms": status.interval.map(|interval| interval.as_millis() as u64),
        "last_id": report.last_id,
        "last_at": report.last_taken_at_ms.map(|ms| timestamp((ms as i64).saturating_mul(1_000_000))),
        "last_bytes": report.last_bytes,
        "last_reused_bytes": report.last_reused_bytes,
        "last_duration_ms": report.last_duration_ms,
        "last_pause_ms": report.last_pause_ms,
        "recent_pauses_ms": report.recent_pauses_ms,
        "restored_from": report.restored_from,
        "replayed_steps": report.replayed_steps,
        "recovery": report.recovery,
        "warnings": report.warnings,
    })
}

/// One entry of `GET /v1/streams`.
pub fn stream(stream: &StreamInfo) -> Value {
    json!({
        "name": stream.name,
        "connector": stream.connector,
        "bounded": stream.bounded,
        "columns": columns(&stream.schema),
        "watermark": stream.watermark,
        "status": stream.status,
        "ddl": stream.ddl,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::result::{booleans, counts, optional_strings, strings};

    /// Finite results keep the JSON the API always gave: columns listed as
    /// VARCHAR, values with their JSON types, nulls explicit.
    #[test]
    fn finite_results_render_as_before() {
        let result = StatementResult::rows(vec![
            ("column", strings(["a", "b"])),
            ("rows", counts([2, 0])),
            ("nullable", booleans([true, false])),
            ("key", optional_strings([None, Some("PRIMARY KEY".to_string())])),
        ])
        .unwrap();
        let expected = r#"{"columns":[{"name":"column","type":"VARCHAR"},{"name":"rows","type":"VARCHAR"},{"name":"nullable","type":"VARCHAR"},{"name":"key","type":"VARCHAR"}],"rows":[["a",2,true,null],["b",0,false,"PRIMARY KEY"]]}"#;
        assert_eq!(statement_result(&result).unwrap().to_string(), expected);
        let empty = StatementResult::rows(vec![("plan", strings(Vec::<String>::new()))]).unwrap();
        assert_eq!(
            statement_result(&empty).unwrap().to_string(),
            r#"{"columns":[{"name":"plan","type":"VARCHAR"}],"rows":[]}"#
        );
        let status = StatementResult::Status { tag: "SET".into(), name: None };
        assert_eq!(statement_result(&status).unwrap().to_string(), r#"{"status":"SET"}"#);
    }
}
