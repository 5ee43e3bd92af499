//! Budgets enforced before forwarding, fleet-wide, from leases the control plane grants each
//! data plane (issue #7, R-4.2, R-4.3).

use std::time::Duration;

use modelgate_data_plane::RunningDataPlane;
use serde_json::{json, Value};

use crate::support::{self, eventually, Gateway, Provisioned};

/// One output token costs 10 000 µ$ and one input token 1 000 µ$: the mock's answer (21 prompt
/// + 7 completion tokens) costs 91 000 µ$, so a few hundred requests cost far more than $1.
pub(crate) async fn expensive(gw: &Gateway, served: &str) {
    gw.create(
        "/models",
        json!({"model": served, "input_micros_per_mtok": 1_000_000_000_i64, "output_micros_per_mtok": 10_000_000_000_i64}),
    )
    .await;
}

pub(crate) async fn budget(gw: &Gateway, body: Value) -> String {
    let b = gw.create("/budgets", body).await;
    gw.wait_for_config().await;
    b["id"].as_str().unwrap().to_owned()
}

/// Every usage row of a key.
pub(crate) async fn usage_rows(gw: &Gateway, key_id: &str) -> Vec<Value> {
    let mut rows = Vec::new();
    let mut after = String::new();
    loop {
        let (status, page) = gw
            .admin(
                reqwest::Method::GET,
                &format!("/usage/events?limit=1000&key_id={key_id}{after}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{page}");
        rows.extend(page["data"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => after = format!("&after={c}"),
            None => return rows,
        }
    }
}

pub(crate) async fn extra_data_plane(gw: &Gateway) -> RunningDataPlane {
    let dp = support::start_data_plane(gw.grpc_addr, &support::temp_dir("dp")).await;
    let want = gw
        .cp()
        .services
        .publisher
        .latest()
        .unwrap()
        .snapshot
        .version;
    eventually(
        Duration::from_secs(10),
        "the extra data plane's config",
        || async { (dp.config_version() >= want).then_some(()) },
    )
    .await;
    dp
}

pub(crate) fn ask(
    http: &reqwest::Client,
    dp: std::net::SocketAddr,
    key: &str,
) -> reqwest::RequestBuilder {
    http.post(format!("http://{dp}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": "smart", "max_tokens": 10,
            "messages": [{"role": "user", "content": "say something expensive"}]}))
}

pub(crate) async fn setup() -> (support::upstream::MockUpstream, Gateway, Provisioned) {
    let upstream = support::upstream::MockUpstream::start().await;
    let gw = Gateway::start().await;
    let p = gw
        .provision(&upstream.base_url(), "smart", "pricey-1")
        .await;
    expensive(&gw, "pricey-1").await;
    gw.wait_for_config().await;
    (upstream, gw, p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hard_team_budget_holds_across_three_data_planes_under_300_concurrent_requests() {
    let (upstream, gw, p) = setup().await;
    let amount = 1_000_000_i64; // $1.00
    let id = budget(
        &gw,
        json!({"scope": {"team_id": p.team_id}, "amount_micros": amount, "period": "month", "enforcement": "hard"}),
    )
    .await;
    let dp2 = extra_data_plane(&gw).await;
    let dp3 = extra_data_plane(&gw).await;
    let nodes = [gw.dp().addr, dp2.addr, dp3.addr];

    let mut tasks = Vec::new();
    for i in 0..300 {
        let req = ask(&gw.http, nodes[i % 3], &p.key);
        tasks.push(tokio::spawn(async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let retry_after = resp.headers().get("retry-after").is_some();
            let body: Value = resp.json().await.unwrap();
            (status, retry_after, body)
        }));
    }
    let (mut accepted, mut refused) = (0, 0);
    for t in tasks {
        let (status, retry_after, body) = t.await.unwrap();
        match status {
            200 => accepted += 1,
            429 => {
                assert_eq!(body["error"]["code"], "budget_exceeded", "{body}");
                assert!(retry_after, "a budget refusal says when to retry");
                refused += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(accepted + refused, 300);
    assert!(accepted > 0, "the budget admits what it can pay for");
    assert!(refused > 0, "300 requests cost far more than the budget");
    assert_eq!(
        upstream.calls(),
        accepted,
        "a refused request never reaches upstream"
    );

    // Every request, accepted or refused, leaves one usage event; refusals are marked.
    let rows = eventually(Duration::from_secs(30), "300 usage rows", || async {
        let rows = usage_rows(&gw, &p.key_id).await;
        (rows.len() == 300).then_some(rows)
    })
    .await;
    let refused_rows = rows
        .iter()
        .filter(|r| r["error_class"] == "budget_exceeded")
        .count();
    assert_eq!(refused_rows, refused);
    let charged: i64 = rows
        .iter()
        .map(|r| r["cost_micros"].as_i64().unwrap())
        .sum();
    println!(
        "hard budget {amount} µ$: accepted {accepted}, refused {refused}, charged {charged} µ$, \
         overspend {} µ$",
        (charged - amount).max(0)
    );
    assert!(
        charged <= amount,
        "charged {charged} µ$ past a hard budget of {amount} µ$"
    );

    // The control plane's view: spend from ingest, never more than the amount.
    let (status, b) = gw
        .admin(reqwest::Method::GET, &format!("/budgets/{id}"), None)
        .await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["spent_micros"].as_i64().unwrap(), charged, "{b}");
    assert!(b["allocations"].as_array().unwrap().len() >= 2, "{b}");
    assert!(b["remaining_micros"].as_i64().unwrap() >= 0);

    dp2.shutdown().await;
    dp3.shutdown().await;
    gw.shutdown().await;
}

#[tokio::test]
async fn a_key_without_a_budget_is_not_limited_and_soft_budgets_do_not_refuse() {
    let (_upstream, gw, p) = setup().await;
    budget(
        &gw,
        json!({"scope": {"team_id": p.team_id}, "amount_micros": 1, "period": "day", "enforcement": "soft"}),
    )
    .await;
    for _ in 0..3 {
        let r = ask(&gw.http, gw.dp().addr, &p.key).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn a_request_without_an_output_bound_is_refused_under_a_hard_budget_and_never_forwarded() {
    let (upstream, gw, p) = setup().await;
    budget(
        &gw,
        json!({"scope": {"key_id": p.key_id}, "amount_micros": 1_000_000, "period": "total", "enforcement": "hard"}),
    )
    .await;
    let r = gw.say_hi(&p.key, "smart").await;
    // Not a 429: waiting would not help, the client must bound the output.
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("retry-after").is_none());
    let id = crate::support::request_id(&r);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "cost_not_estimable", "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    assert_eq!(body["error"]["param"], "max_tokens", "{body}");
    let row = gw.usage_row(&id).await;
    assert_eq!(row["status"], 400, "{row}");
    assert_eq!(row["error_class"], "bad_request", "{row}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_tokens"),
        "{body}"
    );
    assert_eq!(upstream.calls(), 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn with_the_control_plane_down_fail_closed_spends_the_allocation_then_stops() {
    let (upstream, mut gw, p) = setup().await;
    budget(
        &gw,
        json!({"scope": {"key_id": p.key_id}, "amount_micros": 10_000_000, "period": "total", "enforcement": "hard", "when_unreachable": "fail_closed"}),
    )
    .await;
    // The first request takes a slice: max(amount / 10, 2 × worst case) = 1 000 000 µ$.
    let r = ask(&gw.http, gw.dp().addr, &p.key).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let remaining: i64 = r.headers()["x-modelgate-budget-remaining"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(remaining > 0 && remaining < 10_000_000, "{remaining}");
    gw.stop_control_plane().await;
    let mut served = 1;
    for _ in 0..40 {
        let r = ask(&gw.http, gw.dp().addr, &p.key).send().await.unwrap();
        match r.status().as_u16() {
            200 => served += 1,
            429 => break,
            s => panic!("unexpected {s}"),
        }
    }
    // 91 000 µ$ per request settled: the 1 000 000 µ$ slice pays for about ten, never 40.
    assert!(
        served < 40,
        "fail_closed kept serving with the control plane down"
    );
    assert!(served >= 2, "the allocation already granted is still spent");
    assert_eq!(upstream.calls(), served);
    gw.shutdown().await;
}

#[tokio::test]
async fn with_the_control_plane_down_fail_open_stops_at_the_allowance() {
    let (upstream, mut gw, p) = setup().await;
    budget(
        &gw,
        json!({"scope": {"key_id": p.key_id}, "amount_micros": 10_000_000, "period": "total", "enforcement": "hard", "when_unreachable": "fail_open", "fail_open_allowance_micros": 2_000_000}),
    )
    .await;
    let r = ask(&gw.http, gw.dp().addr, &p.key).send().await.unwrap();
    assert_eq!(r.status(), 200);
    gw.stop_control_plane().await;
    let mut served = 1;
    for _ in 0..80 {
        let r = ask(&gw.http, gw.dp().addr, &p.key).send().await.unwrap();
        match r.status().as_u16() {
            200 => served += 1,
            429 => break,
            s => panic!("unexpected {s}"),
        }
    }
    // The 1 000 000 µ$ slice plus the 2 000 000 µ$ allowance, at 91 000 µ$ a request (and the
    // allowance reserved at the worst case, 250 000 µ$ or so): more than fail_closed would, but
    // bounded.
    assert!(served < 80, "fail_open never stopped");
    assert!(served > 11, "the allowance was not used: {served}");
    assert_eq!(upstream.calls(), served);
    gw.shutdown().await;
}

/// Spend goes to the period the request started in (the event's time is the clock): a request
/// just before midnight UTC and one just after land in two period rows, and a replayed batch
/// adds nothing.
#[tokio::test]
async fn spend_rolls_over_at_the_utc_boundary_into_a_new_period_row_and_replays_add_nothing() {
    use modelgate_control_plane::service::usage;
    use modelgate_control_plane::store::budget_period;
    use modelgate_shared::quota::{period_start, Period};
    use modelgate_shared::usage::UsageEvent;
    use sea_orm::EntityTrait;

    let gw = Gateway::start().await;
    let team = gw.create("/teams", json!({"name": "rollover"})).await;
    let team_id = team["id"].as_str().unwrap().to_owned();
    let key = crate::usage_ingest::new_key(&gw, Some(&team_id)).await;
    let id = budget(
        &gw,
        json!({"scope": {"team_id": team_id}, "amount_micros": 1_000_000, "period": "day", "enforcement": "hard"}),
    )
    .await;
    let at = |s: &str| s.parse::<chrono::DateTime<chrono::Utc>>().unwrap();
    let before = at("2026-11-30T23:59:59.500Z");
    let after = at("2026-12-01T00:00:00.200Z");
    let event = |when: chrono::DateTime<chrono::Utc>, cost: i64| UsageEvent {
        id: uuid::Uuid::now_v7().to_string(),
        request_id: uuid::Uuid::now_v7().to_string(),
        team_id: team_id.clone(),
        key_id: key.id.clone(),
        status: 200,
        started_at_ms: when.timestamp_millis(),
        ended_at_ms: when.timestamp_millis() + 100,
        cost_micros: cost,
        schema_version: 2,
        ..Default::default()
    };
    let s = &gw.cp().services;
    let late = event(before, 300);
    usage::ingest(s, "test-node", vec![late.clone(), event(before, 200)])
        .await
        .unwrap();
    usage::ingest(s, "test-node", vec![event(after, 500)])
        .await
        .unwrap();
    usage::ingest(s, "test-node", vec![late]).await.unwrap(); // a replay
    usage::ingest(s, "test-node", vec![event(after, 50)])
        .await
        .unwrap();

    let spent = |start: i64| {
        let id = id.clone();
        async move {
            budget_period::Entity::find_by_id((id, start))
                .one(&s.db)
                .await
                .unwrap()
                .map(|p| p.spent_micros)
        }
    };
    assert_eq!(spent(period_start(before, Period::Day)).await, Some(500));
    assert_eq!(spent(period_start(after, Period::Day)).await, Some(550));
    gw.shutdown().await;
}

/// The whole system on one injected clock: spend under a daily hard budget at 23:59:50 UTC of
/// day D, move the clock to 00:00:05 of D+1, spend more. Each day's period row holds exactly
/// its own spend, D's row is untouched by the rollover, and D+1's allocation starts fresh.
#[tokio::test]
async fn a_daily_budget_rolls_over_at_midnight_utc_with_both_days_figures_exact() {
    use modelgate_control_plane::store::{budget_grant, budget_period};
    use sea_orm::EntityTrait;

    let (_upstream, gw, p) = setup().await;
    let at = |s: &str| s.parse::<chrono::DateTime<chrono::Utc>>().unwrap();
    let day_d = at("2026-11-30T00:00:00Z").timestamp();
    let day_d1 = at("2026-12-01T00:00:00Z").timestamp();
    gw.clock.set(at("2026-11-30T23:59:50Z"));
    let amount = 10_000_000;
    let id = budget(
        &gw,
        json!({"scope": {"key_id": p.key_id}, "amount_micros": amount, "period": "day", "enforcement": "hard"}),
    )
    .await;
    let spend = |n: usize| {
        let gw = &gw;
        let key = p.key.clone();
        async move {
            for _ in 0..n {
                let r = ask(&gw.http, gw.dp().addr, &key).send().await.unwrap();
                assert_eq!(r.status(), 200);
            }
        }
    };
    let s = gw.cp().services.clone();
    let period_row = |start: i64| {
        let (s, id) = (s.clone(), id.clone());
        async move {
            budget_period::Entity::find_by_id((id, start))
                .one(&s.db)
                .await
                .unwrap()
        }
    };
    // Day D: two answers of 91 000 µ$.
    spend(2).await;
    let row_d = eventually(Duration::from_secs(15), "day D's spend", || async {
        period_row(day_d)
            .await
            .filter(|r| r.spent_micros == 182_000)
    })
    .await;
    // Midnight passes; day D+1: three more.
    gw.clock.set(at("2026-12-01T00:00:05Z"));
    spend(3).await;
    eventually(Duration::from_secs(15), "day D+1's spend", || async {
        period_row(day_d1)
            .await
            .filter(|r| r.spent_micros == 273_000)
    })
    .await;
    assert_eq!(
        period_row(day_d).await.unwrap(),
        row_d,
        "day D's row is unchanged by the rollover"
    );

    // The admin view of the current period (D+1) shows only D+1's spend and a fresh grant.
    let (status, b) = gw
        .admin(reqwest::Method::GET, &format!("/budgets/{id}"), None)
        .await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["period_start"], day_d1, "{b}");
    assert_eq!(b["spent_micros"], 273_000, "{b}");
    let grants = budget_grant::Entity::find().all(&s.db).await.unwrap();
    let granted_in = |start: i64| -> i64 {
        grants
            .iter()
            .filter(|g| g.budget_id == id && g.period_start == start && !g.holder.is_empty())
            .map(|g| g.granted_micros)
            .sum()
    };
    // One chunk per day (amount / 10), each from a full amount: D+1 did not inherit D's grant.
    assert_eq!(granted_in(day_d), amount / 10);
    assert_eq!(granted_in(day_d1), amount / 10);
    let allocations = b["allocations"].as_array().unwrap();
    assert_eq!(allocations.len(), 1, "{b}");
    assert_eq!(allocations[0]["granted_micros"], amount / 10, "{b}");

    // Looking back from day D, the API shows day D's figures.
    gw.clock.set(at("2026-11-30T12:00:00Z"));
    let (_, b) = gw
        .admin(reqwest::Method::GET, &format!("/budgets/{id}"), None)
        .await;
    assert_eq!(b["period_start"], day_d, "{b}");
    assert_eq!(b["spent_micros"], 182_000, "{b}");
    gw.shutdown().await;
}

/// The lease ledger survives a control-plane restart: a holder's live grant still claims the
/// budget, so the next holder cannot be granted the same money again.
#[tokio::test]
async fn a_restarted_control_plane_never_grants_more_than_the_amount() {
    use modelgate_proto::quota::v1::{quota_service_client::QuotaServiceClient, AllocateRequest};

    let mut gw = Gateway::start().await;
    let team = gw.create("/teams", json!({"name": "ledger"})).await;
    let amount = 1_000_000;
    let id = budget(
        &gw,
        json!({"scope": {"team_id": team["id"]}, "amount_micros": amount, "period": "month", "enforcement": "hard"}),
    )
    .await;
    let period_start = modelgate_shared::quota::period_start(
        chrono::Utc::now(),
        modelgate_shared::quota::Period::Month,
    );
    let ask_for = |node: &str| AllocateRequest {
        node_id: node.to_owned(),
        budget_id: id.clone(),
        period_start,
        consumed_micros: 0,
        want_micros: amount,
        need_micros: 100_000,
    };
    // One node (its certificate), two of its processes as lease holders.
    let pki = crate::support::pki::Pki::shared();
    let channel = crate::support::pki::node_channel(pki, gw.grpc_addr, "node-a", &[]);
    let mut client = QuotaServiceClient::new(channel.clone());
    let first = client
        .allocate(ask_for("node-a/1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        first.granted_total_micros, amount,
        "a lone holder may take it all"
    );

    gw.restart_control_plane().await;
    let mut client = QuotaServiceClient::new(channel);
    let second = eventually(Duration::from_secs(10), "the restarted gRPC", || {
        let mut client = client.clone();
        let ask = ask_for("node-a/2");
        async move { client.allocate(ask).await.ok() }
    })
    .await
    .into_inner();
    assert!(
        first.granted_total_micros + second.granted_total_micros <= amount,
        "granted {} + {} past {amount}",
        first.granted_total_micros,
        second.granted_total_micros
    );
    assert_eq!(second.remaining_micros, 0);
    // The first holder renewing after the restart keeps its grant (nothing new to give).
    let renewed = client
        .allocate(ask_for("node-a/1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renewed.granted_total_micros, amount);
    gw.shutdown().await;
}
