//! The response cache (exact match): a request on a route whose `policy.cache` is on, asked
//! again — same surface, alias and partition, same body in canonical form ([`key`]) — is
//! answered from a stored answer without an upstream call.
//!
//! Two layers: an in-process one bounded by bytes ([`local`]) in front of Redis ([`remote`]),
//! which the fleet shares. Both hold the same encoded [`entry`] (LZ4-compressed body, the
//! original answer's tokens and cost; never a header, key or credential). The pipeline asks
//! here after admission (rate limits and budgets apply to hits) and before planning:
//! [`Cache::plan`] decides whether a request reads and writes the cache, [`Cache::lookup`]
//! reads it (local, then Redis within a short timeout; a Redis hit fills the local layer for
//! the rest of its TTL, at most `local_ttl`), [`Cache::store`] writes a successful answer in
//! the background. A Redis that is away, slow or failing costs at most the timeout, then a
//! second of skipping: the request is served uncached, counted in
//! `modelgate_cache_store_errors_total`, and logged at most every ten seconds ([`remote`]).
//!
//! | request                                              | reads | writes | `x-modelgate-cache` |
//! |------------------------------------------------------|-------|--------|---------------------|
//! | route cache off, or surface not cached               | no    | no     | (absent)            |
//! | key `cache: off`, or `x-modelgate-cache: bypass`     | no    | no     | `bypass`            |
//! | not deterministic and the route does not allow it    | no    | no     | `uncacheable`       |
//! | key `cache: refresh`, or `x-modelgate-cache: refresh`| no    | yes    | `refresh`           |
//! | otherwise                                            | yes   | on a miss | `hit` / `miss`   |
//!
//! Only a complete, successful (2xx) answer is stored, and only if its body is within the
//! entry bound; a stream that ended well is stored as the whole answer assembled from the
//! events the client received ([`assemble`]), so every entry serves both a non-streaming
//! client (as is) and a streaming one (its surface's events made from it, [`synth`], with the
//! usage chunk if and only if that client asks for it).
//!
//! With Redis, the in-process layer keeps an entry for at most `local_ttl` (default 10 s): a
//! `refresh` on one node replaces the answer in Redis at once, and another node that had the
//! older answer in memory serves it for at most that long. Without Redis the local layer is
//! the only one and keeps an entry for the route's TTL.

pub mod assemble;
pub mod entry;
pub mod key;
pub mod local;
pub mod remote;
pub mod synth;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderName, HeaderValue};
use modelgate_shared::cache::{CachePolicy, KeyCacheMode};
use thiserror::Error;

use crate::metrics::Metrics;
use crate::surfaces::Surface;
pub use entry::{Entry, Kind};
pub use key::Key;
use local::Local;
use remote::{Remote, StoreError};

/// The request header that skips (`bypass`) or refreshes (`refresh`) the cache, and the
/// response header that says what the cache did.
pub static CACHE_HEADER: HeaderName = HeaderName::from_static("x-modelgate-cache");

/// The node's cache settings (flags of `modelgate data-plane`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// `redis://host:port[/db]`; `None`: the in-process layer only.
    pub redis_url: Option<String>,
    /// Prefix of every key in Redis (several fleets, or tests, can share one Redis).
    pub redis_prefix: String,
    /// The longest a request waits on Redis.
    pub redis_timeout: Duration,
    /// The in-process layer's bound (encoded bytes).
    pub memory_bytes: usize,
    /// The largest answer stored (uncompressed body bytes).
    pub max_entry_bytes: usize,
    /// With Redis, the longest the in-process layer keeps an entry (the bound on serving an
    /// answer another node refreshed).
    pub local_ttl: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            redis_url: None,
            redis_prefix: "modelgate:cache:v1:".into(),
            redis_timeout: Duration::from_millis(50),
            memory_bytes: 64 << 20,
            max_entry_bytes: 1 << 20,
            local_ttl: Duration::from_secs(10),
        }
    }
}

/// What the cache does for one request.
#[derive(Debug, Clone)]
pub struct Plan {
    pub surface: Surface,
    pub key: Key,
    pub read: bool,
    pub write: bool,
    pub policy: CachePolicy,
    /// The response header's value, when this request neither hits nor misses.
    pub outcome: &'static str,
}

