//! The security log: JSON lines in `security.log` in the data plane's data directory, one per
//! sampled refusal of a request not (yet) tied to a key. Bounded three ways: sampled per source
//! and globally (token buckets), written off the request path through a bounded channel
//! (`try_send`; a full channel drops the record and counts it), and rotated at a size to
//! `security.log.1` (one old file kept), so it never takes more than twice its size on disk.
//! A record holds no secret: never the presented key nor any part of it, never the query string
//! (Gemini clients may carry their key there).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use tokio::sync::mpsc;

use super::table::Table;
use super::Source;

/// The log's file name in the data directory.
pub const FILE: &str = "security.log";
/// The rotated previous file.
pub const OLD_FILE: &str = "security.log.1";

/// Longest route and user agent kept, in characters.
const MAX_ROUTE: usize = 256;
const MAX_USER_AGENT: usize = 128;
/// Records waiting for the writer; past this, records are dropped (and counted).
const QUEUE: usize = 1024;

#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    pub source: String,
    pub method: String,
    /// The path only, truncated.
    pub route: String,
    pub reason: &'static str,
    /// Truncated.
    pub user_agent: String,
    pub request_id: String,
}

impl Record {
    pub fn new(
        time: chrono::DateTime<chrono::Utc>,
        source: &str,
        method: &str,
        path: &str,
        reason: &'static str,
        user_agent: &str,
        request_id: &str,
    ) -> Self {
        Record {
            time: time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            source: source.to_owned(),
            method: method.chars().take(16).collect(),
            route: path.chars().take(MAX_ROUTE).collect(),
            reason,
            user_agent: user_agent.chars().take(MAX_USER_AGENT).collect(),
            request_id: request_id.to_owned(),
        }
    }
}

/// A token bucket: `rate` per second, holding at most `burst`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Self {
        Bucket {
            tokens: burst,
            last: now,
        }
    }

    fn take(&mut self, rate: f64, burst: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Which records are written: at most `per_source` a second per source (bursts of twice that)
/// and `global` a second in all (bursts of twice that).
#[derive(Debug)]
pub(crate) struct Sampler {
    per_source: f64,
    global: f64,
    sources: Table<Source, Bucket>,
    all: Bucket,
}

impl Sampler {
    pub(crate) fn new(per_source: u32, global: u32, capacity: usize, now: Instant) -> Self {
        let global = f64::from(global);
        Sampler {
            per_source: f64::from(per_source),
            global,
            sources: Table::new(capacity),
            all: Bucket::full(2.0 * global, now),
        }
    }

    /// Whether a record from `source` at `now` is written.
    pub(crate) fn admit(&mut self, source: Source, now: Instant) -> bool {
        let (rate, burst) = (self.per_source, 2.0 * self.per_source);
        let bucket = self.sources.entry(source, || Bucket::full(burst, now));
        if !bucket.take(rate, burst, now) {
            return false;
        }
        self.all.take(self.global, 2.0 * self.global, now)
    }

    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.sources.len()
    }
}

/// The file end of the log, owned by the writer task.
struct Files {
    path: PathBuf,
    old: PathBuf,
    max_bytes: u64,
    file: Option<std::fs::File>,
    size: u64,
}

impl Files {
    fn new(dir: &Path, max_bytes: u64) -> Self {
        Files {
            path: dir.join(FILE),
            old: dir.join(OLD_FILE),
            max_bytes,
            file: None,
            size: 0,
        }
    }

    fn open(&mut self) -> std::io::Result<&mut std::fs::File> {
        if self.file.is_none() {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            self.size = f.metadata()?.len();
            self.file = Some(f);
        }
        match self.file.as_mut() {
            Some(f) => Ok(f),
            None => Err(std::io::Error::other("the security log is not open")),
        }
    }

    /// Appends the lines, rotating first when they would take the file past its bound.
    fn write(&mut self, lines: &[u8]) -> std::io::Result<()> {
        self.open()?;
        if self.size > 0 && self.size + lines.len() as u64 > self.max_bytes {
            self.file = None;
            std::fs::rename(&self.path, &self.old)?;
        }
        let f = self.open()?;
        f.write_all(lines)?;
        self.size += lines.len() as u64;
        Ok(())
    }
}

