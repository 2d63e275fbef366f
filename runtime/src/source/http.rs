//! The `http` connector: events POSTed to `/v1/streams/{name}/events` reach
//! every query reading the stream at that moment.
//!
//! With an event log (a server with a data directory), each POST is first
//! appended to the stream's log file as one record, and only then delivered
//! and acknowledged. A record's position is the log's length after it. A
//! query recovering from a checkpoint reads the log from its checkpointed
//! position to the end, then continues with live records, skipping those it
//! already read from the file — so events acknowledged before a crash are
//! neither lost nor read twice.
//!
//! Log record: `u32` length, `u32` CRC-32 of the payload, payload (the JSON
//! lines joined by `\n`), little-endian. A torn record at the end (a crash
//! in the middle of an append, never acknowledged) is cut off when the log
//! is opened.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use std::time::Duration;

use tokio::sync::mpsc;

use super::{RecordDecoder, SourceContext};

/// Posts a reading query may have queued before a POST waits or is
/// refused.
pub const QUEUE: usize = 64;

/// Why a post was not taken.
#[derive(Debug)]
pub enum PublishError {
    /// The event log could not be written.
    Io(std::io::Error),
    /// A query reading the stream is `queue` posts behind.
    Behind { queue: usize },
}

/// One POST's lines and the stream position after them.
#[derive(Debug, Clone)]
pub(crate) struct Posted {
    lines: Arc<Vec<String>>,
    position: u64,
}

#[derive(Debug)]
struct EventLog {
    file: std::fs::File,
    length: u64,
}

/// The fan-out point of one `http` stream.
#[derive(Debug, Default)]
pub struct HttpIngest {
    readers: Mutex<Vec<mpsc::Sender<Posted>>>,
    /// Held across append and delivery, so readers get records in log order.
    log: tokio::sync::Mutex<Option<EventLog>>,
    log_path: OnceLock<PathBuf>,
    /// Records posted, the position of a stream without a log.
    posted: std::sync::atomic::AtomicU64,
    /// The log's length after its last whole record: where a query
    /// starting now reads from. Kept apart from `log` so that taking it
    /// never waits for, nor guesses around, a POST holding the log.
    log_end: std::sync::atomic::AtomicU64,
}

impl HttpIngest {
    /// Keeps every event posted from now on in the log file `path`
    /// (created if missing; a torn last record is cut off).
    pub fn open_log(&self, path: &Path) -> std::io::Result<()> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut file = std::fs::OpenOptions::new().read(true).append(true).create(true).open(path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let length = records(&bytes, 0).last().map_or(0, |(_, end)| end);
        if length < bytes.len() as u64 {
            file.set_len(length)?;
        }
        file.seek(SeekFrom::End(0))?;
        let mut log = self.log.try_lock().map_err(std::io::Error::other)?;
        *log = Some(EventLog { file, length });
        self.log_end.store(length, std::sync::atomic::Ordering::SeqCst);
        let _ = self.log_path.set(path.to_path_buf());
        Ok(())
    }

    /// The position a query starting now reads from: the end of the log's
    /// last whole record (with a log), else the number of records posted.
    ///
    /// While a POST holds the log this is the end before its record or,
    /// once appended, after it; a query starting at the one before still
    /// gets the record, from the file or live (it registers before reading
    /// the file, and a POST appends before it picks its readers).
    pub fn position(&self) -> u64 {
        match self.log_path.get() {
            Some(_) => self.log_end.load(std::sync::atomic::Ordering::SeqCst),
            None => self.posted.load(std::sync::atomic::Ordering::SeqCst),
        }
    }

    pub(crate) fn register(&self) -> mpsc::Receiver<Posted> {
        let (sender, receiver) = mpsc::channel(QUEUE);
        if let Ok(mut readers) = self.readers.lock() {
            readers.push(sender);
        }
        receiver
    }

    /// Appends JSON lines to the log (if any) and delivers them to every
    /// running reader; returns how many got them. Waits while a reader's
    /// queue is full (back-pressure on the poster).
    pub async fn publish(&self, lines: Vec<String>) -> std::io::Result<usize> {
        match self.publish_within(lines, None).await {
            Ok(delivered) => Ok(delivered),
            Err(PublishError::Io(error)) => Err(error),
            Err(PublishError::Behind { .. }) => Ok(0),
        }
    }

