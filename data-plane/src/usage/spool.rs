//! The usage spool: an append-only, checksummed, segmented log on local disk.
//!
//! Appending needs no writer thread: the appender that finds no write in progress writes its own
//! record at once, on its own thread (one `write` to the page cache, no hand-off, no wake-up);
//! appenders that arrive while a write is in progress queue their records, and the writing
//! appender writes the whole queue with one more `write` before it leaves and acknowledges each
//! of them (group commit, with the leader chosen by arrival). So a request waits for at most one
//! shared write, and a process crash loses no event whose request saw its acknowledgement. Record framing: `len: u32 LE | crc32(payload): u32 LE | payload` (an encoded
//! `UsageEvent`). A torn tail (crash mid-write) fails its length or checksum and is cut off on
//! the next start, never mis-parsed.
//!
//! Durability against power loss is the [`FsyncPolicy`]; disk use is bounded by
//! [`SpoolOptions::max_bytes`], and what happens at the bound is [`WhenFull`].

mod syncer;

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use modelgate_proto::usage::v1 as wire;
use modelgate_shared::usage::UsageEvent;
use prost::Message;
use thiserror::Error;
use tokio::sync::{oneshot, watch};

/// A segment is closed and a new one started past this size.
pub const SEGMENT_BYTES: u64 = 16 * 1024 * 1024;
const HEADER: usize = 8;
/// A record larger than this is corrupt by definition.
const MAX_RECORD: u32 = 1024 * 1024;
/// The shipper reads a segment this much at a time, until its batch is whole (a thousand
/// records of ~500 bytes fit in one step).
const READ_STEP: usize = 512 * 1024;

#[derive(Debug, Error)]
pub enum SpoolError {
    #[error("spool I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the spool writer has stopped")]
    Stopped,
    #[error("usage event of {0} bytes exceeds the spool's record limit")]
    TooLarge(usize),
}

/// A position in the spool: segment number and byte offset within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

/// When written records reach stable storage. Every policy acknowledges an append only after
/// its `write` returned, so a process crash never loses an acknowledged event; the policies
/// differ in what a power loss can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// fsync every group write before acknowledging it: nothing acknowledged is lost.
    Always,
    /// fsync in the background after a group write, at most once per interval: at light load
    /// that is every group write; under load a power loss takes at most the last interval.
    Interval(Duration),
    /// Never explicitly (the OS flushes when it will).
    Never,
}

impl FsyncPolicy {
    /// The default: background fsync at most every 10 ms.
    pub const DEFAULT: FsyncPolicy = FsyncPolicy::Interval(Duration::from_millis(10));

    /// Parses `always`, `never`, or `interval:<n>ms`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "always" => Some(Self::Always),
            "never" => Some(Self::Never),
            _ => {
                let ms = s.strip_prefix("interval:")?.strip_suffix("ms")?;
                let ms: u64 = ms.parse().ok().filter(|&n| n > 0)?;
                Some(Self::Interval(Duration::from_millis(ms)))
            }
        }
    }
}

impl std::fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Always => f.write_str("always"),
            Self::Never => f.write_str("never"),
            Self::Interval(d) => write!(f, "interval:{}ms", d.as_millis()),
        }
    }
}

/// What the data plane does with new requests while the spool is at its disk bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Refuse new requests (503): unmetered traffic is a billing hole. The default.
    Reject,
    /// Keep serving; count each request whose event could not be spooled as unmetered.
    ServeUnmetered,
}

impl WhenFull {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "reject" => Some(Self::Reject),
            "serve-unmetered" => Some(Self::ServeUnmetered),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct SpoolOptions {
    pub fsync: FsyncPolicy,
    /// Bound on the bytes of all segments on disk (shipped segments are deleted).
    pub max_bytes: u64,
    pub when_full: WhenFull,
}

impl Default for SpoolOptions {
    fn default() -> Self {
        SpoolOptions {
            fsync: FsyncPolicy::DEFAULT,
            max_bytes: 1024 * 1024 * 1024,
            when_full: WhenFull::Reject,
        }
    }
}

impl SpoolOptions {
    pub fn with_fsync(fsync: FsyncPolicy) -> Self {
        SpoolOptions {
            fsync,
            ..Default::default()
        }
    }
}

/// May a new request be admitted, given the spool's disk use?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Metered,
    /// Serve, but the event will not be written (counted as unmetered).
    Unmetered,
    /// Refuse the request.
    Refused,
}

