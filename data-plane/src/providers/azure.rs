//! Azure OpenAI: OpenAI's wire format under Azure's paths and auth.
//!
//! | surface    | URL                                                                         |
//! |------------|-----------------------------------------------------------------------------|
//! | chat       | `{resource}/openai/deployments/{model}/chat/completions?api-version={v}`     |
//! | embeddings | `{resource}/openai/deployments/{model}/embeddings?api-version={v}`           |
//! | images     | `{resource}/openai/deployments/{model}/images/generations?api-version={v}`    |
//! | responses  | `{resource}/openai/responses?api-version={v}` (the deployment named in `model`) |
//!
//! `{resource}` is the provider account's base URL, `https://{name}.openai.azure.com`, and
//! `{model}` the deployment's model name (Azure's deployment name). The API version is the
//! base URL's `api-version` query parameter when it has one, else [`DEFAULT_API_VERSION`].
//! Auth is the `api-key` header. The per-resource parts are built once per snapshot; only the
//! deployment's path is formatted per call.

use http::header::CONTENT_TYPE;
use http::{HeaderName, HeaderValue, Request, Uri};
use modelgate_shared::snapshot::ProviderAccount;

use super::{execute, Call, HttpClient, UpstreamError, UpstreamResponse};
use crate::surfaces::Surface;

/// The API version used when the base URL names none (the current GA data-plane version).
pub const DEFAULT_API_VERSION: &str = "2024-10-21";

pub static API_KEY: HeaderName = HeaderName::from_static("api-key");

#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The resource root, without a trailing slash or query.
    pub resource: String,
    pub api_version: String,
    pub api_key: Option<HeaderValue>,
}

impl Endpoint {
    /// `None` when the base URL is not a valid URI.
    pub fn for_provider(p: &ProviderAccount) -> Option<Endpoint> {
        let _: Uri = p.base_url.parse().ok()?;
        let (root, query) = p
            .base_url
            .split_once('?')
            .unwrap_or((p.base_url.as_str(), ""));
        let api_version = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("api-version="))
            .filter(|v| !v.is_empty())
            .unwrap_or(DEFAULT_API_VERSION)
            .to_owned();
        let api_key = (!p.credential.is_empty())
            .then(|| HeaderValue::from_str(&p.credential).ok())
            .flatten()
            .map(|mut v| {
                v.set_sensitive(true);
                v
            });
        Some(Endpoint {
            resource: root.trim_end_matches('/').to_owned(),
            api_version,
            api_key,
        })
    }

    /// The URL a body in `format` for the Azure deployment `deployment` is posted to.
    pub fn uri(&self, format: Surface, deployment: &str) -> Option<Uri> {
        let (r, v) = (&self.resource, &self.api_version);
        let url = match format {
            Surface::OpenAiResponses => format!("{r}/openai/responses?api-version={v}"),
            other => {
                let path = match other {
                    Surface::OpenAiEmbeddings => "embeddings",
                    Surface::OpenAiImages => "images/generations",
                    _ => "chat/completions",
                };
                // Azure deployment names are letters, digits, `-`, `_` and `.`.
                if deployment.is_empty()
                    || !deployment
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
                {
                    return None;
                }
                format!("{r}/openai/deployments/{deployment}/{path}?api-version={v}")
            }
        };
        url.parse().ok()
    }
}

pub async fn send(
    client: &HttpClient,
    endpoint: &Endpoint,
    call: Call<'_>,
) -> Result<UpstreamResponse, UpstreamError> {
    let uri = endpoint.uri(call.format, call.model).ok_or_else(|| {
        UpstreamError::Connect(format!(
            "`{}` is not a valid Azure deployment name",
            call.model
        ))
    })?;
    let mut req =
        Request::post(uri).header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
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
            name: "az".into(),
            kind: ProviderKind::AzureOpenAi,
            base_url: base_url.into(),
            credential: "k".into(),
        }
    }

    #[test]
    fn azure_urls_name_the_deployment_and_the_api_version() {
        let e = Endpoint::for_provider(&account("https://res.openai.azure.com/")).unwrap();
        assert_eq!(
            e.uri(Surface::OpenAiChat, "gpt-4o").unwrap().to_string(),
            format!("https://res.openai.azure.com/openai/deployments/gpt-4o/chat/completions?api-version={DEFAULT_API_VERSION}")
        );
        let e = Endpoint::for_provider(&account(
            "https://res.openai.azure.com?api-version=2025-04-01-preview",
        ))
        .unwrap();
        assert_eq!(
            e.uri(Surface::OpenAiEmbeddings, "emb").unwrap().to_string(),
            "https://res.openai.azure.com/openai/deployments/emb/embeddings?api-version=2025-04-01-preview"
        );
        assert_eq!(
            e.uri(Surface::OpenAiResponses, "x").unwrap().to_string(),
            "https://res.openai.azure.com/openai/responses?api-version=2025-04-01-preview"
        );
        assert!(e.uri(Surface::OpenAiChat, "a/../b").is_none());
    }
}
