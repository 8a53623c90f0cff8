//! JITR enrollment (`agent.md` §17): with `connection.jitr` set and no usable device
//! certificate in `cert_dir`, the agent makes an ECDSA P-256 key and a CSR (CN =
//! `device_name`) with rcgen, posts once to `{api_base_url}/v1/jitr` with the fleet's
//! bootstrap certificate, and writes `device.crt` and `metadata.json` next to `device.key`.
//!
//! - "Usable" ([`current_certificate`]): `device.crt` and `device.key` parse, match, carry CN
//!   = device name, and stay valid for more than [`MIN_VALIDITY_LEFT`].
//! - The key is written (mode 0600) **before** the request and reused when present, so a
//!   replayed answer (same `Idempotency-Key` within 24 h) still matches the key.
//! - Every file is written atomically (temporary file in `cert_dir`, fsync, rename).
//! - One attempt: any failure is an [`EnrollError`] (the caller exits 1 with it; a supervisor
//!   restarts the agent).
//!
//! The HTTP client is hyper's HTTP/1.1 connection API over tokio (plain) or tokio-rustls
//! (`https://`, verified against `connection.mqtt.tls.ca_cert_path`, the agent's one trust
//! anchor); see `docs/jitr.md` for why.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use omega_protocol::jitr::{EnrollRequest, EnrollResponse, PATH, idempotency_key};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};
use time::OffsetDateTime;

use crate::config::Jitr;
use crate::tls_check;

/// A certificate with less validity left than this is renewed by enrolling again (24 h).
pub const MIN_VALIDITY_LEFT: time::Duration = time::Duration::hours(24);

/// How long the enrollment request may take, connect to last byte.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why enrollment failed. The message names the file, the URL or the server's error code.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    /// A file of `cert_dir` or the bootstrap certificate cannot be read or written.
    #[error("{}: {reason}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// `api_base_url` is not an `http://` or `https://` URL this client can use.
    #[error("connection.jitr.api_base_url `{url}`: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The request did not get an answer (connect, TLS, I/O, timeout).
    #[error("POST {url}: {reason}")]
    Http {
        /// The URL posted to.
        url: String,
        /// Why.
        reason: String,
    },
    /// The cloud refused the enrollment.
    #[error("POST {url} refused: {status} {code}: {message}")]
    Refused {
        /// The URL posted to.
        url: String,
        /// HTTP status.
        status: u16,
        /// The error code (`quota_exhausted`, `invalid_bootstrap_cert`, …).
        code: String,
        /// The server's message.
        message: String,
    },
    /// The cloud answered 200 with something unusable.
    #[error("POST {url}: unusable answer: {reason}")]
    BadAnswer {
        /// The URL posted to.
        url: String,
        /// Why.
        reason: String,
    },
    /// Making the key or the CSR failed.
    #[error("making the key or CSR: {0}")]
    Crypto(String),
}

/// What [`ensure_enrolled`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enrollment {
    /// `cert_dir` already held a usable certificate, valid until the given time.
    Current(OffsetDateTime),
    /// A new certificate was obtained and written, valid until the given time.
    Enrolled(OffsetDateTime),
}

/// The end of validity of `cert_dir`'s certificate when it is usable (see the module doc),
/// `None` when enrollment is needed.
pub fn current_certificate(j: &Jitr, now: OffsetDateTime) -> Option<OffsetDateTime> {
    let (cert, key) = (j.cert_path(), j.key_path());
    if !cert.exists() || !key.exists() {
        return None;
    }
    let report = tls_check::check_client_pair(&cert, &key, Some(&j.device_name), now).ok()?;
    let not_after = report.certs.first()?.not_after;
    (not_after - now > MIN_VALIDITY_LEFT).then_some(not_after)
}

