//! Control-plane replicas over one Postgres (issue #15, R-6.8): a change committed on one
//! replica reaches nodes connected to another, two replicas minting at once never collide, and
//! a replica killed with SIGKILL under load hands its nodes to the survivor without losing or
//! double-counting usage and without overspending a hard budget.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use modelgate_data_plane::RunningDataPlane;
use sea_orm::ConnectionTrait;
use serde_json::{json, Value};

use crate::budgets::{ask, budget, expensive, usage_rows};
use crate::support::pki::{grpc_url, Pki};
use crate::support::{
    eventually, start_control_plane, start_data_plane_custom, temp_dir, upstream, Gateway, TestDb,
};

/// A `modelgate control-plane` process on `database_url`, over the test fleet's mutual TLS.
struct ControlPlaneProcess {
    child: Child,
    grpc_addr: std::net::SocketAddr,
}

impl Drop for ControlPlaneProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ControlPlaneProcess {
    fn spawn(database_url: &str, master_key: &str) -> ControlPlaneProcess {
        let files = Pki::shared().control_plane();
        let mut child = Command::new(env!("CARGO_BIN_EXE_modelgate"))
            .args([
                "control-plane",
                "--admin-listen",
                "127.0.0.1:0",
                "--grpc-listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
                "--database-url",
                database_url,
            ])
            .arg("--tls-ca")
            .arg(&files.ca)
            .arg("--tls-cert")
            .arg(&files.cert)
            .arg("--tls-key")
            .arg(&files.key)
            .env("MODELGATE_MASTER_KEY", master_key)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning modelgate control-plane");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let grpc_addr = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|l| {
                l.strip_prefix("MODELGATE_GRPC_ADDR=")
                    .map(|a| a.parse().unwrap())
            })
            .expect("the control plane printed its gRPC address");
        std::thread::spawn(move || lines.for_each(drop));
        ControlPlaneProcess { child, grpc_addr }
    }

    /// SIGKILL: no graceful shutdown, no lease released, connections cut.
    fn kill_9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// A data plane (in this process) given the control planes at `grpc` in that order.
async fn data_plane_on(grpc: &[std::net::SocketAddr]) -> (RunningDataPlane, String) {
    let urls = grpc
        .iter()
        .map(|a| grpc_url(*a))
        .collect::<Vec<_>>()
        .join(",");
    let dir = temp_dir("dp");
    let node = crate::support::node_id_for(&dir);
    let dp = start_data_plane_custom(grpc[0], &dir, |s| s.control_plane_url = urls).await;
    (dp, node)
}

async fn applied(dp: &RunningDataPlane, version: u64, what: &str) {
    eventually(Duration::from_secs(20), what, || async {
        (dp.config_version() >= version).then_some(())
    })
    .await;
}

fn newest(cp: &modelgate_control_plane::RunningControlPlane) -> u64 {
    cp.services.publisher.latest().unwrap().version()
}

