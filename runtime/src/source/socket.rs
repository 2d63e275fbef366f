//! The `socket` connector, like Spark's `socketTextStream`: Sluice connects
//! as a client to `host:port` and reads lines. A refused or dropped
//! connection is retried with exponential backoff (100 ms doubling to 5 s);
//! the stream's status says what is happening. Socket input is not
//! replayable: records that arrive while no query reads them are lost.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::TcpStream;

use super::{RecordDecoder, SourceContext, SourceStatus};

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Lines decoded together at most; smaller chunks go out as soon as the
/// socket has nothing more buffered.
const MAX_CHUNK: usize = 4096;
/// The longest record line taken; a longer one is counted as malformed and
/// skipped to its end, never held whole in memory.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

pub async fn run(host: &str, port: u16, decoder: RecordDecoder, status: &SourceStatus, context: SourceContext) {
    let address = format!("{host}:{port}");
    let mut backoff = FIRST_BACKOFF;
    loop {
        status.set(format!("connecting to {address}"));
        match TcpStream::connect(&address).await {
            Ok(stream) => {
                status.set(format!("connected to {address}"));
                backoff = FIRST_BACKOFF;
                let problem = match read_lines(stream, &decoder, &context).await {
                    Ok(true) => "connection closed by peer".to_string(),
                    Ok(false) => return,
                    Err(error) => error.to_string(),
                };
                status.set(format!("disconnected from {address} ({problem}); reconnecting in {backoff:?}"));
            }
            Err(error) => {
                status.set(format!("cannot connect to {address} ({error}); retrying in {backoff:?}"));
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Reads until the peer closes (`Ok(true)`) or the query is gone (`Ok(false)`).
async fn read_lines(stream: TcpStream, decoder: &RecordDecoder, context: &SourceContext) -> std::io::Result<bool> {
    let mut reader = BufReader::new(stream);
    let mut chunk = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = (&mut reader).take(MAX_LINE_BYTES as u64 + 1).read_until(b'\n', &mut line).await?;
        if read == 0 {
            if !chunk.is_empty() && !context.send_lines(decoder, &chunk, 0).await {
                return Ok(false);
            }
            return Ok(true);
        }
        if line.len() > MAX_LINE_BYTES && line.last() != Some(&b'\n') {
            // Too long: skip to its end in bounded reads.
            let mut skipped = line.len();
            loop {
                line.clear();
                let read = (&mut reader).take(64 * 1024).read_until(b'\n', &mut line).await?;
                skipped += read;
                if read == 0 || line.last() == Some(&b'\n') {
                    break;
                }
            }
            let problem = format!("a line of {skipped} bytes, longer than the {MAX_LINE_BYTES} taken, was skipped");
            context.metrics.record_malformed(1, Some(problem));
            continue;
        }
        let text = String::from_utf8_lossy(&line);
        chunk.push(text.trim_end_matches(['\n', '\r']).to_string());
        if (reader.buffer().is_empty() || chunk.len() >= MAX_CHUNK) && !chunk.is_empty() {
            if !context.send_lines(decoder, &chunk, 0).await {
                return Ok(false);
            }
            chunk.clear();
        }
    }
}
