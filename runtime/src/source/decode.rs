//! Decoding records (lines of text, CSV or JSON) into Arrow batches.
//!
//! # Algorithm
//!
//! Text and CSV lines are split into fields and collected as string columns;
//! each column is then cast to its declared type in one vectorised call with
//! "safe" casting, which turns unparsable values into nulls. A row is
//! malformed when it has the wrong number of fields or when a non-empty
//! field became null; malformed rows are dropped and counted, the rest go on.
//! JSON lines are decoded by arrow-json in one pass; if the chunk has an
//! error, it is decoded again line by line to find and drop the bad lines.
//! CSV chunks take a fast path first: arrow-csv decodes the whole chunk;
//! only a chunk it rejects (or whose strings have surrounding spaces, which
//! the field-by-field path trims) goes field by field. Both paths give the
//! same rows, so results do not depend on how lines are chunked.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, StringBuilder};
use datafusion::arrow::compute::{CastOptions, cast_with_options, concat_batches, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::json::ReaderBuilder;
use datafusion::arrow::util::display::FormatOptions;

use crate::error::{Result, RuntimeError};

/// How records are laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// Fields separated by `delimiter`, in declared column order, no quoting.
    Text { delimiter: String },
    /// RFC 4180 CSV: fields may be quoted with `"`.
    Csv { delimiter: char, header: bool },
    /// One JSON object per line; fields matched by name.
    Json,
}

/// The rows decoded from a chunk of records.
#[derive(Debug)]
pub struct Decoded {
    pub rows: RecordBatch,
    pub malformed: usize,
    /// What was wrong with the first malformed record, if any.
    pub problem: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RecordDecoder {
    schema: SchemaRef,
    format: Format,
}

impl RecordDecoder {
    pub fn new(schema: SchemaRef, format: Format) -> Self {
        Self { schema, format }
    }

    pub fn format(&self) -> &Format {
        &self.format
    }

    /// Decodes a chunk of whole lines (`\n`-separated) as it was read: CSV
    /// and JSON chunks go to arrow's decoders without being split first.
    pub fn decode_text(&self, text: &str) -> Result<Decoded> {
        let count = text.lines().filter(|line| !line.trim().is_empty()).count();
        let fast = match &self.format {
            Format::Csv { delimiter, .. } => self.csv_text(text, count, *delimiter),
            Format::Json => self.json_text(text, count),
            Format::Text { .. } => None,
        };
        if let Some(rows) = fast {
            return Ok(Decoded { rows, malformed: 0, problem: None });
        }
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        self.decode(&lines)
    }

    pub fn decode(&self, lines: &[String]) -> Result<Decoded> {
        match &self.format {
            Format::Text { delimiter } => {
                self.decode_fields(lines, |line| line.split(delimiter.as_str()).map(str::to_string).collect())
            }
            Format::Csv { delimiter, .. } => match self.decode_csv_chunk(lines, *delimiter) {
                Some(rows) => Ok(Decoded { rows, malformed: 0, problem: None }),
                None => self.decode_fields(lines, |line| split_csv(line, *delimiter)),
            },
            Format::Json => self.decode_json(lines),
        }
    }