/// Enrolls when needed (§17.1) and returns what happened. `ca_cert` verifies an `https://`
/// `api_base_url` (`connection.mqtt.tls.ca_cert_path`).
pub async fn ensure_enrolled(
    j: &Jitr,
    ca_cert: Option<&Path>,
    now: OffsetDateTime,
) -> Result<Enrollment, EnrollError> {
    if let Some(until) = current_certificate(j, now) {
        return Ok(Enrollment::Current(until));
    }
    std::fs::create_dir_all(&j.cert_dir).map_err(|e| EnrollError::File {
        path: j.cert_dir.clone(),
        reason: format!("cannot create the directory: {e}"),
    })?;
    let key = device_key(&j.key_path())?;
    let csr = make_csr(&key, &j.device_name)?;
    let bootstrap =
        std::fs::read_to_string(&j.bootstrap_cert_path).map_err(|e| EnrollError::File {
            path: j.bootstrap_cert_path.clone(),
            reason: format!("cannot read the bootstrap certificate: {e}"),
        })?;
    let request = EnrollRequest {
        org_id: j.org_id.clone(),
        fleet_id: j.fleet_id.clone(),
        project_id: j.project_id.clone(),
        device_name: j.device_name.clone(),
        csr,
        bootstrap_cert_pem: bootstrap,
    };
    let url = format!("{}{PATH}", j.api_base_url);
    let target = Target::parse(&url)?;
    let body = serde_json::to_vec(&request).map_err(|e| EnrollError::Crypto(e.to_string()))?;
    let idem = idempotency_key(&j.org_id, &j.fleet_id, &j.device_name);
    tracing::info!(url = %url, device = %j.device_name, "JITR: enrolling");
    let (status, answer) =
        tokio::time::timeout(REQUEST_TIMEOUT, post(&target, ca_cert, &idem, body))
            .await
            .map_err(|_| EnrollError::Http {
                url: url.clone(),
                reason: format!("no answer within {}s", REQUEST_TIMEOUT.as_secs()),
            })??;
    let response = read_answer(&url, status, &answer)?;
    let chain = check_chain(&url, &response, j, &key, now)?;
    write_atomic(&j.cert_path(), response.pem_cert_chain.as_bytes(), 0o644)?;
    write_atomic(&j.metadata_path(), metadata(&response).as_bytes(), 0o644)?;
    tracing::info!(device = %response.device_id, until = %chain, "JITR: enrolled");
    Ok(Enrollment::Enrolled(chain))
}

/// The device key: the one in `path` when it is a usable ECDSA P-256 key, else a new one
/// written there (mode 0600) before it is used.
fn device_key(path: &Path) -> Result<KeyPair, EnrollError> {
    if let Ok(text) = std::fs::read_to_string(path) {
        match KeyPair::from_pem(&text) {
            Ok(k) if k.algorithm() == &PKCS_ECDSA_P256_SHA256 => return Ok(k),
            _ => tracing::warn!(
                path = %path.display(),
                "JITR: device.key is not an ECDSA P-256 key: replacing it"
            ),
        }
    }
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| EnrollError::Crypto(e.to_string()))?;
    write_atomic(path, key.serialize_pem().as_bytes(), 0o600)?;
    Ok(key)
}

/// A PEM PKCS#10 request with CN = `device_name`.
pub fn make_csr(key: &KeyPair, device_name: &str) -> Result<String, EnrollError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, device_name);
    params.distinguished_name = dn;
    params
        .serialize_request(key)
        .and_then(|r| r.pem())
        .map_err(|e| EnrollError::Crypto(e.to_string()))
}

/// Parses the answer: 200 → the response; otherwise the error body of `cloud.md` §18.2.
pub fn read_answer(url: &str, status: u16, body: &[u8]) -> Result<EnrollResponse, EnrollError> {
    if status == 200 {
        return serde_json::from_slice(body).map_err(|e| EnrollError::BadAnswer {
            url: url.into(),
            reason: e.to_string(),
        });
    }
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let field = |k: &str| {
        v.pointer(&format!("/error/{k}"))
            .and_then(|s| s.as_str())
            .map(str::to_owned)
    };
    Err(EnrollError::Refused {
        url: url.into(),
        status,
        code: field("code").unwrap_or_else(|| "unknown".into()),
        message: field("message")
            .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()),
    })
}

/// The answer's chain must be for this device and this key; returns the end of validity.
fn check_chain(
    url: &str,
    r: &EnrollResponse,
    j: &Jitr,
    key: &KeyPair,
    now: OffsetDateTime,
) -> Result<OffsetDateTime, EnrollError> {
    let bad = |reason: String| EnrollError::BadAnswer {
        url: url.into(),
        reason,
    };
    if r.device_id != j.device_name {
        return Err(bad(format!(
            "device_id `{}` is not device_name `{}`",
            r.device_id, j.device_name
        )));
    }
    let ders = rustls_pemfile::certs(&mut r.pem_cert_chain.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("pem_cert_chain: {e}")))?;
    let leaf = ders
        .first()
        .ok_or_else(|| bad("pem_cert_chain holds no certificate".into()))?;
    let s = tls_check::summarize(Path::new("pem_cert_chain"), 0, leaf)
        .map_err(|e| bad(e.to_string()))?;
    if s.spki_der != rcgen::PublicKeyData::subject_public_key_info(key) {
        return Err(bad("the certificate is not for device.key".into()));
    }
    if s.subject_cn.as_deref() != Some(j.device_name.as_str()) {
        return Err(bad(format!("the certificate's CN is {:?}", s.subject_cn)));
    }
    tls_check::check_validity(Path::new("pem_cert_chain"), &s, now)
        .map_err(|e| bad(e.to_string()))?;
    Ok(s.not_after)
}

