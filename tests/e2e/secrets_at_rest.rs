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
