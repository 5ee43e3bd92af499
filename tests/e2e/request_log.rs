//! The request log (`GET /admin/v1/requests`, `GET /admin/v1/requests/{request_id}`) over the
//! real admin API and a real ledger (Postgres with `MODELGATE_TEST_DATABASE_URL`, SQLite
//! otherwise): every filter against a model of it computed here from the events stored, keyset
//! pages that neither repeat nor skip a request while events keep arriving, a team-scoped token
//! that sees its own team only, bad input refused naming the parameter, and a real request that
//! fell back shown with each of its attempts.

use modelgate_shared::usage::{Attempt, Environment, ErrorClass, UsageEvent, USAGE_SCHEMA_VERSION};
use reqwest::Method;
use serde_json::{json, Value};

use crate::support::upstream::MockUpstream;
use crate::support::{request_id, Gateway};

/// Which events a filter should select.
type Keep = Box<dyn Fn(&UsageEvent) -> bool>;

/// One synthetic request of the test's ledger.
fn event(n: u32, key: &(String, String), base_ms: i64) -> UsageEvent {
    let (key_id, team_id) = key;
    let failed = n.is_multiple_of(5);
    let rate_limited = n.is_multiple_of(7);
    let (status, class) = if rate_limited {
        (429, Some(ErrorClass::RateLimited))
    } else if failed {
        (502, Some(ErrorClass::ProviderError))
    } else {
        (200, None)
    };
    let provider = if n.is_multiple_of(3) {
        "prov-b"
    } else {
        "prov-a"
    };
    // Several requests share a millisecond, so the cursor's tie-break is exercised.
    let started = base_ms + i64::from(n / 3) * 1000;
    UsageEvent {
        schema_version: USAGE_SCHEMA_VERSION,
        id: uuid::Uuid::now_v7().to_string(),
        request_id: uuid::Uuid::now_v7().to_string(),
        started_at_ms: started,
        first_byte_at_ms: started + 5,
        ended_at_ms: started + i64::from(n % 4) * 100 + 10,
        node_id: "node-log".into(),
        key_id: key_id.clone(),
        team_id: team_id.clone(),
        user_id: if n.is_multiple_of(2) {
            "user-even"
        } else {
            "user-odd"
        }
        .into(),
        application: if n % 9 == 5 {
            modelgate_shared::usage::CHECK_APPLICATION
        } else if n.is_multiple_of(4) {
            "checkout"
        } else {
            "search"
        }
        .into(),
        environment: Some(if n % 3 == 1 {
            Environment::Staging
        } else {
            Environment::Prod
        }),
        endpoint: "chat.completions".into(),
        requested_model: if n.is_multiple_of(2) { "smart" } else { "fast" }.into(),
        provider_id: if rate_limited { "" } else { provider }.into(),
        served_model: "gpt-x".into(),
        attempts: if rate_limited {
            Vec::new()
        } else {
            vec![Attempt {
                provider_id: provider.into(),
                status,
                error_class: class,
                latency_us: 1000,
                ..Default::default()
            }]
        },
        status,
        error_class: class,
        latency_us: u64::from(n % 4) * 100_000 + 10_000,
        input_tokens: 10,
        output_tokens: u64::from(n),
        cost_micros: i64::from(n) * 100,
        streamed: n % 2 == 1,
        fallback_used: n.is_multiple_of(6),
        ..Default::default()
    }
}

