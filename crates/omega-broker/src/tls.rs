//! Checks of the TLS files before the broker library reads them, so that a bad file is
//! reported by name and role with the fix, and the rustls crypto provider.

use std::path::Path;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsFiles;
use crate::error::BrokerError;

/// Checks that every file exists and holds what its role needs, and that the certificate and
/// key make a usable server configuration.
pub(crate) fn check(files: &TlsFiles) -> Result<(), BrokerError> {
    let chain = certs(&files.cert, "certificate")?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| BrokerError::Tls {
        role: "private key",
        path: files.key.clone(),
        reason: pem_reason(&e, "a PEM private key (PKCS#8, PKCS#1 or SEC1)"),
    })?;
    if let Some(ca) = &files.client_ca {
        let roots = certs(ca, "client CA")?;
        let mut store = rustls::RootCertStore::empty();
        for root in roots {
            store.add(root).map_err(|e| BrokerError::Tls {
                role: "client CA",
                path: ca.clone(),
                reason: format!("not a usable CA certificate: {e}"),
            })?;
        }
    }
    rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key))
        .map_err(|e| BrokerError::Tls {
            role: "private key",
            path: files.key.clone(),
            reason: format!(
                "does not work with the certificate {}: {e}",
                files.cert.display()
            ),
        })?;
    Ok(())
}

/// The broker library builds its rustls configuration with the process-wide default crypto
/// provider; install ring (the one the whole workspace uses) unless one is installed already.
pub(crate) fn install_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race with another thread installing one is fine: there is one then.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path, role: &'static str) -> Result<Vec<CertificateDer<'static>>, BrokerError> {
    let tls_err = |reason: String| BrokerError::Tls {
        role,
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| tls_err(pem_reason(&e, "PEM certificates")))?;
    if certs.is_empty() {
        return Err(tls_err(
            "holds no PEM certificate (expected `-----BEGIN CERTIFICATE-----`)".into(),
        ));
    }
    Ok(certs)
}

fn pem_reason(err: &pem::Error, expected: &str) -> String {
    match err {
        pem::Error::Io(io) => format!("cannot read it: {io}"),
        pem::Error::NoItemsFound => format!("holds no {expected}"),
        other => format!("is not valid PEM: {other}"),
    }
}
