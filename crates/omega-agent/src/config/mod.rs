//! Agent configuration (`spec/agent.md` §2).
//!
//! Two layers: [`raw`] mirrors the YAML with `deny_unknown_fields`; [`AgentConfig`] is built
//! from it by a pure function ([`AgentConfig::from_yaml_str`]) that templates `{{ VAR }}`,
//! resolves every `x` / `x_env` pair, applies the defaults of [`defaults`], resolves relative
//! paths against the file's directory and checks every rule of the spec's tables. Nothing here
//! reads files or the process environment; [`AgentConfig::load`] is the thin reading wrapper.
//!
//! Errors are [`ConfigError`]s naming the file and YAML path; warnings are collected in
//! [`AgentConfig::findings`] with their paths.

mod connection;
pub mod defaults;
pub mod identity;
pub mod raw;
pub mod strategies;
mod validated;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use omega_config::{
    BrokerUrl, ConfigError, ConfigErrors, EnvLookup, ErrorKind, Findings, Scheme, Secret,
    TemplateVar, Transport, Warning,
};
pub use strategies::{
    Strategy, TableStrategies, TableStrategy, Telemetry, TsUnit, is_internal_table,
};

/// A validated agent configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The file it was loaded from (as given).
    pub file: PathBuf,
    /// `name`: appears in logs.
    pub name: Option<String>,
    /// `description`.
    pub description: Option<String>,
    /// `data_dir`, resolved.
    pub data_dir: PathBuf,
    /// `metrics.listen`, when the metrics endpoint is on.
    pub metrics_listen: Option<SocketAddr>,
    /// `connection`.
    pub connection: Connection,
    /// `security`.
    pub security: Security,
    /// `sqlite-replication`.
    pub replication: Replication,
    /// Warnings and `_env` resolutions found while loading.
    pub findings: Findings,
    /// Variables used by `{{ NAME }}` templates.
    pub template_vars: Vec<TemplateVar>,
}

/// `connection`.
#[derive(Debug, Clone)]
pub struct Connection {
    /// `server_url`.
    pub server_url: BrokerUrl,
    /// `fallback_url`: used after repeated QUIC failures.
    pub fallback_url: Option<BrokerUrl>,
    /// The device id: `device_id`, or `jitr.device_name`.
    pub device_id: String,
    /// The root topic with `{device_id}` replaced.
    pub root_topic: String,
    /// `mqtt`.
    pub mqtt: Mqtt,
    /// `jitr`, when enrollment is configured.
    pub jitr: Option<Jitr>,
}

impl Connection {
    /// The client certificate and key the agent presents: those in `jitr.cert_dir` when JITR
    /// is configured, else `mqtt.tls.client_cert_path` / `client_key_path`.
    pub fn client_cert(&self) -> Option<ClientCert> {
        match &self.jitr {
            Some(j) => Some(ClientCert {
                cert_path: j.cert_path(),
                key_path: j.key_path(),
            }),
            None => self.mqtt.tls.client.clone(),
        }
    }
}

/// The MQTT protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MqttVersion {
    /// MQTT 3.1.1.
    V311,
    /// MQTT 5.
    V5,
}

/// `connection.mqtt`. (`clean_session` is always false: a true value is refused.)
#[derive(Debug, Clone)]
pub struct Mqtt {
    /// `version`.
    pub version: MqttVersion,
    /// `keep_alive`.
    pub keep_alive: Duration,
    /// `session_expiry` (used with MQTT 5 only).
    pub session_expiry: Duration,
    /// `username`.
    pub username: Option<String>,
    /// The password read from the variable named by `password_env`.
    pub password: Option<Secret>,
    /// `tls`.
    pub tls: Tls,
}

/// `connection.mqtt.tls`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tls {
    /// `ca_cert_path`; `None` means the system roots.
    pub ca_cert_path: Option<PathBuf>,
    /// `client_cert_path` and `client_key_path`, set together.
    pub client: Option<ClientCert>,
}

/// A client certificate chain and its private key (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// The PEM certificate chain.
    pub cert_path: PathBuf,
    /// The PEM private key (PKCS#8, SEC1 or PKCS#1).
    pub key_path: PathBuf,
}

