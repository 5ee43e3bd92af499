#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

fn event(n: u32) -> UsageEvent {
    UsageEvent {
        id: format!("event-{n}"),
        request_id: format!("req-{n}"),
        status: 200,
        input_tokens: u64::from(n),
        ..Default::default()
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mg-spool-{name}-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn appended_events_are_read_back_in_order() {
    let dir = temp_dir("order");
    let spool = Spool::open(&dir, SpoolOptions::with_fsync(FsyncPolicy::Never)).unwrap();
    for n in 0..50 {
        spool.append(&event(n)).await.unwrap();
    }
    let segment = spool.committed().borrow().segment;
    let (events, end) = read_records(&dir, segment, 0, 1000).unwrap();
    assert_eq!(events.len(), 50);
    assert_eq!(events[7].id, "event-7");
    assert_eq!(end, spool.committed().borrow().offset);
}

#[tokio::test]
async fn concurrent_appends_are_group_committed_without_loss() {
    let dir = temp_dir("group");
    let spool = Spool::open(&dir, SpoolOptions::with_fsync(FsyncPolicy::Never)).unwrap();
    let mut tasks = Vec::new();
    for n in 0..200 {
        let spool = spool.clone();
        tasks.push(tokio::spawn(async move { spool.append(&event(n)).await }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let segment = spool.committed().borrow().segment;
    let (events, _) = read_records(&dir, segment, 0, 10_000).unwrap();
    let mut ids: Vec<_> = events.iter().map(|e| e.id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 200);
}

#[tokio::test]
async fn torn_tail_is_cut_back_to_the_last_whole_record_on_open() {
    let dir = temp_dir("torn");
    let segment = {
        let spool = Spool::open(&dir, SpoolOptions::with_fsync(FsyncPolicy::Always)).unwrap();
        for n in 0..3 {
            spool.append(&event(n)).await.unwrap();
        }
        spool.committed().borrow().segment
    };
    let path = segment_path(&dir, segment);
    let whole = std::fs::metadata(&path).unwrap().len();
    // A crash mid-write: half of a fourth record's bytes reach the file.
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(&[40, 0, 0, 0, 1, 2, 3, 4, 9, 9, 9]).unwrap();
    drop(f);

    let reopened = Spool::open(&dir, SpoolOptions::with_fsync(FsyncPolicy::Never)).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), whole);
    let (events, _) = read_records(&dir, segment, 0, 100).unwrap();
    assert_eq!(events.len(), 3);
    assert!(
        reopened.committed().borrow().segment > segment,
        "new writes go to a new segment"
    );
}

#[test]
fn a_flipped_bit_stops_reading_instead_of_misparsing() {
    let dir = temp_dir("crc");
    let payload = wire::UsageEvent::from(&event(1)).encode_to_vec();
    let mut buf = Vec::new();
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    buf.extend_from_slice(&payload);
    let last = buf.len() - 1;
    buf[last] ^= 0x01;
    std::fs::write(segment_path(&dir, 1), &buf).unwrap();
    let (events, end) = read_records(&dir, 1, 0, 10).unwrap();
    assert!(events.is_empty());
    assert_eq!(end, 0);
}

#[tokio::test]
async fn an_all_zero_tail_after_power_loss_is_cut_not_parsed_as_records() {
    let dir = temp_dir("zeros");
    let segment = {
        let spool = Spool::open(&dir, SpoolOptions::with_fsync(FsyncPolicy::Always)).unwrap();
        spool.append(&event(1)).await.unwrap();
        spool.committed().borrow().segment
    };
    let path = segment_path(&dir, segment);
    let whole = std::fs::metadata(&path).unwrap().len();
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(&[0u8; 64]).unwrap();
    drop(f);
    let (events, end) = read_records(&dir, segment, 0, 100).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(end, whole);
    Spool::open(&dir, SpoolOptions::with_fsync(FsyncPolicy::Never)).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), whole);
}

#[tokio::test]
async fn flush_waits_for_earlier_appends_and_writes_nothing_itself() {
    let dir = temp_dir("flush");
    let spool = Spool::open(&dir, SpoolOptions::with_fsync(FsyncPolicy::Never)).unwrap();
    for n in 0..10 {
        spool.append_detached(&event(n));
    }
    spool.flush().await.unwrap();
    let segment = spool.committed().borrow().segment;
    let (events, end) = read_records(&dir, segment, 0, 100).unwrap();
    assert_eq!(events.len(), 10);
    assert_eq!(
        end,
        std::fs::metadata(segment_path(&dir, segment))
            .unwrap()
            .len()
    );
}

#[tokio::test]
async fn an_event_over_the_record_limit_is_refused_not_written() {
    let dir = temp_dir("large");
    let spool = Spool::open(&dir, SpoolOptions::with_fsync(FsyncPolicy::Never)).unwrap();
    let huge = UsageEvent {
        error_message: "x".repeat(MAX_RECORD as usize + 1),
        ..event(1)
    };
    assert!(matches!(
        spool.append(&huge).await,
        Err(SpoolError::TooLarge(_))
    ));
    spool.append(&event(2)).await.unwrap();
    let segment = spool.committed().borrow().segment;
    let (events, _) = read_records(&dir, segment, 0, 100).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].id, "event-2");
}