/// Counters and gauges about the spool, for `/metrics` and logs.
#[derive(Debug, Default)]
pub struct SpoolStats {
    /// Bytes of all segments on disk.
    pub disk_bytes: AtomicU64,
    /// Requests refused because the spool was full.
    pub refused: AtomicU64,
    /// Requests served without a usage event because the spool was full.
    pub unmetered: AtomicU64,
    near_bound_logged: AtomicBool,
}

type Ack = oneshot::Sender<Result<(), SpoolError>>;

/// The appending side, cheap to clone.
#[derive(Clone)]
pub struct Spool {
    log: Arc<Mutex<Log>>,
    committed: watch::Receiver<Position>,
    dir: Arc<Path>,
    stats: Arc<SpoolStats>,
    max_bytes: u64,
    when_full: WhenFull,
}

pub fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:016}.seg"))
}

/// Segment numbers present in the spool directory, ascending.
pub fn segments(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name.strip_suffix(".seg").and_then(|n| n.parse().ok()) {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Reads whole, valid records of a segment from `offset`, at most `max` of them. Returns the
/// events and the offset after the last one read. Stops at the first torn or corrupt record.
pub fn read_records(
    dir: &Path,
    segment: u64,
    offset: u64,
    max: usize,
) -> std::io::Result<(Vec<wire::UsageEvent>, u64)> {
    let (payloads, end) = read_raw_records(dir, segment, offset, max)?;
    let mut events = Vec::with_capacity(payloads.len());
    let mut end_of_decoded = offset;
    for payload in payloads {
        match wire::UsageEvent::decode(payload.as_ref()) {
            Ok(e) => events.push(e),
            Err(_) => return Ok((events, end_of_decoded)),
        }
        end_of_decoded += (HEADER + payload.len()) as u64;
    }
    debug_assert_eq!(end_of_decoded, end);
    Ok((events, end))
}

/// Like [`read_records`], but the records' payloads as they are on disk (each an encoded
/// `UsageEvent`, checksum verified), without decoding them: what the shipper sends.
pub fn read_raw_records(
    dir: &Path,
    segment: u64,
    offset: u64,
    max: usize,
) -> std::io::Result<(Vec<bytes::Bytes>, u64)> {
    let mut file = File::open(segment_path(dir, segment))?;
    // What the segment holds past `offset` now (records appended while this batch is read
    // are the next batch's): a step is never larger, so a batch of a few records at a low
    // request rate costs a buffer of their size, not a step's, and the read that would only
    // find the end is not made.
    let mut left = file.metadata()?.len().saturating_sub(offset);
    file.seek(SeekFrom::Start(offset))?;
    // Read a step at a time until `max` records are whole in the buffer: reading a fixed 5 MiB
    // per batch of ~0.5 MB cost the shipper more in copying and allocating than the batch's
    // own bytes.
    let mut buf = Vec::new();
    let mut records = Vec::new();
    let mut pos = 0usize;
    loop {
        while records.len() < max {
            let Some((payload, next)) = parse_record(&buf, pos) else {
                break;
            };
            records.push(payload);
            pos = next;
        }
        // Done: enough records, or a record that does not parse though its largest possible
        // size is in the buffer (torn or corrupt: reading on would not make it whole).
        if records.len() >= max || buf.len() - pos >= HEADER + MAX_RECORD as usize {
            break;
        }
        let step = left.min(READ_STEP as u64);
        if step == 0 {
            break; // the segment's end
        }
        let before = buf.len();
        buf.reserve_exact(step as usize);
        (&mut file).take(step).read_to_end(&mut buf)?;
        let read = (buf.len() - before) as u64;
        if read == 0 {
            break; // shorter than it was (never, for an append-only segment)
        }
        left -= read;
    }
    let buf = bytes::Bytes::from(buf);
    let payloads = records.into_iter().map(|r| buf.slice(r)).collect();
    Ok((payloads, offset + pos as u64))
}

/// The record at `pos` of `buf`, if whole and valid: its payload's range and the position
/// after it.
fn parse_record(buf: &[u8], pos: usize) -> Option<(std::ops::Range<usize>, usize)> {
    let header = buf.get(pos..pos + HEADER)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    // A zero length is never written (an all-zero tail after a power loss must not parse).
    if len == 0 || len > MAX_RECORD {
        return None;
    }
    let end = pos + HEADER + len as usize;
    let payload = buf.get(pos + HEADER..end)?;
    (crc32fast::hash(payload) == crc).then_some((pos + HEADER..end, end))
}

/// The offset just past the last whole, valid record of a segment file.
pub fn valid_length(path: &Path) -> std::io::Result<u64> {
    let buf = std::fs::read(path)?;
    let mut pos = 0usize;
    while let Some((_, next)) = parse_record(&buf, pos) {
        pos = next;
    }
    Ok(pos as u64)
}

impl Spool {
    /// Opens the spool directory: cuts any torn tail off the newest segment, then starts a new
    /// segment for this process's writes.
    pub fn open(dir: &Path, options: SpoolOptions) -> Result<Spool, SpoolError> {
        let io = |source| SpoolError::Io {
            path: dir.to_owned(),
            source,
        };
        // Usage records name keys, teams and users: the spool is private to the node (0700).
        modelgate_shared::secret_fs::create_private_dir_all(dir).map_err(io)?;
        let existing = segments(dir).map_err(io)?;
        if let Some(&last) = existing.last() {
            let path = segment_path(dir, last);
            let valid = valid_length(&path).map_err(io)?;
            let actual = std::fs::metadata(&path).map_err(io)?.len();
            if valid < actual {
                tracing::warn!(
                    segment = last,
                    cut = actual - valid,
                    "spool: cutting a torn tail"
                );
                OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_len(valid))
                    .map_err(io)?;
            }
        }
        let first = existing.last().map_or(1, |s| s + 1);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(segment_path(dir, first))
            .map_err(io)?;
        let stats = Arc::new(SpoolStats::default());
        let mut on_disk = 0;
        for s in segments(dir).map_err(io)? {
            on_disk += std::fs::metadata(segment_path(dir, s))
                .map(|m| m.len())
                .unwrap_or(0);
        }
        stats.disk_bytes.store(on_disk, Ordering::Relaxed);
        let start = Position {
            segment: first,
            offset: 0,
        };
        let (committed_tx, committed) = watch::channel(start);
        let syncer = match options.fsync {
            FsyncPolicy::Interval(every) => Some(syncer::Syncer::start(every).map_err(io)?),
            FsyncPolicy::Always | FsyncPolicy::Never => None,
        };
        let writer = Writer {
            dir: dir.to_owned(),
            file,
            position: start,
            fsync: options.fsync,
            syncer,
            committed: committed_tx,
            stats: stats.clone(),
            max_bytes: options.max_bytes,
        };
        Ok(Spool {
            log: Arc::new(Mutex::new(Log {
                writer: Some(writer),
                queued: Vec::new(),
                waiting: Vec::new(),
            })),
            committed,
            dir: Arc::from(dir),
            stats,
            max_bytes: options.max_bytes,
            when_full: options.when_full,
        })
    }

    /// Decides whether a new request may be served, by the spool's disk use.
    pub fn admit(&self) -> Admission {
        if self.stats.disk_bytes.load(Ordering::Relaxed) < self.max_bytes {
            return Admission::Metered;
        }
        match self.when_full {
            WhenFull::Reject => {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                Admission::Refused
            }
            WhenFull::ServeUnmetered => {
                self.stats.unmetered.fetch_add(1, Ordering::Relaxed);
                Admission::Unmetered
            }
        }
    }

    pub fn stats(&self) -> &SpoolStats {
        &self.stats
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Deletes a fully acknowledged segment and gives its bytes back to the bound.
    pub fn remove_segment(&self, segment: u64) -> std::io::Result<()> {
        let path = segment_path(&self.dir, segment);
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            Err(_) => Ok(()),
            Ok(()) => {
                let _ =
                    self.stats
                        .disk_bytes
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                            Some(v.saturating_sub(len))
                        });
                Ok(())
            }
        }
    }

    /// Appends an event and waits until it is written.
    pub async fn append(&self, event: &UsageEvent) -> Result<(), SpoolError> {
        let record = frame(event)?;
        match self.write_or_queue(record, true) {
            Written::Now(result) => result,
            Written::Later(Some(ack)) => ack.await.map_err(|_| SpoolError::Stopped)?,
            Written::Later(None) => Ok(()),
        }
    }

    /// Waits until everything appended before this call is written.
    pub async fn flush(&self) -> Result<(), SpoolError> {
        // An empty record is a barrier: acknowledged with the queue it joined, never written.
        match self.write_or_queue(Vec::new(), true) {
            Written::Now(result) => result,
            Written::Later(Some(ack)) => ack.await.map_err(|_| SpoolError::Stopped)?,
            Written::Later(None) => Ok(()),
        }
    }

    /// Appends an event without waiting (for paths that cannot await, such as `Drop`): written
    /// before this returns, or by the appender whose write is in progress.
    pub fn append_detached(&self, event: &UsageEvent) {
        let record = match frame(event) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(event = %event.id, error = %e, "usage event not written");
                return;
            }
        };
        if let Written::Now(Err(e)) = self.write_or_queue(record, false) {
            tracing::error!(event = %event.id, error = %e, "usage event not written");
        }
    }

    /// Writes `record` on this thread when no write is in progress (then the records queued
    /// meanwhile, until none is left), else queues it for the appender that is writing.
    ///
    /// Nothing here awaits: a request dropped while it appends cannot strand the queue.
    fn write_or_queue(&self, record: Vec<u8>, ack: bool) -> Written {
        let mut writer = {
            let Ok(mut log) = self.log.lock() else {
                return Written::Now(Err(SpoolError::Stopped));
            };
            match log.writer.take() {
                Some(w) => w,
                None => {
                    log.queued.extend_from_slice(&record);
                    let (done, wait) = oneshot::channel();
                    // A detached append has no one to tell; the queue still needs the slot so
                    // a barrier behind it is acknowledged in order.
                    log.waiting.push(done);
                    return Written::Later(ack.then_some(wait));
                }
            }
        };
        let mine = writer
            .write_blocking(&record)
            .map_err(|source| SpoolError::Io {
                path: self.dir.to_path_buf(),
                source,
            });
        let mut batch = Vec::new();
        loop {
            let waiting = {
                let Ok(mut log) = self.log.lock() else {
                    return Written::Now(Err(SpoolError::Stopped));
                };
                if log.waiting.is_empty() {
                    log.writer = Some(writer);
                    // Keep the larger buffer for the next queue.
                    if log.queued.capacity() < batch.capacity() {
                        batch.clear();
                        log.queued = batch;
                    }
                    return Written::Now(mine);
                }
                batch.clear();
                std::mem::swap(&mut batch, &mut log.queued);
                std::mem::take(&mut log.waiting)
            };
            let result = writer.write_blocking(&batch);
            for done in waiting {
                let _ = done.send(result.as_ref().map(|_| ()).map_err(|e| SpoolError::Io {
                    path: writer.dir.clone(),
                    source: std::io::Error::new(e.kind(), e.to_string()),
                }));
            }
        }
    }
    /// The position up to which records are written (advances after every group write).
    pub fn committed(&self) -> watch::Receiver<Position> {
        self.committed.clone()
    }
}

