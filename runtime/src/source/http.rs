//! The `http` connector: events POSTed to `/v1/streams/{name}/events` reach
//! every query reading the stream at that moment.
//!
//! With an event log (a server with a data directory), each POST is first
//! appended to the stream's log as one record, synced as `--fsync` says,
//! and only then delivered and acknowledged. A record's position is the
//! log's length after it. A query recovering from a checkpoint reads the
//! log from its checkpointed position to the end, then continues with live
//! records, skipping those it already read from the file — so events
//! acknowledged before a crash are neither lost nor read twice.
//!
//! The log is a directory of segments, `events-<start>.log`, each named by
//! the position of its first byte; a segment that reaches `segment_bytes`
//! is closed and a new one started. Segments no query can need any more
//! are deleted: each query holds the position its oldest kept checkpoint
//! would read from ([`Hold`]), and a segment wholly before every hold (and
//! before the last `retention_bytes` of the log) goes. A query that is
//! listed but failed keeps its hold, so a restart can still restore it.
//!
//! Log record: `u32` length, `u32` CRC-32 of the payload, payload (the JSON
//! lines joined by `\n`), little-endian. A torn record at the end (a crash
//! in the middle of an append, never acknowledged) is cut off when the log
//! is opened.

use std::collections::VecDeque;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use tokio::sync::mpsc;

use super::{RecordDecoder, SourceContext};
use crate::checkpoint::Fsync;

/// Posts a reading query may have queued before a POST waits or is
/// refused.
pub const QUEUE: usize = 64;

/// A segment is closed once it holds this many bytes (unless the stream
/// says `segment_bytes`).
pub const SEGMENT_BYTES: u64 = 64 << 20;

/// Why a post was not taken.
#[derive(Debug)]
pub enum PublishError {
    /// The event log could not be written or synced.
    Io(std::io::Error),
    /// A query reading the stream is `queue` posts behind.
    Behind { queue: usize },
}

/// How a stream's event log is kept: its `WITH (segment_bytes,
/// retention_bytes)` and the server's `--fsync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOptions {
    pub fsync: Fsync,
    /// A segment is closed at this size.
    pub segment_bytes: u64,
    /// The newest bytes kept even when no query needs them.
    pub retention_bytes: u64,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self { fsync: Fsync::default(), segment_bytes: SEGMENT_BYTES, retention_bytes: 0 }
    }
}

/// One POST's lines and the stream position after them.
#[derive(Debug, Clone)]
pub(crate) struct Posted {
    lines: Arc<Vec<String>>,
    position: u64,
}

#[derive(Debug)]
struct EventLog {
    dir: PathBuf,
    options: LogOptions,
    /// The segment being appended to.
    file: std::fs::File,
    segment_start: u64,
    length: u64,
}

/// A post appended but not yet synced (`--fsync batch`): delivered, in log
/// order, by whichever post's sync covers it.
struct Pending {
    posted: Posted,
    permits: Vec<mpsc::OwnedPermit<Posted>>,
}

/// A position a query may read the log from again (its oldest kept
/// checkpoint's); segments before every hold may be deleted. Released
/// when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct Hold(Arc<AtomicU64>);

impl Hold {
    pub fn set(&self, position: u64) {
        self.0.store(position, Ordering::SeqCst);
    }

