//! The file sink: results written to rolled files in a directory, each
//! made visible atomically (a rename) once a checkpoint covers it.
//!
//! # Files
//!
//! ```text
//!   DIR/.part-<first seq>.<ext>.inprogress       being written
//!   DIR/.part-<first seq>.<ext>.pending-<n>      complete, part of checkpoint n
//!   DIR/part-<first seq>.<ext>                   committed: visible, never changed again
//! ```
//!
//! A file is named by the `seq` of its first row (20 digits, so names sort
//! in result order), which a recovered query gives the same row again:
//! rewritten files have the names and contents of the lost ones. Hidden
//! names and the extra suffix keep readers that list `*.jsonl` (DataFusion,
//! DuckDB, Spark) from ever seeing a half-written file. A file rolls over
//! after `rollover_rows` rows or `rollover` time, and at every checkpoint
//! (so that each checkpoint's rows can be committed).
//!
//! Updating results carry an `_op` column first (`+` or `-`).

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;

use super::{SharedSinkReport, Sink, update};
use crate::error::{Result, RuntimeError};
use crate::message::StreamBatch;

/// The column updating results carry first.
pub const OP_COLUMN: &str = "_op";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated, with a header line per file.
    Csv,
    /// Apache Parquet, Snappy-compressed.
    Parquet,
}

impl FileFormat {
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "jsonl" | "json" | "ndjson" => Some(Self::Jsonl),
            "csv" => Some(Self::Csv),
            "parquet" => Some(Self::Parquet),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        self.extension()
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::Jsonl => "jsonl",
            Self::Csv => "csv",
            Self::Parquet => "parquet",
        }
    }
}

#[derive(Debug, Clone)]
pub struct FileSinkSpec {
    /// The directory the files go in.
    pub path: PathBuf,
    pub format: FileFormat,
    /// A file rolls over after this many rows...
    pub rollover_rows: Option<u64>,
    /// ... or this long after its first row.
    pub rollover: Option<Duration>,
}

impl FileSinkSpec {
    /// Makes the directory if needed and checks a file can be written in
    /// it, so that a bad path is an error when the sink is created.
    pub fn check_writable(&self) -> std::result::Result<(), String> {
        std::fs::create_dir_all(&self.path)
            .map_err(|error| format!("cannot create the sink directory {}: {error}", self.path.display()))?;
        let probe = self.path.join(".sluice-probe");
        std::fs::write(&probe, b"")
            .and_then(|()| std::fs::remove_file(&probe))
            .map_err(|error| format!("cannot write in the sink directory {}: {error}", self.path.display()))
    }
}

/// A file being written.
struct OpenFile {
    first_seq: u64,
    rows: u64,
    opened: Instant,
    writer: FormatWriter,
}

enum FormatWriter {
    Jsonl(datafusion::arrow::json::LineDelimitedWriter<BufWriter<File>>),
    Csv(Box<datafusion::arrow::csv::Writer<BufWriter<File>>>),
    Parquet(Box<ArrowWriter<File>>),
}

impl FormatWriter {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        match self {
            Self::Jsonl(writer) => writer.write(batch)?,
            Self::Csv(writer) => writer.write(batch)?,
            Self::Parquet(writer) => writer.write(batch).map_err(parquet_error)?,
        }
        Ok(())
    }

    /// Flushes, closes and syncs the file.
    fn close(self) -> Result<()> {
        let file = match self {
            Self::Jsonl(mut writer) => {
                writer.finish()?;
                writer.into_inner().into_inner().map_err(|error| RuntimeError::from(error.into_error()))?
            }
            Self::Csv(writer) => {
                writer.into_inner().into_inner().map_err(|error| RuntimeError::from(error.into_error()))?
            }
            Self::Parquet(writer) => {
                let mut writer = *writer;
                writer.flush().map_err(parquet_error)?;
                let file = writer.inner().try_clone()?;
                writer.close().map_err(parquet_error)?;
                file
            }
        };
        file.sync_all()?;
        Ok(())
    }
}

