//! Shared fixtures: a source database with hostile tables, an application writer, a wire
//! recorder subscribed with an independent MQTT client, and the mirror rebuilt from the wire.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use omega_agent::engine::{Delivery, EngineConfig};
use omega_agent::run::RunConfig;
use omega_agent::transport::MqttSettings;
use omega_protocol::message::{Op, RowBatch};
use omega_protocol::topic::Suffix;
use omega_protocol::validate::{DeviceMessage, decode_device_message};
use omega_protocol::value::SqlValue;
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};

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
        },
        mqtt: MqttSettings {
            url: broker_url.to_string(),
            client_id: device.to_string(),
            keep_alive: Duration::from_secs(5),
            credentials: None,
            tls: None,
        },
        flush_interval: Duration::from_millis(100),
        receipt_timeout: Duration::from_secs(30),
    }
}

/// Rows by table, then by canonical pk.
pub type Tables = BTreeMap<String, BTreeMap<String, Vec<(String, SqlValue)>>>;
type Best = BTreeMap<(String, String), ((String, i64), Option<Vec<(String, SqlValue)>>)>;

/// Every row batch seen on the wire for one device, decoded by the protocol's validator.
#[derive(Clone, Default)]
pub struct Wire {
    /// Batches in arrival order.
    pub batches: Arc<Mutex<Vec<RowBatch>>>,
}

impl Wire {
    /// Subscribes to `omega/{device}/sync/rows/batch` on `addr` and records what arrives.
    /// Returns once the subscription is acknowledged.
    pub async fn record(addr: std::net::SocketAddr, device: &str) -> Wire {
        let wire = Wire::default();
        let mut o = MqttOptions::new(format!("rec-{device}"), addr.ip().to_string(), addr.port());
        o.set_max_packet_size(64 << 20, 64 << 20);
        o.set_keep_alive(Duration::from_secs(5));
        let (client, mut el) = AsyncClient::new(o, 64);
        client
            .subscribe(format!("omega/{device}/sync/rows/batch"), QoS::AtLeastOnce)
            .await
            .unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut tx = Some(tx);
        let batches = wire.batches.clone();
        tokio::spawn(async move {
            let _client = client;
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Incoming::SubAck(_))) => {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Incoming::Publish(p))) => {
                        match decode_device_message(Suffix::RowsBatch, &p.payload) {
                            Ok(DeviceMessage::RowBatch(b)) => batches.lock().unwrap().push(b),
                            other => panic!("agent published an invalid batch: {other:?}"),
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), rx)
            .await
            .expect("SUBACK within 10 s")
            .unwrap();
        wire
    }

    /// The mirror the wire implies: per table, per canonical pk, the change with the greatest
    /// (epoch, commit_seq); deleted rows removed.
    pub fn mirror(&self) -> Tables {
        let mut best: Best = BTreeMap::new();
        for b in self.batches.lock().unwrap().iter() {
            for r in &b.rows {
                let key = (
                    b.source_table.clone(),
                    omega_protocol::pk::canonical_pk(&r.pk),
                );
                let version = (b.journal_epoch.clone(), r.commit_seq);
                let row = if r.op == Op::Delete {
                    None
                } else {
                    r.row.clone()
                };
                match best.get(&key) {
                    Some((v, _)) if *v >= version => {}
                    _ => {
                        best.insert(key, (version, row));
                    }
                }
            }
        }
        let mut out: Tables = BTreeMap::new();
        for ((table, pk), (_, row)) in best {
            if let Some(row) = row {
                out.entry(table).or_default().insert(pk, row);
            }
        }
        out
    }
}

/// The source's current rows in the same shape as [`Wire::mirror`].
pub fn source_rows(path: &Path, tables: &[&str]) -> Tables {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut out: Tables = BTreeMap::new();
    for t in tables {
        let spec = omega_agent::capture::TableSpec::read(&conn, t).unwrap();
        let sql = format!(
            "SELECT {} FROM {}",
            spec.column_list(),
            omega_agent::sql::quote_ident(t)
        );
        let mut stmt = conn.prepare(&sql).unwrap();
        let mut rows = stmt.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            let mut row = Vec::new();
            for (i, c) in spec.columns.iter().enumerate() {
                let cell = omega_agent::source::cell::Cell::from_ref(r.get_ref(i).unwrap());
                row.push((c.clone(), cell.to_wire().0));
            }
            let pk: Vec<(String, SqlValue)> = spec
                .key_columns
                .iter()
                .map(|k| row.iter().find(|(c, _)| c == k).unwrap().clone())
                .collect();
            out.entry(t.to_string())
                .or_default()
                .insert(omega_protocol::pk::canonical_pk(&pk), row);
        }
    }
    out
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

/// A short description of how two table sets differ (for assertion messages).
pub fn diff(got: &Tables, want: &Tables) -> String {
    let mut out = Vec::new();
    for (t, rows) in want {
        let g = got.get(t).cloned().unwrap_or_default();
        let missing: Vec<_> = rows
            .keys()
            .filter(|k| !g.contains_key(*k))
            .take(3)
            .collect();
        let extra: Vec<_> = g
            .keys()
            .filter(|k| !rows.contains_key(*k))
            .take(3)
            .collect();
        let changed: Vec<_> = rows
            .iter()
            .filter(|(k, v)| g.get(*k).is_some_and(|gv| gv != *v))
            .map(|(k, v)| (k, v, &g[k]))
            .take(2)
            .collect();
        if !missing.is_empty() || !extra.is_empty() || !changed.is_empty() {
            out.push(format!(
                "{t}: want {} got {}; missing {missing:?}; extra {extra:?}; changed {changed:?}",
                rows.len(),
                g.len()
            ));
        }
    }
    out.join("\n")
}
