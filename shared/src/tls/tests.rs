use std::collections::BTreeMap;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConnection, ServerConnection};

use super::issue::{init_ca, issue_control_plane, issue_node};
use super::*;

fn dir() -> std::path::PathBuf {
    std::env::temp_dir()
        .join(format!("mg-tls-{}", crate::new_id().simple()))
        .join("certs")
}

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

fn files(d: &std::path::Path, name: &str) -> TlsFiles {
    TlsFiles {
        ca: d.join("ca.pem"),
        cert: d.join(format!("{name}.pem")),
        key: d.join(format!("{name}-key.pem")),
    }
}

/// Runs a TLS handshake in memory; the first error either side reports.
fn handshake(client: &TlsFiles, server: &TlsFiles, name: &str) -> Result<(), rustls::Error> {
    let mut c = ClientConnection::new(
        Arc::new(client_config(client).unwrap()),
        ServerName::try_from(name.to_owned()).unwrap(),
    )?;
    let mut s = ServerConnection::new(Arc::new(server_config(server).unwrap()))?;
    for _ in 0..10 {
        let mut buf = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        s.read_tls(&mut &buf[..]).unwrap();
        s.process_new_packets()?;
        let mut buf = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        c.read_tls(&mut &buf[..]).unwrap();
        c.process_new_packets()?;
        if !c.is_handshaking() && !s.is_handshaking() {
            // The server verifies the client certificate after the client's last flight.
            let mut buf = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut buf).unwrap();
            }
            s.read_tls(&mut &buf[..]).unwrap();
            s.process_new_packets()?;
            return Ok(());
        }
    }
    panic!("handshake did not finish")
}

fn fleet() -> std::path::PathBuf {
    let d = dir();
    init_ca(&d, now()).unwrap();
    issue_control_plane(
        &d,
        &["localhost".into()],
        &["127.0.0.1".parse().unwrap()],
        now(),
    )
    .unwrap();
    issue_node(
        &d,
        "node-a",
        &BTreeMap::from([("region".into(), "eu".into())]),
        now(),
    )
    .unwrap();
    d
}

#[test]
fn a_node_and_the_control_plane_of_one_fleet_complete_mutual_tls() {
    let d = fleet();
    handshake(
        &files(&d, "node-a"),
        &files(&d, "control-plane"),
        "localhost",
    )
    .unwrap();
    handshake(
        &files(&d, "node-a"),
        &files(&d, "control-plane"),
        "127.0.0.1",
    )
    .unwrap();
}

#[test]
fn a_certificate_from_another_ca_is_refused_on_both_sides() {
    let d = fleet();
    let other = fleet();
    let mut foreign_node = files(&other, "node-a");
    foreign_node.ca = d.join("ca.pem");
    assert!(handshake(&foreign_node, &files(&d, "control-plane"), "localhost").is_err());
    let mut foreign_server = files(&other, "control-plane");
    foreign_server.ca = d.join("ca.pem");
    assert!(handshake(&files(&d, "node-a"), &foreign_server, "localhost").is_err());
}

#[test]
fn the_control_plane_certificate_must_match_the_dialled_name() {
    let d = fleet();
    let e = handshake(
        &files(&d, "node-a"),
        &files(&d, "control-plane"),
        "cp.example",
    )
    .unwrap_err();
    assert!(e.to_string().contains("not valid for name"), "{e}");
}

#[test]
fn a_node_certificate_cannot_serve_and_the_server_certificate_cannot_log_in() {
    let d = fleet();
    // A node certificate with a DNS-looking id, presented as the control plane's.
    issue_node(&d, "localhost", &BTreeMap::new(), now()).unwrap();
    let e = handshake(&files(&d, "node-a"), &files(&d, "localhost"), "localhost").unwrap_err();
    assert!(
        e.to_string().to_lowercase().contains("usage") || e.to_string().contains("Purpose"),
        "{e}"
    );
    let e = handshake(
        &files(&d, "control-plane"),
        &files(&d, "control-plane"),
        "localhost",
    )
    .unwrap_err();
    assert!(
        e.to_string().to_lowercase().contains("usage") || e.to_string().contains("Purpose"),
        "{e}"
    );
}

