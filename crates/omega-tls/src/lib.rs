//! # omega-tls
//!
//! The one place where Omega builds a rustls client configuration (ring provider, safe default
//! protocol versions) from PEM files: the agent's connection to the broker and the cloud's.
//! The server is always verified against the given CA bundle (system roots are not bundled,
//! so a CA file is required) under the host name of the broker URL, which the MQTT client
//! passes as the server name. A client certificate chain and key, when given, are sent for
//! mutual TLS; rustls refuses a key that does not belong to the certificate.
//!
//! [`check_client_validity`] tells whether the client certificate is within its validity
//! period now: an expired one would only be refused by the broker's handshake, over and over,
//! so the cloud checks it at startup.
//!
//! Errors name the file and, through [`TlsError::field`], the configuration key it came from,
//! so both sides can report `broker.tls.key: /etc/omega/cloud.key: …`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// PEM files for one TLS client, each with the configuration key that named it.
#[derive(Debug, Clone)]
pub struct ClientFiles<'a> {
    /// The CA bundle that signs the broker's certificate.
    pub ca: Option<&'a Path>,
    /// Its configuration key (e.g. `broker.tls.ca`), named also when the CA is missing.
    pub ca_field: &'a str,
    /// The client certificate chain and its key, for mTLS.
    pub client: Option<ClientPair<'a>>,
}

/// A client certificate chain and its private key, with their configuration keys.
#[derive(Debug, Clone)]
pub struct ClientPair<'a> {
    /// PEM certificate chain, end-entity first.
    pub cert: &'a Path,
    /// Its configuration key.
    pub cert_field: &'a str,
    /// PEM private key (PKCS#8, SEC1 or PKCS#1).
    pub key: &'a Path,
    /// Its configuration key.
    pub key_field: &'a str,
}

/// Why a client configuration cannot be built. Every variant names the field and the file.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {}: {reason}", path.display())]
pub struct TlsError {
    /// The configuration key (`broker.tls.ca`, `connection.mqtt.tls.client_key_path`…).
    pub field: String,
    /// The file (`(none)` when a required file is missing).
    pub path: PathBuf,
    /// What is wrong.
    pub reason: String,
}

