//! The pure decisions of an enrollment (`cloud.md` §16.2–16.3), in the spec's order: the
//! request parses; the bootstrap certificate chains to the fleet's `bootstrap_ca`, is within
//! validity and not revoked; the CSR parses, its signature verifies and its CN equals
//! `device_name`; the device name is free; the quota is not used up; and the 24 h replay of a
//! stored answer. No I/O: the service feeds in what the store holds.

use omega_protocol::jitr::EnrollRequest;
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::store::StoreError;
use crate::store::jitr::{BootstrapRecord, EnrollmentRecord, StoredAnswer};

/// How long a stored answer replays (§16.3).
pub const REPLAY_WINDOW: Duration = Duration::hours(24);

/// Why an enrollment is refused. [`JitrError::status`] and [`JitrError::code`] are the HTTP
/// status and error code of §16.3.
#[derive(Debug, thiserror::Error)]
pub enum JitrError {
    /// 400 `invalid_request`: the body is not the request of §16.2.
    #[error("{0}")]
    InvalidRequest(String),
    /// 404 `unknown_fleet`.
    #[error("no fleet `{org_id}/{fleet_id}` is configured for enrollment (jitr.fleets)")]
    UnknownFleet {
        /// `org_id` of the request.
        org_id: String,
        /// `fleet_id` of the request.
        fleet_id: String,
    },
    /// 400 `invalid_bootstrap_cert`: the message says which check failed.
    #[error("bootstrap certificate: {0}")]
    InvalidBootstrapCert(String),
    /// 400 `invalid_csr`.
    #[error("csr: {0}")]
    InvalidCsr(String),
    /// 403 `quota_exhausted`.
    #[error("{0}")]
    QuotaExhausted(String),
    /// 409 `device_name_in_use`.
    #[error("{0}")]
    DeviceNameInUse(String),
    /// 409 `enrollment_in_progress`: a request with the same key is being handled.
    #[error("an enrollment with this Idempotency-Key is in progress; retry later")]
    EnrollmentInProgress,
    /// The store failed (503 or 500; the detail is logged, not returned).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Signing the certificate failed (500).
    #[error("signing the device certificate: {0}")]
    Signing(String),
}

impl JitrError {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            JitrError::InvalidRequest(_)
            | JitrError::InvalidBootstrapCert(_)
            | JitrError::InvalidCsr(_) => 400,
            JitrError::UnknownFleet { .. } => 404,
            JitrError::QuotaExhausted(_) => 403,
            JitrError::DeviceNameInUse(_) | JitrError::EnrollmentInProgress => 409,
            JitrError::Store(e) if e.is_transient() => 503,
            JitrError::Store(_) | JitrError::Signing(_) => 500,
        }
    }

    /// The error code.
    pub fn code(&self) -> &'static str {
        match self {
            JitrError::InvalidRequest(_) => "invalid_request",
            JitrError::UnknownFleet { .. } => "unknown_fleet",
            JitrError::InvalidBootstrapCert(_) => "invalid_bootstrap_cert",
            JitrError::InvalidCsr(_) => "invalid_csr",
            JitrError::QuotaExhausted(_) => "quota_exhausted",
            JitrError::DeviceNameInUse(_) => "device_name_in_use",
            JitrError::EnrollmentInProgress => "enrollment_in_progress",
            JitrError::Store(e) if e.is_transient() => "store_unavailable",
            JitrError::Store(_) | JitrError::Signing(_) => "internal",
        }
    }
}

/// Parses the body of `POST /v1/jitr`; every field must be present and non-empty.
pub fn parse_request(body: &[u8]) -> Result<EnrollRequest, JitrError> {
    let req: EnrollRequest = serde_json::from_slice(body)
        .map_err(|e| JitrError::InvalidRequest(format!("body: {e}")))?;
    for (name, v) in [
        ("org_id", &req.org_id),
        ("fleet_id", &req.fleet_id),
        ("device_name", &req.device_name),
        ("csr", &req.csr),
        ("bootstrap_cert_pem", &req.bootstrap_cert_pem),
    ] {
        if v.trim().is_empty() {
            return Err(JitrError::InvalidRequest(format!("`{name}` is empty")));
        }
    }
    omega_protocol::topic::validate_device_id(&req.device_name)
        .map_err(|e| JitrError::InvalidRequest(format!("`device_name`: {e}")))?;
    // A device certificate with the cloud's broker identity as its CN would get the cloud's
    // rights over every device under the generated ACL (`docs/security.md`).
    if req.device_name == crate::broker_acl::DEFAULT_CLOUD_IDENTITY {
        return Err(JitrError::InvalidRequest(format!(
            "`device_name`: `{}` is the cloud's broker identity and cannot be a device",
            req.device_name
        )));
    }
    Ok(req)
}

