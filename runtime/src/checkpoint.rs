//! Checkpoints of one query, and the input log that makes recovery exact.
//!
//! # Layout (one directory per query)
//!
//! ```text
//!   checkpoint-00000007/node-0.state ... node-N.state   operator state (Arrow IPC)
//!   checkpoint-00000007/output.state                    next seq + retained rows
//!   checkpoint-00000007/manifest.json                   written last, renamed into place
//!   input-00000007.log                                  what the driver did after checkpoint 7
//! ```
//!
//! # Algorithm
//!
//! A checkpoint is taken between two epochs: the driver sends a barrier
//! through the pipeline, each node's state is taken as the barrier passes
//! it, and once the barrier is out of the root (alignment is trivial on
//! one task: see [`crate::pipeline`]) every file is written and synced,
//! then `manifest.json` (file names, sizes, CRC-32s, source positions,
//! watermark trackers) is written to a temporary name, synced and renamed:
//! a crash at any instant leaves the previous checkpoint whole. The two
//! newest checkpoints are kept, so a damaged newest one (detected by its
//! checksums) falls back to the one before, with a warning.
//!
//! # Incremental checkpoints
//!
//! Blocks of state an operator marks stable (immutable under their name,
//! see [`OperatorState::put_stable`]) are written once: a later checkpoint
//! whose snapshot still holds a block of that name points at the frame the
//! earlier checkpoint wrote (its checkpoint, offset, length and CRC-32 are
//! in the manifest) instead of writing it again, so a checkpoint writes
//! what changed since the last one, not all that is held. A block is
//! rewritten once the checkpoint holding it is [`COMPACT_AFTER`]
//! checkpoints old (compaction: an old checkpoint's directory is kept only
//! while a kept checkpoint points into it, so the files kept stay within
//! a few intervals' worth of changes of the state). Only the newest
//! checkpoints are ever restored from (their input logs are kept); older
//! directories are kept for their blocks.
//!
//! Sources can be rewound (file offsets, generator record numbers, the
//! event log of an `http` stream), but where their batches fall and how
//! the driver interleaves several sources is timing. The driver therefore
//! appends every step it takes to the input log — rows from a source up to
//! a position (with the processing time it stamped them with), a source's
//! end, an idle declaration, a processing-time tick — before publishing the
//! epoch's results. Recovery restores the newest good checkpoint and
//! replays the log's steps in order, asking each source to cut its batches
//! at the logged positions: the rows published before the crash are
//! regenerated with the same `seq`s and contents, and then the query goes
//! on. A socket cannot be rewound: its logged rows are skipped (at-most-once).

use std::collections::{HashMap, VecDeque};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Result, RuntimeError};
use crate::state::{OperatorState, checksum};

/// Bumped when the checkpoint layout changes; other versions are refused.
pub const FORMAT_VERSION: u32 = 2;

const MANIFEST: &str = "manifest.json";

/// Checkpoints kept (the newest and one to fall back to).
const KEPT: usize = 2;

/// Where and how often a query checkpoints.
#[derive(Debug, Clone)]
pub struct CheckpointConfig {
    pub dir: PathBuf,
    pub interval: Duration,
    /// Whether the input log is synced before results are published.
    pub fsync: Fsync,
}

/// How far Sluice's logs (an http stream's event log, a query's input log)
/// are pushed to disk before what they record is acknowledged or
/// published (`--fsync`). Checkpoints are always synced before their
/// manifest commits them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Fsync {
    /// Every POST is synced on its own before it is acknowledged; a query's
    /// input log before each epoch's results are published. Survives power
    /// loss; one disk sync per POST.
    Always,
    /// The same promise, with POSTs that arrive together sharing one sync
    /// (group commit): nothing is acknowledged or delivered before the
    /// sync that covers it.
    #[default]
    Batch,
    /// Written to the operating system before it is acknowledged, never
    /// synced: survives a crash of Sluice (kill -9), not of the machine.
    Never,
}

impl std::str::FromStr for Fsync {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "always" => Ok(Fsync::Always),
            "batch" => Ok(Fsync::Batch),
            "never" => Ok(Fsync::Never),
            _ => Err(format!("--fsync takes always, batch or never, not {text:?}")),
        }
    }
}

impl Fsync {
    pub fn name(self) -> &'static str {
        match self {
            Fsync::Always => "always",
            Fsync::Batch => "batch",
            Fsync::Never => "never",
        }
    }
}

/// A source's place at a checkpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SourceCheckpoint {
    pub position: u64,
    pub max_event_time: Option<i64>,
    pub ended: bool,
    pub idle: bool,
    /// Rows the source delivered so far (a sampled scan numbers its rows).
    #[serde(default)]
    pub rows_seen: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileEntry {
    pub name: String,
    pub bytes: u64,
    pub crc32: u32,
    /// Every stable block of this file's state: written in this
    /// checkpoint's file or in an earlier checkpoint's file of the same name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stable: Vec<StableBlock>,
}

