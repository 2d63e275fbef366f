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
//!
//! A decoder may read only some columns (those a query reads: projection
//! pushdown); the others come out NULL without being parsed, on every path,
//! so a bad value in an unread column does not make its record malformed.
//! CSV and text records must still have every field.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, RecordBatchOptions, StringBuilder, new_null_array,
};
use datafusion::arrow::compute::{CastOptions, cast_with_options, concat_batches, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::json::ReaderBuilder;
use datafusion::arrow::util::display::FormatOptions;

use super::timestamp;
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
    /// `schema` with its `TIMESTAMP` (nanosecond, no zone) columns read as
    /// strings, which [`timestamp::parse_column`] then parses faster than
    /// arrow's readers; `None` when there are none.
    text_schema: Option<SchemaRef>,
    /// The columns decoded (indices into `schema`, ascending); the others
    /// are NULL. `None`: every column.
    read: Option<Arc<[usize]>>,
    /// JSON reading some columns: a decoder of just those (JSON fields are
    /// matched by name, so the others are skipped as unknown fields).
    projected: Option<Box<RecordDecoder>>,
}

impl RecordDecoder {
    pub fn new(schema: SchemaRef, format: Format) -> Self {
        let text_schema = schema.fields().iter().any(|field| field.data_type() == &timestamp::NANOS).then(|| {
            let fields: Vec<Field> = schema
                .fields()
                .iter()
                .map(|field| match field.data_type() == &timestamp::NANOS {
                    true => field.as_ref().clone().with_data_type(DataType::Utf8),
                    false => field.as_ref().clone(),
                })
                .collect();
            Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
        });
        Self { schema, format, text_schema, read: None, projected: None }
    }

    /// Decodes only `columns` (indices into the schema) and the NOT NULL
    /// columns; every other column comes out NULL.
    pub fn reading(mut self, columns: &[usize]) -> Self {
        let read: Vec<usize> = (0..self.schema.fields().len())
            .filter(|index| columns.contains(index) || !self.schema.field(*index).is_nullable())
            .collect();
        if read.is_empty() || read.len() == self.schema.fields().len() {
            return self;
        }
        if self.format == Format::Json {
            let Ok(projected) = self.schema.project(&read) else { return self };
            self.projected = Some(Box::new(RecordDecoder::new(Arc::new(projected), Format::Json)));
        }
        self.read = Some(read.into());
        self
    }

    fn reads(&self, column: usize) -> bool {
        self.read.as_ref().is_none_or(|read| read.contains(&column))
    }

