//! Account: the request's usage event, from the moment the request is accepted to the write.
//! The [`Recorder`] owns the event through the request's life (every stage tells it what it
//! learned); this stage opens it, names who is calling, and writes it.

use modelgate_shared::pricing::Price;
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
            rec.describe_key(key);
            Ok(key)
        }
        Err(refused) => {
            if let Some(key) = refused.key {
                rec.describe_key(key);
            }
            Err(refused.error)
        }
    }
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