/// Where a stable block of state is: a frame of `checkpoint`'s file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StableBlock {
    pub name: String,
    pub checkpoint: u64,
    pub offset: u64,
    pub bytes: u64,
    pub crc32: u32,
}

/// A stable block is written again (compacted into a new checkpoint) once
/// the checkpoint holding it is this many checkpoints old.
pub const COMPACT_AFTER: u64 = 8;

/// Counters shown to users, carried across a recovery.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Counters {
    pub rows_in: u64,
    pub rows_out: u64,
    pub epochs: u64,
    pub late_rows_dropped: u64,
    pub malformed_records: u64,
    /// The query's output watermark.
    pub watermark: i64,
    /// Rows a shedding query dropped (see [`crate::shed`]).
    #[serde(default)]
    pub rows_shed: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format_version: u32,
    pub id: u64,
    /// Milliseconds since the Unix epoch.
    pub taken_at_ms: u64,
    /// The operator at each plan node: a restored plan must match.
    pub plan: Vec<String>,
    pub sources: Vec<SourceCheckpoint>,
    pub last_clock: i64,
    pub counters: Counters,
    pub files: Vec<FileEntry>,
}

/// One step of the driver, as the input log records it.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Rows of `source` up to `position`, stamped with processing time
    /// `now`, kept at `rate` by a shedding query (see [`crate::shed`]).
    Rows {
        source: usize,
        position: u64,
        now: i64,
        rate: f64,
    },
    End {
        source: usize,
    },
    Idle {
        source: usize,
    },
    /// A processing-time source's watermark observed the clock at `now`.
    Clock {
        source: usize,
        now: i64,
    },
}

impl Step {
    fn line(&self) -> String {
        match self {
            Step::Rows { source, position, now, rate } if *rate >= 1.0 => format!("r {source} {position} {now}\n"),
            // Rust prints the shortest text that reads back as the same f64.
            Step::Rows { source, position, now, rate } => format!("r {source} {position} {now} {rate}\n"),
            Step::End { source } => format!("e {source}\n"),
            Step::Idle { source } => format!("i {source}\n"),
            Step::Clock { source, now } => format!("c {source} {now}\n"),
        }
    }

    fn parse(line: &str) -> Option<Step> {
        let fields: Vec<&str> = line.split(' ').collect();
        let number = |index: usize| fields.get(index)?.parse::<i64>().ok();
        let source = number(1)? as usize;
        Some(match (fields[0], fields.len()) {
            ("r", 4) => Step::Rows { source, position: number(2)? as u64, now: number(3)?, rate: 1.0 },
            ("r", 5) => Step::Rows {
                source,
                position: number(2)? as u64,
                now: number(3)?,
                rate: fields[4].parse::<f64>().ok().filter(|rate| *rate > 0.0 && *rate <= 1.0)?,
            },
            ("e", 2) => Step::End { source },
            ("i", 2) => Step::Idle { source },
            ("c", 3) => Step::Clock { source, now: number(2)? },
            _ => return None,
        })
    }
}

/// What a query resumes from.
#[derive(Debug)]
pub struct Restored {
    pub manifest: Manifest,
    pub nodes: Vec<OperatorState>,
    pub output: OperatorState,
    /// The steps taken after the checkpoint, to replay.
    pub replay: VecDeque<Step>,
    /// Bytes read, and how long reading (with checksums) and decoding took.
    pub bytes: u64,
    pub read_ms: f64,
    pub decode_ms: f64,
}

/// The checkpoints and input log of one query.
pub struct CheckpointStore {
    config: CheckpointConfig,
    next_id: u64,
    log: Option<BufWriter<std::fs::File>>,
    /// Steps written to the log since it was last synced.
    unsynced: bool,
    last: Instant,
    /// The checkpoint its writer thread is writing.
    writing: Option<Writing>,
    /// The newest checkpoint known durable: its stable blocks are reused.
    durable: Option<Manifest>,
}

/// A checkpoint being written on its own thread.
struct Writing {
    started: Instant,
    thread: std::thread::JoinHandle<Result<(Manifest, WrittenBytes)>>,
}

/// Bytes a checkpoint wrote, and bytes of stable blocks it pointed at
/// instead.
#[derive(Debug, Clone, Copy, Default)]
pub struct WrittenBytes {
    pub written: u64,
    pub reused: u64,
}

/// A checkpoint whose files and manifest are durable.
#[derive(Debug)]
pub struct Written {
    pub manifest: Manifest,
    pub bytes: u64,
    /// Bytes of unchanged stable blocks an earlier checkpoint holds.
    pub reused_bytes: u64,
    /// From handing the snapshot over to the manifest's rename.
    pub write_ms: f64,
}

fn checkpoint_dir(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("checkpoint-{id:08}"))
}

fn log_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("input-{id:08}.log"))
}