    /// The full-width batch of `columns`, one per column read; the columns
    /// not read are NULL.
    fn assemble(&self, columns: Vec<ArrayRef>, rows: usize) -> Result<RecordBatch> {
        let columns = match &self.read {
            None => columns,
            Some(_) => {
                let mut read = columns.into_iter();
                let mut all = Vec::with_capacity(self.schema.fields().len());
                for (index, field) in self.schema.fields().iter().enumerate() {
                    match self.reads(index) {
                        true => all.push(read.next().ok_or_else(|| RuntimeError::user("a read column is missing"))?),
                        false => all.push(new_null_array(field.data_type(), rows)),
                    }
                }
                all
            }
        };
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)
            .map_err(|error| RuntimeError::user(error.to_string()))
    }

    /// What the projected JSON decoder gave, widened to the full schema.
    fn widened(&self, decoded: Decoded) -> Result<Decoded> {
        let rows = self.assemble(decoded.rows.columns().to_vec(), decoded.rows.num_rows())?;
        Ok(Decoded { rows, ..decoded })
    }

    pub fn format(&self) -> &Format {
        &self.format
    }

    /// Decodes a chunk of whole lines (`\n`-separated) as it was read: CSV
    /// and JSON chunks go to arrow's decoders without being split first.
    pub fn decode_text(&self, text: &str) -> Result<Decoded> {
        self.decode_bytes(text.as_bytes())
    }

    /// [`decode_text`](Self::decode_text) for bytes read from a file or a
    /// socket: invalid UTF-8 is replaced by U+FFFD. The fast paths take the
    /// bytes as they are (arrow's decoders check UTF-8 themselves and fail
    /// on invalid text, which then goes the slow way, replaced).
    pub fn decode_bytes(&self, bytes: &[u8]) -> Result<Decoded> {
        if let Some(projected) = &self.projected {
            return self.widened(projected.decode_bytes(bytes)?);
        }
        let fast = match &self.format {
            Format::Csv { delimiter, .. } => self.csv_text(bytes, &LineScan::of(bytes), *delimiter),
            Format::Json => self.json_text(bytes, &LineScan::of(bytes)),
            Format::Text { .. } => None,
        };
        if let Some(rows) = fast {
            return Ok(Decoded { rows, malformed: 0, problem: None });
        }
        let lines: Vec<String> = String::from_utf8_lossy(bytes).lines().map(str::to_string).collect();
        self.decode(&lines)
    }

    pub fn decode(&self, lines: &[String]) -> Result<Decoded> {
        if let Some(projected) = &self.projected {
            return self.widened(projected.decode(lines)?);
        }
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
            for (index, (builder, field)) in builders.iter_mut().zip(&fields).enumerate() {
                if !self.reads(index) {
                    continue;
                }
                let field = field.trim();
                if field.is_empty() { builder.append_null() } else { builder.append_value(field) }
            }
            sources.push(line.as_str());
        }
        let options = CastOptions { safe: true, format_options: FormatOptions::default() };
        let mut keep = vec![true; sources.len()];
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(width);
        for (index, (builder, field)) in builders.iter_mut().zip(self.schema.fields()).enumerate() {
            if !self.reads(index) {
                continue;
            }
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
        let rows = self.assemble(columns, sources.len())?;
        let bad = keep.iter().filter(|keep| !**keep).count();
        let rows = if bad > 0 { filter_record_batch(&rows, &BooleanArray::from(keep))? } else { rows };
        Ok(Decoded { rows, malformed: malformed + bad, problem })
    }

    /// The whole chunk through arrow-csv, or `None` to go field by field.
    fn decode_csv_chunk(&self, lines: &[String], delimiter: char) -> Option<RecordBatch> {
        let text = joined_lines(lines.iter());
        self.csv_text(text.as_bytes(), &LineScan::of(text.as_bytes()), delimiter)
    }

    /// `text` (its lines as `scan` found them) through arrow-csv, or `None`.
    fn csv_text(&self, text: &[u8], scan: &LineScan, delimiter: char) -> Option<RecordBatch> {
        if !delimiter.is_ascii() || scan.blank {
            return None;
        }
        let count = scan.records;
        // Room for one row more than there are records: a chunk that gives
        // more rows than it has lines is then seen, not cut off.
        let mut builder =
            datafusion::arrow::csv::ReaderBuilder::new(self.text_schema.clone().unwrap_or(self.schema.clone()))
                .with_delimiter(delimiter as u8)
                .with_batch_size(count + 1);
        if let Some(read) = &self.read {
            builder = builder.with_projection(read.to_vec());
        }
        let rows = decode_all(builder.build_decoder(), text)?;
        if rows.num_rows() != count {
            return None;
        }
        // Timestamps read as strings are parsed; other empty strings are
        // NULL, as on the field-by-field path, and padded strings would be
        // trimmed there.
        let mut columns = Vec::with_capacity(rows.num_columns());
        let fields = self.schema.fields().iter().enumerate().filter(|(index, _)| self.reads(*index));
        for (column, (_, field)) in rows.columns().iter().zip(fields) {
            let Some(strings) = column.as_any().downcast_ref::<datafusion::arrow::array::StringArray>() else {
                columns.push(column.clone());
                continue;
            };
            if field.data_type() == &timestamp::NANOS {
                columns.push(timestamp::parse_column(strings)?);
                continue;
            }
            let mut empty = false;
            for value in strings.iter().flatten() {
                if is_padded(value) {
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
        self.assemble(columns, count).ok()
    }

    /// `text` (its lines as `scan` found them) through arrow-json, when
    /// every line is an object it accepts (one row per line); `None`
    /// otherwise.
    fn json_text(&self, text: &[u8], scan: &LineScan) -> Option<RecordBatch> {
        if !scan.objects {
            return None;
        }
        // Timestamps as strings first (parsed faster than arrow does); a
        // chunk that has them as numbers goes through arrow after all.
        let with_text_timestamps = self.text_schema.as_ref().and_then(|text_schema| {
            let rows = json_rows(text_schema, text, scan.records)?;
            let columns = rows.columns().iter().zip(self.schema.fields()).map(|(column, field)| {
                match (field.data_type() == &timestamp::NANOS, column.as_string_opt::<i32>()) {
                    (true, Some(strings)) => timestamp::parse_column(strings),
                    _ => Some(column.clone()),
                }
            });
            RecordBatch::try_new(self.schema.clone(), columns.collect::<Option<Vec<_>>>()?).ok()
        });
        with_text_timestamps.or_else(|| json_rows(&self.schema, text, scan.records))
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
        let text = joined_lines(lines.iter().copied());
        self.json_text(text.as_bytes(), &LineScan::of(text.as_bytes()))
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

/// `text` through arrow-json as `count` rows of `schema`, or `None`.
fn json_rows(schema: &SchemaRef, text: &[u8], count: usize) -> Option<RecordBatch> {
    // One row more than records: two objects on a line are seen.
    let decoder = ReaderBuilder::new(schema.clone()).with_batch_size(count + 1).build_decoder().ok()?;
    let rows = decode_all(decoder, text)?;
    (rows.num_rows() == count).then_some(rows)
}

/// The non-empty lines joined by newlines.
fn joined_lines<'a>(lines: impl Iterator<Item = &'a String>) -> String {
    let mut text = String::new();
    for line in lines.filter(|line| !line.trim().is_empty()) {
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// What the fast paths need to know about a chunk's lines (as
/// [`str::lines`] splits them), found in one pass.
#[derive(Debug, PartialEq, Eq)]
struct LineScan {
    /// Lines with something besides whitespace: the records.
    records: usize,
    /// Some line is not empty but holds only whitespace.
    blank: bool,
    /// Every record starts, after whitespace, with `{`.
    objects: bool,
}

impl LineScan {
    /// The common case takes one branch-free (vectorised) pass: when every
    /// line starts with a visible ASCII character, every line is a record
    /// and starts with that character. Otherwise the lines are walked one
    /// by one (newlines found with memchr) and only those starting with
    /// something else are examined as text.
    fn of(text: &[u8]) -> Self {
        Self::visible_starts(text).unwrap_or_else(|| Self::line_by_line(text))
    }

    /// `None` unless every line starts with a visible ASCII character.
    fn visible_starts(bytes: &[u8]) -> Option<Self> {
        let &first = bytes.first()?;
        if !first.is_ascii_graphic() {
            return None;
        }
        // Runs of at most 255 pairs count in a `u8` and flags are `u8`s:
        // that is what lets the compiler vectorise the loop (12x faster
        // than with a `usize` count and `bool` flags).
        let mut newlines = 0usize;
        let (mut invisible_start, mut other_start) = (0u8, 0u8);
        let pairs = bytes.len() - 1;
        for (run, next_run) in bytes[..pairs].chunks(255).zip(bytes[1..].chunks(255)) {
            let mut count = 0u8;
            for (&byte, &next) in run.iter().zip(next_run) {
                let newline = u8::from(byte == b'\n');
                count += newline;
                invisible_start |= newline & u8::from(!next.is_ascii_graphic());
                other_start |= newline & u8::from(next != b'{');
            }
            newlines += usize::from(count);
        }
        if invisible_start != 0 {
            return None;
        }
        // The pairs leave out the last byte, so the last line's newline (if
        // it has one) is not counted: every line starts visibly, so there
        // is exactly one line after the counted newlines.
        let records = newlines + 1;
        Some(LineScan { records, blank: false, objects: first == b'{' && other_start == 0 })
    }

    fn line_by_line(bytes: &[u8]) -> Self {
        let mut scan = LineScan { records: 0, blank: false, objects: true };
        let mut start = 0;
        for newline in memchr::memchr_iter(b'\n', bytes) {
            scan.add(&bytes[start..newline], true);
            start = newline + 1;
        }
        scan.add(&bytes[start..], false);
        scan
    }

    fn add(&mut self, line: &[u8], terminated: bool) {
        match line.first() {
            None => {}
            Some(first) if first.is_ascii_graphic() => {
                self.records += 1;
                self.objects &= *first == b'{';
            }
            Some(_) => {
                // `str::lines` drops the `\r` of a `\r\n`.
                let line = if terminated { line.strip_suffix(b"\r").unwrap_or(line) } else { line };
                let line = String::from_utf8_lossy(line);
                let trimmed = line.trim();
                if trimmed.is_empty() {
                    self.blank |= !line.is_empty();
                } else {
                    self.records += 1;
                    self.objects &= trimmed.starts_with('{');
                }
            }
        }
    }
}

/// A string with whitespace at either end (the field-by-field path would
/// trim it). Mostly decided by its first and last bytes.
fn is_padded(value: &str) -> bool {
    match (value.as_bytes().first(), value.as_bytes().last()) {
        (Some(first), Some(last)) if first.is_ascii_graphic() && last.is_ascii_graphic() => false,
        _ => value.len() != value.trim().len(),
    }
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

    /// The line scan agrees with what `str::lines` and `str::trim` say.
    #[test]
    fn the_line_scan_matches_the_line_by_line_checks() {
        let texts = [
            "",
            "\n",
            "a,b\nc,d",
            "a,b\nc,d\n",
            "{}\n{}",
            "{}\n{}\n",
            "{}\n{}\nx",
            "a,b\n\nc,d\n",
            "a\r\n\r\nb\r\n",
            "a\n \t\nb",
            "a\n\r",
            "{\"x\": 1}\n  {\"x\": 2}\n\n",
            "{\"x\": 1}\n[1]\n",
            "\u{a0}{\"x\": 1}\n\u{2003}\n",
            " é,1\n",
        ];
        for text in texts {
            let records: Vec<&str> = text.lines().filter(|line| !line.trim().is_empty()).collect();
            let expected = LineScan {
                records: records.len(),
                blank: text.lines().any(|line| !line.is_empty() && line.trim().is_empty()),
                objects: records.iter().all(|line| line.trim_start().starts_with('{')),
            };
            assert_eq!(LineScan::of(text.as_bytes()), expected, "{text:?}");
            assert_eq!(LineScan::line_by_line(text.as_bytes()), expected, "{text:?}");
        }
        for (value, padded) in [("", false), ("a", false), (" a", true), ("a\t", true), ("é", false), ("\u{a0}é", true)]
        {
            assert_eq!(is_padded(value), padded, "{value:?}");
        }
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

    #[test]
    fn timestamps_read_as_strings_or_numbers_decode_as_arrow_decodes_them() {
        let decoder = RecordDecoder::new(weblog_schema(), Format::Json);
        let arrow = RecordDecoder { text_schema: None, ..decoder.clone() };
        for text in [
            "{\"ts\": \"2016-12-06T08:58:35.318\"}\n{\"ts\": null}\n{\"ts\": \"2016-12-06 08:58:36+01:00\"}\n",
            "{\"ts\": 1481014715318000000}\n{\"ts\": \"2016-12-06T08:58:35\"}\n",
        ] {
            let fast = decoder.decode_text(text).unwrap();
            assert_eq!(fast.malformed, 0, "{text}");
            assert_eq!(fast.rows, arrow.decode_text(text).unwrap().rows, "{text}");
        }
        let bad = decoder.decode_text("{\"ts\": \"\"}\n{\"ts\": \"2016-12-06T08:58:35\"}\n").unwrap();
        assert_eq!((bad.rows.num_rows(), bad.malformed), (1, 1));
        let decoder = RecordDecoder::new(weblog_schema(), Format::Csv { delimiter: ',', header: false });
        let arrow = RecordDecoder { text_schema: None, ..decoder.clone() };
        let text = "2016-12-06T08:58:35.318,a,1,1\n,b,2,2\n2016-12-06 08:58:36Z,c,3,3\n";
        assert_eq!(decoder.decode_text(text).unwrap().rows, arrow.decode_text(text).unwrap().rows);
        assert_eq!(decoder.decode_text(text).unwrap().rows.column(0).null_count(), 1);
    }

    /// Reading columns 0 and 2 (projection pushdown): on every path and in
    /// every format those columns are as a full decode gives them, the
    /// others NULL, and a bad value in an unread column is not malformed.
    #[test]
    fn a_decoder_reading_some_columns_leaves_the_others_null_on_every_path() {
        let csv = [
            "2016-12-06T08:58:35.318,37.139.9.11,404,0.026",
            "2016-12-06T08:58:36.000,1.2.3.4,200,not-a-number",
            "2016-12-06T08:58:37.000,\"5.6.7.8\",,1.5",
        ];
        let json = [
            r#"{"ts": "2016-12-06T08:58:35.318", "ip": "37.139.9.11", "status": 404, "duration": 0.026}"#,
            r#"{"ts": "2016-12-06T08:58:36.000", "ip": "1.2.3.4", "status": 200, "duration": "not-a-number"}"#,
            r#"{"ts": "2016-12-06T08:58:37.000", "ip": "5.6.7.8", "duration": 1.5}"#,
        ];
        let text: Vec<String> = csv.iter().map(|line| line.replace(',', " ").replace('"', "")).collect();
        let text: Vec<&str> = text.iter().map(String::as_str).collect();
        let formats = [
            (Format::Csv { delimiter: ',', header: false }, csv),
            (Format::Json, json),
            (Format::Text { delimiter: " ".into() }, [text[0], text[1], text[2]]),
        ];
        for (format, records) in formats {
            let full = RecordDecoder::new(weblog_schema(), format.clone());
            let reading = full.clone().reading(&[0, 2]);
            let whole = reading.decode_text(&(records.join("\n") + "\n")).unwrap();
            // A record the fast paths reject sends the chunk the slow way.
            let mut with_bad = records.to_vec();
            with_bad.insert(1, "2016-12-06T08:58:35.500 1.2.3.4");
            let slow = reading.decode(&lines(&with_bad)).unwrap();
            assert_eq!(slow.malformed, 1, "{format:?}");
            assert_eq!(whole.malformed, 0, "{format:?}: the bad duration is not read");
            assert_eq!(whole.rows, slow.rows, "{format:?}");
            assert_eq!(whole.rows.num_rows(), 3, "{format:?}");
            for column in [1, 3] {
                assert_eq!(whole.rows.column(column).null_count(), 3, "{format:?}");
            }
            let good = full.decode(&lines(&[records[0], records[2]])).unwrap().rows;
            let rows = whole.rows.project(&[0, 2]).unwrap();
            let rows = datafusion::arrow::compute::take_record_batch(
                &rows,
                &datafusion::arrow::array::UInt32Array::from(vec![0, 2]),
            )
            .unwrap();
            assert_eq!(rows, good.project(&[0, 2]).unwrap(), "{format:?}");
        }
        // NOT NULL columns are always decoded; reading everything is a full decode.
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Int64, true),
        ]));
        let decoder = RecordDecoder::new(schema, Format::Csv { delimiter: ',', header: false }).reading(&[1]);
        assert!(decoder.read.is_none());
    }

    #[test]
    fn a_line_of_two_json_objects_is_malformed_not_cut_short() {
        let decoder = RecordDecoder::new(weblog_schema(), Format::Json);
        let text = "{\"ip\": \"a\"}\n{\"ip\": \"b\"}{\"ip\": \"c\"}\n";
        let decoded = decoder.decode_text(text).unwrap();
        assert_eq!((decoded.rows.num_rows(), decoded.malformed), (1, 1));
    }
}