/// An event as a spool record: `len | crc32 | payload`, in one buffer. The payload is encoded
/// straight from the event (`UsageEvent::encode_wire`: the wire message's bytes, its strings
/// copied once, into the record).
fn frame(event: &UsageEvent) -> Result<Vec<u8>, SpoolError> {
    let len = event.wire_len();
    if len > MAX_RECORD as usize {
        return Err(SpoolError::TooLarge(len));
    }
    let mut record = Vec::with_capacity(HEADER + len);
    record.extend_from_slice(&[0; HEADER]);
    event.encode_wire(&mut record);
    debug_assert_eq!(record.len(), HEADER + len);
    let crc = crc32fast::hash(&record[HEADER..]);
    record[..4].copy_from_slice(&(len as u32).to_le_bytes());
    record[4..HEADER].copy_from_slice(&crc.to_le_bytes());
    Ok(record)
}

/// How an append went: written by this call, or queued for the appender writing now.
enum Written {
    Now(Result<(), SpoolError>),
    Later(Option<oneshot::Receiver<Result<(), SpoolError>>>),
}

/// The shared end of the log: the writer (absent while an appender is writing with it), and
/// the records queued meanwhile with whoever waits for them.
struct Log {
    writer: Option<Writer>,
    queued: Vec<u8>,
    waiting: Vec<Ack>,
}

