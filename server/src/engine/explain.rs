//! EXPLAIN ANALYZE: a running query's plan with each operator's figures,
//! as text (the statement) and as data (`GET /v1/queries/{id}/plan`,
//! `/metrics`).
//!
//! Per operator: rows and batches in and out, time spent (and its share of
//! the query's), input and output watermarks, state rows and bytes, and for
//! windows the oldest open window and what it waits for: the input whose
//! watermark holds it back, and whether that input is idle.

use std::sync::Arc;

use sluice_runtime::{OperatorReport, PlanNode, StreamPlan};

use super::queries::RunningQuery;

/// Everything EXPLAIN ANALYZE shows, by node id.
pub struct Analysis {
    pub plan: Arc<StreamPlan>,
    pub operators: Vec<OperatorReport>,
    /// Rows dropped for arriving below the watermark (the whole query's).
    pub late_rows: u64,
    /// How the query sheds, if it runs with `max_lag`.
    pub shedding: Option<super::status::Shedding>,
}

impl Analysis {
    /// The query's figures, with state sizes refreshed for this look (it
    /// waits up to half a second for the query's driver to take them).
    pub async fn of(query: &RunningQuery) -> Analysis {
        let metrics = &query.handle.metrics;
        if query.handle.status() == sluice_runtime::QueryStatus::Running {
            let before = metrics.state_refreshes();
            metrics.observe();
            metrics.want_state();
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(500);
            while metrics.state_refreshes() == before && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
        Analysis {
            plan: query.stream_plan.clone(),
            operators: metrics.operators(),
            late_rows: sluice_runtime::QueryMetrics::get(&metrics.late_rows_dropped),
            shedding: query.shedding(),
        }
    }

    /// Time spent in all operators, ms.
    fn total_busy_ms(&self) -> f64 {
        self.operators.iter().map(|operator| operator.busy_ms).sum()
    }

    /// The plan, each node followed by its figures.
    pub fn lines(&self) -> Vec<String> {
        let total = self.total_busy_ms();
        let text = self.plan.describe_with(&|node| self.annotation(node, total));
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        lines.push(format!("late rows dropped: {} · time in operators: {}", self.late_rows, milliseconds(total)));
        if let Some(shedding) = &self.shedding {
            lines.push(format!(
                "shedding (max_lag {}): rate {:.4}, rows shed {}, lag {}",
                milliseconds(shedding.max_lag.as_secs_f64() * 1000.0),
                shedding.rate,
                shedding.rows_shed,
                milliseconds(shedding.lag_ms)
            ));
        }
        lines
    }

    fn annotation(&self, node: usize, total_ms: f64) -> Vec<String> {
        let Some(report) = self.operators.get(node) else { return Vec::new() };
        let mut first = format!(
            "rows in {} ({} batches), out {} ({} batches)",
            report.rows_in, report.batches_in, report.rows_out, report.batches_out
        );
        if matches!(self.plan.nodes[node], PlanNode::Operator { .. }) {
            let share = if total_ms > 0.0 { 100.0 * report.busy_ms / total_ms } else { 0.0 };
            first.push_str(&format!(" · time {} ({share:.1}%)", milliseconds(report.busy_ms)));
        }
        let mut second = format!(
            "watermark in {}, out {}",
            watermark_text(report.watermark_in),
            watermark_text(report.watermark_out)
        );
        if let (Some(rows), Some(bytes)) = (report.state_rows, report.state_bytes) {
            second.push_str(&format!(" · state {rows} rows, {}", bytes_text(bytes)));
        }
        let mut lines = vec![first, second];
        if let Some(end) = report.oldest_open_window_end {
            lines.push(self.why_open(node, report, end));
        }
        lines
    }

    /// "oldest open window ends T: waiting for the watermark (now W) of
    /// input S, idle".
    fn why_open(&self, node: usize, report: &OperatorReport, end: i64) -> String {
        let now = report.watermark_in;
        let mut text = format!(
            "oldest open window ends {}: waiting for the watermark (now {}) to pass it",
            timestamp_text(end),
            watermark_text(now)
        );
        // The source with the lowest watermark among those the node reads.
        let slowest = self
            .plan
            .sources_under(node)
            .into_iter()
            .filter_map(|source| self.operators.get(source))
            .min_by_key(|source| source.watermark_out.unwrap_or(i64::MIN));
        if let Some(source) = slowest {
            let stream = source.name.trim_start_matches("source: ");
            let state = source.inputs.first().map_or("active", |(_, state)| *state);
            text.push_str(&format!(
                "; held back by input {stream} (watermark {}, {state})",
                watermark_text(source.watermark_out)
            ));
        }
        text
    }
}

pub fn milliseconds(ms: f64) -> String {
    if ms >= 1000.0 { format!("{:.2} s", ms / 1000.0) } else { format!("{ms:.1} ms") }
}

pub fn bytes_text(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

fn watermark_text(watermark: Option<i64>) -> String {
    match watermark {
        None => "none yet".into(),
        Some(i64::MAX) => "end of input".into(),
        Some(nanos) => timestamp_text(nanos),
    }
}

fn timestamp_text(nanos: i64) -> String {
    crate::json::timestamp(nanos).as_str().map_or_else(|| nanos.to_string(), str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_times_read_well() {
        assert_eq!(bytes_text(512), "512 B");
        assert_eq!(bytes_text(14_540), "14.2 KiB");
        assert_eq!(bytes_text(3 * 1024 * 1024), "3.0 MiB");
        assert_eq!(milliseconds(3.21), "3.2 ms");
        assert_eq!(milliseconds(1500.0), "1.50 s");
        assert_eq!(watermark_text(None), "none yet");
        assert_eq!(watermark_text(Some(i64::MAX)), "end of input");
        assert_eq!(watermark_text(Some(0)), "1970-01-01T00:00:00");
    }
}
