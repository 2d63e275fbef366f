//! The `http` connector: events POSTed to `/v1/streams/{name}/events` reach
//! every query reading the stream at that moment.

use std::sync::Mutex;

use tokio::sync::mpsc;

use super::{RecordDecoder, SourceContext};

/// Chunks of JSON lines a reading query may have queued before a POST waits.
const QUEUE: usize = 64;

/// The fan-out point of one `http` stream.
#[derive(Debug, Default)]
pub struct HttpIngest {
    readers: Mutex<Vec<mpsc::Sender<Vec<String>>>>,
}

impl HttpIngest {
    pub(crate) fn register(&self) -> mpsc::Receiver<Vec<String>> {
        let (sender, receiver) = mpsc::channel(QUEUE);
        if let Ok(mut readers) = self.readers.lock() {
            readers.push(sender);
        }
        receiver
    }

    /// Delivers JSON lines to every running reader; returns how many got them.
    /// Waits while a reader's queue is full (back-pressure on the poster).
    pub async fn publish(&self, lines: Vec<String>) -> usize {
        let readers: Vec<_> = match self.readers.lock() {
            Ok(mut readers) => {
                readers.retain(|reader| !reader.is_closed());
                readers.clone()
            }
            Err(_) => return 0,
        };
        let mut delivered = 0;
        for reader in readers {
            if reader.send(lines.clone()).await.is_ok() {
                delivered += 1;
            }
        }
        delivered
    }
}

pub async fn run(mut receiver: mpsc::Receiver<Vec<String>>, decoder: RecordDecoder, context: SourceContext) {
    while let Some(lines) = receiver.recv().await {
        if !context.send_lines(&decoder, &lines).await {
            return;
        }
    }
}
