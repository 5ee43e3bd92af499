use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::*;

#[test]
fn api_errors_render_their_message_and_param() {
    let body = r#"{"error":{"type":"invalid_request","message":"no such team","param":"team_id"}}"#;
    let err = CliError::from_response("http://x/admin/v1/keys", 400, body);
    assert!(matches!(err, CliError::Api { .. }));
    assert_eq!(err.render(), "error: no such team (param: team_id)");

    let body = r#"{"error":{"type":"not_found","message":"key `k1` not found","param":null}}"#;
    assert_eq!(
        CliError::from_response("http://x", 404, body).render(),
        "error: key `k1` not found"
    );
    let body = r#"{"error":{"type":"unauthorized","message":"a valid admin token is required"}}"#;
    assert_eq!(
        CliError::from_response("http://x", 401, body).render(),
        "error: a valid admin token is required"
    );
}

#[test]
fn other_error_bodies_name_the_url_and_status() {
    let err = CliError::from_response("http://x/admin/v1/teams", 502, "<html>\nBad Gateway</html>");
    let text = err.render();
    assert!(
        text.starts_with("error: unexpected answer from http://x/admin/v1/teams (HTTP 502)"),
        "{text}"
    );
    assert!(text.ends_with("<html> Bad Gateway</html>"), "{text}");
    let text = CliError::from_response("http://x", 500, "").render();
    assert!(text.ends_with("(empty body)"), "{text}");
    let long = "y".repeat(1000);
    let text = CliError::from_response("http://x", 500, &long).render();
    assert!(text.len() < 400, "{text}");
}

#[test]
fn a_missing_token_or_bad_url_is_refused_before_any_call() {
    for token in [None, Some(""), Some("  ")] {
        let err = AdminClient::new("http://127.0.0.1:9090", token)
            .err()
            .unwrap();
        assert!(
            err.render().contains("MODELGATE_ADMIN_TOKEN"),
            "{}",
            err.render()
        );
    }
    for url in ["127.0.0.1:9090", "ftp://host", "not a url", "mailto:a@b"] {
        let err = AdminClient::new(url, Some("t")).err().unwrap();
        assert_eq!(
            err.render(),
            format!("error: --admin-url `{url}` is not an http:// or https:// URL")
        );
    }
}

#[test]
fn urls_escape_ids_and_keep_a_base_path() {
    let client = AdminClient::new("http://h:1/gw/?x=1#f", Some("t")).unwrap();
    let url = client.url(&["keys", "a/b?c", "revoke"], &[("after", "x&y".into())]);
    assert_eq!(
        url.as_str(),
        "http://h:1/gw/admin/v1/keys/a%2Fb%3Fc/revoke?after=x%26y"
    );
    let client = AdminClient::new("http://h:1", Some("t")).unwrap();
    assert_eq!(
        client.url(&["teams"], &[]).as_str(),
        "http://h:1/admin/v1/teams"
    );
}

#[tokio::test]
async fn a_refused_connection_names_the_admin_url() {
    // A port nothing listens on: bind one, then close it.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let admin_url = format!("http://{addr}");
    let client = AdminClient::new(&admin_url, Some("t")).unwrap();
    let err = client.get(&["teams"]).await.unwrap_err();
    assert!(matches!(err, CliError::Connect { .. }), "{err:?}");
    let text = err.render();
    assert!(
        text.starts_with(&format!(
            "error: could not connect to the admin API at {admin_url}: "
        )),
        "{text}"
    );
    assert!(text.contains("MODELGATE_ADMIN_URL"), "{text}");
}

/// One query a list endpoint received: `after` and `limit`.
type PageQuery = (Option<String>, u64);

/// A list endpoint over 5 rows with the API's cursor semantics, recording each query.
#[derive(Clone, Default)]
struct Pages {
    queries: Arc<Mutex<Vec<PageQuery>>>,
    repeat_cursor: bool,
}

async fn page(
    State(p): State<Pages>,
    Query(q): Query<HashMap<String, String>>,
) -> (StatusCode, Json<Value>) {
    let after = q.get("after").cloned();
    let limit: u64 = q["limit"].parse().unwrap();
    p.queries.lock().unwrap().push((after.clone(), limit));
    if q.get("team").map(String::as_str) != Some("t1") {
        return (
            StatusCode::BAD_REQUEST,
            Json(
                json!({"error": {"type": "invalid_request", "message": "team filter lost", "param": "team"}}),
            ),
        );
    }
    let ids: Vec<u64> = (1..=5).collect();
    let start = after.as_deref().map_or(0, |a| a.parse::<usize>().unwrap());
    let rest = &ids[start.min(ids.len())..];
    let take = rest.len().min(limit as usize);
    let data: Vec<Value> = rest[..take].iter().map(|i| json!({"id": i})).collect();
    let next = if p.repeat_cursor {
        Some("2".to_owned())
    } else if take < rest.len() {
        Some((start + take).to_string())
    } else {
        None
    };
    (
        StatusCode::OK,
        Json(json!({"data": data, "next_cursor": next})),
    )
}

async fn serve(pages: Pages) -> AdminClient {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/admin/v1/things", get(page))
        .with_state(pages);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    AdminClient::new(&format!("http://{addr}"), Some("t")).unwrap()
}

fn ids(rows: &[Value]) -> Vec<u64> {
    rows.iter().map(|r| r["id"].as_u64().unwrap()).collect()
}

#[tokio::test]
async fn list_follows_next_cursor_until_the_end() {
    let pages = Pages::default();
    let client = serve(pages.clone()).await;
    let filters = [("team", "t1".to_owned())];
    let rows = client.list(&["things"], &filters, None, 2).await.unwrap();
    assert_eq!(ids(&rows), [1, 2, 3, 4, 5]);
    assert_eq!(
        *pages.queries.lock().unwrap(),
        [
            (None, 2),
            (Some("2".to_owned()), 2),
            (Some("4".to_owned()), 2)
        ]
    );
}

#[tokio::test]
async fn list_stops_at_the_limit_and_asks_only_for_what_it_needs() {
    let pages = Pages::default();
    let client = serve(pages.clone()).await;
    let filters = [("team", "t1".to_owned())];
    let rows = client
        .list(&["things"], &filters, Some(3), 2)
        .await
        .unwrap();
    assert_eq!(ids(&rows), [1, 2, 3]);
    assert_eq!(
        *pages.queries.lock().unwrap(),
        [(None, 2), (Some("2".to_owned()), 1)]
    );
}

#[tokio::test]
async fn list_refuses_a_cursor_that_does_not_move() {
    let pages = Pages {
        repeat_cursor: true,
        ..Pages::default()
    };
    let client = serve(pages.clone()).await;
    let filters = [("team", "t1".to_owned())];
    let err = client
        .list(&["things"], &filters, None, 2)
        .await
        .unwrap_err();
    assert!(
        err.render().contains("repeated its cursor"),
        "{}",
        err.render()
    );
}

#[tokio::test]
async fn list_passes_api_errors_through() {
    let client = serve(Pages::default()).await;
    let err = client.list(&["things"], &[], None, 2).await.unwrap_err();
    assert_eq!(err.render(), "error: team filter lost (param: team)");
}
