//! What the pipeline refused, told to the HTTP edge: a refusal rides on the response as an
//! extension, and the anonymous guard (`server::anonymous`) counts failed authentications and
//! logs refusals not tied to a key from it.

use modelgate_shared::usage::ErrorClass;

use super::Reason;
use crate::error::ProxyError;

/// What a handler refused, as a response extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// Refused before a key was identified: no usage event was written.
    pub anonymous: Option<Reason>,
    /// A failed authentication (counted by the throttle).
    pub auth_failed: bool,
}

impl Refusal {
    /// `identified`: the request's key is known (its usage event is written).
    pub fn of(e: &ProxyError, identified: bool) -> Refusal {
        if identified {
            // A revoked, disabled, expired or rotated-away key: billable, still a failure.
            return Refusal {
                anonymous: None,
                auth_failed: e.class == ErrorClass::Auth,
            };
        }
        let reason = match e.code {
            "missing_api_key" => Reason::MissingKey,
            "invalid_api_key" => Reason::InvalidKey,
            "unknown_url" => Reason::UnknownRoute,
            "no_config" => Reason::NoConfig,
            "metering_unavailable" => Reason::MeteringUnavailable,
            _ => Reason::BadRequest,
        };
        Refusal {
            anonymous: Some(reason),
            auth_failed: matches!(reason, Reason::MissingKey | Reason::InvalidKey),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_before_a_key_is_known_are_anonymous_with_their_reason() {
        let cases = [
            (ProxyError::missing_key(), Reason::MissingKey, true),
            (ProxyError::invalid_key(), Reason::InvalidKey, true),
            (
                ProxyError::not_found_route("/x"),
                Reason::UnknownRoute,
                false,
            ),
            (ProxyError::no_config(), Reason::NoConfig, false),
            (
                ProxyError::metering_unavailable(),
                Reason::MeteringUnavailable,
                false,
            ),
            (
                ProxyError::invalid_param("model", "bad"),
                Reason::BadRequest,
                false,
            ),
        ];
        for (e, reason, auth_failed) in cases {
            assert_eq!(
                Refusal::of(&e, false),
                Refusal {
                    anonymous: Some(reason),
                    auth_failed
                },
                "{}",
                e.code
            );
        }
    }

    #[test]
    fn a_known_but_refused_key_is_billable_and_still_a_failed_authentication() {
        for e in [
            ProxyError::revoked_key(),
            ProxyError::disabled_key(),
            ProxyError::expired_key(),
        ] {
            assert_eq!(
                Refusal::of(&e, true),
                Refusal {
                    anonymous: None,
                    auth_failed: true
                }
            );
        }
        let e = ProxyError::model_not_found("m");
        assert_eq!(
            Refusal::of(&e, true),
            Refusal {
                anonymous: None,
                auth_failed: false
            }
        );
    }
}
