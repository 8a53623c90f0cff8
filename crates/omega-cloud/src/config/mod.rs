//! Cloud configuration (`spec/cloud.md` §2).
//!
//! Two layers, as for the agent: [`raw`] mirrors `cloud.yaml` with `deny_unknown_fields`;
//! [`CloudConfig`] is built from it by a pure function ([`CloudConfig::from_yaml_str`]) that
//! follows the shared loading rules of `agent.md` §2.1 (templating, `_env`, strict keys with
//! suggestions, relative paths, durations, sizes), applies the defaults of [`defaults`] and
//! checks every range. [`CloudConfig::apply_overrides`] applies the `serve` flags.

pub mod defaults;
pub mod raw;
mod validated;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use omega_config::{
    BrokerUrl, ConfigError, ConfigErrors, EnvLookup, ErrorKind, Findings, Secret, TemplateVar,
    Warning,
};
use omega_protocol::signing::ControlKey;
use omega_protocol::topic::DeviceTopicTemplate;

use crate::policy::Policy;

/// A validated `cloud.yaml`.
#[derive(Debug, Clone)]
pub struct CloudConfig {
    /// The file it was loaded from (as given).
    pub file: PathBuf,
    /// `broker`.
    pub broker: BrokerConfig,
    /// `ingest`.
    pub ingest: IngestConfig,
    /// `store`.
    pub store: StoreUrl,
    /// `policy`.
    pub policy: PolicyConfig,
    /// `control`.
    pub control: ControlConfig,
    /// `api`.
    pub api: ApiConfig,
    /// `receipts.interval`: at most one receipt per device per interval.
    pub receipts_interval: Duration,
    /// `jitr`, when the enrollment service is on.
    pub jitr: Option<JitrConfig>,
    /// Warnings and `_env` resolutions found while loading.
    pub findings: Findings,
    /// Variables used by `{{ NAME }}` templates.
    pub template_vars: Vec<TemplateVar>,
}

/// `broker`.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// `url` (default `mqtt://127.0.0.1:1883`).
    pub url: BrokerUrl,
    /// `client_id` template; `{hostname}` is replaced by [`BrokerConfig::client_id_for`].
    pub client_id: String,
    /// The username, from the variable named by `username_env`.
    pub username: Option<String>,
    /// The password, from the variable named by `password_env`.
    pub password: Option<Secret>,
    /// `tls.ca`.
    pub ca: Option<PathBuf>,
    /// `tls.cert` and `tls.key`, set together.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// `mqtt_version` **[Omega]**: `5` (default) or `"3.1.1"` for brokers without MQTT 5.
    pub mqtt_version: crate::ingest::link::MqttVersion,
}

impl BrokerConfig {
    /// The MQTT client id of this process: the template with `{hostname}` replaced.
    pub fn client_id_for(&self, hostname: &str) -> String {
        self.client_id.replace("{hostname}", hostname)
    }
}

/// `ingest`.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// `device_topic`, parsed (`protocol.md` §2.4).
    pub device_topic: DeviceTopicTemplate,
    /// `workers`: concurrent batch handlers in this process, 1–256.
    pub workers: u32,
    /// `shared_group`; `None` for a plain subscription (one process only).
    pub shared_group: Option<String>,
}

/// `store.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// `postgres://…` or `postgresql://…`, as written (may hold a password: do not log it).
    Postgres(String),
    /// `sqlite://PATH`, the path resolved against the config file's directory.
    Sqlite(PathBuf),
}

/// `policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyConfig {
    /// `coalescing`, `auto_approve`, `allow_additive_continue`.
    pub schema: Policy,
    /// `max_pending_rows_per_lineage`.
    pub max_pending_rows_per_lineage: u64,
    /// `max_pending_bytes_per_lineage`.
    pub max_pending_bytes_per_lineage: u64,
    /// `resume_threshold_percent`, 1–99.
    pub resume_threshold_percent: u8,
    /// `circuit_breaker_failures`, at least 1.
    pub circuit_breaker_failures: u32,
    /// `tombstone_retention`.
    pub tombstone_retention: Duration,
}

/// The control-signing algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlAlg {
    /// Ed25519 with a PKCS#8 PEM private key (`control.key`).
    Ed25519,
    /// HMAC-SHA-256 with a shared secret read from a file.
    HmacSha256,
}

