//! The raw layer: serde types that mirror `cloud.yaml` key for key (`cloud.md` §2, §16.1,
//! `receipts.md` §4.3). Every struct denies unknown keys; every key is optional here.

use omega_config::{ByteSize, Duration};
use serde::Deserialize;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCloudConfig {
    /// `broker`.
    pub broker: Option<RawBroker>,
    /// `ingest`.
    pub ingest: Option<RawIngest>,
    /// `store`.
    pub store: Option<RawStore>,
    /// `policy`.
    pub policy: Option<RawPolicy>,
    /// `control`.
    pub control: Option<RawControl>,
    /// `api`.
    pub api: Option<RawApi>,
    /// `receipts`.
    pub receipts: Option<RawReceipts>,
    /// `jitr`.
    pub jitr: Option<RawJitr>,
}

/// `broker`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBroker {
    /// `url`.
    pub url: Option<String>,
    /// `url_env`.
    pub url_env: Option<String>,
    /// `client_id`; `{hostname}` is replaced.
    pub client_id: Option<String>,
    /// `username_env`.
    pub username_env: Option<String>,
    /// `password_env`.
    pub password_env: Option<String>,
    /// `tls`.
    pub tls: Option<RawBrokerTls>,
    /// `mqtt_version`: `5` (default) or `"3.1.1"`, string or number.
    pub mqtt_version: Option<omega_config::Scalar>,
}

/// `broker.tls`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBrokerTls {
    /// `ca`: PEM CA bundle.
    pub ca: Option<String>,
    /// `cert`: PEM client certificate chain.
    pub cert: Option<String>,
    /// `key`: PEM private key.
    pub key: Option<String>,
}

/// `ingest`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIngest {
    /// `device_topic`: template with one `{device}` level.
    pub device_topic: Option<String>,
    /// `workers`.
    pub workers: Option<i64>,
    /// `shared_group`; empty means a plain subscription.
    pub shared_group: Option<String>,
}

/// `store`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// `url`.
    pub url: Option<String>,
    /// `url_env`.
    pub url_env: Option<String>,
}

/// `policy`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    /// `coalescing`.
    pub coalescing: Option<RawCoalescing>,
    /// `allow_additive_continue`.
    pub allow_additive_continue: Option<bool>,
    /// `auto_approve`.
    pub auto_approve: Option<bool>,
    /// `max_pending_rows_per_lineage`.
    pub max_pending_rows_per_lineage: Option<i64>,
    /// `max_pending_bytes_per_lineage`.
    pub max_pending_bytes_per_lineage: Option<ByteSize>,
    /// `resume_threshold_percent`.
    pub resume_threshold_percent: Option<i64>,
    /// `circuit_breaker_failures`.
    pub circuit_breaker_failures: Option<i64>,
    /// `tombstone_retention`.
    pub tombstone_retention: Option<Duration>,
}

/// `policy.coalescing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawCoalescing {
    /// `project`.
    Project,
    /// `per_device`.
    PerDevice,
    /// `none`: read as `per_device`.
    None,
}

/// `control`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawControl {
    /// `signing_key_path`.
    pub signing_key_path: Option<String>,
    /// `signing_key_path_env`.
    pub signing_key_path_env: Option<String>,
    /// `alg`.
    pub alg: Option<RawAlg>,
    /// `resend_after`.
    pub resend_after: Option<Duration>,
}

/// `control.alg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum RawAlg {
    /// `ed25519`.
    #[serde(rename = "ed25519")]
    Ed25519,
    /// `hmac-sha256`.
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
}

/// `api`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    /// `listen`.
    pub listen: Option<String>,
    /// `token_env`.
    pub token_env: Option<String>,
}

/// `receipts`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReceipts {
    /// `interval`.
    pub interval: Option<Duration>,
}

/// `jitr` (`cloud.md` §16.1).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJitr {
    /// `ca_cert`: the device CA certificate.
    pub ca_cert: Option<String>,
    /// `ca_key_path`.
    pub ca_key_path: Option<String>,
    /// `ca_key_path_env`.
    pub ca_key_path_env: Option<String>,
    /// `cert_validity`.
    pub cert_validity: Option<Duration>,
    /// `fleets`.
    pub fleets: Option<Vec<RawFleet>>,
}

/// One `jitr.fleets` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFleet {
    /// `org_id`.
    pub org_id: Option<String>,
    /// `fleet_id`.
    pub fleet_id: Option<String>,
    /// `bootstrap_ca`.
    pub bootstrap_ca: Option<String>,
    /// `max_devices`.
    pub max_devices: Option<i64>,
    /// `revoked_serials`.
    pub revoked_serials: Option<Vec<String>>,
}
