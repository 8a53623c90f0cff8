//! `omega agent run` as a process: kill -9 at random points, broker restarts without
//! persistence, `agent status`. The wire is read by an independent MQTT client; at the end the
//! mirror the wire implies equals the source.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use omega_testkit::mosquitto::{Mosquitto, machine_broker};
use omega_testkit::wire::{Wire, diff, source_rows};

const SCHEMA: &str = r#"
    PRAGMA journal_mode = WAL;
    CREATE TABLE readings (id INTEGER PRIMARY KEY NOT NULL, sensor TEXT NOT NULL, value REAL, raw BLOB);
    CREATE TABLE "order" (k TEXT NOT NULL, n INTEGER NOT NULL, qty INTEGER, PRIMARY KEY (k, n)) WITHOUT ROWID;
"#;
const TABLES: [&str; 2] = ["readings", "order"];

/// An agent process, killed when dropped so that a failing test leaves none behind.
struct Agent(Child);

impl std::ops::Deref for Agent {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Agent {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Device {
    dir: tempfile::TempDir,
    id: String,
}

impl Device {
    fn new(prefix: &str, broker_url: &str) -> Device {
        let dir = tempfile::tempdir().unwrap();
        let id = format!(
            "{prefix}-{}",
            &omega_protocol::ids::new_v7().replace('-', "")[12..]
        );
        rusqlite::Connection::open(dir.path().join("source.db"))
            .unwrap()
            .execute_batch(SCHEMA)
            .unwrap();
        let config = format!(
            r#"name: {id}
connection:
  server_url: {broker_url}
  device_id: {id}
  mqtt:
    keep_alive: 5s
security:
  capabilities: {{ sqlite-replication: true }}
  signed_control: {{ enabled: false }}
sqlite-replication:
  source_db_path: source.db
  state_db_path: state/state.db
  flush_interval: 100ms
  delivery: puback
"#
        );
        std::fs::write(dir.path().join("device.yaml"), config).unwrap();
        Device { dir, id }
    }

    fn source(&self) -> PathBuf {
        self.dir.path().join("source.db")
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("device.yaml")
    }

