//! Load generator: one keep-alive HTTP/1.1 hyper connection per worker.
//!
//! * Closed loop (no rate): each worker sends its next request as soon as the previous response
//!   has been read in full, until the duration is up.
//! * Open loop (`rate`): request `i` is scheduled at `start + i / rate`. A free worker takes the
//!   next slot and sleeps until it is due. If every worker was busy past a slot, that request's
//!   latency counts from its scheduled time (coordinated-omission correction), so a stalled target
//!   cannot hide its stall by slowing the load generator down. If the worker had to *wait* for its
//!   slot, latency counts from the actual send instead: tokio's timer has 1 ms ticks, and its
//!   lateness belongs to the load generator, not the target.
//!
//!   Because of those 1 ms ticks, rates above 1,000/s leave in small bursts (rate/1000 requests per
//!   tick), as with oha, the peer benchmark's load generator. A pacer thread with the OS's
//!   high-resolution timer would spread them out. It was tried, and it measured ~0.1 ms *more* per
//!   request at 200 rps on a 2-core VM, because of waking the runtime from outside (raw
//!   round-trip p50 0.035 ms). So it was dropped.
//!
//! Every latency is recorded (per-worker vectors, merged and sorted at the end). Requests still
//! in flight when the duration ends are waited for and counted.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, HOST};
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::procstat;
use crate::stats::{mean_ms, percentile_ms, Summary};

/// What to run (as given on the command line).
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub url: String,
    /// `Name: value` strings.
    pub headers: Vec<String>,
    pub method: Option<String>,
    pub body: Option<Bytes>,
    pub concurrency: usize,
    pub duration: Duration,
    pub rate: Option<f64>,
    pub warmup: Duration,
    pub timeout: Duration,
    pub pid: Option<u32>,
}

/// A parsed `http://host:port/path?query` target.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub authority: HeaderValue,
    pub path: Uri,
}

impl Target {
    pub async fn parse(url: &str) -> anyhow::Result<Self> {
        let uri: Uri = url
            .parse()
            .with_context(|| format!("invalid URL {url:?}"))?;
        if uri.scheme_str() != Some("http") {
            bail!("only plain http:// URLs are supported (loopback benchmark), got {url:?}");
        }
        let authority = uri
            .authority()
            .ok_or_else(|| anyhow!("URL {url:?} has no host"))?;
        let port = authority.port_u16().unwrap_or(80);
        let host_port = format!("{}:{port}", authority.host());
        let addr = tokio::net::lookup_host(&host_port)
            .await
            .with_context(|| format!("resolving {host_port}"))?
            .next()
            .ok_or_else(|| anyhow!("{host_port} resolved to no address"))?;
        let path: Uri = uri
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or("/")
            .parse()
            .context("invalid URL path")?;
        Ok(Self {
            addr,
            authority: HeaderValue::from_str(authority.as_str())?,
            path,
        })
    }
}

/// Parses `Name: value`.
pub fn parse_header(h: &str) -> anyhow::Result<(HeaderName, HeaderValue)> {
    let (name, value) = h
        .split_once(':')
        .ok_or_else(|| anyhow!("header {h:?} is not `Name: value`"))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .with_context(|| format!("invalid header name in {h:?}"))?;
    let value = HeaderValue::from_str(value.trim())
        .with_context(|| format!("invalid header value in {h:?}"))?;
    Ok((name, value))
}

