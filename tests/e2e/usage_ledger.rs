//! The usage ledger over time: weekly partitions made ahead of time on Postgres, retention that
//! drops whole partitions (and waits for export sinks), deduplication by event id across
//! partitions, and a pull consumer that pages while many nodes ship at once and still sees every
//! event exactly once in commit order.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use modelgate_control_plane::service::usage::partitions::{self, Maintained, WIDTH_MS};
use modelgate_proto::usage::v1::{UsageBatch, UsageEvent};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::json;

use crate::support::{Gateway, TestDb};
use crate::usage_ingest::{daily, event_at, new_key, send, Key};

const WEEK_MS: i64 = 7 * 86_400_000;

/// An event whose UUIDv7 id was made at `id_ms` (a data plane's clock then).
fn event_made_at(key: &Key, request_id: &str, cost: i64, id_ms: i64) -> UsageEvent {
    let ts = uuid::Timestamp::from_unix(
        uuid::NoContext,
        u64::try_from(id_ms / 1000).unwrap(),
        u32::try_from(id_ms % 1000).unwrap() * 1_000_000,
    );
    let mut e = event_at(key, request_id, cost, id_ms);
    e.id = uuid::Uuid::new_v7(ts).to_string();
    e
}

fn batch(node: &str, events: Vec<UsageEvent>) -> UsageBatch {
    UsageBatch {
        batch_id: uuid::Uuid::now_v7().to_string(),
        node_id: node.to_owned(),
        resent: false,
        events,
    }
}

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap()
}

/// The partition table holding event `id`.
async fn partition_of(gw: &Gateway, id: &str) -> String {
    let row = gw
        .cp
        .as_ref()
        .unwrap()
        .services
        .db
        .query_one(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT tableoid::regclass::text AS p FROM usage_events WHERE id = $1",
            [id.into()],
        ))
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("event {id} is not stored"));
    row.try_get("", "p").unwrap()
}

