//! The store's JITR tables (`cloud.md` §16, migration 0005): issued bootstrap certificates and
//! their revocations, enrolled devices, and the stored enrollment answers of `omega_idempotency`.
//!
//! A separate trait from [`super::StoreTx`] so the enrollment service needs only these calls;
//! both transaction types implement it.

use std::future::Future;

use time::OffsetDateTime;

use super::StoreResult;

/// A bootstrap certificate issued by `omega cloud bootstrap-cert issue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapRecord {
    /// Serial, lower-case hex without separators or leading zeros.
    pub serial: String,
    /// The fleet's organisation.
    pub org_id: String,
    /// The fleet.
    pub fleet_id: String,
    /// Most devices this certificate may enroll.
    pub max_devices: i64,
    /// End of the certificate's validity.
    pub not_after: OffsetDateTime,
    /// When it was issued.
    pub issued_at: OffsetDateTime,
    /// When it was revoked, if it was.
    pub revoked_at: Option<OffsetDateTime>,
}

/// One enrolled device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentRecord {
    /// The device id (its name).
    pub device_id: String,
    /// The organisation.
    pub org_id: String,
    /// The fleet.
    pub fleet_id: String,
    /// The project, when the device sent one.
    pub project_id: Option<String>,
    /// Serial of the bootstrap certificate it enrolled with.
    pub bootstrap_serial: String,
    /// Hex SHA-256 of the enrolled public key (DER SubjectPublicKeyInfo).
    pub public_key_sha256: String,
    /// Serial of the issued device certificate.
    pub cert_serial: String,
    /// When it enrolled.
    pub enrolled_at: OffsetDateTime,
}

/// A stored answer for an `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnswer {
    /// What the request must match to replay (hex SHA-256).
    pub request_digest: String,
    /// HTTP status.
    pub status: i32,
    /// The JSON body.
    pub response: serde_json::Value,
    /// When it was stored.
    pub created_at: OffsetDateTime,
}

/// JITR reads and writes inside one transaction.
pub trait JitrTx: Send {
    /// Serialises enrollments of one fleet across processes (PostgreSQL advisory lock for the
    /// transaction; SQLite transactions already run one at a time).
    fn jitr_lock(
        &mut self,
        org_id: &str,
        fleet_id: &str,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// The stored answer of a key, of any age.
    fn answer_get(
        &mut self,
        key: &str,
    ) -> impl Future<Output = StoreResult<Option<StoredAnswer>>> + Send;

    /// Stores (or replaces) the answer of a key.
    fn answer_put(
        &mut self,
        key: &str,
        answer: &StoredAnswer,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// A bootstrap certificate by serial.
    fn bootstrap_get(
        &mut self,
        serial: &str,
    ) -> impl Future<Output = StoreResult<Option<BootstrapRecord>>> + Send;

    /// Records an issued bootstrap certificate.
    fn bootstrap_insert(
        &mut self,
        record: &BootstrapRecord,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Marks a bootstrap certificate revoked (keeping an earlier revocation time); false if
    /// the serial is unknown.
    fn bootstrap_revoke(
        &mut self,
        serial: &str,
        at: OffsetDateTime,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// An enrolled device by id.
    fn enrollment_get(
        &mut self,
        device_id: &str,
    ) -> impl Future<Output = StoreResult<Option<EnrollmentRecord>>> + Send;

    /// Devices enrolled in a fleet, and of those, with one bootstrap certificate.
    fn enrollment_counts(
        &mut self,
        org_id: &str,
        fleet_id: &str,
        bootstrap_serial: &str,
    ) -> impl Future<Output = StoreResult<(i64, i64)>> + Send;

    /// Records an enrolled device (and its `omega_devices` row with the enrollment data).
    fn enrollment_insert(
        &mut self,
        record: &EnrollmentRecord,
    ) -> impl Future<Output = StoreResult<()>> + Send;
}

/// The enrollment data kept in `omega_devices.enrollment`.
pub(crate) fn enrollment_json(r: &EnrollmentRecord) -> serde_json::Value {
    serde_json::json!({
        "org_id": r.org_id,
        "fleet_id": r.fleet_id,
        "project_id": r.project_id,
        "bootstrap_serial": r.bootstrap_serial,
        "cert_serial": r.cert_serial,
        "public_key_sha256": r.public_key_sha256,
    })
}
