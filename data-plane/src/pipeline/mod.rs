//! The request pipeline: one request, top-down, one stage per module. [`serve`] reads as the
//! stages in this table's order. A stage module names only the stages below it — in dependency
//! order `context`, `account`, `parse`, `admit`, `cached`, `plan`, `attempt`, `pump`, `answer`, then the
//! short pipelines `models` and `videos` — and the modules below the pipeline; none names this
//! file, which only composes them (`tests/import_layers.rs` holds them to it).
//!
//! | stage     | module      | what it does                                                  |
//! |-----------|-------------|---------------------------------------------------------------|
//! | accept    | [`account`] | open the request's one usage event; load one `Arc<Runtime>`    |
//! | authenticate | [`admit`] | the key, found by its secret (the Gemini URL may carry it); its state and endpoint families |
//! | parse     | [`parse`]   | the body under the size limit, peeked through its surface      |
//! | admit     | [`admit`]   | the admission decision (`modelgate_shared::admission`): the key's policy for the model, the price-and-bound policy; then the rate-limit shares and the budget reservation |
//! | cached    | [`cached`]  | the response cache: a hit is answered here (no plan, no upstream call) |
//! | plan      | [`plan`]    | the ordered deployments the request may try                    |
//! | attempt   | [`attempt`] | the failure ladder: each attempt timed, classified, recorded   |
//! | answer or pump | [`answer`], [`pump`] | the answer in the client's format, whole or event by event |
//! | account   | [`account`] | the usage event written before the answer's last byte          |
//!
//! [`context`] holds what every stage shares ([`App`]). `models` (`GET /v1/models`) and
//! `videos` (video jobs) are shorter pipelines built from the same stages.
//!
//! Every request whose key is identified, accepted or rejected, leaves exactly one usage event
//! (see `usage::Recorder`); one refused before that is billable to no one and is counted and
//! logged by the HTTP edge instead (`server::anonymous`).

pub mod account;
pub mod admit;
pub mod answer;
pub mod attempt;
pub mod cached;
pub mod context;
pub mod models;
pub mod parse;
pub mod plan;
pub mod pump;
pub mod videos;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;

pub use context::{App, AppState};

use crate::cache::CACHE_HEADER;
use crate::surfaces::Surface;
use crate::time::now_ms;
use attempt::Failed;

/// Serves one request of `surface` (`uri` matters to Gemini only: it names the model there).
pub async fn serve(
    app: App,
    surface: Surface,
    headers: &HeaderMap,
    uri: &http::Uri,
    body: Body,
) -> Response {
    // Accept: from here on the request leaves one usage event, and sees one config.
    let request_id = modelgate_shared::new_id().to_string();
    let mut rec = account::open(&app, surface.endpoint(), &request_id, headers);
    let runtime = app.runtime.load_full();
    // Authenticate, parse what is needed, admit.
    let p = match admit::prepare(&app, &runtime, surface, headers, uri, body, &mut rec).await {
        Ok(p) => p,
        Err(e) => return answer::reject(surface, rec, e).await,
    };
    // Cached: a hit is answered here, without a plan or an upstream call.
    let cache = cached::plan(&p);
    if let Ok(plan) = &cache {
        if let Some(entry) = cached::lookup(&app, plan).await {
            let hit = cached::hit(rec, &p, plan, entry).await;
            let mut resp = answer::with_request_id(hit, &request_id);
            budget_header(&mut resp, p.budget_remaining);
            return resp;
        }
    }
    // Plan.
    let request = plan::Request {
        class: p.class,
        data_class: p.data_class,
    };
    let plan = plan::plan(
        &runtime,
        p.group,
        request,
        now_ms(),
        &mut rand::thread_rng(),
    );
    // Attempt, then answer or pump; each writes the usage event (account) on its way out.
    let tried = attempt::ladder(&app, &runtime, &mut rec, &p, &plan, &request_id).await;
    let mut resp = match tried {
        Ok(served) => answer::served(&app, rec, &p, served, &request_id, cache.as_ref().ok()).await,
        Err(Failed::RateLimited {
            from,
            response,
            attempts,
        }) => answer::rate_limited(rec, &p, from, response, attempts, &request_id).await,
        Err(Failed::Refused(e)) => answer::reject(p.surface, rec, e).await,
    };
    budget_header(&mut resp, p.budget_remaining);
    if let Some(v) = cached::outcome(&cache) {
        resp.headers_mut()
            .insert(CACHE_HEADER.clone(), HeaderValue::from_static(v));
    }
    resp
}

fn budget_header(resp: &mut Response, remaining: Option<i64>) {
    if let Some(r) = remaining {
        resp.headers_mut().insert(
            answer::BUDGET_REMAINING_HEADER.clone(),
            HeaderValue::from(r),
        );
    }
}