    /// [`publish`](HttpIngest::publish), waiting at most `wait` (`None`:
    /// as long as it takes) for every reader to have room for the post. A
    /// reader still [`QUEUE`] posts behind then refuses it: nothing is
    /// appended or delivered, and the poster is told to retry.
    pub async fn publish_within(&self, lines: Vec<String>, wait: Option<Duration>) -> Result<usize, PublishError> {
        let mut log = self.log.lock().await;
        let readers: Vec<_> = match self.readers.lock() {
            Ok(mut readers) => {
                readers.retain(|reader| !reader.is_closed());
                readers.clone()
            }
            Err(_) => return Ok(0),
        };
        // Room in every reader's queue first, so a refused post is neither
        // logged nor half delivered.
        let mut permits = Vec::with_capacity(readers.len());
        // One deadline for the whole post, however many readers wait.
        let deadline = wait.map(|wait| tokio::time::Instant::now() + wait);
        for reader in &readers {
            let permit = match (wait, deadline) {
                (Some(wait), _) if wait.is_zero() => match reader.try_reserve() {
                    Ok(permit) => Some(permit),
                    Err(mpsc::error::TrySendError::Closed(_)) => None,
                    Err(mpsc::error::TrySendError::Full(_)) => return Err(PublishError::Behind { queue: QUEUE }),
                },
                (Some(_), Some(deadline)) => match tokio::time::timeout_at(deadline, reader.reserve()).await {
                    Ok(permit) => permit.ok(),
                    Err(_) => return Err(PublishError::Behind { queue: QUEUE }),
                },
                _ => reader.reserve().await.ok(),
            };
            permits.extend(permit);
        }
        let position = match log.as_mut() {
            Some(log) => {
                let payload = lines.join("\n");
                let mut record = Vec::with_capacity(payload.len() + 8);
                record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
                record.extend_from_slice(&crate::state::checksum(payload.as_bytes()).to_le_bytes());
                record.extend_from_slice(payload.as_bytes());
                if let Err(error) = log.file.write_all(&record) {
                    // A half-written record would hide every later one.
                    let _ = log.file.set_len(log.length);
                    return Err(PublishError::Io(error));
                }
                log.length += record.len() as u64;
                self.log_end.store(log.length, std::sync::atomic::Ordering::SeqCst);
                log.length
            }
            None => self.posted.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1,
        };
        let posted = Posted { lines: Arc::new(lines), position };
        let mut delivered = permits.len();
        for permit in permits {
            permit.send(posted.clone());
        }
        // A query that registered while this post waited for room started
        // before the append (at the old end of the log): it gets the post
        // live.
        let late: Vec<_> = match self.readers.lock() {
            Ok(current) => current
                .iter()
                .filter(|reader| !readers.iter().any(|known| known.same_channel(reader)))
                .cloned()
                .collect(),
            Err(_) => Vec::new(),
        };
        for reader in late {
            if reader.send(posted.clone()).await.is_ok() {
                delivered += 1;
            }
        }
        drop(log);
        Ok(delivered)
    }

    /// The records after `position` in the log, with their end positions.
    fn logged_since(&self, position: u64) -> std::io::Result<Vec<(Vec<String>, u64)>> {
        let Some(path) = self.log_path.get() else { return Ok(Vec::new()) };
        let mut file = std::fs::File::open(path)?;
        file.seek(SeekFrom::Start(position))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(records(&bytes, position)
            .map(|(payload, end)| (payload.lines().map(str::to_string).collect(), end))
            .collect())
    }
}

/// The whole records in `bytes` (which start at log position `start`): each
/// payload and the position after it. Stops at a torn or corrupt record.
fn records(bytes: &[u8], start: u64) -> impl Iterator<Item = (&str, u64)> {
    let mut offset = 0usize;
    std::iter::from_fn(move || {
        let header = bytes.get(offset..offset + 8)?;
        let length = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
        let crc = u32::from_le_bytes(header[4..].try_into().ok()?);
        let payload = bytes.get(offset + 8..offset + 8 + length)?;
        if crate::state::checksum(payload) != crc {
            return None;
        }
        offset += 8 + length;
        Some((std::str::from_utf8(payload).ok()?, start + offset as u64))
    })
}