/// A resolved, ready-to-send request template.
#[derive(Debug, Clone)]
pub struct RequestTemplate {
    pub target: Target,
    pub method: Method,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl RequestTemplate {
    pub async fn new(
        url: &str,
        headers: &[String],
        method: Option<&str>,
        body: Option<Bytes>,
    ) -> anyhow::Result<Self> {
        let target = Target::parse(url).await?;
        let method = match method {
            Some(m) => Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                .with_context(|| format!("invalid method {m:?}"))?,
            None if body.is_some() => Method::POST,
            None => Method::GET,
        };
        let mut map = HeaderMap::new();
        map.insert(HOST, target.authority.clone());
        for h in headers {
            let (name, value) = parse_header(h)?;
            map.append(name, value);
        }
        if body.is_some() && !map.contains_key(CONTENT_TYPE) {
            map.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        Ok(Self {
            target,
            method,
            headers: map,
            body: body.unwrap_or_default(),
        })
    }

    fn build(&self) -> anyhow::Result<Request<Full<Bytes>>> {
        let mut req = Request::new(Full::new(self.body.clone()));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.target.path.clone();
        *req.headers_mut() = self.headers.clone();
        Ok(req)
    }
}

type Sender = SendRequest<Full<Bytes>>;

pub async fn connect(addr: SocketAddr) -> anyhow::Result<Sender> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // Ends when the sender is dropped or the server closes the connection.
        let _ = conn.await;
    });
    Ok(sender)
}

/// One response, read in full.
pub struct Exchange {
    pub status: StatusCode,
    pub event_stream: bool,
    /// When the first non-empty body chunk arrived.
    pub first_byte: Option<Instant>,
    pub end: Instant,
    pub bytes: u64,
    /// The body: kept when asked for (sanity checks) and for non-2xx responses (diagnostics;
    /// at most `KEPT_ERROR_BODY` bytes).
    pub body: Option<Bytes>,
}

const KEPT_ERROR_BODY: usize = 1024;

/// Sends one request on `sender` and reads the whole response.
pub async fn exchange(
    sender: &mut Sender,
    template: &RequestTemplate,
    keep_body: bool,
) -> anyhow::Result<Exchange> {
    sender.ready().await.context("connection not ready")?;
    let resp = sender.send_request(template.build()?).await?;
    let status = resp.status();
    let keep_limit = if keep_body {
        usize::MAX
    } else if status.is_success() {
        0
    } else {
        KEPT_ERROR_BODY
    };
    let event_stream = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.trim_start().starts_with("text/event-stream"));
    let mut body = resp.into_body();
    let mut first_byte = None;
    let mut bytes = 0u64;
    let mut kept = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.context("reading response body")?;
        if let Some(data) = frame.data_ref() {
            if !data.is_empty() {
                if first_byte.is_none() {
                    first_byte = Some(Instant::now());
                }
                bytes += data.len() as u64;
                if kept.len() < keep_limit {
                    let room = keep_limit - kept.len();
                    kept.extend_from_slice(data.get(..room.min(data.len())).unwrap_or_default());
                }
            }
        }
    }
    Ok(Exchange {
        status,
        event_stream,
        first_byte,
        end: Instant::now(),
        bytes,
        body: (keep_limit > 0).then(|| Bytes::from(kept)),
    })
}

/// One request on a fresh connection (sanity checks before a run).
pub async fn probe(template: &RequestTemplate, timeout: Duration) -> anyhow::Result<Exchange> {
    tokio::time::timeout(timeout, async {
        let mut sender = connect(template.target.addr).await?;
        exchange(&mut sender, template, true).await
    })
    .await
    .map_err(|_| anyhow!("no response within {timeout:?}"))?
}

struct Shared {
    /// Request `i` uses template `i % len` (several keys, one per template).
    templates: Vec<RequestTemplate>,
    deadline: Instant,
    start: Instant,
    /// Seconds between scheduled sends (open loop).
    interval_s: Option<f64>,
    /// Next open-loop slot to hand out.
    next_slot: AtomicU64,
    timeout: Duration,
    first_error: Mutex<Option<String>>,
    first_non2xx: Mutex<Option<String>>,
}

impl Shared {
    fn note(slot: &Mutex<Option<String>>, msg: impl FnOnce() -> String) {
        if let Ok(mut guard) = slot.lock() {
            if guard.is_none() {
                *guard = Some(msg());
            }
        }
    }
}

