//! The fleet PKI of the tests: one CA per test process (in a temporary directory) with the
//! control plane's certificate (for `localhost` and `127.0.0.1`) and per-node certificates,
//! issued by the same code as `modelgate certs`. Every plane the support starts uses it, so
//! every test runs over mutual TLS.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use modelgate_control_plane::grpc::transport::GrpcSecurity;
use modelgate_data_plane::channel::ControlPlaneSecurity;
use modelgate_shared::tls::{issue, Reloading, TlsFiles};

pub struct Pki {
    pub dir: PathBuf,
    /// Node certificates issued so far and their labels (tests run in parallel: a certificate is
    /// issued once, never rewritten while another test's plane reads it).
    issued: Mutex<HashMap<String, BTreeMap<String, String>>>,
}

impl Pki {
    /// A new fleet: its own CA and a control-plane certificate for `localhost`/`127.0.0.1`.
    pub fn new() -> Pki {
        Pki::with_control_plane_names(&["localhost"], &["127.0.0.1"])
    }

    /// A new fleet whose control-plane certificate names only these DNS names and addresses.
    pub fn with_control_plane_names(dns: &[&str], ips: &[&str]) -> Pki {
        let dir = super::temp_dir("pki").join("certs");
        issue::init_ca(&dir, chrono::Utc::now()).unwrap();
        let pki = Pki {
            dir,
            issued: Mutex::default(),
        };
        pki.issue_control_plane(dns, ips);
        pki
    }

    /// The process-wide fleet the plane helpers use.
    pub fn shared() -> &'static Pki {
        static PKI: OnceLock<Pki> = OnceLock::new();
        PKI.get_or_init(Pki::new)
    }

    /// (Re)issues the control plane's certificate into the same files.
    pub fn issue_control_plane(&self, dns: &[&str], ips: &[&str]) {
        let dns: Vec<String> = dns.iter().map(|d| (*d).to_owned()).collect();
        let ips: Vec<std::net::IpAddr> = ips.iter().map(|i| i.parse().unwrap()).collect();
        issue::issue_control_plane(&self.dir, &dns, &ips, chrono::Utc::now()).unwrap();
    }

    fn files(&self, name: &str) -> TlsFiles {
        TlsFiles {
            ca: self.dir.join("ca.pem"),
            cert: self.dir.join(format!("{name}.pem")),
            key: self.dir.join(format!("{name}-key.pem")),
        }
    }

    /// Node `id`'s certificate with these labels (issued on first use, or again when the labels
    /// differ); its files.
    pub fn node(&self, id: &str, labels: &[(&str, &str)]) -> TlsFiles {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut issued = self.issued.lock().unwrap();
        if issued.get(id) != Some(&labels) {
            issue::issue_node(&self.dir, id, &labels, chrono::Utc::now()).unwrap();
            issued.insert(id.to_owned(), labels);
        }
        self.files(id)
    }

    pub fn control_plane(&self) -> TlsFiles {
        self.files("control-plane")
    }

    /// What a control plane of this fleet is started with.
    pub fn server_security(&self) -> GrpcSecurity {
        GrpcSecurity::Tls(Arc::new(Reloading::server(self.control_plane()).unwrap()))
    }

    /// What node `id` of this fleet dials the control plane with.
    pub fn node_security(&self, id: &str, labels: &[(&str, &str)]) -> ControlPlaneSecurity {
        ControlPlaneSecurity::Tls(self.node(id, labels))
    }
}

/// The URL data planes dial a control plane's gRPC address by (its certificate's IP name).
pub fn grpc_url(addr: std::net::SocketAddr) -> String {
    format!("https://127.0.0.1:{}", addr.port())
}

/// A tonic channel to the control plane as node `id` of `pki` (a raw client for tests).
pub fn node_channel(
    pki: &Pki,
    addr: std::net::SocketAddr,
    id: &str,
    labels: &[(&str, &str)],
) -> tonic::transport::Channel {
    modelgate_data_plane::channel::connect(&grpc_url(addr), &pki.node_security(id, labels)).unwrap()
}

/// A node that connects as `id` with `labels`, says hello, receives its assignment and never
/// applies it (never ACKs): what drift looks like. Returns the first message received, and the
/// stream and its sender, which the test keeps alive for as long as the node should stay
/// connected.
pub async fn node_that_never_applies(
    addr: std::net::SocketAddr,
    id: &str,
    labels: &[(&str, &str)],
) -> (
    modelgate_proto::config::v1::Snapshot,
    tonic::Streaming<modelgate_proto::config::v1::Snapshot>,
    tokio::sync::mpsc::Sender<modelgate_proto::config::v1::SubscribeRequest>,
) {
    use modelgate_proto::config::v1::config_service_client::ConfigServiceClient;
    let channel = node_channel(Pki::shared(), addr, id, labels);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(hello(
        id,
        labels,
        modelgate_shared::SNAPSHOT_PROTOCOL_VERSION,
        &[],
    ))
    .await
    .unwrap();
    let mut stream = ConfigServiceClient::new(channel)
        .subscribe(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let assigned = stream.message().await.unwrap().unwrap();
    (assigned, stream, tx)
}

/// The hello a node `id` with `labels` opens its config stream with, serving nothing yet.
pub fn hello(
    id: &str,
    labels: &[(&str, &str)],
    protocol: u32,
    features: &[&str],
) -> modelgate_proto::config::v1::SubscribeRequest {
    use modelgate_proto::config::v1::{subscribe_request::Kind, Hello, SubscribeRequest};
    SubscribeRequest {
        kind: Some(Kind::Hello(Hello {
            node_id: id.into(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            software_version: "test".into(),
            current_version: 0,
            protocol_version: protocol,
            current_hash: String::new(),
            features: features.iter().map(|f| (*f).to_owned()).collect(),
        })),
    }
}
