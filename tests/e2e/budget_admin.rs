//! The budget admin surface: list (by scope), update through a snapshot, delete; audited; and
//! the `modelgate budgets …` CLI over it.

use reqwest::Method;
use serde_json::{json, Value};

use crate::budgets::{ask, budget, setup};

#[tokio::test]
async fn budgets_are_listed_by_scope_updated_through_a_snapshot_deleted_and_audited() {
    let (upstream, gw, p) = setup().await;
    let key_budget = budget(
        &gw,
        json!({"scope": {"key_id": p.key_id}, "amount_micros": 10_000_000, "period": "total", "enforcement": "hard"}),
    )
    .await;
    let team_budget = budget(
        &gw,
        json!({"scope": {"team_id": p.team_id}, "amount_micros": 5_000_000, "period": "month", "enforcement": "soft"}),
    )
    .await;

    // List: everything, then by scope; two scopes at once is refused naming the parameter.
    let ids = |v: &Value| -> Vec<String> {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, all) = gw.admin(Method::GET, "/budgets", None).await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(ids(&all), vec![key_budget.clone(), team_budget.clone()]);
    let (_, by_team) = gw
        .admin(
            Method::GET,
            &format!("/budgets?team_id={}", p.team_id),
            None,
        )
        .await;
    assert_eq!(ids(&by_team), vec![team_budget.clone()]);
    assert_eq!(by_team["data"][0]["spent_micros"], 0);
    let (status, v) = gw
        .admin(
            Method::GET,
            &format!("/budgets?team_id={}&key_id={}", p.team_id, p.key_id),
            None,
        )
        .await;
    assert_eq!(status, 400, "{v}");

    // One request takes a 1 000 000 µ$ slice of the key's budget.
    let r = ask(&gw.http, gw.dp().addr, &p.key).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // Lowering the amount below what is granted: the node stops at the new amount at once,
    // although its grant is larger.
    let (status, b) = gw
        .admin(
            Method::PATCH,
            &format!("/budgets/{key_budget}"),
            Some(json!({"amount_micros": 150_000})),
        )
        .await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["amount_micros"], 150_000);
    gw.wait_for_config().await;
    let r = ask(&gw.http, gw.dp().addr, &p.key).send().await.unwrap();
    assert_eq!(r.status(), 429, "the lowered amount holds");
    assert_eq!(upstream.calls(), 1);

    // Soft: alerts only, nothing refused.
    let (status, b) = gw
        .admin(
            Method::PATCH,
            &format!("/budgets/{key_budget}"),
            Some(json!({"enforcement": "soft"})),
        )
        .await;
    assert_eq!(status, 200, "{b}");
    gw.wait_for_config().await;
    let r = ask(&gw.http, gw.dp().addr, &p.key).send().await.unwrap();
    assert_eq!(r.status(), 200);

    let (status, v) = gw
        .admin(
            Method::PATCH,
            &format!("/budgets/{key_budget}"),
            Some(json!({"enforcement": "strict"})),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert!(v.to_string().contains("enforcement"), "{v}");

    let (status, _) = gw
        .admin(Method::DELETE, &format!("/budgets/{key_budget}"), None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = gw
        .admin(Method::GET, &format!("/budgets/{key_budget}"), None)
        .await;
    assert_eq!(status, 404);
    let (status, _) = gw
        .admin(Method::DELETE, &format!("/budgets/{key_budget}"), None)
        .await;
    assert_eq!(status, 404);

    let (status, log) = gw
        .admin(
            Method::GET,
            &format!("/audit?resource_type=budget&resource_id={key_budget}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{log}");
    let entries = log["data"].as_array().unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        vec![
            "budget.create",
            "budget.update",
            "budget.update",
            "budget.delete"
        ]
    );
    assert_eq!(entries[1]["before"]["amount_micros"], 10_000_000);
    assert_eq!(entries[1]["after"]["amount_micros"], 150_000);
    gw.shutdown().await;
}
