//! The `file` connector: a bounded CSV, JSON-lines or text file.
//!
//! # Algorithm
//!
//! ```text
//!   read 1 MB blocks ──► cut runs of `batch_rows` whole lines ──► decode on the
//!   (blocking pool)       (memchr over the block)                  blocking pool,
//!                                                                  up to DEPTH at once
//!                         ◄── the oldest decode is awaited and sent first ──┘
//! ```
//!
//! Cutting is sequential and cheap (a SIMD newline search); decoding, the
//! expensive part, runs on several cores at once. Decodes wait in a FIFO in
//! file order and only the oldest is ever sent, so the query sees exactly
//! the chunks, in exactly the order, that a one-at-a-time reader would
//! send. CSV and JSON chunks go to arrow's decoders as they are, so no
//! per-line allocation is made on the fast path. Results never depend on
//! `batch_rows`: lateness and decoding are decided row by row.
//!
//! Positions are byte offsets after each chunk; a recovering source first
//! cuts its chunks at the logged `boundaries`, so a replay sees the very
//! chunks the input log recorded.

use std::collections::VecDeque;
use std::io::{Read, Seek};
use std::path::Path;
use std::sync::Arc;

use tokio::task::JoinHandle;

use super::{Chunk, Format, RecordDecoder, SourceContext, decode_chunk};

/// Bytes read from the file at a time.
const BLOCK: usize = 1 << 20;

/// A chunk being decoded, and the position after it.
type Pending = (JoinHandle<Chunk>, u64);

pub async fn run(path: &Path, decoder: RecordDecoder, batch_rows: usize, context: SourceContext) {
    let file = match open(path, context.resume.position).await {
        Ok(file) => file,
        Err(message) => return context.fail(message).await,
    };
    let mut cutter = Cutter::new(&decoder, batch_rows, &context);
    let decoder = Arc::new(decoder);
    let depth = decode_depth();
    let mut pending: VecDeque<Pending> = VecDeque::with_capacity(depth);
    let mut file = Some(file);
    loop {
        while let Some((bytes, position)) = cutter.next_chunk() {
            if pending.len() >= depth && !send_oldest(&mut pending, &context).await {
                return;
            }
            let decoder = decoder.clone();
            pending.push_back((tokio::task::spawn_blocking(move || decode_chunk(&decoder, &bytes)), position));
        }
        // At the end of the file every byte read has been cut.
        if cutter.ended {
            break;
        }
        let Some(reading) = file.take() else { break };
        match read_block(reading, std::mem::take(&mut cutter.buffer)).await {
            Ok((reading, buffer, read)) => {
                cutter.buffer = buffer;
                cutter.ended = read == 0;
                file = Some(reading);
            }
            Err(error) => return context.fail(format!("cannot read {}: {error}", path.display())).await,
        }
    }
    while !pending.is_empty() {
        if !send_oldest(&mut pending, &context).await {
            return;
        }
    }
    context.end().await;
}

/// Decodes in flight at most: one per core, and one more so that a core
/// that finishes finds the next chunk already cut.
fn decode_depth() -> usize {
    std::thread::available_parallelism().map_or(2, |cores| cores.get()).clamp(1, 8) + 1
}

/// Waits for the oldest decode and sends it; `false` once the query is gone
/// (or, after reporting it, when the decode itself failed).
async fn send_oldest(pending: &mut VecDeque<Pending>, context: &SourceContext) -> bool {
    let Some((decoding, position)) = pending.pop_front() else { return true };
    match decoding.await {
        Ok((rows, malformed)) => context.send_chunk(rows, malformed, position).await,
        Err(error) => {
            context.fail(format!("decoding failed: {error}")).await;
            false
        }
    }
}

async fn open(path: &Path, offset: u64) -> Result<std::fs::File, String> {
    let display = path.display().to_string();
    let path = path.to_path_buf();
    let opened = tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&path).map_err(|error| format!("cannot open {display}: {error}"))?;
        if offset > 0 {
            file.seek(std::io::SeekFrom::Start(offset))
                .map_err(|error| format!("cannot seek in {display}: {error}"))?;
        }
        Ok(file)
    })
    .await;
    opened.map_err(|error| error.to_string())?
}

/// Appends up to [`BLOCK`] bytes of `file` to `buffer`, on the blocking
/// pool; gives both back with the number of bytes read (0 at the end).
async fn read_block(mut file: std::fs::File, mut buffer: Vec<u8>) -> std::io::Result<(std::fs::File, Vec<u8>, usize)> {
    let read = tokio::task::spawn_blocking(move || {
        buffer.reserve(BLOCK);
        let read = (&mut file).take(BLOCK as u64).read_to_end(&mut buffer)?;
        Ok((file, buffer, read))
    })
    .await;
    read.map_err(std::io::Error::other)?
}

