//! The raw layer: serde types that mirror the client YAML key for key (`agent.md` §2.2–§2.7).
//!
//! Every struct denies unknown keys, every key is optional here (required keys are checked by
//! the validated layer, which can then name the `_env` form), and durations and sizes are
//! parsed as they are read so their errors carry the YAML path.

use std::collections::BTreeMap;

use omega_config::{ByteSize, Duration, Scalar};
use serde::Deserialize;
use serde_yaml_ng::Value;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgentConfig {
    /// `name`: appears in logs.
    pub name: Option<String>,
    /// `description`.
    pub description: Option<String>,
    /// `platform`: accepted for compatibility, ignored.
    pub platform: Option<Value>,
    /// `modules`: accepted for compatibility.
    pub modules: Option<RawModules>,
    /// `data_dir`.
    pub data_dir: Option<String>,
    /// `data_dir_env`.
    pub data_dir_env: Option<String>,
    /// `metrics`.
    pub metrics: Option<RawMetrics>,
    /// `connection`.
    pub connection: Option<RawConnection>,
    /// `security`.
    pub security: Option<RawSecurity>,
    /// `sqlite-replication`.
    #[serde(rename = "sqlite-replication")]
    pub sqlite_replication: Option<RawReplication>,
}

/// `modules`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModules {
    /// `modules.required`.
    pub required: Option<Vec<String>>,
    /// `modules.optional`.
    pub optional: Option<Vec<String>>,
}

/// `metrics`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// `metrics.listen`: address of the Prometheus endpoint.
    pub listen: Option<String>,
}

/// `connection`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConnection {
    /// `transport`: only `mqtt`.
    pub transport: Option<String>,
    /// `server_url`.
    pub server_url: Option<String>,
    /// `server_url_env`.
    pub server_url_env: Option<String>,
    /// `fallback_url`.
    pub fallback_url: Option<String>,
    /// `fallback_url_env`.
    pub fallback_url_env: Option<String>,
    /// `device_id`.
    pub device_id: Option<String>,
    /// `device_id_env`.
    pub device_id_env: Option<String>,
    /// `root_topic`.
    pub root_topic: Option<String>,
    /// `root_topic_env`.
    pub root_topic_env: Option<String>,
    /// `mqtt`.
    pub mqtt: Option<RawMqtt>,
    /// `jitr`.
    pub jitr: Option<RawJitr>,
    /// `cert_renewal`: accepted for compatibility, not implemented.
    pub cert_renewal: Option<Value>,
}

/// `connection.mqtt`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMqtt {
    /// `version`: `"3.1.1"` or `5`.
    pub version: Option<Scalar>,
    /// `keep_alive`.
    pub keep_alive: Option<Duration>,
    /// `clean_session`: must be false.
    pub clean_session: Option<bool>,
    /// `session_expiry` (MQTT 5).
    pub session_expiry: Option<Duration>,
    /// `username`.
    pub username: Option<String>,
    /// `username_env`.
    pub username_env: Option<String>,
    /// `password_env`: the variable holding the password.
    pub password_env: Option<String>,
    /// `tls`.
    pub tls: Option<RawTls>,
}

/// `connection.mqtt.tls`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// `ca_cert_path`.
    pub ca_cert_path: Option<String>,
    /// `ca_cert_path_env`.
    pub ca_cert_path_env: Option<String>,
    /// `client_cert_path`.
    pub client_cert_path: Option<String>,
    /// `client_cert_path_env`.
    pub client_cert_path_env: Option<String>,
    /// `client_key_path`.
    pub client_key_path: Option<String>,
    /// `client_key_path_env`.
    pub client_key_path_env: Option<String>,
}

