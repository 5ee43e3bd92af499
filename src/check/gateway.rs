//! The check's client of the proxy: one small, valid request per endpoint family in the
//! family's own wire format, each marked as check traffic (`x-modelgate-check: 1`) and
//! authenticated the way that surface's SDKs do it.

use std::time::Duration;

use modelgate_shared::usage::CHECK_HEADER;
use reqwest::{Method, Url};
use serde_json::{json, Value};

/// What one request got back.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// The `x-request-id` header: the key into the request log.
    pub request_id: Option<String>,
    /// The body as JSON, when it is JSON.
    pub body: Option<Value>,
}

impl Answer {
    /// `error.code` of an error body (OpenAI's shape; Anthropic's puts it in `error.type`).
    pub fn error_code(&self) -> Option<&str> {
        let e = self.body.as_ref()?.get("error")?;
        e.get("code")
            .and_then(Value::as_str)
            .or_else(|| e.get("type").and_then(Value::as_str))
    }
}

/// Why a request got no answer.
#[derive(Debug)]
pub struct Unanswered(String);

impl std::fmt::Display for Unanswered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub struct Gateway {
    http: reqwest::Client,
    /// The proxy's OpenAI-style base (`…/v1`).
    base: Url,
    /// The proxy's root (Gemini's `/v1beta/…` lives beside `/v1`).
    root: Url,
}

/// The families the check exercises, with the request that proves each.
pub const CHAT_FAMILIES: [&str; 4] = ["chat", "messages", "responses", "generate_content"];

impl Gateway {
    /// `base_url` is what `modelgate up` prints as `MODELGATE_BASE_URL` (`http://host:port/v1`).
    pub fn new(base_url: &str) -> Result<Gateway, String> {
        let invalid = || format!("--base-url `{base_url}` is not an http:// or https:// URL");
        let mut base = Url::parse(base_url.trim().trim_end_matches('/')).map_err(|_| invalid())?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(invalid());
        }
        base.set_query(None);
        base.set_fragment(None);
        let mut root = base.clone();
        if let Ok(mut path) = root.path_segments_mut() {
            path.pop_if_empty();
            if base.path().ends_with("/v1") {
                path.pop();
            }
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("modelgate-check/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Gateway { http, base, root })
    }

    fn url(base: &Url, segments: &[&str]) -> Url {
        let mut url = base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    async fn send(
        &self,
        method: Method,
        url: Url,
        auth: (&str, String),
        body: Option<Vec<u8>>,
        extra: &[(&str, &str)],
    ) -> Result<Answer, Unanswered> {
        let mut request = self
            .http
            .request(method, url.clone())
            .header(auth.0, auth.1)
            .header(CHECK_HEADER, "1");
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| Unanswered(format!("{url}: {}", root_cause(&e))))?;
        let status = response.status().as_u16();
        let request_id = response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = response
            .bytes()
            .await
            .map_err(|e| Unanswered(format!("{url}: reading the answer: {}", root_cause(&e))))?;
        Ok(Answer {
            status,
            request_id,
            body: serde_json::from_slice(&bytes).ok(),
        })
    }

    /// `GET /v1/models`.
    pub async fn models(&self, key: &str) -> Result<Answer, Unanswered> {
        let url = Gateway::url(&self.base, &["models"]);
        self.send(Method::GET, url, bearer(key), None, &[]).await
    }

    /// A raw body to `POST /v1/chat/completions` (the invalid request sends one that is not
    /// JSON).
    pub async fn chat_raw(&self, key: &str, body: &[u8]) -> Result<Answer, Unanswered> {
        let url = Gateway::url(&self.base, &["chat", "completions"]);
        self.send(Method::POST, url, bearer(key), Some(body.to_vec()), &[])
            .await
    }

    /// A chat completion of a few tokens.
    pub async fn chat(&self, key: &str, model: &str) -> Result<Answer, Unanswered> {
        let body = json!({
            "model": model,
            "messages": [{"role": "user", "content": "modelgate check: reply with one word"}],
            "max_tokens": 16,
        });
        self.chat_raw(key, body.to_string().as_bytes()).await
    }

    /// One request proving `family` with `model`.
    pub async fn family(&self, family: &str, key: &str, model: &str) -> Result<Answer, Unanswered> {
        let prompt = "modelgate check: reply with one word";
        let (url, auth, body, extra): (Url, _, Value, &[(&str, &str)]) = match family {
            "chat" => return self.chat(key, model).await,
            "messages" => (
                Gateway::url(&self.base, &["messages"]),
                ("x-api-key", key.to_owned()),
                json!({"model": model, "max_tokens": 16,
                       "messages": [{"role": "user", "content": prompt}]}),
                &[("anthropic-version", "2023-06-01")],
            ),
            "responses" => (
                Gateway::url(&self.base, &["responses"]),
                bearer(key),
                json!({"model": model, "input": prompt, "max_output_tokens": 16}),
                &[],
            ),
            "generate_content" => (
                Gateway::url(
                    &self.root,
                    &["v1beta", "models", &format!("{model}:generateContent")],
                ),
                ("x-goog-api-key", key.to_owned()),
                json!({"contents": [{"role": "user", "parts": [{"text": prompt}]}],
                       "generationConfig": {"maxOutputTokens": 16}}),
                &[],
            ),
            "embeddings" => (
                Gateway::url(&self.base, &["embeddings"]),
                bearer(key),
                json!({"model": model, "input": prompt}),
                &[],
            ),
            "images" => (
                Gateway::url(&self.base, &["images", "generations"]),
                bearer(key),
                json!({"model": model, "prompt": prompt, "n": 1, "size": "256x256"}),
                &[],
            ),
            "audio" => (
                Gateway::url(&self.base, &["audio", "speech"]),
                bearer(key),
                json!({"model": model, "input": "modelgate check", "voice": "alloy"}),
                &[],
            ),
            other => return Err(Unanswered(format!("no check request for family `{other}`"))),
        };
        self.send(
            Method::POST,
            url,
            auth,
            Some(body.to_string().into_bytes()),
            extra,
        )
        .await
    }
}

fn bearer(key: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {key}"))
}

fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_is_the_base_without_its_v1() {
        let g = Gateway::new("http://127.0.0.1:8080/v1/").unwrap();
        assert_eq!(g.base.as_str(), "http://127.0.0.1:8080/v1");
        assert_eq!(
            Gateway::url(&g.root, &["v1beta", "models", "m:generateContent"]).as_str(),
            "http://127.0.0.1:8080/v1beta/models/m:generateContent"
        );
        assert_eq!(
            Gateway::url(&g.base, &["chat", "completions"]).as_str(),
            "http://127.0.0.1:8080/v1/chat/completions"
        );
        assert!(Gateway::new("ftp://x").is_err());
    }
}