impl TlsError {
    fn new(field: &str, path: &Path, reason: impl Into<String>) -> Self {
        TlsError {
            field: field.to_owned(),
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }

    /// The configuration key.
    pub fn field(&self) -> &str {
        &self.field
    }
}

/// Reads every `CERTIFICATE` block of a PEM file (at least one).
pub fn read_certs(path: &Path, field: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let data = std::fs::read(path).map_err(|e| TlsError::new(field, path, e.to_string()))?;
    let certs = rustls_pemfile::certs(&mut data.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::new(field, path, format!("malformed PEM: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::new(field, path, "no PEM certificate found"));
    }
    Ok(certs)
}

/// Reads the first private key of a PEM file.
pub fn read_key(path: &Path, field: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    let data = std::fs::read(path).map_err(|e| TlsError::new(field, path, e.to_string()))?;
    rustls_pemfile::private_key(&mut data.as_slice())
        .map_err(|e| TlsError::new(field, path, format!("malformed PEM: {e}")))?
        .ok_or_else(|| TlsError::new(field, path, "no PEM private key found"))
}

/// Checks that the end-entity certificate of the pair is within its validity period now.
pub fn check_client_validity(pair: &ClientPair<'_>) -> Result<(), TlsError> {
    let chain = read_certs(pair.cert, pair.cert_field)?;
    check_validity(&chain[0], pair.cert, pair.cert_field)
}

/// Checks that the certificate is within its validity period now.
pub fn check_validity(der: &[u8], path: &Path, field: &str) -> Result<(), TlsError> {
    use x509_parser::prelude::{ASN1Time, FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| TlsError::new(field, path, format!("does not parse as X.509: {e}")))?;
    let v = cert.validity();
    let now = ASN1Time::now();
    if now > v.not_after {
        return Err(TlsError::new(
            field,
            path,
            format!("certificate expired on {}", v.not_after),
        ));
    }
    if now < v.not_before {
        return Err(TlsError::new(
            field,
            path,
            format!("certificate is not valid before {}", v.not_before),
        ));
    }
    Ok(())
}

/// A rustls client configuration that verifies the server against the CA bundle and sends
/// the client certificate when given.
pub fn client_config(files: &ClientFiles<'_>) -> Result<rustls::ClientConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let ca_field = files.ca_field;
    let ca = files.ca.ok_or_else(|| {
        TlsError::new(
            ca_field,
            Path::new("(unset)"),
            "a CA file is required for TLS (system roots are not bundled)",
        )
    })?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certs(ca, ca_field)? {
        roots
            .add(cert)
            .map_err(|e| TlsError::new(ca_field, ca, e.to_string()))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::new(ca_field, ca, e.to_string()))?
        .with_root_certificates(roots);
    match &files.client {
        Some(pair) => {
            let chain = read_certs(pair.cert, pair.cert_field)?;
            let key = read_key(pair.key, pair.key_field)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TlsError::new(pair.key_field, pair.key, e.to_string()))
        }
        None => Ok(builder.with_no_client_auth()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair};

    fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (c, k) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    #[test]
    fn a_ca_and_a_matching_pair_build_a_config() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, _) = write_pair(dir.path(), "ca");
        let (cert, key) = write_pair(dir.path(), "client");
        let files = ClientFiles {
            ca: Some(&ca),
            ca_field: "broker.tls.ca",
            client: Some(ClientPair {
                cert: &cert,
                cert_field: "broker.tls.cert",
                key: &key,
                key_field: "broker.tls.key",
            }),
        };
        let cfg = client_config(&files).unwrap();
        assert!(cfg.client_auth_cert_resolver.has_certs());
    }

    #[test]
    fn an_expired_client_certificate_fails_the_validity_check() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, _) = write_pair(dir.path(), "ca");
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["old".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        let (cert, k) = (dir.path().join("old.pem"), dir.path().join("old.key"));
        std::fs::write(&cert, params.self_signed(&key).unwrap().pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        let pair = ClientPair {
            cert: &cert,
            cert_field: "broker.tls.cert",
            key: &k,
            key_field: "broker.tls.key",
        };
        // The configuration builds (tests use it against brokers); the check refuses it.
        client_config(&ClientFiles {
            ca: Some(&ca),
            ca_field: "broker.tls.ca",
            client: Some(pair.clone()),
        })
        .unwrap();
        let e = check_client_validity(&pair).unwrap_err();
        assert_eq!(e.field(), "broker.tls.cert");
        assert!(e.to_string().contains("certificate expired on"), "{e}");
    }

    #[test]
    fn errors_name_the_field_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, _) = write_pair(dir.path(), "ca");
        let (cert, _) = write_pair(dir.path(), "client");
        let (_, other_key) = write_pair(dir.path(), "other");
        let missing = dir.path().join("missing.pem");
        let pair = |key: &'static str, k: &Path| -> Result<rustls::ClientConfig, TlsError> {
            client_config(&ClientFiles {
                ca: Some(&ca),
                ca_field: "broker.tls.ca",
                client: Some(ClientPair {
                    cert: &cert,
                    cert_field: "broker.tls.cert",
                    key: k,
                    key_field: key,
                }),
            })
        };
        let e = pair("broker.tls.key", &other_key).unwrap_err();
        assert_eq!(e.field(), "broker.tls.key");
        assert!(e.to_string().contains("other.key"), "{e}");
        let e = pair("broker.tls.key", &ca).unwrap_err();
        assert!(e.to_string().contains("no PEM private key"), "{e}");
        let e = client_config(&ClientFiles {
            ca: Some(&missing),
            ca_field: "broker.tls.ca",
            client: None,
        })
        .unwrap_err();
        assert!(e.to_string().starts_with("broker.tls.ca: "), "{e}");
        assert!(e.to_string().contains("missing.pem"), "{e}");
        let e = client_config(&ClientFiles {
            ca: None,
            ca_field: "broker.tls.ca",
            client: None,
        })
        .unwrap_err();
        assert!(e.to_string().starts_with("broker.tls.ca: "), "{e}");
        assert!(e.to_string().contains("CA file is required"), "{e}");
    }
}
