//! The `file` connector: a bounded CSV, JSON-lines or text file.

use std::path::Path;

use tokio::io::{AsyncBufReadExt, BufReader};

use super::{Format, RecordDecoder, SourceContext};

pub async fn run(path: &Path, decoder: RecordDecoder, batch_rows: usize, context: SourceContext) {
    let file = match tokio::fs::File::open(path).await {
        Ok(file) => file,
        Err(error) => {
            context.fail(format!("cannot open {}: {error}", path.display())).await;
            return;
        }
    };
    let mut lines = BufReader::new(file).lines();
    let mut skip_header = matches!(decoder.format(), Format::Csv { header: true, .. });
    let mut chunk = Vec::with_capacity(batch_rows);
    loop {
        match lines.next_line().await {
            Ok(Some(line)) => {
                if std::mem::take(&mut skip_header) {
                    continue;
                }
                chunk.push(line);
                if chunk.len() >= batch_rows.max(1) {
                    if !context.send_lines(&decoder, &chunk).await {
                        return;
                    }
                    chunk.clear();
                }
            }
            Ok(None) => break,
            Err(error) => {
                context.fail(format!("cannot read {}: {error}", path.display())).await;
                return;
            }
        }
    }
    if !chunk.is_empty() && !context.send_lines(&decoder, &chunk).await {
        return;
    }
    context.end().await;
}