/// Reads a stream for one query: first what the log holds after the
/// query's position (a recovering query), then live posts.
pub(crate) async fn run(
    ingest: &HttpIngest,
    mut receiver: mpsc::Receiver<Posted>,
    decoder: RecordDecoder,
    context: SourceContext,
) {
    let mut position = context.resume.position;
    if ingest.log_path.get().is_some() {
        match ingest.logged_since(position) {
            Ok(logged) => {
                for (lines, end) in logged {
                    if !context.send_lines(&decoder, &lines, end).await {
                        return;
                    }
                    position = end;
                }
            }
            Err(error) => {
                context.fail(format!("cannot read the stream's event log: {error}")).await;
                return;
            }
        }
    }
    while let Some(posted) = receiver.recv().await {
        if posted.position <= position && ingest.log_path.get().is_some() {
            continue;
        }
        if !context.send_lines(&decoder, &posted.lines, posted.position).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_log_keeps_posts_and_cuts_a_torn_record() {
        let path = std::env::temp_dir().join(format!("sluice-http-log-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let ingest = HttpIngest::default();
        ingest.open_log(&path).unwrap();
        ingest.publish(vec!["{\"x\":1}".into(), "{\"x\":2}".into()]).await.unwrap();
        let middle = ingest.position();
        ingest.publish(vec!["{\"x\":3}".into()]).await.unwrap();
        let end = ingest.position();
        assert_eq!(ingest.logged_since(0).unwrap().len(), 2);
        assert_eq!(ingest.logged_since(middle).unwrap(), vec![(vec!["{\"x\":3}".to_string()], end)]);
        // A crash in the middle of an append leaves a torn record.
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(&[9, 0, 0, 0, 1]).unwrap();
        let reopened = HttpIngest::default();
        reopened.open_log(&path).unwrap();
        assert_eq!(reopened.position(), end);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), end);
        let _ = std::fs::remove_file(&path);
    }

    #[tokio::test]
    async fn a_post_to_a_reader_a_queue_behind_is_refused_whole_or_waits() {
        let path = std::env::temp_dir().join(format!("sluice-http-log-behind-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let ingest = Arc::new(HttpIngest::default());
        ingest.open_log(&path).unwrap();
        let mut slow = ingest.register();
        let fast = ingest.register();
        drop(fast);
        for n in 0..QUEUE {
            let delivered = ingest.publish_within(vec![format!("{{\"x\":{n}}}")], Some(Duration::ZERO)).await.unwrap();
            assert_eq!(delivered, 1);
        }
        let before = ingest.position();
        let refused = ingest.publish_within(vec!["{\"x\":-1}".into()], Some(Duration::ZERO)).await;
        assert!(matches!(refused, Err(PublishError::Behind { queue: QUEUE })), "{refused:?}");
        let refused = ingest.publish_within(vec!["{\"x\":-1}".into()], Some(Duration::from_millis(50))).await;
        assert!(matches!(refused, Err(PublishError::Behind { .. })));
        // Refused posts are neither logged nor delivered.
        assert_eq!(ingest.position(), before);
        assert_eq!(ingest.logged_since(0).unwrap().len(), QUEUE);
        // A waiting post goes through once the reader takes one.
        let waiting = {
            let ingest = ingest.clone();
            tokio::spawn(async move {
                ingest.publish_within(vec!["{\"x\":64}".into()], Some(Duration::from_secs(10))).await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let first = slow.recv().await.unwrap();
        assert_eq!(first.lines.as_slice(), ["{\"x\":0}"]);
        assert_eq!(waiting.await.unwrap().unwrap(), 1);
        let _ = std::fs::remove_file(&path);
    }

    #[tokio::test]
    async fn a_query_starting_while_a_post_holds_the_log_starts_at_its_end() {
        let path = std::env::temp_dir().join(format!("sluice-http-log-held-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let ingest = HttpIngest::default();
        ingest.open_log(&path).unwrap();
        ingest.publish(vec!["{\"x\":1}".into()]).await.unwrap();
        ingest.publish(vec!["{\"x\":2}".into()]).await.unwrap();
        let end = ingest.position();
        assert!(end > 0);
        // A POST in progress holds the log across append and delivery.
        let held = ingest.log.lock().await;
        assert_eq!(ingest.position(), end, "not the whole history again");
        drop(held);
        assert!(ingest.logged_since(ingest.position()).unwrap().is_empty());
        let _ = std::fs::remove_file(&path);
    }
}