/// Ids of the entries of `dir` named `{prefix}{id}{suffix}`, ascending.
fn ids(dir: &Path, prefix: &str, suffix: &str) -> Vec<u64> {
    let mut ids: Vec<u64> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().to_string();
            name.strip_prefix(prefix)?.strip_suffix(suffix)?.parse().ok()
        })
        .collect();
    ids.sort_unstable();
    ids
}

fn io_error(action: &str, path: &Path, error: std::io::Error) -> RuntimeError {
    RuntimeError::external(format!("cannot {action} {}: {error}", path.display()))
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = std::fs::File::create(path).map_err(|error| io_error("create", path, error))?;
    file.write_all(bytes).map_err(|error| io_error("write", path, error))?;
    file.sync_all().map_err(|error| io_error("sync", path, error))
}

fn sync_dir(dir: &Path) {
    if let Ok(directory) = std::fs::File::open(dir) {
        let _ = directory.sync_all();
    }
}

impl CheckpointStore {
    pub fn new(config: CheckpointConfig) -> Result<Self> {
        std::fs::create_dir_all(&config.dir).map_err(|error| io_error("create", &config.dir, error))?;
        let next_id = ids(&config.dir, "checkpoint-", "").last().map_or(0, |id| id + 1);
        Ok(Self { config, next_id, log: None, unsynced: false, last: Instant::now(), writing: None, durable: None })
    }

    /// The id the next checkpoint [`write`](Self::write) gives (the
    /// checkpoint barrier's id).
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Time for the next checkpoint. (One still being written then is
    /// waited for: checkpoints are never skipped, so a crash replays at most
    /// an interval's steps, as with checkpoints written in line.)
    pub fn due(&self) -> bool {
        self.last.elapsed() >= self.config.interval
    }

    /// The newest checkpoint whose files are whole, with the steps logged
    /// after it; `None` for a query that never checkpointed. Also warnings
    /// for damaged checkpoints skipped. A plan or a
    /// format that does not match is an error, not a silent restart.
    pub fn load(&mut self, plan: &[String]) -> Result<(Option<Restored>, Vec<String>)> {
        let dir = self.config.dir.clone();
        let mut warnings = Vec::new();
        // Only the newest complete checkpoints have their input logs; older
        // directories are kept for the stable blocks they hold.
        let complete =
            ids(&dir, "checkpoint-", "").into_iter().filter(|id| checkpoint_dir(&dir, *id).join(MANIFEST).exists());
        let newest: Vec<u64> = complete.rev().take(KEPT).collect();
        for id in newest {
            let manifest_path = checkpoint_dir(&dir, id).join(MANIFEST);
            let text = match std::fs::read_to_string(&manifest_path) {
                Ok(text) => text,
                // Never completed: the crash came while it was written.
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => return Err(io_error("read", &manifest_path, error)),
            };
            let version = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|value| value["format_version"].as_u64());
            if let Some(version) = version
                && version != u64::from(FORMAT_VERSION)
            {
                return Err(RuntimeError::user(format!(
                    "{} was written in checkpoint format {version}, this server reads format {FORMAT_VERSION}; use a matching Sluice version or another --data-dir",
                    manifest_path.display()
                )));
            }
            match self.read_checkpoint(id, &text, plan) {
                Ok(mut restored) => {
                    restored.replay = read_steps(&dir, id)?;
                    // New steps go to the newest log segment, after the
                    // replayed ones (a torn last line is cut off).
                    let segment = ids(&dir, "input-", ".log").into_iter().filter(|segment| *segment >= id).max();
                    self.open_log(segment.unwrap_or(id))?;
                    self.durable = Some(restored.manifest.clone());
                    return Ok((Some(restored), warnings));
                }
                Err(PlanMismatch(message)) => return Err(RuntimeError::user(message)),
                Err(Damaged(message)) => {
                    let warning = format!("checkpoint {id} is damaged ({message}); using the one before");
                    tracing::warn!("{}: {warning}", dir.display());
                    warnings.push(warning);
                }
            }
        }
        if !warnings.is_empty() {
            warnings.push("no good checkpoint is left: the query starts over".into());
        }
        Ok((None, warnings))
    }

