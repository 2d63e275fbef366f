//! The first step every windowed aggregate takes with a batch: read each
//! row's window (pane start, window end or event time), skip rows without
//! one, drop and count the late ones (`late_rows_dropped`), and split the
//! rest by window in arrival order. Shared by the pane window, the window
//! aggregate and the session window, which differ only in what "late"
//! means and what they do with an on-time row.

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, TimeUnit, TimestampNanosecondType};
use datafusion::physical_expr::PhysicalExpr;

use crate::error::Result;
use crate::metrics::QueryMetrics;
use crate::operators::groups::evaluate;

/// Rows of one window (or pane), by their window's time, in order of the
/// window's first row; each window's rows in arrival order.
pub(crate) type Slices = Vec<(i64, Vec<u32>)>;

/// Evaluates `expr` (a timestamp of any unit) as nanoseconds.
pub(crate) fn window_times(expr: &std::sync::Arc<dyn PhysicalExpr>, rows: &RecordBatch) -> Result<ArrayRef> {
    Ok(cast(&evaluate(expr, rows)?, &DataType::Timestamp(TimeUnit::Nanosecond, None))?)
}

/// Walks `times` in arrival order: NULL rows are skipped, rows for which
/// `is_late(time)` holds are counted into `late_rows_dropped`, and the
/// others are handed to `on_time(row, time)`.
pub(crate) fn for_each_on_time_row(
    times: &ArrayRef,
    metrics: &QueryMetrics,
    mut is_late: impl FnMut(i64) -> bool,
    mut on_time: impl FnMut(usize, i64) -> Result<()>,
) -> Result<()> {
    let times = times.as_primitive::<TimestampNanosecondType>();
    let mut late_rows = 0;
    for row in 0..times.len() {
        if times.is_null(row) {
            continue;
        }
        let time = times.value(row);
        if is_late(time) {
            late_rows += 1;
            continue;
        }
        on_time(row, time)?;
    }
    if late_rows > 0 {
        QueryMetrics::add(&metrics.late_rows_dropped, late_rows);
    }
    Ok(())
}

/// Adds `row` to the slice of window `time`.
pub(crate) fn push_row(slices: &mut Slices, time: i64, row: usize) {
    match slices.iter_mut().find(|(window, _)| *window == time) {
        Some((_, indices)) => indices.push(row as u32),
        None => slices.push((time, vec![row as u32])),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::TimestampNanosecondArray;

    use super::*;

    #[test]
    fn late_and_null_rows_are_left_out_and_late_ones_counted() {
        let times: ArrayRef =
            Arc::new(TimestampNanosecondArray::from(vec![Some(10), None, Some(3), Some(20), Some(10)]));
        let metrics = QueryMetrics::default();
        let mut slices = Slices::new();
        for_each_on_time_row(
            &times,
            &metrics,
            |time| time < 5,
            |row, time| {
                push_row(&mut slices, time, row);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(slices, vec![(10, vec![0, 4]), (20, vec![3])]);
        assert_eq!(metrics.late_rows_dropped.load(std::sync::atomic::Ordering::Relaxed), 1);
    }
}
