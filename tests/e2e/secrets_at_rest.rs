//! Secrets at rest: a provider credential is not in its database row in clear, and
//! `rotate-master-key` re-seals every secret in one transaction so the control plane starts
//! under the new key with the same credentials (and a wrong old key changes nothing). Every
//! sealed value is bound to its table, column and row: copied elsewhere, it does not open.

use modelgate_control_plane::crypto::Sealer;
use modelgate_control_plane::service::authz::Actor;
use modelgate_control_plane::service::maintenance::rotate_master_key;
use modelgate_control_plane::service::{bootstrap, providers};
use sea_orm::{ConnectionTrait, Database, Statement};

use crate::support::{gateway_with_smart_route, start_control_plane};

const CREDENTIAL: &str = "sk-upstream-secret-1234";

async fn provider_rows_text(url: &str) -> String {
    let db = Database::connect(url).await.unwrap();
    let backend = db.get_database_backend();
    let rows = db
        .query_all(Statement::from_string(
            backend,
            "SELECT id, name, kind, base_url, credential_ciphertext, credential_last4 FROM provider_accounts",
        ))
        .await
        .unwrap();
    let mut text = String::new();
    for r in rows {
        for col in [
            "id",
            "name",
            "kind",
            "base_url",
            "credential_ciphertext",
            "credential_last4",
        ] {
            text.push_str(&r.try_get::<String>("", col).unwrap());
            text.push('\n');
        }
    }
    db.close().await.unwrap();
    text
}

