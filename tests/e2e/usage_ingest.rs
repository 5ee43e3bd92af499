//! Usage ingest over the real gRPC stream: replays are stored and aggregated once, the pull API
//! pages in commit order, and the daily aggregates always equal the sum of the raw rows.

use std::collections::{BTreeMap, HashSet};

use modelgate_proto::usage::v1::{UsageAck, UsageBatch, UsageEvent};
use serde_json::{json, Value};
use tokio_stream::StreamExt;

use crate::support::Gateway;

/// A gateway key that exists (ingest quarantines events of unknown keys).
pub struct Key {
    pub id: String,
    pub team_id: String,
}

/// A key in `team_id`, or in a new team.
pub async fn new_key(gw: &Gateway, team_id: Option<&str>) -> Key {
    let team_id = match team_id {
        Some(t) => t.to_owned(),
        None => gw
            .create(
                "/teams",
                json!({"name": format!("team-{}", uuid::Uuid::now_v7().simple())}),
            )
            .await["id"]
            .as_str()
            .unwrap()
            .to_owned(),
    };
    let key = gw
        .create(
            "/keys",
            json!({"team_id": team_id, "name": "usage", "environment": "prod"}),
        )
        .await;
    Key {
        id: key["id"].as_str().unwrap().to_owned(),
        team_id,
    }
}

/// An event a genuine node could have reported for `key`, started `started_at_ms`.
pub fn event_at(key: &Key, request_id: &str, cost: i64, started_at_ms: i64) -> UsageEvent {
    UsageEvent {
        id: uuid::Uuid::now_v7().to_string(),
        request_id: request_id.to_owned(),
        key_id: key.id.clone(),
        team_id: key.team_id.clone(),
        environment: "prod".into(),
        status: 200,
        endpoint: "chat.completions".into(),
        served_model: "gpt-x".into(),
        started_at_ms,
        ended_at_ms: started_at_ms + 1_500,
        input_tokens: 10,
        output_tokens: 5,
        cost_micros: cost,
        schema_version: 2,
        ..Default::default()
    }
}

fn event(key: &Key, request_id: &str, cost: i64) -> UsageEvent {
    event_at(key, request_id, cost, 1_763_900_000_000)
}

/// Sends `batches` on one stream as the node they name (its certificate from the test fleet),
/// each event stamped with that node as a data plane does, and returns their acknowledgements.
pub async fn send(gw: &Gateway, batches: Vec<UsageBatch>) -> Vec<UsageAck> {
    send_to(gw.grpc_addr, batches).await
}

/// [`send`] to the control plane whose gRPC address is `grpc_addr`.
pub async fn send_to(
    grpc_addr: std::net::SocketAddr,
    mut batches: Vec<UsageBatch>,
) -> Vec<UsageAck> {
    let node = batches[0].node_id.clone();
    for b in &mut batches {
        for e in &mut b.events {
            e.node_id = b.node_id.clone();
        }
    }
    let mut client = crate::support::usage_client(grpc_addr, &node).await;
    let n = batches.len();
    let mut acks = client
        .report(tokio_stream::iter(batches))
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(acks.next().await.unwrap().unwrap());
    }
    out
}

pub async fn daily(gw: &Gateway, query: &str) -> Vec<Value> {
    let (status, v) = gw
        .admin(reqwest::Method::GET, &format!("/usage/daily?{query}"), None)
        .await;
    assert_eq!(status, 200, "{v}");
    v["data"].as_array().unwrap().clone()
}

