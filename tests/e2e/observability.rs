//! Both planes' `/metrics` after real traffic through the real gateway (control plane, data
//! plane over mutual TLS, mock upstreams over HTTP): the data plane's request, upstream, token,
//! cost and fallback series and its certificate expiry; the control plane's ingest, snapshot,
//! per-node version, connected nodes, allocation grants, admin requests by route template and
//! certificate expiry — each read before and after, and required to have moved by what the
//! traffic did. Then the `deploy/` artefacts: the alert rules pass `promtool check rules` and
//! their own `promtool test rules` cases, and every metric the rules and the Grafana dashboard
//! name is one these scrapes show.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::upstream::MockUpstream;
use crate::support::{eventually, request_id, Gateway};

async fn get_text(url: String) -> String {
    let resp = reqwest::get(url).await.unwrap();
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    resp.text().await.unwrap()
}

async fn scrape_dp(gw: &Gateway) -> String {
    get_text(format!("http://{}/metrics", gw.dp().metrics_addr)).await
}

async fn scrape_cp(gw: &Gateway) -> String {
    let addr = gw
        .cp()
        .metrics_addr
        .expect("the test control plane serves metrics");
    get_text(format!("http://{addr}/metrics")).await
}

/// The value of the sample `series` (name and labels exactly as rendered), 0 when absent.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Every metric family a scrape declares (`# TYPE name …`), with the sample names it implies.
fn families(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            out.insert(name.to_owned());
            match kind {
                "counter" => {
                    out.insert(format!("{name}_total"));
                }
                "histogram" => {
                    for s in ["_bucket", "_count", "_sum"] {
                        out.insert(format!("{name}{s}"));
                    }
                }
                _ => {}
            }
        }
    }
    out
}

async fn two_tier_gateway() -> (Gateway, MockUpstream, MockUpstream, String, String, String) {
    let (a, b) = (MockUpstream::start().await, MockUpstream::start().await);
    let gw = Gateway::start().await;
    let (providers, team, key) = gw.two_tier_route("obs", &a, &b, 0).await;
    let key_id = key["id"].as_str().unwrap().to_owned();
    // A hard budget and a rate limit: serving under them takes allocations from the control
    // plane.
    gw.create(
        "/budgets",
        json!({"scope": {"team_id": team}, "amount_micros": 10_000_000, "period": "day", "enforcement": "hard"}),
    )
    .await;
    gw.create(
        "/rate-limits",
        json!({"scope": {"key_id": key_id}, "rpm": 1000}),
    )
    .await;
    gw.wait_for_config().await;
    (
        gw,
        a,
        b,
        key["key_secret"].as_str().unwrap().to_owned(),
        key_id,
        providers[1].clone(),
    )
}

