//! A node's identity as its (already verified) certificate states it.

use std::collections::BTreeMap;

use rustls::pki_types::CertificateDer;

use super::{TlsError, LABEL_URI_PREFIX, NODE_URI_PREFIX};

/// Who a verified client certificate says the peer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    pub node_id: String,
    /// Empty when the certificate carries no labels (then the hello's labels are taken as is).
    pub labels: BTreeMap<String, String>,
}

/// Reads the node id and labels from a certificate's URI subject alternative names. Exactly one
/// `urn:modelgate:node:` URI is required. Call only on a certificate rustls has verified.
pub fn node_identity(cert: &CertificateDer<'_>) -> Result<NodeIdentity, TlsError> {
    let parsed = webpki::EndEntityCert::try_from(cert)
        .map_err(|e| TlsError::Identity(format!("unparsable certificate: {e}")))?;
    let mut node_id = None;
    let mut labels = BTreeMap::new();
    for uri in parsed.valid_uri_names() {
        if let Some(id) = uri.strip_prefix(NODE_URI_PREFIX) {
            if node_id.replace(id.to_owned()).is_some() {
                return Err(TlsError::Identity(
                    "the certificate names more than one node".into(),
                ));
            }
        } else if let Some(label) = uri.strip_prefix(LABEL_URI_PREFIX) {
            let (k, v) = validate_label(label)?;
            labels.insert(k.to_owned(), v.to_owned());
        }
    }
    let node_id = node_id.ok_or_else(|| {
        TlsError::Identity(format!(
            "the certificate names no node (no {NODE_URI_PREFIX}<id> URI)"
        ))
    })?;
    validate_node_id(&node_id)?;
    Ok(NodeIdentity { node_id, labels })
}

/// A node id: 1 to 128 of `A-Z a-z 0-9 . _ -`, not starting with `.`, and not one of the file
/// names the fleet directory uses (`ca`, `control-plane`). It is also a file name (`<id>.pem`).
pub fn validate_node_id(id: &str) -> Result<(), TlsError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !matches!(id, "ca" | "control-plane");
    if ok {
        Ok(())
    } else {
        Err(TlsError::Invalid {
            what: "node id",
            message: format!(
                "`{id}`: use 1-128 of A-Z a-z 0-9 . _ - (not `ca` or `control-plane`)"
            ),
        })
    }
}

/// `key=value` with a key of `A-Z a-z 0-9 . _ -` and a non-empty value without `,` or spaces.
pub fn validate_label(label: &str) -> Result<(&str, &str), TlsError> {
    let invalid = || TlsError::Invalid {
        what: "label",
        message: format!("`{label}`: expected key=value"),
    };
    let (k, v) = label.split_once('=').ok_or_else(invalid)?;
    let key_ok = !k.is_empty()
        && k.len() <= 64
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    let value_ok = !v.is_empty()
        && v.len() <= 128
        && v.bytes()
            .all(|b| b.is_ascii_graphic() && b != b',' && b != b'=');
    if key_ok && value_ok {
        Ok((k, v))
    } else {
        Err(invalid())
    }
}