#[derive(Default)]
struct WorkerStats {
    latencies_ns: Vec<u64>,
    /// When each 2xx request counted from, as an offset from the window's start; aligned with
    /// `latencies_ns` until the latter is sorted.
    starts_ns: Vec<u64>,
    /// When each failed request counted from (offset from the window's start).
    failed_at_ns: Vec<u64>,
    ttfb_ns: Vec<u64>,
    ok: u64,
    non2xx: u64,
    errors: u64,
    reconnects: u64,
    streams: u64,
    behind: u64,
    bytes: u64,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

async fn worker(shared: Arc<Shared>, sender: Sender) -> WorkerStats {
    let mut stats = WorkerStats::default();
    let mut sender = Some(sender);
    let mut sent: u64 = 0;
    loop {
        // When does this request count from, and which template does it use?
        let (t0, pick) = match shared.interval_s {
            None => {
                let now = Instant::now();
                if now >= shared.deadline {
                    break;
                }
                sent += 1;
                (now, sent)
            }
            Some(interval) => {
                let slot = shared.next_slot.fetch_add(1, Ordering::Relaxed);
                let scheduled = shared.start + Duration::from_secs_f64(slot as f64 * interval);
                if scheduled >= shared.deadline {
                    break;
                }
                if Instant::now() < scheduled {
                    tokio::time::sleep_until(scheduled.into()).await;
                    (Instant::now(), slot)
                } else {
                    stats.behind += 1;
                    (scheduled, slot)
                }
            }
        };
        let template = shared
            .templates
            .get(usize::try_from(pick).unwrap_or(0) % shared.templates.len().max(1))
            .unwrap_or(&shared.templates[0]);
        let start_ns = nanos(t0.saturating_duration_since(shared.start));

        // A connection the server closed (keep-alive ended) is re-opened; that time counts.
        let usable = match sender.as_mut() {
            Some(s) => s.ready().await.is_ok(),
            None => false,
        };
        if !usable {
            if sender.is_some() {
                stats.reconnects += 1;
            }
            match tokio::time::timeout(shared.timeout, connect(template.target.addr)).await {
                Ok(Ok(s)) => sender = Some(s),
                Ok(Err(e)) => {
                    stats.failed_at_ns.push(start_ns);
                    fail(&shared, &mut stats, format!("{e:#}")).await;
                    continue;
                }
                Err(_) => {
                    stats.failed_at_ns.push(start_ns);
                    fail(&shared, &mut stats, "connect timed out".to_string()).await;
                    continue;
                }
            }
        }
        let Some(s) = sender.as_mut() else { continue };

        match tokio::time::timeout(shared.timeout, exchange(s, template, false)).await {
            Ok(Ok(ex)) => {
                stats.bytes += ex.bytes;
                if ex.status.is_success() {
                    stats.ok += 1;
                    stats
                        .latencies_ns
                        .push(nanos(ex.end.saturating_duration_since(t0)));
                    stats.starts_ns.push(start_ns);
                    if ex.event_stream {
                        stats.streams += 1;
                        let first = ex.first_byte.unwrap_or(ex.end);
                        stats
                            .ttfb_ns
                            .push(nanos(first.saturating_duration_since(t0)));
                    }
                } else {
                    stats.non2xx += 1;
                    stats.failed_at_ns.push(start_ns);
                    Shared::note(&shared.first_non2xx, || {
                        let body = ex.body.unwrap_or_default();
                        format!(
                            "{}: {}",
                            ex.status,
                            truncate(&String::from_utf8_lossy(&body), 300)
                        )
                    });
                }
            }
            Ok(Err(e)) => {
                sender = None;
                stats.failed_at_ns.push(start_ns);
                fail(&shared, &mut stats, format!("{e:#}")).await;
            }
            Err(_) => {
                sender = None;
                stats.failed_at_ns.push(start_ns);
                fail(
                    &shared,
                    &mut stats,
                    format!("timed out after {:?}", shared.timeout),
                )
                .await;
            }
        }
    }
    stats
}

async fn fail(shared: &Shared, stats: &mut WorkerStats, msg: String) {
    stats.errors += 1;
    Shared::note(&shared.first_error, || msg);
    // Don't spin on a dead target.
    tokio::time::sleep(Duration::from_millis(10)).await;
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.trim_end().to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

struct Window {
    stats: WorkerStats,
    /// When the clock started (connections were open by then).
    start: Instant,
    elapsed: Duration,
    first_error: Option<String>,
    first_non2xx: Option<String>,
}

/// Opens the connections, runs the workers for `duration`, waits for them all.
async fn run_window(
    templates: Vec<RequestTemplate>,
    concurrency: usize,
    duration: Duration,
    rate: Option<f64>,
    timeout: Duration,
) -> anyhow::Result<(Window, Vec<RequestTemplate>)> {
    let addr = templates
        .first()
        .map(|t| t.target.addr)
        .ok_or_else(|| anyhow!("no request to send"))?;
    let mut senders = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let sender = tokio::time::timeout(timeout, connect(addr))
            .await
            .map_err(|_| anyhow!("connecting to {addr} timed out"))??;
        senders.push(sender);
    }
    let start = Instant::now();
    let shared = Arc::new(Shared {
        templates,
        start,
        deadline: start + duration,
        interval_s: rate.map(|r| 1.0 / r),
        next_slot: AtomicU64::new(0),
        timeout,
        first_error: Mutex::new(None),
        first_non2xx: Mutex::new(None),
    });
    let handles: Vec<_> = senders
        .into_iter()
        .map(|s| tokio::spawn(worker(Arc::clone(&shared), s)))
        .collect();
    let mut total = WorkerStats::default();
    for h in handles {
        let w = h.await.context("load worker failed")?;
        total.latencies_ns.extend_from_slice(&w.latencies_ns);
        total.starts_ns.extend_from_slice(&w.starts_ns);
        total.failed_at_ns.extend_from_slice(&w.failed_at_ns);
        total.ttfb_ns.extend_from_slice(&w.ttfb_ns);
        total.ok += w.ok;
        total.non2xx += w.non2xx;
        total.errors += w.errors;
        total.reconnects += w.reconnects;
        total.streams += w.streams;
        total.behind += w.behind;
        total.bytes += w.bytes;
    }
    let elapsed = start.elapsed();
    let shared = Arc::try_unwrap(shared).map_err(|_| anyhow!("load workers still running"))?;
    let first_error = shared.first_error.into_inner().ok().flatten();
    let first_non2xx = shared.first_non2xx.into_inner().ok().flatten();
    Ok((
        Window {
            stats: total,
            start,
            elapsed,
            first_error,
            first_non2xx,
        },
        shared.templates,
    ))
}

/// Every request of an open- or closed-loop window, with when it counted from.
pub struct Timed {
    /// The window's start (connections already open).
    pub start: Instant,
    pub elapsed: Duration,
    /// (start offset, latency) of each 2xx response, in nanoseconds.
    pub ok: Vec<(u64, u64)>,
    /// Start offsets of failed requests (non-2xx, transport errors, timeouts), in nanoseconds.
    pub failed_at_ns: Vec<u64>,
    pub behind_schedule: u64,
    pub first_error: Option<String>,
    pub first_non2xx: Option<String>,
}

/// Runs one window over `templates` (request `i` uses template `i % len`) and keeps every
/// request's start, so a caller can split them by what happened meanwhile.
pub async fn run_timed(
    templates: Vec<RequestTemplate>,
    concurrency: usize,
    duration: Duration,
    rate: Option<f64>,
    timeout: Duration,
) -> anyhow::Result<Timed> {
    let (window, _) = run_window(templates, concurrency, duration, rate, timeout).await?;
    let stats = window.stats;
    Ok(Timed {
        start: window.start,
        elapsed: window.elapsed,
        ok: stats
            .starts_ns
            .into_iter()
            .zip(stats.latencies_ns)
            .collect(),
        failed_at_ns: stats.failed_at_ns,
        behind_schedule: stats.behind,
        first_error: window.first_error,
        first_non2xx: window.first_non2xx,
    })
}

/// Runs a warm-up (if any) and then the measured window.
pub async fn run(config: &LoadConfig) -> anyhow::Result<Summary> {
    if config.concurrency == 0 {
        bail!("concurrency must be at least 1");
    }
    if let Some(rate) = config.rate {
        if !(rate.is_finite() && rate > 0.0) {
            bail!("rate must be a positive number of requests per second");
        }
    }
    if config.duration.is_zero() {
        bail!("duration must be positive");
    }
    let mut templates = vec![
        RequestTemplate::new(
            &config.url,
            &config.headers,
            config.method.as_deref(),
            config.body.clone(),
        )
        .await?,
    ];

    if !config.warmup.is_zero() {
        let (_, t) = run_window(
            templates,
            config.concurrency,
            config.warmup,
            config.rate,
            config.timeout,
        )
        .await?;
        templates = t;
    }

    let cpu_before = config.pid.map(procstat::cpu_ticks).transpose()?;
    let (window, _) = run_window(
        templates,
        config.concurrency,
        config.duration,
        config.rate,
        config.timeout,
    )
    .await?;
    let cpu_after = config.pid.map(procstat::cpu_ticks).transpose()?;
    let rss_mb = config.pid.map(procstat::rss_mb).transpose()?;

    let Window {
        mut stats,
        start: _,
        elapsed,
        first_error,
        first_non2xx,
    } = window;
    stats.latencies_ns.sort_unstable();
    stats.ttfb_ns.sort_unstable();
    let secs = elapsed.as_secs_f64().max(1e-9);
    let cpu_s = match (cpu_before, cpu_after) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / procstat::CLOCK_TICKS_PER_SEC),
        _ => None,
    };
    let lat = &stats.latencies_ns;
    let ttfb = &stats.ttfb_ns;
    Ok(Summary {
        url: config.url.clone(),
        mode: if config.rate.is_some() {
            "open"
        } else {
            "closed"
        },
        concurrency: config.concurrency,
        target_rps: config.rate,
        duration_s: secs,
        rps: stats.ok as f64 / secs,
        ok: stats.ok,
        err: stats.non2xx + stats.errors,
        non2xx: stats.non2xx,
        transport_errors: stats.errors,
        reconnects: stats.reconnects,
        streams: stats.streams,
        behind_schedule: stats.behind,
        response_bytes: stats.bytes,
        mean_ms: mean_ms(lat),
        p50_ms: percentile_ms(lat, 50.0),
        p90_ms: percentile_ms(lat, 90.0),
        p99_ms: percentile_ms(lat, 99.0),
        p999_ms: percentile_ms(lat, 99.9),
        max_ms: lat.last().map(|&ns| ns as f64 / 1e6),
        ttfb_p50_ms: percentile_ms(ttfb, 50.0),
        ttfb_p90_ms: percentile_ms(ttfb, 90.0),
        ttfb_p99_ms: percentile_ms(ttfb, 99.0),
        cpu_us_per_req: cpu_s.and_then(|c| (stats.ok > 0).then(|| c * 1e6 / stats.ok as f64)),
        cpu_cores: cpu_s.map(|c| c / secs),
        rss_mb,
        first_error,
        first_non2xx,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers() {
        let parsed = parse_header("Authorization:  Bearer abc ").ok();
        assert_eq!(
            parsed.map(|(n, v)| (n.to_string(), v.to_str().map(str::to_string).ok())),
            Some(("authorization".to_string(), Some("Bearer abc".to_string())))
        );
        assert!(parse_header("no colon").is_err());
    }

    #[test]
    fn truncation() {
        assert_eq!(truncate("héllo", 2), "h…");
        assert_eq!(truncate("ok\n", 10), "ok");
    }

    #[tokio::test]
    async fn target_parsing() -> anyhow::Result<()> {
        let t = Target::parse("http://127.0.0.1:18080/v1/chat/completions?x=1").await?;
        assert_eq!(t.addr.port(), 18080);
        assert_eq!(t.path.to_string(), "/v1/chat/completions?x=1");
        assert_eq!(t.authority, "127.0.0.1:18080");
        assert!(Target::parse("https://example.com/").await.is_err());
        Ok(())
    }
}
