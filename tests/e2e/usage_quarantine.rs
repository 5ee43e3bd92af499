//! Ingest validates what a node reports, over the real gRPC stream: an event with an impossible
//! figure, an unknown key or a key of another team is quarantined with its reason and counts
//! nowhere (no usage row, no daily aggregate, no budget spend), while the rest of its batch is
//! stored and the batch is acknowledged. Admins and billing read the quarantine; a team-scoped
//! token cannot.

use modelgate_proto::usage::v1::{UsageBatch, UsageEvent};
use serde_json::{json, Value};

use crate::support::Gateway;
use crate::usage_ingest::{daily, event_at, new_key, send, Key};

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn event(key: &Key, request_id: &str, cost: i64) -> UsageEvent {
    event_at(key, request_id, cost, now_ms() - 5_000)
}

fn batch(id: &str, events: Vec<UsageEvent>) -> UsageBatch {
    UsageBatch {
        batch_id: id.into(),
        node_id: "node-reporting".into(),
        resent: false,
        events,
    }
}

async fn quarantine(gw: &Gateway) -> Vec<Value> {
    let (status, page) = gw
        .admin(reqwest::Method::GET, "/usage/quarantine?limit=1000", None)
        .await;
    assert_eq!(status, 200, "{page}");
    page["data"].as_array().unwrap().clone()
}