    pub fn position(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The fan-out point of one `http` stream.
#[derive(Debug, Default)]
pub struct HttpIngest {
    readers: Mutex<Vec<mpsc::Sender<Posted>>>,
    /// Held across append and, unless a batch sync is pending, delivery,
    /// so readers get records in log order.
    log: tokio::sync::Mutex<Option<EventLog>>,
    log_dir: OnceLock<PathBuf>,
    /// Records posted, the position of a stream without a log.
    posted: AtomicU64,
    /// The log's length after its last whole record: where a query
    /// starting now reads from. Kept apart from `log` so that taking it
    /// never waits for, nor guesses around, a POST holding the log.
    log_end: AtomicU64,
    /// The segment being appended to, for syncs made outside `log`.
    current: Mutex<Option<Arc<std::fs::File>>>,
    /// Held by the one group commit syncing at a time.
    commit: tokio::sync::Mutex<()>,
    pending: Mutex<VecDeque<Pending>>,
    holds: Mutex<Vec<Weak<AtomicU64>>>,
    options: OnceLock<LogOptions>,
    /// Where the segment being appended to starts.
    segment_start: AtomicU64,
    /// Off while a server restores its queries (their holds are not known
    /// yet).
    compaction: AtomicBool,
    /// Why a batch sync failed, if one did: the log cannot be trusted
    /// after that, so posts are refused until a restart (checked under
    /// `log`).
    failed: Mutex<Option<String>>,
    /// How far the log is known to be on disk (with `--fsync never`, or
    /// without a log, not tracked).
    durable: AtomicU64,
    /// The stream's segment size and retention (the log's options but
    /// `fsync`, which is the server's).
    declared: LogOptions,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pending({})", self.posted.position)
    }
}

fn segment_path(dir: &Path, start: u64) -> PathBuf {
    dir.join(format!("events-{start:020}.log"))
}

/// The segments in `dir`, by start position.
fn segments(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut starts: Vec<u64> = std::fs::read_dir(dir)?
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().to_string();
            name.strip_prefix("events-")?.strip_suffix(".log")?.parse().ok()
        })
        .collect();
    starts.sort_unstable();
    Ok(starts)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

impl HttpIngest {
    /// A stream whose log, once opened, closes segments at `segment_bytes`
    /// and keeps at least the newest `retention_bytes`.
    pub fn new(segment_bytes: u64, retention_bytes: u64) -> Self {
        let declared = LogOptions { segment_bytes: segment_bytes.max(1), retention_bytes, ..LogOptions::default() };
        Self { declared, ..Self::default() }
    }

    /// The segment size and retention the stream declared.
    pub fn declared(&self) -> LogOptions {
        self.declared
    }

    /// Keeps every event posted from now on in the log directory `dir`
    /// (created if missing; a torn last record is cut off), synced as
    /// `fsync` says. A log of an older Sluice, one file `events.log` in
    /// `dir`, becomes its first segment.
    pub fn open_log(&self, dir: &Path, fsync: Fsync) -> std::io::Result<()> {
        let options = LogOptions { fsync, ..self.declared };
        std::fs::create_dir_all(dir)?;
        let legacy = dir.join("events.log");
        if legacy.exists() && segments(dir)?.is_empty() {
            std::fs::rename(&legacy, segment_path(dir, 0))?;
        }
        let starts = segments(dir)?;
        let segment_start = starts.last().copied().unwrap_or(0);
        let path = segment_path(dir, segment_start);
        let mut file = std::fs::OpenOptions::new().read(true).append(true).create(true).open(&path)?;
        // Read what the file says it holds (a device, say /dev/full in a
        // test, would read forever).
        let size = file.metadata()?.len();
        let mut bytes = Vec::new();
        (&mut file).take(size).read_to_end(&mut bytes)?;
        let whole = records(&bytes, 0).last().map_or(0, |(_, end)| end);
        if whole < bytes.len() as u64 {
            file.set_len(whole)?;
        }
        file.seek(SeekFrom::End(0))?;
        let length = segment_start + whole;
        let mut log = self.log.try_lock().map_err(std::io::Error::other)?;
        if let Ok(mut current) = self.current.lock() {
            *current = Some(Arc::new(file.try_clone()?));
        }
        *log = Some(EventLog { dir: dir.to_path_buf(), options, file, segment_start, length });
        self.log_end.store(length, Ordering::SeqCst);
        self.durable.store(length, Ordering::SeqCst);
        self.segment_start.store(segment_start, Ordering::SeqCst);
        let _ = self.options.set(options);
        let _ = self.log_dir.set(dir.to_path_buf());
        Ok(())
    }

