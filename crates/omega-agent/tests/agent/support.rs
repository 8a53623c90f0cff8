//! Shared fixtures: a source database with hostile tables, an application writer, a wire
//! recorder subscribed with an independent MQTT client, and the mirror rebuilt from the wire.

use std::path::{Path, PathBuf};
use std::time::Duration;

use omega_agent::engine::{Delivery, EngineConfig};
use omega_agent::run::RunConfig;
use omega_agent::transport::MqttSettings;
pub use omega_testkit::wire::{Wire, diff, source_rows};

/// Tables whose names and values are hostile on purpose.
pub const SCHEMA: &str = r#"
    PRAGMA journal_mode = WAL;
    CREATE TABLE "order" (id INTEGER PRIMARY KEY NOT NULL, item TEXT, qty INTEGER, price REAL);
    CREATE TABLE "a""b" (site TEXT NOT NULL, n INTEGER NOT NULL, payload BLOB, note, PRIMARY KEY (site, n)) WITHOUT ROWID;
    CREATE TABLE "naïve table" (k BLOB PRIMARY KEY NOT NULL, v REAL, t TEXT);
    CREATE TABLE no_pk (msg TEXT);
"#;

/// A fresh source database in `dir`.
pub fn source_db(dir: &Path) -> PathBuf {
    let path = dir.join("source.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(SCHEMA).unwrap();
    path
}

/// An application connection as a real app would open it.
pub fn app_conn(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn
}

/// A unique device id / root topic per test.
pub fn unique_device(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &omega_protocol::ids::new_v7().replace('-', "")[12..]
    )
}

/// A run configuration for a device on `broker_url`.
pub fn run_config(dir: &Path, source: &Path, device: &str, broker_url: &str) -> RunConfig {
    RunConfig {
        engine: EngineConfig {
            device_id: device.to_string(),
            root_topic: format!("omega/{device}"),
            source_db_path: source.to_path_buf(),
            state_db_path: dir.join("state").join("state.db"),
            strategies: omega_agent::config::TableStrategies::default(),
            delivery: Delivery::Puback,
            snapshot_on_first_run: false,
            local_retention_bytes: 0,
        },
        mqtt: MqttSettings {
            url: broker_url.to_string(),
            fallback_url: None,
            session_expiry: Duration::from_secs(3600),
            client_id: device.to_string(),
            keep_alive: Duration::from_secs(5),
            credentials: None,
            tls: None,
        },
        flush_interval: Duration::from_millis(100),
        receipt_timeout: Duration::from_secs(30),
        verification: omega_agent::downlink::Verification::Disabled,
        max_control_bytes: 65_536,
    }
}

/// Routes the agent's logs to the test output (`RUST_LOG` filters; default info).
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// Waits until the agent has installed `n` triggers in `source`, failing at once if the agent
/// task ended (with its error) instead.
pub async fn wait_for_triggers<T: std::fmt::Debug>(
    source: &Path,
    n: i64,
    agent: &tokio::task::JoinHandle<T>,
) {
    let conn = rusqlite::Connection::open(source).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let have: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE type = 'trigger'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        if have >= n {
            return;
        }
        assert!(
            !agent.is_finished(),
            "the agent stopped before installing its triggers"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "triggers not installed within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
