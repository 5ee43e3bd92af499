//! Requests refused before a key is authenticated: billable to no one, so nothing
//! reaches the metered spool however many there are; each is counted in the metrics and,
//! sampled, recorded in the security log; failed authentication is throttled per address.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{eventually, gateway_with_smart_route, request_id, Gateway};

/// Failed authentications an address may have per minute (the data plane's default).
const AUTH_FAILURE_LIMIT: usize = 20;

/// A counter or gauge of the data plane, `name` with its labels as exposed.
pub(crate) async fn metric(gw: &Gateway, name: &str) -> u64 {
    let text = reqwest::get(format!("http://{}/metrics", gw.dp().metrics_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("metric {name} missing in:\n{text}"))
}

pub(crate) fn refused_metric(reason: &str) -> String {
    format!("modelgate_unauthenticated_refused_total{{reason=\"{reason}\"}}")
}

/// The data plane's security log (current file), one JSON value per record.
pub(crate) fn security_log(gw: &Gateway) -> Vec<Value> {
    let path = gw.dp_dir.join(modelgate_data_plane::security::log::FILE);
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Waits for the security log to hold a record of each of `request_ids` with its reason.
pub(crate) async fn assert_security_logged(gw: &Gateway, expected: &[(String, &str)]) {
    eventually(
        Duration::from_secs(5),
        "the security-log records",
        || async {
            let log = security_log(gw);
            expected
                .iter()
                .all(|(id, reason)| {
                    log.iter()
                        .any(|r| r["request_id"] == id.as_str() && r["reason"] == *reason)
                })
                .then_some(())
        },
    )
    .await;
}

/// Asserts that none of `request_ids` left a usage row: a request made with `key` after them
/// is stored first (the spool ships in order), then their rows are looked up. The later
/// request comes from its own address, which no test throttles.
pub(crate) async fn assert_no_usage_rows(
    gw: &Gateway,
    key: &str,
    alias: &str,
    request_ids: &[String],
) {
    let later = client_from(Ipv4Addr::new(127, 0, 0, 3))
        .post(format!("{}/chat/completions", gw.base_url()))
        .bearer_auth(key)
        .json(&json!({"model": alias, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert!(later.status().is_success(), "{}", later.status());
    gw.usage_row(&request_id(&later)).await;
    for id in request_ids {
        let (status, v) = gw
            .admin(
                reqwest::Method::GET,
                &format!("/usage/events?request_id={id}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["data"], json!([]), "request {id} left a usage row");
    }
}

/// A client whose connections come from `addr` (another loopback address is another source).
fn client_from(addr: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(addr))
        .build()
        .unwrap()
}

const OTHER_ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

#[tokio::test]
async fn an_unauthenticated_flood_writes_nothing_to_the_spool_and_only_sampled_log_records() {
    let (_upstream, mut gw, p) = gateway_with_smart_route().await;
    // Nothing is shipped (and no spool segment removed) while the control plane is away, so
    // the spool's size on disk only moves if something is written to it.
    gw.stop_control_plane().await;
    let spool_bytes = || gw.dp().spool.stats().disk_bytes.load(Relaxed);
    let before = spool_bytes();
    let backlog = gw.dp().usage_backlog_bytes();

    const FLOOD: usize = 300;
    let started = Instant::now();
    let chat = format!("{}/chat/completions", gw.base_url());
    let body = json!({"model": "smart", "messages": [{"role": "user", "content": "hi"}]});
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for n in 0..FLOOD {
        let req = match n % 3 {
            0 => gw.http.post(&chat).json(&body),
            1 => gw
                .http
                .post(&chat)
                .bearer_auth("mg-guessed-secret-4242")
                .json(&body),
            _ => gw
                .http
                .get(format!("{}/no/such/route?key=mg-in-query", gw.base_url())),
        };
        *statuses
            .entry(req.send().await.unwrap().status().as_u16())
            .or_default() += 1;
    }
    let elapsed = started.elapsed();
    assert_eq!(statuses.values().sum::<usize>(), FLOOD);
    assert!(statuses[&429] > 0, "the flood was throttled: {statuses:?}");

    assert_eq!(
        spool_bytes(),
        before,
        "the flood wrote to the metered spool"
    );
    assert_eq!(gw.dp().usage_backlog_bytes(), backlog);

    let refused: u64 = {
        let mut sum = 0;
        for reason in ["missing_key", "invalid_key", "unknown_route", "throttled"] {
            sum += metric(&gw, &refused_metric(reason)).await;
        }
        sum
    };
    assert_eq!(refused, FLOOD as u64, "every refusal is counted");
    assert!(metric(&gw, &refused_metric("throttled")).await > 0);

    // A few records a second from one address (bursts of 4 at 2 a second), not one per request.
    let records = eventually(Duration::from_secs(5), "security-log records", || async {
        let log = security_log(&gw);
        (log.len() >= 4).then_some(log)
    })
    .await;
    let bound = 4 + 2 * (elapsed.as_secs() as usize + 1);
    assert!(
        records.len() <= bound,
        "{} records for {FLOOD} requests in {elapsed:?} (at most {bound})",
        records.len()
    );
    let sampled_out = metric(&gw, "modelgate_security_log_sampled_out_total").await;
    assert!(sampled_out >= (FLOOD - bound) as u64, "{sampled_out}");
    for r in &records {
        assert_eq!(r["source"], "127.0.0.1", "{r}");
        assert!(
            r["request_id"].as_str().is_some_and(|id| !id.is_empty()),
            "{r}"
        );
        assert!(r["time"].is_string() && r["route"].is_string(), "{r}");
    }
    let text =
        std::fs::read_to_string(gw.dp_dir.join(modelgate_data_plane::security::log::FILE)).unwrap();
    assert!(
        !text.contains("mg-"),
        "no presented key reaches the log: {text}"
    );

    // The measure sees a billable request (from another address: this one is throttled).
    let served = client_from(OTHER_ADDRESS)
        .post(&chat)
        .bearer_auth(&p.key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    assert!(spool_bytes() > before, "a billable request is spooled");
    gw.shutdown().await;
}

#[tokio::test]
async fn an_address_past_its_failures_gets_429_in_each_format_while_others_are_served() {
    let (upstream, gw, p) = gateway_with_smart_route().await;
    let body = json!({"model": "smart", "messages": [{"role": "user", "content": "hi"}]});
    for n in 0..AUTH_FAILURE_LIMIT {
        let r = gw.chat("mg-wrong", body.clone()).send().await.unwrap();
        assert_eq!(r.status(), 401, "failure {n}");
    }
    // Now even a valid key from this address is refused, before it is looked at.
    let throttled = gw.chat(&p.key, body.clone()).send().await.unwrap();
    assert_eq!(throttled.status(), 429);
    let retry: u64 = throttled.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let throttled_id = request_id(&throttled);
    let v: Value = throttled.json().await.unwrap();
    assert_eq!(v["error"]["code"], "too_many_auth_failures", "{v}");
    assert_eq!(v["error"]["type"], "rate_limit_error", "{v}");

    let anthropic = gw
        .http
        .post(format!("{}/messages", gw.base_url()))
        .header("x-api-key", &p.key)
        .json(&json!({"model": "smart", "max_tokens": 5, "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(anthropic.status(), 429);
    assert!(anthropic.headers().contains_key("retry-after"));
    let v: Value = anthropic.json().await.unwrap();
    assert_eq!(
        (v["type"].as_str(), v["error"]["type"].as_str()),
        (Some("error"), Some("rate_limit_error")),
        "{v}"
    );

    let gemini = gw
        .http
        .post(format!(
            "http://{}/v1beta/models/smart:generateContent",
            gw.dp().addr
        ))
        .header("x-goog-api-key", &p.key)
        .json(&json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(gemini.status(), 429);
    assert!(gemini.headers().contains_key("retry-after"));
    let v: Value = gemini.json().await.unwrap();
    assert_eq!(v["error"]["status"], "RESOURCE_EXHAUSTED", "{v}");

    // Another address, with a valid key, is served.
    let other = client_from(OTHER_ADDRESS)
        .post(format!("{}/chat/completions", gw.base_url()))
        .bearer_auth(&p.key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
    assert_eq!(
        upstream.calls(),
        1,
        "only the other address's request went upstream"
    );

    assert_eq!(metric(&gw, &refused_metric("throttled")).await, 3);
    assert_eq!(
        metric(&gw, &refused_metric("invalid_key")).await,
        AUTH_FAILURE_LIMIT as u64
    );
    // The failures used up this address's burst of log records; once its bucket refills (2 a
    // second), a throttled request is recorded too.
    assert!(metric(&gw, "modelgate_security_log_sampled_out_total").await > 0);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let again = gw.chat(&p.key, body.clone()).send().await.unwrap();
    assert_eq!(again.status(), 429);
    assert_security_logged(&gw, &[(request_id(&again), "throttled")]).await;
    assert_no_usage_rows(&gw, &p.key, "smart", &[throttled_id]).await;
    gw.shutdown().await;
}

#[tokio::test]
async fn a_revoked_key_is_identified_its_refusal_billable_to_its_team() {
    let (_upstream, gw, p) = gateway_with_smart_route().await;
    let (status, _) = gw
        .admin(
            reqwest::Method::POST,
            &format!("/keys/{}/revoke", p.key_id),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let refused = eventually(Duration::from_secs(2), "the key to be refused", || async {
        let r = gw.say_hi(&p.key, "smart").await;
        (r.status() == 401).then_some(r)
    })
    .await;
    let row = gw.usage_row(&request_id(&refused)).await;
    assert_eq!(row["key_id"], p.key_id.as_str());
    assert_eq!(row["team_id"], p.team_id.as_str());
    assert_eq!(row["error_class"], "auth");
    assert_eq!(
        metric(&gw, &refused_metric("invalid_key")).await,
        0,
        "not anonymous"
    );
    gw.shutdown().await;
}
