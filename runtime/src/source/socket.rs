//! The `socket` connector, like Spark's `socketTextStream`: Sluice connects
//! as a client to `host:port` and reads lines. A refused or dropped
//! connection is retried with exponential backoff (100 ms doubling to 5 s);
//! the stream's status says what is happening. Socket input is not
//! replayable: records that arrive while no query reads them are lost.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;

use super::{RecordDecoder, SourceContext, SourceStatus};

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Lines decoded together at most; smaller chunks go out as soon as the
/// socket has nothing more buffered.
const MAX_CHUNK: usize = 4096;

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
    let mut line = String::new();
    loop {
        line.clear();
        let read = reader.read_line(&mut line).await?;
        if read == 0 {
            if !chunk.is_empty() && !context.send_lines(decoder, &chunk, 0).await {
                return Ok(false);
            }
            return Ok(true);
        }
        chunk.push(line.trim_end_matches(['\n', '\r']).to_string());
        if (reader.buffer().is_empty() || chunk.len() >= MAX_CHUNK) && !chunk.is_empty() {
            if !context.send_lines(decoder, &chunk, 0).await {
                return Ok(false);
            }
            chunk.clear();
        }
    }
}
