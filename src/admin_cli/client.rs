//! The admin API client: bearer-authenticated calls under `/admin/v1`, URLs built segment by
//! segment (ids are escaped, never spliced into a path), cursor pagination, and the mapping of
//! every failure to a [`CliError`] a person can act on.

use std::time::Duration;

use reqwest::{Method, Url};
use serde_json::Value;

/// The page size `list` asks for (the API's maximum).
pub const PAGE_SIZE: u64 = 1000;

/// Why an admin command failed. `Display` is the text after `error: `.
#[derive(Debug)]
pub enum CliError {
    /// Input the API never saw (a missing token, a malformed URL, a value out of range).
    Usage(String),
    /// The admin API refused the call and said why in its error body.
    Api {
        message: String,
        param: Option<String>,
    },
    /// Nothing answered at the admin URL.
    Connect { url: String, detail: String },
    /// The request was sent but did not complete (timeout, reset connection).
    Transport { url: String, detail: String },
    /// The server answered, but not with what the admin API answers.
    Unexpected {
        url: String,
        status: u16,
        detail: String,
    },
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Usage(message) => f.write_str(message),
            CliError::Api {
                message,
                param: Some(param),
                ..
            } => write!(f, "{message} (param: {param})"),
            CliError::Api { message, .. } => f.write_str(message),
            CliError::Connect { url, detail } => write!(
                f,
                "could not connect to the admin API at {url}: {detail} \
                 (is the control plane running? set --admin-url or MODELGATE_ADMIN_URL)"
            ),
            CliError::Transport { url, detail } => {
                write!(f, "the request to the admin API at {url} failed: {detail}")
            }
            CliError::Unexpected {
                url,
                status,
                detail,
            } => write!(
                f,
                "unexpected answer from {url} (HTTP {status}); is this a ModelGate admin URL? {detail}"
            ),
        }
    }
}

impl CliError {
    /// The line printed to stderr.
    pub fn render(&self) -> String {
        format!("error: {self}")
    }

    /// Maps a non-success answer to the API's error when the body is the admin error shape
    /// `{"error":{"type","message","param"?}}`, and to [`CliError::Unexpected`] otherwise.
    pub fn from_response(url: &str, status: u16, body: &str) -> CliError {
        let error = serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|v| v.get("error").cloned());
        let message = error
            .as_ref()
            .and_then(|e| e.get("message"))
            .and_then(Value::as_str);
        match message {
            Some(message) => CliError::Api {
                message: message.to_owned(),
                param: error
                    .as_ref()
                    .and_then(|e| e.get("param"))
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            },
            None => CliError::Unexpected {
                url: url.to_owned(),
                status,
                detail: snippet(body),
            },
        }
    }
}

/// At most 200 characters of a body, on one line.
fn snippet(body: &str) -> String {
    let one_line: String = body
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    let one_line = one_line.trim();
    if one_line.is_empty() {
        "(empty body)".to_owned()
    } else {
        one_line.to_owned()
    }
}

/// The innermost cause of an error: for a refused connection, `Connection refused (os error
/// 111)` rather than reqwest's `error sending request for url (…)`.
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

pub struct AdminClient {
    http: reqwest::Client,
    base: Url,
    /// The admin URL as the user gave it, for messages.
    shown_url: String,
    token: String,
}