/// `metadata.json`: `device_id`, and `mqtt_broker_url` when the cloud returned one.
pub fn metadata(r: &EnrollResponse) -> String {
    let mut m = serde_json::Map::new();
    m.insert("device_id".into(), r.device_id.clone().into());
    if let Some(u) = &r.mqtt_broker_url {
        m.insert("mqtt_broker_url".into(), u.clone().into());
    }
    let mut text = serde_json::Value::Object(m).to_string();
    text.push('\n');
    text
}

/// Writes `bytes` to `path` through a temporary file in the same directory (created with
/// `mode`, synced, renamed over `path`, directory synced).
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), EnrollError> {
    let fail = |reason: String| EnrollError::File {
        path: path.to_path_buf(),
        reason,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let result = (|| {
        let mut f = options.open(&tmp)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok::<_, std::io::Error>(())
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        fail(format!("cannot write: {e}"))
    })
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `https://`.
    pub tls: bool,
    /// Host name or IP (without brackets).
    pub host: String,
    /// Port (80 / 443 by default).
    pub port: u16,
    /// `host[:port]` as sent in `Host`.
    pub authority: String,
    /// Path and query.
    pub path: String,
}

impl Target {
    /// Splits an `http://` or `https://` URL.
    pub fn parse(url: &str) -> Result<Target, EnrollError> {
        let bad = |reason: &str| EnrollError::Url {
            url: url.into(),
            reason: reason.into(),
        };
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(bad("must start with http:// or https://"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(bad("needs a host (and no user info)"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed `[`"))?;
            (h.to_string(), after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (authority.to_string(), None),
            }
        };
        if host.is_empty() {
            return Err(bad("needs a host"));
        }
        let port = match port {
            Some(p) => p.parse::<u16>().map_err(|_| bad("bad port"))?,
            None if tls => 443,
            None => 80,
        };
        Ok(Target {
            tls,
            host,
            port,
            authority: authority.to_string(),
            path: path.to_string(),
        })
    }
}

/// One HTTP/1.1 POST; returns the status and body.
async fn post(
    t: &Target,
    ca_cert: Option<&Path>,
    idempotency_key: &str,
    body: Vec<u8>,
) -> Result<(u16, Vec<u8>), EnrollError> {
    let url = format!(
        "{}://{}{}",
        if t.tls { "https" } else { "http" },
        t.authority,
        t.path
    );
    let http = |reason: String| EnrollError::Http {
        url: url.clone(),
        reason,
    };
    let tcp = tokio::net::TcpStream::connect((t.host.as_str(), t.port))
        .await
        .map_err(|e| http(format!("cannot connect: {e}")))?;
    let req = hyper::Request::post(&t.path)
        .header(hyper::header::HOST, &t.authority)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header("idempotency-key", idempotency_key)
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| http(e.to_string()))?;
    if t.tls {
        let files = crate::transport::TlsFiles {
            ca: ca_cert.map(Path::to_path_buf),
            client: None,
        };
        let config =
            crate::transport::rustls_config(files).map_err(|e| http(format!("TLS: {e}")))?;
        let name = rustls::pki_types::ServerName::try_from(t.host.clone())
            .map_err(|e| http(format!("server name: {e}")))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| http(format!("TLS: {e}")))?;
        exchange(hyper_util::rt::TokioIo::new(tls), req)
            .await
            .map_err(http)
    } else {
        exchange(hyper_util::rt::TokioIo::new(tcp), req)
            .await
            .map_err(http)
    }
}

async fn exchange<IO>(io: IO, req: hyper::Request<Full<Bytes>>) -> Result<(u16, Vec<u8>), String>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(conn);
    let resp = sender.send_request(req).await.map_err(|e| e.to_string());
    let out = match resp {
        Ok(r) => {
            let status = r.status().as_u16();
            let bytes = r
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok((status, bytes.to_vec()))
        }
        Err(e) => Err(e),
    };
    driver.abort();
    out
}

#[cfg(test)]
#[path = "enroll_tests.rs"]
mod tests;
