//! Offline checks of TLS material (`agent.md` §19 item 2): a PEM CA bundle, a client
//! certificate chain and its private key.
//!
//! Each file must be readable and parse; the key must match the end-entity certificate (the
//! SubjectPublicKeyInfo derived from the private key, for ECDSA P-256/P-384, Ed25519 and RSA in
//! PKCS#8, SEC1 or PKCS#1 form, equals the certificate's); the certificate must be within its
//! validity (a warning when it ends within 7 days); and its CN must equal the device id.
//! Nothing here opens a connection. Errors name the file; callers add the YAML path.

use std::path::{Path, PathBuf};

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use x509_parser::prelude::{FromDer, X509Certificate};

/// A certificate ending within this many seconds draws a warning (7 days).
pub const EXPIRY_WARNING_SECS: i64 = 7 * 24 * 3600;

/// Why TLS material is unusable. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsCheckError {
    /// The file cannot be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The file holds no PEM block of the expected kind.
    #[error("{}: no PEM {what} found", path.display())]
    NoPem {
        /// The file.
        path: PathBuf,
        /// `CERTIFICATE` or `PRIVATE KEY`.
        what: &'static str,
    },
    /// The PEM text is malformed.
    #[error("{}: malformed PEM: {reason}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// The parser's reason.
        reason: String,
    },
    /// A certificate's DER does not parse as X.509.
    #[error("{}: certificate #{} does not parse as X.509: {reason}", path.display(), index + 1)]
    Certificate {
        /// The file.
        path: PathBuf,
        /// 0-based position in the file.
        index: usize,
        /// The parser's reason.
        reason: String,
    },
    /// The private key is malformed or of an unsupported type.
    #[error("{}: unusable private key: {reason}", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The private key does not belong to the certificate.
    #[error("{}: the private key does not match the certificate in {}", key.display(), cert.display())]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// The certificate's validity ended.
    #[error("{}: certificate expired on {not_after}", path.display())]
    Expired {
        /// The file.
        path: PathBuf,
        /// End of validity, RFC 3339.
        not_after: String,
    },
    /// The certificate's validity has not begun.
    #[error("{}: certificate is not valid before {not_before}", path.display())]
    NotYetValid {
        /// The file.
        path: PathBuf,
        /// Start of validity, RFC 3339.
        not_before: String,
    },
    /// The certificate's CN is not the device id.
    #[error("{}: certificate CN {} is not the device id `{device_id}` (the broker identifies the device by its CN)", path.display(), cn.as_ref().map_or("(none)".to_owned(), |c| format!("`{c}`")))]
    CnMismatch {
        /// The file.
        path: PathBuf,
        /// The CN found, if any.
        cn: Option<String>,
        /// The configured device id.
        device_id: String,
    },
}

/// What a certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    /// The subject's first common name.
    pub subject_cn: Option<String>,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// The DER SubjectPublicKeyInfo.
    pub spki_der: Vec<u8>,
}

/// The outcome of a successful check: what was found and any warnings (e.g. near expiry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsReport {
    /// The certificates examined (a bundle's, or the client chain's end-entity first).
    pub certs: Vec<CertSummary>,
    /// Warnings, each a sentence naming the file.
    pub warnings: Vec<String>,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsCheckError> {
    std::fs::read(path).map_err(|source| TlsCheckError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads every `CERTIFICATE` block of a PEM file (at least one).
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsCheckError> {
    let bytes = read(path)?;
    let certs = rustls_pemfile::certs(&mut bytes.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsCheckError::Pem {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsCheckError::NoPem {
            path: path.to_path_buf(),
            what: "CERTIFICATE",
        });
    }
    Ok(certs)
}

/// Parses one certificate (`index` is its position in `path`, for messages).
pub fn summarize(path: &Path, index: usize, der: &[u8]) -> Result<CertSummary, TlsCheckError> {
    let bad = |reason: String| TlsCheckError::Certificate {
        path: path.to_path_buf(),
        index,
        reason,
    };
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| bad(e.to_string()))?;
    if !rest.is_empty() {
        return Err(bad("trailing bytes after the certificate".into()));
    }
    let subject_cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned);
    let v = cert.validity();
    Ok(CertSummary {
        subject_cn,
        not_before: v.not_before.to_datetime(),
        not_after: v.not_after.to_datetime(),
        spki_der: cert.tbs_certificate.subject_pki.raw.to_vec(),
    })
}

