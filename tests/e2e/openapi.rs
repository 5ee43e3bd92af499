//! The admin API's OpenAPI document is generated from the routed handlers, and walking it with
//! malformed bodies never gets a 5xx and never changes a row.

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::Gateway;

async fn document(gw: &Gateway) -> Value {
    let resp = gw
        .http
        .get(format!("{}/admin/v1/openapi.json", gw.admin_url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

#[tokio::test]
async fn the_openapi_document_describes_every_admin_route() {
    let gw = Gateway::start().await;
    let doc = document(&gw).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/teams", "post"),
        ("/users", "get"),
        ("/tokens", "post"),
        ("/keys/{id}", "patch"),
        ("/keys/{id}/rotate", "post"),
        ("/audit", "get"),
        ("/usage/events", "get"),
        ("/usage/sinks/{id}", "delete"),
        ("/budgets", "get"),
        ("/budgets/{id}", "patch"),
        ("/budgets/{id}", "delete"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing from the document"
        );
    }
    let create_key = &doc["components"]["schemas"]["CreateKey"];
    assert!(
        create_key["properties"]["team_id"].is_object(),
        "{create_key}"
    );
    // Every documented operation answers something other than "no such endpoint".
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            let url = format!(
                "{}/admin/v1{}",
                gw.admin_url,
                path.replace("{id}", "missing")
            );
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let resp = gw
                .http
                .request(m, &url)
                .bearer_auth(&gw.admin_token)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            assert!(
                !(status == 404 && body["error"]["message"] == "admin endpoint not found"),
                "{method} {path} is documented but not routed"
            );
        }
    }
    gw.shutdown().await;
}

/// A value of the wrong type for a schema property.
fn wrong_for(schema: &Value) -> Value {
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if types.contains(&"string") {
        json!(12345)
    } else if types.contains(&"integer") || types.contains(&"number") {
        json!("not a number")
    } else if types.contains(&"boolean") {
        json!("yes")
    } else if types.contains(&"array") {
        json!({"not": "an array"})
    } else {
        json!([1, 2, 3])
    }
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.rsplit('/').next().unwrap();
            &doc["components"]["schemas"][name]
        }
        None => schema,
    }
}

/// Row counts a malformed request must not change.
async fn state(gw: &Gateway) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for list in [
        "/teams",
        "/users",
        "/tokens",
        "/keys",
        "/providers",
        "/models",
        "/routes",
        "/audit",
        "/usage/sinks",
    ] {
        let (status, v) = gw
            .admin(Method::GET, &format!("{list}?limit=1000"), None)
            .await;
        assert_eq!(status, 200, "{list}: {v}");
        out.push((list.to_owned(), v["data"].as_array().unwrap().len()));
    }
    out
}

#[tokio::test]
async fn malformed_bodies_to_every_admin_endpoint_never_get_a_5xx_or_change_a_row() {
    let gw = Gateway::start().await;
    // Real resources, so that id paths reach body validation too.
    let team = gw.create("/teams", json!({"name": "walked"})).await;
    let team_id = team["id"].as_str().unwrap().to_owned();
    let key = gw
        .create("/keys", json!({"team_id": team_id, "name": "walked"}))
        .await;
    let key_id = key["id"].as_str().unwrap().to_owned();
    let doc = document(&gw).await;
    let before = state(&gw).await;

    let mut sent = 0;
    let mut failures = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            if !matches!(method.as_str(), "post" | "patch" | "put") {
                continue;
            }
            // Only operations that take a body can get a malformed one.
            if op.get("requestBody").is_none() {
                continue;
            }
            let schema = op["requestBody"]["content"]["application/json"]["schema"].clone();
            let schema = resolve(&doc, &schema);
            let mut bodies: Vec<(String, Vec<u8>)> = vec![
                ("not JSON".into(), b"{not json".to_vec()),
                ("an array".into(), b"[]".to_vec()),
                ("a number".into(), b"42".to_vec()),
                ("a string".into(), b"\"text\"".to_vec()),
            ];
            if let Some(props) = schema["properties"].as_object() {
                let mut all_wrong = serde_json::Map::new();
                for (name, prop) in props {
                    let wrong = wrong_for(resolve(&doc, prop));
                    all_wrong.insert(name.clone(), wrong.clone());
                    bodies.push((
                        format!("{name} of the wrong type"),
                        json!({ name: wrong }).to_string().into_bytes(),
                    ));
                }
                bodies.push((
                    "every field wrong".into(),
                    Value::Object(all_wrong).to_string().into_bytes(),
                ));
            }
            let ids: Vec<String> = if path.contains("{id}") {
                let real = if path.starts_with("/keys") {
                    key_id.clone()
                } else {
                    team_id.clone()
                };
                vec![real, "no-such-id".into()]
            } else {
                vec![String::new()]
            };
            for id in &ids {
                let url = format!("{}/admin/v1{}", gw.admin_url, path.replace("{id}", id));
                for (what, body) in &bodies {
                    let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                    let resp = gw
                        .http
                        .request(m, &url)
                        .bearer_auth(&gw.admin_token)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                    sent += 1;
                    let status = resp.status().as_u16();
                    let text = resp.text().await.unwrap();
                    if !(400..500).contains(&status) {
                        failures.push(format!(
                            "{method} {path} ({what}, id {id:?}): {status} {text}"
                        ));
                    }
                }
            }
        }
    }
    assert!(sent > 100, "the walk sent only {sent} requests");
    assert!(
        failures.is_empty(),
        "malformed bodies that were not refused cleanly:\n{}",
        failures.join("\n")
    );
    assert_eq!(
        state(&gw).await,
        before,
        "a malformed request changed a row"
    );
    gw.shutdown().await;
}
