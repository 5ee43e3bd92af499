//! Budget alerts: a budget with a webhook is told once per threshold (50, 80, 100 %) per
//! period, from the control plane after ingest, by a background delivery that retries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

use crate::budgets::{ask, budget, setup};
use crate::support::{eventually, Gateway};

/// Records every alert it accepts; with `fail_first`, answers 503 to the first attempt of each
/// alert id.
#[derive(Clone, Default)]
pub(crate) struct Hook {
    pub(crate) accepted: Arc<Mutex<Vec<Value>>>,
    attempts: Arc<Mutex<HashMap<String, usize>>>,
    fail_first: bool,
}

async fn receive(State(h): State<Hook>, headers: HeaderMap, body: String) -> StatusCode {
    let alert: Value = serde_json::from_str(&body).unwrap();
    let id = alert["id"].as_str().unwrap().to_owned();
    assert_eq!(headers["x-modelgate-alert-id"].to_str().unwrap(), id);
    let n = {
        let mut attempts = h.attempts.lock().unwrap();
        let n = attempts.entry(id).or_insert(0);
        *n += 1;
        *n
    };
    if h.fail_first && n == 1 {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    h.accepted.lock().unwrap().push(alert);
    StatusCode::NO_CONTENT
}

pub(crate) async fn start_hook(fail_first: bool) -> (Hook, String) {
    let h = Hook {
        fail_first,
        ..Hook::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/alerts", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/alerts", post(receive))
        .with_state(h.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (h, url)
}

/// One request through the data plane, then waits until the control plane has charged it to
/// the budget (each answer costs 91 000 µ$ at the `setup` price).
async fn spend_one(gw: &Gateway, key: &str, id: &str, spent_after: i64) {
    let r = ask(&gw.http, gw.dp().addr, key).send().await.unwrap();
    assert_eq!(r.status(), 200);
    eventually(
        Duration::from_secs(15),
        "the spend to be ingested",
        || async {
            let (_, b) = gw
                .admin(reqwest::Method::GET, &format!("/budgets/{id}"), None)
                .await;
            (b["spent_micros"].as_i64() == Some(spent_after)).then_some(())
        },
    )
    .await;
}

async fn crossing_50_80_100_posts_exactly_three_alerts(fail_first: bool) {
    let (_upstream, gw, p) = setup().await;
    let (hook, url) = start_hook(fail_first).await;
    let amount = 300_000;
    let id = budget(
        &gw,
        json!({"scope": {"team_id": p.team_id}, "amount_micros": amount, "period": "day",
               "enforcement": "soft", "alert_webhook_url": url}),
    )
    .await;
    // 91 000, 182 000 (60 %), 273 000 (91 %), 364 000 (121 %), then two more over the top.
    for n in 1..=6 {
        spend_one(&gw, &p.key, &id, 91_000 * n).await;
    }
    let alerts = eventually(Duration::from_secs(20), "three alerts", || async {
        let a = hook.accepted.lock().unwrap().clone();
        (a.len() >= 3).then_some(a)
    })
    .await;
    // More traffic (already sent) and more time add nothing.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut alerts = alerts;
    alerts.extend(hook.accepted.lock().unwrap().iter().skip(3).cloned());
    assert_eq!(alerts.len(), 3, "{alerts:#?}");
    alerts.sort_by_key(|a| a["threshold_percent"].as_i64());
    let (_, b) = gw
        .admin(reqwest::Method::GET, &format!("/budgets/{id}"), None)
        .await;
    for (alert, (pct, spent)) in alerts
        .iter()
        .zip([(50, 182_000), (80, 273_000), (100, 364_000)])
    {
        assert_eq!(alert["threshold_percent"], pct, "{alert}");
        assert_eq!(alert["spent_micros"], spent, "{alert}");
        assert_eq!(alert["amount_micros"], amount, "{alert}");
        assert_eq!(alert["budget_id"], id.as_str(), "{alert}");
        assert_eq!(alert["scope"]["team_id"], p.team_id.as_str(), "{alert}");
        assert_eq!(alert["period_start"], b["period_start"], "{alert}");
        let text = alert.to_string();
        assert!(!text.contains(&p.key), "the alert carries no key: {text}");
        assert!(!text.contains("/alerts"), "nor the webhook URL: {text}");
    }
    if fail_first {
        let attempts = hook.attempts.lock().unwrap();
        assert_eq!(attempts.len(), 3, "three distinct alerts");
        assert!(attempts.values().all(|n| *n == 2), "{attempts:?}");
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn a_soft_budget_posts_one_alert_at_each_of_50_80_and_100_percent_and_no_more() {
    crossing_50_80_100_posts_exactly_three_alerts(false).await;
}

#[tokio::test]
async fn a_webhook_that_fails_each_first_attempt_still_gets_exactly_one_alert_per_threshold() {
    crossing_50_80_100_posts_exactly_three_alerts(true).await;
}

/// Twenty concurrent ingests into one period, through two control planes on one database,
/// claim each threshold once; a new day fires again (one outbox row per threshold per period).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_ingests_on_two_control_planes_claim_each_threshold_once_and_a_new_period_fires_again(
) {
    use modelgate_control_plane::service::usage;
    use modelgate_control_plane::store::budget_alert;
    use modelgate_shared::usage::UsageEvent;
    use sea_orm::EntityTrait;

    let gw = Gateway::start().await;
    // Nothing listens here: the rows stay in the outbox, which is what this test reads.
    let url = "http://127.0.0.1:9/alerts";
    let team = gw.create("/teams", json!({"name": "alerts"})).await;
    let team_id = team["id"].as_str().unwrap().to_owned();
    let key = crate::usage_ingest::new_key(&gw, Some(&team_id)).await;
    let id = budget(
        &gw,
        json!({"scope": {"team_id": team_id}, "amount_micros": 1_000, "period": "day",
               "enforcement": "soft", "alert_webhook_url": url}),
    )
    .await;
    let noon = |day: &str| {
        format!("{day}T12:00:00Z")
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap()
            .timestamp_millis()
    };
    let event = |day: &str| UsageEvent {
        id: uuid::Uuid::now_v7().to_string(),
        request_id: uuid::Uuid::now_v7().to_string(),
        team_id: team_id.clone(),
        key_id: key.id.clone(),
        status: 200,
        started_at_ms: noon(day),
        ended_at_ms: noon(day) + 100,
        cost_micros: 100,
        schema_version: 2,
        ..Default::default()
    };
    let s = gw.cp().services.clone();
    // A second control plane (replica) on the same database ingests half the batches.
    let replica = crate::support::start_control_plane(
        &gw.cp_db_url,
        &gw.master_key,
        "127.0.0.1:0".parse().unwrap(),
    )
    .await;
    let planes = [s.clone(), replica.services.clone()];
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (s, e) = (planes[i % 2].clone(), event("2026-11-20"));
        tasks.push(tokio::spawn(async move {
            usage::ingest(&s, "test-node", vec![e]).await.unwrap()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for _ in 0..6 {
        usage::ingest(&s, "test-node", vec![event("2026-11-21")])
            .await
            .unwrap();
    }
    let mut rows: Vec<(i64, i64)> = budget_alert::Entity::find()
        .all(&s.db)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.budget_id == id)
        .map(|r| (r.period_start, r.threshold_percent))
        .collect();
    rows.sort();
    let day = |d: &str| {
        format!("{d}T00:00:00Z")
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap()
            .timestamp()
    };
    let (d1, d2) = (day("2026-11-20"), day("2026-11-21"));
    // Day one reached 200 % (2 000 of 1 000); day two 60 %.
    assert_eq!(rows, vec![(d1, 50), (d1, 80), (d1, 100), (d2, 50)]);
    replica.shutdown().await;
    gw.shutdown().await;
}
