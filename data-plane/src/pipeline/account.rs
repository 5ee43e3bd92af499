//! Account: the request's usage event, from the moment the request is accepted to the write.
//! The [`Recorder`] owns the event through the request's life (every stage tells it what it
//! learned); this stage opens it, names who is calling, and writes it.

use crate::config::Key;
use modelgate_shared::pricing::Price;

use super::context::App;
use crate::auth;
use crate::error::ProxyError;
use crate::translate::Usage;
use crate::usage::Recorder;

/// Opens the request's usage event (accept): from here on the request leaves exactly one. Its
/// trace begins here too, from the client's trace context in `headers` (`crate::trace`).
pub fn open(
    app: &App,
    endpoint: &'static str,
    request_id: &str,
    headers: &http::HeaderMap,
) -> Recorder {
    let mut rec = Recorder::start(app.spool.clone(), &app.origin, endpoint, request_id);
    rec.traced(app.origin.tracer.request(headers, endpoint));
    rec
}

/// The request's key, copied into its usage event — also when the secret is refused but names
/// a key (rotated away past its grace), and before the admission decision may refuse the key
/// (revoked, disabled, expired): such a refusal is billable to the key's team.
pub fn identify<'r>(
    rec: &mut Recorder,
    auth: Result<&'r Key, auth::Refused<'r>>,
    check: bool,
) -> Result<&'r Key, ProxyError> {
    let (key, result) = match auth {
        Ok(key) => (Some(key), Ok(key)),
        Err(refused) => (refused.key, Err(refused.error)),
    };
    if let Some(key) = key {
        rec.describe_key(key);
        if check {
            rec.check_traffic();
        }
    }
    result
}

/// Meters a request (the pump's name for [`Recorder::charge`]).
pub fn charge(rec: &mut Recorder, usage: Usage, estimated: bool, price: Option<Price>) {
    rec.charge(usage, estimated, price);
}

/// Writes the usage event and waits for the write; a failed write is logged (the answer goes
/// out regardless).
pub async fn write(rec: Recorder) {
    if let Err(err) = rec.finish().await {
        tracing::error!(error = %err, "usage event not written");
    }
}

/// Whether the request is marked as check traffic ([`CHECK_HEADER`] is `1`).
///
/// [`CHECK_HEADER`]: modelgate_shared::usage::CHECK_HEADER
pub fn is_check(headers: &http::HeaderMap) -> bool {
    headers
        .get(modelgate_shared::usage::CHECK_HEADER)
        .is_some_and(|v| v.as_bytes() == b"1")
}