#[tokio::test]
async fn both_planes_metrics_move_with_real_traffic_and_the_deploy_artefacts_name_only_real_metrics(
) {
    let (gw, a, _b, key, key_id, pb) = two_tier_gateway().await;
    let dp_before = scrape_dp(&gw).await;
    let cp_before = scrape_cp(&gw).await;

    // Traffic: a request that falls back from a (503) to b, a streamed one, a refusal.
    a.fail_with(Some(503));
    let body = json!({"model": "smart", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]});
    let resp = gw.chat(&key, body.clone()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let first = request_id(&resp);
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let resp = gw.chat(&key, streamed).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let second = request_id(&resp);
    let _ = resp.text().await.unwrap();
    let mut unknown = body.clone();
    unknown["model"] = json!("no-such-alias");
    let refused = gw.chat(&key, unknown).send().await.unwrap();
    assert_eq!(refused.status(), 404);
    let third = request_id(&refused);
    for id in [&first, &second, &third] {
        gw.usage_row(id).await;
    }
    // Admin API calls: a route with an id, and a path no route has.
    let (status, _) = gw
        .admin(Method::GET, &format!("/keys/{key_id}"), None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = gw.admin(Method::GET, "/no-such-thing/42", None).await;
    assert_eq!(status, 404);

    // Data plane.
    let dp = scrape_dp(&gw).await;
    let moved = |series: &str, at_least: f64| {
        let (before, after) = (value(&dp_before, series), value(&dp, series));
        assert!(
            after - before >= at_least,
            "{series}: {before} -> {after}, expected +{at_least}\n{dp}"
        );
    };
    let served = format!(
        "modelgate_requests_total{{surface=\"chat.completions\",model=\"smart\",provider=\"{pb}\",status=\"200\",error_class=\"none\"}}"
    );
    moved(&served, 2.0);
    moved(
        "modelgate_requests_total{surface=\"chat.completions\",model=\"other\",provider=\"none\",status=\"404\",error_class=\"not_found\"}",
        1.0,
    );
    moved(
        &format!("modelgate_upstream_duration_seconds_count{{provider=\"{pb}\"}}"),
        2.0,
    );
    moved(
        &format!("modelgate_upstream_ttfb_seconds_count{{provider=\"{pb}\"}}"),
        2.0,
    );
    moved(
        "modelgate_request_duration_seconds_count{surface=\"chat.completions\"}",
        3.0,
    );
    moved("modelgate_fallbacks_total{model=\"smart\"}", 1.0);
    moved("modelgate_tokens_total{type=\"input\"}", 2.0);
    moved("modelgate_tokens_total{type=\"output\"}", 2.0);
    moved("modelgate_cost_micro_usd_total", 1.0);
    assert_eq!(value(&dp, "modelgate_requests_in_flight"), 0.0, "{dp}");
    let now = chrono::Utc::now().timestamp() as f64;
    for cert in ["client", "ca"] {
        let t = value(
            &dp,
            &format!("modelgate_tls_certificate_expiry_timestamp_seconds{{cert=\"{cert}\"}}"),
        );
        assert!(t > now + 86_400.0, "{cert} expiry {t}\n{dp}");
    }

    // Control plane.
    let node = crate::support::node_id_for(&gw.dp_dir);
    let cp = eventually(
        Duration::from_secs(10),
        "the control plane's figures",
        || {
            let gw = &gw;
            let node = node.clone();
            async move {
                let cp = scrape_cp(gw).await;
                let latest = gw
                    .cp()
                    .services
                    .publisher
                    .latest()
                    .unwrap()
                    .snapshot
                    .version as f64;
                let applied = value(
                    &cp,
                    &format!("modelgate_cp_node_config_version{{node=\"{node}\"}}"),
                );
                (applied == latest && value(&cp, "modelgate_cp_snapshot_version") == latest)
                    .then_some(cp)
            }
        },
    )
    .await;
    let cp_moved = |series: &str, at_least: f64| {
        let (before, after) = (value(&cp_before, series), value(&cp, series));
        assert!(
            after - before >= at_least,
            "{series}: {before} -> {after}, expected +{at_least}\n{cp}"
        );
    };
    cp_moved("modelgate_cp_usage_events_total{outcome=\"stored\"}", 3.0);
    cp_moved("modelgate_cp_usage_ingest_lag_seconds_count", 3.0);
    cp_moved("modelgate_cp_usage_batches_total", 1.0);
    cp_moved("modelgate_cp_allocation_grants_total{kind=\"budget\"}", 1.0);
    cp_moved(
        "modelgate_cp_allocation_grants_total{kind=\"rate_limit\"}",
        1.0,
    );
    cp_moved(
        "modelgate_cp_admin_requests_total{route=\"/admin/v1/keys/{id}\",method=\"GET\",status=\"200\"}",
        1.0,
    );
    cp_moved(
        "modelgate_cp_admin_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"}",
        1.0,
    );
    assert!(
        value(&cp, "modelgate_cp_snapshots_published_total") >= 1.0,
        "{cp}"
    );
    assert_eq!(value(&cp, "modelgate_cp_connected_nodes"), 1.0, "{cp}");
    assert!(
        !cp.contains(&key_id),
        "no key id is a label on the control plane"
    );
    assert!(
        !dp.contains(&key_id),
        "no key id is a label on the data plane"
    );
    for cert in ["server", "ca"] {
        let t = value(
            &cp,
            &format!("modelgate_tls_certificate_expiry_timestamp_seconds{{cert=\"{cert}\"}}"),
        );
        assert!(t > now + 86_400.0, "{cert} expiry {t}\n{cp}");
    }

    // deploy/: every metric the alert rules and the dashboard use is one of these.
    let mut known = families(&dp);
    known.extend(families(&cp));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let used = deploy_metric_names(&root);
    assert!(used.len() >= 10, "the artefacts name metrics: {used:?}");
    let missing: Vec<&String> = used.iter().filter(|n| !known.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "deploy/ names metrics no scrape shows: {missing:?}\nknown: {known:?}"
    );

    // A data plane that goes away takes its series with it.
    let mut gw = gw;
    gw.stop_data_plane().await;
    eventually(Duration::from_secs(10), "the node's series to go", || {
        let gw = &gw;
        let node = node.clone();
        async move {
            let cp = scrape_cp(gw).await;
            (value(&cp, "modelgate_cp_connected_nodes") == 0.0
                && !cp.contains(&format!("node=\"{node}\"")))
            .then_some(())
        }
    })
    .await;
    gw.shutdown().await;
}

/// The metric names (`modelgate_…`) in the alert rules and the Grafana dashboard.
fn deploy_metric_names(root: &Path) -> BTreeSet<String> {
    let mut text = std::fs::read_to_string(root.join("prometheus/alerts.yml")).unwrap();
    let dashboard = std::fs::read_to_string(root.join("grafana/modelgate.json")).unwrap();
    let parsed: Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    for panel in parsed["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            text.push('\n');
            text.push_str(target["expr"].as_str().expect("each target has an expr"));
        }
    }
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("modelgate_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        names.insert(text[start..end].to_owned());
        i = end;
    }
    names
}

/// The rules are valid and their own unit tests pass (`promtool`, from Debian's `prometheus`
/// package; `.ci/run` installs it when missing). Not skipped when promtool is absent: fails.
#[test]
fn the_alert_rules_pass_promtool_check_and_their_unit_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus");
    for args in [
        vec!["check", "rules", "alerts.yml"],
        vec!["test", "rules", "alerts_test.yml"],
    ] {
        let out = std::process::Command::new("promtool")
            .args(&args)
            .current_dir(&root)
            .output()
            .unwrap_or_else(|e| panic!("promtool is needed (apt-get install prometheus): {e}"));
        assert!(
            out.status.success(),
            "promtool {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
