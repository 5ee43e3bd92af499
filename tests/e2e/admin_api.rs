//! The admin API: authentication, validation errors that name the field, list shape, and
//! secrets that never come back.

use serde_json::json;

use crate::support::Gateway;

#[tokio::test]
async fn admin_api_requires_a_valid_admin_token() {
    let gw = Gateway::start().await;
    let url = format!("{}/admin/v1/teams", gw.admin_url);
    let none = gw.http.get(&url).send().await.unwrap();
    assert_eq!(none.status(), 401);
    let wrong = gw
        .http
        .get(&url)
        .bearer_auth("mgadm-wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let body: serde_json::Value = wrong.json().await.unwrap();
    assert_eq!(body["error"]["type"], "unauthorized");
    gw.shutdown().await;
}

#[tokio::test]
async fn validation_errors_name_the_field() {
    let gw = Gateway::start().await;
    let team = gw.create("/teams", json!({"name": "payments"})).await;
    let cases = [
        ("/teams", json!({}), "name"),
        ("/teams", json!({"name": "  "}), "name"),
        ("/teams", json!({"name": "x", "nmae": "typo"}), "nmae"),
        (
            "/keys",
            json!({"team_id": team["id"], "name": "k", "environment": "qa"}),
            "environment",
        ),
        (
            "/keys",
            json!({"team_id": "no-such-team", "name": "k"}),
            "team_id",
        ),
        (
            "/keys",
            json!({"team_id": team["id"], "name": "k", "allowed_models": [""]}),
            "allowed_models[0]",
        ),
        (
            "/providers",
            json!({"name": "p", "kind": "bedrock"}),
            "kind",
        ),
        (
            "/providers",
            json!({"name": "p", "kind": "openai-compatible"}),
            "base_url",
        ),
        (
            "/providers",
            json!({"name": "p", "kind": "openai-compatible", "base_url": "ftp://x"}),
            "base_url",
        ),
        (
            "/models",
            json!({"model": "m", "input_micros_per_mtok": -1, "output_micros_per_mtok": 1}),
            "input_micros_per_mtok",
        ),
        (
            "/routes",
            json!({"alias": "a", "deployments": []}),
            "deployments",
        ),
        (
            "/routes",
            json!({"alias": "a", "deployments": [{"provider_id": "nope", "model": "m"}]}),
            "deployments[0].provider_id",
        ),
    ];
    for (path, body, param) in cases {
        let (status, v) = gw
            .admin(reqwest::Method::POST, path, Some(body.clone()))
            .await;
        assert_eq!(status, 400, "POST {path} {body}: {v}");
        assert_eq!(v["error"]["type"], "invalid_request", "POST {path} {body}");
        assert_eq!(v["error"]["param"], param, "POST {path} {body}: {v}");
    }
    let (status, v) = gw
        .admin(
            reqwest::Method::POST,
            "/teams",
            Some(json!({"name": "payments"})),
        )
        .await;
    assert_eq!(status, 409, "{v}");
    gw.shutdown().await;
}

#[tokio::test]
async fn secrets_are_returned_once_and_never_listed() {
    let gw = Gateway::start().await;
    let team = gw.create("/teams", json!({"name": "search"})).await;
    let key = gw
        .create("/keys", json!({"team_id": team["id"], "name": "svc"}))
        .await;
    let secret = key["key_secret"].as_str().unwrap();
    assert!(secret.starts_with("mg-") && secret.len() >= 40);
    let provider = gw
        .create(
            "/providers",
            json!({"name": "openai-main", "kind": "openai", "credential": "sk-live-abcdefgh9876"}),
        )
        .await;
    assert_eq!(provider["credential_last4"], "9876");
    assert!(provider.get("credential").is_none());

    let (_, keys) = gw.admin(reqwest::Method::GET, "/keys", None).await;
    let (_, providers) = gw.admin(reqwest::Method::GET, "/providers", None).await;
    let listed = format!("{keys}{providers}");
    assert!(!listed.contains(secret), "a key secret was listed");
    assert!(
        !listed.contains("sk-live-abcdefgh9876"),
        "a credential was listed"
    );
    assert!(keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["prefix"] == secret[..11]));
    assert!(keys.get("next_cursor").is_some());
    gw.shutdown().await;
}

#[tokio::test]
async fn provider_credentials_are_sealed_in_the_database() {
    use sea_orm::{ConnectionTrait, Statement};
    let gw = Gateway::start().await;
    gw.create(
        "/providers",
        json!({"name": "vault-test", "kind": "openai", "credential": "sk-plaintext-canary-0000"}),
    )
    .await;
    let db = sea_orm::Database::connect(&gw.db.url).await.unwrap();
    let backend = db.get_database_backend();
    let rows = db
        .query_all(Statement::from_string(
            backend,
            "SELECT credential_ciphertext FROM provider_accounts".to_owned(),
        ))
        .await
        .unwrap();
    assert!(!rows.is_empty());
    for row in rows {
        let stored: String = row.try_get("", "credential_ciphertext").unwrap();
        assert!(stored.starts_with("v2:"), "sealed and bound: {stored}");
        assert!(!stored.contains("sk-plaintext-canary"));
    }
    let versions = db
        .query_all(Statement::from_string(
            backend,
            "SELECT body FROM config_versions".to_owned(),
        ))
        .await
        .unwrap();
    for row in versions {
        let body: Vec<u8> = row.try_get("", "body").unwrap();
        assert!(!String::from_utf8_lossy(&body).contains("sk-plaintext-canary"));
    }
    db.close().await.unwrap();
    gw.shutdown().await;
}