fn parquet_error(error: parquet::errors::ParquetError) -> RuntimeError {
    RuntimeError::external(format!("cannot write Parquet: {error}"))
}

pub struct FileSink {
    spec: FileSinkSpec,
    /// The schema of the files (with `_op` for updating results).
    schema: SchemaRef,
    append_only: bool,
    current: Option<OpenFile>,
    /// Closed files not yet part of a checkpoint: (first seq, rows).
    closed: Vec<(u64, u64)>,
    /// Files prepared for a checkpoint: (checkpoint, first seq, rows).
    pending: Vec<(u64, u64, u64)>,
    /// Without checkpoints a closed file is committed at once.
    checkpointed: bool,
    report: SharedSinkReport,
}

impl FileSink {
    pub fn new(spec: FileSinkSpec, schema: SchemaRef, append_only: bool, report: SharedSinkReport) -> Result<Self> {
        spec.check_writable().map_err(RuntimeError::user)?;
        let schema = if append_only {
            schema
        } else {
            let mut fields = vec![Arc::new(Field::new(OP_COLUMN, DataType::Utf8, false))];
            fields.extend(schema.fields().iter().cloned());
            Arc::new(Schema::new(fields))
        };
        Ok(Self {
            spec,
            schema,
            append_only,
            current: None,
            closed: Vec::new(),
            pending: Vec::new(),
            checkpointed: false,
            report,
        })
    }

    fn name(&self, first_seq: u64) -> String {
        format!("part-{first_seq:020}.{}", self.spec.format.extension())
    }

    fn in_progress(&self, first_seq: u64) -> PathBuf {
        self.spec.path.join(format!(".{}.inprogress", self.name(first_seq)))
    }

    fn pending_path(&self, first_seq: u64, checkpoint: u64) -> PathBuf {
        self.spec.path.join(format!(".{}.pending-{checkpoint}", self.name(first_seq)))
    }

    fn committed(&self, first_seq: u64) -> PathBuf {
        self.spec.path.join(self.name(first_seq))
    }

    fn open_file(&self, first_seq: u64) -> Result<OpenFile> {
        let path = self.in_progress(first_seq);
        let file = File::create(&path)
            .map_err(|error| RuntimeError::external(format!("cannot create {}: {error}", path.display())))?;
        let writer = match self.spec.format {
            FileFormat::Jsonl => {
                FormatWriter::Jsonl(datafusion::arrow::json::LineDelimitedWriter::new(BufWriter::new(file)))
            }
            FileFormat::Csv => FormatWriter::Csv(Box::new(
                datafusion::arrow::csv::WriterBuilder::new().with_header(true).build(BufWriter::new(file)),
            )),
            FileFormat::Parquet => FormatWriter::Parquet(Box::new(
                ArrowWriter::try_new(
                    file,
                    self.schema.clone(),
                    Some(
                        parquet::file::properties::WriterProperties::builder()
                            .set_compression(parquet::basic::Compression::SNAPPY)
                            .build(),
                    ),
                )
                .map_err(parquet_error)?,
            )),
        };
        Ok(OpenFile { first_seq, rows: 0, opened: Instant::now(), writer })
    }

    /// Closes the file being written; it waits for the next checkpoint,
    /// or is committed at once without checkpoints.
    fn roll(&mut self) -> Result<()> {
        let Some(file) = self.current.take() else { return Ok(()) };
        file.writer.close()?;
        self.closed.push((file.first_seq, file.rows));
        if !self.checkpointed {
            let closed = std::mem::take(&mut self.closed);
            for (first_seq, rows) in closed {
                rename(&self.in_progress(first_seq), &self.committed(first_seq))?;
                update(&self.report, |report| {
                    report.rows_committed += rows;
                    report.commits += 1;
                });
            }
        }
        Ok(())
    }

    fn due(&self, file: &OpenFile) -> bool {
        self.spec.rollover_rows.is_some_and(|rows| file.rows >= rows)
            || self.spec.rollover.is_some_and(|after| file.opened.elapsed() >= after)
    }