/// Starts the writer task; returns the channel it reads and a handle that ends with it.
pub(crate) fn spawn_writer(
    dir: &Path,
    max_bytes: u64,
    dropped: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> (mpsc::Sender<Record>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Record>(QUEUE);
    let mut files = Files::new(dir, max_bytes);
    let task = tokio::spawn(async move {
        let mut batch = Vec::with_capacity(64);
        while rx.recv_many(&mut batch, 64).await > 0 {
            let mut lines = Vec::with_capacity(batch.len() * 256);
            for r in batch.drain(..) {
                if serde_json::to_writer(&mut lines, &r).is_ok() {
                    lines.push(b'\n');
                }
            }
            let written = tokio::task::spawn_blocking(move || {
                let result = files.write(&lines);
                (files, result)
            })
            .await;
            match written {
                Ok((f, result)) => {
                    files = f;
                    if let Err(e) = result {
                        tracing::warn!(error = %e, "security log record not written");
                        dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "the security log writer stopped");
                    return;
                }
            }
        }
    });
    (tx, task)
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use std::time::Duration;

    use super::*;

    fn v4(n: u32) -> Source {
        Source::of(Some(IpAddr::V4(Ipv4Addr::from(n))))
    }

    #[test]
    fn a_source_gets_a_few_records_a_second_however_much_it_sends() {
        let start = Instant::now();
        let mut s = Sampler::new(2, 1_000, 64, start);
        let burst = (0..1_000).filter(|_| s.admit(v4(1), start)).count();
        assert_eq!(burst, 4, "a burst of twice the rate");
        let later = start + Duration::from_secs(10);
        let more = (0..1_000).filter(|_| s.admit(v4(1), later)).count();
        assert_eq!(more, 4, "refilled, never past the burst");
        assert!(s.admit(v4(2), later), "another source has its own bucket");
    }

    #[test]
    fn all_sources_together_are_bounded_too() {
        let start = Instant::now();
        let mut s = Sampler::new(2, 10, 100_000, start);
        let written = (0..10_000).filter(|&n| s.admit(v4(n), start)).count();
        assert_eq!(written, 20);
    }

    #[test]
    fn the_sampler_forgets_sources_past_its_bound() {
        let start = Instant::now();
        let mut s = Sampler::new(2, 10, 500, start);
        for n in 0..50_000 {
            s.admit(v4(n), start);
        }
        assert!(s.tracked() <= 500);
    }

    #[test]
    fn the_file_rotates_at_its_size_and_keeps_one_old_file() {
        let dir = std::env::temp_dir().join(format!("mg-seclog-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut files = Files::new(&dir, 100);
        let line = [b'x'; 39];
        for _ in 0..10 {
            let mut l = line.to_vec();
            l.push(b'\n');
            files.write(&l).unwrap();
        }
        let size = |p: &str| std::fs::metadata(dir.join(p)).unwrap().len();
        assert!(size(FILE) <= 100, "{}", size(FILE));
        assert!(size(OLD_FILE) <= 100, "{}", size(OLD_FILE));
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            2,
            "one current and one old file"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn records_are_written_as_json_lines_without_blocking_the_sender() {
        let dir = std::env::temp_dir().join(format!("mg-seclog-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let dropped = Arc::new(AtomicU64::new(0));
        let (tx, task) = spawn_writer(&dir, 1 << 20, dropped.clone());
        let r = Record::new(
            chrono::Utc::now(),
            "127.0.0.1",
            "POST",
            &format!("/v1/{}", "a".repeat(1_000)),
            "invalid_key",
            "curl/8",
            "req-1",
        );
        tx.try_send(r).unwrap();
        drop(tx);
        task.await.unwrap();
        let text = std::fs::read_to_string(dir.join(FILE)).unwrap();
        let v: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(v["reason"], "invalid_key");
        assert_eq!(v["source"], "127.0.0.1");
        assert_eq!(v["route"].as_str().unwrap().chars().count(), MAX_ROUTE);
        assert_eq!(dropped.load(Ordering::Relaxed), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
