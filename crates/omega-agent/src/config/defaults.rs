//! Every default of the agent configuration, in one place (`agent.md` §2, `receipts.md` §5).

use std::time::Duration;

/// `data_dir`, relative to the config file's directory.
pub const DATA_DIR: &str = "var/data";
/// `connection.transport`.
pub const TRANSPORT: &str = "mqtt";
/// `connection.root_topic`; `{device_id}` is replaced.
pub const ROOT_TOPIC: &str = "omega/{device_id}";
/// `connection.mqtt.version`.
pub const MQTT_VERSION: &str = "3.1.1";
/// `connection.mqtt.keep_alive`.
pub const KEEP_ALIVE: Duration = Duration::from_secs(30);
/// Lower bound of `keep_alive`.
pub const KEEP_ALIVE_MIN: Duration = Duration::from_secs(5);
/// Upper bound of `keep_alive` (the MQTT maximum of 65,535 s is a little above 18 h).
pub const KEEP_ALIVE_MAX: Duration = Duration::from_secs(18 * 3600);
/// `connection.mqtt.session_expiry` (MQTT 5).
pub const SESSION_EXPIRY: Duration = Duration::from_secs(168 * 3600);
/// Lower bound of `session_expiry`.
pub const SESSION_EXPIRY_MIN: Duration = Duration::from_secs(3600);
/// `connection.jitr.cert_dir`, under `data_dir`.
pub const JITR_CERT_DIR: &str = "{data_dir}/certs";
/// `security.signed_control.enabled`.
pub const SIGNED_CONTROL_ENABLED: bool = true;
/// `security.max_payload_bytes`: 64 KiB.
pub const MAX_PAYLOAD_BYTES: u64 = 64 * 1024;
/// `sqlite-replication.state_db_path`, under `data_dir`.
pub const STATE_DB_PATH: &str = "{data_dir}/sqlite-replication/state.db";
/// `sqlite-replication.flush_interval`.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(5);
/// Lower bound of `flush_interval`.
pub const FLUSH_INTERVAL_MIN: Duration = Duration::from_millis(100);
/// Upper bound of `flush_interval`.
pub const FLUSH_INTERVAL_MAX: Duration = Duration::from_secs(3600);
/// `sqlite-replication.local_retention_bytes`: 256 MiB.
pub const LOCAL_RETENTION_BYTES: u64 = 256 * 1024 * 1024;
/// Lower bound of `local_retention_bytes`: 1 MiB.
pub const LOCAL_RETENTION_MIN: u64 = 1024 * 1024;
/// `sqlite-replication.snapshot_on_first_run`.
pub const SNAPSHOT_ON_FIRST_RUN: bool = false;
/// `sqlite-replication.receipt_timeout`.
pub const RECEIPT_TIMEOUT: Duration = Duration::from_secs(30);
/// Lower bound of `receipt_timeout`.
pub const RECEIPT_TIMEOUT_MIN: Duration = Duration::from_secs(1);
/// The module this agent provides (`modules.required` / `modules.optional`).
pub const MODULE_NAME: &str = "sqlite-replication";
/// The capability the agent needs (`security.capabilities`).
pub const CAPABILITY: &str = "sqlite-replication";
