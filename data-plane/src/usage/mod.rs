//! Usage: one event per request, written to the local spool ([`spool`]) and shipped to the
//! control plane ([`shipper`]). [`Recorder`] guarantees the "one per request": it is created when
//! a request arrives and either finished explicitly or, if the request future is dropped (the
//! client went away), records a `client_cancel` event from its `Drop`. Sealing the event is also
//! where the request is counted in the node's metrics (`crate::metrics`), once, from the event.
//!
//! The recorder is the event's one owner through the request's life: each stage of the
//! pipeline tells it what it learned by a named method — who is calling
//! ([`Recorder::describe_key`]), the model asked for, the admission ([`Recorder::admitted`]),
//! each attempt, who served it ([`Recorder::served_by`]), the status, the charge, a failure —
//! and only this module writes the event's fields. [`metered`] remembers the video jobs this
//! node has charged.

pub mod metered;
pub mod shipper;
pub mod spool;

use std::sync::Arc;
use std::time::Instant;

use modelgate_shared::admission::Cost;
use modelgate_shared::key_view::KeyView;
use modelgate_shared::pricing::{cost_micros, Price, Tokens};
use modelgate_shared::routing::TrafficClass;
use modelgate_shared::usage::{Attempt, CostFlag, ErrorClass, UsageEvent, USAGE_SCHEMA_VERSION};

use self::spool::{Admission, Spool, SpoolError};
use crate::time::now_ms;

/// Where events come from: this node (and the metrics its requests are counted in).
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub node_id: String,
    /// The node's `region` label.
    pub region: String,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Where the node's request spans go (off by default).
    pub tracer: crate::trace::Tracer,
}

/// Who served a request: the deployment whose answer the client gets.
#[derive(Debug, Clone, Copy)]
pub struct ServedBy<'a> {
    pub provider_id: &'a str,
    /// The provider's model name (the deployment's, not the alias).
    pub model: &'a str,
    /// Empty when no deployment is known (a video job poll).
    pub deployment_id: &'a str,
    /// Served by a backup group, or after more than one attempt.
    pub fallback: bool,
    /// The catalog price the answer is charged at, when the deployment has one.
    pub price: Option<&'a Price>,
}

pub struct Recorder {
    /// Boxed: the recorder travels by value through every stage of a request (and so through
    /// their futures), and the event is most of its size.
    event: Option<Box<UsageEvent>>,
    /// The endpoint family the request came in on, as a metrics label.
    surface: &'static str,
    metrics: Arc<crate::metrics::Metrics>,
    started: Instant,
    spool: Spool,
    admission: Admission,
    /// Budget reserved for this request; settled to the event's cost when it is written.
    reservation: Option<crate::quota::Reservation>,
    /// Rate-limit shares taken by this request: tokens settled to the event's count when it is
    /// written, slots given back then.
    limits: Option<crate::limits::Admission>,
    /// The request's trace: its span (export on), or the client's trace context to pass on.
    trace: crate::trace::RequestTrace,
    /// Whose request this is, for the metrics (check traffic is counted apart).
    caller: crate::metrics::Caller,
}

/// Usage events already written, kept per thread with their strings' room, so that a later
/// request's event fills them without allocating (a dozen allocations a request).
const SPARE_EVENTS: usize = 64;

