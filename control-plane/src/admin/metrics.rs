//! The admin API's side of the control plane's metrics: each request counted by its route
//! template (never its raw path, so ids make no series), and the metrics listener's `/metrics`,
//! which reads the scrape-time values (latest published version, certificate expiry) and
//! renders `crate::metrics::CpMetrics`.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use crate::grpc::transport::GrpcSecurity;
use crate::metrics::{Readings, CONTENT_TYPE};
use crate::service::Services;

/// The admin API's route templates, to name a request by the one its path matches (axum's
/// `MatchedPath` would need a router feature that tags every proxy request too).
pub(super) struct Templates(Vec<(String, Vec<Option<String>>)>);

impl Templates {
    /// From the OpenAPI document's paths (relative to `prefix`), plus `extra` full paths.
    pub(super) fn new<'a>(
        prefix: &str,
        paths: impl Iterator<Item = &'a String>,
        extra: &[&str],
    ) -> Templates {
        let parse = |full: String| {
            let segments = full
                .trim_start_matches('/')
                .split('/')
                .map(|seg| (!seg.starts_with('{')).then(|| seg.to_owned()))
                .collect();
            (full, segments)
        };
        let mut all: Vec<(String, Vec<Option<String>>)> = paths
            .map(|p| parse(format!("{prefix}{p}")))
            .chain(extra.iter().map(|p| parse((*p).to_owned())))
            .collect();
        // Most literal segments first: `/keys/{id}/revoke` before `/keys/{id}/{x}` if both exist.
        all.sort_by_key(|(_, segs)| std::cmp::Reverse(segs.iter().filter(|s| s.is_some()).count()));
        Templates(all)
    }

    /// The template `path` matches, or `unmatched`.
    fn of(&self, path: &str) -> &str {
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        self.0
            .iter()
            .find(|(_, segs)| {
                segs.len() == parts.len()
                    && segs
                        .iter()
                        .zip(&parts)
                        .all(|(s, p)| s.as_deref().is_none_or(|lit| lit == *p))
            })
            .map_or("unmatched", |(t, _)| t.as_str())
    }
}

/// A method as a bounded label value.
fn method(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Around the whole admin router: counts every request by its route template, `unmatched`
/// when its path is none of them.
pub(super) async fn count(
    State((s, templates)): State<(Services, Arc<Templates>)>,
    req: Request,
    next: Next,
) -> Response {
    let method = method(req.method());
    let route = templates.of(req.uri().path()).to_owned();
    let started = Instant::now();
    let resp = next.run(req).await;
    s.metrics.admin_request(
        &route,
        method,
        resp.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    resp
}

/// The metrics listener's router: `GET /metrics`.
pub fn router(services: Services, grpc_security: GrpcSecurity) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state((services, grpc_security))
}

async fn metrics(State((s, security)): State<(Services, GrpcSecurity)>) -> Response {
    let snapshot_version = s.publisher.latest().map_or(0, |p| p.snapshot.version);
    let certificates = match &security {
        GrpcSecurity::Tls(tls) => {
            let files = tls.files().clone();
            tokio::task::spawn_blocking(move || {
                let mut out = Vec::new();
                for (name, path) in [("server", &files.cert), ("ca", &files.ca)] {
                    match modelgate_shared::tls::expiry::not_after_of_file(path) {
                        Ok(t) => out.push((name, t)),
                        Err(e) => tracing::warn!(error = %e, "certificate expiry not readable"),
                    }
                }
                out
            })
            .await
            .unwrap_or_default()
        }
        GrpcSecurity::InsecurePlaintext => Vec::new(),
    };
    let text = s.metrics.render(&Readings {
        snapshot_version,
        certificates,
    });
    let mut r = Response::new(Body::from(text));
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static(CONTENT_TYPE),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_named_by_its_template_and_an_unknown_one_is_unmatched() {
        let paths: Vec<String> = [
            "/keys",
            "/keys/{id}",
            "/keys/{id}/revoke",
            "/requests/{request_id}",
        ]
        .map(String::from)
        .to_vec();
        let t = Templates::new("/admin/v1", paths.iter(), &["/healthz"]);
        assert_eq!(t.of("/admin/v1/keys"), "/admin/v1/keys");
        assert_eq!(t.of("/admin/v1/keys/k-1"), "/admin/v1/keys/{id}");
        assert_eq!(
            t.of("/admin/v1/keys/k-1/revoke"),
            "/admin/v1/keys/{id}/revoke"
        );
        assert_eq!(
            t.of("/admin/v1/requests/abc"),
            "/admin/v1/requests/{request_id}"
        );
        assert_eq!(t.of("/healthz"), "/healthz");
        for unknown in [
            "/admin/v1/nope",
            "/admin/v1/keys/k-1/revoke/x",
            "/",
            "/metrics",
        ] {
            assert_eq!(t.of(unknown), "unmatched", "{unknown}");
        }
    }
}