fn served_credential(cp: &modelgate_control_plane::RunningControlPlane) -> String {
    let latest = cp.services.publisher.latest().unwrap();
    latest
        .snapshot
        .config
        .providers
        .iter()
        .find(|p| p.credential == CREDENTIAL)
        .map(|p| p.credential.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn the_credential_row_holds_no_plaintext_and_survives_a_master_key_rotation() {
    let (_upstream, mut gw, _p) = gateway_with_smart_route().await;
    let rows = provider_rows_text(&gw.db.url).await;
    assert!(
        rows.contains("v2:"),
        "the credential is sealed, bound to its row"
    );
    assert!(
        !rows.contains(CREDENTIAL),
        "no plaintext credential in the row"
    );
    assert!(
        rows.contains("1234"),
        "only the last 4 characters are kept in clear"
    );
    assert_eq!(served_credential(gw.cp()), CREDENTIAL);

    gw.stop_control_plane().await;
    let old = Sealer::from_hex(&gw.master_key).unwrap();
    let new_hex = Sealer::generate_master_key_hex();
    let new = Sealer::from_hex(&new_hex).unwrap();

    // A wrong "old" key opens nothing, so nothing changes.
    let wrong = Sealer::from_hex(&Sealer::generate_master_key_hex()).unwrap();
    assert!(rotate_master_key(&gw.db.url, &wrong, &new).await.is_err());
    assert_eq!(provider_rows_text(&gw.db.url).await, rows);

    drop(old);
    // The operator's command: `modelgate admin rotate-master-key`.
    let url = gw.db.url.clone();
    let (old_hex, new_for_cli) = (gw.master_key.clone(), new_hex.clone());
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_modelgate"))
            .args(["admin", "rotate-master-key", "--database-url", &url])
            .env("MODELGATE_MASTER_KEY", old_hex)
            .env("MODELGATE_NEW_MASTER_KEY", new_for_cli)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("1 settings"),
        "the key-hash secret: {stdout}"
    );
    assert!(!stdout.contains(&new_hex) && !stdout.contains(&gw.master_key));
    let after = provider_rows_text(&gw.db.url).await;
    assert_ne!(after, rows, "every sealed value changed");
    assert!(!after.contains(CREDENTIAL));

    let cp = start_control_plane(&gw.db.url, &new_hex, gw.grpc_addr).await;
    assert_eq!(
        served_credential(&cp),
        CREDENTIAL,
        "same credential under the new key"
    );
    gw.master_key = new_hex;
    gw.admin_url = format!("http://{}", cp.admin_addr);
    gw.cp = Some(cp);
    gw.shutdown().await;
}

async fn exec(url: &str, sql: &str, values: Vec<sea_orm::Value>) {
    let db = Database::connect(url).await.unwrap();
    let backend = db.get_database_backend();
    let sql = if backend == sea_orm::DbBackend::Postgres {
        // `?` placeholders → `$1`, `$2`, …
        let mut out = String::new();
        let mut i = 0;
        for c in sql.chars() {
            if c == '?' {
                i += 1;
                out.push_str(&format!("${i}"));
            } else {
                out.push(c);
            }
        }
        out
    } else {
        sql.to_owned()
    };
    db.execute(Statement::from_sql_and_values(backend, sql, values))
        .await
        .unwrap();
    db.close().await.unwrap();
}

async fn cell(url: &str, sql: &str, values: Vec<sea_orm::Value>) -> String {
    let db = Database::connect(url).await.unwrap();
    let backend = db.get_database_backend();
    let sql = if backend == sea_orm::DbBackend::Postgres {
        sql.replacen('?', "$1", 1)
    } else {
        sql.to_owned()
    };
    let row = db
        .query_one(Statement::from_sql_and_values(backend, sql, values))
        .await
        .unwrap()
        .unwrap();
    let v = row.try_get_by_index::<String>(0).unwrap();
    db.close().await.unwrap();
    v
}

async fn credential_of(url: &str, provider_id: &str) -> String {
    cell(
        url,
        "SELECT credential_ciphertext FROM provider_accounts WHERE id = ?",
        vec![provider_id.into()],
    )
    .await
}

#[tokio::test]
async fn a_sealed_value_copied_into_another_row_or_column_does_not_open_there() {
    let (_upstream, gw, p) = gateway_with_smart_route().await;
    let s = &gw.cp().services;
    let other = providers::create(
        s,
        &Actor::system(),
        providers::CreateProvider {
            name: "other".into(),
            kind: "openai".into(),
            base_url: None,
            credential: Some("sk-other-provider-9999".into()),
        },
    )
    .await
    .unwrap();
    s.publisher.rebuild(s).await.unwrap();

    // An attacker with write access to the database copies provider A's sealed credential
    // into provider B's row, hoping B's traffic (or a read of B) reveals A's secret.
    let stolen = credential_of(&gw.db.url, &p.provider_id).await;
    exec(
        &gw.db.url,
        "UPDATE provider_accounts SET credential_ciphertext = ? WHERE id = ?",
        vec![stolen.clone().into(), other.id.clone().into()],
    )
    .await;
    let refused = s.publisher.rebuild(s).await;
    assert!(
        refused.is_err(),
        "a credential copied from another row must not open"
    );
    let served = s.publisher.latest().unwrap();
    assert!(
        !served
            .snapshot
            .config
            .providers
            .iter()
            .any(|q| q.id == other.id && q.credential == CREDENTIAL),
        "provider B never serves provider A's credential"
    );

    // Another column: the key-hash secret copied into B's credential does not open either.
    let key_hash_secret = cell(
        &gw.db.url,
        "SELECT value FROM settings WHERE name = ?",
        vec!["key_hash_secret".into()],
    )
    .await;
    exec(
        &gw.db.url,
        "UPDATE provider_accounts SET credential_ciphertext = ? WHERE id = ?",
        vec![key_hash_secret.into(), other.id.clone().into()],
    )
    .await;
    assert!(s.publisher.rebuild(s).await.is_err());

    // And a credential copied into the key-hash secret's row does not open as that secret.
    exec(
        &gw.db.url,
        "UPDATE settings SET value = ? WHERE name = ?",
        vec![stolen.into(), "key_hash_secret".into()],
    )
    .await;
    assert!(bootstrap::key_hash_secret(s).await.is_err());
    gw.shutdown().await;
}

#[tokio::test]
async fn values_sealed_unbound_by_an_earlier_release_are_bound_once_at_start_and_still_open() {
    let (_upstream, mut gw, p) = gateway_with_smart_route().await;
    let secret_before = bootstrap::key_hash_secret(&gw.cp().services).await.unwrap();
    gw.stop_control_plane().await;

    // What an earlier release left: unbound `v1:` values, and the migration's marker.
    let sealer = Sealer::from_hex(&gw.master_key).unwrap();
    exec(
        &gw.db.url,
        "UPDATE provider_accounts SET credential_ciphertext = ? WHERE id = ?",
        vec![
            sealer
                .seal_unbound_as_earlier_releases_did(CREDENTIAL.as_bytes())
                .into(),
            p.provider_id.clone().into(),
        ],
    )
    .await;
    exec(
        &gw.db.url,
        "UPDATE settings SET value = ? WHERE name = ?",
        vec![
            sealer
                .seal_unbound_as_earlier_releases_did(&secret_before)
                .into(),
            "key_hash_secret".into(),
        ],
    )
    .await;
    exec(
        &gw.db.url,
        "UPDATE settings SET value = ? WHERE name = ?",
        vec!["unbound".into(), "sealed_values_format".into()],
    )
    .await;

    gw.restart_control_plane().await;
    assert_eq!(served_credential(gw.cp()), CREDENTIAL);
    assert_eq!(
        bootstrap::key_hash_secret(&gw.cp().services).await.unwrap(),
        secret_before,
        "the same key-hash secret, so every gateway key still authenticates"
    );
    let bound = credential_of(&gw.db.url, &p.provider_id).await;
    assert!(bound.starts_with("v2:"), "re-sealed bound: {bound}");
    let format = cell(
        &gw.db.url,
        "SELECT value FROM settings WHERE name = ?",
        vec!["sealed_values_format".into()],
    )
    .await;
    assert_eq!(format, "bound");

    // Once: a second start changes nothing.
    gw.restart_control_plane().await;
    assert_eq!(credential_of(&gw.db.url, &p.provider_id).await, bound);
    assert_eq!(served_credential(gw.cp()), CREDENTIAL);
    let resp = gw.say_hi(&p.key, "smart").await;
    assert_eq!(resp.status(), 200, "the gateway key still works");
    gw.shutdown().await;
}

/// The real binary with a clean environment for the variables these tests set.
fn modelgate(args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_modelgate"));
    c.args(args);
    for var in [
        "MODELGATE_LKG_KEY",
        "MODELGATE_LKG_KEY_FILE",
        "MODELGATE_MASTER_KEY",
        "MODELGATE_MASTER_KEY_FILE",
        "MODELGATE_INSECURE_KEY_BESIDE_DATA",
        "MODELGATE_BOOTSTRAP_TOKEN_FILE",
        "MODELGATE_DATA_DIR",
    ] {
        c.env_remove(var);
    }
    c.env("RUST_LOG", "warn");
    c
}

/// A running `modelgate` process, killed when dropped.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns `command` (stderr to `stderr_log`) and returns its stdout lines up to and including the
/// first that starts with `until`.
async fn spawn_until(
    mut command: std::process::Command,
    stderr_log: &std::path::Path,
    until: &'static str,
) -> (Running, Vec<String>) {
    use std::io::{BufRead, BufReader, Read};
    let log = std::fs::File::create(stderr_log).unwrap();
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::from(log))
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let running = Running(child);
    let read = tokio::task::spawn_blocking(move || {
        let mut reader = BufReader::new(stdout);
        let mut lines = Vec::new();
        for line in reader.by_ref().lines() {
            let line = line.unwrap();
            let done = line.starts_with(until);
            lines.push(line);
            if done {
                break;
            }
        }
        // Keep reading what follows (e.g. the metrics URL printed after the admin URL): a
        // closed pipe would make the process's next println fail.
        std::thread::spawn(move || reader.lines().for_each(drop));
        lines
    });
    let lines = tokio::time::timeout(std::time::Duration::from_secs(60), read)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "no `{until}` line; stderr:\n{}",
                std::fs::read_to_string(stderr_log).unwrap_or_default()
            )
        })
        .unwrap();
    assert!(
        lines.last().is_some_and(|l| l.starts_with(until)),
        "the process ended before printing `{until}`: {lines:?}\nstderr:\n{}",
        std::fs::read_to_string(stderr_log).unwrap_or_default()
    );
    (running, lines)
}

