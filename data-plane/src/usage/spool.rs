//! The usage spool: an append-only, checksummed, segmented log on local disk.
//!
//! One writer thread group-commits: it takes every event queued while the previous write was in
//! progress and writes them with one `write`, then acknowledges each appender. So a request
//! waits for at most one shared write, and a process crash loses no event whose request saw its
//! acknowledgement. Record framing: `len: u32 LE | crc32(payload): u32 LE | payload` (an encoded
//! `UsageEvent`). A torn tail (crash mid-write) fails its length or checksum and is cut off on
//! the next start, never mis-parsed.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use modelgate_proto::usage::v1 as wire;
use modelgate_shared::usage::UsageEvent;
use prost::Message;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};

/// A segment is closed and a new one started past this size.
pub const SEGMENT_BYTES: u64 = 16 * 1024 * 1024;
const HEADER: usize = 8;
/// A record larger than this is corrupt by definition.
const MAX_RECORD: u32 = 1024 * 1024;

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

/// When to fsync after a group write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Every group write (survives power loss).
    Always,
    /// Never explicitly (survives a process crash; the OS flushes).
    Never,
}

type Pending = (Vec<u8>, Option<oneshot::Sender<Result<(), SpoolError>>>);

/// The appending side, cheap to clone.
#[derive(Clone)]
pub struct Spool {
    tx: mpsc::UnboundedSender<Pending>,
    committed: watch::Receiver<Position>,
}

fn segment_path(dir: &Path, segment: u64) -> PathBuf {
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
    let mut file = File::open(segment_path(dir, segment))?;
    file.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf)?;
    let mut events = Vec::new();
    let mut pos = 0usize;
    while events.len() < max {
        let Some((payload, next)) = parse_record(&buf, pos) else {
            break;
        };
        match wire::UsageEvent::decode(payload) {
            Ok(e) => events.push(e),
            Err(_) => break,
        }
        pos = next;
    }
    Ok((events, offset + pos as u64))
}

fn parse_record(buf: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let header = buf.get(pos..pos + HEADER)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    // A zero length is never written (an all-zero tail after a power loss must not parse).
    if len == 0 || len > MAX_RECORD {
        return None;
    }
    let end = pos + HEADER + len as usize;
    let payload = buf.get(pos + HEADER..end)?;
    (crc32fast::hash(payload) == crc).then_some((payload, end))
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
    pub fn open(dir: &Path, fsync: FsyncPolicy) -> Result<Spool, SpoolError> {
        let io = |source| SpoolError::Io {
            path: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
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
        let (tx, rx) = mpsc::unbounded_channel();
        let start = Position {
            segment: first,
            offset: 0,
        };
        let (committed_tx, committed) = watch::channel(start);
        let writer = Writer {
            dir: dir.to_owned(),
            file,
            position: start,
            fsync,
            committed: committed_tx,
        };
        std::thread::Builder::new()
            .name("usage-spool-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(io)?;
        Ok(Spool { tx, committed })
    }

    /// Appends an event and waits until it is written.
    pub async fn append(&self, event: &UsageEvent) -> Result<(), SpoolError> {
        let payload = encode(event);
        if payload.len() > MAX_RECORD as usize {
            return Err(SpoolError::TooLarge(payload.len()));
        }
        let (done, wait) = oneshot::channel();
        self.tx
            .send((payload, Some(done)))
            .map_err(|_| SpoolError::Stopped)?;
        wait.await.map_err(|_| SpoolError::Stopped)?
    }

    /// Waits until everything appended before this call is written.
    pub async fn flush(&self) -> Result<(), SpoolError> {
        let (done, wait) = oneshot::channel();
        // An empty payload is a barrier: acknowledged in order, never written.
        self.tx
            .send((Vec::new(), Some(done)))
            .map_err(|_| SpoolError::Stopped)?;
        wait.await.map_err(|_| SpoolError::Stopped)?
    }

    /// Queues an event without waiting (for paths that cannot await, such as `Drop`).
    pub fn append_detached(&self, event: &UsageEvent) {
        let payload = encode(event);
        if payload.len() > MAX_RECORD as usize {
            tracing::error!(event = %event.id, "usage event too large for the spool; not written");
            return;
        }
        if self.tx.send((payload, None)).is_err() {
            tracing::error!(event = %event.id, "spool writer stopped; usage event not written");
        }
    }

    /// The position up to which records are written (advances after every group write).
    pub fn committed(&self) -> watch::Receiver<Position> {
        self.committed.clone()
    }
}

fn encode(event: &UsageEvent) -> Vec<u8> {
    wire::UsageEvent::from(event).encode_to_vec()
}

struct Writer {
    dir: PathBuf,
    file: File,
    position: Position,
    fsync: FsyncPolicy,
    committed: watch::Sender<Position>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::UnboundedReceiver<Pending>) {
        let mut batch: Vec<Pending> = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        while let Some(first) = rx.blocking_recv() {
            batch.push(first);
            while batch.len() < 4096 {
                match rx.try_recv() {
                    Ok(p) => batch.push(p),
                    Err(_) => break,
                }
            }
            buf.clear();
            for (payload, _) in batch.iter().filter(|(p, _)| !p.is_empty()) {
                buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
                buf.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
                buf.extend_from_slice(payload);
            }
            let result = self.write(&buf);
            for (_, done) in batch.drain(..) {
                if let Some(done) = done {
                    let _ = done.send(result.as_ref().map(|_| ()).map_err(|e| SpoolError::Io {
                        path: self.dir.clone(),
                        source: std::io::Error::new(e.kind(), e.to_string()),
                    }));
                }
            }
            if let Err(e) = result {
                tracing::error!(error = %e, "spool write failed");
            }
        }
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
        if self.fsync == FsyncPolicy::Always {
            self.file.sync_data()?;
        }
        self.position.offset += buf.len() as u64;
        self.committed.send_replace(self.position);
        if self.position.offset >= SEGMENT_BYTES {
            self.rotate()?;
        }
        Ok(())
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

/// Deletes a fully acknowledged segment.
pub fn remove_segment(dir: &Path, segment: u64) -> std::io::Result<()> {
    match std::fs::remove_file(segment_path(dir, segment)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