    /// Reads and checks checkpoint `id`'s files (and the stable blocks
    /// they point at in earlier checkpoints) and decodes them.
    fn read_checkpoint(&self, id: u64, text: &str, plan: &[String]) -> std::result::Result<Restored, LoadError> {
        let manifest: Manifest = serde_json::from_str(text).map_err(|error| Damaged(error.to_string()))?;
        if manifest.plan != plan {
            return Err(PlanMismatch(format!(
                "checkpoint {id} was taken by another plan ({}), this query plans to ({}); drop and resubmit the query",
                manifest.plan.join(", "),
                plan.join(", ")
            )));
        }
        let (mut bytes_read, mut read_time, mut decode_time) = (0, Duration::ZERO, Duration::ZERO);
        let mut read = |name: &str| -> std::result::Result<OperatorState, LoadError> {
            let entry = manifest
                .files
                .iter()
                .find(|entry| entry.name == name)
                .ok_or_else(|| Damaged(format!("{name} is not in the manifest")))?;
            let started = Instant::now();
            let path = checkpoint_dir(&self.config.dir, id).join(name);
            let bytes = std::fs::read(&path).map_err(|error| Damaged(format!("{name}: {error}")))?;
            if bytes.len() as u64 != entry.bytes || checksum(&bytes) != entry.crc32 {
                return Err(Damaged(format!("{name} does not match its checksum")));
            }
            let mut blocks = Vec::new();
            // Each earlier file is opened once for all its blocks.
            let mut files: HashMap<u64, std::fs::File> = HashMap::new();
            for block in entry.stable.iter().filter(|block| block.checkpoint != id) {
                let damaged =
                    |error: std::io::Error| Damaged(format!("{} of checkpoint {}: {error}", name, block.checkpoint));
                let file = match files.entry(block.checkpoint) {
                    std::collections::hash_map::Entry::Occupied(file) => file.into_mut(),
                    std::collections::hash_map::Entry::Vacant(vacant) => {
                        let path = checkpoint_dir(&self.config.dir, block.checkpoint).join(name);
                        vacant.insert(std::fs::File::open(path).map_err(damaged)?)
                    }
                };
                let frame = read_at(file, block.offset, block.bytes).map_err(damaged)?;
                if checksum(&frame) != block.crc32 {
                    return Err(Damaged(format!(
                        "{} of checkpoint {} does not match its checksum",
                        name, block.checkpoint
                    )));
                }
                blocks.push(frame);
            }
            bytes_read += bytes.len() as u64 + blocks.iter().map(|frame| frame.len() as u64).sum::<u64>();
            read_time += started.elapsed();
            let started = Instant::now();
            let mut state = OperatorState::decode(&bytes).map_err(|error| Damaged(format!("{name}: {error}")))?;
            for frame in &blocks {
                state.decode_stable(frame).map_err(|error| Damaged(format!("{name}: {error}")))?;
            }
            decode_time += started.elapsed();
            Ok(state)
        };
        let nodes =
            (0..plan.len()).map(|node| read(&format!("node-{node}.state"))).collect::<std::result::Result<_, _>>()?;
        let output = read("output.state")?;
        Ok(Restored {
            manifest,
            nodes,
            output,
            replay: VecDeque::new(),
            bytes: bytes_read,
            read_ms: read_time.as_secs_f64() * 1000.0,
            decode_ms: decode_time.as_secs_f64() * 1000.0,
        })
    }

    /// Writes checkpoint files and its manifest (after any checkpoint still
    /// being written), starts a new log segment, and removes checkpoints
    /// beyond the newest two. Returns the manifest and the bytes written.
    /// A failed write (a full disk, an unwritable directory) removes what
    /// it wrote and leaves the previous checkpoints as they were.
    pub fn write(
        &mut self,
        manifest: Manifest,
        nodes: Vec<OperatorState>,
        output: OperatorState,
    ) -> Result<(Manifest, u64)> {
        if let Some(Err(error)) = self.wait() {
            tracing::warn!("checkpoint failed: {error}");
        }
        self.begin(manifest, nodes, output)?;
        match self.wait() {
            Some(written) => written.map(|written| (written.manifest, written.bytes)),
            None => Err(RuntimeError::internal("the checkpoint was not written")),
        }
    }

    /// Starts writing a checkpoint of `nodes` and `output` on a thread of
    /// its own and returns its id at once; [`poll`](Self::poll) or
    /// [`wait`](Self::wait) says when its manifest is durable. Steps logged
    /// from now on go to a new log segment: replayed after this checkpoint,
    /// or, should its write fail or a crash cut it short, after the one
    /// before, with that one's segment. One write at a time.
    pub fn begin(&mut self, manifest: Manifest, nodes: Vec<OperatorState>, output: OperatorState) -> Result<u64> {
        if self.writing.is_some() {
            return Err(RuntimeError::internal("a checkpoint is still being written"));
        }
        let id = self.next_id;
        self.open_log(id)?;
        self.next_id += 1;
        self.last = Instant::now();
        let dir = self.config.dir.clone();
        let previous = self.durable.clone();
        let thread = std::thread::Builder::new()
            .name("sluice-checkpoint".into())
            .spawn(move || {
                let written = write_files(&dir, id, manifest, &nodes, &output, previous.as_ref());
                if written.is_err() {
                    let _ = std::fs::remove_dir_all(checkpoint_dir(&dir, id));
                }
                sync_dir(&dir);
                if written.is_ok() {
                    prune(&dir);
                }
                written
            })
            .map_err(|error| RuntimeError::external(format!("cannot start a checkpoint writer: {error}")))?;
        self.writing = Some(Writing { started: Instant::now(), thread });
        Ok(id)
    }

    /// A checkpoint is being written.
    pub fn is_writing(&self) -> bool {
        self.writing.is_some()
    }