    /// The rows as the files hold them (`_op` first for updating results).
    fn file_batch(&self, batch: &StreamBatch) -> Result<RecordBatch> {
        if self.append_only {
            return Ok(batch.rows.clone());
        }
        let ops: StringArray =
            (0..batch.num_rows()).map(|row| Some(batch.ops.as_ref().map_or("+", |ops| ops[row].symbol()))).collect();
        let mut columns: Vec<ArrayRef> = vec![Arc::new(ops)];
        columns.extend(batch.rows.columns().iter().cloned());
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(|error| {
        RuntimeError::external(format!("cannot rename {} to {}: {error}", from.display(), to.display()))
    })
}

/// What a file name in the sink directory is: (first seq, checkpoint for a
/// pending file, committed).
fn parse_name(name: &str, extension: &str) -> Option<(u64, Option<u64>, bool)> {
    if let Some(rest) = name.strip_prefix("part-") {
        let seq = rest.strip_suffix(&format!(".{extension}"))?;
        return Some((seq.parse().ok()?, None, true));
    }
    let rest = name.strip_prefix(".part-")?;
    let (seq, suffix) = rest.split_once('.')?;
    let seq = seq.parse().ok()?;
    let suffix = suffix.strip_prefix(extension)?.strip_prefix('.')?;
    if suffix == "inprogress" {
        return Some((seq, None, false));
    }
    let checkpoint = suffix.strip_prefix("pending-")?.parse().ok()?;
    Some((seq, Some(checkpoint), false))
}

impl Sink for FileSink {
    fn open(&mut self, restored: Option<u64>, next_seq: u64, checkpoints: bool) -> Result<()> {
        self.checkpointed = checkpoints;
        let extension = self.spec.format.extension();
        let entries = std::fs::read_dir(&self.spec.path).map_err(|error| {
            RuntimeError::external(format!("cannot list the sink directory {}: {error}", self.spec.path.display()))
        })?;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((first_seq, checkpoint, committed)) = parse_name(&name, extension) else { continue };
            let path = entry.path();
            match (committed, checkpoint) {
                // Rows the query emits again (it restarted from an older
                // checkpoint than the one that committed them).
                (true, _) if first_seq >= next_seq => std::fs::remove_file(&path)?,
                (true, _) => {}
                // Prepared for a checkpoint the query restarted from (or
                // an earlier one): its commit was cut short.
                (false, Some(checkpoint)) if restored.is_some_and(|restored| checkpoint <= restored) => {
                    rename(&path, &self.committed(first_seq))?;
                }
                // Written after the checkpoint: emitted again.
                (false, _) => std::fs::remove_file(&path)?,
            }
        }
        Ok(())
    }

    fn write(&mut self, seq: u64, batch: &StreamBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let rows = self.file_batch(batch)?;
        if self.current.is_none() {
            self.current = Some(self.open_file(seq)?);
        }
        if let Some(file) = &mut self.current {
            file.writer.write(&rows)?;
            file.rows += rows.num_rows() as u64;
        }
        update(&self.report, |report| report.rows_written += rows.num_rows() as u64);
        if self.current.as_ref().is_some_and(|file| self.due(file)) {
            self.roll()?;
        }
        Ok(())
    }

    fn prepare(&mut self, id: u64) -> Result<()> {
        self.checkpointed = true;
        self.roll()?;
        for (first_seq, rows) in std::mem::take(&mut self.closed) {
            rename(&self.in_progress(first_seq), &self.pending_path(first_seq, id))?;
            self.pending.push((id, first_seq, rows));
        }
        // The renames are durable with the directory.
        File::open(&self.spec.path)?.sync_all()?;
        Ok(())
    }

