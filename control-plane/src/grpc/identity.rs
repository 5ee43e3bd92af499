//! Who may do what on the gRPC services: the one place a call is attributed to a node.
//!
//! Under mutual TLS the node is the one its certificate names (see `transport`), never the one
//! a message claims: a hello, a usage batch (and each of its events) and a lease holder must
//! name that node, or the call is refused with `PermissionDenied`; a certificate that names no
//! node is `Unauthenticated`; a revoked node is `PermissionDenied` on every call. Without TLS
//! (`--insecure-plaintext-grpc`) messages are taken at their word, except that an empty node id
//! is refused and a revoked id stays refused.

use std::collections::BTreeMap;
use std::sync::Arc;

use modelgate_shared::tls::NodeIdentity;
use tonic::Status;

use super::transport::Peer;
use crate::service::revocations::Revoked;

/// The authenticated caller of one request.
#[derive(Clone)]
pub struct Caller {
    node: Option<Arc<NodeIdentity>>,
    revoked: Arc<Revoked>,
}

/// The caller of `request`, refused if its connection is not authenticated or its node revoked.
pub fn caller<T>(request: &tonic::Request<T>, revoked: &Arc<Revoked>) -> Result<Caller, Status> {
    let node = match request.extensions().get::<Peer>() {
        Some(Peer::Node(id)) => Some(id.clone()),
        Some(Peer::Plaintext) => None,
        Some(Peer::Unidentified(why)) => {
            return Err(Status::unauthenticated(format!(
                "the client certificate does not identify a node: {why}"
            )))
        }
        None => return Err(Status::unauthenticated("unauthenticated connection")),
    };
    let caller = Caller {
        node,
        revoked: revoked.clone(),
    };
    if let Some(id) = &caller.node {
        caller.not_revoked(&id.node_id)?;
    }
    Ok(caller)
}

fn denied(what: &str, claimed: &str, id: &NodeIdentity) -> Status {
    Status::permission_denied(format!(
        "{what} names node `{claimed}` but the client certificate is node `{}`",
        id.node_id
    ))
}

impl Caller {
    /// The certificate's node id (`None` on a plaintext connection).
    pub fn node_id(&self) -> Option<&str> {
        self.node.as_ref().map(|n| n.node_id.as_str())
    }

    fn not_revoked(&self, node_id: &str) -> Result<(), Status> {
        if self.revoked.contains(node_id) {
            Err(Status::permission_denied(format!(
                "node `{node_id}` is revoked"
            )))
        } else {
            Ok(())
        }
    }

    /// A config-stream hello: its node id must be the certificate's, and its labels the
    /// certificate's where the certificate carries any.
    pub fn hello(&self, node_id: &str, labels: &BTreeMap<String, String>) -> Result<(), Status> {
        if node_id.trim().is_empty() {
            return Err(Status::invalid_argument("hello.node_id must not be empty"));
        }
        self.not_revoked(node_id)?;
        let Some(id) = &self.node else { return Ok(()) };
        if node_id != id.node_id {
            return Err(denied("the hello", node_id, id));
        }
        if !id.labels.is_empty() && *labels != id.labels {
            return Err(Status::permission_denied(format!(
                "the hello's labels {labels:?} differ from the certificate's {:?}",
                id.labels
            )));
        }
        Ok(())
    }

    /// A usage batch: the batch and every event in it must name the caller's node (one wrong
    /// event refuses the whole batch, so nothing of it is stored).
    pub fn usage_batch<'a>(
        &self,
        batch_node_id: &str,
        event_node_ids: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), Status> {
        if batch_node_id.trim().is_empty() {
            return Err(Status::invalid_argument("batch.node_id must not be empty"));
        }
        self.not_revoked(batch_node_id)?;
        let Some(id) = &self.node else { return Ok(()) };
        if batch_node_id != id.node_id {
            return Err(denied("the usage batch", batch_node_id, id));
        }
        if let Some(other) = event_node_ids.into_iter().find(|n| *n != id.node_id) {
            return Err(denied("a usage event", other, id));
        }
        Ok(())
    }

    /// A budget or rate lease holder, `<node id>/<process id>`: both parts non-empty and the
    /// node part the caller's, so no caller can write another node's allocator rows.
    pub fn lease_holder(&self, holder: &str) -> Result<(), Status> {
        let (node, process) = holder.split_once('/').unwrap_or((holder, ""));
        if node.trim().is_empty() || process.trim().is_empty() {
            return Err(Status::invalid_argument(
                "node_id must be `<node id>/<process id>`",
            ));
        }
        self.not_revoked(node)?;
        let Some(id) = &self.node else { return Ok(()) };
        if node != id.node_id {
            return Err(denied("the lease holder", node, id));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls_caller(node: &str, labels: &[(&str, &str)]) -> Caller {
        Caller {
            node: Some(Arc::new(NodeIdentity {
                node_id: node.into(),
                labels: labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            })),
            revoked: Arc::default(),
        }
    }

    fn labels(l: &[(&str, &str)]) -> BTreeMap<String, String> {
        l.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_hello_must_name_the_certificate_node_and_its_labels() {
        let c = tls_caller("a", &[("region", "eu")]);
        assert!(c.hello("a", &labels(&[("region", "eu")])).is_ok());
        let e = c.hello("b", &labels(&[("region", "eu")])).unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        let e = c.hello("a", &labels(&[("region", "us")])).unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        // A certificate without labels leaves them to the hello.
        assert!(tls_caller("a", &[])
            .hello("a", &labels(&[("x", "y")]))
            .is_ok());
    }

    #[test]
    fn a_batch_with_one_foreign_event_is_refused_whole() {
        let c = tls_caller("a", &[]);
        assert!(c.usage_batch("a", ["a", "a"]).is_ok());
        assert_eq!(
            c.usage_batch("a", ["a", "b"]).unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
        assert_eq!(
            c.usage_batch("b", ["b"]).unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
    }

    #[test]
    fn a_lease_holder_needs_the_certificate_node_and_a_process_part() {
        let c = tls_caller("a", &[]);
        assert!(c.lease_holder("a/123").is_ok());
        for bad in ["", "/", "a", "a/", "/123", "b/123", "ab/123"] {
            assert!(c.lease_holder(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_revoked_node_is_refused_even_in_plaintext() {
        let revoked = Arc::new(Revoked::default());
        revoked.insert("a");
        let c = Caller {
            node: None,
            revoked,
        };
        assert_eq!(
            c.hello("a", &BTreeMap::new()).unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
        assert!(c.hello("b", &BTreeMap::new()).is_ok());
        assert!(c.lease_holder("a/1").is_err());
    }
}
