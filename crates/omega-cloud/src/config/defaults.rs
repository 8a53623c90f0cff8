//! Every default of `cloud.yaml`, in one place (`cloud.md` §2, §16.1, `receipts.md` §4.3).

use std::time::Duration;

/// `broker.url`.
pub const BROKER_URL: &str = "mqtt://127.0.0.1:1883";
/// `broker.client_id`; `{hostname}` is replaced.
pub const CLIENT_ID: &str = "omega-cloud-{hostname}";
/// `ingest.device_topic`.
pub const DEVICE_TOPIC: &str = "omega/{device}";
/// `ingest.workers`.
pub const WORKERS: u32 = 4;
/// Bounds of `ingest.workers`.
pub const WORKERS_RANGE: (u32, u32) = (1, 256);
/// `ingest.shared_group`.
pub const SHARED_GROUP: &str = "omega-ingest";
/// `store.url`, relative to the config file's directory.
pub const STORE_URL: &str = "sqlite://omega-cloud.db";
/// `policy.max_pending_rows_per_lineage`.
pub const MAX_PENDING_ROWS: u64 = 100_000;
/// `policy.max_pending_bytes_per_lineage`: 1 GiB.
pub const MAX_PENDING_BYTES: u64 = 1 << 30;
/// `policy.resume_threshold_percent`.
pub const RESUME_THRESHOLD_PERCENT: u8 = 80;
/// `policy.circuit_breaker_failures`.
pub const CIRCUIT_BREAKER_FAILURES: u32 = 5;
/// `policy.tombstone_retention`.
pub const TOMBSTONE_RETENTION: Duration = Duration::from_secs(168 * 3600);
/// Lower bound of `tombstone_retention`.
pub const TOMBSTONE_RETENTION_MIN: Duration = Duration::from_secs(60);
/// `control.resend_after`.
pub const RESEND_AFTER: Duration = Duration::from_secs(30);
/// Lower bound of `resend_after`.
pub const RESEND_AFTER_MIN: Duration = Duration::from_secs(1);
/// `api.listen`.
pub const API_LISTEN: &str = "127.0.0.1:8080";
/// `receipts.interval`.
pub const RECEIPTS_INTERVAL: Duration = Duration::from_secs(1);
/// Bounds of `receipts.interval`.
pub const RECEIPTS_INTERVAL_RANGE: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(3600));
/// `jitr.cert_validity` (90 days).
pub const CERT_VALIDITY: Duration = Duration::from_secs(2160 * 3600);
/// Lower bound of `cert_validity`.
pub const CERT_VALIDITY_MIN: Duration = Duration::from_secs(3600);