    /// Lets [`compact`](Self::compact) delete segments: called once every
    /// query that may need them holds its position.
    pub fn allow_compaction(&self) {
        self.compaction.store(true, Ordering::SeqCst);
    }

    /// Holds the log from `position` on for a query (see [`Hold`]).
    pub fn hold(&self, position: u64) -> Hold {
        self.hold_at(Some(position)).0
    }

    /// Holds the log from where a query starting now reads
    /// ([`position`](Self::position)), taken and held at once so that no
    /// compaction comes between; returns the hold and that position.
    pub fn hold_here(&self) -> (Hold, u64) {
        self.hold_at(None)
    }

    fn hold_at(&self, position: Option<u64>) -> (Hold, u64) {
        let mut holds = self.holds.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let position = position.unwrap_or_else(|| self.position());
        let hold = Arc::new(AtomicU64::new(position));
        holds.retain(|hold| hold.strong_count() > 0);
        holds.push(Arc::downgrade(&hold));
        (Hold(hold), position)
    }

    /// Deletes the segments that end before every query's hold and before
    /// the retained tail; returns how many. Never the segment being
    /// appended to.
    pub fn compact(&self) -> std::io::Result<usize> {
        let (Some(dir), Some(options)) = (self.log_dir.get(), self.options.get()) else { return Ok(0) };
        if !self.compaction.load(Ordering::SeqCst) {
            return Ok(0);
        }
        // Held throughout, so a query taking a hold waits for the deletions
        // and then starts after them.
        let mut holds = self.holds.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        holds.retain(|hold| hold.strong_count() > 0);
        let held = holds.iter().filter_map(Weak::upgrade).map(|hold| hold.load(Ordering::SeqCst)).min();
        let end = self.log_end.load(Ordering::SeqCst);
        let current = self.segment_start.load(Ordering::SeqCst);
        let keep_from = held.unwrap_or(end).min(end.saturating_sub(options.retention_bytes));
        let starts = segments(dir)?;
        let mut deleted = 0;
        for pair in starts.windows(2) {
            // A segment ends where the next starts.
            if pair[1] <= keep_from && pair[0] < current {
                std::fs::remove_file(segment_path(dir, pair[0]))?;
                deleted += 1;
            }
        }
        drop(holds);
        if deleted > 0 {
            tracing::debug!("{}: deleted {deleted} event log segments before position {keep_from}", dir.display());
        }
        Ok(deleted)
    }