    fn commit(&mut self, id: u64) -> Result<()> {
        let (due, later): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.pending).into_iter().partition(|file| file.0 <= id);
        self.pending = later;
        for (checkpoint, first_seq, rows) in due {
            rename(&self.pending_path(first_seq, checkpoint), &self.committed(first_seq))?;
            update(&self.report, |report| {
                report.rows_committed += rows;
                report.commits += 1;
            });
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.checkpointed = false;
        self.roll()?;
        for (checkpoint, first_seq, rows) in std::mem::take(&mut self.pending) {
            rename(&self.pending_path(first_seq, checkpoint), &self.committed(first_seq))?;
            update(&self.report, |report| {
                report.rows_committed += rows;
                report.commits += 1;
            });
        }
        File::open(&self.spec.path)?.sync_all()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::Int64Array;

    use super::*;
    use crate::message::Op;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]))
    }

    fn rows(values: &[i64]) -> StreamBatch {
        StreamBatch::inserts(RecordBatch::try_new(schema(), vec![Arc::new(Int64Array::from(values.to_vec()))]).unwrap())
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|entry| entry.unwrap().file_name().to_string_lossy().into()).collect();
        names.sort();
        names
    }

    fn sink(dir: &Path, format: FileFormat, append_only: bool) -> FileSink {
        let spec = FileSinkSpec { path: dir.to_path_buf(), format, rollover_rows: Some(3), rollover: None };
        FileSink::new(spec, schema(), append_only, SharedSinkReport::default()).unwrap()
    }

    #[test]
    fn files_become_visible_when_their_checkpoint_is_durable() {
        let dir = std::env::temp_dir().join(format!("sluice-file-sink-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut sink = sink(&dir, FileFormat::Jsonl, true);
        sink.open(None, 0, true).unwrap();
        sink.write(0, &rows(&[1, 2])).unwrap();
        sink.prepare(1).unwrap();
        assert_eq!(listing(&dir), [".part-00000000000000000000.jsonl.pending-1"]);
        sink.write(2, &rows(&[3, 4, 5])).unwrap(); // rolls over at 3 rows
        sink.write(5, &rows(&[6])).unwrap();
        sink.commit(1).unwrap();
        assert_eq!(
            listing(&dir),
            [
                ".part-00000000000000000002.jsonl.inprogress",
                ".part-00000000000000000005.jsonl.inprogress",
                "part-00000000000000000000.jsonl"
            ]
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("part-00000000000000000000.jsonl")).unwrap(),
            "{\"n\":1}\n{\"n\":2}\n"
        );
        sink.prepare(2).unwrap();
        // A crash here: the restarted query restores checkpoint 2, whose
        // prepared files are committed; restoring 1 would discard them.
        let mut restarted = self::sink(&dir, FileFormat::Jsonl, true);
        restarted.open(Some(2), 6, true).unwrap();
        assert_eq!(
            listing(&dir),
            ["part-00000000000000000000.jsonl", "part-00000000000000000002.jsonl", "part-00000000000000000005.jsonl"]
        );
        let mut older = self::sink(&dir, FileFormat::Jsonl, true);
        older.open(Some(1), 2, true).unwrap();
        assert_eq!(listing(&dir), ["part-00000000000000000000.jsonl"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn updating_results_carry_their_ops_in_csv() {
        let dir = std::env::temp_dir().join(format!("sluice-file-sink-csv-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut sink = sink(&dir, FileFormat::Csv, false);
        sink.open(None, 0, true).unwrap();
        let mut batch = rows(&[1, 1]);
        batch.ops = Some(vec![Op::Delete, Op::Insert]);
        sink.write(0, &batch).unwrap();
        sink.finish().unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("part-00000000000000000000.csv")).unwrap(), "_op,n\n-,1\n+,1\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn names_parse_back() {
        assert_eq!(parse_name("part-00000000000000000012.csv", "csv"), Some((12, None, true)));
        assert_eq!(parse_name(".part-00000000000000000012.csv.pending-7", "csv"), Some((12, Some(7), false)));
        assert_eq!(parse_name(".part-00000000000000000012.csv.inprogress", "csv"), Some((12, None, false)));
        assert_eq!(parse_name("other.csv", "csv"), None);
    }
}