async fn get(gw: &Gateway, token: &str, path: &str) -> (u16, Value) {
    let resp = gw
        .http
        .request(Method::GET, format!("{}/admin/v1{path}", gw.admin_url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

/// Every request id the log lists for `query`, following `next_cursor` with pages of `limit`.
async fn walk(gw: &Gateway, token: &str, query: &str, limit: u32) -> Vec<String> {
    let mut ids = Vec::new();
    let mut after = String::new();
    loop {
        let (status, page) = get(
            gw,
            token,
            &format!("/requests?limit={limit}&after={after}&{query}"),
        )
        .await;
        assert_eq!(status, 200, "{query}: {page}");
        for r in page["data"].as_array().unwrap() {
            ids.push(r["request_id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => after = c.to_owned(),
            None => return ids,
        }
    }
}

/// The request ids of `events` matching `keep`, as the log orders them: newest first, then by
/// ingest sequence descending (`events` is in ingest order).
fn expected(events: &[UsageEvent], keep: impl Fn(&UsageEvent) -> bool) -> Vec<String> {
    let mut rows: Vec<(usize, &UsageEvent)> =
        events.iter().enumerate().filter(|(_, e)| keep(e)).collect();
    rows.sort_by(|(i, a), (j, b)| (b.started_at_ms, j).cmp(&(a.started_at_ms, i)));
    rows.into_iter()
        .map(|(_, e)| e.request_id.clone())
        .collect()
}

async fn key(gw: &Gateway, team_id: &str, name: &str) -> (String, String) {
    let k = gw
        .create("/keys", json!({"team_id": team_id, "name": name}))
        .await;
    (k["id"].as_str().unwrap().to_owned(), team_id.to_owned())
}

async fn team(gw: &Gateway, name: &str) -> String {
    gw.create("/teams", json!({"name": name})).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[tokio::test]
async fn the_request_log_filters_pages_stably_and_keeps_a_team_token_to_its_team() {
    let gw = Gateway::start().await;
    let (team_a, team_b) = (team(&gw, "log-a").await, team(&gw, "log-b").await);
    let keys = [
        key(&gw, &team_a, "a1").await,
        key(&gw, &team_a, "a2").await,
        key(&gw, &team_b, "b1").await,
    ];
    let base = chrono::Utc::now().timestamp_millis() - 3_600_000;
    let mut events: Vec<UsageEvent> = (0..90)
        .map(|n| event(n, &keys[n as usize % 3], base))
        .collect();
    let services = &gw.cp().services;
    let stored =
        modelgate_control_plane::service::usage::ingest(services, "node-log", events.clone())
            .await
            .unwrap();
    assert_eq!(stored.inserted, 90, "{stored:?}");
    let admin = gw.admin_token.clone();

    // Every filter against its model.
    let (from, to) = (base + 5_000, base + 20_000);
    let cases: Vec<(String, Keep)> = vec![
        (String::new(), Box::new(|_| true)),
        (
            format!("from={}&to={}", rfc3339(from), rfc3339(to)),
            Box::new(move |e| e.started_at_ms >= from && e.started_at_ms < to),
        ),
        (format!("key_id={}", keys[1].0), {
            let k = keys[1].0.clone();
            Box::new(move |e| e.key_id == k)
        }),
        // A key with an alias, and with its own team named too.
        (format!("key_id={}&model=fast", keys[1].0), {
            let k = keys[1].0.clone();
            Box::new(move |e| e.key_id == k && e.requested_model == "fast")
        }),
        (format!("key_id={}&team_id={team_b}", keys[2].0), {
            let k = keys[2].0.clone();
            Box::new(move |e| e.key_id == k)
        }),
        (format!("team_id={team_b}"), {
            let t = team_b.clone();
            Box::new(move |e| e.team_id == t)
        }),
        (
            "user_id=user-odd".into(),
            Box::new(|e| e.user_id == "user-odd"),
        ),
        (
            "application=checkout".into(),
            Box::new(|e| e.application == "checkout"),
        ),
        (
            "environment=staging".into(),
            Box::new(|e| e.environment == Some(Environment::Staging)),
        ),
        (
            "model=smart".into(),
            Box::new(|e| e.requested_model == "smart"),
        ),
        (
            "provider_id=prov-b".into(),
            Box::new(|e| e.provider_id == "prov-b"),
        ),
        ("status=429".into(), Box::new(|e| e.status == 429)),
        (
            "status=5xx".into(),
            Box::new(|e| (500..600).contains(&e.status)),
        ),
        (
            "error_class=provider_error".into(),
            Box::new(|e| e.error_class == Some(ErrorClass::ProviderError)),
        ),
        (
            "error_class=none".into(),
            Box::new(|e| e.error_class.is_none()),
        ),
        (
            "error_class=any".into(),
            Box::new(|e| e.error_class.is_some()),
        ),
        ("fallback_used=true".into(), Box::new(|e| e.fallback_used)),
        ("streamed=false".into(), Box::new(|e| !e.streamed)),
        (
            "min_latency_ms=200".into(),
            Box::new(|e| e.latency_us >= 200_000),
        ),
        (
            "min_cost_micros=5000".into(),
            Box::new(|e| e.cost_micros >= 5000),
        ),
        // `modelgate check`'s requests, alone or left out.
        (
            "check_traffic=true".into(),
            Box::new(|e| e.application == modelgate_shared::usage::CHECK_APPLICATION),
        ),
        (format!("check_traffic=false&team_id={team_a}"), {
            let t = team_a.clone();
            Box::new(move |e| {
                e.application != modelgate_shared::usage::CHECK_APPLICATION && e.team_id == t
            })
        }),
        (
            format!("model=fast&status=2xx&team_id={team_a}&min_latency_ms=100"),
            {
                let t = team_a.clone();
                Box::new(move |e| {
                    e.requested_model == "fast"
                        && e.status == 200
                        && e.team_id == t
                        && e.latency_us >= 100_000
                })
            },
        ),
    ];
    for (query, keep) in &cases {
        let want = expected(&events, keep);
        assert!(!want.is_empty(), "the case {query:?} selects something");
        assert_eq!(walk(&gw, &admin, query, 7).await, want, "filter {query:?}");
    }
    // A key with another team, and a key that does not exist: nothing, not an error.
    for query in [
        format!("key_id={}&team_id={team_b}", keys[0].0),
        "key_id=no-such-key".to_owned(),
    ] {
        assert!(walk(&gw, &admin, &query, 7).await.is_empty(), "{query}");
    }

    // A page's rows carry what the log shows.
    let (_, page) = get(&gw, &admin, "/requests?limit=1").await;
    let top = &page["data"][0];
    let newest = events
        .iter()
        .find(|e| e.request_id == top["request_id"])
        .unwrap();
    assert_eq!(top["model"], newest.requested_model.as_str());
    assert_eq!(top["cost_micros"], newest.cost_micros);
    assert_eq!(top["attempts"], newest.attempts.len());

    // Keyset pages stay whole while events arrive: newer ones are not in this walk, older ones
    // that arrive late appear where they belong, nothing repeats or goes missing.
    let (_, first) = get(&gw, &admin, "/requests?limit=10").await;
    let mut seen: Vec<String> = first["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["request_id"].as_str().unwrap().to_owned())
        .collect();
    let newer = event(1, &keys[0], chrono::Utc::now().timestamp_millis() - 1_000);
    let mut late = event(2, &keys[0], base);
    late.started_at_ms = base - 1;
    modelgate_control_plane::service::usage::ingest(
        services,
        "node-log",
        vec![newer.clone(), late.clone()],
    )
    .await
    .unwrap();
    let mut after = first["next_cursor"].as_str().unwrap().to_owned();
    loop {
        let (_, page) = get(&gw, &admin, &format!("/requests?limit=10&after={after}")).await;
        seen.extend(
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["request_id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => after = c.to_owned(),
            None => break,
        }
    }
    events.push(late.clone());
    assert_eq!(
        seen,
        expected(&events, |_| true),
        "one walk while events arrive"
    );
    assert!(!seen.contains(&newer.request_id));
    events.push(newer);

    // A team-scoped viewer sees its team only, whatever it asks for.
    let token = gw
        .create(
            "/tokens",
            json!({"name": "a-viewer", "role": "viewer", "team_id": team_a}),
        )
        .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let own = {
        let t = team_a.clone();
        move |e: &UsageEvent| e.team_id == t
    };
    assert_eq!(walk(&gw, &token, "", 25).await, expected(&events, own));
    assert!(walk(&gw, &token, &format!("team_id={team_b}"), 25)
        .await
        .is_empty());
    let theirs = events.iter().find(|e| e.team_id == team_b).unwrap();
    let mine = events.iter().find(|e| e.team_id == team_a).unwrap();
    let (status, body) = get(&gw, &token, &format!("/requests/{}", theirs.request_id)).await;
    assert_eq!(status, 404, "another team's request is not found: {body}");
    let (status, body) = get(&gw, &token, &format!("/requests/{}", mine.request_id)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], mine.id.as_str());
    let (status, _) = get(&gw, &admin, &format!("/requests/{}", theirs.request_id)).await;
    assert_eq!(status, 200, "an organisation token sees every team");

    // Bad input is refused naming the parameter.
    for (query, param) in [
        ("status=abc", "status"),
        ("status=6xx", "status"),
        ("error_class=teapot", "error_class"),
        ("streamed=yes", "streamed"),
        ("check_traffic=maybe", "check_traffic"),
        ("min_latency_ms=-1", "min_latency_ms"),
        ("min_cost_micros=x", "min_cost_micros"),
        ("from=yesterday", "from"),
        ("from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", "to"),
        ("after=not-a-cursor", "after"),
        ("limit=0", "limit"),
    ] {
        let (status, body) = get(&gw, &admin, &format!("/requests?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["param"], param, "{query}: {body}");
    }
    let (status, _) = get(&gw, &admin, "/requests/no-such-request").await;
    assert_eq!(status, 404);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_request_that_fell_back_is_shown_with_each_attempt_and_why_it_failed() {
    let (a, b) = (MockUpstream::start().await, MockUpstream::start().await);
    let gw = Gateway::start().await;
    let (providers, team_id, k) = gw.two_tier_route("log-live", &a, &b, 1).await;
    gw.wait_for_config().await;
    a.fail_with(Some(503));
    let before = chrono::Utc::now().timestamp_millis();
    let resp = gw.say_hi(k["key_secret"].as_str().unwrap(), "smart").await;
    assert_eq!(resp.status(), 200);
    let id = request_id(&resp);
    gw.usage_row(&id).await;

    let admin = gw.admin_token.clone();
    let (status, row) = get(&gw, &admin, &format!("/requests/{id}")).await;
    assert_eq!(status, 200, "{row}");
    assert_eq!(row["fallback_used"], true);
    assert_eq!(row["provider_id"], providers[1].as_str());
    let attempts = row["attempts"].as_array().unwrap();
    let seen: Vec<(&str, i64, &str, &str)> = attempts
        .iter()
        .map(|t| {
            (
                t["provider_id"].as_str().unwrap(),
                t["status"].as_i64().unwrap(),
                t["error_class"].as_str().unwrap_or(""),
                t["error_message"].as_str().unwrap_or(""),
            )
        })
        .collect();
    let (pa, pb) = (providers[0].as_str(), providers[1].as_str());
    assert_eq!(
        seen,
        vec![
            (pa, 503, "provider_error", "503"),
            (pa, 503, "provider_error", "503"),
            (pb, 200, "", ""),
        ]
    );
    let starts: Vec<i64> = attempts
        .iter()
        .map(|t| t["started_at_ms"].as_i64().unwrap())
        .collect();
    assert!(starts[0] >= before, "{starts:?}");
    assert!(starts.windows(2).all(|w| w[0] <= w[1]), "{starts:?}");

    // The log lists it under the filters that describe it, and not under one that does not.
    let ids = walk(
        &gw,
        &admin,
        &format!("fallback_used=true&provider_id={pb}&team_id={team_id}"),
        10,
    )
    .await;
    assert_eq!(ids, vec![id.clone()]);
    assert!(walk(
        &gw,
        &admin,
        &format!("fallback_used=false&team_id={team_id}"),
        10
    )
    .await
    .is_empty());
    let (_, page) = get(&gw, &admin, &format!("/requests?team_id={team_id}")).await;
    assert_eq!(page["data"][0]["attempts"], 3);
    gw.shutdown().await;
}
