//! Monthly statements (issue #18, R-4.8): line items by model, price version and unit, credits,
//! opening and closing balance; a month by event time in UTC that closes 72 h after it ends and
//! never changes after; an event that arrives after its month closed lands in the next open
//! month, naming its original day.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::{json, Value};

use crate::balances::credit;
use crate::budgets::usage_rows;
use crate::support::{
    self, eventually, tcp_proxy::TcpProxy, upstream::MockUpstream, Gateway, Provisioned,
};

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// A small seeded generator (xorshift64*), so a failing run can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

async fn statement(gw: &Gateway, team_id: &str, month: &str) -> Value {
    let (status, v) = gw
        .admin(
            Method::GET,
            &format!("/statements?team_id={team_id}&month={month}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{v}");
    v
}

fn lines_total(st: &Value) -> i64 {
    st["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["amount_micros"].as_i64().unwrap())
        .sum()
}

fn started_in(row: &Value, from: &str, to: &str) -> bool {
    let ms = row["started_at_ms"].as_i64().unwrap();
    ms >= at(from).timestamp_millis() && ms < at(to).timestamp_millis()
}

fn cost(rows: &[&Value]) -> i64 {
    rows.iter()
        .map(|r| r["cost_micros"].as_i64().unwrap())
        .sum()
}

/// A request through `dp` with a random prompt and output bound.
async fn random_request(gw: &Gateway, dp: std::net::SocketAddr, p: &Provisioned, rng: &mut Rng) {
    let alias = if rng.below(3) == 0 { "mini" } else { "smart" };
    request(gw, dp, p, rng, alias).await;
}

async fn request(
    gw: &Gateway,
    dp: std::net::SocketAddr,
    p: &Provisioned,
    rng: &mut Rng,
    alias: &str,
) {
    let words = "lorem ipsum ".repeat(1 + rng.below(20) as usize);
    let r = gw
        .http
        .post(format!("http://{dp}/v1/chat/completions"))
        .bearer_auth(&p.key)
        .json(&json!({"model": alias, "max_tokens": 1 + rng.below(50),
                      "messages": [{"role": "user", "content": words}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_months_statement_equals_its_ledger_rows_to_the_micro_dollar_across_a_price_change_and_a_late_event(
) {
    let seed = std::env::var("MODELGATE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| Utc::now().timestamp_micros() as u64 | 1);
    println!("statement traffic seed: {seed} (rerun with MODELGATE_TEST_SEED={seed})");
    let mut rng = Rng(seed);

    let upstream = MockUpstream::start().await;
    // Cached and reasoning tokens in every answer: all four token lines are itemised.
    upstream.report_details(5, 3);
    let gw = Gateway::start().await;
    gw.clock.set(at("2026-09-01T08:00:00Z"));
    let p = gw
        .provision(&upstream.base_url(), "smart", "gpt-4o-2024")
        .await;
    gw.create(
        "/models",
        json!({"model": "mini-1", "input_micros_per_mtok": 150_000, "output_micros_per_mtok": 600_000,
               "cached_input_micros_per_mtok": 75_000}),
    )
    .await;
    gw.create(
        "/routes",
        json!({"alias": "mini", "deployments": [{"provider_id": p.provider_id, "model": "mini-1"}]}),
    )
    .await;
    let (status, v) = gw
        .admin(
            Method::PATCH,
            &format!("/keys/{}", p.key_id),
            Some(json!({"allowed_models": ["smart", "mini"]})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    credit(
        &gw,
        &p.team_id,
        json!({"amount_micros": 50_000_000, "reason": "September prepaid", "mode": "alert"}),
    )
    .await;
    // A second data plane reaches the control plane through a proxy that can be cut: its event
    // of September 30 arrives after September closed.
    let proxy = TcpProxy::start(gw.grpc_addr).await;
    let late_dp = support::start_data_plane_clocked(
        proxy.addr,
        &support::temp_dir("late-dp"),
        gw.clock.clone(),
    )
    .await;
    let main_dp = gw.dp().addr;

    // A randomized September: 0 to 3 requests a day, a price change on the 15th, a debit
    // adjustment on the 20th.
    let mut sent = 0;
    for day in 1..=30u32 {
        let hour = 8 + rng.below(12);
        gw.clock.set(at(&format!(
            "2026-09-{day:02}T{hour:02}:{:02}:00Z",
            rng.below(60)
        )));
        if day == 15 {
            gw.create(
                "/models",
                json!({"model": "gpt-4o-2024", "input_micros_per_mtok": 3_000_000,
                       "output_micros_per_mtok": 12_000_000, "cached_input_micros_per_mtok": 1_500_000,
                       "reasoning_micros_per_mtok": 15_000_000}),
            )
            .await;
            gw.wait_for_config().await;
        }
        if day == 20 {
            credit(
                &gw,
                &p.team_id,
                json!({"kind": "adjustment", "amount_micros": -1_000_000, "reason": "billing correction"}),
            )
            .await;
        }
        // At least one `smart` request on each side of the price change.
        if day == 14 || day == 16 {
            request(&gw, main_dp, &p, &mut rng, "smart").await;
            sent += 1;
        }
        for _ in 0..rng.below(4) {
            random_request(&gw, main_dp, &p, &mut rng).await;
            sent += 1;
        }
    }
    // Served by the cut-off node, which keeps the events in its spool: one of September 30,
    // 23:30, and one of August 20, a month before any other usage.
    proxy.go_down();
    gw.clock.set(at("2026-09-30T23:30:00Z"));
    random_request(&gw, late_dp.addr, &p, &mut rng).await;
    gw.clock.set(at("2026-08-20T12:00:00Z"));
    random_request(&gw, late_dp.addr, &p, &mut rng).await;
    let is_late = |r: &Value| {
        started_in(r, "2026-09-30T23:30:00Z", "2026-09-30T23:40:00Z")
            || started_in(r, "2026-08-20T12:00:00Z", "2026-08-20T12:10:00Z")
    };
    // October 4, 00:30: September has closed (72 h after its end); two October requests.
    gw.clock.set(at("2026-10-04T00:30:00Z"));
    for _ in 0..2 {
        random_request(&gw, main_dp, &p, &mut rng).await;
        sent += 1;
    }
    eventually(Duration::from_secs(30), "the shipped usage", || async {
        (usage_rows(&gw, &p.key_id).await.len() == sent).then_some(())
    })
    .await;

    let september = statement(&gw, &p.team_id, "2026-09").await;
    assert_eq!(september["status"], "closed", "{september}");

    // The late events arrive now, after September closed.
    proxy.come_back();
    let rows = eventually(Duration::from_secs(30), "the late events", || async {
        let rows = usage_rows(&gw, &p.key_id).await;
        (rows.len() == sent + 2).then_some(rows)
    })
    .await;
    let late: Vec<&Value> = rows.iter().filter(|r| is_late(r)).collect();
    assert_eq!(late.len(), 2);
    let sept_rows: Vec<&Value> = rows
        .iter()
        .filter(|r| started_in(r, "2026-09-01T00:00:00Z", "2026-10-01T00:00:00Z") && !is_late(r))
        .collect();
    let oct_rows: Vec<&Value> = rows
        .iter()
        .filter(|r| started_in(r, "2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z"))
        .collect();

    // September: exactly its ledger rows stored before it closed, to the micro-dollar.
    assert_eq!(september["requests"], sept_rows.len(), "{september}");
    assert_eq!(september["usage_micros"], cost(&sept_rows), "{september}");
    assert_eq!(lines_total(&september), cost(&sept_rows), "{september}");
    let lines = september["lines"].as_array().unwrap();
    assert!(
        lines.iter().all(|l| l["unit"] != "other"),
        "every cost is explained by its catalog lines: {september}"
    );
    let smart_versions: std::collections::BTreeSet<i64> = lines
        .iter()
        .filter(|l| l["model"] == "smart")
        .map(|l| l["price_version"].as_i64().unwrap())
        .collect();
    assert_eq!(
        smart_versions.len(),
        2,
        "the price change splits the lines: {september}"
    );
    for unit in [
        "input_tokens",
        "cached_input_tokens",
        "output_tokens",
        "reasoning_tokens",
    ] {
        assert!(
            lines.iter().any(|l| l["unit"] == unit),
            "{unit}: {september}"
        );
    }
    // A line is its quantity at its unit price, per request (each rounded as charged).
    for l in lines {
        assert!(l["unit_price_micros"].as_i64().unwrap() > 0, "{l}");
        assert_eq!(l["price_basis"], "per_1m_tokens", "{l}");
    }
    let credits: Vec<i64> = september["credits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["amount_micros"].as_i64().unwrap())
        .collect();
    assert_eq!(credits, vec![50_000_000, -1_000_000], "{september}");
    assert_eq!(september["opening_balance_micros"], 0, "{september}");
    let september_closing = 49_000_000 - cost(&sept_rows);
    assert_eq!(
        september["closing_balance_micros"], september_closing,
        "{september}"
    );

    // A closed month never changes, even with a late event of its own.
    assert_eq!(statement(&gw, &p.team_id, "2026-09").await, september);

    // August closed with September (it had nothing then): its late event is not billed there.
    let august = statement(&gw, &p.team_id, "2026-08").await;
    assert_eq!(august["status"], "closed", "{august}");
    assert_eq!(august["requests"], 0, "{august}");
    assert_eq!(august["usage_micros"], 0, "{august}");

    // October: its own events and the late ones, which name their original days.
    let october = statement(&gw, &p.team_id, "2026-10").await;
    assert_eq!(october["status"], "open", "{october}");
    assert_eq!(october["requests"], oct_rows.len() + 2, "{october}");
    assert_eq!(october["late_requests"], 2, "{october}");
    let october_usage = cost(&oct_rows) + cost(&late);
    assert_eq!(october["usage_micros"], october_usage, "{october}");
    assert_eq!(lines_total(&october), october_usage, "{october}");
    for (day, from) in [
        ("2026-09-30", "2026-09-30T23:30:00Z"),
        ("2026-08-20", "2026-08-20T12:00:00Z"),
    ] {
        let on_day: i64 = october["lines"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["original_day"] == day)
            .map(|l| l["amount_micros"].as_i64().unwrap())
            .sum();
        let late_of_day: Vec<&Value> = late
            .iter()
            .copied()
            .filter(|r| r["started_at_ms"].as_i64().unwrap() >= at(from).timestamp_millis())
            .filter(|r| {
                r["started_at_ms"].as_i64().unwrap()
                    < (at(from) + chrono::Duration::minutes(10)).timestamp_millis()
            })
            .collect();
        assert_eq!(late_of_day.len(), 1);
        assert!(on_day > 0, "{day}: {october}");
        assert_eq!(on_day, cost(&late_of_day), "{day}: {october}");
    }
    assert_eq!(october["opening_balance_micros"], september_closing);
    assert_eq!(
        october["closing_balance_micros"],
        september_closing - october_usage
    );
    // With every event in, the open month closes at the live balance ingest keeps.
    let (_, live) = gw
        .admin(Method::GET, &format!("/teams/{}/balance", p.team_id), None)
        .await;
    assert_eq!(
        live["balance_micros"], october["closing_balance_micros"],
        "{live}"
    );
    println!(
        "September: {} requests, {} µ$ in {} lines; October: {} requests ({} late), {} µ$",
        september["requests"],
        september["usage_micros"],
        lines.len(),
        october["requests"],
        october["late_requests"],
        october["usage_micros"]
    );

    // CSV by Accept: one row per line and credit, then the totals.
    let csv = gw
        .http
        .get(format!(
            "{}/admin/v1/statements?team_id={}&month=2026-09",
            gw.admin_url, p.team_id
        ))
        .bearer_auth(&gw.admin_token)
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), 200);
    assert!(csv.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let text = csv.text().await.unwrap();
    let records: Vec<&str> = text.lines().collect();
    assert_eq!(records.len(), 1 + lines.len() + 2 + 4, "{text}");
    let total = records
        .iter()
        .find(|r| r.starts_with("usage_total,"))
        .unwrap()
        .split(',')
        .collect::<Vec<_>>();
    assert_eq!(total.len(), 16, "{text}");
    assert_eq!(total[12], cost(&sept_rows).to_string(), "{text}");

    late_dp.shutdown().await;
    gw.shutdown().await;
}

#[tokio::test]
async fn statements_are_read_by_the_teams_billing_role_and_refuse_a_malformed_month() {
    let (_upstream, gw, p) = support::gateway_with_smart_route().await;
    let (status, v) = gw
        .admin(
            Method::GET,
            &format!("/statements?team_id={}&month=2026-9", p.team_id),
            None,
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["param"], "month", "{v}");
    let member = gw
        .create(
            "/tokens",
            json!({"name": "m", "role": "member", "team_id": p.team_id}),
        )
        .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let billing = gw
        .create(
            "/tokens",
            json!({"name": "b", "role": "billing", "team_id": p.team_id}),
        )
        .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let get = |token: &str| {
        gw.http
            .get(format!(
                "{}/admin/v1/statements?team_id={}&month=2026-12",
                gw.admin_url, p.team_id
            ))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(get(&member).await.unwrap().status(), 403);
    let r = get(&billing).await.unwrap();
    assert_eq!(r.status(), 200);
    let st: Value = r.json().await.unwrap();
    assert_eq!(st["status"], "open", "{st}");
    assert_eq!(
        st["opening_balance_micros"],
        Value::Null,
        "no balance: {st}"
    );
    gw.shutdown().await;
}

/// One team's month of more than a page of events (a statement reads 10,000 at a time), 1,500
/// of them in each of seven milliseconds, so that a page ends inside a millisecond: every event
/// is counted once, and the lines add up to the ledger.
#[tokio::test]
async fn a_month_of_more_than_a_page_of_events_sharing_milliseconds_counts_each_event_once() {
    use crate::usage_ingest::{event_at, new_key, send};
    use modelgate_proto::usage::v1::UsageBatch;

    let gw = Gateway::start().await;
    let k = new_key(&gw, None).await;
    let noon = at("2026-03-10T12:00:00Z").timestamp_millis();
    let events: Vec<_> = (0..10_500)
        .map(|i| event_at(&k, "paged", 1 + i % 3, noon + i % 7))
        .collect();
    let ledger: i64 = events.iter().map(|e| e.cost_micros).sum();
    let batches = events
        .chunks(1_000)
        .enumerate()
        .map(|(n, chunk)| UsageBatch {
            batch_id: format!("paged-{n}"),
            node_id: "test-node".into(),
            resent: false,
            events: chunk.to_vec(),
        })
        .collect();
    let stored: u64 = send(&gw, batches)
        .await
        .iter()
        .map(|a| u64::from(a.inserted))
        .sum();
    assert_eq!(stored, 10_500);

    let st = statement(&gw, &k.team_id, "2026-03").await;
    assert_eq!(st["requests"], 10_500, "{st}");
    assert_eq!(st["usage_micros"], ledger);
    assert_eq!(lines_total(&st), ledger);
    gw.shutdown().await;
}