/// Reads the first private key of a PEM file (PKCS#8, SEC1 or PKCS#1).
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsCheckError> {
    let bytes = read(path)?;
    rustls_pemfile::private_key(&mut bytes.as_slice())
        .map_err(|e| TlsCheckError::Pem {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?
        .ok_or_else(|| TlsCheckError::NoPem {
            path: path.to_path_buf(),
            what: "PRIVATE KEY",
        })
}

/// The DER SubjectPublicKeyInfo of a private key's public half (ECDSA, Ed25519, RSA).
pub fn public_key_of(path: &Path, key: &PrivateKeyDer<'_>) -> Result<Vec<u8>, TlsCheckError> {
    let bad = |reason: String| TlsCheckError::Key {
        path: path.to_path_buf(),
        reason,
    };
    let signer = rustls::crypto::ring::sign::any_supported_type(key)
        .map_err(|e| bad(format!("{e} (supported: ECDSA P-256/P-384, Ed25519, RSA)")))?;
    let spki = signer
        .public_key()
        .ok_or_else(|| bad("cannot derive the public key".into()))?;
    Ok(spki.as_ref().to_vec())
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// Checks that `now` is within a certificate's validity; returns a warning if it ends within
/// [`EXPIRY_WARNING_SECS`].
pub fn check_validity(
    path: &Path,
    cert: &CertSummary,
    now: OffsetDateTime,
) -> Result<Option<String>, TlsCheckError> {
    if now > cert.not_after {
        return Err(TlsCheckError::Expired {
            path: path.to_path_buf(),
            not_after: rfc3339(cert.not_after),
        });
    }
    if now < cert.not_before {
        return Err(TlsCheckError::NotYetValid {
            path: path.to_path_buf(),
            not_before: rfc3339(cert.not_before),
        });
    }
    let left = (cert.not_after - now).whole_seconds();
    Ok((left < EXPIRY_WARNING_SECS).then(|| {
        format!(
            "{}: certificate expires in {} on {}: renew it",
            path.display(),
            if left >= 2 * 3600 * 24 {
                format!("{} days", left / 86_400)
            } else {
                format!("{} hours", left / 3600)
            },
            rfc3339(cert.not_after)
        )
    }))
}

/// Checks a CA bundle: readable, every certificate parses, at least one is within its
/// validity. Expired or not-yet-valid certificates among valid ones draw warnings.
pub fn check_ca_bundle(path: &Path, now: OffsetDateTime) -> Result<TlsReport, TlsCheckError> {
    let ders = read_certs(path)?;
    let mut certs = Vec::new();
    let mut warnings = Vec::new();
    let mut first_error = None;
    let mut any_valid = false;
    for (i, der) in ders.iter().enumerate() {
        let s = summarize(path, i, der)?;
        match check_validity(path, &s, now) {
            Ok(w) => {
                any_valid = true;
                warnings.extend(w);
            }
            Err(e) => {
                warnings.push(format!("certificate #{} of the bundle: {e}", i + 1));
                first_error.get_or_insert(e);
            }
        }
        certs.push(s);
    }
    match first_error {
        Some(e) if !any_valid => Err(e),
        _ => Ok(TlsReport { certs, warnings }),
    }
}

/// Checks a client certificate chain and its key: both parse, the key matches the first
/// (end-entity) certificate, that certificate is within its validity, and — when `device_id`
/// is given — its CN equals the device id.
pub fn check_client_pair(
    cert_path: &Path,
    key_path: &Path,
    device_id: Option<&str>,
    now: OffsetDateTime,
) -> Result<TlsReport, TlsCheckError> {
    let ders = read_certs(cert_path)?;
    let certs = ders
        .iter()
        .enumerate()
        .map(|(i, d)| summarize(cert_path, i, d))
        .collect::<Result<Vec<_>, _>>()?;
    let key = read_private_key(key_path)?;
    let spki = public_key_of(key_path, &key)?;
    let leaf = &certs[0];
    if spki != leaf.spki_der {
        return Err(TlsCheckError::KeyMismatch {
            cert: cert_path.to_path_buf(),
            key: key_path.to_path_buf(),
        });
    }
    let mut warnings: Vec<String> = check_validity(cert_path, leaf, now)?.into_iter().collect();
    for (i, c) in certs.iter().enumerate().skip(1) {
        if let Err(e) = check_validity(cert_path, c, now) {
            warnings.push(format!("certificate #{} of the chain: {e}", i + 1));
        }
    }
    if let Some(id) = device_id
        && leaf.subject_cn.as_deref() != Some(id)
    {
        return Err(TlsCheckError::CnMismatch {
            path: cert_path.to_path_buf(),
            cn: leaf.subject_cn.clone(),
            device_id: id.to_owned(),
        });
    }
    Ok(TlsReport { certs, warnings })
}

#[cfg(test)]
mod tests;

/// Whether the client chain in `cert_path` chains to a CA of the bundle in `ca_path` at
/// `now`, checked as a broker that trusts only that bundle checks it (webpki, client-auth
/// usage): `None` when it does, else the reason (e.g. `UnknownIssuer`). The bundle verifies
/// the broker; a broker may trust another CA for clients, so callers report this as a
/// warning.
pub fn chain_mismatch(
    cert_path: &Path,
    ca_path: &Path,
    now: OffsetDateTime,
) -> Result<Option<String>, TlsCheckError> {
    let chain = read_certs(cert_path)?;
    let mut roots = rustls::RootCertStore::empty();
    let (_, unusable) = roots.add_parsable_certificates(read_certs(ca_path)?);
    if roots.is_empty() {
        return Ok(Some(format!(
            "none of the {unusable} certificate(s) of the bundle is a usable CA"
        )));
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
            .build()
            .map_err(|e| TlsCheckError::Pem {
                path: ca_path.to_path_buf(),
                reason: e.to_string(),
            })?;
    let secs = u64::try_from(now.unix_timestamp()).unwrap_or(0);
    let time = rustls::pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs));
    Ok(verifier
        .verify_client_cert(&chain[0], &chain[1..], time)
        .err()
        .map(|e| e.to_string()))
}