/// A certificate serial as this crate writes it: lower-case hex, no separators, no leading
/// zeros (the form of `jitr.fleets[].revoked_serials`).
pub fn serial_hex(raw: &[u8]) -> String {
    let h = hex::encode(raw);
    let t = h.trim_start_matches('0');
    if t.is_empty() { "0".into() } else { t.into() }
}

/// What a chained, valid bootstrap certificate says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bootstrap {
    /// Its serial ([`serial_hex`]).
    pub serial: String,
    /// End of validity.
    pub not_after: OffsetDateTime,
}

pub(crate) fn pem_block(text: &str, label: &str) -> Result<Vec<u8>, String> {
    let mut rest = text.as_bytes();
    loop {
        let (r, pem) = x509_parser::pem::parse_x509_pem(rest)
            .map_err(|_| format!("no PEM `{label}` block"))?;
        if pem.label == label {
            return Ok(pem.contents);
        }
        rest = r;
    }
}

/// Chain and validity (§16.2): the certificate's issuer is the CA's subject, the CA's key
/// verifies its signature, and `now` is within its validity.
pub fn verify_bootstrap(
    pem: &str,
    ca_der: &[u8],
    now: OffsetDateTime,
) -> Result<Bootstrap, JitrError> {
    let bad = JitrError::InvalidBootstrapCert;
    let der = pem_block(pem, "CERTIFICATE").map_err(bad)?;
    let (_, cert) = X509Certificate::from_der(&der)
        .map_err(|e| bad(format!("does not parse as X.509: {e}")))?;
    let (_, ca) = X509Certificate::from_der(ca_der)
        .map_err(|e| bad(format!("the fleet's bootstrap_ca does not parse: {e}")))?;
    if cert.issuer().as_raw() != ca.subject().as_raw()
        || cert.verify_signature(Some(ca.public_key())).is_err()
    {
        return Err(bad(format!(
            "does not chain to the fleet's bootstrap CA (issuer `{}`, CA `{}`)",
            cert.issuer(),
            ca.subject()
        )));
    }
    let v = cert.validity();
    let (nb, na) = (v.not_before.to_datetime(), v.not_after.to_datetime());
    if now < nb {
        return Err(bad(format!("not valid before {nb}")));
    }
    if now > na {
        return Err(bad(format!("expired on {na}")));
    }
    Ok(Bootstrap {
        serial: serial_hex(cert.raw_serial()),
        not_after: na,
    })
}

/// Revocation and fleet binding (§16.2): the serial is not in the fleet's `revoked_serials`
/// nor revoked by `omega cloud bootstrap-cert revoke`, and a certificate issued by
/// `bootstrap-cert issue` is presented for the fleet it was issued to.
pub fn check_standing(
    boot: &Bootstrap,
    record: Option<&BootstrapRecord>,
    org_id: &str,
    fleet_id: &str,
    config_revoked: &[String],
) -> Result<(), JitrError> {
    let bad = JitrError::InvalidBootstrapCert;
    if config_revoked.iter().any(|s| s == &boot.serial) {
        return Err(bad(format!(
            "serial {} is revoked (jitr.fleets[].revoked_serials)",
            boot.serial
        )));
    }
    if let Some(r) = record {
        if let Some(at) = r.revoked_at {
            return Err(bad(format!("serial {} was revoked on {at}", boot.serial)));
        }
        if r.org_id != org_id || r.fleet_id != fleet_id {
            return Err(bad(format!(
                "serial {} was issued for fleet `{}/{}`, not `{org_id}/{fleet_id}`",
                boot.serial, r.org_id, r.fleet_id
            )));
        }
    }
    Ok(())
}

/// What a verified CSR carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Csr {
    /// DER SubjectPublicKeyInfo of the requested key.
    pub spki_der: Vec<u8>,
}

impl Csr {
    /// Hex SHA-256 of the public key.
    pub fn key_digest(&self) -> String {
        hex::encode(Sha256::digest(&self.spki_der))
    }
}

