//! The `generator` connector: deterministic built-in data for demos, tests
//! and benchmarks. `kind = 'weblog'` produces the seed's access-log records.
//!
//! Record `i` is a pure function of `(seed, i)`, so every query (and every
//! run) sees the same rows. Event time advances by `1 / rate` seconds per
//! record from `start`; one record in ten arrives up to 800 ms out of order,
//! and one in two hundred arrives 6 s late (dropped by a typical watermark,
//! so late-row counting is visible in the demo). With `realtime = true` the
//! records are released at `rate` per second of wall-clock time; otherwise
//! as fast as the query takes them.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Float64Array, Int32Array, RecordBatch, StringArray, StringBuilder, TimestampNanosecondArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::SchemaRef;

use super::SourceContext;
use super::random::SplitMix64;
use crate::error::{Result, RuntimeError};

/// The largest batch the generator sends at once.
const MAX_BATCH: u64 = 8192;

/// 2016-12-06T08:58:35Z, the first timestamp of the seed's logs.
pub const DEFAULT_START_NANOS: i64 = 1_481_014_715_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeneratorKind {
    Weblog,
}

/// The columns each kind can fill, with their natural types.
pub const WEBLOG_COLUMNS: [&str; 6] = ["ts", "ip", "status", "method", "url", "duration"];

#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorSpec {
    pub kind: GeneratorKind,
    pub seed: u64,
    /// Records per second of event time (and of wall-clock time if `realtime`).
    pub rate: f64,
    /// Total records; `None` runs forever.
    pub rows: Option<u64>,
    pub realtime: bool,
    /// Event time of record 0, nanoseconds since the epoch.
    pub start: i64,
    /// Distinct client IPs (the key space), skewed towards low numbers.
    pub hosts: u64,
    /// A burst of records at `factor` times the rate (event time and,
    /// paced, wall-clock time), once.
    pub burst: Option<Burst>,
}

/// `burst_factor` times the rate for `burst_for`, `burst_after` from the start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Burst {
    /// Seconds from record 0 to the burst.
    pub after: f64,
    /// Seconds the burst lasts.
    pub seconds: f64,
    pub factor: f64,
}

impl super::Schedule for GeneratorSpec {
    fn time_of(&self, index: u64) -> f64 {
        let index = index as f64;
        let Some(burst) = self.burst else { return index / self.rate };
        let before = burst.after * self.rate;
        let during = burst.seconds * self.rate * burst.factor;
        if index <= before {
            index / self.rate
        } else if index <= before + during {
            burst.after + (index - before) / (self.rate * burst.factor)
        } else {
            burst.after + burst.seconds + (index - before - during) / self.rate
        }
    }

    fn due_by(&self, seconds: f64) -> u64 {
        let Some(burst) = self.burst else { return (seconds * self.rate) as u64 };
        let records = if seconds <= burst.after {
            seconds * self.rate
        } else if seconds <= burst.after + burst.seconds {
            burst.after * self.rate + (seconds - burst.after) * self.rate * burst.factor
        } else {
            (burst.after + (seconds - burst.after) + burst.seconds * (burst.factor - 1.0)) * self.rate
        };
        records as u64
    }
}

impl GeneratorSpec {
    /// Checks that every declared column is one the generator can fill.
    pub fn validate(&self, schema: &SchemaRef) -> Result<()> {
        for field in schema.fields() {
            if !WEBLOG_COLUMNS.contains(&field.name().as_str()) {
                return Err(RuntimeError::user(format!(
                    "the weblog generator has no column {:?} (it has {})",
                    field.name(),
                    WEBLOG_COLUMNS.join(", ")
                )));
            }
        }
        if self.hosts == 0 {
            return Err(RuntimeError::user("generator hosts must be at least 1"));
        }
        if !(self.rate > 0.0 && self.rate.is_finite()) {
            return Err(RuntimeError::user("generator rate must be a positive number of rows per second"));
        }
        if let Some(burst) = self.burst
            && !(burst.factor > 0.0 && burst.factor.is_finite() && burst.factor * self.rate < 1e12)
        {
            return Err(RuntimeError::user("generator burst_factor must be a positive number (times the rate)"));
        }
        Ok(())
    }

    /// Records `first..first + count` as a batch of `schema`.
    pub fn batch(&self, schema: &SchemaRef, first: u64, count: u64) -> Result<RecordBatch> {
        self.records(schema, (first..first + count).map(|index| self.weblog(index)).collect())
    }

    /// The records numbered `indices`.
    pub fn batch_of(&self, schema: &SchemaRef, indices: &[u64]) -> Result<RecordBatch> {
        self.records(schema, indices.iter().map(|index| self.weblog(*index)).collect())
    }