thread_local! {
    // The boxes are what is kept: the Recorder holds its event boxed, so a spare one costs no
    // allocation either.
    #[allow(clippy::vec_box)]
    static SPARE: std::cell::RefCell<Vec<Box<UsageEvent>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// An empty event: a spare one of this thread's, or a new one.
fn spare_event() -> Box<UsageEvent> {
    SPARE.with(|s| s.borrow_mut().pop()).unwrap_or_default()
}

/// Keeps a written event's room for a later request of this thread.
fn recycle(mut event: Box<UsageEvent>) {
    *event = emptied(std::mem::take(&mut *event));
    SPARE.with(|s| {
        let mut spare = s.borrow_mut();
        if spare.len() < SPARE_EVENTS {
            spare.push(event);
        }
    });
}

/// `old` with every field at its default, its strings and attempt list empty but keeping their
/// room. Built on `Default`: a field not named here is reset all the same, it only loses its
/// room.
fn emptied(old: UsageEvent) -> UsageEvent {
    fn room(mut s: String) -> String {
        s.clear();
        s
    }
    let mut attempts = old.attempts;
    attempts.clear();
    UsageEvent {
        id: room(old.id),
        request_id: room(old.request_id),
        node_id: room(old.node_id),
        region: room(old.region),
        key_id: room(old.key_id),
        team_id: room(old.team_id),
        user_id: room(old.user_id),
        application: room(old.application),
        endpoint: room(old.endpoint),
        requested_model: room(old.requested_model),
        provider_id: room(old.provider_id),
        served_model: room(old.served_model),
        deployment_id: room(old.deployment_id),
        attempts,
        error_message: room(old.error_message),
        trace_id: room(old.trace_id),
        ..UsageEvent::default()
    }
}

impl Recorder {
    /// Starts a request's event. When the spool is at its disk bound the request is either
    /// refused ([`Recorder::refused`]) or served unmetered, per the spool's policy; in both cases
    /// no event is written (the spool counts them).
    pub fn start(spool: Spool, origin: &Origin, endpoint: &'static str, request_id: &str) -> Self {
        let admission = spool.admit();
        origin.metrics.started();
        let mut event = spare_event();
        event.schema_version = USAGE_SCHEMA_VERSION;
        let mut id = uuid::Uuid::encode_buffer();
        let id = modelgate_shared::new_id()
            .hyphenated()
            .encode_lower(&mut id);
        event.id.push_str(id);
        event.request_id.push_str(request_id);
        event.started_at_ms = now_ms();
        event.node_id.push_str(&origin.node_id);
        event.region.push_str(&origin.region);
        event.endpoint.push_str(endpoint);
        event.traffic_class = Some(TrafficClass::Interactive);
        Recorder {
            event: Some(event),
            surface: endpoint,
            metrics: origin.metrics.clone(),
            started: Instant::now(),
            spool,
            admission,
            reservation: None,
            limits: None,
            trace: crate::trace::RequestTrace::Off,
            caller: crate::metrics::Caller::Client,
        }
    }

    /// The request's trace, begun from its headers (`crate::trace::Tracer::request`).
    pub fn traced(&mut self, trace: crate::trace::RequestTrace) {
        if let Some(id) = trace.trace_id() {
            self.event_mut().trace_id = id;
        }
        self.trace = trace;
    }

    /// The request's trace id, when its spans are exported.
    pub fn trace_id(&self) -> Option<String> {
        self.trace.trace_id()
    }

    /// Begins the trace of one upstream attempt: the headers the upstream gets and, with export
    /// on, the attempt's span (ended by [`Recorder::attempt_traced`]).
    pub fn start_attempt(
        &self,
        kind: modelgate_shared::snapshot::ProviderKind,
        model: &str,
        deployment_id: &str,
    ) -> crate::trace::AttemptTrace {
        self.trace.attempt(kind, model, deployment_id)
    }

    /// Holds `r` until the event is written, then settles it to the event's cost. If the
    /// request is dropped before a cost is known, the whole reservation stays charged.
    pub fn hold(&mut self, r: crate::quota::Reservation) {
        if !r.is_empty() {
            self.reservation = Some(r);
        }
    }

    /// Holds the request's rate-limit shares until the event is written.
    pub fn hold_limits(&mut self, mut a: crate::limits::Admission) {
        if !a.is_empty() {
            a.keep();
            self.limits = Some(a);
        }
    }

    /// The spool is full and its policy is to refuse new requests.
    pub fn refused(&self) -> bool {
        self.admission == Admission::Refused
    }

    fn metered(&self) -> bool {
        self.admission == Admission::Metered
    }

    /// The event being filled in: written here only.
    fn event_mut(&mut self) -> &mut UsageEvent {
        // `event` is only taken by `finish`, which consumes `self`.
        self.event.get_or_insert_with(Box::default)
    }

    /// The event as filled in so far (read only).
    pub fn event(&self) -> Option<&UsageEvent> {
        self.event.as_deref()
    }

    /// The request's id, as its answer's `x-request-id` carries it.
    pub fn request_id(&self) -> &str {
        self.event.as_ref().map_or("", |e| e.request_id.as_str())
    }

    /// The request's key is known: its event is billable and will be written.
    pub fn identified(&self) -> bool {
        self.event.as_ref().is_some_and(|e| !e.key_id.is_empty())
    }

    /// The team of the request's key (empty before it is known).
    pub fn team_id(&self) -> &str {
        self.event.as_ref().map_or("", |e| e.team_id.as_str())
    }

    /// Upstream attempts recorded so far.
    pub fn attempts(&self) -> usize {
        self.event.as_ref().map_or(0, |e| e.attempts.len())
    }

    /// Who is calling: the key, its team, owner, application and environment. A key known but
    /// refused (revoked, disabled, expired, rotated away) is described too: its refusal is
    /// billable to its team.
    pub fn describe_key(&mut self, key: &crate::config::Key) {
        let e = self.event_mut();
        key.id().clone_into(&mut e.key_id);
        key.team_id().clone_into(&mut e.team_id);
        key.owner_user_id().clone_into(&mut e.user_id);
        key.application().clone_into(&mut e.application);
        e.environment = Some(key.environment());
    }

    /// The request is check traffic (`x-modelgate-check: 1`): its event carries
    /// [`CHECK_APPLICATION`](modelgate_shared::usage::CHECK_APPLICATION) as its application,
    /// and the metrics count it apart ([`crate::metrics::Caller::Check`]).
    pub fn check_traffic(&mut self) {
        modelgate_shared::usage::CHECK_APPLICATION.clone_into(&mut self.event_mut().application);
        self.caller = crate::metrics::Caller::Check;
    }

    /// The model alias the request names.
    pub fn requested_model(&mut self, alias: &str) {
        alias.clone_into(&mut self.event_mut().requested_model);
    }

    /// The event's start as the budget check read it (the injected clock), so the spend lands
    /// in the period the reservation was taken from.
    pub fn started_at(&mut self, ms: i64) {
        self.event_mut().started_at_ms = ms;
    }

    /// The request passed admission: the traffic class it runs in, whether it streams, and how
    /// its cost is accounted — a row served unreserved under the group's `allow_and_flag`
    /// policy is flagged ([`CostFlag::PriceMissing`], [`CostFlag::CostUnbounded`]).
    pub fn admitted(&mut self, class: TrafficClass, streamed: bool, cost: Cost) {
        let e = self.event_mut();
        e.streamed = streamed;
        e.traffic_class = Some(class);
        e.cost_flag = match cost {
            Cost::PriceMissing => CostFlag::PriceMissing,
            Cost::Unbounded => CostFlag::CostUnbounded,
            Cost::Unreserved | Cost::Reserve(_) => return,
        };
    }

    /// One upstream attempt, as the failure ladder (or a video job call) made it.
    pub fn attempt(&mut self, attempt: Attempt) {
        self.event_mut().attempts.push(attempt);
    }

    /// One upstream attempt begun by [`Recorder::start_attempt`]: its span ends with it.
    pub fn attempt_traced(&mut self, attempt: Attempt, trace: crate::trace::AttemptTrace) {
        self.trace.attempt_ended(trace, &attempt);
        self.attempt(attempt);
    }

    /// The deployment whose answer the client gets.
    pub fn served_by(&mut self, s: ServedBy<'_>) {
        let e = self.event_mut();
        s.provider_id.clone_into(&mut e.provider_id);
        s.model.clone_into(&mut e.served_model);
        s.deployment_id.clone_into(&mut e.deployment_id);
        e.fallback_used = s.fallback;
        if let Some(p) = s.price {
            e.price_version = p.version;
        }
    }

    /// The status the client is answered with.
    pub fn answered(&mut self, status: u16) {
        self.event_mut().status = status;
    }

    /// Meters the request: tokens by type, and their cost at the deployment's catalog price
    /// (cached input and reasoning at their own rates where the catalog has them), recording
    /// the price's version. `estimated`: counted by the gateway, not reported by the provider.
    pub fn charge(&mut self, usage: Tokens, estimated: bool, price: Option<Price>) {
        let e = self.event_mut();
        e.input_tokens = usage.input;
        e.output_tokens = usage.output;
        e.cached_input_tokens = usage.cached_input;
        e.reasoning_tokens = usage.reasoning;
        e.images = usage.images;
        e.media_ms = usage.media_ms;
        e.characters = usage.characters;
        e.estimated = estimated;
        if let Some(p) = price {
            e.cost_micros = cost_micros(usage, &p);
            e.price_version = p.version;
        }
    }

    /// The request was answered from the response cache: no upstream call, no provider. It is
    /// metered with the original answer's tokens (and price version) at `cost` — the route's
    /// hit cost, never upstream spend.
    pub fn cache_hit(&mut self, usage: Tokens, cost: i64, price_version: u64, served_model: &str) {
        let e = self.event_mut();
        e.cache_hit = true;
        e.input_tokens = usage.input;
        e.output_tokens = usage.output;
        e.cached_input_tokens = usage.cached_input;
        e.reasoning_tokens = usage.reasoning;
        e.images = usage.images;
        e.cost_micros = cost;
        e.price_version = price_version;
        served_model.clone_into(&mut e.served_model);
    }

    /// The event's id, when a charge must be one event fleet-wide (a video job's, derived from
    /// its job id: ingest keeps one event per id).
    pub fn charge_once_as(&mut self, id: String) {
        self.event_mut().id = id;
    }

    pub fn elapsed_us(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    pub fn mark_first_byte(&mut self) {
        let us = self.elapsed_us();
        let e = self.event_mut();
        if e.ttfb_us == 0 {
            e.ttfb_us = us.max(1);
            e.first_byte_at_ms = now_ms();
        }
    }

    /// The request failed: the status it is answered with, the class and the reason.
    pub fn fail(&mut self, status: u16, class: ErrorClass, message: &str) {
        let e = self.event_mut();
        e.status = status;
        e.error_class = Some(class);
        e.error_message = message.chars().take(500).collect();
    }

    fn seal(&mut self) -> Option<Box<UsageEvent>> {
        let latency = self.elapsed_us();
        let mut e = self.event.take()?;
        if let Some(r) = self.reservation.take() {
            // A request that ended without a metered cost (cancelled before any usage was
            // read) keeps its reservation: the upstream may still bill it.
            if e.error_class == Some(ErrorClass::ClientCancel) && e.cost_micros == 0 {
                drop(r);
            } else {
                r.settle(e.cost_micros);
            }
        }
        if let Some(mut a) = self.limits.take() {
            // As with the reservation: a request cancelled before any usage was read keeps its
            // token estimate; any other is settled to what it used (nothing, if it was refused
            // before going upstream).
            let tokens = e.input_tokens + e.output_tokens;
            let cancelled = e.error_class == Some(ErrorClass::ClientCancel);
            if !(cancelled && tokens == 0) {
                a.settle_tokens(tokens);
            }
        }
        // Never before the start, even if the wall clock stepped back (or the start was read
        // from the injected clock): the control plane quarantines an event that ends first.
        e.ended_at_ms = now_ms().max(e.started_at_ms);
        e.latency_us = latency;
        std::mem::take(&mut self.trace).end(&e);
        self.metrics.record(self.surface, &e, self.caller);
        Some(e)
    }

    /// Drops the event unwritten: the request is billable to no one (refused before its key
    /// was authenticated, R-5.1). It is still counted in the metrics.
    pub fn discard(mut self) {
        self.seal();
    }

    /// Writes the event to the spool and waits for the write.
    pub async fn finish(mut self) -> Result<(), SpoolError> {
        let Some(e) = self.seal() else {
            return Ok(());
        };
        let written = if self.metered() {
            self.spool.append(&e).await
        } else {
            Ok(())
        };
        recycle(e);
        written
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if self.event.is_none() {
            return;
        }
        let status = self.event_mut().status;
        if status == 0 || status < 400 {
            self.fail(
                499,
                ErrorClass::ClientCancel,
                "the client closed the connection",
            );
        }
        if let Some(e) = self.seal() {
            if self.metered() {
                self.spool.append_detached(&e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use modelgate_shared::snapshot::Environment;

    use super::spool::SpoolOptions;
    use super::*;

    /// Every field set (no `..Default::default()`: a field added to the event must be added
    /// here, and so be checked to be reset).
    fn every_field_set() -> UsageEvent {
        use modelgate_shared::usage::Attempt;
        UsageEvent {
            schema_version: USAGE_SCHEMA_VERSION,
            id: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".into(),
            request_id: "req-0".into(),
            started_at_ms: 1,
            first_byte_at_ms: 2,
            ended_at_ms: 3,
            node_id: "node".into(),
            region: "eu".into(),
            key_id: "k".into(),
            team_id: "t".into(),
            user_id: "u".into(),
            application: "app".into(),
            environment: Some(Environment::Staging),
            endpoint: "chat.completions".into(),
            requested_model: "smart".into(),
            provider_id: "p".into(),
            served_model: "gpt".into(),
            deployment_id: "p/gpt".into(),
            attempts: vec![Attempt {
                deployment_id: "p/gpt".into(),
                provider_id: "p".into(),
                model: "gpt".into(),
                status: 503,
                error_class: Some(ErrorClass::ProviderError),
                latency_us: 4,
                started_at_ms: 5,
                error_message: "503".into(),
            }],
            status: 429,
            error_class: Some(ErrorClass::RateLimited),
            error_message: "slow down".into(),
            latency_us: 6,
            ttfb_us: 7,
            input_tokens: 8,
            output_tokens: 9,
            cached_input_tokens: 10,
            reasoning_tokens: 11,
            images: 12,
            media_ms: 13,
            characters: 14,
            cost_micros: 15,
            price_version: 16,
            streamed: true,
            estimated: true,
            fallback_used: true,
            traffic_class: Some(TrafficClass::Batch),
            cost_flag: CostFlag::PriceMissing,
            cache_hit: true,
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
        }
    }

    #[test]
    fn a_recycled_event_carries_nothing_of_the_request_before_it() {
        let emptied = emptied(every_field_set());
        assert_eq!(emptied, UsageEvent::default());
        assert!(emptied.key_id.capacity() > 0, "the strings keep their room");
        assert!(emptied.attempts.capacity() > 0);

        // The next request of this thread starts from it, with only its own fields set.
        SPARE.with(|s| s.borrow_mut().clear());
        recycle(Box::new(every_field_set()));
        let rec = recorder();
        let e = rec.event().unwrap();
        assert!(
            SPARE.with(|s| s.borrow().is_empty()),
            "the spare event was taken"
        );
        assert_eq!(
            UsageEvent {
                id: String::new(),
                started_at_ms: 0,
                ..e.clone()
            },
            UsageEvent {
                schema_version: USAGE_SCHEMA_VERSION,
                request_id: "req-1".into(),
                endpoint: "chat.completions".into(),
                traffic_class: Some(TrafficClass::Interactive),
                ..UsageEvent::default()
            }
        );
        assert!(uuid::Uuid::parse_str(&e.id).is_ok_and(|id| id.get_version_num() == 7));
        assert!(e.started_at_ms > 0);
    }

    fn recorder() -> Recorder {
        let dir = std::env::temp_dir().join(format!("mg-recorder-{}", uuid::Uuid::now_v7()));
        let spool = Spool::open(&dir, SpoolOptions::default()).unwrap();
        Recorder::start(spool, &Origin::default(), "chat.completions", "req-1")
    }

    #[tokio::test]
    async fn each_stage_fills_its_part_of_the_event_through_a_named_method() {
        let mut rec = recorder();
        assert!(!rec.identified());
        let key = modelgate_shared::snapshot::ApiKey {
            id: "k1".into(),
            name: String::new(),
            key_hash: [0; 32],
            prefix: String::new(),
            team_id: "t1".into(),
            environment: Environment::Staging,
            allowed_models: vec![],
            revoked: false,
            expires_at: None,
            disabled: false,
            previous: None,
            owner_user_id: "u1".into(),
            application: "app".into(),
            data_class: String::new(),
            endpoint_families: vec![],
            traffic_class: TrafficClass::Interactive,
            allowed_traffic_classes: vec![],
            cache: Default::default(),
        };
        let key = crate::config::Key::new(key, &mut Default::default());
        rec.describe_key(&key);
        rec.requested_model("smart");
        rec.admitted(TrafficClass::Batch, true, Cost::Unbounded);
        let price = Price {
            input_micros_per_mtok: 1_000_000,
            output_micros_per_mtok: 2_000_000,
            version: 7,
            ..Price::default()
        };
        rec.served_by(ServedBy {
            provider_id: "p1",
            model: "gpt-x",
            deployment_id: "p1/gpt-x",
            fallback: true,
            price: Some(&price),
        });
        rec.answered(200);
        let usage = Tokens {
            input: 3,
            output: 4,
            ..Tokens::default()
        };
        rec.charge(usage, true, Some(price));
        assert!(rec.identified());
        assert_eq!(rec.request_id(), "req-1");
        assert_eq!(rec.team_id(), "t1");
        let e = rec.event().unwrap();
        assert_eq!((e.key_id.as_str(), e.user_id.as_str()), ("k1", "u1"));
        assert_eq!(
            (e.application.as_str(), e.environment.map(|v| v.as_str())),
            ("app", Some("staging"))
        );
        assert_eq!(e.requested_model, "smart");
        assert_eq!(
            (e.traffic_class, e.streamed),
            (Some(TrafficClass::Batch), true)
        );
        assert_eq!(e.cost_flag, CostFlag::CostUnbounded);
        assert_eq!(
            (
                e.provider_id.as_str(),
                e.served_model.as_str(),
                e.deployment_id.as_str()
            ),
            ("p1", "gpt-x", "p1/gpt-x")
        );
        assert!(e.fallback_used);
        assert_eq!((e.status, e.price_version), (200, 7));
        assert_eq!((e.input_tokens, e.output_tokens, e.estimated), (3, 4, true));
        assert_eq!(e.cost_micros, 3 + 8);
        rec.finish().await.unwrap();
    }

    #[tokio::test]
    async fn a_failure_names_its_status_class_and_a_bounded_message() {
        let mut rec = recorder();
        rec.fail(502, ErrorClass::ProviderError, &"x".repeat(600));
        let e = rec.event().unwrap();
        assert_eq!(e.status, 502);
        assert_eq!(e.error_class, Some(ErrorClass::ProviderError));
        assert_eq!(e.error_message.len(), 500);
        rec.discard();
    }
}
