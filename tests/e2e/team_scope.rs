//! Team scope and the admin API's other findings of the security review (issue #14), through
//! the real REST API: a team-scoped token gets "not found" for another team's (and the
//! organisation's) budgets and rate limits, whatever their scope; a key's owner must be a member
//! of its team; export sinks are read only by those who manage them and never show the
//! credentials in their URLs (not in responses, not in `last_error`); a token is revoked only by
//! someone who could have minted it; and admin tokens expire.

use std::time::Duration;

use modelgate_shared::clock::Clock;
use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{eventually, gateway_with_smart_route, Gateway};

async fn call(
    gw: &Gateway,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = gw
        .http
        .request(method, format!("{}/admin/v1{path}", gw.admin_url))
        .bearer_auth(token);
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

async fn id_of(gw: &Gateway, path: &str, body: Value) -> String {
    gw.create(path, body).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Mints a token; returns (its id, its secret).
async fn token(gw: &Gateway, name: &str, role: &str, team: Option<&str>) -> (String, String) {
    let mut body = json!({"name": name, "role": role});
    if let Some(t) = team {
        body["team_id"] = json!(t);
    }
    let t = gw.create("/tokens", body).await;
    (
        t["id"].as_str().unwrap().to_owned(),
        t["token"].as_str().unwrap().to_owned(),
    )
}

fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

/// GETs `{collection}/{id}` for each id with `token` and checks the status; a hidden resource
/// is a plain `not_found`, never a hint that it exists.
async fn expect_gets(
    gw: &Gateway,
    token: &str,
    collection: &str,
    ids: &[String],
    want: u16,
    role: &str,
) {
    for id in ids {
        let (status, v) = call(gw, token, Method::GET, &format!("{collection}/{id}"), None).await;
        assert_eq!(status, want, "{role} GET {collection}/{id}: {v}");
        if want == 404 {
            assert_eq!(v["error"]["type"], "not_found", "{v}");
        }
    }
}

#[tokio::test]
async fn a_team_scoped_token_finds_no_other_teams_or_organisation_budgets_and_limits() {
    let gw = Gateway::start().await;
    let team_a = id_of(&gw, "/teams", json!({"name": "a"})).await;
    let team_b = id_of(&gw, "/teams", json!({"name": "b"})).await;
    let key_a = id_of(&gw, "/keys", json!({"team_id": team_a, "name": "ka"})).await;
    let key_b = id_of(&gw, "/keys", json!({"team_id": team_b, "name": "kb"})).await;
    let user_b = id_of(&gw, "/users", json!({"email": "b@example.com"})).await;
    gw.create(
        &format!("/teams/{team_b}/members"),
        json!({"user_id": user_b, "role": "member"}),
    )
    .await;
    let budget = |scope: Value| json!({"scope": scope, "amount_micros": 1_000_000, "period": "day", "enforcement": "hard"});
    let limit = |scope: Value| json!({"scope": scope, "rpm": 10});

    // Other teams' and the organisation's: every scope kind.
    let hidden_budgets = [
        id_of(&gw, "/budgets", budget(json!({"key_id": key_b}))).await,
        id_of(&gw, "/budgets", budget(json!({"team_id": team_b}))).await,
        id_of(&gw, "/budgets", budget(json!({"user_id": user_b}))).await,
        id_of(&gw, "/budgets", budget(json!({"environment": "prod"}))).await,
    ];
    let hidden_limits = [
        id_of(&gw, "/rate-limits", limit(json!({"key_id": key_b}))).await,
        id_of(&gw, "/rate-limits", limit(json!({"team_id": team_b}))).await,
        id_of(&gw, "/rate-limits", limit(json!({"user_id": user_b}))).await,
        id_of(&gw, "/rate-limits", limit(json!({"model": "smart"}))).await,
    ];
    // Team A's own: its team's and its key's.
    let own_budgets = [
        id_of(&gw, "/budgets", budget(json!({"team_id": team_a}))).await,
        id_of(&gw, "/budgets", budget(json!({"key_id": key_a}))).await,
    ];
    let own_limits = [
        id_of(&gw, "/rate-limits", limit(json!({"team_id": team_a}))).await,
        id_of(&gw, "/rate-limits", limit(json!({"key_id": key_a}))).await,
    ];

    for role in ["owner", "viewer"] {
        let (_, scoped) = token(&gw, &format!("a-{role}"), role, Some(&team_a)).await;
        expect_gets(&gw, &scoped, "/budgets", &hidden_budgets, 404, role).await;
        expect_gets(&gw, &scoped, "/rate-limits", &hidden_limits, 404, role).await;
        expect_gets(&gw, &scoped, "/budgets", &own_budgets, 200, role).await;
        expect_gets(&gw, &scoped, "/rate-limits", &own_limits, 200, role).await;
        // Lists show exactly the team's own, also when filtered by another team's key.
        let (status, page) = call(&gw, &scoped, Method::GET, "/budgets?limit=1000", None).await;
        assert_eq!(status, 200, "{page}");
        let mut listed = ids(&page);
        listed.sort();
        let mut want = own_budgets.to_vec();
        want.sort();
        assert_eq!(listed, want, "{role} lists budgets");
        let (_, page) = call(
            &gw,
            &scoped,
            Method::GET,
            &format!("/budgets?key_id={key_b}"),
            None,
        )
        .await;
        assert!(ids(&page).is_empty(), "{page}");
        let (status, page) = call(&gw, &scoped, Method::GET, "/rate-limits?limit=1000", None).await;
        assert_eq!(status, 200, "{page}");
        let mut listed = ids(&page);
        listed.sort();
        let mut want = own_limits.to_vec();
        want.sort();
        assert_eq!(listed, want, "{role} lists rate limits");
    }
    // Changing them is organisation-wide work: refused before anything is looked up.
    let (_, scoped) = token(&gw, "a-owner-2", "owner", Some(&team_a)).await;
    for id in &hidden_budgets {
        let (status, _) = call(
            &gw,
            &scoped,
            Method::PATCH,
            &format!("/budgets/{id}"),
            Some(json!({"amount_micros": 1})),
        )
        .await;
        assert_eq!(status, 403);
        let (status, _) = call(
            &gw,
            &scoped,
            Method::DELETE,
            &format!("/budgets/{id}"),
            None,
        )
        .await;
        assert_eq!(status, 403);
    }
    for id in &hidden_limits {
        let (status, _) = call(
            &gw,
            &scoped,
            Method::DELETE,
            &format!("/rate-limits/{id}"),
            None,
        )
        .await;
        assert_eq!(status, 403);
    }
    // The organisation still sees everything.
    let (_, page) = gw.admin(Method::GET, "/budgets?limit=1000", None).await;
    assert_eq!(ids(&page).len(), hidden_budgets.len() + own_budgets.len());
    gw.shutdown().await;
}

#[tokio::test]
async fn explain_shows_a_team_scoped_token_only_its_own_budgets_and_limits() {
    let (_upstream, gw, p) = gateway_with_smart_route().await;
    let user = id_of(&gw, "/users", json!({"email": "owner@example.com"})).await;
    gw.create(
        &format!("/teams/{}/members", p.team_id),
        json!({"user_id": user, "role": "member"}),
    )
    .await;
    let (status, v) = gw
        .admin(
            Method::PATCH,
            &format!("/keys/{}", p.key_id),
            Some(json!({"owner_user_id": user})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let budget = |scope: Value| json!({"scope": scope, "amount_micros": 1_000_000_000, "period": "day", "enforcement": "soft"});
    let own = id_of(&gw, "/budgets", budget(json!({"key_id": p.key_id}))).await;
    let org = id_of(&gw, "/budgets", budget(json!({"user_id": user}))).await;
    let own_limit = id_of(
        &gw,
        "/rate-limits",
        json!({"scope": {"team_id": p.team_id}, "rpm": 1000}),
    )
    .await;
    let org_limit = id_of(
        &gw,
        "/rate-limits",
        json!({"scope": {"model": "smart"}, "rpm": 1000}),
    )
    .await;
    gw.wait_for_config().await;
    let body = json!({"key_id": p.key_id, "request": {"model": "smart", "messages": [{"role": "user", "content": "hi"}]}});
    let listed = |v: &Value, field: &str| -> Vec<String> {
        v[field]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, v) = gw.admin(Method::POST, "/explain", Some(body.clone())).await;
    assert_eq!(status, 200, "{v}");
    let mut all = listed(&v, "budgets");
    all.sort();
    let mut want = vec![own.clone(), org.clone()];
    want.sort();
    assert_eq!(all, want, "the organisation sees every budget that applies");
    assert_eq!(listed(&v, "rate_limits").len(), 2, "{v}");

    let (_, scoped) = token(&gw, "scoped-viewer", "viewer", Some(&p.team_id)).await;
    let (status, v) = call(&gw, &scoped, Method::POST, "/explain", Some(body)).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(listed(&v, "budgets"), vec![own]);
    assert_eq!(listed(&v, "rate_limits"), vec![own_limit]);
    assert!(
        !v.to_string().contains(&org) && !v.to_string().contains(&org_limit),
        "{v}"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_key_can_only_be_owned_by_a_member_of_its_team() {
    let gw = Gateway::start().await;
    let team_a = id_of(&gw, "/teams", json!({"name": "a"})).await;
    let team_b = id_of(&gw, "/teams", json!({"name": "b"})).await;
    let member_a = id_of(&gw, "/users", json!({"email": "a@example.com"})).await;
    let member_b = id_of(&gw, "/users", json!({"email": "b@example.com"})).await;
    gw.create(
        &format!("/teams/{team_a}/members"),
        json!({"user_id": member_a, "role": "member"}),
    )
    .await;
    gw.create(
        &format!("/teams/{team_b}/members"),
        json!({"user_id": member_b, "role": "member"}),
    )
    .await;
    let (_, scoped_a) = token(&gw, "a-admin", "admin", Some(&team_a)).await;

    for tok in [gw.admin_token.clone(), scoped_a.clone()] {
        // Another team's member, and nobody at all, get the same answer.
        for owner in [member_b.as_str(), "no-such-user"] {
            let (status, v) = call(
                &gw,
                &tok,
                Method::POST,
                "/keys",
                Some(json!({"team_id": team_a, "name": "k", "owner_user_id": owner})),
            )
            .await;
            assert_eq!(status, 400, "create with owner {owner}: {v}");
            assert_eq!(v["error"]["param"], "owner_user_id", "{v}");
            assert_eq!(
                v["error"]["message"], "no such user in the key's team",
                "{v}"
            );
        }
    }
    let key = id_of(
        &gw,
        "/keys",
        json!({"team_id": team_a, "name": "k", "owner_user_id": member_a}),
    )
    .await;
    for tok in [gw.admin_token.clone(), scoped_a] {
        let (status, v) = call(
            &gw,
            &tok,
            Method::PATCH,
            &format!("/keys/{key}"),
            Some(json!({"owner_user_id": member_b})),
        )
        .await;
        assert_eq!(status, 400, "{v}");
        assert_eq!(v["error"]["param"], "owner_user_id", "{v}");
    }
    let (status, v) = gw.admin(Method::GET, &format!("/keys/{key}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(
        v["owner_user_id"],
        json!(member_a),
        "the owner is unchanged: {v}"
    );
    // Clearing the owner still works.
    let (status, v) = gw
        .admin(
            Method::PATCH,
            &format!("/keys/{key}"),
            Some(json!({"owner_user_id": null})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    gw.shutdown().await;
}

#[tokio::test]
async fn sinks_are_read_only_by_their_managers_and_never_show_url_credentials() {
    let gw = Gateway::start().await;
    let password = "hunter2-sink-password";
    let created = gw
        .create(
            "/usage/sinks",
            json!({"name": "nats", "kind": "nats", "url": format!("nats://billing:{password}@127.0.0.1:1"), "subject": "usage.events"}),
        )
        .await;
    assert_eq!(created["url"], "nats://***@127.0.0.1:1", "{created}");
    let id = created["id"].as_str().unwrap().to_owned();

    for (role, team) in [
        ("viewer", None),
        ("member", None),
        ("owner", Some("scoped")),
    ] {
        let team_id = match team {
            Some(_) => Some(id_of(&gw, "/teams", json!({"name": role})).await),
            None => None,
        };
        let (_, tok) = token(&gw, &format!("{role}-sinks"), role, team_id.as_deref()).await;
        let (status, v) = call(&gw, &tok, Method::GET, "/usage/sinks", None).await;
        assert_eq!(status, 403, "{role} {team:?} lists sinks: {v}");
        let (status, v) = call(&gw, &tok, Method::GET, &format!("/usage/sinks/{id}"), None).await;
        assert_eq!(status, 403, "{role} {team:?} reads a sink: {v}");
    }
    let mut seen = Vec::new();
    for path in [
        "/usage/sinks".to_owned(),
        format!("/usage/sinks/{id}"),
        "/audit?limit=1000".to_owned(),
    ] {
        let (status, v) = gw.admin(Method::GET, &path, None).await;
        assert_eq!(status, 200, "{path}: {v}");
        seen.push(v.to_string());
    }
    let (status, v) = gw
        .admin(
            Method::POST,
            &format!("/usage/sinks/{id}/rewind"),
            Some(json!({"after": 0})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    seen.push(v.to_string());
    for text in &seen {
        assert!(!text.contains(password), "{text}");
        assert!(!text.contains("billing:"), "{text}");
    }
    assert!(seen[0].contains("nats://***@127.0.0.1:1"), "{}", seen[0]);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_failed_delivery_records_an_error_without_the_urls_password() {
    let (_upstream, gw, p) = gateway_with_smart_route().await;
    // A port nothing listens on: every delivery fails.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let password = "s3cret-delivery-password";
    let webhook = id_of(
        &gw,
        "/usage/sinks",
        json!({"name": "hook", "kind": "webhook", "url": format!("http://billing:{password}@127.0.0.1:{port}/in")}),
    )
    .await;
    let nats = id_of(
        &gw,
        "/usage/sinks",
        json!({"name": "nats", "kind": "nats", "url": format!("nats://billing:{password}@127.0.0.1:{port}"), "subject": "usage.events"}),
    )
    .await;
    assert_eq!(gw.say_hi(&p.key, "smart").await.status(), 200);
    for id in [webhook, nats] {
        let error = eventually(
            Duration::from_secs(20),
            "a recorded delivery failure",
            || async {
                let (_, v) = gw
                    .admin(Method::GET, &format!("/usage/sinks/{id}"), None)
                    .await;
                v["last_error"].as_str().map(str::to_owned)
            },
        )
        .await;
        assert!(
            !error.contains(password),
            "last_error shows the password: {error}"
        );
        assert!(
            error.contains(&format!("127.0.0.1:{port}")),
            "the error still names the address: {error}"
        );
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn a_token_is_revoked_only_by_someone_who_could_have_minted_it() {
    let gw = Gateway::start().await;
    let team_a = id_of(&gw, "/teams", json!({"name": "a"})).await;
    let team_b = id_of(&gw, "/teams", json!({"name": "b"})).await;
    let (owner_id, owner) = token(&gw, "org-owner", "owner", None).await;
    let (_, admin) = token(&gw, "org-admin", "admin", None).await;
    let (scoped_owner_id, _) = token(&gw, "a-owner", "owner", Some(&team_a)).await;
    let (_, scoped_admin_a) = token(&gw, "a-admin", "admin", Some(&team_a)).await;
    let (b_viewer_id, _) = token(&gw, "b-viewer", "viewer", Some(&team_b)).await;
    let (a_member_id, _) = token(&gw, "a-member", "member", Some(&team_a)).await;

    // A higher role: refused, and the token keeps working.
    for (tok, target) in [(&admin, &owner_id), (&scoped_admin_a, &scoped_owner_id)] {
        let (status, v) = call(
            &gw,
            tok,
            Method::POST,
            &format!("/tokens/{target}/revoke"),
            None,
        )
        .await;
        assert_eq!(status, 403, "{v}");
        assert_eq!(v["error"]["type"], "permission_denied");
    }
    let (status, _) = call(&gw, &owner, Method::GET, "/teams", None).await;
    assert_eq!(status, 200, "the owner token was not revoked");
    // Another team's token, or an organisation-wide one: not found.
    for target in [&b_viewer_id, &owner_id] {
        let (status, v) = call(
            &gw,
            &scoped_admin_a,
            Method::POST,
            &format!("/tokens/{target}/revoke"),
            None,
        )
        .await;
        assert_eq!(status, 404, "{v}");
    }
    // Its own team's lower roles: revoked.
    let (status, v) = call(
        &gw,
        &scoped_admin_a,
        Method::POST,
        &format!("/tokens/{a_member_id}/revoke"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert!(v["revoked_at"].is_string());
    let (status, v) = call(
        &gw,
        &admin,
        Method::POST,
        &format!("/tokens/{b_viewer_id}/revoke"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    gw.shutdown().await;
}

#[tokio::test]
async fn an_admin_token_stops_working_when_it_expires() {
    let gw = Gateway::start().await;
    let now = gw.clock.now();
    let (status, v) = gw
        .admin(Method::POST, "/tokens", Some(json!({"name": "past", "role": "viewer", "expires_at": (now - chrono::Duration::seconds(1)).to_rfc3339()})))
        .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["param"], "expires_at");

    let expires = now + chrono::Duration::hours(1);
    let created = gw
        .create(
            "/tokens",
            json!({"name": "short", "role": "viewer", "expires_at": expires.to_rfc3339()}),
        )
        .await;
    let secret = created["token"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    let parsed = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
    assert_eq!(
        parsed(&created["expires_at"]).timestamp(),
        expires.timestamp()
    );
    let (status, v) = call(&gw, &secret, Method::GET, "/teams", None).await;
    assert_eq!(status, 200, "before its expiry: {v}");
    let (_, listed) = gw.admin(Method::GET, "/tokens?limit=1000", None).await;
    let row = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == json!(id))
        .unwrap()
        .clone();
    assert_eq!(
        parsed(&row["expires_at"]).timestamp(),
        expires.timestamp(),
        "{row}"
    );
    let bootstrap = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "bootstrap")
        .unwrap();
    assert!(
        bootstrap["expires_at"].is_null(),
        "tokens without an expiry keep none: {bootstrap}"
    );

    gw.clock.set(expires + chrono::Duration::seconds(1));
    let (status, v) = call(&gw, &secret, Method::GET, "/teams", None).await;
    assert_eq!(status, 401, "after its expiry: {v}");
    assert_eq!(v["error"]["type"], "unauthorized");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("expired"),
        "{v}"
    );
    // A token without an expiry is unaffected by time.
    let (status, _) = gw.admin(Method::GET, "/teams", None).await;
    assert_eq!(status, 200);
    // The OpenAPI document describes the field, in and out.
    let doc: Value = gw
        .http
        .get(format!("{}/admin/v1/openapi.json", gw.admin_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for schema in ["CreateToken", "Token"] {
        let field = &doc["components"]["schemas"][schema]["properties"]["expires_at"];
        assert!(
            field.is_object(),
            "{schema}.expires_at in the OpenAPI document"
        );
    }
    gw.shutdown().await;
}
