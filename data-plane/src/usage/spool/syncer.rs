//! Background fsync for [`FsyncPolicy::Interval`](super::FsyncPolicy::Interval): the writer
//! marks a segment dirty after each group write and goes on; this thread syncs dirty segments
//! at most once per interval, so appenders never wait for the disk and a power loss takes at
//! most the last interval's records.

use std::collections::{btree_map, BTreeMap};
use std::fs::File;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Dirty {
    /// Segment number → this thread's handle to it, opened once per segment and kept while the
    /// segment is the newest or has unsynced writes (a segment rotated away may still need its
    /// last sync).
    handles: BTreeMap<u64, Arc<File>>,
    /// Segments written since their last sync (a few at most; the vector keeps its room).
    pending: Vec<u64>,
    /// The thread waits for a first dirty segment: only then does a writer wake it.
    waiting: bool,
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

    /// Notes that `file` (segment `segment`) has unsynced writes. A writer opens no handle
    /// (one per segment) and wakes no thread (only an idle syncer) unless it has to: under
    /// load this is a lock and two lookups.
    pub(super) fn mark_dirty(&self, segment: u64, file: &File) {
        let (lock, wake) = &*self.shared;
        let Ok(mut dirty) = lock.lock() else { return };
        if let btree_map::Entry::Vacant(slot) = dirty.handles.entry(segment) {
            match file.try_clone() {
                Ok(handle) => {
                    slot.insert(Arc::new(handle));
                }
                // Without a second handle, sync on the writer's thread rather than not at all.
                Err(_) => {
                    drop(dirty);
                    if let Err(e) = file.sync_data() {
                        tracing::error!(error = %e, "spool fsync failed");
                    }
                    return;
                }
            }
        }
        if !dirty.pending.contains(&segment) {
            dirty.pending.push(segment);
        }
        if dirty.waiting {
            dirty.waiting = false;
            wake.notify_one();
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

/// Takes the pending segments' handles (the list is left empty with its room) and lets go of
/// the handles no longer needed: those of older segments synced now or before.
fn take_pending(dirty: &mut Dirty, files: &mut Vec<(u64, Arc<File>)>) {
    let newest = dirty.handles.keys().next_back().copied();
    for segment in dirty.pending.drain(..) {
        if let Some(h) = dirty.handles.get(&segment) {
            files.push((segment, h.clone()));
        }
    }
    dirty.handles.retain(|s, _| Some(*s) == newest);
}

fn run(shared: &(Mutex<Dirty>, Condvar), every: Duration) {
    let (lock, wake) = shared;
    let mut last_sync: Option<Instant> = None;
    let mut files: Vec<(u64, Arc<File>)> = Vec::new();
    loop {
        {
            let Ok(mut dirty) = lock.lock() else { return };
            while dirty.pending.is_empty() && !dirty.stopped {
                dirty.waiting = true;
                dirty = match wake.wait(dirty) {
                    Ok(d) => d,
                    Err(_) => return,
                };
            }
            dirty.waiting = false;
            if dirty.pending.is_empty() {
                return;
            }
        }
        // At most one sync per interval: under load the pending set fills while this waits.
        if let Some(since) = last_sync.map(|t| t.elapsed()) {
            if since < every {
                std::thread::sleep(every - since);
            }
        }
        {
            let Ok(mut dirty) = lock.lock() else { return };
            take_pending(&mut dirty, &mut files);
        }
        for (segment, file) in files.drain(..) {
            if let Err(e) = file.sync_data() {
                tracing::error!(segment, error = %e, "spool fsync failed");
            }
        }
        last_sync = Some(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("mg-syncer-{name}-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn segment_file(dir: &std::path::Path, n: u64) -> File {
        File::create(dir.join(format!("{n}.seg"))).unwrap()
    }

    #[test]
    fn a_segment_is_opened_once_and_a_waiting_syncer_is_woken() {
        let dir = temp_dir("once");
        let file = segment_file(&dir, 1);
        let shared = Arc::new((Mutex::new(Dirty::default()), Condvar::new()));
        let syncer = Syncer {
            shared: shared.clone(),
        };
        shared.0.lock().unwrap().waiting = true;
        syncer.mark_dirty(1, &file);
        {
            let d = shared.0.lock().unwrap();
            assert!(!d.waiting, "the waiting syncer was woken (and told so)");
            assert_eq!(d.pending, [1]);
        }
        let first = shared.0.lock().unwrap().handles[&1].clone();
        syncer.mark_dirty(1, &file);
        let d = shared.0.lock().unwrap();
        assert!(Arc::ptr_eq(&first, &d.handles[&1]), "the handle is reused");
        assert_eq!(d.pending, [1], "listed once");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn taking_the_pending_segments_keeps_only_the_newest_segments_handle() {
        let dir = temp_dir("newest");
        let mut dirty = Dirty::default();
        for n in [3, 4] {
            dirty.handles.insert(n, Arc::new(segment_file(&dir, n)));
        }
        dirty.pending = vec![3, 4];
        let mut files = Vec::new();
        take_pending(&mut dirty, &mut files);
        let taken: Vec<u64> = files.iter().map(|(s, _)| *s).collect();
        assert_eq!(taken, [3, 4], "both are synced");
        assert!(dirty.pending.is_empty());
        assert_eq!(dirty.handles.keys().copied().collect::<Vec<_>>(), [4]);
        let _ = std::fs::remove_dir_all(dir);
    }
}
