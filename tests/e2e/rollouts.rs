//! Staged rollouts across a fleet of data planes with different certificate-bound labels
//! (issue #15): a canary that fails its gates is rolled back before later waves see the change;
//! a healthy rollout moves wave by wave; a key revocation reaches every node while a rollout is
//! paused; a node that stops applying its assignment is flagged as drifting.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use modelgate_data_plane::RunningDataPlane;
use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{
    eventually, node_id_for, pki, start_data_plane_custom, temp_dir, upstream::MockUpstream,
    Gateway, Provisioned,
};

/// One more data plane of the fleet, its certificate carrying `labels`.
struct Node {
    name: &'static str,
    dp: RunningDataPlane,
    _dir: PathBuf,
}

impl Node {
    async fn start(gw: &Gateway, name: &'static str, labels: &[(&str, &str)]) -> Node {
        let dir = temp_dir(name);
        let id = node_id_for(&dir);
        let owned: HashMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let dp = start_data_plane_custom(gw.grpc_addr, &dir, move |s| {
            s.labels = owned;
            // Issued after the default certificate, so the node's file carries these labels.
            s.grpc_security = pki::Pki::shared().node_security(&id, labels);
        })
        .await;
        Node {
            name,
            dp,
            _dir: dir,
        }
    }

    fn version(&self) -> u64 {
        self.dp.config_version()
    }

    async fn chat(&self, key: &str, alias: &str) -> u16 {
        self.send_chat(key, alias, false).await
    }

    /// A chat request marked as check traffic, as `modelgate check` sends its requests.
    async fn check_chat(&self, key: &str, alias: &str) -> u16 {
        self.send_chat(key, alias, true).await
    }

    async fn send_chat(&self, key: &str, alias: &str, check: bool) -> u16 {
        let mut req = reqwest::Client::new()
            .post(format!("http://{}/v1/chat/completions", self.dp.addr))
            .bearer_auth(key)
            .json(&json!({"model": alias, "messages": [{"role": "user", "content": "hi"}]}));
        if check {
            req = req.header(modelgate_shared::usage::CHECK_HEADER, "1");
        }
        req.send().await.unwrap().status().as_u16()
    }
}

/// A gateway (its own data plane is `region=test`) with the alias `smart` on a healthy
/// upstream, and three more nodes: a canary in eu-west, a plain eu-west node, a us-east node.
struct Fleet {
    good: MockUpstream,
    gw: Gateway,
    p: Provisioned,
    canary: Node,
    eu: Node,
    us: Node,
}

impl Fleet {
    async fn start() -> Fleet {
        let good = MockUpstream::start().await;
        let gw = Gateway::start().await;
        let p = gw.provision(&good.base_url(), "smart", "gpt-4o-2024").await;
        let canary = Node::start(&gw, "canary", &[("canary", "true"), ("region", "eu-west")]).await;
        let eu = Node::start(&gw, "eu", &[("region", "eu-west")]).await;
        let us = Node::start(&gw, "us", &[("region", "us-east")]).await;
        let fleet = Fleet {
            good,
            gw,
            p,
            canary,
            eu,
            us,
        };
        fleet.on_latest_version().await;
        fleet
    }

    /// Waits until every node serves the latest published version.
    async fn on_latest_version(&self) {
        let want = self.gw.cp().services.publisher.latest().unwrap().version();
        for n in self.nodes() {
            eventually(
                Duration::from_secs(10),
                "every node on the config",
                || async { (n.version() == want).then_some(()) },
            )
            .await;
        }
    }

    fn nodes(&self) -> [&Node; 3] {
        [&self.canary, &self.eu, &self.us]
    }

