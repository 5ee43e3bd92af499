//! Test support: a database per test (a fresh Postgres database when
//! `MODELGATE_TEST_DATABASE_URL` is set, a temporary SQLite file otherwise), an in-process
//! control plane and data plane on port 0 talking mutual TLS with certificates from one test
//! fleet CA ([`pki::Pki`]), and a small admin client.

pub mod anthropic_upstream;
pub mod audio_upstream;
pub mod gemini_upstream;
pub mod load;
pub mod openai_upstream;
pub mod pki;
pub mod scripted;
pub mod services;
pub mod tcp_proxy;
pub mod upstream;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use modelgate_control_plane::crypto::Sealer;
use modelgate_control_plane::RunningControlPlane;
use modelgate_data_plane::usage::spool::{FsyncPolicy, SpoolOptions};
use modelgate_data_plane::RunningDataPlane;
use sea_orm::{ConnectionTrait, Database};
use serde_json::{json, Value};

/// A request header as text, if present and valid.
pub fn header_text(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mg-e2e-{name}-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A database for one test.
pub struct TestDb {
    pub url: String,
    postgres: Option<(String, String)>,
}

impl TestDb {
    pub async fn new() -> TestDb {
        match std::env::var("MODELGATE_TEST_DATABASE_URL") {
            Ok(base) if !base.is_empty() => TestDb::on_postgres(base).await,
            _ => TestDb::sqlite(),
        }
    }

    /// A fresh SQLite file database, whatever the environment names (for what must hold on
    /// the zero-setup store too).
    pub fn sqlite() -> TestDb {
        let dir = temp_dir("sqlite");
        TestDb {
            url: format!("sqlite://{}?mode=rwc", dir.join("cp.db").display()),
            postgres: None,
        }
    }

    pub async fn drop_database(&self) {
        if let Some((base, name)) = &self.postgres {
            if let Ok(admin) = Database::connect(base).await {
                let _ = admin
                    .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await;
                let _ = admin.close().await;
            }
        }
    }
}

/// Polls `check` every 20 ms until it returns `Some`, or panics after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A whole gateway in this process: control plane, data plane, and an admin client.
pub struct Gateway {
    pub db: TestDb,
    /// What the control plane connects to (the test database, or a proxy in front of it).
    pub cp_db_url: String,
    pub master_key: String,
    pub cp: Option<RunningControlPlane>,
    pub dp: Option<RunningDataPlane>,
    pub grpc_addr: std::net::SocketAddr,
    pub admin_url: String,
    pub admin_token: String,
    pub dp_dir: PathBuf,
    pub http: reqwest::Client,
    /// The wall clock both planes read (the system clock until a test sets it).
    pub clock: std::sync::Arc<modelgate_shared::clock::SettableClock>,
}

impl Gateway {
    pub async fn start() -> Gateway {
        let db = TestDb::new().await;
        let url = db.url.clone();
        Gateway::start_on(db, url).await
    }

    /// A gateway on a fresh SQLite file database, whatever the environment names.
    pub async fn start_on_sqlite() -> Gateway {
        let db = TestDb::sqlite();
        let url = db.url.clone();
        Gateway::start_on(db, url).await
    }

    /// A gateway whose control plane reaches the test database through `cp_db_url`.
    pub async fn start_on(db: TestDb, cp_db_url: String) -> Gateway {
        Gateway::start_with(db, cp_db_url, |_| {}).await
    }

    /// A gateway whose control plane's settings `customize` adjusts (its clock is the
    /// gateway's).
    pub async fn start_custom(
        customize: impl FnOnce(&mut modelgate_control_plane::Settings),
    ) -> Gateway {
        let db = TestDb::new().await;
        let url = db.url.clone();
        Gateway::start_with(db, url, customize).await
    }

    /// A gateway on `db` whose control plane reaches it through `cp_db_url` and whose settings
    /// `customize` adjusts (its clock is the gateway's).
    pub async fn start_with(
        db: TestDb,
        cp_db_url: String,
        customize: impl FnOnce(&mut modelgate_control_plane::Settings),
    ) -> Gateway {
        let master_key = Sealer::generate_master_key_hex();
        let clock = modelgate_shared::clock::SettableClock::new();
        let cp_clock: modelgate_shared::clock::SharedClock = clock.clone();
        let cp = start_control_plane_custom(
            &cp_db_url,
            &master_key,
            "127.0.0.1:0".parse().unwrap(),
            |s| {
                s.clock = cp_clock;
                customize(s);
            },
        )
        .await;
        let admin_token = cp
            .bootstrap_admin_token
            .clone()
            .expect("a fresh database mints a bootstrap token");
        let grpc_addr = cp.grpc_addr;
        let admin_url = format!("http://{}", cp.admin_addr);
        let dp_dir = temp_dir("dp");
        let dp = start_data_plane_clocked(grpc_addr, &dp_dir, clock.clone()).await;
        let gw = Gateway {
            clock,
            db,
            cp_db_url,
            master_key,
            cp: Some(cp),
            dp: Some(dp),
            grpc_addr,
            admin_url,
            admin_token,
            dp_dir,
            http: reqwest::Client::new(),
        };
        gw.wait_for_config().await;
        gw
    }

    pub fn cp(&self) -> &RunningControlPlane {
        self.cp.as_ref().unwrap()
    }

    pub fn dp(&self) -> &RunningDataPlane {
        self.dp.as_ref().unwrap()
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.dp().addr)
    }

    /// Waits until the data plane serves the control plane's latest snapshot.
    /// A route `smart` over two OpenAI-compatible deployments of the priced model `gpt-x`:
    /// `a` at tier 0 and `b` at tier 1, retrying `max_retries` times before falling back; and
    /// a team named `name` with one key. Returns (provider ids of a and b, team id, the key as
    /// created). The data plane may not have the config yet: see [`Gateway::wait_for_config`].
    pub async fn two_tier_route(
        &self,
        name: &str,
        a: &upstream::MockUpstream,
        b: &upstream::MockUpstream,
        max_retries: u32,
    ) -> ([String; 2], String, Value) {
        let mut providers: [String; 2] = Default::default();
        for (i, up) in [a, b].into_iter().enumerate() {
            let p = self
                .create(
                    "/providers",
                    json!({"name": format!("{name}-{i}"), "kind": "openai-compatible", "base_url": up.base_url(), "credential": "sk-upstream-secret-1234"}),
                )
                .await;
            providers[i] = p["id"].as_str().unwrap().to_owned();
        }
        self.create(
            "/models",
            json!({"model": "gpt-x", "input_micros_per_mtok": 1_000_000, "output_micros_per_mtok": 2_000_000}),
        )
        .await;
        self.create(
            "/routes",
            json!({"alias": "smart", "policy": {"max_retries": max_retries}, "deployments": [
                {"provider_id": providers[0], "model": "gpt-x", "tier": 0},
                {"provider_id": providers[1], "model": "gpt-x", "tier": 1}]}),
        )
        .await;
        let team = self.create("/teams", json!({"name": name})).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let key = self
            .create("/keys", json!({"team_id": team, "name": name}))
            .await;
        (providers, team, key)
    }

    pub async fn wait_for_config(&self) {
        let Some(cp) = &self.cp else { return };
        let want = cp.services.publisher.latest().unwrap().snapshot.version;
        let dp = self.dp();
        eventually(
            Duration::from_secs(10),
            "the data plane to apply the latest snapshot",
            || async { (dp.config_version() >= want).then_some(()) },
        )
        .await;
    }

    pub async fn stop_control_plane(&mut self) {
        if let Some(cp) = self.cp.take() {
            cp.shutdown().await;
        }
    }

    /// Starts the control plane again on the same database and gRPC address.
    pub async fn restart_control_plane(&mut self) {
        self.stop_control_plane().await;
        let cp = start_control_plane_clocked(
            &self.cp_db_url,
            &self.master_key,
            self.grpc_addr,
            self.clock.clone(),
        )
        .await;
        self.admin_url = format!("http://{}", cp.admin_addr);
        self.cp = Some(cp);
    }

    /// Every usage row of a key, counted by request id.
    pub async fn usage_counts_by_request(&self, key_id: &str) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        let mut after = String::new();
        loop {
            let (status, page) = self
                .admin(
                    reqwest::Method::GET,
                    &format!("/usage/events?limit=1000&key_id={key_id}{after}"),
                    None,
                )
                .await;
            assert_eq!(status, 200, "{page}");
            for row in page["data"].as_array().unwrap() {
                *counts
                    .entry(row["request_id"].as_str().unwrap().to_owned())
                    .or_insert(0) += 1;
            }
            match page["next_cursor"].as_str() {
                Some(c) => after = format!("&after={c}"),
                None => return counts,
            }
        }
    }

    pub async fn stop_data_plane(&mut self) {
        if let Some(dp) = self.dp.take() {
            dp.shutdown().await;
        }
    }

    /// Starts a data plane again on the same data directory (its last-known-good and spool).
    pub async fn restart_data_plane(&mut self) {
        self.stop_data_plane().await;
        self.dp =
            Some(start_data_plane_clocked(self.grpc_addr, &self.dp_dir, self.clock.clone()).await);
    }

    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}/admin/v1{path}", self.admin_url))
            .bearer_auth(&self.admin_token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// POSTs a create and, like an operator who waits for a rollout, gives the data plane a
    /// moment (at most 5 s, without failing) to apply the snapshot that carries it: a test that
    /// uses what it just created must not race the config stream.
    pub async fn create(&self, path: &str, body: Value) -> Value {
        let (status, v) = self.admin(reqwest::Method::POST, path, Some(body)).await;
        assert_eq!(status, 201, "POST {path} answered {status}: {v}");
        self.settle().await;
        v
    }

    /// Waits (at most 5 s, never failing) until the data plane serves the control plane's
    /// latest snapshot; a test that means to check it waits with [`Gateway::wait_for_config`].
    pub async fn settle(&self) {
        let (Some(cp), Some(dp)) = (&self.cp, &self.dp) else {
            return;
        };
        let Some(want) = cp.services.publisher.latest().map(|p| p.snapshot.version) else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while dp.config_version() < want && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Team, key, an openai-compatible provider pointing at `upstream_base`, a price and a route.
    pub async fn provision(
        &self,
        upstream_base: &str,
        alias: &str,
        served_model: &str,
    ) -> Provisioned {
        let team = self
            .create(
                "/teams",
                json!({"name": format!("team-{}", uuid::Uuid::now_v7().simple())}),
            )
            .await;
        let team_id = team["id"].as_str().unwrap().to_owned();
        let key = self
            .create("/keys", json!({"team_id": team_id, "name": "app", "environment": "prod", "allowed_models": [alias]}))
            .await;
        let provider = self
            .create(
                "/providers",
                json!({"name": format!("up-{}", uuid::Uuid::now_v7().simple()), "kind": "openai-compatible", "base_url": upstream_base, "credential": "sk-upstream-secret-1234"}),
            )
            .await;
        let provider_id = provider["id"].as_str().unwrap().to_owned();
        self.create(
            "/models",
            json!({"model": served_model, "input_micros_per_mtok": 2_500_000, "output_micros_per_mtok": 10_000_000}),
        )
        .await;
        self.create("/routes", json!({"alias": alias, "deployments": [{"provider_id": provider_id, "model": served_model}]}))
            .await;
        self.wait_for_config().await;
        Provisioned {
            team_id,
            key_id: key["id"].as_str().unwrap().to_owned(),
            key: key["key_secret"].as_str().unwrap().to_owned(),
            provider_id,
        }
    }

    pub fn chat(&self, key: &str, body: Value) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}/chat/completions", self.base_url()))
            .bearer_auth(key)
            .json(&body)
    }

    /// Sends the plain non-streamed request most scenarios need and waits for the response.
    pub async fn say_hi(&self, key: &str, alias: &str) -> reqwest::Response {
        self.chat(
            key,
            json!({"model": alias, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap()
    }

    /// Waits for the usage row of a request to be stored by the control plane.
    pub async fn usage_row(&self, request_id: &str) -> Value {
        eventually(Duration::from_secs(15), "the usage row", || async {
            let (status, v) = self
                .admin(
                    reqwest::Method::GET,
                    &format!("/usage/events?request_id={request_id}"),
                    None,
                )
                .await;
            assert_eq!(status, 200, "{v}");
            v["data"].as_array().and_then(|rows| rows.first().cloned())
        })
        .await
    }

    pub async fn shutdown(mut self) {
        self.stop_data_plane().await;
        self.stop_control_plane().await;
        self.db.drop_database().await;
    }
}

/// The usual fixture: a mock upstream, a gateway, and the alias `smart` routed to the
/// upstream's `gpt-4o-2024` for a fresh team and key.
pub async fn gateway_with_smart_route() -> (upstream::MockUpstream, Gateway, Provisioned) {
    let upstream = upstream::MockUpstream::start().await;
    let gw = Gateway::start().await;
    let p = gw
        .provision(&upstream.base_url(), "smart", "gpt-4o-2024")
        .await;
    (upstream, gw, p)
}

/// The `x-request-id` a response carries.
pub fn request_id(resp: &reqwest::Response) -> String {
    resp.headers()["x-request-id"].to_str().unwrap().to_owned()
}

pub struct Provisioned {
    pub team_id: String,
    pub key_id: String,
    pub key: String,
    pub provider_id: String,
}

pub async fn start_control_plane(
    url: &str,
    master_key: &str,
    grpc: std::net::SocketAddr,
) -> RunningControlPlane {
    start_control_plane_clocked(url, master_key, grpc, modelgate_shared::clock::system()).await
}

/// A control plane reading `clock`.
pub async fn start_control_plane_clocked(
    url: &str,
    master_key: &str,
    grpc: std::net::SocketAddr,
    clock: modelgate_shared::clock::SharedClock,
) -> RunningControlPlane {
    start_control_plane_custom(url, master_key, grpc, |s| s.clock = clock).await
}

pub async fn start_data_plane(
    grpc_addr: std::net::SocketAddr,
    dir: &std::path::Path,
) -> RunningDataPlane {
    start_data_plane_clocked(grpc_addr, dir, modelgate_shared::clock::system()).await
}

/// A data plane reading `clock`.
pub async fn start_data_plane_clocked(
    grpc_addr: std::net::SocketAddr,
    dir: &std::path::Path,
    clock: modelgate_shared::clock::SharedClock,
) -> RunningDataPlane {
    start_data_plane_custom(grpc_addr, dir, |s| s.clock = clock).await
}

/// The node id of the data plane whose data directory is `dir`: the same across restarts, as a
/// real node's (its certificate names it; its spooled events carry it).
pub fn node_id_for(dir: &std::path::Path) -> String {
    let name = dir.file_name().unwrap().to_string_lossy();
    format!("node-{}", name.trim_start_matches("mg-e2e-"))
}

/// The audio upload cap of the test data planes: 256 KiB (a few seconds of 16 kHz WAV).
pub const AUDIO_CAP: usize = 256 * 1024;

/// A data plane with explicit spool options.
pub async fn start_data_plane_with(
    grpc_addr: std::net::SocketAddr,
    dir: &std::path::Path,
    spool: SpoolOptions,
) -> RunningDataPlane {
    let node_id = node_id_for(dir);
    modelgate_data_plane::start(modelgate_data_plane::Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        http: Default::default(),
        metrics_listen: "127.0.0.1:0".parse().unwrap(),
        workers: 2,
        control_plane_url: pki::grpc_url(grpc_addr),
        grpc_security: pki::Pki::shared().node_security(&node_id, &[("region", "test")]),
        node_id,
        labels: HashMap::from([("region".to_owned(), "test".to_owned())]),
        data_dir: dir.to_owned(),
        max_body_bytes: 64 * 1024,
        max_audio_bytes: AUDIO_CAP,
        spool,
        lkg_key: modelgate_data_plane::LkgKey::GeneratedBesideData,
        health_report_interval: std::time::Duration::from_millis(200),
        clock: modelgate_shared::clock::system(),
        security: Default::default(),
        cache: Default::default(),
        otlp_endpoint: None,
    })
    .await
    .unwrap()
}

/// A control plane whose settings `customize` adjusts (e.g. its clock or the admin listener's
/// options), on the test fleet's mutual TLS.
pub async fn start_control_plane_custom(
    url: &str,
    master_key: &str,
    grpc: std::net::SocketAddr,
    customize: impl FnOnce(&mut modelgate_control_plane::Settings),
) -> RunningControlPlane {
    let mut settings = modelgate_control_plane::Settings {
        database_url: url.to_owned(),
        master_key_hex: master_key.to_owned().into(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        admin_http: Default::default(),
        grpc_listen: grpc,
        grpc_security: pki::Pki::shared().server_security(),
        grpc_limits: Default::default(),
        metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
        clock: modelgate_shared::clock::system(),
        usage_retention: None,
        config_drift_after: modelgate_control_plane::service::DEFAULT_CONFIG_DRIFT_AFTER,
        statement_grace: modelgate_control_plane::service::statements::DEFAULT_GRACE,
    };
    customize(&mut settings);
    modelgate_control_plane::start(settings).await.unwrap()
}

/// A data plane whose settings `customize` adjusts (e.g. its clock or the proxy listener's
/// options), joining over mutual TLS as the node its data directory names.
pub async fn start_data_plane_custom(
    grpc_addr: std::net::SocketAddr,
    dir: &std::path::Path,
    customize: impl FnOnce(&mut modelgate_data_plane::Settings),
) -> RunningDataPlane {
    let node_id = node_id_for(dir);
    let mut settings = modelgate_data_plane::Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        http: Default::default(),
        metrics_listen: "127.0.0.1:0".parse().unwrap(),
        // Two, whatever the machine: the tests run the listener split as production does.
        workers: 2,
        control_plane_url: pki::grpc_url(grpc_addr),
        grpc_security: pki::Pki::shared().node_security(&node_id, &[("region", "test")]),
        node_id,
        labels: HashMap::from([("region".to_owned(), "test".to_owned())]),
        data_dir: dir.to_owned(),
        max_body_bytes: 64 * 1024,
        max_audio_bytes: AUDIO_CAP,
        spool: SpoolOptions::with_fsync(FsyncPolicy::Never),
        lkg_key: modelgate_data_plane::LkgKey::GeneratedBesideData,
        health_report_interval: std::time::Duration::from_millis(200),
        clock: modelgate_shared::clock::system(),
        security: Default::default(),
        cache: Default::default(),
        otlp_endpoint: None,
    };
    customize(&mut settings);
    modelgate_data_plane::start(settings).await.unwrap()
}

impl TestDb {
    /// A fresh database on the Postgres server of [`services::postgres_url`] (configured,
    /// local, or provisioned for this test process).
    pub async fn postgres() -> TestDb {
        TestDb::on_postgres(services::postgres_url().await).await
    }

    /// Creates a fresh database on the Postgres server `base` points at; fails loudly if it is
    /// unreachable.
    pub async fn on_postgres(base: String) -> TestDb {
        let name = format!("mg_test_{}", uuid::Uuid::now_v7().simple());
        let admin = Database::connect(&base).await.unwrap_or_else(|e| {
            panic!("this test needs Postgres at {base} (set MODELGATE_TEST_DATABASE_URL): {e}")
        });
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        admin.close().await.unwrap();
        let (prefix, _) = base.rsplit_once('/').unwrap();
        TestDb {
            url: format!("{prefix}/{name}"),
            postgres: Some((base, name)),
        }
    }
}

/// A usage-reporting gRPC client to the control plane at `grpc_addr`, connected as data plane
/// `node` (its certificate from the test fleet) as a shipper connects: tests that send raw
/// batches open it here, in one place.
pub async fn usage_client(
    grpc_addr: std::net::SocketAddr,
    node: &str,
) -> modelgate_proto::usage::v1::usage_service_client::UsageServiceClient<tonic::transport::Channel>
{
    modelgate_proto::usage::v1::usage_service_client::UsageServiceClient::new(pki::node_channel(
        pki::Pki::shared(),
        grpc_addr,
        node,
        &[],
    ))
}