/// The stored events of `request_id` (one page of up to 100).
async fn stored_events(gw: &Gateway, request_id: &str) -> Vec<Value> {
    let (status, page) = gw
        .admin(
            reqwest::Method::GET,
            &format!("/usage/events?request_id={request_id}&limit=100"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    page["data"].as_array().unwrap().clone()
}

/// A batch from the node `test-node`.
fn batch(batch_id: &str, events: Vec<UsageEvent>) -> UsageBatch {
    UsageBatch {
        batch_id: batch_id.into(),
        node_id: "test-node".into(),
        resent: false,
        events,
    }
}

/// Runs one scenario as two tests: on the test database (Postgres in CI) and on a SQLite file,
/// whatever the environment names — ingest takes a different path on each.
macro_rules! on_both_databases {
    ($scenario:ident => $on_test_db:ident, $on_sqlite:ident) => {
        #[tokio::test]
        async fn $on_test_db() {
            $scenario(Gateway::start().await).await;
        }

        #[tokio::test]
        async fn $on_sqlite() {
            $scenario(Gateway::start_on_sqlite().await).await;
        }
    };
}

on_both_databases!(
    sent_three_times =>
    the_same_usage_batch_sent_three_times_is_stored_and_aggregated_once,
    the_same_usage_batch_sent_three_times_is_stored_and_aggregated_once_on_sqlite
);

async fn sent_three_times(gw: Gateway) {
    let k = new_key(&gw, None).await;
    let request_id = format!("replay-{}", uuid::Uuid::now_v7());
    let events = vec![
        event(&k, &request_id, 100),
        event(&k, &request_id, 250),
        event(&k, &request_id, 7),
    ];
    let acks = send(&gw, vec![batch("first", events.clone())]).await;
    assert_eq!((acks[0].inserted, acks[0].duplicates), (3, 0));
    let key = format!("key_id={}", k.id);
    let after_first = daily(&gw, &key).await;
    assert_eq!(after_first.len(), 1);
    assert_eq!(after_first[0]["requests"], 3);
    assert_eq!(after_first[0]["cost_micros"], 357);

    let again = vec![batch("again", events.clone()), batch("and-again", events)];
    let acks = send(&gw, again).await;
    for ack in &acks {
        assert_eq!((ack.inserted, ack.duplicates), (0, 3), "{}", ack.batch_id);
    }
    assert_eq!(stored_events(&gw, &request_id).await.len(), 3);
    assert_eq!(
        daily(&gw, &key).await,
        after_first,
        "a replay must not change the aggregates"
    );
    gw.shutdown().await;
}

on_both_databases!(
    mixing_stored_and_new =>
    a_batch_mixing_stored_and_new_events_stores_only_the_new_ones_and_counts_them_once,
    a_batch_mixing_stored_and_new_events_stores_only_the_new_ones_and_counts_them_once_on_sqlite
);

async fn mixing_stored_and_new(gw: Gateway) {
    // The first attempt at such a group (binary COPY on Postgres, plain INSERTs on SQLite)
    // fails on the stored ids and the group is stored again by INSERT … ON CONFLICT: the new
    // events stored once, the old ones counted as duplicates, nothing doubled.
    let k = new_key(&gw, None).await;
    let request_id = format!("mixed-{}", uuid::Uuid::now_v7());
    let old = vec![event(&k, &request_id, 100), event(&k, &request_id, 20)];
    let acks = send(&gw, vec![batch("old", old.clone())]).await;
    assert_eq!((acks[0].inserted, acks[0].duplicates), (2, 0));
    let new: Vec<UsageEvent> = (1..=3).map(|c| event(&k, &request_id, c)).collect();
    let mixed = [old.clone(), new.clone()].concat();
    let acks = send(&gw, vec![batch("mixed", mixed)]).await;
    assert_eq!((acks[0].inserted, acks[0].duplicates), (3, 2));
    // New events ahead of stored ones: the first attempt's statement has written the new rows
    // when it meets a stored id, and its whole transaction is void all the same.
    let newer: Vec<UsageEvent> = (4..=6).map(|c| event(&k, &request_id, c)).collect();
    let mixed = [newer.clone(), old.clone()].concat();
    let acks = send(&gw, vec![batch("new-first", mixed)]).await;
    assert_eq!((acks[0].inserted, acks[0].duplicates), (3, 2));

    let rows = stored_events(&gw, &request_id).await;
    let ids: HashSet<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    let sent: HashSet<&str> = old
        .iter()
        .chain(&new)
        .chain(&newer)
        .map(|e| e.id.as_str())
        .collect();
    assert_eq!(ids, sent, "every event stored, each once");
    let seqs: HashSet<i64> = rows.iter().map(|r| r["seq"].as_i64().unwrap()).collect();
    assert_eq!(
        seqs.len(),
        8,
        "each stored event has its own sequence number"
    );
    let day = daily(&gw, &format!("key_id={}", k.id)).await;
    assert_eq!(day[0]["requests"], 8);
    assert_eq!(day[0]["cost_micros"], 141);
    gw.shutdown().await;
}

/// The control plane's count of usage batches whose bulk load the database refused.
async fn refused_copies(gw: &Gateway) -> u64 {
    let addr = gw
        .cp()
        .metrics_addr
        .expect("the test control plane serves metrics");
    crate::metering::metric(
        &format!("http://{addr}"),
        "modelgate_cp_usage_copy_refused_total",
    )
    .await
}

on_both_databases!(
    replayed_marked_and_unmarked =>
    a_replay_its_node_marks_as_resent_is_stored_without_a_refused_copy,
    a_replay_its_node_marks_as_resent_is_stored_without_a_refused_copy_on_sqlite
);

async fn replayed_marked_and_unmarked(gw: Gateway) {
    let k = new_key(&gw, None).await;
    let request_id = format!("resent-{}", uuid::Uuid::now_v7());
    let events = vec![event(&k, &request_id, 100), event(&k, &request_id, 250)];
    let acks = send(&gw, vec![batch("first", events.clone())]).await;
    assert_eq!((acks[0].inserted, acks[0].duplicates), (2, 0));
    let before = refused_copies(&gw).await;

    let resent = UsageBatch {
        resent: true,
        ..batch("sent-again", events.clone())
    };
    let acks = send(&gw, vec![resent]).await;
    assert_eq!((acks[0].inserted, acks[0].duplicates), (0, 2));
    assert_eq!(
        refused_copies(&gw).await,
        before,
        "a batch marked as resent goes straight to INSERT"
    );

    // The same replay unmarked: its bulk load (COPY on Postgres, a plain INSERT on SQLite) is
    // refused first, then INSERT … ON CONFLICT stores it.
    let acks = send(&gw, vec![batch("unmarked", events)]).await;
    assert_eq!((acks[0].inserted, acks[0].duplicates), (0, 2));
    assert_eq!(refused_copies(&gw).await, before + 1);

    assert_eq!(stored_events(&gw, &request_id).await.len(), 2);
    let day = daily(&gw, &format!("key_id={}", k.id)).await;
    assert_eq!(
        (&day[0]["requests"], &day[0]["cost_micros"]),
        (&json!(2), &json!(350))
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_sequence_block_abandoned_in_an_outage_stops_holding_back_the_pull_api_without_new_ingest(
) {
    use sea_orm::ConnectionTrait;
    let gw = Gateway::start().await;
    let db = &gw.cp().services.db;
    if db.get_database_backend() != sea_orm::DbBackend::Postgres {
        // SQLite numbers events inside its one write transaction: no block is ever pending.
        gw.shutdown().await;
        return;
    }
    let k = new_key(&gw, None).await;
    let request_id = format!("abandoned-{}", uuid::Uuid::now_v7());
    let acks = send(&gw, vec![batch("b", vec![event(&k, &request_id, 5)])]).await;
    assert_eq!(acks[0].inserted, 1);
    let seq = stored_events(&gw, &request_id).await[0]["seq"]
        .as_i64()
        .unwrap();
    // What a writer leaves behind when the database goes away between taking a block and
    // storing under it: a pending block, taken two minutes ago, at or below the stored event.
    db.execute_unprepared(&format!(
        "INSERT INTO usage_seq_pending (first_seq, last_seq, taken_at_ms) VALUES ({seq}, {seq}, \
         (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::int8 - 120000)"
    ))
    .await
    .unwrap();
    assert!(
        stored_events(&gw, &request_id).await.is_empty(),
        "readers wait for a pending block below an event"
    );
    // No batch arrives after it: the writer's sweep alone gives the block up.
    crate::support::eventually(
        std::time::Duration::from_secs(20),
        "the abandoned block to be swept",
        || async { (stored_events(&gw, &request_id).await.len() == 1).then_some(()) },
    )
    .await;
    gw.shutdown().await;
}

on_both_databases!(
    every_field_read_back =>
    every_field_of_a_stored_event_reads_back_as_the_node_reported_it,
    every_field_of_a_stored_event_reads_back_as_the_node_reported_it_on_sqlite
);

async fn every_field_read_back(gw: Gateway) {
    use modelgate_proto::usage::v1::Attempt;
    let k = new_key(&gw, None).await;
    let request_id = format!("fields-{}", uuid::Uuid::now_v7());
    let started = 1_763_900_000_123;
    let attempt = |deployment: &str, status: u32, class: &str, message: &str| Attempt {
        deployment_id: deployment.into(),
        provider_id: "p1".into(),
        model: "m1".into(),
        status,
        error_class: class.into(),
        latency_us: 700,
        started_at_ms: started + 1,
        error_message: message.into(),
    };
    let sent = UsageEvent {
        request_id: request_id.clone(),
        first_byte_at_ms: started + 40,
        ended_at_ms: started + 1_234,
        region: "eu-west".into(),
        user_id: "user-7".into(),
        application: "app \"quoted\" \\ tab\there".into(),
        requested_model: "alias-1".into(),
        provider_id: "p1".into(),
        served_model: "m1".into(),
        deployment_id: "p1/m1".into(),
        attempts: vec![
            attempt("p0/m0", 503, "provider_error", "503"),
            attempt("p1/m1", 200, "", ""),
        ],
        status: 429,
        error_class: "rate_limited".into(),
        // Postgres text cannot hold NUL: it is stored as U+FFFD.
        error_message: "slow down\0now, ünïcode ✓".into(),
        latency_us: 1_234_567,
        ttfb_us: 40_001,
        input_tokens: 11,
        output_tokens: 12,
        cached_input_tokens: 13,
        reasoning_tokens: 14,
        images: 15,
        media_ms: 16,
        characters: 17,
        cost_micros: 999_999_999_999,
        price_version: 18,
        streamed: true,
        estimated: true,
        fallback_used: true,
        traffic_class: "batch".into(),
        cost_flag: "price_missing".into(),
        cache_hit: true,
        trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
        ..event_at(&k, &request_id, 0, started)
    };
    let acks = send(&gw, vec![batch("fields", vec![sent.clone()])]).await;
    assert_eq!(acks[0].inserted, 1, "{:?}", acks[0]);
    let rows = stored_events(&gw, &request_id).await;
    let row = &rows[0];
    let expected = json!({
        "id": sent.id,
        "schema_version": 2,
        "request_id": request_id,
        "started_at_ms": started,
        "first_byte_at_ms": started + 40,
        "ended_at_ms": started + 1_234,
        "node_id": "test-node",
        "region": "eu-west",
        "key_id": k.id,
        "team_id": k.team_id,
        "user_id": "user-7",
        "application": "app \"quoted\" \\ tab\there",
        "environment": "prod",
        "endpoint": "chat.completions",
        "requested_model": "alias-1",
        "provider_id": "p1",
        "served_model": "m1",
        "deployment_id": "p1/m1",
        "status": 429,
        "error_class": "rate_limited",
        "error_message": "slow down\u{FFFD}now, ünïcode ✓",
        "latency_us": 1_234_567,
        "ttfb_us": 40_001,
        "input_tokens": 11,
        "output_tokens": 12,
        "cached_input_tokens": 13,
        "reasoning_tokens": 14,
        "images": 15,
        "media_ms": 16,
        "characters": 17,
        "cost_micros": 999_999_999_999i64,
        "price_version": 18,
        "streamed": true,
        "estimated": true,
        "fallback_used": true,
        "traffic_class": "batch",
        "cost_flag": "price_missing",
        "cache_hit": true,
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
    });
    for (field, value) in expected.as_object().unwrap() {
        assert_eq!(&row[field], value, "field {field} of {row}");
    }
    let attempts = row["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{row}");
    assert_eq!(attempts[0]["deployment_id"], "p0/m0");
    assert_eq!(attempts[0]["status"], 503);
    assert_eq!(attempts[0]["error_class"], "provider_error");
    assert_eq!(attempts[0]["error_message"], "503");
    assert_eq!(attempts[0]["started_at_ms"], started + 1);
    assert_eq!(attempts[1]["deployment_id"], "p1/m1");
    assert_eq!(attempts[1]["latency_us"], 700);
    assert!(row["seq"].as_i64().unwrap() > 0);

    // A success has no error class: stored as NULL, read back as null.
    let ok = event(&k, &request_id, 1);
    send(&gw, vec![batch("ok", vec![ok.clone()])]).await;
    let rows = stored_events(&gw, &request_id).await;
    let ok_row = rows.iter().find(|r| r["id"] == ok.id.as_str()).unwrap();
    assert_eq!(ok_row["error_class"], Value::Null, "{ok_row}");
    gw.shutdown().await;
}

#[tokio::test]
async fn an_id_repeated_inside_one_batch_is_counted_once() {
    let gw = Gateway::start().await;
    let k = new_key(&gw, None).await;
    let request_id = format!("dup-{}", uuid::Uuid::now_v7());
    let e = event(&k, &request_id, 40);
    let acks = send(
        &gw,
        vec![UsageBatch {
            batch_id: "b".into(),
            node_id: "n".into(),
            resent: false,
            events: vec![e.clone(), e.clone(), e],
        }],
    )
    .await;
    assert_eq!((acks[0].inserted, acks[0].duplicates), (1, 2));
    let rows = daily(&gw, &format!("key_id={}", k.id)).await;
    assert_eq!(rows[0]["requests"], 1);
    assert_eq!(rows[0]["cost_micros"], 40);
    gw.shutdown().await;
}

#[tokio::test]
async fn usage_events_page_forward_with_a_cursor() {
    let gw = Gateway::start().await;
    let k = new_key(&gw, None).await;
    let request_id = format!("paging-{}", uuid::Uuid::now_v7());
    let events: Vec<_> = (0..5).map(|i| event(&k, &request_id, i)).collect();
    send(
        &gw,
        vec![UsageBatch {
            batch_id: "b".into(),
            node_id: "n".into(),
            resent: false,
            events,
        }],
    )
    .await;

    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let path = format!("/usage/events?request_id={request_id}&limit=2{after}");
        let (status, page) = gw.admin(reqwest::Method::GET, &path, None).await;
        assert_eq!(status, 200);
        seen.extend(
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["cost_micros"].as_i64().unwrap()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => after = format!("&after={c}"),
            None => break,
        }
    }
    assert_eq!(seen, vec![0, 1, 2, 3, 4]);
    let (status, bad) = gw
        .admin(
            reqwest::Method::GET,
            "/usage/events?after=not-a-cursor",
            None,
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(bad["error"]["param"], "after");
    gw.shutdown().await;
}

/// (day, key, team, user, model, provider): the dimensions of an aggregate row.
/// Day, key, team, user, model, provider, and whether it is check traffic.
type DailyKey = (String, String, String, String, String, String, bool);

/// xorshift64*: a seeded generator, so a failing run can be replayed from its printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

on_both_databases!(
    randomized_workload =>
    daily_aggregates_equal_the_sum_of_raw_rows_after_a_randomized_workload_with_check_traffic_apart,
    daily_aggregates_equal_the_sum_of_raw_rows_after_a_randomized_workload_with_check_traffic_apart_on_sqlite
);

async fn randomized_workload(gw: Gateway) {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("randomized workload seed: {seed}");
    let mut rng = Rng(seed);
    let day_ms = 86_400_000i64;
    // Three keys in two teams.
    let first = new_key(&gw, None).await;
    let second = new_key(&gw, Some(&first.team_id)).await;
    let keys = [first, second, new_key(&gw, None).await];
    let mut all = Vec::new();
    for i in 0..600 {
        let status = [200, 200, 200, 429, 502][rng.below(5) as usize];
        let key = &keys[rng.below(3) as usize];
        // Three consecutive UTC days, anywhere inside each.
        let started_at_ms =
            1_763_856_000_000 + (rng.below(3) as i64) * day_ms + rng.below(day_ms as u64) as i64;
        all.push(UsageEvent {
            id: uuid::Uuid::now_v7().to_string(),
            request_id: format!("r{i}"),
            key_id: key.id.clone(),
            team_id: key.team_id.clone(),
            user_id: format!("user-{}", rng.below(2)),
            provider_id: format!("prov-{}", rng.below(2)),
            served_model: if status == 429 {
                String::new()
            } else {
                format!("model-{}", rng.below(3))
            },
            requested_model: "alias".into(),
            started_at_ms,
            ended_at_ms: started_at_ms + rng.below(60_000) as i64,
            status,
            input_tokens: rng.below(5000),
            output_tokens: rng.below(2000),
            cached_input_tokens: rng.below(100),
            reasoning_tokens: rng.below(100),
            images: rng.below(2),
            media_ms: rng.below(3000),
            cost_micros: rng.below(1_000_000) as i64,
            // One request in six from an acceptance run (`modelgate check`).
            application: if rng.below(6) == 0 {
                modelgate_shared::usage::CHECK_APPLICATION.into()
            } else {
                format!("app-{}", rng.below(2))
            },
            ..Default::default()
        });
    }
    // Random batches, with replayed batches and events repeated across batches, over two
    // concurrent streams.
    let mut batches = Vec::new();
    let mut i = 0;
    while i < all.len() {
        let n = 1 + rng.below(80) as usize;
        let mut events: Vec<UsageEvent> = all[i..(i + n).min(all.len())].to_vec();
        if i > 0 && rng.below(3) == 0 {
            events.push(all[rng.below(i as u64) as usize].clone());
        }
        batches.push(UsageBatch {
            batch_id: format!("b{}", batches.len()),
            node_id: "n".into(),
            resent: false,
            events,
        });
        if rng.below(4) == 0 {
            let replay = batches.last().unwrap().clone();
            batches.push(replay);
        }
        i += n;
    }
    let half = batches.split_off(batches.len() / 2);
    let (a, b) = tokio::join!(send(&gw, batches), send(&gw, half));
    let inserted: u32 = a.iter().chain(&b).map(|ack| ack.inserted).sum();
    assert_eq!(
        inserted as usize,
        all.len(),
        "each event stored exactly once"
    );

    // Sum the raw rows, as read back through the pull API.
    let mut expected: BTreeMap<DailyKey, [i64; 9]> = BTreeMap::new();
    let mut ids = HashSet::new();
    let mut after = String::new();
    loop {
        let (_, page) = gw
            .admin(
                reqwest::Method::GET,
                &format!("/usage/events?limit=1000{after}"),
                None,
            )
            .await;
        for r in page["data"].as_array().unwrap() {
            assert!(ids.insert(r["id"].as_str().unwrap().to_owned()));
            let model = match r["served_model"].as_str().unwrap() {
                "" => r["requested_model"].as_str().unwrap(),
                m => m,
            };
            let day = chrono::DateTime::from_timestamp_millis(r["started_at_ms"].as_i64().unwrap())
                .unwrap()
                .format("%Y-%m-%d")
                .to_string();
            let s = |k: &str| r[k].as_str().unwrap().to_owned();
            let sums = expected
                .entry((
                    day,
                    s("key_id"),
                    s("team_id"),
                    s("user_id"),
                    model.to_owned(),
                    s("provider_id"),
                    r["application"] == modelgate_shared::usage::CHECK_APPLICATION,
                ))
                .or_default();
            let n = |k: &str| r[k].as_i64().unwrap();
            for (slot, v) in sums.iter_mut().zip([
                1,
                i64::from(n("status") >= 400),
                n("input_tokens"),
                n("output_tokens"),
                n("cached_input_tokens"),
                n("reasoning_tokens"),
                n("images"),
                n("media_ms"),
                n("cost_micros"),
            ]) {
                *slot += v;
            }
        }
        match page["next_cursor"].as_str() {
            Some(c) => after = format!("&after={c}"),
            None => break,
        }
    }
    assert_eq!(ids.len(), all.len());

    // Every row, then check traffic left out, then check traffic alone.
    for (query, shown) in [
        ("", None),
        ("check_traffic=false", Some(false)),
        ("check_traffic=true", Some(true)),
    ] {
        let wanted: BTreeMap<DailyKey, [i64; 9]> = expected
            .iter()
            .filter(|(k, _)| shown.is_none_or(|c| k.6 == c))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        assert!(!wanted.is_empty(), "seed {seed}: {query} selects rows");
        assert_eq!(daily_sums(&gw, query).await, wanted, "seed {seed}: {query}");
    }
    let (status, refused) = gw
        .admin(
            reqwest::Method::GET,
            "/usage/daily?check_traffic=maybe",
            None,
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    assert!(refused.to_string().contains("check_traffic"), "{refused}");
    gw.shutdown().await;
}

/// The daily aggregates the admin API answers for `query`, by their key.
async fn daily_sums(gw: &Gateway, query: &str) -> BTreeMap<DailyKey, [i64; 9]> {
    let mut actual = BTreeMap::new();
    for r in daily(gw, query).await {
        let s = |k: &str| r[k].as_str().unwrap().to_owned();
        let n = |k: &str| r[k].as_i64().unwrap();
        actual.insert(
            (
                s("day"),
                s("key_id"),
                s("team_id"),
                s("user_id"),
                s("model"),
                s("provider_id"),
                r["check_traffic"].as_bool().unwrap(),
            ),
            [
                n("requests"),
                n("errors"),
                n("input_tokens"),
                n("output_tokens"),
                n("cached_input_tokens"),
                n("reasoning_tokens"),
                n("images"),
                n("media_ms"),
                n("cost_micros"),
            ],
        );
    }
    actual
}

#[tokio::test]
async fn batches_from_many_nodes_at_once_are_each_stored_once_and_page_in_one_increasing_order() {
    let gw = Gateway::start().await;
    let k = new_key(&gw, None).await;
    let request_id = format!("concurrent-{}", uuid::Uuid::now_v7());
    // Events every node reports (as after a failover replay), next to its own.
    let contested: Vec<UsageEvent> = (0..20).map(|i| event(&k, &request_id, i)).collect();
    let nodes = 8;
    let mut senders = Vec::new();
    for n in 0..nodes {
        let batches: Vec<UsageBatch> = (0..4)
            .map(|b| {
                let mut events: Vec<UsageEvent> = (0..30)
                    .map(|i| event(&k, &request_id, 1_000 + n * 1_000 + b * 30 + i))
                    .collect();
                events.extend(
                    contested[b as usize * 5..b as usize * 5 + 5]
                        .iter()
                        .cloned(),
                );
                UsageBatch {
                    batch_id: format!("node-{n}-batch-{b}"),
                    node_id: format!("node-{n}"),
                    resent: false,
                    events,
                }
            })
            .collect();
        let gw = &gw;
        senders.push(async move { send(gw, batches).await });
    }
    let acks: Vec<UsageAck> = futures_util::future::join_all(senders)
        .await
        .into_iter()
        .flatten()
        .collect();
    let unique = nodes as u32 * 4 * 30 + 20;
    let sent = nodes as u32 * 4 * 35;
    assert_eq!(acks.iter().map(|a| a.inserted).sum::<u32>(), unique);
    assert_eq!(
        acks.iter().map(|a| a.inserted + a.duplicates).sum::<u32>(),
        sent
    );
    for a in &acks {
        assert!(a.inserted >= 30, "{}: {a:?}", a.batch_id);
    }

    let mut seqs = Vec::new();
    let mut costs = HashSet::new();
    let mut after = String::new();
    loop {
        let path = format!("/usage/events?request_id={request_id}&limit=100{after}");
        let (status, page) = gw.admin(reqwest::Method::GET, &path, None).await;
        assert_eq!(status, 200, "{page}");
        for r in page["data"].as_array().unwrap() {
            seqs.push(r["seq"].as_i64().unwrap());
            assert!(costs.insert(r["cost_micros"].as_i64().unwrap()), "{r}");
        }
        match page["next_cursor"].as_str() {
            Some(c) => after = format!("&after={c}"),
            None => break,
        }
    }
    assert_eq!(costs.len() as u32, unique);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let rows = daily(&gw, &format!("key_id={}", k.id)).await;
    assert_eq!(rows[0]["requests"].as_u64().unwrap() as u32, unique);
    gw.shutdown().await;
}

/// A pull consumer of one request id's events: its cursor and every row it was given.
struct Consumer {
    request_id: String,
    after: i64,
    seen: Vec<(i64, String)>,
}

impl Consumer {
    /// Pages from the cursor until a page comes back short.
    async fn page_to_end(&mut self, gw: &Gateway) {
        loop {
            let path = format!(
                "/usage/events?request_id={}&limit=50&after={}",
                self.request_id, self.after
            );
            let (status, page) = gw.admin(reqwest::Method::GET, &path, None).await;
            assert_eq!(status, 200, "{page}");
            let rows = page["data"].as_array().unwrap();
            for r in rows {
                let seq = r["seq"].as_i64().unwrap();
                self.seen.push((seq, r["id"].as_str().unwrap().to_owned()));
                self.after = seq;
            }
            if rows.len() < 50 {
                return;
            }
        }
    }
}

/// `nodes` nodes' batches (each `batches` × `per_batch` events of `key`) sent at once to the
/// control planes at `to`, in turn; returns how many events were stored.
async fn ship(
    to: &[std::net::SocketAddr],
    key: &Key,
    request_id: &str,
    round: u32,
    nodes: u32,
) -> u32 {
    let senders = (0..nodes).map(|n| {
        let batches: Vec<UsageBatch> = (0..3)
            .map(|b| UsageBatch {
                batch_id: format!("round-{round}-node-{n}-batch-{b}"),
                node_id: format!("node-{n}"),
                resent: false,
                events: (0..40).map(|i| event(key, request_id, i)).collect(),
            })
            .collect();
        send_to(to[n as usize % to.len()], batches)
    });
    futures_util::future::join_all(senders)
        .await
        .into_iter()
        .flatten()
        .map(|a| a.inserted)
        .sum()
}

#[tokio::test]
async fn a_consumer_paging_while_writers_commit_out_of_order_sees_every_event_once_in_cursor_order()
{
    use modelgate_control_plane::service::usage::sequence;
    use sea_orm::{ConnectionTrait, TransactionTrait};

    // Several writers: two control planes on one Postgres database, each storing several groups
    // at once, so their transactions commit in any order.
    let db = crate::support::TestDb::postgres().await;
    let url = db.url.clone();
    let gw = Gateway::start_on(db, url).await;
    let second = crate::support::start_control_plane(
        &gw.cp_db_url,
        &gw.master_key,
        "127.0.0.1:0".parse().unwrap(),
    )
    .await;
    let planes = [gw.grpc_addr, second.grpc_addr];
    let k = new_key(&gw, None).await;
    let request_id = format!("out-of-order-{}", uuid::Uuid::now_v7());
    let mut consumer = Consumer {
        request_id: request_id.clone(),
        after: 0,
        seen: Vec::new(),
    };

    // Round 1: the consumer pages while 6 nodes ship; once they are done it has every event.
    let (stored, ()) = tokio::join!(ship(&planes, &k, &request_id, 1, 6), async {
        for _ in 0..20 {
            consumer.page_to_end(&gw).await;
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    });
    let mut expected = stored;
    consumer.page_to_end(&gw).await;
    assert_eq!(consumer.seen.len() as u32, expected);

    // Round 2: a writer takes its block first and commits last (its event inserted, its
    // transaction open) while 6 nodes ship and commit: the consumer is never given a number
    // above the pending block, so its cursor cannot pass the late event.
    let services = &gw.cp().services;
    let block = sequence::take(&services.db, 1).await.unwrap();
    let slow = services.db.begin().await.unwrap();
    sequence::claim(&slow, block).await.unwrap();
    let slow_id = uuid::Uuid::now_v7().to_string();
    slow.execute_unprepared(&format!(
        "INSERT INTO usage_events (id, request_id, node_id, key_id, team_id, endpoint, \
         requested_model, provider_id, served_model, status, error_message, streamed, \
         estimated, ingested_at, seq) VALUES ('{slow_id}', '{}', 'slow', '{}', '{}', \
         'chat.completions', '', '', 'gpt-x', 200, '', false, false, now(), {})",
        request_id, k.id, k.team_id, block.first
    ))
    .await
    .unwrap();
    let before = consumer.seen.len();
    let (stored, ()) = tokio::join!(ship(&planes, &k, &request_id, 2, 6), async {
        for _ in 0..20 {
            consumer.page_to_end(&gw).await;
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    });
    expected += stored;
    consumer.page_to_end(&gw).await;
    assert_eq!(
        consumer.seen.len(),
        before,
        "events above a pending block were paged past it"
    );
    assert!(consumer.after < block.first);

    // The late writer commits: the consumer resumes and is given its event, then the rest.
    slow.commit().await.unwrap();
    expected += 1;
    consumer.page_to_end(&gw).await;
    assert_eq!(consumer.seen[before].1, slow_id);
    assert_eq!(consumer.seen.len() as u32, expected);
    let ids: HashSet<&String> = consumer.seen.iter().map(|(_, id)| id).collect();
    assert_eq!(ids.len(), consumer.seen.len(), "an event was given twice");
    assert!(
        consumer.seen.windows(2).all(|w| w[0].0 < w[1].0),
        "cursor order: {:?}",
        consumer.seen.iter().map(|(s, _)| s).collect::<Vec<_>>()
    );
    second.shutdown().await;
    gw.shutdown().await;
}
