//! When a certificate expires: its `notAfter`, for the `modelgate_tls_certificate_expiry_
//! timestamp_seconds` gauges both planes export (an alert fires weeks before). Read with
//! `yasna` (already in the tree through `rcgen`), walking the X.509 structure only as far as
//! the validity: Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL,
//! serialNumber, signature, issuer, validity SEQUENCE { notBefore, notAfter }, … }, … }.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use yasna::tags::{TAG_GENERALIZEDTIME, TAG_UTCTIME};
use yasna::{ASN1Error, ASN1ErrorKind, BERReader, Tag};

use super::TlsError;

fn time(r: BERReader<'_, '_>) -> Result<i64, ASN1Error> {
    let tag = r.lookahead_tag()?;
    if tag == TAG_UTCTIME {
        Ok(r.read_utctime()?.datetime().unix_timestamp())
    } else if tag == TAG_GENERALIZEDTIME {
        Ok(r.read_generalized_time()?.datetime().unix_timestamp())
    } else {
        Err(ASN1Error::new(ASN1ErrorKind::Invalid))
    }
}

/// The `notAfter` of a DER certificate, as Unix seconds.
pub fn not_after(der: &[u8]) -> Result<i64, TlsError> {
    yasna::parse_ber(der, |r| {
        r.read_sequence(|cert| {
            let not_after = cert.next().read_sequence(|tbs| {
                tbs.read_optional(|r| r.read_tagged(Tag::context(0), |r| r.read_i64()))?;
                for _ in 0..3 {
                    // serialNumber, signature, issuer
                    tbs.next().read_der()?;
                }
                let not_after = tbs.next().read_sequence(|validity| {
                    time(validity.next())?;
                    time(validity.next())
                })?;
                // subject, subjectPublicKeyInfo, then the optional unique ids and extensions.
                tbs.next().read_der()?;
                tbs.next().read_der()?;
                for _ in 0..3 {
                    tbs.read_optional(|r| r.read_der())?;
                }
                Ok(not_after)
            })?;
            cert.next().read_der()?;
            cert.next().read_der()?;
            Ok(not_after)
        })
    })
    .map_err(|e| TlsError::Invalid {
        what: "certificate",
        message: format!("cannot read its validity: {e}"),
    })
}

/// The `notAfter` (Unix seconds) of the first certificate in a PEM file.
pub fn not_after_of_file(path: &Path) -> Result<i64, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })?;
    let first = CertificateDer::pem_slice_iter(&pem)
        .next()
        .ok_or_else(|| TlsError::Pem {
            path: path.to_owned(),
            message: "no CERTIFICATE block".into(),
        })?
        .map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    not_after(&first)
}