/// The request-side decision when the cache does not take part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// The route does not cache, or the surface is not cached.
    Off,
    Bypass,
    Uncacheable,
}

impl Skip {
    /// The response header's value (none when the route does not cache).
    pub fn header(self) -> Option<&'static str> {
        match self {
            Skip::Off => None,
            Skip::Bypass => Some("bypass"),
            Skip::Uncacheable => Some("uncacheable"),
        }
    }
}

/// `x-modelgate-cache` named something other than `bypass` or `refresh`.
#[derive(Debug, Error)]
#[error("must be bypass or refresh")]
pub struct InvalidHeader;

/// What the request's `x-modelgate-cache` header asks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Directive {
    /// No header: read, and write on a miss.
    #[default]
    Use,
    Bypass,
    Refresh,
}

impl Directive {
    /// The header's directive (case and surrounding blanks do not matter).
    pub fn parse(header: Option<&HeaderValue>) -> Result<Directive, InvalidHeader> {
        match header.map(|h| h.as_bytes().trim_ascii()) {
            None => Ok(Directive::Use),
            Some(v) if v.eq_ignore_ascii_case(b"bypass") => Ok(Directive::Bypass),
            Some(v) if v.eq_ignore_ascii_case(b"refresh") => Ok(Directive::Refresh),
            Some(_) => Err(InvalidHeader),
        }
    }

    /// The request's directive on a route with `policy`: the header is read (and refused if
    /// invalid) only where the cache takes part, before admission takes any limit or budget.
    pub fn of_request(
        surface: Surface,
        policy: &CachePolicy,
        header: Option<&HeaderValue>,
    ) -> Result<Directive, InvalidHeader> {
        if !policy.enabled || !cached_surface(surface) {
            return Ok(Directive::Use);
        }
        Directive::parse(header)
    }
}

/// The surfaces whose answers are cached.
pub fn cached_surface(s: Surface) -> bool {
    matches!(
        s,
        Surface::OpenAiChat
            | Surface::AnthropicMessages
            | Surface::Gemini
            | Surface::OpenAiResponses
            | Surface::OpenAiEmbeddings
    )
}

pub struct Cache {
    local: Local,
    remote: Option<Remote>,
    max_entry_bytes: usize,
    local_ttl: Duration,
    metrics: Arc<Metrics>,
}

impl Cache {
    pub fn new(settings: &Settings, metrics: Arc<Metrics>) -> Result<Cache, StoreError> {
        let remote = match &settings.redis_url {
            Some(url) => Some(Remote::new(
                url,
                settings.redis_prefix.clone(),
                settings.redis_timeout,
            )?),
            None => None,
        };
        Ok(Cache {
            local: Local::new(settings.memory_bytes),
            remote,
            max_entry_bytes: settings.max_entry_bytes,
            local_ttl: settings.local_ttl,
            metrics,
        })
    }

    /// Whether and how `body` on `surface` for `alias` takes part in the cache, under the
    /// route's `policy`, the key's override and the request's `x-modelgate-cache` directive.
    pub fn plan(
        surface: Surface,
        policy: &CachePolicy,
        api_key: &crate::config::Key,
        directive: Directive,
        alias: &str,
        body: &[u8],
    ) -> Result<Plan, Skip> {
        // A route that does not cache costs this one branch.
        if !policy.enabled || !cached_surface(surface) {
            return Err(Skip::Off);
        }
        let refresh = directive == Directive::Refresh || api_key.cache() == KeyCacheMode::Refresh;
        if directive == Directive::Bypass || api_key.cache() == KeyCacheMode::Off {
            return Err(Skip::Bypass);
        }
        let Some(canonical) = key::canonical(surface, body) else {
            return Err(Skip::Uncacheable);
        };
        if !canonical.deterministic && !policy.allow_non_deterministic {
            return Err(Skip::Uncacheable);
        }
        let partition = key::partition_id(policy.partition, api_key);
        Ok(Plan {
            surface,
            key: key::key(surface, alias, &partition, &canonical.bytes),
            read: !refresh,
            write: true,
            policy: *policy,
            outcome: if refresh { "refresh" } else { "miss" },
        })
    }

