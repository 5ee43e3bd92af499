//! Cached: the response cache's stage, after admission (a hit still takes its rate-limit
//! share and its budget reservation, settled to the hit's cost) and before the plan. It decides
//! whether the request takes part (`crate::cache::Cache::plan`: the route's `policy.cache`, the
//! key's override, `x-modelgate-cache`), looks the answer up, and answers a hit — the stored
//! whole answer as is, or for a streaming client as events in its surface's format made from
//! it — with its usage event: the cached flag, the original answer's
//! tokens, the route's hit cost. Storing a miss's answer is `answer`'s and `pump`'s, once it
//! is complete and successful.

use axum::body::Body;
use axum::http::HeaderValue;
use axum::response::Response;
use bytes::Bytes;

use super::account;
use super::admit::Prepared;
use super::context::App;
use crate::cache::{synth, Cache, Entry, Kind, Plan, Skip, CACHE_HEADER};
use crate::usage::Recorder;

/// What the cache does for the request: a plan (it reads, writes, or both), or why it does not
/// take part. (A bad `x-modelgate-cache` was refused at admission.)
pub fn plan(p: &Prepared<'_>) -> Result<Plan, Skip> {
    Cache::plan(
        p.surface,
        &p.group.policy.cache,
        p.key,
        p.cache,
        &p.alias,
        &p.raw,
    )
}

/// The stored answer for the request, if it may read one. Every entry is a whole answer and
/// serves streaming and non-streaming clients alike.
pub async fn lookup(app: &App, plan: &Plan) -> Option<Entry> {
    if !plan.read {
        return None;
    }
    app.cache.lookup(plan).await
}

/// Answers a hit without an upstream call, after writing its usage event (the caller adds the
/// request id).
pub async fn hit(mut rec: Recorder, p: &Prepared<'_>, plan: &Plan, entry: Entry) -> Response {
    rec.mark_first_byte();
    rec.cache_hit(
        entry.usage,
        plan.policy.hit_cost(entry.cost_micros),
        entry.price_version,
        &entry.served_model,
    );
    rec.answered(200);
    let (body, content_type) = if p.stream {
        // Made for this client: the usage chunk is there if and only if it asked for it.
        let events = synth::stream(p.surface, &entry.body, p.client_wants_usage, p.json_array)
            .unwrap_or_default();
        let ct = if p.json_array {
            "application/json; charset=UTF-8"
        } else {
            "text/event-stream"
        };
        (events, ct)
    } else {
        (entry.body.clone(), "application/json")
    };
    account::write(rec).await;
    let mut resp = Response::new(Body::from(body));
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    if p.stream {
        h.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache"),
        );
    }
    h.insert(CACHE_HEADER.clone(), HeaderValue::from_static("hit"));
    resp
}

/// A whole successful answer in the client's format, as an entry to store.
pub fn whole_answer(rec: &Recorder, body: Bytes) -> Option<Entry> {
    entry_of(rec, Kind::Json, body)
}

/// The entry of an answer metered in `rec`.
pub fn entry_of(rec: &Recorder, kind: Kind, body: Bytes) -> Option<Entry> {
    let e = rec.event()?;
    Some(Entry {
        kind,
        usage: crate::translate::Usage {
            input: e.input_tokens,
            output: e.output_tokens,
            cached_input: e.cached_input_tokens,
            reasoning: e.reasoning_tokens,
            images: e.images,
            media_ms: 0,
            characters: 0,
        },
        cost_micros: e.cost_micros,
        price_version: e.price_version,
        served_model: e.served_model.clone(),
        body,
    })
}

/// The stream of a miss, gathered as the client receives it, to be stored if it ends well.
pub struct Capture {
    pub cache: std::sync::Arc<Cache>,
    pub plan: Plan,
    buf: bytes::BytesMut,
    overflow: bool,
}

impl Capture {
    pub fn new(cache: std::sync::Arc<Cache>, plan: Plan) -> Self {
        Capture {
            cache,
            plan,
            buf: bytes::BytesMut::new(),
            overflow: false,
        }
    }

    /// One client-bound event (before any JSON-array framing).
    pub fn push(&mut self, event: &[u8]) {
        if self.overflow {
            return;
        }
        if self.buf.len() + event.len() > self.cache.max_entry_bytes() {
            self.overflow = true;
            self.buf = bytes::BytesMut::new();
            return;
        }
        self.buf.extend_from_slice(event);
    }

    /// Stores the gathered events (as the whole answer they make, assembled in the background):
    /// the stream ended with its last event and no failure.
    pub fn store(self, rec: &Recorder) {
        if self.overflow {
            self.cache.too_large();
            return;
        }
        if let Some(entry) = entry_of(rec, Kind::Events, self.buf.freeze()) {
            self.cache.store(&self.plan, entry);
        }
    }
}

/// The `x-modelgate-cache` value of a request that did not hit.
pub fn outcome(plan: &Result<Plan, Skip>) -> Option<&'static str> {
    match plan {
        Ok(p) => Some(p.outcome),
        Err(s) => s.header(),
    }
}

/// Stores a whole successful answer for `plan`, if the request writes the cache.
pub fn store_whole(app: &App, plan: Option<&Plan>, rec: &Recorder, body: &Bytes) {
    let Some(plan) = plan.filter(|p| p.write) else {
        return;
    };
    if let Some(entry) = whole_answer(rec, body.clone()) {
        app.cache.store(plan, entry);
    }
}