    /// The plan of every scenario: canary, then eu-west, then every region.
    async fn set_policy(&self, bake_s: u64, min_requests: u64, on_failure: &str) {
        let (status, body) = self
            .gw
            .admin(
                Method::PUT,
                "/rollouts/policy",
                Some(json!({
                    "waves": [
                        {"selector": "canary=true", "bake_s": bake_s},
                        {"selector": "region=eu-west", "bake_s": bake_s},
                        {"selector": "region=*", "bake_s": bake_s},
                    ],
                    "gates": {"min_requests": min_requests, "window_s": 60},
                    "on_failure": on_failure,
                })),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    async fn provider(&self, base_url: &str) -> String {
        let v = self
            .gw
            .create(
                "/providers",
                json!({"name": format!("up-{}", uuid::Uuid::now_v7().simple()), "kind": "openai-compatible", "base_url": base_url, "credential": "sk-upstream-secret-5678"}),
            )
            .await;
        // A new provider is a new version for every node (no rollout policy yet): let it
        // arrive everywhere, so that a scenario reading the nodes' versions next reads them
        // settled.
        self.on_latest_version().await;
        v["id"].as_str().unwrap().to_owned()
    }

    /// Points `smart` at `provider_id` (a policy change).
    async fn reroute(&self, provider_id: &str) {
        let (status, body) = self
            .gw
            .admin(
                Method::PUT,
                "/routes/smart",
                Some(json!({"alias": "smart", "deployments": [{"provider_id": provider_id, "model": "gpt-4o-2024"}]})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    /// Starts a rollout of `smart` to `provider_id` (gates that never pass on their own),
    /// waits until the canary serves it and pauses it; returns its id.
    async fn paused_rollout_to(&self, provider_id: &str) -> String {
        self.set_policy(1, 1_000_000, "pause").await;
        let old_version = self.canary.version();
        self.reroute(provider_id).await;
        let id = self.rollout().await["id"].as_str().unwrap().to_owned();
        self.canary_past(old_version).await;
        let (status, paused) = self
            .gw
            .admin(Method::POST, &format!("/rollouts/{id}/pause"), None)
            .await;
        assert_eq!(status, 200, "{paused}");
        assert_eq!(paused["status"], "paused");
        id
    }

    /// Waits until the canary serves a version above `old_version` (a rollout reached it).
    async fn canary_past(&self, old_version: u64) {
        eventually(
            Duration::from_secs(10),
            "the canary on the new version",
            || async { (self.canary.version() > old_version).then_some(()) },
        )
        .await;
    }

    /// The rollout the last change started.
    async fn rollout(&self) -> Value {
        let (status, body) = self.gw.admin(Method::GET, "/rollouts", None).await;
        assert_eq!(status, 200, "{body}");
        body["data"][0].clone()
    }

    async fn rollout_by_id(&self, id: &str) -> Value {
        let (status, body) = self
            .gw
            .admin(Method::GET, &format!("/rollouts/{id}"), None)
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn shutdown(mut self) {
        for n in [self.canary, self.eu, self.us] {
            n.dp.shutdown().await;
        }
        self.gw.stop_data_plane().await;
        self.gw.shutdown().await;
    }
}

#[tokio::test]
async fn a_canary_that_fails_its_error_gate_is_rolled_back_and_later_waves_never_receive_it() {
    let fleet = Fleet::start().await;
    let bad = MockUpstream::start().await;
    bad.fail_with(Some(500));
    let bad_provider = fleet.provider(&bad.base_url()).await;
    fleet.set_policy(1, 5, "rollback").await;
    let before: Vec<u64> = fleet.nodes().iter().map(|n| n.version()).collect();
    let gateway_node_before = fleet.gw.dp().config_version();

    // The change: `smart` now goes to a deployment that fails every call.
    fleet.reroute(&bad_provider).await;
    let rollout = fleet.rollout().await;
    assert_eq!(rollout["status"], "running", "{rollout}");
    let id = rollout["id"].as_str().unwrap().to_owned();
    let new_version = rollout["new_version"].as_u64().unwrap();
    eventually(
        Duration::from_secs(10),
        "the canary on the new version",
        || async { (fleet.canary.version() == new_version).then_some(()) },
    )
    .await;

    // The canary's traffic fails; the other nodes still serve from the healthy upstream.
    for _ in 0..8 {
        assert!(fleet.canary.chat(&fleet.p.key, "smart").await >= 500);
        assert_eq!(fleet.eu.chat(&fleet.p.key, "smart").await, 200);
    }

    let done = eventually(
        Duration::from_secs(15),
        "the automatic rollback",
        || async {
            let r = fleet.rollout_by_id(&id).await;
            (r["status"] == "rolled_back").then_some(r)
        },
    )
    .await;
    let reason = done["reason"].as_str().unwrap();
    assert!(
        reason.contains("gate failed") && reason.contains("error rate"),
        "{reason}"
    );
    assert_eq!(done["wave"], 0, "{done}");

    // The canary is back on the old content under a newer version, and serves again.
    let back = done["old_version"].as_u64().unwrap();
    assert!(
        back > new_version,
        "a rollback mints a version above the new one"
    );
    eventually(
        Duration::from_secs(10),
        "the canary rolled back",
        || async { (fleet.canary.version() == back).then_some(()) },
    )
    .await;
    assert_eq!(fleet.canary.chat(&fleet.p.key, "smart").await, 200);

    // Later waves never received the new version: versions only increase on a node, and
    // theirs never passed it.
    for (n, v) in [&fleet.eu, &fleet.us].iter().zip(&before[1..]) {
        let now = n.version();
        assert!(now == *v || now == back, "{} serves {now}", n.name);
        assert!(
            now != new_version,
            "{} received the failing version",
            n.name
        );
    }
    let gw_now = fleet.gw.dp().config_version();
    assert!(gw_now == gateway_node_before || gw_now == back);
    assert_eq!(fleet.us.chat(&fleet.p.key, "smart").await, 200);

    // The failed gate is in the audit log, attributed to the control plane itself.
    let (_, audit) = fleet
        .gw
        .admin(Method::GET, "/audit?resource_type=rollout", None)
        .await;
    assert!(audit.to_string().contains("rollout.gate_failed"), "{audit}");
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_healthy_rollout_completes_wave_by_wave() {
    let fleet = Fleet::start().await;
    let next = MockUpstream::start().await;
    let next_provider = fleet.provider(&next.base_url()).await;
    fleet.set_policy(1, 5, "rollback").await;
    let old_version = fleet.canary.version();

    fleet.reroute(&next_provider).await;
    let rollout = fleet.rollout().await;
    let id = rollout["id"].as_str().unwrap().to_owned();

    // The diff preview names the change.
    let (status, diff) = fleet
        .gw
        .admin(Method::GET, &format!("/rollouts/{id}/diff"), None)
        .await;
    assert_eq!(status, 200, "{diff}");
    assert_eq!(
        diff["changes"],
        json!([{"kind": "route", "id": "smart", "change": "changed"}])
    );

    fleet.canary_past(old_version).await;
    assert_eq!(
        fleet.eu.version(),
        old_version,
        "eu-west waits for its wave"
    );
    assert_eq!(
        fleet.us.version(),
        old_version,
        "us-east waits for its wave"
    );
    for _ in 0..8 {
        assert_eq!(fleet.canary.chat(&fleet.p.key, "smart").await, 200);
    }
    assert!(
        next.calls() >= 8,
        "the canary serves from the new deployment"
    );

    // Watch the fleet until the rollout completes: eu-west moves while us-east still waits.
    let eu_moved_while_us_waited = std::sync::atomic::AtomicBool::new(false);
    let done = eventually(
        Duration::from_secs(20),
        "the rollout to complete",
        || async {
            if fleet.eu.version() > old_version && fleet.us.version() == old_version {
                eu_moved_while_us_waited.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            let r = fleet.rollout_by_id(&id).await;
            (r["status"] == "completed").then_some(r)
        },
    )
    .await;
    assert!(
        eu_moved_while_us_waited.load(std::sync::atomic::Ordering::Relaxed),
        "wave 2 came before wave 3"
    );
    let final_version = done["new_version"].as_u64().unwrap();
    for n in fleet.nodes() {
        eventually(
            Duration::from_secs(10),
            "every node on the final version",
            || async { (n.version() == final_version).then_some(()) },
        )
        .await;
    }
    eventually(
        Duration::from_secs(10),
        "the gateway's node too",
        || async { (fleet.gw.dp().config_version() == final_version).then_some(()) },
    )
    .await;
    let calls = fleet.good.calls();
    assert_eq!(fleet.us.chat(&fleet.p.key, "smart").await, 200);
    assert_eq!(
        fleet.good.calls(),
        calls,
        "us-east now routes to the new deployment"
    );
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_key_revocation_during_a_paused_rollout_reaches_every_node() {
    let fleet = Fleet::start().await;
    let next = MockUpstream::start().await;
    let next_provider = fleet.provider(&next.base_url()).await;
    // A second key on the same team, which stays valid.
    let other = fleet
        .gw
        .create(
            "/keys",
            json!({"team_id": fleet.p.team_id, "name": "other", "environment": "prod"}),
        )
        .await;
    let other_key = other["key_secret"].as_str().unwrap().to_owned();
    let id = fleet.paused_rollout_to(&next_provider).await;

    let (status, body) = fleet
        .gw
        .admin(
            Method::POST,
            &format!("/keys/{}/revoke", fleet.p.key_id),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for n in fleet.nodes() {
        eventually(
            Duration::from_secs(5),
            "the revocation on every node",
            || async { (n.chat(&fleet.p.key, "smart").await == 401).then_some(()) },
        )
        .await;
    }
    eventually(
        Duration::from_secs(5),
        "the revocation on the gateway's node",
        || async {
            let status = fleet.gw.say_hi(&fleet.p.key, "smart").await.status();
            (status == 401).then_some(())
        },
    )
    .await;

    // The rollout is still paused in its first wave: eu-west and us-east keep the old route
    // (with the revocation), the canary the new one.
    let r = fleet.rollout_by_id(&id).await;
    assert_eq!(
        (r["status"].as_str(), r["wave"].as_u64()),
        (Some("paused"), Some(0)),
        "{r}"
    );
    let (good_before, next_before) = (fleet.good.calls(), next.calls());
    assert_eq!(fleet.eu.chat(&other_key, "smart").await, 200);
    assert_eq!(fleet.us.chat(&other_key, "smart").await, 200);
    assert_eq!(
        fleet.good.calls(),
        good_before + 2,
        "old route outside the wave"
    );
    assert_eq!(fleet.canary.chat(&other_key, "smart").await, 200);
    assert_eq!(next.calls(), next_before + 1, "new route on the canary");
    fleet.shutdown().await;
}

/// Every other security change (a key disabled, a rotation ended at once, a provider credential
/// replaced) reaches both tracks of a rollout paused in its first wave, and starts no rollout.
/// (Node revocation is not config: the control plane closes the node's streams itself, see
/// `fleet_security::a_revoked_node_is_cut_off_…`.)
#[tokio::test]
async fn disabling_a_key_ending_a_rotation_and_replacing_a_credential_during_a_paused_rollout_reach_every_node(
) {
    let fleet = Fleet::start().await;
    let next = MockUpstream::start().await;
    let next_provider = fleet.provider(&next.base_url()).await;
    async fn key(fleet: &Fleet, name: &str) -> (String, String) {
        let body = json!({"team_id": fleet.p.team_id, "name": name, "environment": "prod"});
        let v = fleet.gw.create("/keys", body).await;
        (
            v["id"].as_str().unwrap().to_owned(),
            v["key_secret"].as_str().unwrap().to_owned(),
        )
    }
    let (to_disable_id, to_disable) = key(&fleet, "to-disable").await;
    let (rotated_id, rotated_old) = key(&fleet, "rotated").await;
    let id = fleet.paused_rollout_to(&next_provider).await;

    // A key disabled.
    let (status, body) = fleet
        .gw
        .admin(
            Method::POST,
            &format!("/keys/{to_disable_id}/disable"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for n in fleet.nodes() {
        eventually(
            Duration::from_secs(5),
            "the disabled key refused on every node",
            || async { (n.chat(&to_disable, "smart").await == 401).then_some(()) },
        )
        .await;
    }

    // A rotation with no grace: the old secret stops everywhere, the new one works everywhere.
    let (status, rotated) = fleet
        .gw
        .admin(
            Method::POST,
            &format!("/keys/{rotated_id}/rotate"),
            Some(json!({"grace_seconds": 0})),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let rotated_new = rotated["key_secret"].as_str().unwrap().to_owned();
    for n in fleet.nodes() {
        eventually(
            Duration::from_secs(5),
            "the rotated-away secret refused and the new one served on every node",
            || async {
                (n.chat(&rotated_old, "smart").await == 401
                    && n.chat(&rotated_new, "smart").await == 200)
                    .then_some(())
            },
        )
        .await;
    }

    // Both upstreams' credentials replaced: the old track (eu, us) calls the first upstream with
    // its new credential, the canary calls the second with its new one.
    for (provider, credential) in [
        (&fleet.p.provider_id, "sk-replaced-old-track-1111"),
        (&next_provider, "sk-replaced-new-track-2222"),
    ] {
        let (status, body) = fleet
            .gw
            .admin(
                Method::PUT,
                &format!("/providers/{provider}/credential"),
                Some(json!({"credential": credential})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["credential_last4"],
            &credential[credential.len() - 4..]
        );
        assert!(!body.to_string().contains(credential), "{body}");
    }
    let bearer = |c: &str| Some(format!("Bearer {c}"));
    for (n, upstream, credential) in [
        (&fleet.eu, &fleet.good, "sk-replaced-old-track-1111"),
        (&fleet.us, &fleet.good, "sk-replaced-old-track-1111"),
        (&fleet.canary, &next, "sk-replaced-new-track-2222"),
    ] {
        eventually(
            Duration::from_secs(5),
            "the replaced credential used upstream",
            || async {
                let calls = upstream.calls();
                let status = n.chat(&rotated_new, "smart").await;
                (status == 200
                    && upstream.calls() == calls + 1
                    && upstream.last_target().authorization == bearer(credential))
                .then_some(())
            },
        )
        .await;
    }

    // None of it moved the rollout: still paused in its first wave, and still the only one.
    let r = fleet.rollout_by_id(&id).await;
    assert_eq!(
        (r["status"].as_str(), r["wave"].as_u64()),
        (Some("paused"), Some(0)),
        "{r}"
    );
    let (_, all) = fleet.gw.admin(Method::GET, "/rollouts", None).await;
    assert_eq!(all["data"].as_array().unwrap().len(), 1, "{all}");
    let (_, audit) = fleet.gw.admin(Method::GET, "/audit?limit=100", None).await;
    assert!(
        audit["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "provider.credential_replace"
                && e["resource_id"] == fleet.p.provider_id.as_str()),
        "{audit}"
    );
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_node_that_stops_applying_is_flagged_as_drifting() {
    let gw = Gateway::start_custom(|s| s.config_drift_after = Duration::from_secs(1)).await;
    // A node that says hello, receives its assignment, and never applies (never ACKs).
    let labels = [("region", "test")];
    let (assigned, stream, _tx) =
        pki::node_that_never_applies(gw.grpc_addr, "stuck-node", &labels).await;

    let nodes = eventually(
        Duration::from_secs(10),
        "the stuck node flagged",
        || async {
            let (status, page) = gw.admin(Method::GET, "/nodes", None).await;
            assert_eq!(status, 200, "{page}");
            let rows = page["data"].as_array().unwrap().clone();
            let stuck = rows.iter().find(|n| n["node_id"] == "stuck-node")?;
            (stuck["drifting"] == true).then_some(rows)
        },
    )
    .await;
    let stuck = nodes.iter().find(|n| n["node_id"] == "stuck-node").unwrap();
    assert_eq!(stuck["assigned_version"], assigned.version);
    assert_eq!(stuck["assigned_hash"], assigned.content_hash);
    assert_eq!(stuck["applied_version"], 0);
    // The real data plane applied its assignment: not drifting, hashes equal.
    let real = nodes
        .iter()
        .find(|n| n["node_id"] == node_id_for(&gw.dp_dir))
        .unwrap();
    assert_eq!(real["drifting"], false, "{real}");
    assert_eq!(real["applied_version"], real["assigned_version"]);
    assert_eq!(real["applied_hash"], real["assigned_hash"]);
    assert!(!real["applied_hash"].as_str().unwrap().is_empty());

    // ... and in the control plane's metrics.
    let metrics_url = format!("http://{}/metrics", gw.cp().metrics_addr.unwrap());
    let text = eventually(Duration::from_secs(5), "the drift metric", || async {
        let text = reqwest::get(&metrics_url).await.ok()?.text().await.ok()?;
        text.contains("modelgate_cp_node_config_drift{node=\"stuck-node\"} 1")
            .then_some(text)
    })
    .await;
    let real_series = format!(
        "modelgate_cp_node_config_drift{{node=\"{}\"}} 0",
        node_id_for(&gw.dp_dir)
    );
    assert!(text.contains(&real_series), "{text}");
    drop(stream);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_restarted_control_plane_resumes_the_rollout_where_it_was() {
    let mut fleet = Fleet::start().await;
    let next = MockUpstream::start().await;
    let next_provider = fleet.provider(&next.base_url()).await;
    // Gates that never pass: the rollout stays in its first wave.
    fleet.set_policy(1, 1_000_000, "rollback").await;
    let old_version = fleet.eu.version();
    fleet.reroute(&next_provider).await;
    let rollout = fleet.rollout().await;
    let id = rollout["id"].as_str().unwrap().to_owned();
    let new_version = rollout["new_version"].as_u64().unwrap();
    eventually(
        Duration::from_secs(10),
        "the canary on the new version",
        || async { (fleet.canary.version() == new_version).then_some(()) },
    )
    .await;

    fleet.gw.restart_control_plane().await;
    let r = fleet.rollout_by_id(&id).await;
    assert_eq!(
        (r["status"].as_str(), r["wave"].as_u64()),
        (Some("running"), Some(0)),
        "{r}"
    );
    assert_eq!(
        r["new_version"], new_version,
        "the tracks keep their versions"
    );
    // Every node reconnects and keeps its track: eu-west still waits for its wave.
    eventually(
        Duration::from_secs(20),
        "every node back on its stream",
        || async {
            let (_, page) = fleet.gw.admin(Method::GET, "/nodes", None).await;
            let rows = page["data"].as_array()?.clone();
            let connected = rows.iter().filter(|n| n["connected"] == true).count();
            (connected == 4).then_some(())
        },
    )
    .await;
    assert_eq!(fleet.canary.version(), new_version);
    assert_eq!(fleet.eu.version(), old_version);

    // The restarted control plane drives it: an operator's rollback reaches the canary.
    let (status, back) = fleet
        .gw
        .admin(Method::POST, &format!("/rollouts/{id}/rollback"), None)
        .await;
    assert_eq!(status, 200, "{back}");
    assert_eq!(back["status"], "rolled_back");
    let back_version = back["old_version"].as_u64().unwrap();
    assert!(back_version > new_version);
    eventually(
        Duration::from_secs(10),
        "the canary rolled back",
        || async { (fleet.canary.version() == back_version).then_some(()) },
    )
    .await;
    let calls = fleet.good.calls();
    assert_eq!(fleet.canary.chat(&fleet.p.key, "smart").await, 200);
    assert_eq!(
        fleet.good.calls(),
        calls + 1,
        "the canary routes to the old upstream again"
    );
    fleet.shutdown().await;
}

#[tokio::test]
async fn an_acceptance_runs_deliberate_failures_on_the_canary_do_not_fail_its_gate() {
    let fleet = Fleet::start().await;
    // What `modelgate check` asks of a gateway includes a request that must fail upstream:
    // here an alias whose only deployment answers 500, under a key of its own.
    let unreachable = MockUpstream::start().await;
    unreachable.fail_with(Some(500));
    let check = fleet
        .gw
        .provision(&unreachable.base_url(), "check-failure", "check-model")
        .await;
    fleet.on_latest_version().await;
    let next = MockUpstream::start().await;
    let next_provider = fleet.provider(&next.base_url()).await;
    fleet.set_policy(1, 5, "rollback").await;
    let old_version = fleet.canary.version();

    fleet.reroute(&next_provider).await;
    let id = fleet.rollout().await["id"].as_str().unwrap().to_owned();
    fleet.canary_past(old_version).await;

    // On the canary, half the requests fail, all of them check traffic.
    for _ in 0..8 {
        assert!(fleet.canary.check_chat(&check.key, "check-failure").await >= 500);
        assert_eq!(fleet.canary.chat(&fleet.p.key, "smart").await, 200);
    }
    // The first went upstream (with a retry); once ejected, the deployment was not called.
    assert!(unreachable.calls() > 0, "the check requests went upstream");

    let done = eventually(
        Duration::from_secs(20),
        "the rollout to finish one way or the other",
        || async {
            let r = fleet.rollout_by_id(&id).await;
            (r["status"] == "completed" || r["status"] == "rolled_back").then_some(r)
        },
    )
    .await;
    assert_eq!(done["status"], "completed", "{done}");

    // The failures are in the ledger all the same, marked as check traffic.
    eventually(Duration::from_secs(10), "the check rows", || async {
        let rows = crate::budgets::usage_rows(&fleet.gw, &check.key_id).await;
        (rows.len() == 8
            && rows.iter().all(|r| {
                r["application"] == modelgate_shared::usage::CHECK_APPLICATION
                    && r["status"].as_u64().unwrap_or(0) >= 500
            }))
        .then_some(())
    })
    .await;
    fleet.shutdown().await;
}