#[test]
fn the_node_identity_and_labels_come_from_the_certificate() {
    let d = fleet();
    let pem = std::fs::read(d.join("node-a.pem")).unwrap();
    let cert = CertificateDer::from_pem_slice(&pem).unwrap();
    let id = node_identity(&cert).unwrap();
    assert_eq!(id.node_id, "node-a");
    assert_eq!(id.labels, BTreeMap::from([("region".into(), "eu".into())]));
    let pem = std::fs::read(d.join("control-plane.pem")).unwrap();
    let cert = CertificateDer::from_pem_slice(&pem).unwrap();
    assert!(
        node_identity(&cert).is_err(),
        "the server certificate names no node"
    );
}

#[cfg(unix)]
#[test]
fn keys_are_0600_and_the_directory_0700() {
    use std::os::unix::fs::PermissionsExt;
    let d = fleet();
    let mode = |p: &str| std::fs::metadata(d.join(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("ca-key.pem"), 0o600);
    assert_eq!(mode("node-a-key.pem"), 0o600);
    assert_eq!(mode("control-plane-key.pem"), 0o600);
    assert_eq!(mode("ca.pem"), 0o644);
    assert_eq!(
        std::fs::metadata(&d).unwrap().permissions().mode() & 0o777,
        0o700
    );
    // No temporary file is left behind.
    assert!(std::fs::read_dir(&d).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".tmp")));
}

#[test]
fn init_refuses_to_overwrite_a_ca_and_ids_that_are_not_file_names_are_refused() {
    let d = fleet();
    assert!(matches!(init_ca(&d, now()), Err(TlsError::Exists { .. })));
    for bad in ["", "../x", "a/b", "ca", "control-plane", ".hidden", "a b"] {
        assert!(
            issue_node(&d, bad, &BTreeMap::new(), now()).is_err(),
            "{bad}"
        );
    }
    let bad_label = BTreeMap::from([("region".into(), "eu,west".into())]);
    assert!(issue_node(&d, "n", &bad_label, now()).is_err());
    assert!(issue_control_plane(&d, &[], &[], now()).is_err());
}

#[test]
fn a_reloading_config_picks_up_new_files_and_keeps_the_old_ones_when_they_do_not_load() {
    let d = fleet();
    let r = Reloading::client(files(&d, "node-a")).unwrap();
    let first = r.current();
    // Unchanged files: the same configuration.
    std::thread::sleep(RECHECK_INTERVAL + std::time::Duration::from_millis(50));
    assert!(Arc::ptr_eq(&first, &r.current()));
    // A broken key: kept.
    std::fs::write(d.join("node-a-key.pem"), "garbage").unwrap();
    std::thread::sleep(RECHECK_INTERVAL + std::time::Duration::from_millis(50));
    assert!(Arc::ptr_eq(&first, &r.current()));
    // A new certificate and key: taken.
    issue_node(&d, "node-a", &BTreeMap::new(), now()).unwrap();
    std::thread::sleep(RECHECK_INTERVAL + std::time::Duration::from_millis(50));
    assert!(!Arc::ptr_eq(&first, &r.current()));
}

#[test]
fn the_expiry_read_from_a_certificate_is_the_one_it_was_issued_with() {
    let d = dir();
    let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    init_ca(&d, now).unwrap();
    issue_node(&d, "node-x", &BTreeMap::new(), now).unwrap();
    // The CA: 3650 days; a leaf: 825 days (both from `now`, not backdated at the end).
    assert_eq!(
        expiry::not_after_of_file(&d.join("ca.pem")).unwrap(),
        1_800_000_000 + 3650 * 86_400
    );
    assert_eq!(
        expiry::not_after_of_file(&d.join("node-x.pem")).unwrap(),
        1_800_000_000 + 825 * 86_400
    );
    assert!(expiry::not_after(b"\x30\x03\x02\x01\x01").is_err());
}
