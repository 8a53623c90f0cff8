//! Signed downlink controls end to end through processes (`cloud.md` §14): `omega agent run`
//! → the machine's mosquitto → `omega cloud serve` on a SQLite store. `omega cloud pause`
//! makes the agent stop publishing the table (its status shows `paused` with the watermark)
//! while the app keeps writing, and the cloud marks the control acked; `omega cloud resume`
//! lets the buffered changes arrive, and the mirror equals the source.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use omega_testkit::mosquitto::machine_broker;
use omega_testkit::wait::until_true;
use serde_json::Value;

const CONVERGE: Duration = Duration::from_secs(90);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &omega_protocol::ids::new_v7().replace('-', "")[12..]
    )
}

fn omega(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_omega"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run omega")
}

/// Killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Setup {
    dir: tempfile::TempDir,
    device: String,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let broker = machine_broker();
        let root = unique("e2e-ctl");
        let device = unique("ctl");
        let keys = d.join("keys");
        let out = omega(&["cloud", "keygen", "--out", keys.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cloud = format!(
            "broker:\n  url: mqtt://{broker}\n  client_id: cloud-{root}\n\
             ingest:\n  device_topic: {root}/{{device}}\n  shared_group: g-{root}\n  workers: 2\n\
             store:\n  url: sqlite://{}\n\
             policy:\n  auto_approve: true\n\
             control:\n  signing_key_path: keys/control.key\n  resend_after: 2s\n\
             receipts:\n  interval: 200ms\n",
            d.join("cloud.db").display()
        );
        std::fs::write(d.join("cloud.yaml"), cloud).unwrap();
        rusqlite::Connection::open(d.join("source.db"))
            .unwrap()
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 CREATE TABLE readings (id INTEGER PRIMARY KEY NOT NULL, v TEXT);",
            )
            .unwrap();
        let agent = format!(
            r#"name: {device}
connection:
  server_url: mqtt://{broker}
  device_id: {device}
  root_topic: {root}/{device}
  mqtt:
    keep_alive: 5s
security:
  capabilities: {{ sqlite-replication: true }}
  signed_control: {{ enabled: true, public_key_path: {pubkey} }}
sqlite-replication:
  source_db_path: source.db
  state_db_path: state/state.db
  flush_interval: 100ms
  delivery: receipts
  receipt_timeout: 5s
"#,
            pubkey = keys.join("control.pub").display()
        );
        std::fs::write(d.join("device.yaml"), agent).unwrap();
        Setup { dir, device }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn spawn(&self, args: &[&str], config: &str) -> Proc {
        let child = Command::new(env!("CARGO_BIN_EXE_omega"))
            .args(args)
            .arg("--config")
            .arg(self.path(config))
            .current_dir(self.dir.path())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn omega");
        Proc(child)
    }

    /// `omega cloud serve`, once it printed its `ready:` line (subscribed).
    fn spawn_cloud(&self) -> Proc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_omega"))
            .args(["cloud", "serve", "--config"])
            .arg(self.path("cloud.yaml"))
            .current_dir(self.dir.path())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn omega cloud serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let proc = Proc(child);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in
                std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok)
            {
                if line.starts_with("ready:") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(30)).expect(
            "omega cloud serve printed no ready line within 30 s (is mosquitto running on \
             127.0.0.1:1883? `apt-get install -y mosquitto`)",
        );
        proc
    }

    fn write(&self, from: i64, to: i64) {
        let c = crate::support::app_conn(self.path("source.db"));
        for i in from..=to {
            c.execute(
                "INSERT INTO readings (id, v) VALUES (?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET v = excluded.v",
                rusqlite::params![i, format!("v{i}")],
            )
            .unwrap();
        }
    }

    fn source(&self) -> BTreeMap<i64, String> {
        let c = crate::support::app_conn(self.path("source.db"));
        let mut st = c.prepare("SELECT id, v FROM readings").unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    fn mirror(&self) -> BTreeMap<i64, String> {
        let store = format!("sqlite://{}", self.path("cloud.db").display());
        let out = omega(&[
            "cloud",
            "rows",
            "--device",
            &self.device,
            "--table",
            "readings",
            "--limit",
            "1000000",
            "--store",
            &store,
            "--json",
        ]);
        if !out.status.success() {
            eprintln!("rows: {}", String::from_utf8_lossy(&out.stderr));
            return BTreeMap::new();
        }
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["pk"]["id"].as_i64().unwrap(),
                    i["row"]["v"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    fn table_status(&self) -> Value {
        let out = Command::new(env!("CARGO_BIN_EXE_omega"))
            .args(["agent", "status", "--json", "--config"])
            .arg(self.path("device.yaml"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "readings")
            .cloned()
            .unwrap_or(Value::Null)
    }

    fn control(&self, verb: &str) -> Value {
        let out = omega(&[
            "cloud",
            verb,
            "--device",
            &self.device,
            "--table",
            "readings",
            "--config",
            self.path("cloud.yaml").to_str().unwrap(),
            "--json",
        ]);
        assert!(
            out.status.success(),
            "omega cloud {verb}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn control_state(&self, id: &str) -> String {
        let c = crate::support::app_conn(self.path("cloud.db"));
        c.query_row(
            "SELECT state FROM omega_controls WHERE control_id = ?1",
            [id],
            |r| r.get(0),
        )
        .unwrap()
    }
}

#[test]
fn operator_pause_holds_the_table_on_the_device_and_resume_delivers_the_buffer() {
    let s = Setup::new();
    let _cloud = s.spawn_cloud();
    let _agent = s.spawn(&["agent", "run"], "device.yaml");
    let conn = crate::support::app_conn(s.path("source.db"));
    until_true("capture triggers installed", CONVERGE, || {
        conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'readings'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
            > 0
    });
    s.write(1, 20);
    until_true("first 20 rows mirrored", CONVERGE, || {
        s.mirror() == s.source()
    });

    let paused = s.control("pause");
    assert_eq!(paused["lineage"]["device_paused"], true, "{paused}");
    let pause_id = paused["control_id"].as_str().unwrap().to_string();
    until_true("pause acked by the device", CONVERGE, || {
        s.control_state(&pause_id) == "acked"
    });
    let st = s.table_status();
    assert_eq!(st["paused"], true, "{st}");
    let watermark = st["server_watermark"].as_i64().unwrap();
    assert!(watermark > 0, "{st}");

    // The app keeps writing; the device holds the 26 changes (captured, above its published
    // cursor) and nothing reaches the mirror while paused.
    s.write(15, 40);
    until_true("the paused device holds the new changes", CONVERGE, || {
        s.table_status()["pending_rows"].as_i64() >= Some(26)
    });
    let m = s.mirror();
    assert_eq!(m.len(), 20, "nothing published while paused");
    assert_eq!(m.get(&15).map(String::as_str), Some("v15"));
    let st = s.table_status();
    assert_eq!(st["paused"], true, "{st}");

    // A second resume is a conflict; the first one delivers the buffer.
    let resumed = s.control("resume");
    let resume_id = resumed["control_id"].as_str().unwrap().to_string();
    let again = omega(&[
        "cloud",
        "resume",
        "--device",
        &s.device,
        "--table",
        "readings",
        "--config",
        s.path("cloud.yaml").to_str().unwrap(),
    ]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("not_operator_paused"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    until_true("buffered changes mirrored after resume", CONVERGE, || {
        s.mirror() == s.source()
    });
    until_true("resume acked", CONVERGE, || {
        s.control_state(&resume_id) == "acked"
    });
    assert_eq!(s.table_status()["paused"], false);
}