#[test]
fn fsync_policies_parse_from_their_flag_spelling() {
    assert_eq!(FsyncPolicy::parse("always"), Some(FsyncPolicy::Always));
    assert_eq!(FsyncPolicy::parse("never"), Some(FsyncPolicy::Never));
    assert_eq!(
        FsyncPolicy::parse("interval:10ms"),
        Some(FsyncPolicy::DEFAULT)
    );
    assert_eq!(FsyncPolicy::parse("interval:0ms"), None);
    assert_eq!(FsyncPolicy::parse("interval:10"), None);
    assert_eq!(FsyncPolicy::parse("sometimes"), None);
    assert_eq!(FsyncPolicy::DEFAULT.to_string(), "interval:10ms");
}

#[tokio::test]
async fn interval_fsync_acknowledges_appends_without_waiting_for_the_disk() {
    let dir = temp_dir("interval");
    let spool = Spool::open(
        &dir,
        SpoolOptions::with_fsync(FsyncPolicy::Interval(Duration::from_millis(50))),
    )
    .unwrap();
    for n in 0..20 {
        spool.append(&event(n)).await.unwrap();
    }
    let segment = spool.committed().borrow().segment;
    let (events, _) = read_records(&dir, segment, 0, 100).unwrap();
    assert_eq!(events.len(), 20);
}

#[tokio::test]
async fn the_disk_bound_refuses_or_counts_once_reached_and_frees_with_shipped_segments() {
    let dir = temp_dir("bound");
    let options = SpoolOptions {
        fsync: FsyncPolicy::Never,
        max_bytes: 200,
        when_full: WhenFull::Reject,
    };
    let spool = Spool::open(&dir, options).unwrap();
    assert_eq!(spool.admit(), Admission::Metered);
    while spool.stats().disk_bytes.load(Ordering::Relaxed) < 200 {
        spool.append(&event(1)).await.unwrap();
    }
    assert_eq!(spool.admit(), Admission::Refused);
    assert_eq!(spool.stats().refused.load(Ordering::Relaxed), 1);

    // Reopened with the other policy, existing segments still count against the bound.
    drop(spool);
    let spool = Spool::open(
        &dir,
        SpoolOptions {
            when_full: WhenFull::ServeUnmetered,
            ..options
        },
    )
    .unwrap();
    assert_eq!(spool.admit(), Admission::Unmetered);
    assert_eq!(spool.stats().unmetered.load(Ordering::Relaxed), 1);
    for s in segments(&dir).unwrap() {
        spool.remove_segment(s).unwrap();
    }
    assert_eq!(spool.stats().disk_bytes.load(Ordering::Relaxed), 0);
    assert_eq!(spool.admit(), Admission::Metered);
}