impl AdminClient {
    pub fn new(admin_url: &str, token: Option<&str>) -> Result<AdminClient, CliError> {
        let token = token
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                CliError::Usage(
                    "an admin token is required: pass --admin-token or set MODELGATE_ADMIN_TOKEN \
                 (`modelgate up` and a first `modelgate control-plane` start print one)"
                        .to_owned(),
                )
            })?;
        let invalid_url = || {
            CliError::Usage(format!(
                "--admin-url `{admin_url}` is not an http:// or https:// URL"
            ))
        };
        let mut base = Url::parse(admin_url.trim()).map_err(|_| invalid_url())?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(invalid_url());
        }
        base.set_query(None);
        base.set_fragment(None);
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("modelgate-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CliError::Transport {
                url: admin_url.to_owned(),
                detail: root_cause(&e),
            })?;
        Ok(AdminClient {
            http,
            base,
            shown_url: admin_url.trim().to_owned(),
            token: token.to_owned(),
        })
    }

    /// `<admin url>/admin/v1/<segments…>?<query>`, each segment escaped.
    fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(["admin", "v1"]).extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// One call; answers the response's JSON (`null` for an empty body).
    pub async fn call(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, CliError> {
        let url = self.url(segments, query);
        let mut request = self
            .http
            .request(method, url.clone())
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| self.transport(&e))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| self.transport(&e))?;
        if !status.is_success() {
            return Err(CliError::from_response(
                url.as_str(),
                status.as_u16(),
                &text,
            ));
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|_| CliError::Unexpected {
            url: url.to_string(),
            status: status.as_u16(),
            detail: format!("the body is not JSON: {}", snippet(&text)),
        })
    }

    /// A GET answered as text in the media type `accept` names (a CSV export).
    pub async fn get_text(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
        accept: &str,
    ) -> Result<String, CliError> {
        let url = self.url(segments, query);
        let response = self
            .http
            .get(url.clone())
            .bearer_auth(&self.token)
            .header(reqwest::header::ACCEPT, accept)
            .send()
            .await
            .map_err(|e| self.transport(&e))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| self.transport(&e))?;
        if !status.is_success() {
            return Err(CliError::from_response(
                url.as_str(),
                status.as_u16(),
                &text,
            ));
        }
        Ok(text)
    }

    pub async fn get(&self, segments: &[&str]) -> Result<Value, CliError> {
        self.call(Method::GET, segments, &[], None).await
    }

    pub async fn post(&self, segments: &[&str], body: Option<&Value>) -> Result<Value, CliError> {
        self.call(Method::POST, segments, &[], body).await
    }

    pub async fn patch(&self, segments: &[&str], body: &Value) -> Result<Value, CliError> {
        self.call(Method::PATCH, segments, &[], Some(body)).await
    }

    pub async fn delete(&self, segments: &[&str]) -> Result<Value, CliError> {
        self.call(Method::DELETE, segments, &[], None).await
    }

    /// Every row of a list endpoint (`{"data":[…],"next_cursor":…}`), following `next_cursor`
    /// (sent back as `after`) until it is exhausted or `limit` rows were read.
    pub async fn list(
        &self,
        segments: &[&str],
        filters: &[(&str, String)],
        limit: Option<u64>,
        page_size: u64,
    ) -> Result<Vec<Value>, CliError> {
        let mut rows: Vec<Value> = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let wanted = match limit {
                Some(limit) => limit.saturating_sub(rows.len() as u64).min(page_size),
                None => page_size,
            };
            if wanted == 0 {
                break;
            }
            let mut query = filters.to_vec();
            query.push(("limit", wanted.to_string()));
            if let Some(cursor) = &after {
                query.push(("after", cursor.clone()));
            }
            let page = self.call(Method::GET, segments, &query, None).await?;
            let not_a_list = |detail: &str| CliError::Unexpected {
                url: self.url(segments, &query).to_string(),
                status: 200,
                detail: detail.to_owned(),
            };
            let data = page
                .get("data")
                .and_then(Value::as_array)
                .ok_or_else(|| not_a_list("expected a list (`{\"data\": [...]}`)"))?;
            let empty = data.is_empty();
            rows.extend(data.iter().cloned());
            let next = match page.get("next_cursor") {
                Some(Value::String(c)) => Some(c.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            };
            match next {
                Some(cursor) if !empty => {
                    if after.as_deref() == Some(cursor.as_str()) {
                        return Err(not_a_list("the list repeated its cursor"));
                    }
                    after = Some(cursor);
                }
                _ => break,
            }
        }
        if let Some(limit) = limit {
            rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        }
        Ok(rows)
    }

    fn transport(&self, err: &reqwest::Error) -> CliError {
        let url = self.shown_url.clone();
        if err.is_connect() {
            CliError::Connect {
                url,
                detail: root_cause(err),
            }
        } else if err.is_timeout() {
            CliError::Transport {
                url,
                detail: "timed out".to_owned(),
            }
        } else {
            CliError::Transport {
                url,
                detail: root_cause(err),
            }
        }
    }
}

#[cfg(test)]
mod tests;