    /// The checkpoint being written, if its writer is done.
    pub fn poll(&mut self) -> Option<Result<Written>> {
        match &self.writing {
            Some(writing) if writing.thread.is_finished() => self.wait(),
            _ => None,
        }
    }

    /// Waits for the checkpoint being written, if any.
    pub fn wait(&mut self) -> Option<Result<Written>> {
        let writing = self.writing.take()?;
        let result = match writing.thread.join() {
            Ok(result) => result,
            Err(_) => Err(RuntimeError::internal("the checkpoint writer panicked")),
        };
        let write_ms = writing.started.elapsed().as_secs_f64() * 1000.0;
        if let Ok((manifest, _)) = &result {
            self.durable = Some(manifest.clone());
        }
        Some(result.map(|(manifest, bytes)| Written {
            manifest,
            bytes: bytes.written,
            reused_bytes: bytes.reused,
            write_ms,
        }))
    }

    /// The source positions of every complete checkpoint kept (oldest
    /// first): what a recovery may read again from a source's log.
    pub fn kept_positions(&self) -> Vec<Vec<u64>> {
        let dir = &self.config.dir;
        let mut manifests: Vec<Manifest> = ids(dir, "checkpoint-", "")
            .into_iter()
            .rev()
            .filter_map(|id| std::fs::read_to_string(checkpoint_dir(dir, id).join(MANIFEST)).ok())
            .filter_map(|text| serde_json::from_str::<Manifest>(&text).ok())
            .take(KEPT)
            .collect();
        manifests.reverse();
        manifests.iter().map(|manifest| manifest.sources.iter().map(|source| source.position).collect()).collect()
    }

    /// Appends a step to the input log (flushed by [`flush`](Self::flush)).
    pub fn log(&mut self, step: &Step) -> Result<()> {
        if let Some(log) = &mut self.log {
            log.write_all(step.line().as_bytes())
                .map_err(|error| RuntimeError::external(format!("cannot write the input log: {error}")))?;
            self.unsynced = true;
        }
        Ok(())
    }

    /// Hands the logged steps to the operating system, and with `--fsync
    /// always` or `batch` to the disk: done before an epoch's results are
    /// published, so a crash never loses the steps behind a row a
    /// subscriber saw.
    pub fn flush(&mut self) -> Result<()> {
        if let Some(log) = &mut self.log {
            log.flush().map_err(|error| RuntimeError::external(format!("cannot write the input log: {error}")))?;
            if self.unsynced && self.config.fsync != Fsync::Never {
                log.get_ref()
                    .sync_data()
                    .map_err(|error| RuntimeError::external(format!("cannot sync the input log: {error}")))?;
            }
            self.unsynced = false;
        }
        Ok(())
    }

    fn open_log(&mut self, id: u64) -> Result<()> {
        self.flush()?;
        let path = log_path(&self.config.dir, id);
        // Cut a torn last line (a crash in the middle of a write).
        if let Ok(text) = std::fs::read(&path) {
            let whole = text.iter().rposition(|byte| *byte == b'\n').map_or(0, |newline| newline + 1);
            if whole < text.len() {
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|error| io_error("open", &path, error))?;
                file.set_len(whole as u64).map_err(|error| io_error("truncate", &path, error))?;
            }
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|error| io_error("open", &path, error))?;
        self.log = Some(BufWriter::new(file));
        Ok(())
    }
}

/// Writes checkpoint `id`'s files, then its manifest (atomically, by a
/// rename), each synced. Stable blocks `previous` holds (and not too old)
/// are pointed at, not written.
fn write_files(
    dir: &Path,
    id: u64,
    mut manifest: Manifest,
    nodes: &[OperatorState],
    output: &OperatorState,
    previous: Option<&Manifest>,
) -> Result<(Manifest, WrittenBytes)> {
    let directory = checkpoint_dir(dir, id);
    std::fs::create_dir_all(&directory).map_err(|error| io_error("create", &directory, error))?;
    let mut files = Vec::new();
    let mut total = WrittenBytes::default();
    let named = nodes.iter().enumerate().map(|(node, state)| (format!("node-{node}.state"), state));
    for (name, state) in named.chain(std::iter::once(("output.state".to_string(), output))) {
        let held: HashMap<&str, &StableBlock> = previous
            .and_then(|previous| previous.files.iter().find(|entry| entry.name == name))
            .map(|entry| {
                let fresh = entry.stable.iter().filter(|block| id.saturating_sub(block.checkpoint) < COMPACT_AFTER);
                fresh.map(|block| (block.name.as_str(), block)).collect()
            })
            .unwrap_or_default();
        let reuse = |block: &str| state.is_stable(block) && held.contains_key(block);
        let (bytes, frames) = state.encode_except(reuse)?;
        let mut stable: Vec<StableBlock> = state
            .stable_names()
            .filter(|block| reuse(block))
            .filter_map(|block| held.get(block).map(|held| (*held).clone()))
            .collect();
        total.reused += stable.iter().map(|block| block.bytes).sum::<u64>();
        for frame in frames {
            let range = frame.offset as usize..(frame.offset + frame.bytes) as usize;
            let crc32 = checksum(&bytes[range]);
            stable.push(StableBlock {
                name: frame.name,
                checkpoint: id,
                offset: frame.offset,
                bytes: frame.bytes,
                crc32,
            });
        }
        stable.sort_by(|a, b| a.name.cmp(&b.name));
        write_synced(&directory.join(&name), &bytes)?;
        total.written += bytes.len() as u64;
        files.push(FileEntry { name, bytes: bytes.len() as u64, crc32: checksum(&bytes), stable });
    }
    sync_dir(&directory);
    manifest.id = id;
    manifest.format_version = FORMAT_VERSION;
    manifest.files = files;
    let text = serde_json::to_string_pretty(&manifest).map_err(|error| RuntimeError::internal(error.to_string()))?;
    let temporary = directory.join(format!("{MANIFEST}.tmp"));
    write_synced(&temporary, text.as_bytes())?;
    std::fs::rename(&temporary, directory.join(MANIFEST)).map_err(|error| io_error("rename", &temporary, error))?;
    sync_dir(&directory);
    Ok((manifest, total))
}