/// Cuts the bytes read so far into chunks of whole lines.
struct Cutter {
    /// Bytes read and not yet cut, starting at file offset `offset`.
    buffer: Vec<u8>,
    offset: u64,
    /// Where the chunk being cut starts in `buffer`.
    start: usize,
    /// Chunk ends a replay asks for (file offsets), before `batch_rows` applies.
    boundaries: VecDeque<u64>,
    skip_header: bool,
    batch_rows: usize,
    /// The file has no more bytes.
    ended: bool,
}

impl Cutter {
    fn new(decoder: &RecordDecoder, batch_rows: usize, context: &SourceContext) -> Self {
        let offset = context.resume.position;
        Self {
            buffer: Vec::with_capacity(BLOCK),
            offset,
            start: 0,
            boundaries: context.resume.boundaries.clone(),
            // Positions are byte offsets; a resumed read starts past the header.
            skip_header: offset == 0 && matches!(decoder.format(), Format::Csv { header: true, .. }),
            batch_rows: batch_rows.max(1),
            ended: false,
        }
    }

    /// Everything read has been cut and the file has no more.
    fn finished(&self) -> bool {
        self.ended && self.start >= self.buffer.len()
    }

    /// The next chunk and the file offset after it; `None` when more bytes
    /// must be read first (or there are none). Bytes already cut are
    /// dropped from the buffer then.
    fn next_chunk(&mut self) -> Option<(Vec<u8>, u64)> {
        loop {
            if self.skip_header && !self.skip_header_line() {
                return self.compact();
            }
            let Some(end) = self.chunk_end() else { return self.compact() };
            let start = std::mem::replace(&mut self.start, end);
            if end > start {
                return Some((self.buffer[start..end].to_vec(), self.offset + end as u64));
            }
            if self.finished() {
                return self.compact();
            }
        }
    }

    /// Moves past the CSV header line; `false` if it is not all read yet.
    fn skip_header_line(&mut self) -> bool {
        match memchr::memchr(b'\n', &self.buffer[self.start..]) {
            Some(newline) => self.start += newline + 1,
            None if self.ended => self.start = self.buffer.len(),
            None => return false,
        }
        self.skip_header = false;
        true
    }

    /// Where the chunk from `start` ends: at the next boundary a replay asks
    /// for, else after `batch_rows` lines, else (at the end of the file)
    /// at the end of the buffer.
    fn chunk_end(&mut self) -> Option<usize> {
        let end = match self.boundaries.front() {
            Some(boundary) => {
                let end = boundary.saturating_sub(self.offset) as usize;
                if end > self.buffer.len() && !self.ended {
                    return None;
                }
                self.boundaries.pop_front();
                Some(end.clamp(self.start, self.buffer.len()))
            }
            None => line_end(&self.buffer, self.start, self.batch_rows),
        };
        match end {
            Some(end) => Some(end),
            None if self.ended && self.start < self.buffer.len() => Some(self.buffer.len()),
            None => None,
        }
    }

    /// Drops the bytes already cut; always `None` (for `next_chunk`).
    fn compact(&mut self) -> Option<(Vec<u8>, u64)> {
        self.buffer.drain(..self.start);
        self.offset += self.start as u64;
        self.start = 0;
        None
    }
}

/// The end of the `lines`-th line from `start`, if the buffer holds it.
/// Whole blocks that hold too few newlines are counted (a vectorised loop)
/// and skipped; memchr finds the newline in the last one.
fn line_end(buffer: &[u8], start: usize, lines: usize) -> Option<usize> {
    const COUNTED: usize = 4096;
    let mut from = start;
    let mut needed = lines.checked_sub(1)?;
    while let Some(block) = buffer.get(from..from + COUNTED) {
        let newlines = count_newlines(block);
        if newlines > needed {
            break;
        }
        needed -= newlines;
        from += COUNTED;
    }
    let newline = memchr::memchr_iter(b'\n', &buffer[from..]).nth(needed)?;
    Some(from + newline + 1)
}