/// The CSR parses, its signature verifies and its CN equals `device_name` (§16.2).
pub fn verify_csr(pem: &str, device_name: &str) -> Result<Csr, JitrError> {
    let bad = JitrError::InvalidCsr;
    let der = pem_block(pem, "CERTIFICATE REQUEST").map_err(bad)?;
    let (_, csr) = X509CertificationRequest::from_der(&der)
        .map_err(|e| bad(format!("does not parse as PKCS#10: {e}")))?;
    csr.verify_signature()
        .map_err(|e| bad(format!("signature does not verify: {e}")))?;
    let info = &csr.certification_request_info;
    let cns: Vec<&str> = info
        .subject
        .iter_common_name()
        .filter_map(|c| c.as_str().ok())
        .collect();
    match cns.as_slice() {
        [cn] if *cn == device_name => {}
        [cn] => {
            return Err(bad(format!(
                "CN `{cn}` does not equal device_name `{device_name}`"
            )));
        }
        [] => return Err(bad("the subject has no CN".into())),
        _ => return Err(bad("the subject has several CNs".into())),
    }
    Ok(Csr {
        spki_der: info.subject_pki.raw.to_vec(),
    })
}

/// What a request must match to replay a stored answer: the ids and the public key.
pub fn request_digest(req: &EnrollRequest, csr: &Csr) -> String {
    let text = format!(
        "{}|{}|{}|{}|{}",
        req.org_id,
        req.fleet_id,
        req.project_id.as_deref().unwrap_or(""),
        req.device_name,
        csr.key_digest()
    );
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// What to do with a request given the answer stored under its key.
#[derive(Debug, Clone, PartialEq)]
pub enum Replay {
    /// No answer within 24 h: enroll.
    Fresh,
    /// The same request within 24 h: answer the stored body.
    Stored(serde_json::Value),
}

/// §16.3: the same key within 24 h replays the stored answer. The agent's CSR is signed
/// anew on each attempt (ECDSA signatures are randomised), so "the same request" means the
/// same ids and the same public key, not the same bytes; the same key with another public
/// key is another device claiming the name.
pub fn replay(
    stored: Option<StoredAnswer>,
    digest: &str,
    now: OffsetDateTime,
) -> Result<Replay, JitrError> {
    match stored {
        Some(a) if now - a.created_at < REPLAY_WINDOW => {
            if a.request_digest == digest {
                Ok(Replay::Stored(a.response))
            } else {
                Err(JitrError::DeviceNameInUse(
                    "this device name was enrolled within 24 h with another key pair".into(),
                ))
            }
        }
        _ => Ok(Replay::Fresh),
    }
}

/// The device name is free (§16.2), or held by the same fleet and public key — a device
/// renewing its certificate with the key it kept, which is not counted again. Returns
/// whether it is such a renewal.
pub fn name_free(
    existing: Option<&EnrollmentRecord>,
    req: &EnrollRequest,
    csr: &Csr,
) -> Result<bool, JitrError> {
    match existing {
        None => Ok(false),
        Some(e)
            if e.org_id == req.org_id
                && e.fleet_id == req.fleet_id
                && e.public_key_sha256 == csr.key_digest() =>
        {
            Ok(true)
        }
        Some(e) => Err(JitrError::DeviceNameInUse(format!(
            "device name `{}` is already enrolled (since {}) with another key or fleet",
            e.device_id, e.enrolled_at
        ))),
    }
}

/// The quotas (§16.2): the fleet's `max_devices` and the bootstrap certificate's
/// `--max-devices`, given the devices already enrolled in each.
pub fn check_quota(
    fleet_max: Option<u64>,
    fleet_count: i64,
    cert_max: Option<i64>,
    cert_count: i64,
    serial: &str,
) -> Result<(), JitrError> {
    if let Some(max) = fleet_max
        && u64::try_from(fleet_count).unwrap_or(0) >= max
    {
        return Err(JitrError::QuotaExhausted(format!(
            "the fleet's quota is used up: {fleet_count} of max_devices {max} enrolled"
        )));
    }
    if let Some(max) = cert_max
        && cert_count >= max
    {
        return Err(JitrError::QuotaExhausted(format!(
            "bootstrap certificate {serial}'s quota is used up: {cert_count} of {max} devices enrolled"
        )));
    }
    Ok(())
}

#[cfg(test)]
#[path = "check_tests.rs"]
mod tests;