    fn decode_fields(&self, lines: &[String], split: impl Fn(&str) -> Vec<String>) -> Result<Decoded> {
        let width = self.schema.fields().len();
        let mut builders: Vec<StringBuilder> = (0..width).map(|_| StringBuilder::new()).collect();
        let mut malformed = 0;
        let mut problem = None;
        let mut sources = Vec::new();
        for line in lines.iter().filter(|line| !line.trim().is_empty()) {
            let fields = split(line);
            if fields.len() != width {
                malformed += 1;
                problem.get_or_insert_with(|| {
                    format!("expected {width} fields, found {}: {}", fields.len(), abbreviate(line))
                });
                continue;
            }
            for (builder, field) in builders.iter_mut().zip(&fields) {
                let field = field.trim();
                if field.is_empty() { builder.append_null() } else { builder.append_value(field) }
            }
            sources.push(line.as_str());
        }
        let options = CastOptions { safe: true, format_options: FormatOptions::default() };
        let mut keep = vec![true; sources.len()];
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(width);
        for (builder, field) in builders.iter_mut().zip(self.schema.fields()) {
            let strings = builder.finish();
            let typed = if field.data_type() == &DataType::Utf8 {
                Arc::new(strings) as ArrayRef
            } else {
                let typed = cast_with_options(&strings, field.data_type(), &options)?;
                for (row, keep) in keep.iter_mut().enumerate() {
                    if *keep && strings.is_valid(row) && typed.is_null(row) {
                        *keep = false;
                        problem.get_or_insert_with(|| {
                            format!(
                                "cannot parse {:?} as {} for column {}: {}",
                                strings.value(row),
                                field.data_type(),
                                field.name(),
                                abbreviate(sources[row])
                            )
                        });
                    }
                }
                typed
            };
            columns.push(typed);
        }
        let rows = RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(sources.len())),
        )
        .map_err(|error| RuntimeError::user(error.to_string()))?;
        let bad = keep.iter().filter(|keep| !**keep).count();
        let rows = if bad > 0 { filter_record_batch(&rows, &BooleanArray::from(keep))? } else { rows };
        Ok(Decoded { rows, malformed: malformed + bad, problem })
    }

    /// The whole chunk through arrow-csv, or `None` to go field by field.
    fn decode_csv_chunk(&self, lines: &[String], delimiter: char) -> Option<RecordBatch> {
        let (text, count) = joined_lines(lines.iter());
        self.csv_text(&text, count, delimiter)
    }

    /// `text` (`count` non-empty lines) through arrow-csv, or `None`.
    fn csv_text(&self, text: &str, count: usize, delimiter: char) -> Option<RecordBatch> {
        if !delimiter.is_ascii() || text.lines().any(|line| !line.is_empty() && line.trim().is_empty()) {
            return None;
        }
        let decoder = datafusion::arrow::csv::ReaderBuilder::new(self.schema.clone())
            .with_delimiter(delimiter as u8)
            .with_batch_size(count.max(1))
            .build_decoder();
        let rows = decode_all(decoder, text.as_bytes())?;
        if rows.num_rows() != count {
            return None;
        }
        // Empty strings are NULL, as on the field-by-field path; padded
        // strings would be trimmed there.
        let mut columns = Vec::with_capacity(rows.num_columns());
        for column in rows.columns() {
            let Some(strings) = column.as_any().downcast_ref::<datafusion::arrow::array::StringArray>() else {
                columns.push(column.clone());
                continue;
            };
            let mut empty = false;
            for value in strings.iter().flatten() {
                if value.len() != value.trim().len() {
                    return None;
                }
                empty |= value.is_empty();
            }
            if empty {
                let mask: BooleanArray = strings.iter().map(|value| Some(value == Some(""))).collect();
                columns.push(datafusion::arrow::compute::nullif(column, &mask).ok()?);
            } else {
                columns.push(column.clone());
            }
        }
        RecordBatch::try_new(self.schema.clone(), columns).ok()
    }

    /// `text` (`count` non-empty lines) through arrow-json, when every line
    /// is an object it accepts (one row per line); `None` otherwise.
    fn json_text(&self, text: &str, count: usize) -> Option<RecordBatch> {
        if !text.lines().filter(|line| !line.trim().is_empty()).all(|line| line.trim_start().starts_with('{')) {
            return None;
        }
        let decoder = ReaderBuilder::new(self.schema.clone()).with_batch_size(count.max(1)).build_decoder().ok()?;
        let rows = decode_all(decoder, text.as_bytes())?;
        (rows.num_rows() == count).then_some(rows)
    }

    fn decode_json(&self, lines: &[String]) -> Result<Decoded> {
        let lines: Vec<&String> = lines.iter().filter(|line| !line.trim().is_empty()).collect();
        if let Some(rows) = self.decode_json_fast(&lines) {
            return Ok(Decoded { rows, malformed: 0, problem: None });
        }
        let mut batches = Vec::new();
        let mut malformed = 0;
        let mut problem = None;
        for line in lines {
            match self.decode_json_chunk(&[line]) {
                Ok(rows) => batches.push(rows),
                Err(error) => {
                    malformed += 1;
                    problem.get_or_insert_with(|| format!("{error}: {}", abbreviate(line)));
                }
            }
        }
        let rows = concat_batches(&self.schema, &batches)?;
        Ok(Decoded { rows, malformed, problem })
    }

    fn decode_json_fast(&self, lines: &[&String]) -> Option<RecordBatch> {
        let (text, count) = joined_lines(lines.iter().copied());
        self.json_text(&text, count)
    }

    fn decode_json_chunk(&self, lines: &[&String]) -> Result<RecordBatch> {
        let mut decoder =
            ReaderBuilder::new(self.schema.clone()).with_batch_size(lines.len().max(1)).build_decoder()?;
        let mut text = String::new();
        for line in lines {
            let value: serde_json::Value =
                serde_json::from_str(line).map_err(|error| RuntimeError::user(format!("invalid JSON ({error})")))?;
            if !value.is_object() {
                return Err(RuntimeError::user("a JSON record must be an object"));
            }
            text.push_str(line);
            text.push('\n');
        }
        // A record that does not fit the schema is the sender's problem.
        let user = |error: datafusion::arrow::error::ArrowError| RuntimeError::user(error.to_string());
        decoder.decode(text.as_bytes()).map_err(user)?;
        Ok(decoder.flush().map_err(user)?.unwrap_or_else(|| RecordBatch::new_empty(self.schema.clone())))
    }
}

