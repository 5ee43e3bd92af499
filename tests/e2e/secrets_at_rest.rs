//! Secrets at rest: a provider credential is not in its database row in clear, and
//! `rotate-master-key` re-seals every secret in one transaction so the control plane starts
//! under the new key with the same credentials (and a wrong old key changes nothing).

use modelgate_control_plane::crypto::Sealer;
use modelgate_control_plane::service::maintenance::rotate_master_key;
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
    assert!(rows.contains("v1:"), "the credential is sealed");
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