/// `control`.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    /// `signing_key_path`, resolved.
    pub signing_key_path: PathBuf,
    /// `alg`.
    pub alg: ControlAlg,
    /// `resend_after`.
    pub resend_after: Duration,
}

impl ControlConfig {
    /// Reads the signing key file (`config_file` is named in errors): a PKCS#8 PEM Ed25519
    /// key, or for HMAC the secret (one trailing newline ignored).
    pub fn read_key(&self, config_file: &Path) -> Result<ControlKey, ConfigError> {
        let file = config_file.display().to_string();
        let path = "control.signing_key_path";
        let shown = self.signing_key_path.display().to_string();
        let bytes = std::fs::read(&self.signing_key_path).map_err(|e| {
            ConfigError::invalid(
                file.clone(),
                path,
                Some(&shown),
                format!("cannot read: {e}"),
            )
        })?;
        let key = match self.alg {
            ControlAlg::Ed25519 => std::str::from_utf8(&bytes)
                .map_err(|_| "not PEM text".to_owned())
                .and_then(|pem| ControlKey::ed25519_from_pkcs8_pem(pem).map_err(|e| e.to_string())),
            ControlAlg::HmacSha256 => {
                let secret = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
                let secret = secret.strip_suffix(b"\r").unwrap_or(secret);
                ControlKey::hmac(secret).map_err(|e| e.to_string())
            }
        };
        key.map_err(|e| ConfigError::invalid(file, path, Some(&shown), e))
    }
}

/// `api`.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// `listen`.
    pub listen: SocketAddr,
    /// The bearer token, from the variable named by `token_env` (required off loopback).
    pub token: Option<Secret>,
}

/// `jitr` (`cloud.md` §16.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JitrConfig {
    /// `ca_cert`: signs device certificates.
    pub ca_cert: PathBuf,
    /// `ca_key_path`: the device CA's private key.
    pub ca_key_path: PathBuf,
    /// `cert_validity`.
    pub cert_validity: Duration,
    /// `fleets`.
    pub fleets: Vec<Fleet>,
}

/// One fleet allowed to enroll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fleet {
    /// `org_id`.
    pub org_id: String,
    /// `fleet_id`.
    pub fleet_id: String,
    /// `bootstrap_ca`: the CA of the fleet's bootstrap certificates.
    pub bootstrap_ca: PathBuf,
    /// `max_devices`; `None` means no quota.
    pub max_devices: Option<u64>,
    /// `revoked_serials`, lower-case hex without separators.
    pub revoked_serials: Vec<String>,
}

impl CloudConfig {
    /// Builds a validated configuration from the file's text (`file_path` is named in errors
    /// and anchors relative paths). Returns the first error found.
    pub fn from_yaml_str(
        text: &str,
        file_path: &Path,
        env: EnvLookup<'_>,
    ) -> Result<CloudConfig, ConfigError> {
        Self::check_yaml_str(text, file_path, env).map_err(ConfigErrors::into_first)
    }

    /// Like [`CloudConfig::from_yaml_str`], reporting every error found.
    pub fn check_yaml_str(
        text: &str,
        file_path: &Path,
        env: EnvLookup<'_>,
    ) -> Result<CloudConfig, ConfigErrors> {
        validated::build(text, file_path, env)
    }

    /// Reads the file, then [`CloudConfig::check_yaml_str`].
    pub fn load(path: &Path, env: EnvLookup<'_>) -> Result<CloudConfig, ConfigErrors> {
        let text = omega_config::read_config_file(path)?;
        Self::check_yaml_str(&text, path, env)
    }

    /// Applies the `omega cloud serve` flags over the file: `--broker URL` (`broker.url`),
    /// `--store URL` (`store.url`), `--http ADDR` (`api.listen`), `--workers N`
    /// (`ingest.workers`). Each is checked by the file's rules; errors name the flag.
    pub fn apply_overrides(
        &mut self,
        broker: Option<&str>,
        store: Option<&str>,
        http: Option<&str>,
        workers: Option<u32>,
    ) -> Result<(), ConfigError> {
        validated::apply_overrides(self, broker, store, http, workers)
    }

    /// Warnings found while loading.
    pub fn warnings(&self) -> &[Warning] {
        &self.findings.warnings
    }
}

#[cfg(test)]
mod tests;