/// `bytes` bytes of `file` from `offset`.
fn read_at(file: &std::fs::File, offset: u64, bytes: u64) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut frame = vec![0; usize::try_from(bytes).map_err(std::io::Error::other)?];
    file.read_exact_at(&mut frame, offset)?;
    Ok(frame)
}

/// Removes checkpoints older than the newest [`KEPT`] complete ones (but
/// those whose stable blocks a kept one points at), and the log segments
/// only they would replay.
fn prune(dir: &Path) {
    let complete: Vec<u64> =
        ids(dir, "checkpoint-", "").into_iter().filter(|id| checkpoint_dir(dir, *id).join(MANIFEST).exists()).collect();
    let kept: Vec<u64> = complete.iter().rev().take(KEPT).copied().collect();
    let Some(&oldest_kept) = kept.last() else { return };
    let mut referenced: std::collections::HashSet<u64> = kept.iter().copied().collect();
    for id in &kept {
        let Ok(text) = std::fs::read_to_string(checkpoint_dir(dir, *id).join(MANIFEST)) else { continue };
        // An unreadable manifest keeps everything: it may point anywhere.
        let Ok(manifest) = serde_json::from_str::<Manifest>(&text) else { return };
        referenced.extend(manifest.files.iter().flat_map(|entry| entry.stable.iter().map(|block| block.checkpoint)));
    }
    for id in ids(dir, "checkpoint-", "").into_iter().filter(|id| *id < oldest_kept && !referenced.contains(id)) {
        let _ = std::fs::remove_dir_all(checkpoint_dir(dir, id));
    }
    for id in ids(dir, "input-", ".log").into_iter().filter(|id| *id < oldest_kept) {
        let _ = std::fs::remove_file(log_path(dir, id));
    }
}

/// A query that stops (or fails) leaves no writer behind it: the next run
/// of the query reads the directory it writes to.
impl Drop for CheckpointStore {
    fn drop(&mut self) {
        let _ = self.wait();
    }
}

enum LoadError {
    PlanMismatch(String),
    Damaged(String),
}
use LoadError::{Damaged, PlanMismatch};