    /// The position a query starting now reads from: the end of the log's
    /// last whole record (with a log), else the number of records posted.
    ///
    /// While a POST holds the log this is the end before its record or,
    /// once appended, after it; a query starting at the one before still
    /// gets the record, from the file or live (it registers before reading
    /// the file, and a POST appends before it picks its readers).
    pub fn position(&self) -> u64 {
        match self.log_dir.get() {
            Some(_) => self.log_end.load(Ordering::SeqCst),
            None => self.posted.load(Ordering::SeqCst),
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
    ///
    /// Not to be cancelled once it runs (a dropped future after the append
    /// would leave the record logged but undelivered): callers that may be
    /// cancelled, such as HTTP handlers, run it on a task of its own.
    pub async fn publish_within(&self, lines: Vec<String>, wait: Option<Duration>) -> Result<usize, PublishError> {
        let mut log = self.log.lock().await;
        if let Some(failed) = self.failure() {
            return Err(PublishError::Io(std::io::Error::other(failed)));
        }
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
                (Some(wait), _) if wait.is_zero() => match reader.clone().try_reserve_owned() {
                    Ok(permit) => Some(permit),
                    Err(mpsc::error::TrySendError::Closed(_)) => None,
                    Err(mpsc::error::TrySendError::Full(_)) => return Err(PublishError::Behind { queue: QUEUE }),
                },
                (Some(_), Some(deadline)) => {
                    match tokio::time::timeout_at(deadline, reader.clone().reserve_owned()).await {
                        Ok(permit) => permit.ok(),
                        Err(_) => return Err(PublishError::Behind { queue: QUEUE }),
                    }
                }
                _ => reader.clone().reserve_owned().await.ok(),
            };
            permits.extend(permit);
        }
        let (position, fsync) = match log.as_mut() {
            Some(log) => (self.append(log, &lines).map_err(PublishError::Io)?, log.options.fsync),
            None => (self.posted.fetch_add(1, Ordering::SeqCst) + 1, Fsync::Never),
        };
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
            if let Ok(permit) = reader.reserve_owned().await {
                permits.push(permit);
            }
        }
        let delivered = permits.len();
        let posted = Posted { lines: Arc::new(lines), position };
        if fsync != Fsync::Batch {
            // Synced already (always) or never: delivered now, in order.
            for permit in permits {
                permit.send(posted.clone());
            }
            return Ok(delivered);
        }
        if let Ok(mut pending) = self.pending.lock() {
            pending.push_back(Pending { posted, permits });
        }
        drop(log);
        self.commit(position).await.map_err(PublishError::Io)?;
        Ok(delivered)
    }

    /// Appends one record (with `--fsync always`, synced), closing a full
    /// segment; a failed write is cut off, so it hides no later record.
    fn append(&self, log: &mut EventLog, lines: &[String]) -> std::io::Result<u64> {
        let payload = lines.join("\n");
        let mut record = Vec::with_capacity(payload.len() + 8);
        record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        record.extend_from_slice(&crate::state::checksum(payload.as_bytes()).to_le_bytes());
        record.extend_from_slice(payload.as_bytes());
        let written = log.file.write_all(&record).and_then(|()| match log.options.fsync {
            Fsync::Always => log.file.sync_data(),
            _ => Ok(()),
        });
        if let Err(error) = written {
            let _ = log.file.set_len(log.length - log.segment_start);
            return Err(std::io::Error::new(error.kind(), format!("cannot write the stream's event log: {error}")));
        }
        log.length += record.len() as u64;
        self.log_end.store(log.length, Ordering::SeqCst);
        if log.options.fsync == Fsync::Always {
            self.durable.store(log.length, Ordering::SeqCst);
        }
        if log.length - log.segment_start >= log.options.segment_bytes
            && let Err(error) = self.roll(log)
        {
            // The post is logged; the segment grows until a roll works.
            tracing::warn!("{}: cannot start a new event log segment: {error}", log.dir.display());
        }
        Ok(log.length)
    }

    /// Closes the full segment (synced, unless `--fsync never`) and starts
    /// the next at the log's end.
    fn roll(&self, log: &mut EventLog) -> std::io::Result<()> {
        if log.options.fsync != Fsync::Never {
            log.file.sync_data()?;
        }
        let path = segment_path(&log.dir, log.length);
        let file = std::fs::OpenOptions::new().read(true).append(true).create(true).open(&path)?;
        let prepared = file.try_clone().and_then(|clone| match log.options.fsync {
            Fsync::Never => Ok(clone),
            _ => sync_dir(&log.dir).map(|()| clone),
        });
        // A segment left behind empty would be taken for the log's end.
        let clone = match prepared {
            Ok(clone) => clone,
            Err(error) => {
                drop(file);
                let _ = std::fs::remove_file(&path);
                return Err(error);
            }
        };
        if let Ok(mut current) = self.current.lock() {
            *current = Some(Arc::new(clone));
        }
        log.file = file;
        log.segment_start = log.length;
        self.segment_start.store(log.length, Ordering::SeqCst);
        if let Err(error) = self.compact() {
            tracing::warn!("{}: cannot delete old event log segments: {error}", log.dir.display());
        }
        Ok(())
    }

    /// Group commit: makes the log durable at least up to `position` (one
    /// sync covers every post appended before it), then delivers, in log
    /// order, every pending post that sync covered.
    async fn commit(&self, position: u64) -> std::io::Result<()> {
        let _syncing = self.commit.lock().await;
        // Covered by an earlier sync (this one's, or a query's
        // `make_durable`) and so delivered: taken, whatever happened to
        // later ones.
        if self.durable.load(Ordering::SeqCst) < position {
            if let Some(failed) = self.failure() {
                return Err(std::io::Error::other(failed));
            }
            // What is appended by now; the segment read after it holds
            // every byte up to there that a roll has not synced already.
            let end = self.log_end.load(Ordering::SeqCst);
            let file = self.current.lock().ok().and_then(|current| current.clone());
            if let Some(file) = file {
                let synced = tokio::task::spawn_blocking(move || file.sync_data())
                    .await
                    .unwrap_or_else(|error| Err(std::io::Error::other(error)));
                if let Err(error) = synced {
                    let message = format!(
                        "cannot sync the stream's event log ({error}); it takes no more posts until the server restarts"
                    );
                    if let Ok(mut failed) = self.failed.lock() {
                        *failed = Some(message.clone());
                    }
                    if let Ok(mut pending) = self.pending.lock() {
                        pending.clear();
                    }
                    return Err(std::io::Error::other(message));
                }
            }
            self.durable.fetch_max(end, Ordering::SeqCst);
        }
        let durable = self.durable.load(Ordering::SeqCst);
        if let Ok(mut pending) = self.pending.lock() {
            while pending.front().is_some_and(|front| front.posted.position <= durable) {
                if let Some(Pending { posted, permits }) = pending.pop_front() {
                    for permit in permits {
                        permit.send(posted.clone());
                    }
                }
            }
        }
        Ok(())
    }

    fn failure(&self) -> Option<String> {
        self.failed.lock().ok().and_then(|failed| failed.clone())
    }

    /// Makes the log durable up to `position` (at least), syncing it if a
    /// group commit has not yet: a query calls this before it publishes
    /// rows of, or checkpoints, a position, so that neither can run ahead
    /// of what a power loss leaves of the log. Nothing to do with `--fsync
    /// never` or without a log.
    pub fn make_durable(&self, position: u64) -> std::io::Result<()> {
        if self.options.get().is_none_or(|options| options.fsync == Fsync::Never)
            || self.durable.load(Ordering::SeqCst) >= position
        {
            return Ok(());
        }
        // As in `commit`: the end first, then the segment holding it.
        let end = self.log_end.load(Ordering::SeqCst);
        let file = self.current.lock().ok().and_then(|current| current.clone());
        if let Some(file) = file {
            file.sync_data()?;
        }
        self.durable.fetch_max(end, Ordering::SeqCst);
        Ok(())
    }

    /// The records after `position` in the log, with their end positions.
    pub fn logged_since(&self, position: u64) -> std::io::Result<Vec<(Vec<String>, u64)>> {
        let Some(dir) = self.log_dir.get() else { return Ok(Vec::new()) };
        let starts = segments(dir)?;
        let Some(first) = starts.iter().rposition(|start| *start <= position) else {
            return Err(std::io::Error::other(format!(
                "the events from position {position} on were deleted from the log (it starts at {})",
                starts.first().copied().unwrap_or(0)
            )));
        };
        let mut logged = Vec::new();
        for &start in &starts[first..] {
            let mut file = std::fs::File::open(segment_path(dir, start))?;
            let skip = position.saturating_sub(start);
            file.seek(SeekFrom::Start(skip))?;
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)?;
            let from = start + skip;
            logged.extend(
                records(&bytes, from).map(|(payload, end)| (payload.lines().map(str::to_string).collect(), end)),
            );
        }
        Ok(logged)
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
    if ingest.log_dir.get().is_some() {
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
        if posted.position <= position && ingest.log_dir.get().is_some() {
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

    fn log_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sluice-http-log-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn line(n: usize) -> Vec<String> {
        vec![format!("{{\"x\":{n}}}")]
    }

    #[tokio::test]
    async fn the_log_keeps_posts_and_cuts_a_torn_record() {
        let dir = log_dir("torn");
        let ingest = HttpIngest::default();
        ingest.open_log(&dir, Fsync::Batch).unwrap();
        ingest.publish(vec!["{\"x\":1}".into(), "{\"x\":2}".into()]).await.unwrap();
        let middle = ingest.position();
        ingest.publish(vec!["{\"x\":3}".into()]).await.unwrap();
        let end = ingest.position();
        assert_eq!(ingest.logged_since(0).unwrap().len(), 2);
        assert_eq!(ingest.logged_since(middle).unwrap(), vec![(vec!["{\"x\":3}".to_string()], end)]);
        // A crash in the middle of an append leaves a torn record.
        let segment = segment_path(&dir, 0);
        std::fs::OpenOptions::new().append(true).open(&segment).unwrap().write_all(&[9, 0, 0, 0, 1]).unwrap();
        let reopened = HttpIngest::default();
        reopened.open_log(&dir, Fsync::Batch).unwrap();
        assert_eq!(reopened.position(), end);
        assert_eq!(std::fs::metadata(&segment).unwrap().len(), end);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_log_of_an_older_sluice_becomes_the_first_segment() {
        let dir = log_dir("legacy");
        let old = HttpIngest::default();
        old.open_log(&dir, Fsync::Never).unwrap();
        old.publish(line(1)).await.unwrap();
        let end = old.position();
        std::fs::rename(segment_path(&dir, 0), dir.join("events.log")).unwrap();
        let reopened = HttpIngest::default();
        reopened.open_log(&dir, Fsync::Never).unwrap();
        assert_eq!(reopened.position(), end);
        assert_eq!(reopened.logged_since(0).unwrap(), vec![(line(1), end)]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_post_to_a_reader_a_queue_behind_is_refused_whole_or_waits() {
        let dir = log_dir("behind");
        let ingest = Arc::new(HttpIngest::default());
        ingest.open_log(&dir, Fsync::Batch).unwrap();
        let mut slow = ingest.register();
        let fast = ingest.register();
        drop(fast);
        for n in 0..QUEUE {
            let delivered = ingest.publish_within(line(n), Some(Duration::ZERO)).await.unwrap();
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
            tokio::spawn(async move { ingest.publish_within(line(64), Some(Duration::from_secs(10))).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let first = slow.recv().await.unwrap();
        assert_eq!(first.lines.as_slice(), ["{\"x\":0}"]);
        assert_eq!(waiting.await.unwrap().unwrap(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_query_starting_while_a_post_holds_the_log_starts_at_its_end() {
        let dir = log_dir("held");
        let ingest = HttpIngest::default();
        ingest.open_log(&dir, Fsync::Batch).unwrap();
        ingest.publish(line(1)).await.unwrap();
        ingest.publish(line(2)).await.unwrap();
        let end = ingest.position();
        assert!(end > 0);
        // A POST in progress holds the log across append and delivery.
        let held = ingest.log.lock().await;
        assert_eq!(ingest.position(), end, "not the whole history again");
        drop(held);
        assert!(ingest.logged_since(ingest.position()).unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Concurrent posts under each `--fsync`: every one logged once and
    /// delivered in log order (batch: group commits deliver what they
    /// cover, in order).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_fsync_mode_delivers_concurrent_posts_once_in_log_order() {
        for fsync in [Fsync::Always, Fsync::Batch, Fsync::Never] {
            let dir = log_dir(fsync.name());
            let ingest = Arc::new(HttpIngest::new(200, 0));
            ingest.open_log(&dir, fsync).unwrap();
            let mut reader = ingest.register();
            let posts: Vec<_> = (0..40)
                .map(|n| {
                    let ingest = ingest.clone();
                    tokio::spawn(async move { ingest.publish(line(n)).await })
                })
                .collect();
            for post in posts {
                assert_eq!(post.await.unwrap().unwrap(), 1);
            }
            let mut positions = Vec::new();
            let mut seen = Vec::new();
            while let Ok(posted) = reader.try_recv() {
                positions.push(posted.position);
                seen.extend(posted.lines.iter().cloned());
            }
            assert_eq!(seen.len(), 40, "{fsync:?}");
            assert!(positions.windows(2).all(|pair| pair[0] < pair[1]), "{fsync:?}: {positions:?}");
            let logged = ingest.logged_since(0).unwrap();
            assert_eq!(logged.iter().map(|(_, end)| *end).collect::<Vec<_>>(), positions, "{fsync:?}");
            assert!(segments(&dir).unwrap().len() > 1, "200-byte segments roll");
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    #[tokio::test]
    async fn segments_are_deleted_once_no_hold_or_retention_needs_them() {
        let dir = log_dir("compact");
        // Each record is 8 + 7 bytes: two records to a segment.
        let ingest = HttpIngest::new(30, 0);
        ingest.open_log(&dir, Fsync::Batch).unwrap();
        let mut ends = Vec::new();
        for n in 0..9 {
            ingest.publish(line(n)).await.unwrap();
            ends.push(ingest.position());
        }
        assert_eq!(segments(&dir).unwrap(), vec![0, 30, 60, 90, 120]);
        // Nothing goes before the server allows it (queries restoring).
        let hold = ingest.hold(ends[2]);
        assert_eq!(ingest.compact().unwrap(), 0);
        ingest.allow_compaction();
        // Held from the end of the third record (45): the segment starting
        // at 30 still holds what comes after it.
        assert_eq!(ingest.compact().unwrap(), 1);
        assert_eq!(segments(&dir).unwrap(), vec![30, 60, 90, 120]);
        assert_eq!(ingest.logged_since(ends[2]).unwrap().len(), 6);
        let error = ingest.logged_since(0).unwrap_err().to_string();
        assert!(error.contains("were deleted from the log (it starts at 30)"), "{error}");
        // A hold moving on frees more; a released one frees all but the
        // segment being written.
        hold.set(ends[6]);
        assert_eq!(ingest.compact().unwrap(), 2);
        assert_eq!(segments(&dir).unwrap(), vec![90, 120]);
        let (here, position) = ingest.hold_here();
        assert_eq!(position, ends[8]);
        drop(hold);
        assert_eq!(ingest.compact().unwrap(), 1);
        assert_eq!(segments(&dir).unwrap(), vec![120]);
        drop(here);
        // Reopened after compaction, positions go on where they were.
        let reopened = HttpIngest::new(30, 0);
        reopened.open_log(&dir, Fsync::Batch).unwrap();
        assert_eq!(reopened.position(), ends[8]);
        let _ = std::fs::remove_dir_all(&dir);

        // Retention keeps the newest bytes whatever the holds.
        let dir = log_dir("retention");
        let ingest = HttpIngest::new(30, 50);
        ingest.open_log(&dir, Fsync::Never).unwrap();
        ingest.allow_compaction();
        for n in 0..9 {
            ingest.publish(line(n)).await.unwrap();
        }
        // The last 50 bytes start at 135 - 50 = 85: the segment from 60 on
        // is kept.
        assert_eq!(segments(&dir).unwrap(), vec![60, 90, 120]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Writes to /dev/full fail as on a full disk: the post fails with
    /// ENOSPC, nothing is delivered, and the log's end does not move.
    #[tokio::test]
    async fn a_post_to_a_full_disk_fails_and_takes_nothing() {
        let dir = log_dir("full");
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink("/dev/full", segment_path(&dir, 0)).unwrap();
        let ingest = HttpIngest::default();
        ingest.open_log(&dir, Fsync::Batch).unwrap();
        let mut reader = ingest.register();
        let error = match ingest.publish_within(line(1), None).await {
            Err(PublishError::Io(error)) => error,
            other => panic!("expected an I/O error, got {other:?}"),
        };
        assert_eq!(error.kind(), std::io::ErrorKind::StorageFull);
        assert!(error.to_string().contains("cannot write the stream's event log"), "{error}");
        assert_eq!(ingest.position(), 0);
        assert!(reader.try_recv().is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