/// A gateway on a fresh Postgres database (replica A, with its data plane) and a second control
/// plane on the same database (replica B).
async fn two_replicas() -> (Gateway, modelgate_control_plane::RunningControlPlane) {
    let db = TestDb::postgres().await;
    let url = db.url.clone();
    let gw = Gateway::start_on(db, url).await;
    let b = start_control_plane(
        &gw.cp_db_url,
        &gw.master_key,
        "127.0.0.1:0".parse().unwrap(),
    )
    .await;
    (gw, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_committed_on_one_replica_reaches_a_node_connected_to_another() {
    let upstream = upstream::MockUpstream::start().await;
    let (gw, b) = two_replicas().await;
    let (dp_b, _) = data_plane_on(&[b.grpc_addr]).await;
    applied(&dp_b, newest(gw.cp()), "the node on replica B to start").await;

    // Committed on replica A (its admin API); the node only talks to B.
    let p = gw.provision(&upstream.base_url(), "smart", "gpt-x").await;
    let on_a = newest(gw.cp());
    applied(&dp_b, on_a, "the node on replica B to apply A's change").await;
    assert_eq!(newest(&b), on_a, "both replicas publish the same version");
    let resp = reqwest::Client::new()
        .post(format!("http://{}/v1/chat/completions", dp_b.addr))
        .bearer_auth(&p.key)
        .json(&json!({"model": "smart", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "the key made on A works on B's node");

    dp_b.shutdown().await;
    b.shutdown().await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_minting_at_once_never_collide_and_end_on_the_same_version() {
    let (gw, b) = two_replicas().await;
    let team = gw.create("/teams", json!({"name": "minting"})).await;
    let team_id = team["id"].as_str().unwrap().to_owned();
    let admins = [gw.admin_url.clone(), format!("http://{}", b.admin_addr)];
    let mut tasks = Vec::new();
    for i in 0..24 {
        let (http, admin, token, team_id) = (
            gw.http.clone(),
            admins[i % 2].clone(),
            gw.admin_token.clone(),
            team_id.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let resp = http
                .post(format!("{admin}/admin/v1/keys"))
                .bearer_auth(token)
                .json(&json!({"team_id": team_id, "name": format!("k{i}"), "environment": "prod"}))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap();
            (status, body["id"].as_str().unwrap_or_default().to_owned())
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        let (status, id) = t.await.unwrap();
        // A version insert that lost the race would fail the rebuild after the commit (500).
        assert_eq!(status, 201, "every key create succeeds on either replica");
        ids.push(id);
    }
    let a = gw.cp();
    let both = eventually(
        Duration::from_secs(20),
        "both replicas to publish one newest version",
        || async {
            let (va, vb) = (newest(a), newest(&b));
            (va == vb).then_some(va)
        },
    )
    .await;
    for cp in [a, &b] {
        let latest = cp.services.publisher.latest().unwrap();
        assert_eq!(latest.version(), both);
        for id in &ids {
            assert!(
                latest.snapshot.config.keys.iter().any(|k| &k.id == id),
                "key {id} in the newest version"
            );
        }
    }
    let versions = a
        .services
        .db
        .query_all(sea_orm::Statement::from_string(
            a.services.db.get_database_backend(),
            "SELECT version, content_hash FROM config_versions ORDER BY version",
        ))
        .await
        .unwrap();
    let numbers: Vec<i64> = versions
        .iter()
        .map(|r| r.try_get::<i64>("", "version").unwrap())
        .collect();
    let mut unique = numbers.clone();
    unique.dedup();
    assert_eq!(numbers, unique, "no version number stored twice");

    b.shutdown().await;
    gw.shutdown().await;
}

/// Clients sending budgeted requests to some data planes until stopped; each answer's request
/// id and status.
struct BudgetLoad {
    stop: Arc<AtomicBool>,
    answered: Arc<Mutex<Vec<(String, u16, std::net::SocketAddr)>>>,
    clients: Vec<tokio::task::JoinHandle<()>>,
}

impl BudgetLoad {
    fn start(nodes: &[std::net::SocketAddr], key: &str, per_node: usize) -> BudgetLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let answered: Arc<Mutex<Vec<(String, u16, std::net::SocketAddr)>>> = Arc::default();
        let http = reqwest::Client::new();
        let mut clients = Vec::new();
        for node in nodes {
            for _ in 0..per_node {
                let (http, node, key) = (http.clone(), *node, key.to_owned());
                let (stop, answered) = (stop.clone(), answered.clone());
                clients.push(tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        if let Ok(resp) = ask(&http, node, &key).send().await {
                            let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
                            let status = resp.status().as_u16();
                            if resp.bytes().await.is_ok() {
                                answered.lock().unwrap().push((id, status, node));
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(30)).await;
                    }
                }));
            }
        }
        BudgetLoad {
            stop,
            answered,
            clients,
        }
    }

    fn count(&self) -> usize {
        self.answered.lock().unwrap().len()
    }

    async fn stop(self) -> Vec<(String, u16, std::net::SocketAddr)> {
        self.stop.store(true, Ordering::Relaxed);
        for c in self.clients {
            c.await.unwrap();
        }
        let all = self.answered.lock().unwrap().clone();
        all
    }
}

/// Budget grants recorded for holders of `node`.
async fn grants_of(gw: &Gateway, node: &str) -> i64 {
    let db = &gw.cp().services.db;
    let row = db
        .query_one(sea_orm::Statement::from_sql_and_values(
            db.get_database_backend(),
            "SELECT count(*) AS n FROM budget_grants WHERE holder LIKE $1 AND granted_micros > 0",
            [format!("{node}%").into()],
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_killed_under_load_hands_its_nodes_over_without_losing_usage_or_overspending() {
    let upstream = upstream::MockUpstream::start().await;
    let db = TestDb::postgres().await;
    let url = db.url.clone();
    let gw = Gateway::start_on(db, url).await;
    let p = gw
        .provision(&upstream.base_url(), "smart", "pricey-1")
        .await;
    expensive(&gw, "pricey-1").await;
    // Each answer costs 91 000 µ$ and reserves about twice that: about two hundred requests.
    let amount = 20_000_000_i64;
    budget(
        &gw,
        json!({"scope": {"team_id": p.team_id}, "amount_micros": amount, "period": "month",
               "enforcement": "hard", "when_unreachable": "fail_closed"}),
    )
    .await;

    let mut b = tokio::task::spawn_blocking({
        let (url, key) = (gw.cp_db_url.clone(), gw.master_key.clone());
        move || ControlPlaneProcess::spawn(&url, &key)
    })
    .await
    .unwrap();
    let a_addr = gw.grpc_addr;
    let (on_a, node_a) = data_plane_on(&[a_addr, b.grpc_addr]).await;
    let (on_b, node_b) = data_plane_on(&[b.grpc_addr, a_addr]).await;
    let version = newest(gw.cp());
    applied(&on_a, version, "the first node's config").await;
    applied(&on_b, version, "the second node's config").await;

    let load = BudgetLoad::start(&[on_a.addr, on_b.addr], &p.key, 3);
    // Both nodes hold budget grants (the second from replica B) before B dies.
    eventually(
        Duration::from_secs(30),
        "both nodes to be granted budget",
        || async {
            (grants_of(&gw, &node_a).await > 0 && grants_of(&gw, &node_b).await > 0).then_some(())
        },
    )
    .await;
    eventually(Duration::from_secs(30), "load before the kill", || async {
        (load.count() >= 40).then_some(())
    })
    .await;
    let before_kill = load.count();
    tokio::task::spawn_blocking(move || {
        b.kill_9();
        b
    })
    .await
    .unwrap();

    // A change on the survivor reaches both nodes: the second can only have it from A now.
    let late = gw
        .create(
            "/keys",
            json!({"team_id": p.team_id, "name": "after-failover", "environment": "prod", "allowed_models": ["smart"]}),
        )
        .await;
    let after_change = newest(gw.cp());
    applied(
        &on_a,
        after_change,
        "the first node to apply the survivor's change",
    )
    .await;
    applied(
        &on_b,
        after_change,
        "the moved node to apply the survivor's change",
    )
    .await;
    let resp = ask(&gw.http, on_b.addr, late["key_secret"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert!(
        [200, 429].contains(&resp.status().as_u16()),
        "the moved node serves the new key (or refuses it on the budget): {}",
        resp.status()
    );
    let late_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let late_status = resp.status().as_u16();
    drop(resp);

    // Keep the load on until the budget is spent.
    eventually(
        Duration::from_secs(60),
        "the budget to run out after the failover",
        || async {
            let answered = load.answered.lock().unwrap().clone();
            let refused_after = answered[before_kill.min(answered.len())..]
                .iter()
                .filter(|(_, s, _)| *s == 429)
                .count();
            (refused_after >= 20).then_some(())
        },
    )
    .await;
    let mut answered = load.stop().await;
    let moved_served = answered[before_kill..]
        .iter()
        .filter(|(_, s, node)| *s == 200 && *node == on_b.addr)
        .count();
    assert!(
        moved_served > 0,
        "the moved node kept serving after the kill"
    );
    answered.push((late_id, late_status, on_b.addr));
    assert!(
        answered.iter().all(|(_, s, _)| [200, 429].contains(s)),
        "every request answered or refused on the budget: {:?}",
        answered
            .iter()
            .filter(|(_, s, _)| ![200, 429].contains(s))
            .take(5)
            .collect::<Vec<_>>()
    );

    // Every answered request has exactly one usage row, and there is no other row.
    let want: HashMap<String, u16> = answered.into_iter().map(|(id, s, _)| (id, s)).collect();
    let rows = eventually(
        Duration::from_secs(60),
        "a usage row for every answered request",
        || async {
            let mut rows = usage_rows(&gw, &p.key_id).await;
            rows.extend(usage_rows(&gw, late["id"].as_str().unwrap()).await);
            (rows.len() >= want.len()).then_some(rows)
        },
    )
    .await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for r in &rows {
        *counts
            .entry(r["request_id"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "usage counted twice: {twice:?}");
    let missing: Vec<_> = want.keys().filter(|id| !counts.contains_key(*id)).collect();
    assert!(missing.is_empty(), "usage lost: {missing:?}");
    assert_eq!(
        counts.len(),
        want.len(),
        "no usage row of a request not sent"
    );

    let charged: i64 = rows
        .iter()
        .map(|r| r["cost_micros"].as_i64().unwrap())
        .sum();
    let accepted = want.values().filter(|s| **s == 200).count();
    assert!(accepted > 0);
    assert!(
        charged <= amount,
        "charged {charged} µ$ of a {amount} µ$ hard budget ({accepted} accepted)"
    );
    eprintln!(
        "replica failover: {} requests ({before_kill} before the kill), {accepted} accepted \
         ({moved_served} by the moved node after the kill), charged {charged} of {amount} µ$",
        want.len(),
    );

    on_a.shutdown().await;
    on_b.shutdown().await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_per_minute_hold_across_nodes_on_two_replicas() {
    let upstream = upstream::MockUpstream::start().await;
    let db = TestDb::postgres().await;
    let url = db.url.clone();
    let gw = Gateway::start_on(db, url).await;
    let p = gw.provision(&upstream.base_url(), "smart", "gpt-x").await;
    let b = start_control_plane(
        &gw.cp_db_url,
        &gw.master_key,
        "127.0.0.1:0".parse().unwrap(),
    )
    .await;
    let (on_b, _) = data_plane_on(&[b.grpc_addr]).await;
    let rpm: usize = 10;
    crate::rate_limits::limit(
        &gw,
        json!({"scope": {"key_id": p.key_id}, "rpm": rpm, "when_unreachable": "fail_closed"}),
    )
    .await;
    applied(
        &on_b,
        newest(gw.cp()),
        "the node on replica B to have the limit",
    )
    .await;
    crate::rate_limits::fresh_window(40).await;
    // Each replica alone would grant the whole minute: 2 × rpm over the two nodes.
    let mut tasks = Vec::new();
    for i in 0..(4 * rpm) {
        let node = if i % 2 == 0 { gw.dp().addr } else { on_b.addr };
        let req = ask(&gw.http, node, &p.key);
        tasks.push(tokio::spawn(async move {
            req.send().await.unwrap().status().as_u16()
        }));
    }
    let mut accepted = 0;
    for t in tasks {
        if t.await.unwrap() == 200 {
            accepted += 1;
        }
    }
    eprintln!("rpm {rpm} over nodes on two replicas: {accepted} accepted");
    assert!(
        accepted <= rpm,
        "{accepted} accepted in a minute under rpm {rpm}"
    );
    assert!(accepted > 0);
    assert_eq!(upstream.calls(), accepted);

    on_b.shutdown().await;
    b.shutdown().await;
    gw.shutdown().await;
}

/// Of two replicas, the one that does not hold the rollouts lease, once one of them holds it.
async fn the_replica_not_driving_rollouts<'a>(
    a: &'a modelgate_control_plane::RunningControlPlane,
    b: &'a modelgate_control_plane::RunningControlPlane,
) -> &'a modelgate_control_plane::RunningControlPlane {
    eventually(
        Duration::from_secs(30),
        "one replica to drive rollouts",
        || async {
            match (
                a.services.replica.drives_rollouts(),
                b.services.replica.drives_rollouts(),
            ) {
                (true, false) => Some(b),
                (false, true) => Some(a),
                _ => None,
            }
        },
    )
    .await
}

/// `POST /admin/v1{path}` on a replica's admin API.
async fn admin_on(
    cp: &modelgate_control_plane::RunningControlPlane,
    token: &str,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("http://{}/admin/v1{path}", cp.admin_addr))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rollout_actions_sent_to_the_replica_that_does_not_drive_rollouts_are_carried_out() {
    let upstream = upstream::MockUpstream::start().await;
    let (gw, b) = two_replicas().await;
    let p = gw.provision(&upstream.base_url(), "smart", "gpt-x").await;
    // Long bakes and a gate that never decides: only the operator moves this rollout.
    let (status, body) = gw
        .admin(
            reqwest::Method::PUT,
            "/rollouts/policy",
            Some(
                json!({"waves": [{"selector": "canary=true", "bake_s": 3600},
                                  {"selector": "region=eu-west", "bake_s": 3600},
                                  {"selector": "*", "bake_s": 3600}],
                        "gates": {"min_requests": 1000000}}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = gw
        .admin(
            reqwest::Method::POST,
            "/routes",
            Some(json!({"alias": "fast", "deployments": [{"provider_id": p.provider_id, "model": "gpt-y"}]})),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    // Exactly one replica holds the rollouts lease; the other is the one to talk to.
    let follower = the_replica_not_driving_rollouts(gw.cp(), &b).await;
    let rollout = eventually(Duration::from_secs(30), "the rollout to start", || async {
        let (status, list) = gw.admin(reqwest::Method::GET, "/rollouts", None).await;
        assert_eq!(status, 200, "{list}");
        list["data"][0]["id"]
            .as_str()
            .or_else(|| list[0]["id"].as_str())
            .map(str::to_owned)
    })
    .await;

    let act = |action: &'static str| {
        let rollout = rollout.clone();
        let token = gw.admin_token.clone();
        async move {
            admin_on(
                follower,
                &token,
                &format!("/rollouts/{rollout}/{action}"),
                json!({}),
            )
            .await
        }
    };
    let (status, promoted) = act("promote").await;
    assert_eq!(status, 200, "{promoted}");
    assert_eq!(promoted["status"], "running", "{promoted}");
    let (status, paused) = act("pause").await;
    assert_eq!(status, 200, "{paused}");
    assert_eq!(paused["status"], "paused", "{paused}");
    let (status, rolled_back) = act("rollback").await;
    assert_eq!(status, 200, "{rolled_back}");
    assert_eq!(rolled_back["status"], "rolled_back", "{rolled_back}");
    let (status, refused) = act("promote").await;
    assert_eq!(
        status, 409,
        "the driver's refusal comes back as it is: {refused}"
    );

    // Each action was carried out once, by the driver, and audited once.
    let (status, audit) = gw
        .admin(
            reqwest::Method::GET,
            &format!("/audit?resource_type=rollout&resource_id={rollout}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{audit}");
    let actions: Vec<&str> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["action"].as_str())
        .collect();
    for action in ["rollout.promote", "rollout.pause", "rollout.rollback"] {
        assert_eq!(
            actions.iter().filter(|a| **a == action).count(),
            1,
            "{action} in {actions:?}"
        );
    }

    b.shutdown().await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_canary_connected_to_the_replica_that_does_not_drive_rollouts_still_fails_its_gate() {
    let good = upstream::MockUpstream::start().await;
    let bad = upstream::MockUpstream::start().await;
    bad.fail_with(Some(500));
    let (gw, b) = two_replicas().await;
    let p = gw.provision(&good.base_url(), "smart", "gpt-x").await;
    let follower = the_replica_not_driving_rollouts(gw.cp(), &b).await;

    // The canary reports only to the replica that does not judge the rollout.
    let dir = temp_dir("canary");
    let id = crate::support::node_id_for(&dir);
    let labels = [("canary", "true"), ("region", "eu-west")];
    let canary = start_data_plane_custom(follower.grpc_addr, &dir, move |s| {
        s.labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        s.grpc_security = Pki::shared().node_security(&id, &labels);
    })
    .await;
    applied(&canary, newest(gw.cp()), "the canary on the current config").await;

    // A provider is policy too: added before the plan, so the rollout is the route's alone.
    let bad_provider = gw
        .create(
            "/providers",
            json!({"name": "bad", "kind": "openai-compatible", "base_url": bad.base_url(), "credential": "sk-bad"}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = gw
        .admin(
            reqwest::Method::PUT,
            "/rollouts/policy",
            Some(
                json!({"waves": [{"selector": "canary=true", "bake_s": 3600},
                                  {"selector": "*", "bake_s": 3600}],
                        "gates": {"min_requests": 5, "window_s": 60},
                        "on_failure": "rollback"}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = gw
        .admin(
            reqwest::Method::PUT,
            "/routes/smart",
            Some(json!({"alias": "smart", "deployments": [{"provider_id": bad_provider, "model": "gpt-x"}]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, list) = gw.admin(reqwest::Method::GET, "/rollouts", None).await;
    let rollout = list["data"][0].clone();
    let new_version = rollout["new_version"].as_u64().unwrap();
    let rollout_id = rollout["id"].as_str().unwrap().to_owned();
    applied(&canary, new_version, "the canary on the new version").await;

    let http = reqwest::Client::new();
    for _ in 0..8 {
        let status = http
            .post(format!("http://{}/v1/chat/completions", canary.addr))
            .bearer_auth(&p.key)
            .json(&json!({"model": "smart", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap()
            .status();
        assert!(status.as_u16() >= 500, "{status}");
    }

    let done = eventually(
        Duration::from_secs(30),
        "the driving replica to roll back on the canary's errors",
        || async {
            let (_, r) = gw
                .admin(
                    reqwest::Method::GET,
                    &format!("/rollouts/{rollout_id}"),
                    None,
                )
                .await;
            (r["status"] == "rolled_back").then_some(r)
        },
    )
    .await;
    let reason = done["reason"].as_str().unwrap();
    assert!(
        reason.contains("gate failed") && reason.contains("error rate"),
        "{reason}"
    );

    canary.shutdown().await;
    b.shutdown().await;
    gw.shutdown().await;
}

/// `GET /admin/v1{path}` on a replica's admin API.
async fn admin_get(
    cp: &modelgate_control_plane::RunningControlPlane,
    token: &str,
    path: &str,
) -> Value {
    let resp = reqwest::Client::new()
        .get(format!("http://{}/admin/v1{path}", cp.admin_addr))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "GET {path}");
    resp.json().await.unwrap()
}

/// Node `id` as replica `cp`'s `GET /nodes` shows it.
async fn node_on(
    cp: &modelgate_control_plane::RunningControlPlane,
    token: &str,
    id: &str,
) -> Option<Value> {
    admin_get(cp, token, "/nodes").await["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node_id"] == id)
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_connected_to_one_replica_is_shown_by_the_other_with_its_versions_and_rates() {
    let upstream = upstream::MockUpstream::start().await;
    let (gw, b) = two_replicas().await;
    let p = gw.provision(&upstream.base_url(), "smart", "gpt-x").await;
    let (on_b, node) = data_plane_on(&[b.grpc_addr]).await;
    let version = newest(gw.cp());
    applied(&on_b, version, "the node on replica B").await;
    for _ in 0..5 {
        let status = ask(&gw.http, on_b.addr, &p.key)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
    }

    // Replica A, which the node never talked to, shows it as B sees it.
    let shown = eventually(
        Duration::from_secs(30),
        "replica A to show the node on B with its traffic",
        || async {
            let n = node_on(gw.cp(), &gw.admin_token, &node).await?;
            (n["request_rate"].as_f64().unwrap() > 0.0
                && n["applied_version"].as_u64() >= Some(version))
            .then_some(n)
        },
    )
    .await;
    assert_eq!(shown["connected"], true, "{shown}");
    assert_eq!(shown["replica"], b.services.replica.id.as_str(), "{shown}");
    assert_eq!(shown["drifting"], false, "{shown}");
    assert_eq!(
        shown["assigned_version"], shown["applied_version"],
        "{shown}"
    );
    assert!(
        !shown["applied_hash"].as_str().unwrap().is_empty()
            && shown["applied_hash"] == shown["assigned_hash"],
        "{shown}"
    );
    assert_eq!(shown["target_version"], shown["applied_version"], "{shown}");
    assert_eq!(shown["error_rate"].as_f64(), Some(0.0), "{shown}");
    // And B agrees on what it holds in memory.
    let on_b_view = node_on(&b, &gw.admin_token, &node).await.unwrap();
    assert_eq!(on_b_view["replica"], shown["replica"]);
    assert_eq!(on_b_view["applied_hash"], shown["applied_hash"]);

    on_b.shutdown().await;
    b.shutdown().await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_on_one_replica_that_stops_applying_is_flagged_drifting_by_the_other() {
    let bound = Duration::from_secs(1);
    let db = TestDb::postgres().await;
    let url = db.url.clone();
    let gw = Gateway::start_with(db, url, |s| s.config_drift_after = bound).await;
    let b = crate::support::start_control_plane_custom(
        &gw.cp_db_url,
        &gw.master_key,
        "127.0.0.1:0".parse().unwrap(),
        |s| s.config_drift_after = bound,
    )
    .await;
    // A node on B that says hello, receives its assignment, and never applies it.
    let labels = [("region", "test")];
    let (assigned, stream, tx) =
        crate::support::pki::node_that_never_applies(b.grpc_addr, "stuck", &labels).await;

    let stuck = eventually(
        Duration::from_secs(30),
        "replica A to flag the node on B as drifting",
        || async {
            let n = node_on(gw.cp(), &gw.admin_token, "stuck").await?;
            (n["drifting"] == true).then_some(n)
        },
    )
    .await;
    assert_eq!(stuck["assigned_version"], assigned.version, "{stuck}");
    assert_eq!(stuck["applied_version"], 0, "{stuck}");
    assert_eq!(stuck["replica"], b.services.replica.id.as_str(), "{stuck}");
    // A's drift metric covers it too.
    let metrics = format!("http://{}/metrics", gw.cp().metrics_addr.unwrap());
    eventually(
        Duration::from_secs(30),
        "replica A's drift gauge of the node on B",
        || async {
            let text = reqwest::get(&metrics).await.ok()?.text().await.ok()?;
            text.lines()
                .any(|l| l == "modelgate_cp_node_config_drift{node=\"stuck\"} 1")
                .then_some(())
        },
    )
    .await;

    drop(tx);
    drop(stream);
    b.shutdown().await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_whose_replica_is_killed_stops_being_shown_as_live() {
    let db = TestDb::postgres().await;
    let url = db.url.clone();
    let gw = Gateway::start_on(db, url).await;
    let mut b = tokio::task::spawn_blocking({
        let (url, key) = (gw.cp_db_url.clone(), gw.master_key.clone());
        move || ControlPlaneProcess::spawn(&url, &key)
    })
    .await
    .unwrap();
    // The node knows only B: it cannot move when B dies.
    let (on_b, node) = data_plane_on(&[b.grpc_addr]).await;
    applied(&on_b, newest(gw.cp()), "the node on replica B").await;
    let live = eventually(
        Duration::from_secs(30),
        "replica A to show the node on B connected",
        || async {
            let n = node_on(gw.cp(), &gw.admin_token, &node).await?;
            (n["connected"] == true).then_some(n)
        },
    )
    .await;
    b.kill_9();
    let killed = std::time::Instant::now();
    let gone = eventually(
        Duration::from_secs(60),
        "replica A to stop showing the node of the killed replica as connected",
        || async {
            let n = node_on(gw.cp(), &gw.admin_token, &node).await?;
            (n["connected"] == false).then_some(n)
        },
    )
    .await;
    eprintln!(
        "a killed replica's node shown disconnected by the other replica {:.1} s after the kill",
        killed.elapsed().as_secs_f64()
    );
    assert_eq!(gone["drifting"], false, "{gone}");
    assert_eq!(gone["request_rate"].as_f64(), Some(0.0), "{gone}");
    // Shown as last connected to B.
    assert_eq!(gone["replica"], live["replica"], "{gone}");
    assert!(
        gone["replica"].is_string() && gone["replica"] != gw.cp().services.replica.id.as_str(),
        "{gone}"
    );

    on_b.shutdown().await;
    gw.shutdown().await;
}

/// The `value` of the first hidden `csrf` field in a page.
fn csrf_field(page: &str) -> String {
    let at = page
        .find("name=\"csrf\"")
        .expect("a form with a csrf field");
    let rest = &page[at..];
    let v = &rest[rest.find("value=\"").unwrap() + 7..];
    v[..v.find('"').unwrap()].to_owned()
}

/// The value a response sets cookie `name` to.
fn set_cookie(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| {
            c.split(';')
                .next()?
                .strip_prefix(&format!("{name}="))
                .map(str::to_owned)
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dashboard_session_opened_on_one_replica_is_accepted_and_ended_on_the_other() {
    let (gw, b) = two_replicas().await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let (a_url, b_url) = (gw.admin_url.clone(), format!("http://{}", b.admin_addr));

    // Sign in on A.
    let form = http.get(format!("{a_url}/login")).send().await.unwrap();
    let login_csrf = set_cookie(&form, "mg_login").unwrap();
    let signed_in = http
        .post(format!("{a_url}/login"))
        .header("cookie", format!("mg_login={login_csrf}"))
        .form(&[
            ("token", gw.admin_token.as_str()),
            ("csrf", login_csrf.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303);
    let session = set_cookie(&signed_in, "mg_session").unwrap();
    let cookie = format!("mg_session={session}");

    // B accepts the session: it shows the overview, not the sign-in form.
    let page = http
        .get(format!("{b_url}/"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200, "replica B accepts A's session");
    let csrf = csrf_field(&page.text().await.unwrap());
    // The database holds no cookie value and no admin token.
    let db = &gw.cp().services.db;
    let rows = db
        .query_all(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT id_hash, token_hash FROM dashboard_sessions",
        ))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    for column in ["id_hash", "token_hash"] {
        let v: String = rows[0].try_get("", column).unwrap();
        assert!(v != session && v != gw.admin_token, "{column}");
    }

    // Sign out on B ends it on A.
    let out = http
        .post(format!("{b_url}/logout"))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    let after = http
        .get(format!("{a_url}/"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(
        after.status(),
        303,
        "replica A sends the ended session to sign in"
    );
    assert_eq!(after.headers()["location"], "/login");

    b.shutdown().await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rate_limit_shares_seen_from_either_replica_agree() {
    let upstream = upstream::MockUpstream::start().await;
    let (gw, b) = two_replicas().await;
    let p = gw.provision(&upstream.base_url(), "smart", "gpt-x").await;
    let (on_b, node_b) = data_plane_on(&[b.grpc_addr]).await;
    let limit = crate::rate_limits::limit(
        &gw,
        json!({"scope": {"key_id": p.key_id}, "rpm": 1000, "when_unreachable": "fail_closed"}),
    )
    .await;
    applied(
        &on_b,
        newest(gw.cp()),
        "the node on replica B to have the limit",
    )
    .await;
    crate::rate_limits::fresh_window(40).await;
    for dp in [gw.dp().addr, on_b.addr] {
        for _ in 0..3 {
            let status = ask(&gw.http, dp, &p.key).send().await.unwrap().status();
            assert_eq!(status, 200);
        }
    }

    let shares = |v: &Value| -> Vec<(String, i64)> {
        let mut out: Vec<(String, i64)> = v["state"][0]["allocations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["node"].as_str().unwrap().to_owned(),
                    a["granted"].as_i64().unwrap(),
                )
            })
            .collect();
        out.sort();
        out
    };
    let path = format!("/rate-limits/{limit}");
    let from_a = shares(&admin_get(gw.cp(), &gw.admin_token, &path).await);
    let from_b = shares(&admin_get(&b, &gw.admin_token, &path).await);
    let nodes: Vec<&str> = from_a.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        nodes.iter().any(|n| n.starts_with(node_b.as_str())) && nodes.len() >= 2,
        "replica A shows the shares of both nodes: {from_a:?}"
    );
    assert_eq!(from_a, from_b, "both replicas show the same shares");
    let granted: i64 = from_a.iter().map(|(_, g)| g).sum();
    let total = admin_get(gw.cp(), &gw.admin_token, &path).await["state"][0]["granted"]
        .as_i64()
        .unwrap();
    assert_eq!(total, granted);

    on_b.shutdown().await;
    b.shutdown().await;
    gw.shutdown().await;
}