/// The steps logged after checkpoint `id`: its segment and every later one.
fn read_steps(dir: &Path, id: u64) -> Result<VecDeque<Step>> {
    let mut steps = VecDeque::new();
    for segment in ids(dir, "input-", ".log").into_iter().filter(|segment| *segment >= id) {
        let path = log_path(dir, segment);
        let text = std::fs::read_to_string(&path).map_err(|error| io_error("read", &path, error))?;
        // Only whole lines: a torn last one was never acted on.
        for line in text.split_inclusive('\n').filter(|line| line.ends_with('\n')) {
            match Step::parse(line.trim_end()) {
                Some(step) => steps.push_back(step),
                None => break,
            }
        }
    }
    Ok(steps)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(name: &str) -> CheckpointStore {
        let dir = std::env::temp_dir().join(format!("sluice-checkpoint-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        CheckpointStore::new(CheckpointConfig { dir, interval: Duration::from_secs(1), fsync: Fsync::Batch }).unwrap()
    }

    fn manifest(position: u64) -> Manifest {
        Manifest {
            format_version: FORMAT_VERSION,
            id: 0,
            taken_at_ms: now_ms(),
            plan: vec!["window_aggregate".into()],
            sources: vec![SourceCheckpoint { position, ..Default::default() }],
            last_clock: 0,
            counters: Counters::default(),
            files: Vec::new(),
        }
    }

    fn node(value: i64) -> Vec<OperatorState> {
        let mut state = OperatorState::default();
        state.put_value("x", value);
        vec![state]
    }

    #[test]
    fn restores_the_newest_checkpoint_with_the_steps_after_it() {
        let mut store = store("newest");
        store.write(manifest(10), node(1), OperatorState::default()).unwrap();
        store.log(&Step::Rows { source: 0, position: 20, now: 5, rate: 1.0 }).unwrap();
        store.write(manifest(20), node(2), OperatorState::default()).unwrap();
        store.log(&Step::Rows { source: 0, position: 30, now: 6, rate: 0.125 }).unwrap();
        store.log(&Step::Idle { source: 0 }).unwrap();
        store.flush().unwrap();
        let plan = vec!["window_aggregate".to_string()];
        let (restored, warnings) = CheckpointStore::new(store.config.clone()).unwrap().load(&plan).unwrap();
        let restored = restored.unwrap();
        assert_eq!(restored.manifest.sources[0].position, 20);
        assert_eq!(restored.nodes[0].value("x").unwrap(), 2);
        assert_eq!(
            restored.replay,
            VecDeque::from([Step::Rows { source: 0, position: 30, now: 6, rate: 0.125 }, Step::Idle { source: 0 }])
        );
        assert!(warnings.is_empty());
        // A third checkpoint removes the first.
        store.write(manifest(30), node(3), OperatorState::default()).unwrap();
        assert_eq!(ids(&store.config.dir, "checkpoint-", ""), vec![1, 2]);
        assert_eq!(ids(&store.config.dir, "input-", ".log"), vec![1, 2]);
        let other_plan = vec!["group_aggregate".to_string()];
        let error = CheckpointStore::new(store.config.clone()).unwrap().load(&other_plan).unwrap_err();
        assert!(error.to_string().contains("another plan"), "{error}");
    }

    /// A node holding stable blocks named `blocks` (each a one-row batch
    /// of its number) and the integer `x`.
    fn blocks(value: i64, blocks: &[i64]) -> Vec<OperatorState> {
        let mut state = node(value).remove(0);
        for block in blocks {
            let batch = crate::state::i64_batch("v", [*block; 1000]).unwrap();
            state.put_stable(&format!("chunk/{block}"), batch);
        }
        vec![state]
    }

    fn block_values(state: &mut OperatorState) -> Vec<(String, i64)> {
        let blocks = state.take_all("chunk");
        blocks
            .iter()
            .map(|(name, batch)| (name.clone(), crate::state::i64_column(batch, "v").unwrap().value(0)))
            .collect()
    }

    #[test]
    fn unchanged_stable_blocks_are_pointed_at_not_written_again() {
        let mut store = store("incremental");
        let plan = vec!["window_aggregate".to_string()];
        let (first, _) = store.write(manifest(10), blocks(1, &[1, 2]), OperatorState::default()).unwrap();
        // Block 1 is gone, 2 is unchanged, 3 is new.
        let (second, bytes) = store.write(manifest(20), blocks(2, &[2, 3]), OperatorState::default()).unwrap();
        let written = store_report(&second);
        assert_eq!(written, vec![("chunk/2".to_string(), 0), ("chunk/3".to_string(), 1)]);
        assert!(bytes < first.files[0].bytes, "{bytes} bytes written, the first wrote {}", first.files[0].bytes);
        let (restored, _) = CheckpointStore::new(store.config.clone()).unwrap().load(&plan).unwrap();
        let mut restored = restored.unwrap();
        assert_eq!(restored.nodes[0].value("x").unwrap(), 2);
        assert_eq!(block_values(&mut restored.nodes[0]), vec![("2".to_string(), 2), ("3".to_string(), 3)]);
        // Checkpoints go on pointing at block 2 in checkpoint 0, which is
        // kept for it, until it is COMPACT_AFTER checkpoints old.
        for position in 2..COMPACT_AFTER {
            let (written, _) =
                store.write(manifest(position * 10), blocks(2, &[2, 3]), OperatorState::default()).unwrap();
            assert_eq!(store_report(&written)[0], ("chunk/2".to_string(), 0));
        }
        assert_eq!(ids(&store.config.dir, "checkpoint-", "").first(), Some(&0));
        let (written, _) = store.write(manifest(100), blocks(2, &[2, 3]), OperatorState::default()).unwrap();
        assert_eq!(store_report(&written), vec![("chunk/2".to_string(), COMPACT_AFTER), ("chunk/3".to_string(), 1)]);
        // Checkpoint 0 is kept while the one before (still kept) points at it.
        assert_eq!(ids(&store.config.dir, "checkpoint-", "")[..2], [0, 1]);
        let (written, _) = store.write(manifest(110), blocks(2, &[2, 3]), OperatorState::default()).unwrap();
        let next = COMPACT_AFTER + 1;
        assert_eq!(store_report(&written), vec![("chunk/2".to_string(), COMPACT_AFTER), ("chunk/3".to_string(), next)]);
        assert_eq!(ids(&store.config.dir, "checkpoint-", ""), vec![1, COMPACT_AFTER, next]);
        let (restored, _) = CheckpointStore::new(store.config.clone()).unwrap().load(&plan).unwrap();
        assert_eq!(block_values(&mut restored.unwrap().nodes[0]), vec![("2".to_string(), 2), ("3".to_string(), 3)]);
        // A damaged block in an older checkpoint is found by its checksum.
        let path = checkpoint_dir(&store.config.dir, COMPACT_AFTER).join("node-0.state");
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        let (restored, warnings) = CheckpointStore::new(store.config.clone()).unwrap().load(&plan).unwrap();
        assert!(restored.is_none());
        let expected = format!("node-0.state of checkpoint {COMPACT_AFTER} does not match its checksum");
        assert!(warnings[0].contains(&expected), "{warnings:?}");
    }

    /// Each stable block of a manifest's first file, with the checkpoint
    /// that holds it.
    fn store_report(manifest: &Manifest) -> Vec<(String, u64)> {
        manifest.files[0].stable.iter().map(|block| (block.name.clone(), block.checkpoint)).collect()
    }

    #[test]
    fn a_damaged_checkpoint_falls_back_to_the_previous_one() {
        let mut store = store("damaged");
        store.write(manifest(10), node(1), OperatorState::default()).unwrap();
        store.log(&Step::Rows { source: 0, position: 20, now: 0, rate: 1.0 }).unwrap();
        store.write(manifest(20), node(2), OperatorState::default()).unwrap();
        store.log(&Step::End { source: 0 }).unwrap();
        store.flush().unwrap();
        // Flip a byte of the newest checkpoint's node state.
        let path = checkpoint_dir(&store.config.dir, 1).join("node-0.state");
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        // And leave a torn line at the end of the log.
        std::fs::OpenOptions::new()
            .append(true)
            .open(log_path(&store.config.dir, 1))
            .unwrap()
            .write_all(b"r 0 4")
            .unwrap();
        let plan = vec!["window_aggregate".to_string()];
        let (restored, warnings) = CheckpointStore::new(store.config.clone()).unwrap().load(&plan).unwrap();
        let restored = restored.unwrap();
        assert_eq!(restored.nodes[0].value("x").unwrap(), 1);
        assert_eq!(
            restored.replay,
            VecDeque::from([Step::Rows { source: 0, position: 20, now: 0, rate: 1.0 }, Step::End { source: 0 }])
        );
        assert!(warnings[0].contains("checkpoint 1 is damaged"), "{warnings:?}");
        // A manifest of another format version is refused outright.
        let manifest_path = checkpoint_dir(&store.config.dir, 1).join(MANIFEST);
        std::fs::write(&manifest_path, r#"{"format_version": 99}"#).unwrap();
        let error = CheckpointStore::new(store.config.clone()).unwrap().load(&plan).unwrap_err();
        assert!(error.to_string().contains("checkpoint format 99"), "{error}");
    }

    /// A full disk (writes to /dev/full fail with ENOSPC) fails the
    /// checkpoint with a message naming the file, removes what it wrote,
    /// and leaves the previous checkpoint to restore; the next try works.
    #[test]
    fn a_checkpoint_on_a_full_disk_fails_cleanly_and_the_previous_one_stays() {
        let mut store = store("full");
        store.write(manifest(10), node(1), OperatorState::default()).unwrap();
        store.log(&Step::Rows { source: 0, position: 20, now: 0, rate: 1.0 }).unwrap();
        let next = checkpoint_dir(&store.config.dir, 1);
        std::fs::create_dir_all(&next).unwrap();
        std::os::unix::fs::symlink("/dev/full", next.join("node-0.state")).unwrap();
        let error = store.write(manifest(20), node(2), OperatorState::default()).unwrap_err().to_string();
        assert!(error.contains("node-0.state") && error.contains("No space left on device"), "{error}");
        assert!(!next.exists(), "the partial checkpoint is removed");
        // Steps after the failed checkpoint's barrier are in its segment,
        // replayed after the previous checkpoint with that one's.
        store.log(&Step::End { source: 0 }).unwrap();
        store.flush().unwrap();
        let plan = vec!["window_aggregate".to_string()];
        let (restored, warnings) = CheckpointStore::new(store.config.clone()).unwrap().load(&plan).unwrap();
        let restored = restored.unwrap();
        assert_eq!((restored.nodes[0].value("x").unwrap(), restored.manifest.sources[0].position), (1, 10));
        assert_eq!(
            restored.replay,
            VecDeque::from([Step::Rows { source: 0, position: 20, now: 0, rate: 1.0 }, Step::End { source: 0 }])
        );
        assert!(warnings.is_empty());
        assert_eq!(store.kept_positions(), vec![vec![10]]);
        // Room again: the next checkpoint is written as usual.
        store.write(manifest(20), node(2), OperatorState::default()).unwrap();
        assert_eq!(store.kept_positions(), vec![vec![10], vec![20]]);
    }
}