/// Every event id the pull API returns for `request_id`.
async fn pulled_ids(gw: &Gateway, request_id: &str) -> HashSet<String> {
    let (status, page) = gw
        .admin(
            reqwest::Method::GET,
            &format!("/usage/events?request_id={request_id}&limit=500"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn maintain(gw: &Gateway, now_ms: i64, retention: Option<Duration>) -> Maintained {
    partitions::maintain(&gw.cp.as_ref().unwrap().services.db, at(now_ms), retention)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_postgres_ledger_is_partitioned_by_week_ahead_of_time_and_retention_drops_whole_weeks()
{
    let db = TestDb::postgres().await;
    let url = db.url.clone();
    let gw = Gateway::start_on(db, url).await;
    let k = new_key(&gw, None).await;
    let now = Utc::now().timestamp_millis();
    let span = |ms: i64| ms - ms.rem_euclid(WIDTH_MS);
    let name = |ms: i64| format!("usage_events_p{}", at(span(ms)).format("%Y%m%d"));

    // Started control planes have this week and the next ones ready.
    let ready: Vec<String> = partitions::list(&gw.cp.as_ref().unwrap().services.db)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    for week in 0..=partitions::AHEAD {
        assert!(ready.contains(&name(now + week * WIDTH_MS)), "{ready:?}");
    }
    // Maintenance makes each span ahead once (here as a control plane did six weeks ago).
    let old = now - 6 * WEEK_MS;
    let made = maintain(&gw, old, None).await;
    assert_eq!(
        made.created,
        (0..=partitions::AHEAD)
            .map(|w| name(old + w * WIDTH_MS))
            .collect::<Vec<_>>()
    );
    assert_eq!(maintain(&gw, old, None).await, Maintained::default());

    // Events land in the week their id was made; an id outside every week (far ahead, or not
    // a UUIDv7) in the default partition.
    let request_id = format!("weeks-{}", uuid::Uuid::now_v7());
    let old_events: Vec<UsageEvent> = (0..3)
        .map(|i| event_made_at(&k, &request_id, 10 + i, old + i * 60_000))
        .collect();
    let new_events: Vec<UsageEvent> = (0..2)
        .map(|i| event_made_at(&k, &request_id, 20 + i, now - 60_000 + i))
        .collect();
    let far = now + 5 * WEEK_MS;
    let mut far_event = event_made_at(&k, &request_id, 30, far);
    far_event.started_at_ms = now;
    let mut legacy = event_at(&k, &request_id, 31, now);
    legacy.id = format!("legacy-{}", uuid::Uuid::now_v7().simple());
    let mut all = old_events.clone();
    all.extend(new_events.iter().cloned());
    all.push(far_event.clone());
    all.push(legacy.clone());
    let acks = send(&gw, vec![batch("node-a", all.clone())]).await;
    assert_eq!((acks[0].inserted, acks[0].duplicates), (7, 0));
    for e in &old_events {
        assert_eq!(partition_of(&gw, &e.id).await, name(old));
    }
    for e in &new_events {
        assert_eq!(partition_of(&gw, &e.id).await, name(now));
    }
    assert_eq!(
        partition_of(&gw, &far_event.id).await,
        "usage_events_default"
    );
    assert_eq!(partition_of(&gw, &legacy.id).await, "usage_events_default");

    // The far week's partition, once made, takes its event out of the default partition.
    let made = maintain(&gw, far, None).await;
    assert!(made.created.contains(&name(far)), "{made:?}");
    assert_eq!(partition_of(&gw, &far_event.id).await, name(far));

    // Deduplication by id holds in every partition, old, current, moved and default alike.
    let acks = send(&gw, vec![batch("node-b", all.clone())]).await;
    assert_eq!((acks[0].inserted, acks[0].duplicates), (0, 7));
    let before = daily(&gw, &format!("key_id={}", k.id)).await;

    // Retention of three weeks: the old weeks are past it, but a sink that has not delivered
    // their events holds the week that has some (the empty ones go).
    let sink = gw
        .create(
            "/usage/sinks",
            json!({"name": "behind", "kind": "webhook", "url": "http://127.0.0.1:9/none"}),
        )
        .await;
    let held = maintain(&gw, now, Some(Duration::from_millis(3 * WEEK_MS as u64))).await;
    assert!(!held.dropped.contains(&name(old)), "{held:?}");
    assert!(held.kept_for_export.contains(&name(old)), "{held:?}");
    assert_eq!(pulled_ids(&gw, &request_id).await.len(), 7);
    let (status, _) = gw
        .admin(
            reqwest::Method::DELETE,
            &format!("/usage/sinks/{}", sink["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, 204);

    let done = maintain(&gw, now, Some(Duration::from_millis(3 * WEEK_MS as u64))).await;
    assert!(done.dropped.contains(&name(old)), "{done:?}");
    assert!(done.dropped.iter().all(|p| *p != name(now)), "{done:?}");
    let left: Vec<String> = partitions::list(&gw.cp.as_ref().unwrap().services.db)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert!(!left.contains(&name(old)), "{left:?}");
    assert!(left.contains(&name(now)), "{left:?}");
    let kept = pulled_ids(&gw, &request_id).await;
    let expected: HashSet<String> = new_events
        .iter()
        .chain([&far_event, &legacy])
        .map(|e| e.id.clone())
        .collect();
    assert_eq!(kept, expected);
    // Retention thins the ledger, never the aggregates.
    assert_eq!(daily(&gw, &format!("key_id={}", k.id)).await, before);
    gw.shutdown().await;
}

#[tokio::test]
async fn retention_removes_events_older_than_the_window_and_keeps_the_rest() {
    let gw = Gateway::start().await;
    let k = new_key(&gw, None).await;
    let now = Utc::now().timestamp_millis();
    let request_id = format!("retention-{}", uuid::Uuid::now_v7());
    let old: Vec<UsageEvent> = (0..4)
        .map(|i| event_made_at(&k, &request_id, i, now - 40 * 86_400_000 + i))
        .collect();
    let recent: Vec<UsageEvent> = (0..3)
        .map(|i| event_made_at(&k, &request_id, 10 + i, now - 86_400_000 + i))
        .collect();
    let mut all = old.clone();
    all.extend(recent.iter().cloned());
    let acks = send(&gw, vec![batch("node-a", all)]).await;
    assert_eq!(acks[0].inserted, 7);
    let before = daily(&gw, &format!("key_id={}", k.id)).await;

    let done = maintain(&gw, now, Some(Duration::from_secs(30 * 86_400))).await;
    assert_eq!(done.deleted_rows, 4, "{done:?}");
    let expected: HashSet<String> = recent.iter().map(|e| e.id.clone()).collect();
    assert_eq!(pulled_ids(&gw, &request_id).await, expected);
    assert_eq!(daily(&gw, &format!("key_id={}", k.id)).await, before);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_consumer_paging_while_eight_nodes_ship_sees_every_event_once_in_commit_order() {
    let gw = Gateway::start().await;
    let k = new_key(&gw, None).await;
    let nodes = 8;
    let batches_per_node = 6;
    let per_batch = 50;
    let total = nodes * batches_per_node * per_batch;

    // The consumer follows the cursor from the start, as an exporter does: it resumes after
    // the last sequence number it saw. An event committed with a lower number than one already
    // seen would be skipped for ever, and the wait below would time out.
    let consumer = async {
        let mut seen = HashSet::new();
        let mut seqs: Vec<i64> = Vec::new();
        let started = std::time::Instant::now();
        while seen.len() < total {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "timed out with {} of {total} events pulled",
                seen.len()
            );
            let after = seqs.last().copied().unwrap_or(0);
            let path = format!("/usage/events?limit=100&after={after}");
            let (status, page) = gw.admin(reqwest::Method::GET, &path, None).await;
            assert_eq!(status, 200, "{page}");
            let rows = page["data"].as_array().unwrap();
            for r in rows {
                assert!(seen.insert(r["id"].as_str().unwrap().to_owned()), "{r}");
                seqs.push(r["seq"].as_i64().unwrap());
            }
            if rows.is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        (seen, seqs)
    };
    let mut senders = Vec::new();
    let mut sent = HashSet::new();
    for n in 0..nodes {
        let node = format!("node-{n}");
        let batches: Vec<UsageBatch> = (0..batches_per_node)
            .map(|b| {
                let events: Vec<UsageEvent> = (0..per_batch)
                    .map(|i| {
                        event_at(
                            &k,
                            "paged",
                            (n * 10_000 + b * 100 + i) as i64,
                            Utc::now().timestamp_millis(),
                        )
                    })
                    .collect();
                sent.extend(events.iter().map(|e| e.id.clone()));
                batch(&node, events)
            })
            .collect();
        let gw = &gw;
        // One batch in flight per node, as a shipper sends.
        senders.push(async move {
            for b in batches {
                send(gw, vec![b]).await;
            }
        });
    }
    let (_, (seen, seqs)) = tokio::join!(futures_util::future::join_all(senders), consumer);
    assert_eq!(seen, sent);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    gw.shutdown().await;
}