    /// The stored answer for `plan`, if any: the in-process layer first, then Redis. It is a
    /// whole answer in the client's format (an entry an earlier version stored as a stream's
    /// events is assembled here).
    pub async fn lookup(&self, plan: &Plan) -> Option<Entry> {
        let now = Instant::now();
        let stored = match self.local.get(&plan.key, now) {
            Some(bytes) => Some(bytes),
            None => match &self.remote {
                Some(remote) => match remote.get(&plan.key).await {
                    Ok(Some((bytes, ttl))) => {
                        let ttl = ttl.min(self.local_ttl);
                        self.local.insert(plan.key, bytes.clone(), now + ttl);
                        Some(bytes)
                    }
                    Ok(None) => None,
                    Err(_) => {
                        self.metrics.cache_store_error();
                        None
                    }
                },
                None => None,
            },
        };
        let entry = stored.and_then(|b| match Entry::decode(&b, self.max_entry_bytes) {
            Ok(e) if e.kind == Kind::Json => Some(e),
            Ok(e) => {
                let body = assemble::whole(plan.surface, &e.body, &e.usage)?;
                Some(Entry {
                    kind: Kind::Json,
                    body,
                    ..e
                })
            }
            Err(err) => {
                tracing::debug!(error = %err, "cache entry unreadable: treated as a miss");
                None
            }
        });
        if entry.is_some() {
            self.metrics.cache_hit();
        } else {
            self.metrics.cache_miss();
        }
        entry
    }

    /// Counts an answer not stored because it exceeds the entry bound.
    pub fn too_large(&self) {
        self.metrics.cache_too_large();
    }

    /// The largest answer stored (uncompressed bytes).
    pub fn max_entry_bytes(&self) -> usize {
        self.max_entry_bytes
    }

    /// Stores `entry` under `plan` in the background (Redis for the route's TTL, the local
    /// layer for as long or at most `local_ttl` with Redis). An entry of a stream's events is
    /// stored as the whole answer assembled from them (not at all if they do not make one).
    /// The request does not wait for it.
    pub fn store(self: &Arc<Self>, plan: &Plan, entry: Entry) {
        if !plan.write {
            return;
        }
        if entry.body.len() > self.max_entry_bytes {
            self.too_large();
            return;
        }
        let cache = self.clone();
        let key = plan.key;
        let surface = plan.surface;
        let ttl = Duration::from_secs(u64::from(plan.policy.ttl_s));
        let local_ttl = match &self.remote {
            Some(_) => ttl.min(self.local_ttl),
            None => ttl,
        };
        tokio::spawn(async move {
            let entry = match entry.kind {
                Kind::Json => entry,
                Kind::Events => match assemble::whole(surface, &entry.body, &entry.usage) {
                    Some(body) => Entry {
                        kind: Kind::Json,
                        body,
                        ..entry
                    },
                    None => {
                        tracing::debug!(
                            ?surface,
                            "a stream that makes no whole answer: not cached"
                        );
                        return;
                    }
                },
            };
            let bytes = entry.encode();
            cache
                .local
                .insert(key, bytes.clone(), Instant::now() + local_ttl);
            cache.metrics.cache_stored();
            if let Some(remote) = &cache.remote {
                if remote.set(&key, &bytes, ttl).await.is_err() {
                    cache.metrics.cache_store_error();
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_directive_is_read_only_where_the_cache_takes_part() {
        let on = CachePolicy {
            enabled: true,
            ..CachePolicy::default()
        };
        let of = |surface, policy: &CachePolicy, v: Option<&'static str>| {
            let h = v.map(HeaderValue::from_static);
            Directive::of_request(surface, policy, h.as_ref()).ok()
        };
        let chat = Surface::OpenAiChat;
        assert_eq!(of(chat, &on, None), Some(Directive::Use));
        assert_eq!(of(chat, &on, Some(" Refresh ")), Some(Directive::Refresh));
        assert_eq!(of(chat, &on, Some("BYPASS")), Some(Directive::Bypass));
        assert_eq!(of(chat, &on, Some("sometimes")), None);
        // A route that does not cache, or a surface that is not cached, never reads it.
        let off = CachePolicy::default();
        assert_eq!(of(chat, &off, Some("sometimes")), Some(Directive::Use));
        let images = Surface::OpenAiImages;
        assert_eq!(of(images, &on, Some("sometimes")), Some(Directive::Use));
    }
}