/// `connection.jitr`: every key also has an `_env` form.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJitr {
    /// `api_base_url`.
    pub api_base_url: Option<String>,
    /// `api_base_url_env`.
    pub api_base_url_env: Option<String>,
    /// `bootstrap_cert_path`.
    pub bootstrap_cert_path: Option<String>,
    /// `bootstrap_cert_path_env`.
    pub bootstrap_cert_path_env: Option<String>,
    /// `cert_dir`.
    pub cert_dir: Option<String>,
    /// `cert_dir_env`.
    pub cert_dir_env: Option<String>,
    /// `org_id`.
    pub org_id: Option<String>,
    /// `org_id_env`.
    pub org_id_env: Option<String>,
    /// `fleet_id`.
    pub fleet_id: Option<String>,
    /// `fleet_id_env`.
    pub fleet_id_env: Option<String>,
    /// `project_id`.
    pub project_id: Option<String>,
    /// `project_id_env`.
    pub project_id_env: Option<String>,
    /// `device_name`.
    pub device_name: Option<String>,
    /// `device_name_env`.
    pub device_name_env: Option<String>,
}

/// `security`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecurity {
    /// `capabilities`: name → value; `sqlite-replication` must be `true`.
    pub capabilities: Option<BTreeMap<String, Value>>,
    /// `signed_control`.
    pub signed_control: Option<RawSignedControl>,
    /// `auth_token_env`: the variable holding the HMAC secret.
    pub auth_token_env: Option<String>,
    /// `max_payload_bytes`.
    pub max_payload_bytes: Option<ByteSize>,
    /// `rpc`: accepted for compatibility, ignored.
    pub rpc: Option<Value>,
    /// `max_storage_bytes`: accepted for compatibility, ignored.
    pub max_storage_bytes: Option<Value>,
    /// `expose_sensitive_telemetry`: accepted for compatibility, ignored.
    pub expose_sensitive_telemetry: Option<Value>,
}

/// `security.signed_control`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSignedControl {
    /// `enabled`.
    pub enabled: Option<bool>,
    /// `alg`: `ed25519` or `hmac-sha256`.
    pub alg: Option<RawAlg>,
    /// `public_key_path`.
    pub public_key_path: Option<String>,
    /// `public_key_path_env`.
    pub public_key_path_env: Option<String>,
    /// `allow_legacy_token`: `true` is refused.
    pub allow_legacy_token: Option<bool>,
}

/// `security.signed_control.alg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum RawAlg {
    /// `ed25519`.
    #[serde(rename = "ed25519")]
    Ed25519,
    /// `hmac-sha256`.
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
}

/// `sqlite-replication`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReplication {
    /// `source_db_path`.
    pub source_db_path: Option<String>,
    /// `source_db_path_env`.
    pub source_db_path_env: Option<String>,
    /// `state_db_path`.
    pub state_db_path: Option<String>,
    /// `state_db_path_env`.
    pub state_db_path_env: Option<String>,
    /// `flush_interval`.
    pub flush_interval: Option<Duration>,
    /// `local_retention_bytes`.
    pub local_retention_bytes: Option<ByteSize>,
    /// `snapshot_on_first_run`.
    pub snapshot_on_first_run: Option<bool>,
    /// `delivery`: `receipts` or `puback` (`receipts.md` §5.6).
    pub delivery: Option<RawDelivery>,
    /// `receipt_timeout` (`receipts.md` §5.3).
    pub receipt_timeout: Option<Duration>,
    /// `table_strategies`: table name → entry.
    pub table_strategies: Option<BTreeMap<String, RawTableStrategy>>,
}

/// `sqlite-replication.delivery`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawDelivery {
    /// Prune on the cloud's receipts.
    Receipts,
    /// Prune on PUBACK (the original product's rule).
    Puback,
}

/// One `table_strategies` entry.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTableStrategy {
    /// `strategy`.
    pub strategy: Option<RawStrategy>,
    /// `ts_column`: telemetry only, required there.
    pub ts_column: Option<String>,
    /// `include_columns`: telemetry only.
    pub include_columns: Option<Vec<String>>,
    /// `ts_unit`: telemetry only.
    pub ts_unit: Option<RawTsUnit>,
}

/// `strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawStrategy {
    /// `rows`.
    Rows,
    /// `telemetry`.
    Telemetry,
    /// `ignore`.
    Ignore,
}

/// `ts_unit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum RawTsUnit {
    /// Seconds.
    #[serde(rename = "s")]
    Seconds,
    /// Milliseconds.
    #[serde(rename = "ms")]
    Millis,
}