/// Newlines in `bytes`, counted in runs of at most 255 bytes in a `u8`,
/// which the compiler vectorises (8x faster than `filter().count()`).
fn count_newlines(bytes: &[u8]) -> usize {
    let run_count = |run: &[u8]| run.iter().fold(0u8, |count, byte| count + u8::from(*byte == b'\n'));
    bytes.chunks(255).map(|run| usize::from(run_count(run))).sum()
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::RecordBatch;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use tokio::sync::mpsc;

    use super::*;
    use crate::metrics::QueryMetrics;
    use crate::source::{Resume, SourceEvent};

    fn decoder(format: Format) -> RecordDecoder {
        let schema =
            Schema::new(vec![Field::new("id", DataType::Int64, true), Field::new("name", DataType::Utf8, true)]);
        RecordDecoder::new(Arc::new(schema), format)
    }

    /// The rows, malformed counts and positions the source sends, in order.
    async fn read(path: &Path, format: Format, batch_rows: usize, resume: Resume) -> Vec<(String, u64, u64)> {
        let (events, mut receiver) = mpsc::channel(4);
        let context = SourceContext {
            index: 0,
            events,
            metrics: Arc::new(QueryMetrics::default()),
            cancel: Default::default(),
            resume,
        };
        let path = path.to_path_buf();
        tokio::spawn(async move { run(&path, decoder(format), batch_rows, context).await });
        let mut sent = Vec::new();
        while let Some(event) = receiver.recv().await {
            match event {
                SourceEvent::Rows { rows, position, malformed, .. } => {
                    let rows: Vec<RecordBatch> = rows.into_iter().collect();
                    let text = pretty_format_batches(&rows).unwrap().to_string();
                    sent.push((text, malformed.records, position));
                }
                SourceEvent::End { .. } => break,
                SourceEvent::Failed { message, .. } => panic!("{message}"),
            }
        }
        sent
    }

    fn write(name: &str, text: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("sluice-file-{name}-{}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// All rows sent, as one table, and the malformed records.
    fn all_rows(sent: &[(String, u64, u64)]) -> (Vec<String>, u64) {
        let rows = sent
            .iter()
            .flat_map(|(text, _, _)| text.lines().filter(|line| line.starts_with("| ") && !line.contains(" id ")))
            .map(|line| line.split('|').map(str::trim).collect::<Vec<_>>().join("|"))
            .collect();
        (rows, sent.iter().map(|(_, malformed, _)| malformed).sum())
    }

    #[test]
    fn line_ends_are_found_across_counted_blocks() {
        let text: String = (0..3000).map(|line| format!("{line}\n")).collect();
        let bytes = text.as_bytes();
        let ends: Vec<usize> =
            bytes.iter().enumerate().filter(|(_, byte)| **byte == b'\n').map(|(at, _)| at + 1).collect();
        for (start, lines) in [(0, 1), (0, 2999), (0, 3000), (0, 3001), (5, 1), (100, 1234), (9000, 1)] {
            let first = ends.iter().position(|end| *end > start).unwrap_or(ends.len());
            assert_eq!(line_end(bytes, start, lines), ends.get(first + lines - 1).copied(), "{start} {lines}");
        }
        assert_eq!(line_end(bytes, 0, 0), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn chunks_arrive_in_file_order_whatever_their_size() {
        // Enough chunks to keep several decodes in flight, a bad record and
        // a blank line among them, and no newline at the end.
        let mut text = String::from("id,name\n");
        for id in 0..5000 {
            match id {
                1234 => text.push_str("oops,x,y\n"),
                2345 => text.push('\n'),
                _ => text.push_str(&format!("{id},name-{id}\n")),
            }
        }
        text.push_str("5000,last");
        let path = write("order.csv", &text);
        let format = Format::Csv { delimiter: ',', header: true };
        let whole = read(&path, format.clone(), 100_000, Resume::default()).await;
        assert_eq!(whole.len(), 1);
        let (expected, malformed) = all_rows(&whole);
        assert_eq!((expected.len(), malformed), (4999, 1));
        for batch_rows in [1, 7, 64, 999] {
            let sent = read(&path, format.clone(), batch_rows, Resume::default()).await;
            assert_eq!(all_rows(&sent), (expected.clone(), 1), "batch_rows {batch_rows}");
            let positions: Vec<u64> = sent.iter().map(|(_, _, position)| *position).collect();
            assert!(positions.windows(2).all(|pair| pair[0] < pair[1]), "positions ascend");
            assert_eq!(positions.last(), Some(&(text.len() as u64)));
        }
        let _ = std::fs::remove_file(&path);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replay_cuts_its_chunks_at_the_logged_boundaries() {
        let text: String = (0..3000).map(|id| format!("{{\"id\": {id}, \"name\": \"n{id}\"}}\n")).collect();
        let path = write("replay.jsonl", &text);
        let first = read(&path, Format::Json, 500, Resume::default()).await;
        let positions: Vec<u64> = first.iter().map(|(_, _, position)| *position).collect();
        // Recover from after the second chunk, replaying the next three with
        // a different batch size: the same chunks come back, then the rest.
        let resume = Resume { position: positions[1], boundaries: positions[2..5].iter().copied().collect() };
        let replayed = read(&path, Format::Json, 77, resume).await;
        assert_eq!(&replayed[..3], &first[2..5]);
        assert_eq!(all_rows(&replayed).0, all_rows(&first[2..]).0);
        let _ = std::fs::remove_file(&path);
    }
}
