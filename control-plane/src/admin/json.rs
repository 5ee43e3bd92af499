//! A JSON body extractor whose errors name the offending field, in the admin error format.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use super::error::AdminError;

pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AdminError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if modelgate_listener::is_body_timeout(&e) {
                AdminError::RequestTimeout
            } else {
                AdminError::Invalid {
                    param: None,
                    message: format!("could not read the request body: {e}"),
                }
            }
        })?;
        parse(&bytes).map(ApiJson)
    }
}

/// Parses a JSON body, naming the offending field on error. Every admin request body is a JSON
/// object: serde would also accept an array for a struct (its fields in order), which no client
/// means to send.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AdminError> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(AdminError::Invalid {
            param: None,
            message: "the request body must be a JSON object".into(),
        });
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error_lite::deserialize::<T>(&mut de).map_err(|(param, err)| {
        AdminError::Invalid {
            param,
            message: err.to_string(),
        }
    })
}

/// Finds the field a serde error is about: `missing field `x``, `unknown field `x``, or the
/// field being read when a type error happened.
mod serde_path_to_error_lite {
    use serde::de::DeserializeOwned;

    pub fn deserialize<T: DeserializeOwned>(
        de: &mut serde_json::Deserializer<serde_json::de::SliceRead<'_>>,
    ) -> Result<T, (Option<String>, serde_json::Error)> {
        match T::deserialize(&mut *de).and_then(|v| de.end().map(|()| v)) {
            Ok(v) => Ok(v),
            Err(e) => Err((field_of(&e.to_string()), e)),
        }
    }

    fn field_of(message: &str) -> Option<String> {
        for marker in ["missing field `", "unknown field `", "duplicate field `"] {
            if let Some(rest) = message.split(marker).nth(1) {
                return rest.split('`').next().map(str::to_owned);
            }
        }
        None
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn field_names_are_found_in_serde_messages() {
            assert_eq!(
                super::field_of("missing field `name` at line 1 column 2").as_deref(),
                Some("name")
            );
            assert_eq!(
                super::field_of("unknown field `nmae`, expected `name`").as_deref(),
                Some("nmae")
            );
            assert_eq!(super::field_of("expected value at line 1"), None);
        }
    }
}

/// A query-string extractor with errors in the admin error format.
pub struct ApiQuery<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AdminError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| ApiQuery(v))
            .map_err(|e| AdminError::Invalid {
                param: None,
                message: e.body_text(),
            })
    }
}
