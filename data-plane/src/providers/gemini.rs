//! Google Gemini: `POST {base_url}/v1beta/models/{model}:generateContent`, or
//! `:streamGenerateContent?alt=sse` for a stream, with the key in `x-goog-api-key`.
//!
//! The base URL and key header are parsed once per snapshot; the URI names the deployment's
//! model, so it is put together per call (one short string).

use http::header::CONTENT_TYPE;
use http::{HeaderName, HeaderValue, Request, Uri};
use modelgate_shared::snapshot::ProviderAccount;

use super::{execute, Call, HttpClient, UpstreamError, UpstreamResponse};

pub static API_KEY: HeaderName = HeaderName::from_static("x-goog-api-key");

/// Where and how to call one Gemini account.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `{base_url}/v1beta/models/`, checked to make a valid URI.
    pub models: String,
    pub api_key: Option<HeaderValue>,
}

impl Endpoint {
    /// `None` when the account's base URL is not a valid URI.
    pub fn for_provider(p: &ProviderAccount) -> Option<Endpoint> {
        let base = p.base_url.trim_end_matches('/');
        let base = base.strip_suffix("/v1beta").unwrap_or(base);
        let models = format!("{base}/v1beta/models/");
        models.parse::<Uri>().ok()?;
        let api_key = (!p.credential.is_empty())
            .then(|| HeaderValue::from_str(&p.credential).ok())
            .flatten()
            .map(|mut v| {
                v.set_sensitive(true);
                v
            });
        Some(Endpoint { models, api_key })
    }

    /// The URI of one call.
    pub fn uri(&self, model: &str, stream: bool) -> Result<Uri, UpstreamError> {
        let method = if stream {
            ":streamGenerateContent?alt=sse"
        } else {
            ":generateContent"
        };
        format!("{}{model}{method}", self.models)
            .parse()
            .map_err(|_| UpstreamError::Connect(format!("`{model}` makes an invalid Gemini URL")))
    }
}

pub async fn send(
    client: &HttpClient,
    endpoint: &Endpoint,
    call: Call<'_>,
) -> Result<UpstreamResponse, UpstreamError> {
    let mut req = Request::post(endpoint.uri(call.model, call.stream)?)
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(key) = &endpoint.api_key {
        req = req.header(API_KEY.clone(), key.clone());
    }
    execute(client, req, call).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use modelgate_shared::snapshot::ProviderKind;

    fn account(base_url: &str) -> ProviderAccount {
        ProviderAccount {
            id: "p".into(),
            name: "g".into(),
            kind: ProviderKind::Gemini,
            base_url: base_url.into(),
            credential: "AIza-test".into(),
        }
    }

    #[test]
    fn gemini_uri_names_the_model_and_method() {
        let e =
            Endpoint::for_provider(&account("https://generativelanguage.googleapis.com/")).unwrap();
        assert_eq!(
            e.uri("gemini-2.0-flash", false).unwrap().to_string(),
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent"
        );
        assert_eq!(
            e.uri("gemini-2.0-flash", true).unwrap().to_string(),
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
        );
        let e = Endpoint::for_provider(&account("http://127.0.0.1:9/v1beta")).unwrap();
        assert_eq!(
            e.uri("m", false).unwrap().to_string(),
            "http://127.0.0.1:9/v1beta/models/m:generateContent"
        );
        assert!(e.api_key.unwrap().is_sensitive());
    }
}