/// Runs `command` to its exit, within 20 s: a server that should have refused to start but
/// runs is killed and reported as such, never waited for.
fn refused(mut command: std::process::Command, dir: &std::path::Path) -> String {
    let err = dir.join(format!("refused-{}.log", uuid::Uuid::now_v7().simple()));
    let mut child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "it started instead of refusing:\n{}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let stderr = std::fs::read_to_string(&err).unwrap();
    assert!(!status.success(), "it exited 0: {stderr}");
    stderr
}

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn the_data_plane_refuses_an_lkg_key_beside_its_data_unless_told_it_is_insecure() {
    let dir = crate::support::temp_dir("lkg-key");
    let data = dir.join("data");
    let args = |data: &std::path::Path| {
        let mut c = modelgate(&[
            "data-plane",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--control-plane-url",
            "http://127.0.0.1:1",
            "--insecure-plaintext-grpc",
            "--data-dir",
        ]);
        c.arg(data);
        c
    };

    // No key at all: refused, naming what to set, and nothing generated.
    let stderr = refused(args(&data), &dir);
    for needle in [
        "MODELGATE_LKG_KEY",
        "MODELGATE_LKG_KEY_FILE",
        "--insecure-key-beside-data",
    ] {
        assert!(stderr.contains(needle), "{needle} in: {stderr}");
    }
    assert!(!data.join("lkg.key").exists());

    // A key file inside the data directory: refused too.
    std::fs::create_dir_all(&data).unwrap();
    let inside = data.join("my.key");
    std::fs::write(&inside, Sealer::generate_master_key_hex()).unwrap();
    let mut c = args(&data);
    c.arg("--lkg-key-file").arg(&inside);
    let stderr = refused(c, &dir);
    assert!(stderr.contains("inside"), "{stderr}");

    // The insecure flag: it starts, generates lkg.key beside the data, and says so.
    let fresh = dir.join("fresh/data");
    let mut c = args(&fresh);
    c.arg("--insecure-key-beside-data");
    let log = dir.join("dp.log");
    let (running, _) = spawn_until(c, &log, "MODELGATE_BASE_URL=").await;
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("WARN") && logged.contains("insecure"),
        "a warning at start: {logged}"
    );
    assert!(fresh.join("lkg.key").exists());
    #[cfg(unix)]
    {
        assert_eq!(mode(&fresh), 0o700, "the data directory");
        assert_eq!(mode(&fresh.join("spool")), 0o700, "the spool directory");
        assert_eq!(mode(&fresh.join("lkg.key")), 0o600, "the LKG key");
    }
    drop(running);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn the_control_plane_refuses_a_master_key_file_beside_its_sqlite_database() {
    let dir = crate::support::temp_dir("cp-key");
    let key = dir.join("master.key");
    std::fs::write(&key, Sealer::generate_master_key_hex()).unwrap();
    let db = format!("sqlite://{}?mode=rwc", dir.join("cp.db").display());
    let mut c = modelgate(&[
        "control-plane",
        "--database-url",
        &db,
        "--admin-listen",
        "127.0.0.1:0",
        "--grpc-listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
        "--insecure-plaintext-grpc",
        "--master-key-file",
    ]);
    c.arg(&key);
    let stderr = refused(c, &dir);
    assert!(
        stderr.contains("--insecure-key-beside-data") && stderr.contains("master key"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn the_control_plane_writes_its_bootstrap_token_to_a_0600_file_when_asked() {
    let dir = crate::support::temp_dir("bootstrap-token");
    let token_file = dir.join("admin-token");
    let db = format!("sqlite://{}?mode=rwc", dir.join("cp.db").display());
    let mut c = modelgate(&[
        "control-plane",
        "--database-url",
        &db,
        "--admin-listen",
        "127.0.0.1:0",
        "--grpc-listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
        "--insecure-plaintext-grpc",
        "--bootstrap-token-file",
    ]);
    c.arg(&token_file)
        .env("MODELGATE_MASTER_KEY", Sealer::generate_master_key_hex());
    let (running, lines) = spawn_until(c, &dir.join("cp.log"), "MODELGATE_ADMIN_URL=").await;
    let printed = lines.join("\n");
    assert!(
        !printed.contains("MODELGATE_ADMIN_TOKEN=") && !printed.contains("mgadm"),
        "the token is not printed: {printed}"
    );
    assert!(
        printed.contains(&token_file.display().to_string()),
        "{printed}"
    );
    #[cfg(unix)]
    assert_eq!(mode(&token_file), 0o600);
    let token = std::fs::read_to_string(&token_file).unwrap();
    let admin = lines
        .last()
        .unwrap()
        .trim_start_matches("MODELGATE_ADMIN_URL=")
        .to_owned();
    let status = reqwest::Client::new()
        .get(format!("{admin}/admin/v1/teams"))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(
        status, 200,
        "the written token is the bootstrap admin token"
    );
    drop(running);

    // Without the flag, the token line the scripts read is still printed.
    let db = format!("sqlite://{}?mode=rwc", dir.join("cp2.db").display());
    let mut c = modelgate(&[
        "control-plane",
        "--database-url",
        &db,
        "--admin-listen",
        "127.0.0.1:0",
        "--grpc-listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
        "--insecure-plaintext-grpc",
    ]);
    c.env("MODELGATE_MASTER_KEY", Sealer::generate_master_key_hex());
    let (running, lines) = spawn_until(c, &dir.join("cp2.log"), "MODELGATE_ADMIN_URL=").await;
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("MODELGATE_ADMIN_TOKEN=mgadm")),
        "{lines:?}"
    );
    drop(running);
    let _ = std::fs::remove_dir_all(dir);
}

#[cfg(unix)]
#[tokio::test]
async fn up_creates_its_key_files_0600_and_its_directories_0700() {
    let dir = crate::support::temp_dir("up-modes");
    let data = dir.join("data");
    let mut c = modelgate(&[
        "up",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--grpc-listen",
        "127.0.0.1:0",
        "--cp-metrics-listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
        "--data-dir",
    ]);
    c.arg(&data);
    let (running, _) = spawn_until(c, &dir.join("up.log"), "export MODELGATE_ADMIN_TOKEN=").await;
    let dp = data.join("data-plane");
    let lkg = modelgate_data_plane::config::lkg::path(&dp);
    crate::support::eventually(
        std::time::Duration::from_secs(5),
        "the last-known-good file",
        || async { lkg.exists().then_some(()) },
    )
    .await;
    for (what, path, want) in [
        ("the data directory", data.clone(), 0o700),
        ("the master key", data.join("master.key"), 0o600),
        ("the env file", data.join("modelgate.env"), 0o600),
        ("the data plane's directory", dp.clone(), 0o700),
        ("the LKG key", dp.join("lkg.key"), 0o600),
        ("the spool", dp.join("spool"), 0o700),
        ("the last-known-good file", lkg.clone(), 0o600),
    ] {
        assert_eq!(mode(&path), want, "{what}: {}", path.display());
    }
    drop(running);
    let _ = std::fs::remove_dir_all(dir);
}
