//! The `file` connector: a bounded CSV, JSON-lines or text file.
//!
//! The file is read in large blocks; each run of `batch_rows` whole lines
//! is decoded as one chunk of text (CSV and JSON chunks go to arrow's
//! decoders as they are), so no per-line allocation is made on the fast
//! path. Results never depend on `batch_rows`: lateness and decoding are
//! decided row by row.

use std::path::Path;

use tokio::io::AsyncReadExt;

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
    let mut skip_header = matches!(decoder.format(), Format::Csv { header: true, .. });
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
            // The end of the `batch_rows`-th line from `start`.
            let mut lines = 0;
            let mut end = None;
            for (offset, byte) in buffer[start..].iter().enumerate() {
                if *byte == b'\n' {
                    lines += 1;
                    if lines == batch_rows {
                        end = Some(start + offset + 1);
                        break;
                    }
                }
            }
            let end = match end {
                Some(end) => end,
                None if ended && start < buffer.len() => buffer.len(),
                None => break,
            };
            let text = String::from_utf8_lossy(&buffer[start..end]);
            if !context.send_text(&decoder, &text).await {
                return;
            }
            start = end;
        }
        buffer.drain(..start);
        if ended && buffer.is_empty() {
            break;
        }
    }
    context.end().await;
}