    /// Starts the agent and, the first time, waits until its capture triggers exist: rows
    /// written before that would need the enrollment snapshot (issue #8).
    fn start_captured(&self) -> Agent {
        let mut child = self.start();
        let conn = rusqlite::Connection::open(self.source()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let n: i64 = conn
                .query_row(
                    "SELECT count(*) FROM sqlite_schema WHERE type = 'trigger'",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            if n >= 4 * TABLES.len() as i64 {
                return child;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the agent exited ({status}) before installing its triggers");
            }
            assert!(
                Instant::now() < deadline,
                "triggers not installed within 30 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn start(&self) -> Agent {
        Command::new(env!("CARGO_BIN_EXE_omega"))
            .args(["agent", "run", "--config"])
            .arg(self.config())
            .env(
                "RUST_LOG",
                std::env::var("OMEGA_TEST_AGENT_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map(Agent)
            .expect("start omega agent run")
    }
}

/// Writes `rounds` transactions of inserts, updates and deletes; every write must succeed.
fn app_writes(source: &Path, start: i64, rounds: i64) {
    let conn = crate::support::app_conn(source);
    for r in start..start + rounds {
        let tx = conn.unchecked_transaction().unwrap();
        for i in 0..25 {
            let id = r * 100 + i;
            tx.execute(
                "INSERT INTO readings (id, sensor, value, raw) VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![
                    id,
                    format!("s{}", i % 4),
                    id as f64 / 3.0,
                    vec![i as u8; (i % 5) as usize]
                ],
            )
            .unwrap();
            tx.execute(
                r#"INSERT INTO "order" (k, n, qty) VALUES (?1, ?2, ?3) ON CONFLICT DO UPDATE SET qty = qty + 1"#,
                rusqlite::params![format!("k{}", i % 7), r % 5, i],
            )
            .unwrap();
        }
        tx.execute(
            "UPDATE readings SET value = -value WHERE id % 7 = 0 AND id >= ?1",
            [r * 100],
        )
        .unwrap();
        tx.execute(
            "DELETE FROM readings WHERE id % 11 = 0 AND id >= ?1",
            [r * 100],
        )
        .unwrap();
        tx.commit().unwrap();
    }
}

async fn converge(wire: &Wire, source: &Path, within: Duration, agent: &mut Child) {
    let want = source_rows(source, &TABLES);
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = agent.try_wait().unwrap() {
            panic!("the agent exited ({status}) before the mirror converged");
        }
        let got = wire.mirror();
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "mirror from the wire differs from the source:\n{}",
            diff(&got, &want)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every commit_seq seen more than once names the same table and key each time: sequence
/// numbers are stable across crashes.
fn assert_stable_seqs(wire: &Wire) {
    let mut seen: std::collections::HashMap<(String, i64), String> = Default::default();
    for b in wire.batches.lock().unwrap().iter() {
        for r in &b.rows {
            let pk = omega_protocol::pk::canonical_pk(&r.pk);
            if let Some(prev) = seen.insert((b.journal_epoch.clone(), r.commit_seq), pk.clone()) {
                assert_eq!(prev, pk, "commit_seq {} named two keys", r.commit_seq);
            }
        }
    }
}

fn kill9(child: &mut Child) {
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

fn cycles() -> usize {
    std::env::var("OMEGA_FAULT_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_points_loses_no_change() {
    let broker = machine_broker();
    let device = Device::new("kill9", &format!("mqtt://{broker}"));
    let wire = Wire::record(broker, &device.id).await;
    let mut seed: u64 = std::process::id() as u64 ^ 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut round = 0;
    kill9(&mut device.start_captured());
    for _ in 0..cycles() {
        let mut agent = device.start();
        let source = device.source();
        let start = round;
        let writer = tokio::task::spawn_blocking(move || app_writes(&source, start, 4));
        round += 4;
        // The fault point: somewhere between startup, flush, publish and cursor commit.
        tokio::time::sleep(Duration::from_millis(20 + next() % 400)).await;
        kill9(&mut agent);
        writer.await.unwrap();
    }
    let mut agent = device.start();
    converge(&wire, &device.source(), Duration::from_secs(60), &mut agent).await;
    assert_stable_seqs(&wire);
    // A clean stop after convergence exits 0.
    let pid = agent.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status = agent.wait().unwrap();
    assert!(status.success(), "SIGTERM exit status {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_without_persistence_loses_no_change() {
    let mut broker = Mosquitto::start();
    let device = Device::new("restart", &broker.url());
    let wire = Wire::record(broker.addr(), &device.id).await;
    let mut agent = device.start_captured();
    let source = device.source();
    tokio::task::spawn_blocking(move || app_writes(&source, 0, 20))
        .await
        .unwrap();
    // Restart while batches are (likely) in flight; the broker forgets every session.
    broker.restart();
    let source = device.source();
    tokio::task::spawn_blocking(move || app_writes(&source, 20, 20))
        .await
        .unwrap();
    converge(&wire, &device.source(), Duration::from_secs(60), &mut agent).await;
    kill9(&mut agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_cursors_and_pending_counts() {
    let broker = machine_broker();
    let device = Device::new("status", &format!("mqtt://{broker}"));
    let wire = Wire::record(broker, &device.id).await;
    let mut agent = device.start_captured();
    let source = device.source();
    tokio::task::spawn_blocking(move || app_writes(&source, 0, 3))
        .await
        .unwrap();
    converge(&wire, &device.source(), Duration::from_secs(60), &mut agent).await;
    let out = Command::new(env!("CARGO_BIN_EXE_omega"))
        .args(["agent", "status", "--json", "--config"])
        .arg(device.config())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["device_id"], device.id.as_str());
    let tables = v["tables"].as_array().unwrap();
    let readings = tables.iter().find(|t| t["name"] == "readings").unwrap();
    assert!(readings["last_published_commit_seq"].as_i64().unwrap() > 0);
    assert_eq!(readings["strategy"], "rows");
    assert!(readings["pending_rows"].is_i64());
    kill9(&mut agent);
}

/// SIGTERM the moment the capture triggers exist (the engine is still starting): the signal
/// handlers are registered before the engine opens, so the agent stops cleanly (exit 0)
/// instead of dying of the signal's default action.
#[test]
fn sigterm_during_startup_still_exits_0() {
    let broker = machine_broker();
    for _ in 0..3 {
        let device = Device::new("earlyterm", &format!("mqtt://{broker}"));
        let mut agent = device.start_captured();
        let pid = agent.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = agent.wait().unwrap();
        assert!(status.success(), "SIGTERM during startup: {status}");
    }
}

/// `agent.md` §4: replication runs only with `security.capabilities.sqlite-replication: true`;
/// otherwise `omega agent run` exits 2 naming the key, before touching the source.
#[test]
fn run_without_the_replication_capability_exits_2_naming_the_key() {
    let device = Device::new("nocap", "mqtt://127.0.0.1:1");
    for (from, to) in [
        (
            "{ sqlite-replication: true }",
            "{ sqlite-replication: false }",
        ),
        ("{ sqlite-replication: false }", "{}"),
    ] {
        let text = std::fs::read_to_string(device.config()).unwrap();
        assert!(text.contains(from), "{text}");
        std::fs::write(device.config(), text.replacen(from, to, 1)).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_omega"))
            .args(["agent", "run", "--config"])
            .arg(device.config())
            .output()
            .expect("run omega agent run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "capabilities {to}: {stderr}");
        assert!(
            stderr.contains("security.capabilities.sqlite-replication"),
            "capabilities {to}: {stderr}"
        );
        let triggers: i64 = rusqlite::Connection::open(device.source())
            .unwrap()
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE type = 'trigger'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(triggers, 0, "no capture installed without the capability");
    }
}