/// The non-empty lines joined by newlines, and how many there are.
fn joined_lines<'a>(lines: impl Iterator<Item = &'a String>) -> (String, usize) {
    let mut text = String::new();
    let mut count = 0;
    for line in lines.filter(|line| !line.trim().is_empty()) {
        text.push_str(line);
        text.push('\n');
        count += 1;
    }
    (text, count)
}

/// Feeds all of `bytes` to an arrow CSV or JSON decoder; `None` on any error.
trait ChunkDecoder {
    fn feed(&mut self, bytes: &[u8]) -> Option<usize>;
    fn finish(&mut self) -> Option<Option<RecordBatch>>;
}

impl ChunkDecoder for datafusion::arrow::csv::reader::Decoder {
    fn feed(&mut self, bytes: &[u8]) -> Option<usize> {
        self.decode(bytes).ok()
    }
    fn finish(&mut self) -> Option<Option<RecordBatch>> {
        self.flush().ok()
    }
}

impl ChunkDecoder for datafusion::arrow::json::reader::Decoder {
    fn feed(&mut self, bytes: &[u8]) -> Option<usize> {
        self.decode(bytes).ok()
    }
    fn finish(&mut self) -> Option<Option<RecordBatch>> {
        self.flush().ok()
    }
}

fn decode_all(mut decoder: impl ChunkDecoder, bytes: &[u8]) -> Option<RecordBatch> {
    let mut offset = 0;
    while offset < bytes.len() {
        let used = decoder.feed(&bytes[offset..])?;
        if used == 0 {
            break;
        }
        offset += used;
    }
    decoder.finish()?
}

/// Splits one CSV line (RFC 4180 quoting: `"a ""quoted"" field"`).
pub fn split_csv(line: &str, delimiter: char) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if field.is_empty() => quoted = true,
            (c, false) if c == delimiter => fields.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    fields.push(field);
    fields
}

