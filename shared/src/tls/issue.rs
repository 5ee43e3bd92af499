//! The fleet PKI, offline: a CA, node certificates and the control plane's certificate, written
//! as PEM files into one directory (`ca.pem`/`ca-key.pem`, `<node>.pem`/`<node>-key.pem`,
//! `control-plane.pem`/`control-plane-key.pem`).
//!
//! `issue_*` sign with the CA key in the directory; the issuer name is the fixed subject every
//! CA made by [`init_ca`] has (rcgen cannot read a name back from a PEM certificate without an
//! X.509 parser, which we do not pull in), so only CAs made here can issue. ECDSA P-256 keys.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use super::{validate_label, validate_node_id, TlsError, LABEL_URI_PREFIX, NODE_URI_PREFIX};

const CA_NAME: &str = "ModelGate fleet CA";
const CA_DAYS: i64 = 3650;
const LEAF_DAYS: i64 = 825;
/// Leaves start an hour early so a clock slightly behind still accepts them.
const BACKDATE_SECONDS: i64 = 3600;

/// The certificate and key files one call wrote.
#[derive(Debug, Clone)]
pub struct Written {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn ca_params(now: DateTime<Utc>) -> Result<CertificateParams, TlsError> {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut p, now, CA_DAYS)?;
    Ok(p)
}

fn validity(p: &mut CertificateParams, now: DateTime<Utc>, days: i64) -> Result<(), TlsError> {
    let at = |secs: i64| {
        time::OffsetDateTime::from_unix_timestamp(secs).map_err(|e| TlsError::Invalid {
            what: "time",
            message: e.to_string(),
        })
    };
    p.not_before = at(now.timestamp() - BACKDATE_SECONDS)?;
    p.not_after = at(now.timestamp() + days * 86_400)?;
    Ok(())
}

/// `ca.pem` and `ca-key.pem` in `dir` (created 0700 if missing). Refuses to overwrite a CA.
pub fn init_ca(dir: &Path, now: DateTime<Utc>) -> Result<Written, TlsError> {
    let out = Written {
        cert: dir.join("ca.pem"),
        key: dir.join("ca-key.pem"),
    };
    for p in [&out.cert, &out.key] {
        if p.exists() {
            return Err(TlsError::Exists { path: p.clone() });
        }
    }
    create_dir(dir)?;
    let key = KeyPair::generate()?;
    let cert = ca_params(now)?.self_signed(&key)?;
    write_file(&out.key, key.serialize_pem().as_bytes(), true)?;
    write_file(&out.cert, cert.pem().as_bytes(), false)?;
    Ok(out)
}

/// Whether `dir` holds a CA made by [`init_ca`].
pub fn has_ca(dir: &Path) -> bool {
    dir.join("ca.pem").exists() && dir.join("ca-key.pem").exists()
}

fn ca_issuer(dir: &Path, now: DateTime<Utc>) -> Result<Issuer<'static, KeyPair>, TlsError> {
    let path = dir.join("ca-key.pem");
    let pem = std::fs::read_to_string(&path).map_err(|source| TlsError::Read {
        path: path.clone(),
        source,
    })?;
    let key = KeyPair::from_pem(&pem).map_err(|e| TlsError::Pem {
        path,
        message: e.to_string(),
    })?;
    Ok(Issuer::new(ca_params(now)?, key))
}

fn leaf(
    dir: &Path,
    name: &str,
    mut params: CertificateParams,
    usage: ExtendedKeyUsagePurpose,
    now: DateTime<Utc>,
) -> Result<Written, TlsError> {
    let issuer = ca_issuer(dir, now)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, now, LEAF_DAYS)?;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    let out = Written {
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}-key.pem")),
    };
    // Key first: a reader that sees the new certificate before its key keeps the old pair.
    write_file(&out.key, key.serialize_pem().as_bytes(), true)?;
    write_file(&out.cert, cert.pem().as_bytes(), false)?;
    Ok(out)
}

/// `<node_id>.pem` and `<node_id>-key.pem`: a client certificate naming the node and its labels.
pub fn issue_node(
    dir: &Path,
    node_id: &str,
    labels: &BTreeMap<String, String>,
    now: DateTime<Utc>,
) -> Result<Written, TlsError> {
    validate_node_id(node_id)?;
    let mut params = CertificateParams::default();
    params
        .subject_alt_names
        .push(uri(&format!("{NODE_URI_PREFIX}{node_id}"))?);
    for (k, v) in labels {
        let label = format!("{k}={v}");
        validate_label(&label)?;
        params
            .subject_alt_names
            .push(uri(&format!("{LABEL_URI_PREFIX}{label}"))?);
    }
    leaf(
        dir,
        node_id,
        params,
        ExtendedKeyUsagePurpose::ClientAuth,
        now,
    )
}

/// `control-plane.pem` and `control-plane-key.pem`: a server certificate for the given DNS names
/// and IP addresses (at least one).
pub fn issue_control_plane(
    dir: &Path,
    dns: &[String],
    ips: &[IpAddr],
    now: DateTime<Utc>,
) -> Result<Written, TlsError> {
    if dns.is_empty() && ips.is_empty() {
        return Err(TlsError::Invalid {
            what: "control-plane certificate",
            message: "name at least one --dns name or --ip address the data planes dial".into(),
        });
    }
    let mut params = CertificateParams::default();
    for d in dns {
        let name = d
            .clone()
            .try_into()
            .map_err(|e: rcgen::Error| TlsError::Invalid {
                what: "DNS name",
                message: format!("`{d}`: {e}"),
            })?;
        params.subject_alt_names.push(SanType::DnsName(name));
    }
    for ip in ips {
        params.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    leaf(
        dir,
        "control-plane",
        params,
        ExtendedKeyUsagePurpose::ServerAuth,
        now,
    )
}

fn uri(s: &str) -> Result<SanType, TlsError> {
    Ok(SanType::URI(s.to_owned().try_into()?))
}

/// Creates `dir` (and missing parents) with mode 0700.
pub fn create_dir(dir: &Path) -> Result<(), TlsError> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir).map_err(|source| TlsError::Write {
        path: dir.to_owned(),
        source,
    })
}

/// Writes `bytes` to a new temporary file (0600 for a key, 0644 otherwise, set at creation)
/// beside `path`, then renames it over `path`.
pub fn write_file(path: &Path, bytes: &[u8], secret: bool) -> Result<(), TlsError> {
    let err = |source| TlsError::Write {
        path: path.to_owned(),
        source,
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", crate::new_id().simple()));
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(if secret { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut f = o.open(&tmp).map_err(err)?;
    let written = f.write_all(bytes).and_then(|()| f.sync_all());
    drop(f);
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(e));
    }
    Ok(())
}
