//! The `file` connector: a bounded CSV, JSON-lines or text file.
//!
//! The file is read in large blocks; each run of `batch_rows` whole lines
//! is decoded as one chunk of text (CSV and JSON chunks go to arrow's
//! decoders as they are), so no per-line allocation is made on the fast
//! path. Results never depend on `batch_rows`: lateness and decoding are
//! decided row by row.

use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{Format, RecordDecoder, SourceContext};

/// Bytes read from the file at a time.
const BLOCK: usize = 1 << 20;

pub async fn run(path: &Path, decoder: RecordDecoder, batch_rows: usize, context: SourceContext) {
    let mut file = match tokio::fs::File::open(path).await {
        Ok(file) => file,
        Err(error) => {
            context.fail(format!("cannot open {}: {error}", path.display())).await;
            return;
        }
    };
    let mut offset = context.resume.position;
    let mut boundaries = context.resume.boundaries.clone();
    if offset > 0
        && let Err(error) = file.seek(std::io::SeekFrom::Start(offset)).await
    {
        context.fail(format!("cannot seek in {}: {error}", path.display())).await;
        return;
    }
    // Positions are byte offsets; a resumed read starts past the header.
    let mut skip_header = offset == 0 && matches!(decoder.format(), Format::Csv { header: true, .. });
    let batch_rows = batch_rows.max(1);
    let mut buffer: Vec<u8> = Vec::with_capacity(BLOCK);
    let mut ended = false;
    loop {
        if !ended {
            let before = buffer.len();
            buffer.reserve(BLOCK);
            match (&mut file).take(BLOCK as u64).read_to_end(&mut buffer).await {
                Ok(_) => ended = buffer.len() == before,
                Err(error) => {
                    context.fail(format!("cannot read {}: {error}", path.display())).await;
                    return;
                }
            }
        }
        let mut start = 0;
        loop {
            if std::mem::take(&mut skip_header) {
                match buffer[start..].iter().position(|byte| *byte == b'\n') {
                    Some(newline) => start += newline + 1,
                    None if ended => start = buffer.len(),
                    None => {
                        skip_header = true;
                        break;
                    }
                }
            }
            // The end of the `batch_rows`-th line from `start`, or the next
            // boundary a replay asks for.
            let end = match boundaries.front() {
                Some(boundary) => {
                    let end = boundary.saturating_sub(offset) as usize;
                    if end > buffer.len() && !ended {
                        break;
                    }
                    boundaries.pop_front();
                    Some(end.clamp(start, buffer.len()))
                }
                None => line_end(&buffer, start, batch_rows),
            };
            let end = match end {
                Some(end) => end,
                None if ended && start < buffer.len() => buffer.len(),
                None => break,
            };
            if end > start {
                let text = String::from_utf8_lossy(&buffer[start..end]);
                if !context.send_text(&decoder, &text, offset + end as u64).await {
                    return;
                }
            }
            start = end;
            if start >= buffer.len() && ended {
                break;
            }
        }
        buffer.drain(..start);
        offset += start as u64;
        if ended && buffer.is_empty() {
            break;
        }
    }
    context.end().await;
}

/// The end of the `lines`-th line from `start`, if the buffer holds it.
fn line_end(buffer: &[u8], start: usize, lines: usize) -> Option<usize> {
    let mut seen = 0;
    for (offset, byte) in buffer[start..].iter().enumerate() {
        if *byte == b'\n' {
            seen += 1;
            if seen == lines {
                return Some(start + offset + 1);
            }
        }
    }
    None
}