struct Writer {
    dir: PathBuf,
    file: File,
    position: Position,
    fsync: FsyncPolicy,
    syncer: Option<syncer::Syncer>,
    committed: watch::Sender<Position>,
    stats: Arc<SpoolStats>,
    max_bytes: u64,
}

impl Writer {
    /// Writes framed records (nothing for an empty buffer) with the policy's fsync. Runs on the
    /// appending task's thread: a page-cache write, except under [`FsyncPolicy::Always`], whose
    /// sync tells the runtime it blocks.
    fn write_blocking(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let always = self.fsync == FsyncPolicy::Always && !buf.is_empty();
        let in_worker = always
            && tokio::runtime::Handle::try_current()
                .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let result = if in_worker {
            tokio::task::block_in_place(|| self.write(buf))
        } else {
            self.write(buf)
        };
        if let Err(e) = &result {
            tracing::error!(error = %e, "spool write failed");
        }
        result
    }

    fn write(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.file.write_all(buf) {
            // Cut any partial write so later records never follow torn bytes; failing that,
            // continue in a fresh segment.
            if self.file.set_len(self.position.offset).is_err() {
                self.rotate()?;
            }
            return Err(e);
        }
        match (&self.fsync, &self.syncer) {
            (FsyncPolicy::Always, _) => self.file.sync_data()?,
            (FsyncPolicy::Interval(_), Some(syncer)) => {
                syncer.mark_dirty(self.position.segment, &self.file);
            }
            _ => {}
        }
        self.position.offset += buf.len() as u64;
        self.committed.send_replace(self.position);
        self.account(buf.len() as u64);
        if self.position.offset >= SEGMENT_BYTES {
            self.rotate()?;
        }
        Ok(())
    }

    /// Adds written bytes to the disk gauge; logs once when use crosses 80% of the bound.
    fn account(&self, written: u64) {
        let used = self.stats.disk_bytes.fetch_add(written, Ordering::Relaxed) + written;
        let near = used.saturating_mul(10) >= self.max_bytes.saturating_mul(8);
        let logged = self.stats.near_bound_logged.load(Ordering::Relaxed);
        if near && !logged {
            self.stats.near_bound_logged.store(true, Ordering::Relaxed);
            tracing::warn!(
                used_bytes = used,
                max_bytes = self.max_bytes,
                "usage spool is above 80% of its disk bound: the control plane is not taking \
                 events as fast as they arrive"
            );
        } else if !near && logged && used.saturating_mul(10) < self.max_bytes.saturating_mul(7) {
            self.stats.near_bound_logged.store(false, Ordering::Relaxed);
        }
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let next = self.position.segment + 1;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(segment_path(&self.dir, next))?;
        self.position = Position {
            segment: next,
            offset: 0,
        };
        self.committed.send_replace(self.position);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
