//! What an operator does in the dashboard, in a real browser, and what a viewer cannot do.

use std::time::Duration;

use fantoccini::{Client, Locator};
use reqwest::Method;
use serde_json::json;

use crate::browser::{self, click_and_wait, count, fill, screenshot, text};
use crate::support::{eventually, gateway_with_smart_route, request_id, Gateway};

/// Chooses `value` in the select `css`.
async fn select(client: &Client, css: &str, value: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap()
        .select_by_value(value)
        .await
        .unwrap();
}

/// Signs in through the form with `token`; lands on the overview.
async fn sign_in(client: &Client, gw: &Gateway, token: &str) {
    client
        .goto(&format!("{}/login", gw.admin_url))
        .await
        .unwrap();
    fill(client, "#token", token).await;
    click_and_wait(client, "form.card button[type=submit]").await;
    assert_eq!(
        client.current_url().await.unwrap().path(),
        "/",
        "signed in, the browser is on the overview"
    );
}

async fn goto(client: &Client, gw: &Gateway, path: &str) {
    client
        .goto(&format!("{}{path}", gw.admin_url))
        .await
        .unwrap();
}

/// Every form field on the page has a label (or an accessible name), every image-like chart
/// a name, and the page a language and one `h1`.
async fn assert_accessible_basics(client: &Client, path: &str) {
    let unlabelled = client
        .execute(
            "return Array.from(document.querySelectorAll('input:not([type=hidden]), select, textarea'))\
               .filter(e => e.labels.length === 0 && !e.getAttribute('aria-label')).map(e => e.outerHTML)\
               .concat(Array.from(document.querySelectorAll('svg[role=img]'))\
                 .filter(e => !e.getAttribute('aria-label') && !e.getAttribute('aria-labelledby')).map(e => 'svg'))\
               .concat(document.documentElement.lang ? [] : ['html lang'])\
               .concat(document.querySelectorAll('h1').length === 1 ? [] : ['one h1']);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(unlabelled, json!([]), "{path}: unlabelled");
}

/// The visible text of the page's main region.
async fn main_text(client: &Client) -> String {
    text(client, "main").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_admin_creates_a_key_sees_its_traffic_and_attempts_then_revokes_it() {
    let driver = browser::start_driver().await;
    let (_upstream, gw, p) = gateway_with_smart_route().await;
    let client = browser::open(&driver).await;

    // Signing in.
    goto(&client, &gw, "/").await;
    assert_eq!(
        client.current_url().await.unwrap().path(),
        "/login",
        "without a session the dashboard asks to sign in"
    );
    screenshot(&client, "01-sign-in").await;
    sign_in(&client, &gw, &gw.admin_token).await;

    // Creating a budget and a rate limit for the team through their forms; a bad amount is
    // refused with the reason and creates nothing.
    goto(&client, &gw, "/budgets").await;
    select(&client, "#b-scope", &format!("team:{}", p.team_id)).await;
    fill(&client, "#b-amount", "5.000.1").await;
    click_and_wait(&client, "form[action='/budgets'] button[type=submit]").await;
    let refused = text(&client, ".flash.error").await;
    assert!(refused.contains("amount"), "{refused}");
    let (_, budgets) = gw.admin(Method::GET, "/budgets", None).await;
    assert_eq!(budgets["data"], json!([]), "no budget from a bad amount");
    select(&client, "#b-scope", &format!("team:{}", p.team_id)).await;
    fill(&client, "#b-amount", "5").await;
    select(&client, "#b-period", "month").await;
    select(&client, "#b-enforcement", "soft").await;
    click_and_wait(&client, "form[action='/budgets'] button[type=submit]").await;
    assert!(text(&client, ".flash.ok").await.contains("$5.00"));
    assert_accessible_basics(&client, "/budgets").await;
    let (_, budgets) = gw.admin(Method::GET, "/budgets", None).await;
    let budget = &budgets["data"][0];
    assert_eq!(budget["scope"], json!({"team_id": p.team_id}));
    assert_eq!(
        (
            &budget["amount_micros"],
            &budget["period"],
            &budget["enforcement"]
        ),
        (&json!(5_000_000), &json!("month"), &json!("soft"))
    );
    goto(&client, &gw, "/rate-limits").await;
    select(&client, "#l-scope", &format!("team:{}", p.team_id)).await;
    fill(&client, "#l-rpm", "600").await;
    click_and_wait(&client, "form[action='/rate-limits'] button[type=submit]").await;
    assert!(text(&client, ".flash.ok")
        .await
        .contains("Rate limit created"));
    assert_accessible_basics(&client, "/rate-limits").await;
    let (_, limits) = gw.admin(Method::GET, "/rate-limits", None).await;
    let limit = &limits["data"][0];
    assert_eq!(limit["scope"], json!({"team_id": p.team_id}));
    assert_eq!((&limit["rpm"], &limit["tpm"]), (&json!(600), &json!(0)));

    // Creating a key: the secret is shown once.
    goto(&client, &gw, "/keys").await;
    client
        .find(Locator::Css("#key-team"))
        .await
        .unwrap()
        .select_by_value(&p.team_id)
        .await
        .unwrap();
    fill(&client, "#key-name", "dashboard-key").await;
    client
        .find(Locator::Css("#key-env"))
        .await
        .unwrap()
        .select_by_value("prod")
        .await
        .unwrap();
    fill(&client, "#key-models", "smart").await;
    click_and_wait(&client, "form[action='/keys'] button[type=submit]").await;
    let secret = client
        .find(Locator::Css("#secret"))
        .await
        .expect("the new key's secret is shown")
        .prop("value")
        .await
        .unwrap()
        .unwrap();
    assert!(secret.starts_with("mg-"), "{secret}");
    screenshot(&client, "02-keys-created").await;
    goto(&client, &gw, "/keys").await;
    assert_eq!(
        count(&client, "#secret").await,
        0,
        "the secret is shown only once"
    );
    assert_accessible_basics(&client, "/keys").await;
    let (_, keys) = gw.admin(Method::GET, "/keys?limit=1000", None).await;
    let key_id = keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "dashboard-key")
        .expect("the key the browser created")["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Traffic with it through the data plane.
    gw.wait_for_config().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let resp = gw.say_hi(&secret, "smart").await;
        assert_eq!(resp.status(), 200);
        ids.push(request_id(&resp));
    }
    for id in &ids {
        gw.usage_row(id).await;
    }

    // The overview counts it.
    goto(&client, &gw, "/").await;
    let kpis = text(&client, ".kpis").await;
    assert!(kpis.contains("Requests\n3"), "{kpis}");
    let by_team = text(&client, "section[aria-labelledby=by-team]").await;
    assert!(by_team.contains('3'), "{by_team}");
    assert_eq!(count(&client, "figure.chart svg").await, 7, "seven charts");
    assert_accessible_basics(&client, "/").await;
    screenshot(&client, "03-overview").await;

    // The request log lists it; one request shows its attempt.
    goto(&client, &gw, &format!("/requests?key_id={key_id}")).await;
    assert_eq!(count(&client, "table.log tbody tr").await, 3);
    assert_accessible_basics(&client, "/requests").await;
    // The filters, through the form: this key's failures (none), then its 200s (all three).
    fill(&client, "#f-status", "5xx").await;
    click_and_wait(&client, "form.filters button[type=submit]").await;
    assert_eq!(count(&client, "table.log tbody tr").await, 0);
    assert!(main_text(&client).await.contains("No request matches."));
    fill(&client, "#f-status", "200").await;
    client
        .find(Locator::Css("#f-streamed"))
        .await
        .unwrap()
        .select_by_value("false")
        .await
        .unwrap();
    click_and_wait(&client, "form.filters button[type=submit]").await;
    assert_eq!(count(&client, "table.log tbody tr").await, 3);
    let url = client.current_url().await.unwrap();
    assert!(url.query().unwrap().contains("status=200"), "{url}");
    // None of them is check traffic: the log shows none when asked for it alone, all three
    // when it is left out.
    for (check, rows) in [("true", 0), ("false", 3)] {
        client
            .find(Locator::Css("#f-check"))
            .await
            .unwrap()
            .select_by_value(check)
            .await
            .unwrap();
        click_and_wait(&client, "form.filters button[type=submit]").await;
        assert_eq!(
            count(&client, "table.log tbody tr").await,
            rows,
            "check_traffic={check}"
        );
    }
    screenshot(&client, "04-requests").await;
    click_and_wait(&client, &format!("a[href='/requests/{}']", ids[0])).await;
    let attempts = text(&client, "table.attempts tbody").await;
    assert!(
        attempts.contains(&format!("{}/gpt-4o-2024", p.provider_id)),
        "{attempts}"
    );
    assert!(attempts.contains("200"), "{attempts}");
    assert_eq!(count(&client, "table.attempts tbody tr").await, 1);
    // The request is told by names: the key's, the team's, the route alias, the deployment's
    // provider.
    let named = |list: &serde_json::Value, id: &str| {
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["id"] == id)
            .unwrap()["name"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (_, teams) = gw.admin(Method::GET, "/teams?limit=1000", None).await;
    let (_, providers) = gw.admin(Method::GET, "/providers?limit=1000", None).await;
    let team_name = named(&teams, &p.team_id);
    let provider_name = named(&providers, &p.provider_id);
    let provider_name = provider_name.as_str();
    let key_shown = text(&client, "dd.key").await;
    assert!(key_shown.starts_with("dashboard-key (mg-"), "{key_shown}");
    assert!(text(&client, "dd.team").await.starts_with(&team_name));
    assert_eq!(text(&client, "dd.route").await, "smart");
    let deployment = text(&client, "dd.deployment").await;
    assert!(
        deployment.starts_with(&format!("{provider_name} · gpt-4o-2024")),
        "{deployment}"
    );
    assert!(text(&client, "dd.provider")
        .await
        .starts_with(provider_name));
    assert!(
        attempts.contains(&format!("{provider_name} · gpt-4o-2024")),
        "{attempts}"
    );
    screenshot(&client, "05-request-attempts").await;

    // Every other screen renders what it should, never a credential.
    for (path, name, expect) in [
        ("/teams", "06-teams", p.team_id.clone()),
        ("/providers", "07-providers", "stored (sealed)".to_owned()),
        ("/routes", "08-routes", "gpt-4o-2024".to_owned()),
        ("/budgets", "09-budgets", "$5.00".to_owned()),
        ("/rate-limits", "10-rate-limits", "rpm 600".to_owned()),
        (
            "/fleet",
            "11-fleet",
            crate::support::node_id_for(&gw.dp_dir),
        ),
    ] {
        goto(&client, &gw, path).await;
        let body = main_text(&client).await;
        assert!(body.contains(&expect), "{path} shows {expect}: {body}");
        let source = client.source().await.unwrap();
        assert!(
            !source.contains("sk-upstream-secret-1234"),
            "{path} shows a credential"
        );
        assert_accessible_basics(&client, path).await;
        screenshot(&client, name).await;
    }
    // The routes screen shows the deployment's live health once the data plane reported it.
    goto(&client, &gw, "/routes").await;
    assert!(main_text(&client).await.contains("healthy"));

    // On a phone: nothing wider than the screen but the tables' own scroll boxes.
    client.set_window_size(390, 844).await.unwrap();
    goto(&client, &gw, "/").await;
    let fits = client
        .execute(
            "return document.documentElement.scrollWidth <= window.innerWidth + 1;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(fits, json!(true), "the overview fits a 390 px wide screen");
    screenshot(&client, "12-overview-phone").await;
    client.set_window_size(1280, 900).await.unwrap();

    // Revoking the key: the browser confirms, the key shows revoked, the data plane refuses it.
    goto(&client, &gw, "/keys").await;
    let before = client.find(Locator::Css("html")).await.unwrap();
    client
        .find(Locator::Css(&format!(
            "tr[data-key='{key_id}'] button.danger"
        )))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client.accept_alert().await.unwrap();
    browser::wait_stale(&client, before).await;
    let row = text(&client, &format!("tr[data-key='{key_id}']")).await;
    assert!(row.contains("revoked"), "{row}");
    assert!(main_text(&client).await.contains("revoked"));
    screenshot(&client, "13-key-revoked").await;
    gw.wait_for_config().await;
    let refused = gw.say_hi(&secret, "smart").await;
    assert_eq!(refused.status(), 401, "a revoked key is refused");

    // Signing out ends the session.
    click_and_wait(&client, "form[action='/logout'] button").await;
    goto(&client, &gw, "/keys").await;
    assert_eq!(client.current_url().await.unwrap().path(), "/login");

    client.close().await.unwrap();
    gw.shutdown().await;
}

/// The cookie header value of the browser's dashboard session.
async fn session_cookie(client: &Client) -> String {
    let c = client.get_named_cookie("mg_session").await.unwrap();
    assert_eq!(c.http_only(), Some(true), "the session cookie is HttpOnly");
    assert_eq!(
        format!("{:?}", c.same_site()),
        "Some(Strict)",
        "the session cookie is SameSite=Strict"
    );
    format!("mg_session={}", c.value())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_viewer_has_no_create_forms_and_a_forged_post_is_refused() {
    let driver = browser::start_driver().await;
    let (_upstream, gw, p) = gateway_with_smart_route().await;
    let viewer = gw
        .create("/tokens", json!({"name": "look-only", "role": "viewer"}))
        .await;
    let viewer_token = viewer["token"].as_str().unwrap().to_owned();
    let viewer_id = viewer["id"].as_str().unwrap().to_owned();
    let client = browser::open(&driver).await;
    sign_in(&client, &gw, &viewer_token).await;
    assert!(text(&client, ".who").await.contains("viewer"));

    // No screen offers a change: the only form that posts is sign-out.
    for path in [
        "/",
        "/keys",
        "/teams",
        "/providers",
        "/routes",
        "/budgets",
        "/rate-limits",
        "/fleet",
        "/requests",
    ] {
        goto(&client, &gw, path).await;
        assert_eq!(
            count(&client, "form[method=post]:not([action='/logout'])").await,
            0,
            "{path} offers a viewer a change"
        );
    }
    goto(&client, &gw, "/keys").await;
    assert!(
        main_text(&client).await.contains("app"),
        "the viewer sees the team's key"
    );
    screenshot(&client, "14-viewer-keys").await;

    // Forged posts with the viewer's own session: without the CSRF token, from another
    // origin, and even with the token (the service layer refuses a viewer).
    let cookie = session_cookie(&client).await;
    assert!(
        !cookie.contains(&viewer_token),
        "the cookie does not carry the token"
    );
    let csrf = client
        .find(Locator::Css("form[action='/logout'] input[name=csrf]"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap()
        .unwrap();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = |csrf: &str| {
        format!(
            "csrf={csrf}&team_id={}&name=forged&environment=prod&allowed_models=",
            p.team_id
        )
    };
    let post = |body: String, origin: Option<&str>| {
        let mut r = http
            .post(format!("{}/keys", gw.admin_url))
            .header("cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        r.send()
    };
    let no_token = post(form(""), None).await.unwrap();
    assert_eq!(no_token.status(), 403, "no CSRF token");
    let wrong_token = post(form(&"0".repeat(64)), None).await.unwrap();
    assert_eq!(wrong_token.status(), 403, "another CSRF token");
    let cross_site = post(form(&csrf), Some("http://evil.example"))
        .await
        .unwrap();
    assert_eq!(cross_site.status(), 403, "another origin");
    let as_viewer = post(form(&csrf), Some(&gw.admin_url)).await.unwrap();
    assert_eq!(as_viewer.status(), 403, "a viewer may not create a key");
    let page = as_viewer.text().await.unwrap();
    assert!(page.contains("Not allowed"), "{page}");
    let (_, keys) = gw.admin(Method::GET, "/keys?limit=1000", None).await;
    assert!(
        keys["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["name"] != "forged"),
        "no key was created: {keys}"
    );

    // Signing in is guarded too: without the sign-in form's own cookie the post is refused
    // before the token is looked at; with it, an unknown token is told so (401, no session).
    let login = http
        .post(format!("{}/login", gw.admin_url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={}&token={}", "a".repeat(64), gw.admin_token))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 403, "a sign-in without its form's cookie");
    assert!(login.headers().get("set-cookie").is_none());
    let form_page = http
        .get(format!("{}/login", gw.admin_url))
        .send()
        .await
        .unwrap();
    let login_cookie = form_page.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let login_csrf = login_cookie.trim_start_matches("mg_login=").to_owned();
    let wrong = http
        .post(format!("{}/login", gw.admin_url))
        .header("cookie", &login_cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={login_csrf}&token=mgadm-not-a-token"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong
        .text()
        .await
        .unwrap()
        .contains("not a live admin token"));

    // Every page carries the strict headers.
    let resp = http
        .get(format!("{}/keys", gw.admin_url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let csp = resp.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(resp.headers()["x-frame-options"], "DENY");
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    let html = resp.text().await.unwrap();
    assert!(
        !html.contains("<script>") && !html.contains("style="),
        "no inline script or style"
    );

    // Revoking the viewer's token ends its session at the next request.
    let (status, _) = gw
        .admin(Method::POST, &format!("/tokens/{viewer_id}/revoke"), None)
        .await;
    assert_eq!(status, 200);
    let after = eventually(Duration::from_secs(5), "the session to end", || async {
        let r = http
            .get(format!("{}/keys", gw.admin_url))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        (r.status() == 303).then_some(r)
    })
    .await;
    assert_eq!(after.headers()["location"], "/login");

    client.close().await.unwrap();
    gw.shutdown().await;
}

/// Signs in over plain HTTP (the form's cookie and CSRF token, then the post); returns the
/// session cookie.
async fn http_sign_in(http: &reqwest::Client, gw: &Gateway, token: &str) -> String {
    let form = http
        .get(format!("{}/login", gw.admin_url))
        .send()
        .await
        .unwrap();
    let login_cookie = form.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let csrf = login_cookie.trim_start_matches("mg_login=").to_owned();
    let resp = http
        .post(format!("{}/login", gw.admin_url))
        .header("cookie", &login_cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}&token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303, "signed in");
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|v| v.starts_with("mg_session="))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

async fn page_text(http: &reqwest::Client, gw: &Gateway, cookie: &str, path: &str) -> String {
    let resp = http
        .get(format!("{}{path}", gw.admin_url))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    resp.text().await.unwrap()
}

/// The overview's request and error totals: `(requests, errors)` as its KPIs print them.
fn overview_totals(page: &str) -> (String, String) {
    let kpi = |label: &str| {
        let at = page
            .find(&format!("{label}</span><span class=\"kpi-value\">"))
            .unwrap_or_else(|| panic!("no {label} figure in {page}"));
        let rest = &page[at + label.len() + "</span><span class=\"kpi-value\">".len()..];
        rest[..rest.find('<').unwrap()].to_owned()
    };
    (kpi("Requests"), kpi("Errors"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_overview_leaves_check_traffic_out_unless_asked_to_show_it() {
    let (_upstream, gw, a) = gateway_with_smart_route().await;
    let served = request_id(&gw.say_hi(&a.key, "smart").await);
    // An acceptance run's deliberate failure, marked as check traffic: a body that is not JSON.
    let check = gw
        .chat(&a.key, json!({}))
        .header("x-modelgate-check", "1")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(check.status(), 400);
    let check = request_id(&check);
    gw.usage_row(&served).await;
    let row = gw.usage_row(&check).await;
    assert_eq!(row["application"], "modelgate-check", "{row}");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let cookie = http_sign_in(&http, &gw, &gw.admin_token).await;

    let default = page_text(&http, &gw, &cookie, "/").await;
    assert_eq!(overview_totals(&default), ("1".into(), "0 (0.0%)".into()));
    assert!(
        default.contains("href=\"/?days=14&amp;check_traffic=false\" aria-current=\"page\">hidden"),
        "the page says check traffic is hidden: {default}"
    );
    let shown = page_text(&http, &gw, &cookie, "/?days=14&check_traffic=all").await;
    assert_eq!(overview_totals(&shown), ("2".into(), "1 (50.0%)".into()));
    let only = page_text(&http, &gw, &cookie, "/?days=7&check_traffic=true").await;
    assert_eq!(overview_totals(&only), ("1".into(), "1 (100.0%)".into()));
    assert!(
        only.contains("href=\"/?days=30&amp;check_traffic=true\""),
        "the range links keep the choice: {only}"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_team_scoped_token_sees_only_its_team_on_every_screen() {
    let (upstream, gw, a) = gateway_with_smart_route().await;
    let b = gw
        .provision(&upstream.base_url(), "other", "gpt-4o-2024")
        .await;
    let a_request = request_id(&gw.say_hi(&a.key, "smart").await);
    let b_request = request_id(&gw.say_hi(&b.key, "other").await);
    gw.usage_row(&a_request).await;
    gw.usage_row(&b_request).await;
    let scoped = gw
        .create(
            "/tokens",
            json!({"name": "team-a-admin", "role": "admin", "team_id": a.team_id}),
        )
        .await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let org = http_sign_in(&http, &gw, &gw.admin_token).await;
    let team = http_sign_in(&http, &gw, scoped["token"].as_str().unwrap()).await;

    // The organisation sees both teams' traffic; team A's admin only its own.
    let org_overview = page_text(&http, &gw, &org, "/").await;
    assert!(
        org_overview.contains("Requests</span><span class=\"kpi-value\">2<"),
        "{org_overview}"
    );
    let team_overview = page_text(&http, &gw, &team, "/").await;
    assert!(
        team_overview.contains("Requests</span><span class=\"kpi-value\">1<"),
        "{team_overview}"
    );
    let log = page_text(&http, &gw, &team, "/requests").await;
    assert!(
        log.contains(&a_request) && !log.contains(&b_request),
        "{log}"
    );
    let hidden = http
        .get(format!("{}/requests/{b_request}", gw.admin_url))
        .header("cookie", &team)
        .send()
        .await
        .unwrap();
    assert_eq!(hidden.status(), 404, "another team's request is not found");
    let keys = page_text(&http, &gw, &team, "/keys").await;
    assert!(
        keys.contains(&a.key_id) && !keys.contains(&b.key_id),
        "{keys}"
    );
    let teams = page_text(&http, &gw, &team, "/teams").await;
    assert!(
        teams.contains(&a.team_id) && !teams.contains(&b.team_id),
        "{teams}"
    );
    // Organisation-wide changes are not offered to a team's admin.
    assert!(!teams.contains("action=\"/teams\""), "no create-team form");
    let providers = page_text(&http, &gw, &team, "/providers").await;
    assert!(
        !providers.contains("action=\"/providers\""),
        "no add-provider form"
    );
    let budgets = page_text(&http, &gw, &team, "/budgets").await;
    assert!(!budgets.contains("action=\"/budgets\""), "no budget form");
    let limits = page_text(&http, &gw, &team, "/rate-limits").await;
    assert!(
        !limits.contains("action=\"/rate-limits\""),
        "no rate-limit form"
    );
    // And a key for another team is refused even when posted by hand.
    let csrf = keys
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let other = http
        .post(format!("{}/keys", gw.admin_url))
        .header("cookie", &team)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "csrf={csrf}&team_id={}&name=sneaky&environment=dev&allowed_models=",
            b.team_id
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 303);
    let after = page_text(&http, &gw, &team, "/keys").await;
    assert!(after.contains("team_id: no such team"), "{after}");
    assert!(!after.contains("sneaky"));

    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn over_tls_the_session_cookie_is_secure_and_transport_security_is_asked_for() {
    use modelgate_shared::tls::issue;
    let mut gw = Gateway::start().await;
    gw.stop_data_plane().await;
    gw.stop_control_plane().await;
    let dir = crate::support::temp_dir("dash-tls");
    let pki = dir.join("pki");
    let now = modelgate_shared::clock::system().now();
    issue::init_ca(&pki, now).unwrap();
    let server = issue::issue_control_plane(
        &pki,
        &["localhost".to_owned()],
        &[std::net::Ipv4Addr::LOCALHOST.into()],
        now,
    )
    .unwrap();
    let files = modelgate_listener::TlsFiles {
        cert: server.cert,
        key: server.key,
    };
    let cp = crate::support::start_control_plane_custom(
        &gw.cp_db_url,
        &gw.master_key,
        gw.grpc_addr,
        |s| s.admin_http.tls = Some(files),
    )
    .await;
    gw.admin_url = format!("https://{}", cp.admin_addr);
    gw.cp = Some(cp);
    let ca = std::fs::read(pki.join("ca.pem")).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = http
        .get(format!("{}/login", gw.admin_url))
        .send()
        .await
        .unwrap();
    assert!(
        form.headers()["strict-transport-security"]
            .to_str()
            .unwrap()
            .starts_with("max-age="),
        "HSTS under TLS"
    );
    let login_cookie = form.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(login_cookie.contains("; Secure"), "{login_cookie}");
    let login_cookie = login_cookie.split(';').next().unwrap().to_owned();
    let csrf = login_cookie.trim_start_matches("mg_login=").to_owned();
    let resp = http
        .post(format!("{}/login", gw.admin_url))
        .header("cookie", &login_cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}&token={}", gw.admin_token))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let session = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("mg_session="))
        .unwrap();
    assert!(
        session.contains("; HttpOnly")
            && session.contains("; SameSite=Strict")
            && session.contains("; Secure"),
        "{session}"
    );
    assert!(!session.contains(&gw.admin_token));
    gw.shutdown().await;
}