#[tokio::test]
async fn appends_are_written_by_the_appending_task_without_a_writer_thread() {
    let dir = temp_dir("no-writer-thread");
    let spool = Spool::open(&dir, SpoolOptions::with_fsync(FsyncPolicy::Never)).unwrap();
    spool.append(&event(1)).await.unwrap();
    // The record is on disk when `append` returns, and no thread was started to write it.
    let segment = spool.committed().borrow().segment;
    assert_eq!(read_records(&dir, segment, 0, 10).unwrap().0.len(), 1);
    let writers = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).ok())
        .filter(|name| name.starts_with("usage-spool-wri"))
        .count();
    assert_eq!(writers, 0, "no spool writer thread");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_cancelled_while_queued_neither_lose_others_nor_stall_the_log() {
    let dir = temp_dir("cancelled");
    let spool = Spool::open(&dir, SpoolOptions::with_fsync(FsyncPolicy::Never)).unwrap();
    let mut tasks = Vec::new();
    for n in 0..400 {
        let spool = spool.clone();
        tasks.push(tokio::spawn(async move { spool.append(&event(n)).await }));
    }
    // Half the requests go away mid-append (their futures are dropped wherever they are).
    for t in tasks.iter().step_by(2) {
        t.abort();
    }
    let mut acknowledged = Vec::new();
    for (n, t) in tasks.into_iter().enumerate() {
        if let Ok(result) = t.await {
            result.unwrap();
            acknowledged.push(format!("event-{n}"));
        }
    }
    // The log still takes appends, and every acknowledged event is on disk.
    spool.append(&event(1000)).await.unwrap();
    spool.flush().await.unwrap();
    let segment = spool.committed().borrow().segment;
    let (events, _) = read_records(&dir, segment, 0, 10_000).unwrap();
    let ids: std::collections::HashSet<_> = events.iter().map(|e| e.id.clone()).collect();
    for id in &acknowledged {
        assert!(
            ids.contains(id),
            "{id} was acknowledged but is not in the log"
        );
    }
    assert!(ids.contains("event-1000"));
}

#[test]
fn a_detached_append_is_written_before_it_returns_when_no_write_is_in_progress() {
    let dir = temp_dir("detached");
    let spool = Spool::open(&dir, SpoolOptions::with_fsync(FsyncPolicy::Never)).unwrap();
    // No runtime at all: the path a request's `Drop` takes.
    spool.append_detached(&event(7));
    let segment = spool.committed().borrow().segment;
    let (events, _) = read_records(&dir, segment, 0, 10).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].id, "event-7");
}

#[tokio::test]
async fn batches_read_past_the_read_step_come_back_whole_in_order_and_without_gaps() {
    let dir = temp_dir("steps");
    let spool = Spool::open(&dir, SpoolOptions::with_fsync(FsyncPolicy::Never)).unwrap();
    // Small records around a record larger than one read step, the whole well past two steps.
    let big = UsageEvent {
        error_message: "x".repeat(READ_STEP + 1000),
        ..event(1000)
    };
    let small = |n| UsageEvent {
        error_message: "y".repeat(100),
        ..event(n)
    };
    for n in 0..6000 {
        spool.append(&small(n)).await.unwrap();
        if n == 1000 {
            spool.append(&big).await.unwrap();
        }
    }
    let committed = *spool.committed().borrow();
    assert!(committed.offset > 2 * READ_STEP as u64);

    let (mut offset, mut ids) = (0, Vec::new());
    loop {
        let (events, end) = read_records(&dir, committed.segment, offset, 700).unwrap();
        if events.is_empty() {
            break;
        }
        assert!(events.len() <= 700);
        ids.extend(events.into_iter().map(|e| e.id));
        offset = end;
    }
    let mut expected: Vec<String> = (0..6000).map(|n| format!("event-{n}")).collect();
    expected.insert(1001, "event-1000".into());
    assert_eq!(ids, expected);
    assert_eq!(offset, committed.offset);
}