fn reason_of(rows: &[Value], event_id: &str) -> String {
    rows.iter()
        .find(|r| r["event_id"] == event_id)
        .unwrap_or_else(|| panic!("{event_id} is not quarantined: {rows:?}"))["reason"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn spent(gw: &Gateway, budget_id: &str) -> i64 {
    let (status, b) = gw
        .admin(reqwest::Method::GET, &format!("/budgets/{budget_id}"), None)
        .await;
    assert_eq!(status, 200, "{b}");
    b["spent_micros"].as_i64().unwrap()
}

#[tokio::test]
async fn a_negative_cost_is_quarantined_and_the_rest_of_its_batch_is_stored_and_acknowledged() {
    let gw = Gateway::start().await;
    let k = new_key(&gw, None).await;
    let budget = gw
        .create(
            "/budgets",
            json!({"scope": {"team_id": k.team_id}, "amount_micros": 1_000_000,
                   "period": "total", "enforcement": "hard"}),
        )
        .await;
    let budget_id = budget["id"].as_str().unwrap().to_owned();
    let request_id = format!("neg-{}", uuid::Uuid::now_v7());
    let refund = event(&k, &request_id, -900_000);
    let events = vec![
        event(&k, &request_id, 300),
        refund.clone(),
        event(&k, &request_id, 200),
    ];

    let acks = send(&gw, vec![batch("b1", events.clone())]).await;
    assert_eq!(acks[0].batch_id, "b1", "the batch is acknowledged");
    assert_eq!(
        (acks[0].inserted, acks[0].quarantined, acks[0].duplicates),
        (2, 1, 0)
    );
    assert_eq!(
        spent(&gw, &budget_id).await,
        500,
        "the negative cost lowers no spend"
    );
    let rows = daily(&gw, &format!("key_id={}", k.id)).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (
            rows[0]["requests"].as_i64(),
            rows[0]["cost_micros"].as_i64()
        ),
        (Some(2), Some(500))
    );
    let (_, stored) = gw
        .admin(
            reqwest::Method::GET,
            &format!("/usage/events?request_id={request_id}"),
            None,
        )
        .await;
    let stored: Vec<&str> = stored["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(stored.len(), 2);
    assert!(
        !stored.contains(&refund.id.as_str()),
        "never stored as usage"
    );

    let listed = quarantine(&gw).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["event_id"], refund.id.as_str());
    assert_eq!(listed[0]["node_id"], "node-reporting");
    assert_eq!(listed[0]["event"]["cost_micros"], -900_000);
    assert!(
        reason_of(&listed, &refund.id).contains("negative"),
        "{listed:?}"
    );

    // A replay stores nothing, quarantines nothing twice and is acknowledged again.
    let acks = send(&gw, vec![batch("b1", events)]).await;
    assert_eq!(
        (acks[0].inserted, acks[0].quarantined, acks[0].duplicates),
        (0, 0, 3)
    );
    assert_eq!(quarantine(&gw).await.len(), 1);
    assert_eq!(spent(&gw, &budget_id).await, 500);
    gw.shutdown().await;
}

#[tokio::test]
async fn unknown_keys_keys_of_another_team_and_absurd_figures_are_quarantined_with_their_reasons() {
    let gw = Gateway::start().await;
    let k = new_key(&gw, None).await;
    let other = new_key(&gw, None).await;
    let request_id = format!("bad-{}", uuid::Uuid::now_v7());
    let unknown = event(
        &Key {
            id: "key-that-does-not-exist".into(),
            team_id: k.team_id.clone(),
        },
        &request_id,
        100,
    );
    let foreign = event(
        &Key {
            id: other.id.clone(),
            team_id: k.team_id.clone(),
        },
        &request_id,
        100,
    );
    let absurd = UsageEvent {
        input_tokens: u64::MAX,
        ..event(&k, &request_id, 100)
    };
    let future = event_at(&k, &request_id, 100, now_ms() + 86_400_000);
    let teapot = UsageEvent {
        status: 7,
        ..event(&k, &request_id, 100)
    };
    // What a node records for a request refused before its key was known: stored as it is.
    let anonymous = UsageEvent {
        key_id: String::new(),
        team_id: String::new(),
        environment: String::new(),
        status: 401,
        error_class: "auth".into(),
        input_tokens: 0,
        output_tokens: 0,
        cost_micros: 0,
        ..event(&k, &request_id, 0)
    };
    let good = event(&k, &request_id, 100);
    let acks = send(
        &gw,
        vec![batch(
            "mixed",
            vec![
                unknown.clone(),
                good.clone(),
                foreign.clone(),
                absurd.clone(),
                future.clone(),
                teapot.clone(),
                anonymous.clone(),
            ],
        )],
    )
    .await;
    assert_eq!((acks[0].inserted, acks[0].quarantined), (2, 5));

    let listed = quarantine(&gw).await;
    assert_eq!(listed.len(), 5, "{listed:?}");
    for (e, says) in [
        (&unknown, "key key-that-does-not-exist does not exist"),
        (&foreign, "belongs to team"),
        (&absurd, "input_tokens"),
        (&future, "ahead of the control plane's clock"),
        (&teapot, "status 7"),
    ] {
        let reason = reason_of(&listed, &e.id);
        assert!(reason.contains(says), "{reason:?} should say {says:?}");
    }
    let rows = daily(&gw, &format!("key_id={}", k.id)).await;
    assert_eq!(
        rows[0]["requests"], 1,
        "only the good event counts: {rows:?}"
    );
    assert_eq!(rows[0]["input_tokens"], 10);
    assert!(daily(&gw, &format!("key_id={}", other.id)).await.is_empty());
    let (_, stored) = gw
        .admin(
            reqwest::Method::GET,
            &format!("/usage/events?request_id={request_id}"),
            None,
        )
        .await;
    let mut stored: Vec<String> = stored["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    stored.sort();
    let mut want = vec![good.id.clone(), anonymous.id.clone()];
    want.sort();
    assert_eq!(stored, want);
    gw.shutdown().await;
}

/// The typed fields (error class, environment, traffic class, cost flag) travel as strings: one
/// this control plane does not know is quarantined naming the field and the value, never stored
/// under a guess, and the quarantine keeps it as it arrived.
#[tokio::test]
async fn an_event_naming_an_unknown_class_is_quarantined_with_the_field_and_the_value() {
    let gw = Gateway::start().await;
    let k = new_key(&gw, None).await;
    let request_id = format!("unknown-{}", uuid::Uuid::now_v7());
    let bulk = UsageEvent {
        traffic_class: "bulk".into(),
        ..event(&k, &request_id, 100)
    };
    let policy = UsageEvent {
        status: 403,
        error_class: "policy".into(),
        ..event(&k, &request_id, 0)
    };
    let good = UsageEvent {
        traffic_class: "batch".into(),
        cost_flag: "price_missing".into(),
        ..event(&k, &request_id, 100)
    };
    let acks = send(
        &gw,
        vec![batch(
            "typed",
            vec![bulk.clone(), good.clone(), policy.clone()],
        )],
    )
    .await;
    assert_eq!((acks[0].inserted, acks[0].quarantined), (1, 2));
    let listed = quarantine(&gw).await;
    assert_eq!(
        reason_of(&listed, &bulk.id),
        "traffic_class `bulk` is not a value this build knows"
    );
    assert_eq!(
        reason_of(&listed, &policy.id),
        "error_class `policy` is not a value this build knows"
    );
    let kept = listed
        .iter()
        .find(|r| r["event_id"] == bulk.id.as_str())
        .unwrap();
    assert_eq!(kept["event"]["traffic_class"], "bulk", "{kept}");
    assert_eq!(kept["event"]["environment"], "prod", "{kept}");
    let stored = gw.usage_row(&request_id).await;
    assert_eq!(stored["id"], good.id.as_str());
    assert_eq!(stored["traffic_class"], "batch");
    assert_eq!(stored["cost_flag"], "price_missing");
    assert_eq!(stored["environment"], "prod");
    gw.shutdown().await;
}

#[tokio::test]
async fn the_quarantine_pages_like_other_lists_and_a_team_scoped_token_cannot_read_it() {
    let gw = Gateway::start().await;
    let k = new_key(&gw, None).await;
    let bad: Vec<UsageEvent> = (0..3)
        .map(|i| event(&k, &format!("page-{i}"), -1 - i))
        .collect();
    let acks = send(&gw, vec![batch("b", bad.clone())]).await;
    assert_eq!(acks[0].quarantined, 3);

    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let (status, page) = gw
            .admin(
                reqwest::Method::GET,
                &format!("/usage/quarantine?limit=2{after}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{page}");
        seen.extend(
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["event_id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => after = format!("&after={c}"),
            None => break,
        }
    }
    seen.sort();
    let mut want: Vec<String> = bad.iter().map(|e| e.id.clone()).collect();
    want.sort();
    assert_eq!(seen, want);

    for (role, team) in [("owner", Some(&k.team_id)), ("viewer", None)] {
        let mut body = json!({"name": format!("{role}-reader"), "role": role});
        if let Some(t) = team {
            body["team_id"] = json!(t);
        }
        let token = gw.create("/tokens", body).await["token"]
            .as_str()
            .unwrap()
            .to_owned();
        let resp = gw
            .http
            .get(format!("{}/admin/v1/usage/quarantine", gw.admin_url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{role} {team:?}");
    }
    gw.shutdown().await;
}

/// A node's request start comes from its injected clock, its end from the wall clock; when the
/// two disagree (here the clock is a day ahead, as after a wall-clock step back) the event must
/// still end no earlier than it started, or ingest would quarantine a genuine event.
#[tokio::test]
async fn a_genuine_event_is_never_quarantined_when_the_node_clock_is_ahead_of_its_wall_clock() {
    let (_upstream, gw, p) = crate::support::gateway_with_smart_route().await;
    gw.clock.set(chrono::Utc::now() + chrono::Duration::days(1));
    let resp = gw.say_hi(&p.key, "smart").await;
    assert_eq!(resp.status(), 200);
    let row = gw.usage_row(&crate::support::request_id(&resp)).await;
    assert!(
        row["ended_at_ms"].as_i64() >= row["started_at_ms"].as_i64(),
        "{row}"
    );
    assert!(quarantine(&gw).await.is_empty());
    gw.shutdown().await;
}