    fn records(&self, schema: &SchemaRef, records: Vec<WeblogRecord>) -> Result<RecordBatch> {
        let urls: Vec<String> = (0..PAGES).map(|page| format!("/codemove/{}", page_name(page))).collect();
        let columns = schema
            .fields()
            .iter()
            .map(|field| {
                let natural: ArrayRef = match field.name().as_str() {
                    "ts" => Arc::new(TimestampNanosecondArray::from_iter_values(records.iter().map(|r| r.ts))),
                    "ip" => {
                        let mut ips = StringBuilder::with_capacity(records.len(), records.len() * 12);
                        for record in &records {
                            self.write_ip(&mut ips, record.host);
                        }
                        Arc::new(ips.finish())
                    }
                    "status" => Arc::new(Int32Array::from_iter_values(records.iter().map(|r| r.status))),
                    "method" => Arc::new(StringArray::from_iter_values(records.iter().map(|r| r.method))),
                    "url" => {
                        Arc::new(StringArray::from_iter_values(records.iter().map(|r| urls[r.page as usize].as_str())))
                    }
                    "duration" => Arc::new(Float64Array::from_iter_values(records.iter().map(|r| r.duration))),
                    other => {
                        return Err(RuntimeError::user(format!("the weblog generator has no column {other:?}")));
                    }
                };
                Ok(if natural.data_type() == field.data_type() { natural } else { cast(&natural, field.data_type())? })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    }

    fn weblog(&self, index: u64) -> WeblogRecord {
        let mut random = SplitMix64::for_row(self.seed, index);
        // `as` from f64 saturates; the sums must too (a user-given start).
        let mut ts = self.start.saturating_add((super::Schedule::time_of(self, index) * 1e9) as i64);
        let disorder = random.next_f64();
        if disorder < 0.005 {
            ts = ts.saturating_sub(6_000_000_000);
        } else if disorder < 0.1 {
            ts = ts.saturating_sub((random.next_f64() * 800_000_000.0) as i64);
        }
        // A skewed choice: low-numbered hosts are far more frequent.
        let host = (random.next_f64().powi(3) * self.hosts as f64) as u64;
        let status = match random.next_f64() {
            p if p < 0.72 => 200,
            p if p < 0.80 => 301,
            p if p < 0.90 => 404,
            p if p < 0.95 => 403,
            _ => 500,
        };
        let method = ["GET", "GET", "GET", "POST", "PUT", "DELETE"][(random.next_u64() % 6) as usize];
        let page = random.next_u64() % PAGES;
        let duration = (-random.next_f64().max(1e-9).ln() * 0.05 * 1000.0).round() / 1000.0;
        WeblogRecord { ts, host, status, method, page, duration }
    }

    /// Host `host`'s address, appended to `ips` (no string per record).
    fn write_ip(&self, ips: &mut StringBuilder, host: u64) {
        use std::fmt::Write;
        // Writing to a builder cannot fail.
        let _ = if self.hosts <= 200 {
            write!(ips, "{}.{}.{}.{}", 10 + host * 7 % 200, host * 13 % 256, host * 31 % 256, 1 + host)
        } else {
            write!(ips, "{}.{}.{}.{}", 10 + (host >> 24) % 200, (host >> 16) & 255, (host >> 8) & 255, host & 255)
        };
        ips.append_value("");
    }
}

/// The pages a weblog record's URL is one of.
const PAGES: u64 = 50;

struct WeblogRecord {
    ts: i64,
    host: u64,
    status: i32,
    method: &'static str,
    page: u64,
    duration: f64,
}

fn page_name(page: u64) -> String {
    let mut random = SplitMix64::new(page.wrapping_add(17));
    (0..12).map(|_| (b'A' + (random.next_u64() % 26) as u8) as char).collect()
}

pub async fn run(spec: &GeneratorSpec, schema: SchemaRef, context: SourceContext) {
    let batch = |first, count, picked: super::Picked<'_>| match picked {
        super::Picked::All => spec.batch(&schema, first, count),
        super::Picked::Only(indices) => spec.batch_of(&schema, indices),
    };
    super::run_numbered(spec.rows, spec, spec.realtime, MAX_BATCH, context, batch).await
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    use super::*;

    fn spec() -> GeneratorSpec {
        GeneratorSpec {
            kind: GeneratorKind::Weblog,
            seed: 7,
            rate: 100.0,
            rows: Some(1000),
            realtime: false,
            start: DEFAULT_START_NANOS,
            hosts: 40,
            burst: None,
        }
    }

    #[test]
    fn a_burst_schedule_is_its_own_inverse() {
        use super::super::Schedule;
        let spec = GeneratorSpec { burst: Some(Burst { after: 2.0, seconds: 3.0, factor: 10.0 }), ..spec() };
        // 200 records before, 3000 during, then 100 a second again.
        assert_eq!(spec.due_by(2.0), 200);
        assert_eq!(spec.due_by(5.0), 3200);
        assert_eq!(spec.due_by(6.0), 3300);
        for index in [0, 150, 200, 201, 1700, 3200, 3201, 5000] {
            let time = spec.time_of(index);
            assert!(spec.due_by(time + 1e-9) >= index && spec.due_by(time - 1e-6) < index.max(1), "{index}");
        }
    }

    #[test]
    fn same_seed_same_rows_whatever_the_batching() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), false),
            Field::new("ip", DataType::Utf8, false),
            Field::new("status", DataType::Int64, false),
        ]));
        let whole = spec().batch(&schema, 0, 10).unwrap();
        let first = spec().batch(&schema, 0, 4).unwrap();
        let rest = spec().batch(&schema, 4, 6).unwrap();
        assert_eq!(whole.slice(0, 4), first);
        assert_eq!(whole.slice(4, 6), rest);
    }

    #[test]
    fn unknown_columns_are_rejected() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![Field::new("nope", DataType::Utf8, false)]));
        assert!(spec().validate(&schema).unwrap_err().to_string().contains("no column \"nope\""));
    }

    #[test]
    fn starts_near_the_ends_of_time_saturate() {
        let schema: SchemaRef =
            Arc::new(Schema::new(vec![Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), false)]));
        for start in [i64::MAX - 10, i64::MIN + 10] {
            let spec = GeneratorSpec { start, rate: 1e-6, ..spec() };
            assert_eq!(spec.batch(&schema, 0, 100).unwrap().num_rows(), 100);
            assert_eq!(spec.batch(&schema, u64::MAX - 100, 100).unwrap().num_rows(), 100);
        }
    }
}