/// `connection.jitr` (`agent.md` §2.4, §17).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jitr {
    /// `api_base_url`: the agent posts to `{api_base_url}/v1/jitr`.
    pub api_base_url: String,
    /// `bootstrap_cert_path`: the fleet's bootstrap certificate.
    pub bootstrap_cert_path: PathBuf,
    /// `cert_dir`: where `device.key`, `device.crt` and `metadata.json` live.
    pub cert_dir: PathBuf,
    /// `org_id`.
    pub org_id: String,
    /// `fleet_id`.
    pub fleet_id: String,
    /// `project_id`.
    pub project_id: Option<String>,
    /// `device_name`: becomes the device id.
    pub device_name: String,
}

impl Jitr {
    /// `cert_dir/device.crt`.
    pub fn cert_path(&self) -> PathBuf {
        self.cert_dir.join("device.crt")
    }

    /// `cert_dir/device.key`.
    pub fn key_path(&self) -> PathBuf {
        self.cert_dir.join("device.key")
    }

    /// `cert_dir/metadata.json`.
    pub fn metadata_path(&self) -> PathBuf {
        self.cert_dir.join("metadata.json")
    }
}

/// `security`.
#[derive(Debug, Clone)]
pub struct Security {
    /// How control messages are verified.
    pub signed_control: SignedControl,
    /// `max_payload_bytes`: the largest control payload accepted.
    pub max_payload_bytes: u64,
}

/// `security.signed_control`: how controls are verified.
#[derive(Debug, Clone)]
pub enum SignedControl {
    /// `enabled: false`: signatures are not checked (a WARN at load and at startup).
    Disabled,
    /// Ed25519 with the public key at this path (SubjectPublicKeyInfo PEM).
    Ed25519 {
        /// `public_key_path`, resolved.
        public_key_path: PathBuf,
    },
    /// HMAC-SHA-256 with the secret from the variable named by `auth_token_env`.
    HmacSha256 {
        /// The secret.
        secret: Secret,
    },
}

/// `sqlite-replication.delivery` (`receipts.md` §5.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Prune when the cloud's signed receipt confirms (the default).
    Receipts,
    /// Prune on PUBACK (the original product's rule).
    Puback,
}

/// `sqlite-replication`.
#[derive(Debug, Clone)]
pub struct Replication {
    /// `source_db_path`, resolved.
    pub source_db_path: PathBuf,
    /// `state_db_path`, resolved.
    pub state_db_path: PathBuf,
    /// `flush_interval`.
    pub flush_interval: Duration,
    /// `local_retention_bytes`.
    pub local_retention_bytes: u64,
    /// `snapshot_on_first_run`.
    pub snapshot_on_first_run: bool,
    /// `delivery`.
    pub delivery: Delivery,
    /// `receipt_timeout`.
    pub receipt_timeout: Duration,
    /// `table_strategies`.
    pub table_strategies: TableStrategies,
}

impl AgentConfig {
    /// Builds a validated configuration from the file's text. `file_path` is named in errors
    /// and anchors relative paths; `env` reads variables. Returns the first error found.
    pub fn from_yaml_str(
        text: &str,
        file_path: &Path,
        env: EnvLookup<'_>,
    ) -> Result<AgentConfig, ConfigError> {
        Self::check_yaml_str(text, file_path, env).map_err(ConfigErrors::into_first)
    }

    /// Like [`AgentConfig::from_yaml_str`], but reports every error found (templating errors
    /// and YAML errors stop the load; the rules of the spec tables are all checked).
    pub fn check_yaml_str(
        text: &str,
        file_path: &Path,
        env: EnvLookup<'_>,
    ) -> Result<AgentConfig, ConfigErrors> {
        validated::build(text, file_path, env)
    }

    /// Reads the file, then [`AgentConfig::check_yaml_str`].
    pub fn load(path: &Path, env: EnvLookup<'_>) -> Result<AgentConfig, ConfigErrors> {
        let text = omega_config::read_config_file(path)?;
        Self::check_yaml_str(&text, path, env)
    }

    /// Warnings found while loading.
    pub fn warnings(&self) -> &[Warning] {
        &self.findings.warnings
    }
}

#[cfg(test)]
mod tests;
