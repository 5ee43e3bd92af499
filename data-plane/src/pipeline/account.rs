//! Account: the request's usage event, from the moment the request is accepted to the write.
//! The [`Recorder`] owns the event through the request's life (every stage tells it what it
//! learned); this stage opens it, names who is calling, and writes it.

use modelgate_shared::pricing::{cost_micros, Price};
use modelgate_shared::snapshot::ApiKey;

use super::context::App;
use crate::auth;
use crate::error::ProxyError;
use crate::translate::Usage;
use crate::usage::Recorder;

/// Opens the request's usage event (accept): from here on the request leaves exactly one.
pub fn open(app: &App, endpoint: &str, request_id: &str) -> Recorder {
    Recorder::start(app.spool.clone(), &app.origin, endpoint, request_id)
}

/// The request's key, copied into its usage event. A key that is known but refused (revoked,
/// disabled, expired, rotated away) is described too: its refusal is billable to its team.
pub fn identify<'r>(
    rec: &mut Recorder,
    auth: Result<&'r ApiKey, auth::Refused<'r>>,
) -> Result<&'r ApiKey, ProxyError> {
    match auth {
        Ok(key) => {
            describe_key(rec, key);
            Ok(key)
        }
        Err(refused) => {
            if let Some(key) = refused.key {
                describe_key(rec, key);
            }
            Err(refused.error)
        }
    }
}

/// Copies who is calling into the usage event.
fn describe_key(rec: &mut Recorder, key: &ApiKey) {
    let e = rec.event();
    e.key_id.clone_from(&key.id);
    e.team_id.clone_from(&key.team_id);
    e.user_id.clone_from(&key.owner_user_id);
    e.application.clone_from(&key.application);
    e.environment = key.environment.as_str().to_owned();
}

/// Meters a request: tokens by type, and their cost at the deployment's catalog price (cached
/// input and reasoning at their own rates where the catalog has them).
pub fn charge(rec: &mut Recorder, usage: Usage, estimated: bool, price: Option<Price>) {
    let e = rec.event();
    e.input_tokens = usage.input;
    e.output_tokens = usage.output;
    e.cached_input_tokens = usage.cached_input;
    e.reasoning_tokens = usage.reasoning;
    e.images = usage.images;
    e.media_ms = usage.media_ms;
    e.estimated = estimated;
    if let Some(p) = price {
        e.cost_micros = cost_micros(usage, &p);
    }
}

/// Writes the usage event and waits for the write; a failed write is logged (the answer goes
/// out regardless).
pub async fn write(rec: Recorder) {
    if let Err(err) = rec.finish().await {
        tracing::error!(error = %err, "usage event not written");
    }
}
