//! Background fsync for [`FsyncPolicy::Interval`](super::FsyncPolicy::Interval): the writer
//! marks a segment dirty after each group write and goes on; this thread syncs dirty segments
//! at most once per interval, so appenders never wait for the disk and a power loss takes at
//! most the last interval's records.

use std::collections::BTreeMap;
use std::fs::File;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Dirty {
    /// Segment number → a handle to it (a segment rotated away may still need its last sync).
    files: BTreeMap<u64, File>,
    stopped: bool,
}

pub(super) struct Syncer {
    shared: Arc<(Mutex<Dirty>, Condvar)>,
}

impl Syncer {
    pub(super) fn start(every: Duration) -> std::io::Result<Syncer> {
        let shared = Arc::new((Mutex::new(Dirty::default()), Condvar::new()));
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name("usage-spool-fsync".into())
            .spawn(move || run(&thread_shared, every))?;
        Ok(Syncer { shared })
    }

    /// Notes that `file` (segment `segment`) has unsynced writes.
    pub(super) fn mark_dirty(&self, segment: u64, file: &File) {
        let (lock, wake) = &*self.shared;
        let Ok(mut dirty) = lock.lock() else { return };
        if dirty.files.contains_key(&segment) {
            return;
        }
        match file.try_clone() {
            Ok(handle) => {
                dirty.files.insert(segment, handle);
                wake.notify_one();
            }
            // Without a second handle, sync on the writer's thread rather than not at all.
            Err(_) => {
                drop(dirty);
                if let Err(e) = file.sync_data() {
                    tracing::error!(error = %e, "spool fsync failed");
                }
            }
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        let (lock, wake) = &*self.shared;
        if let Ok(mut dirty) = lock.lock() {
            dirty.stopped = true;
            wake.notify_one();
        }
    }
}

fn run(shared: &(Mutex<Dirty>, Condvar), every: Duration) {
    let (lock, wake) = shared;
    let mut last_sync: Option<Instant> = None;
    loop {
        let files = {
            let Ok(mut dirty) = lock.lock() else { return };
            while dirty.files.is_empty() && !dirty.stopped {
                dirty = match wake.wait(dirty) {
                    Ok(d) => d,
                    Err(_) => return,
                };
            }
            if dirty.files.is_empty() {
                return;
            }
            std::mem::take(&mut dirty.files)
        };
        // At most one sync per interval: under load the dirty set grows while this waits.
        if let Some(since) = last_sync.map(|t| t.elapsed()) {
            if since < every {
                std::thread::sleep(every - since);
            }
        }
        let files = {
            // Pick up segments dirtied while waiting.
            let mut files = files;
            if let Ok(mut dirty) = lock.lock() {
                files.append(&mut dirty.files);
            }
            files
        };
        for (segment, file) in files {
            if let Err(e) = file.sync_data() {
                tracing::error!(segment, error = %e, "spool fsync failed");
            }
        }
        last_sync = Some(Instant::now());
    }
}
