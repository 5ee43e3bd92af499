//! A client's body sent on in its own format, changed only where it must be: another model name
//! upstream (the deployment's, not the alias), or asking an OpenAI stream for the usage chunk
//! the client did not ask for (the gateway meters from it).

use bytes::Bytes;

use crate::error::ProxyError;

/// Rewrites the body only when it must change: another model name upstream, or asking the
/// provider for streamed usage the client did not ask for.
pub fn rewrite(body: &[u8], model: Option<&str>, inject_usage: bool) -> Result<Bytes, ProxyError> {
    let mut map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(body).map_err(|e| ProxyError::invalid_json(&e.to_string()))?;
    if let Some(m) = model {
        map.insert("model".into(), m.into());
    }
    if inject_usage {
        let opts = map
            .entry("stream_options")
            .or_insert_with(|| serde_json::json!({}));
        if !opts.is_object() {
            *opts = serde_json::json!({});
        }
        if let Some(o) = opts.as_object_mut() {
            o.insert("include_usage".into(), true.into());
        }
    }
    serde_json::to_vec(&map)
        .map(Bytes::from)
        .map_err(|e| ProxyError::invalid_json(&e.to_string()))
}