fn abbreviate(line: &str) -> String {
    if line.chars().count() > 120 {
        format!("{}...", line.chars().take(120).collect::<String>())
    } else {
        line.to_string()
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{Field, Schema, TimeUnit};
    use datafusion::arrow::util::pretty::pretty_format_batches;

    use super::*;

    fn weblog_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
            Field::new("ip", DataType::Utf8, true),
            Field::new("status", DataType::Int32, true),
            Field::new("duration", DataType::Float64, true),
        ]))
    }

    fn lines(text: &[&str]) -> Vec<String> {
        text.iter().map(|line| line.to_string()).collect()
    }

    #[test]
    fn csv_chunks_decode_alike_on_the_fast_and_the_field_by_field_path() {
        let decoder = RecordDecoder::new(weblog_schema(), Format::Csv { delimiter: ',', header: false });
        let good = [
            "2016-12-06T08:58:35.318,37.139.9.11,404,0.026",
            "2016-12-06T08:58:36.000,,200,",
            "2016-12-06T08:58:37.000,\"1.2.3.4\",,1.5",
        ];
        let fast = decoder.decode(&lines(&good)).unwrap();
        assert!(decoder.decode_csv_chunk(&lines(&good), ',').is_some(), "the fast path takes clean chunks");
        // A bad line sends its chunk field by field; the good rows come out the same.
        let mut with_bad = good.to_vec();
        with_bad.insert(1, "2016-12-06T08:58:35.500,1.2.3.4,abc,0.1");
        let slow = decoder.decode(&lines(&with_bad)).unwrap();
        assert_eq!(slow.malformed, 1);
        assert_eq!(fast.rows, slow.rows);
        assert_eq!(fast.rows.column(1).null_count(), 1, "an empty string is NULL on both paths");
    }

    #[test]
    fn text_lines_are_split_and_cast() {
        let decoder = RecordDecoder::new(weblog_schema(), Format::Text { delimiter: " ".into() });
        let decoded = decoder
            .decode(&lines(&[
                "2016-12-06T08:58:35.318+0000 37.139.9.11 404 0.026",
                "2016-12-06T08:58:36.000+0000 1.2.3.4 abc 0.1",
                "too few fields",
                "2016-12-06T08:58:37.000+0100 1.2.3.4 200 1.5",
            ]))
            .unwrap();
        assert_eq!(decoded.malformed, 2);
        assert_eq!(decoded.problem.as_deref(), Some("expected 4 fields, found 3: too few fields"));
        let expected = [
            "+-------------------------+-------------+--------+----------+",
            "| ts                      | ip          | status | duration |",
            "+-------------------------+-------------+--------+----------+",
            "| 2016-12-06T08:58:35.318 | 37.139.9.11 | 404    | 0.026    |",
            "| 2016-12-06T07:58:37     | 1.2.3.4     | 200    | 1.5      |",
            "+-------------------------+-------------+--------+----------+",
        ];
        assert_eq!(pretty_format_batches(&[decoded.rows]).unwrap().to_string(), expected.join("\n"));
    }

    #[test]
    fn csv_handles_quotes() {
        assert_eq!(split_csv(r#"a,"b,c","say ""hi""",d"#, ','), vec!["a", "b,c", "say \"hi\"", "d"]);
        assert_eq!(split_csv("", ','), vec![""]);
    }

    #[test]
    fn bad_json_lines_are_dropped_and_counted() {
        let decoder = RecordDecoder::new(weblog_schema(), Format::Json);
        let decoded = decoder
            .decode(&lines(&[
                r#"{"ts": "2016-12-06T08:58:35", "ip": "a", "status": 200, "duration": 1.0}"#,
                r#"{"ts": "#,
                r#"{"ts": "2016-12-06T08:58:36", "ip": "b", "status": "x", "duration": 1.0}"#,
                r#"{"ts": "2016-12-06T08:58:37", "ip": "c"}"#,
            ]))
            .unwrap();
        assert_eq!(decoded.malformed, 2);
        assert_eq!(decoded.rows.num_rows(), 2);
    }
}
