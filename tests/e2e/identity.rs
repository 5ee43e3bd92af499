//! Identity and the key lifecycle through the admin API and a real data plane: the role matrix,
//! team scopes that hide other teams (404, not 403), rotation with a grace period, disable and
//! enable, optimistic concurrency, idempotent creates, field-naming validation, and the audit
//! log written with every change.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{eventually, gateway_with_smart_route, Gateway};

/// Sends an admin request with a given token and extra headers.
async fn call(
    gw: &Gateway,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut req = gw
        .http
        .request(method, format!("{}/admin/v1{path}", gw.admin_url))
        .bearer_auth(token);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
        headers,
    )
}

async fn token(gw: &Gateway, role: &str, team: Option<&str>) -> String {
    let mut body = json!({"name": format!("{role}-{team:?}"), "role": role});
    if let Some(t) = team {
        body["team_id"] = json!(t);
    }
    gw.create("/tokens", body).await["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn team(gw: &Gateway, name: &str) -> String {
    gw.create("/teams", json!({"name": name})).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// (name, method, path, body, expected status for owner, admin, member, viewer, billing).
type Operation = (&'static str, Method, String, Option<Value>, [u16; 5]);

#[tokio::test]
async fn each_role_may_do_exactly_what_the_matrix_says() {
    let gw = Gateway::start().await;
    let team_a = team(&gw, "a").await;
    // (operation, method, path, body, expected status per role: owner admin member viewer billing)
    let ops: Vec<Operation> = vec![
        (
            "list keys",
            Method::GET,
            "/keys".into(),
            None,
            [200, 200, 200, 200, 403],
        ),
        (
            "create key",
            Method::POST,
            "/keys".into(),
            Some(json!({"team_id": team_a, "name": "k"})),
            [201, 201, 201, 403, 403],
        ),
        (
            "create provider",
            Method::POST,
            "/providers".into(),
            Some(json!({"name": "p", "kind": "mock"})),
            [201, 201, 403, 403, 403],
        ),
        (
            "read usage",
            Method::GET,
            "/usage/events".into(),
            None,
            [200; 5],
        ),
        (
            "read the usage quarantine",
            Method::GET,
            "/usage/quarantine".into(),
            None,
            [200, 200, 403, 403, 200],
        ),
        (
            "read audit",
            Method::GET,
            "/audit".into(),
            None,
            [200, 200, 403, 403, 403],
        ),
        (
            "mint a viewer token",
            Method::POST,
            "/tokens".into(),
            Some(json!({"name": "t", "role": "viewer", "team_id": team_a})),
            [201, 201, 403, 403, 403],
        ),
        (
            "list providers",
            Method::GET,
            "/providers".into(),
            None,
            [200, 200, 200, 200, 403],
        ),
    ];
    let roles = ["owner", "admin", "member", "viewer", "billing"];
    let mut failures = Vec::new();
    for (i, role) in roles.iter().enumerate() {
        let tok = token(&gw, role, None).await;
        for (n, (op, method, path, body, expected)) in ops.iter().enumerate() {
            // Names must stay unique across roles.
            let body = body.clone().map(|mut b| {
                if b.get("name").is_some() {
                    b["name"] = json!(format!("{role}-{n}"));
                }
                b
            });
            let (status, v, _) = call(&gw, &tok, method.clone(), path, body, &[]).await;
            if status != expected[i] {
                failures.push(format!("{role} {op}: {status} (want {}) {v}", expected[i]));
            }
            if status == 403 {
                assert_eq!(v["error"]["type"], "permission_denied", "{role} {op}");
            }
        }
    }
    // A team-scoped owner manages its team but nothing organisation-wide.
    let scoped = token(&gw, "owner", Some(&team_a)).await;
    let (status, _, _) = call(
        &gw,
        &scoped,
        Method::POST,
        "/providers",
        Some(json!({"name": "scoped", "kind": "mock"})),
        &[],
    )
    .await;
    if status != 403 {
        failures.push(format!(
            "team-scoped owner create provider: {status} (want 403)"
        ));
    }
    // Nobody grants a role above their own.
    let admin = token(&gw, "admin", None).await;
    let (status, _, _) = call(
        &gw,
        &admin,
        Method::POST,
        "/tokens",
        Some(json!({"name": "up", "role": "owner"})),
        &[],
    )
    .await;
    if status != 403 {
        failures.push(format!("admin minting an owner token: {status} (want 403)"));
    }
    assert!(
        failures.is_empty(),
        "role matrix mismatches:\n{}",
        failures.join("\n")
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_team_scoped_token_cannot_see_or_touch_another_team() {
    let gw = Gateway::start().await;
    let (a, b) = (team(&gw, "a").await, team(&gw, "b").await);
    let key_b = gw
        .create("/keys", json!({"team_id": b, "name": "kb"}))
        .await;
    let key_b = key_b["id"].as_str().unwrap();
    gw.create("/keys", json!({"team_id": a, "name": "ka"}))
        .await;
    let tok = token(&gw, "admin", Some(&a)).await;

    for (method, path, body) in [
        (Method::GET, format!("/keys/{key_b}"), None),
        (
            Method::PATCH,
            format!("/keys/{key_b}"),
            Some(json!({"name": "x"})),
        ),
        (Method::POST, format!("/keys/{key_b}/revoke"), None),
        (Method::POST, format!("/keys/{key_b}/rotate"), None),
        (Method::GET, format!("/teams/{b}"), None),
        (Method::GET, format!("/teams/{b}/members"), None),
    ] {
        let (status, v, _) = call(&gw, &tok, method.clone(), &path, body, &[]).await;
        assert_eq!(status, 404, "{method} {path}: existence must not leak: {v}");
    }
    let (status, v, _) = call(
        &gw,
        &tok,
        Method::POST,
        "/keys",
        Some(json!({"team_id": b, "name": "sneaky"})),
        &[],
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["param"], "team_id");

    let (_, keys, _) = call(&gw, &tok, Method::GET, "/keys", None, &[]).await;
    let teams: Vec<&str> = keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["team_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        teams,
        vec![a.as_str()],
        "only its own team's keys are listed"
    );
    let (_, listed, _) = call(&gw, &tok, Method::GET, "/teams", None, &[]).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_rotated_key_keeps_working_for_the_grace_period_then_the_old_secret_is_refused() {
    let (_upstream, gw, p) = gateway_with_smart_route().await;
    assert_eq!(gw.say_hi(&p.key, "smart").await.status(), 200);
    let rotated = gw
        .admin(
            Method::POST,
            &format!("/keys/{}/rotate", p.key_id),
            Some(json!({"grace_seconds": 3})),
        )
        .await;
    assert_eq!(rotated.0, 200, "{}", rotated.1);
    let new_secret = rotated.1["key_secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, p.key);
    assert!(rotated.1["previous_secret_expires_at"].is_string());

    eventually(Duration::from_secs(5), "the new secret to work", || async {
        (gw.say_hi(&new_secret, "smart").await.status() == 200).then_some(())
    })
    .await;
    assert_eq!(
        gw.say_hi(&p.key, "smart").await.status(),
        200,
        "the old secret works during the grace period"
    );
    eventually(
        Duration::from_secs(10),
        "the old secret to stop",
        || async { (gw.say_hi(&p.key, "smart").await.status() == 401).then_some(()) },
    )
    .await;
    assert_eq!(gw.say_hi(&new_secret, "smart").await.status(), 200);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_disabled_key_is_refused_until_enabled_again() {
    let (_upstream, gw, p) = gateway_with_smart_route().await;
    let (status, key) = gw
        .admin(Method::POST, &format!("/keys/{}/disable", p.key_id), None)
        .await;
    assert_eq!((status, key["status"].as_str()), (200, Some("disabled")));
    let refused = eventually(Duration::from_secs(2), "the key to be refused", || async {
        let r = gw.say_hi(&p.key, "smart").await;
        (r.status() == 401).then_some(r)
    })
    .await;
    let body: Value = refused.json().await.unwrap();
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("disabled"));
    gw.admin(Method::POST, &format!("/keys/{}/enable", p.key_id), None)
        .await;
    eventually(Duration::from_secs(2), "the key to work again", || async {
        (gw.say_hi(&p.key, "smart").await.status() == 200).then_some(())
    })
    .await;
    gw.shutdown().await;
}

#[tokio::test]
async fn a_stale_if_match_gets_412_and_changes_nothing() {
    let gw = Gateway::start().await;
    let t = team(&gw, "a").await;
    let key = gw.create("/keys", json!({"team_id": t, "name": "k"})).await;
    let id = key["id"].as_str().unwrap();
    let (_, got, headers) = call(
        &gw,
        &gw.admin_token,
        Method::GET,
        &format!("/keys/{id}"),
        None,
        &[],
    )
    .await;
    assert_eq!(headers["etag"], "\"1\"");
    assert_eq!(got["version"], 1);

    let (status, updated, _) = call(
        &gw,
        &gw.admin_token,
        Method::PATCH,
        &format!("/keys/{id}"),
        Some(json!({"name": "renamed", "application": "checkout", "metadata": {"cost_center": "42"}})),
        &[("if-match", "\"1\"")],
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["version"], 2);
    assert_eq!(updated["application"], "checkout");

    let (status, v, _) = call(
        &gw,
        &gw.admin_token,
        Method::PATCH,
        &format!("/keys/{id}"),
        Some(json!({"name": "lost update"})),
        &[("if-match", "\"1\"")],
    )
    .await;
    assert_eq!(status, 412, "{v}");
    let (_, now, _) = call(
        &gw,
        &gw.admin_token,
        Method::GET,
        &format!("/keys/{id}"),
        None,
        &[],
    )
    .await;
    assert_eq!(now["name"], "renamed");
    assert_eq!(now["version"], 2);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_retried_create_with_the_same_idempotency_key_returns_the_first_result() {
    let gw = Gateway::start().await;
    let t = team(&gw, "a").await;
    let body = json!({"team_id": t, "name": "once"});
    let h = [("idempotency-key", "create-once-1")];
    let (s1, first, _) = call(
        &gw,
        &gw.admin_token,
        Method::POST,
        "/keys",
        Some(body.clone()),
        &h,
    )
    .await;
    let (s2, second, headers) =
        call(&gw, &gw.admin_token, Method::POST, "/keys", Some(body), &h).await;
    assert_eq!((s1, s2), (201, 201));
    assert_eq!(first["id"], second["id"]);
    assert_eq!(first["key_secret"], second["key_secret"]);
    assert_eq!(headers["idempotent-replayed"], "true");
    let (_, keys, _) = call(
        &gw,
        &gw.admin_token,
        Method::GET,
        &format!("/keys?team_id={t}"),
        None,
        &[],
    )
    .await;
    assert_eq!(
        keys["data"].as_array().unwrap().len(),
        1,
        "one key, not two"
    );

    let (status, v, _) = call(
        &gw,
        &gw.admin_token,
        Method::POST,
        "/keys",
        Some(json!({"team_id": t, "name": "different"})),
        &h,
    )
    .await;
    assert_eq!(status, 422, "{v}");
    gw.shutdown().await;
}

#[tokio::test]
async fn validation_errors_name_the_field() {
    let gw = Gateway::start().await;
    let t = team(&gw, "a").await;
    for (body, param) in [
        (
            json!({"team_id": t, "name": "k", "endpoint_families": ["chat", "bogus"]}),
            "endpoint_families[1]",
        ),
        (
            json!({"team_id": t, "name": "k", "data_class": "secret"}),
            "data_class",
        ),
        (
            json!({"team_id": t, "name": "k", "environment": "qa"}),
            "environment",
        ),
        (
            json!({"team_id": t, "name": "k", "owner_user_id": "nobody"}),
            "owner_user_id",
        ),
        (
            json!({"team_id": t, "name": "k", "allowed_models": [""]}),
            "allowed_models[0]",
        ),
        (
            json!({"team_id": t, "name": "k", "colour": "red"}),
            "colour",
        ),
        (json!({"team_id": t}), "name"),
    ] {
        let (status, v) = gw.admin(Method::POST, "/keys", Some(body.clone())).await;
        assert_eq!(status, 400, "{body}: {v}");
        assert_eq!(v["error"]["type"], "invalid_request");
        assert_eq!(v["error"]["param"], param, "{body}: {v}");
    }
    let (status, v) = gw
        .admin(
            Method::POST,
            "/tokens",
            Some(json!({"name": "t", "role": "superuser"})),
        )
        .await;
    assert_eq!((status, v["error"]["param"].as_str()), (400, Some("role")));
    gw.shutdown().await;
}

#[tokio::test]
async fn every_change_is_audited_with_actor_request_id_and_no_secret() {
    let gw = Gateway::start().await;
    let t = team(&gw, "audited").await;
    let user = gw
        .create("/users", json!({"email": "ada@example.com", "name": "Ada"}))
        .await;
    gw.create(
        &format!("/teams/{t}/members"),
        json!({"user_id": user["id"], "role": "member"}),
    )
    .await;
    let (status, created, headers) = call(
        &gw,
        &gw.admin_token,
        Method::POST,
        "/keys",
        Some(json!({"team_id": t, "name": "k", "owner_user_id": user["id"]})),
        &[],
    )
    .await;
    assert_eq!(status, 201);
    let id = created["id"].as_str().unwrap();
    let request_id = headers["x-request-id"].to_str().unwrap().to_owned();
    gw.admin(
        Method::PATCH,
        &format!("/keys/{id}"),
        Some(json!({"name": "k2"})),
    )
    .await;
    let (_, rotated) = gw
        .admin(Method::POST, &format!("/keys/{id}/rotate"), None)
        .await;

    let (status, log) = gw
        .admin(
            Method::GET,
            &format!("/audit?resource_type=key&resource_id={id}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{log}");
    let entries = log["data"].as_array().unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, vec!["key.create", "key.update", "key.rotate"]);
    assert_eq!(entries[0]["request_id"], request_id.as_str());
    assert_eq!(entries[0]["actor_type"], "token");
    assert_eq!(entries[0]["actor_role"], "owner");
    assert!(entries[0]["before"].is_null());
    assert_eq!(entries[1]["before"]["name"], "k");
    assert_eq!(entries[1]["after"]["name"], "k2");
    let text = log.to_string();
    for secret in [
        created["key_secret"].as_str().unwrap(),
        rotated["key_secret"].as_str().unwrap(),
    ] {
        assert!(!text.contains(secret), "no secret in the audit log");
    }
    let (_, members) = gw
        .admin(
            Method::POST,
            &format!("/teams/{t}/members"),
            Some(json!({"user_id": user["id"], "role": "member"})),
        )
        .await;
    assert_eq!(members["role"], "member");
    let (_, log) = gw
        .admin(Method::GET, "/audit?action=team.member.set", None)
        .await;
    // One when the key's owner joined the team above, one here.
    assert_eq!(log["data"].as_array().unwrap().len(), 2);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_key_limited_to_some_endpoint_families_is_refused_elsewhere_and_usage_names_its_owner() {
    let (upstream, gw, p) = gateway_with_smart_route().await;
    let user = gw
        .create("/users", json!({"email": "bo@example.com"}))
        .await;
    // A key's owner is a member of its team.
    gw.create(
        &format!("/teams/{}/members", p.team_id),
        json!({"user_id": user["id"], "role": "member"}),
    )
    .await;
    let key = gw
        .create(
            "/keys",
            json!({"team_id": p.team_id, "name": "models-only", "endpoint_families": ["models"],
                   "owner_user_id": user["id"], "application": "catalog"}),
        )
        .await;
    gw.wait_for_config().await;
    let secret = key["key_secret"].as_str().unwrap();
    let calls = upstream.calls();
    let refused = gw.say_hi(secret, "smart").await;
    assert_eq!(refused.status(), 403);
    let request_id = crate::support::request_id(&refused);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "endpoint_not_allowed");
    assert_eq!(upstream.calls(), calls);
    let row = gw.usage_row(&request_id).await;
    assert_eq!(row["user_id"], user["id"]);
    assert_eq!(row["application"], "catalog");
    let models = gw
        .http
        .get(format!("{}/models", gw.base_url()))
        .bearer_auth(secret)
        .send()
        .await
        .unwrap();
    assert_eq!(models.status(), 200);
    gw.shutdown().await;
}
