//! The end-to-end fixture (`Setup`) shared by the process tests here (`mirror_e2e`,
//! `recovery_e2e`, …) and by the `fault` test target: `omega agent run` → mosquitto →
//! `omega cloud serve` → a store (a fresh PostgreSQL database, or SQLite), with
//! `policy.auto_approve`, `delivery: receipts` and a control key pair from `omega cloud keygen`.
//! The mirror, read back with `omega cloud rows --json`, must equal the source row for row
//! (hostile names and values), and the agent's confirmed cursors must reach its published ones:
//! receipts really flow, signed and verified.
//!
//! Every test has its own root topic, device id, client id and shared group; conditions are
//! polled with deadlines.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use omega_protocol::value::SqlValue;
use omega_testkit::mosquitto::machine_broker;
use rusqlite::types::ValueRef;
use serde_json::{Map, Value};

/// Keywords, quotes, spaces, non-ASCII and a source column named `device_id` (mirrored as
/// `device_id_src`); BLOB and composite keys.
const SCHEMA: &str = r#"
    PRAGMA journal_mode = WAL;
    CREATE TABLE readings (id INTEGER PRIMARY KEY NOT NULL, device_id TEXT, sensor TEXT,
                           value REAL, raw BLOB);
    CREATE TABLE "order" ("select" TEXT NOT NULL, "group" INTEGER NOT NULL, "a""b" TEXT,
                          qty INTEGER, PRIMARY KEY ("select", "group")) WITHOUT ROWID;
    CREATE TABLE "naïve tablé ""q""" (k BLOB PRIMARY KEY NOT NULL, v TEXT, r REAL);
"#;
pub(crate) const TABLES: [&str; 3] = ["readings", "order", "naïve tablé \"q\""];

pub(crate) const CONVERGE: Duration = Duration::from_secs(90);

pub(crate) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &omega_protocol::ids::new_v7().replace('-', "")[12..]
    )
}

pub(crate) fn omega(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_omega"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run omega")
}

/// A child process that is killed when the guard drops, so a failing test leaves none behind.
pub(crate) struct Proc(pub(crate) Option<Child>);

impl Proc {
    /// SIGTERM, then the exit status must be 0.
    pub(crate) fn sigterm(mut self) {
        let mut child = self.0.take().unwrap();
        let pid = child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "SIGTERM exit status {status}");
    }

    /// Waits up to `within` for the process to exit on its own; its status, or `None` (the
    /// process is then killed). Used by the `fault` target's crash points.
    #[allow(dead_code)]
    pub(crate) fn exits_within(mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        let child = self.0.as_mut().unwrap();
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                self.0 = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGKILL.
    pub(crate) fn kill9(mut self) {
        let mut child = self.0.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One test's files: the key pair, the cloud config, the device config and source.
pub(crate) struct Setup {
    dir: tempfile::TempDir,
    pub(crate) root: String,
    pub(crate) device: String,
    store_url: String,
}

impl Setup {
    /// `store` is `None` for a SQLite store in the test directory.
    pub(crate) fn new(prefix: &str, store: Option<&str>) -> Setup {
        Setup::on_broker(prefix, store, machine_broker())
    }

    /// Like [`Setup::new`] with both sides on the broker at `broker`.
    pub(crate) fn on_broker(
        prefix: &str,
        store: Option<&str>,
        broker: std::net::SocketAddr,
    ) -> Setup {
        Setup::with_agent_lines(prefix, store, broker, "")
    }

    /// Like [`Setup::on_broker`] with `extra` appended to the agent's `sqlite-replication`
    /// block (indented lines such as `  snapshot_on_first_run: true\n`).
    pub(crate) fn with_agent_lines(
        prefix: &str,
        store: Option<&str>,
        broker: std::net::SocketAddr,
        extra: &str,
    ) -> Setup {
        Setup::with_config(prefix, store, broker, "  auto_approve: true\n", extra)
    }

    /// The most general constructor: `policy` is the cloud's `policy:` block body (indented
    /// lines), `extra` lines appended to the agent's `sqlite-replication` block.
    pub(crate) fn with_config(
        prefix: &str,
        store: Option<&str>,
        broker: std::net::SocketAddr,
        policy: &str,
        extra: &str,
    ) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let root = unique(&format!("e2e-{prefix}"));
        let device = unique(prefix);
        let keys = d.join("keys");
        let out = omega(&["cloud", "keygen", "--out", keys.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "keygen: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let store_url = match store {
            Some(url) => url.to_string(),
            None => format!("sqlite://{}", d.join("cloud.db").display()),
        };
        let cloud = format!(
            "broker:\n  url: mqtt://{broker}\n  client_id: cloud-{root}\n\
             ingest:\n  device_topic: {root}/{{device}}\n  shared_group: g-{root}\n  workers: 4\n\
             store:\n  url: {store_url}\n\
             policy:\n{policy}\
             control:\n  signing_key_path: keys/control.key\n  resend_after: 2s\n\
             receipts:\n  interval: 200ms\n"
        );
        std::fs::write(d.join("cloud.yaml"), cloud).unwrap();
        rusqlite::Connection::open(d.join("source.db"))
            .unwrap()
            .execute_batch(SCHEMA)
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
{extra}"#,
            pubkey = keys.join("control.pub").display()
        );
        std::fs::write(d.join("device.yaml"), agent).unwrap();
        Setup {
            dir,
            root,
            device,
            store_url,
        }
    }

    /// For a broker that speaks only MQTT 3.1.1 (RabbitMQ's MQTT plugin before 3.13): the
    /// cloud connects with `broker.mqtt_version: "3.1.1"` and, without shared subscriptions,
    /// subscribes to the plain filter (one `cloud serve` process).
    pub(crate) fn mqtt_311_cloud(self) -> Setup {
        let path = self.path("cloud.yaml");
        let cloud = std::fs::read_to_string(&path).unwrap();
        let shared = format!("shared_group: g-{}\n", self.root);
        let client = format!("client_id: cloud-{}\n", self.root);
        assert!(
            cloud.contains(&shared) && cloud.contains(&client),
            "{cloud}"
        );
        let cloud = cloud
            .replace(&shared, "shared_group: ''\n")
            .replace(&client, &format!("{client}  mqtt_version: '3.1.1'\n"));
        std::fs::write(&path, cloud).unwrap();
        self
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub(crate) fn source(&self) -> PathBuf {
        self.path("source.db")
    }

    /// Starts `omega cloud serve` and waits for its ready line.
    pub(crate) fn start_cloud(&self) -> Proc {
        self.start_cloud_with(&[]).0
    }

    /// Starts `omega cloud serve` with `args` added and waits for its ready line; returns the
    /// HTTP API's address when serve printed one.
    pub(crate) fn start_cloud_with(&self, args: &[&str]) -> (Proc, Option<SocketAddr>) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_omega"))
            .args(["cloud", "serve", "--config"])
            .arg(self.path("cloud.yaml"))
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start omega cloud serve");
        let stdout = child.stdout.take().unwrap();
        let child = Proc(Some(child));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut http = None;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Some(addr) = line.strip_prefix("http: listening on ") {
                    http = addr.parse::<SocketAddr>().ok();
                }
                if line.starts_with("ready:") {
                    let _ = tx.send((line, http));
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok((line, http)) => {
                assert!(line.contains(&self.root), "{line}");
                (child, http)
            }
            Err(_) => {
                drop(child);
                panic!(
                    "omega cloud serve printed no ready line within 30 s (is mosquitto running on \
                     127.0.0.1:1883? `apt-get install -y mosquitto`)"
                );
            }
        }
    }

    /// Starts `omega agent run` and waits until its triggers are installed on every table.
    pub(crate) fn start_agent(&self) -> Proc {
        self.start_agent_env(&[])
    }

    /// [`Setup::start_agent`] with extra environment variables (e.g. `FAILPOINTS`).
    pub(crate) fn start_agent_env(&self, env: &[(&str, &str)]) -> Proc {
        let child = Command::new(env!("CARGO_BIN_EXE_omega"))
            .args(["agent", "run", "--config"])
            .arg(self.path("device.yaml"))
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start omega agent run");
        let child = Proc(Some(child));
        self.wait_captured();
        child
    }

    /// Waits until the agent installed its capture triggers on every table.
    pub(crate) fn wait_captured(&self) {
        let conn = crate::support::app_conn(self.source());
        omega_testkit::wait::until_true("capture triggers on every table", CONVERGE, || {
            TABLES.iter().all(|t| {
                conn.query_row(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?1",
                    [t],
                    |r| r.get::<_, i64>(0),
                )
                .unwrap()
                    > 0
            })
        });
    }

    /// `omega cloud <args> --store URL --json`.
    pub(crate) fn cloud_json(&self, args: &[&str]) -> Result<Value, String> {
        let mut all = vec!["cloud"];
        all.extend_from_slice(args);
        all.extend(["--store", &self.store_url, "--json"]);
        let out = omega(&all);
        if out.status.success() {
            Ok(serde_json::from_slice(&out.stdout).unwrap())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// The mirror, through `omega cloud rows --json`, keyed like [`source_rows`].
    pub(crate) fn mirror_rows(&self) -> Rows {
        let mut out = Rows::new();
        for t in TABLES {
            let args = [
                "rows",
                "--device",
                &self.device,
                "--table",
                t,
                "--limit",
                "1000000",
            ];
            let Ok(v) = self.cloud_json(&args) else {
                continue; // no lineage or mirror yet
            };
            let source_of: BTreeMap<&str, &str> = v["columns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    (
                        c["name"].as_str().unwrap(),
                        c["source"]
                            .as_str()
                            .expect("every mirror column has a source"),
                    )
                })
                .collect();
            let rename = |m: &Map<String, Value>| -> Map<String, Value> {
                m.iter()
                    .map(|(k, v)| (source_of[k.as_str()].to_string(), v.clone()))
                    .collect()
            };
            let table = out.entry(t.to_string()).or_default();
            for item in v["items"].as_array().unwrap() {
                assert_eq!(item["deleted"], false, "tombstones are not listed");
                let pk = rename(item["pk"].as_object().unwrap());
                let row = rename(item["row"].as_object().unwrap());
                table.insert(Value::Object(pk).to_string(), row);
            }
        }
        out
    }

    /// The `agent status --json` entry of one table (`null` when it has none).
    pub(crate) fn table_status(&self, name: &str) -> Value {
        table_of(&self.agent_status(), name)
    }

    /// `omega agent status --json`.
    pub(crate) fn agent_status(&self) -> Value {
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
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Polls until the broker acknowledged (PUBACK) every change the agent captured: no table
    /// has pending rows.
    pub(crate) fn wait_broker_took_everything(&self) {
        omega_testkit::wait::until_true("the broker acknowledged every change", CONVERGE, || {
            self.agent_status()["tables"].as_array().is_some_and(|ts| {
                !ts.is_empty() && ts.iter().all(|t| t["pending_rows"].as_i64() == Some(0))
            })
        });
    }

    /// Polls until the mirror equals the source, then until every table's confirmed cursor
    /// reached its published one (only verified receipts move it) and the cloud's points
    /// equal its last commit_seq.
    pub(crate) fn converge(&self) {
        let want = source_rows(&self.source());
        assert_eq!(want.len(), TABLES.len(), "every source table has rows");
        let deadline = Instant::now() + CONVERGE;
        loop {
            let got = self.mirror_rows();
            if got == want {
                break;
            }
            if Instant::now() > deadline {
                panic!(
                    "the mirror differs from the source:\n{}\nlineages: {:#}\nquarantine: {:#}\nagent: {:#}",
                    diff(&got, &want),
                    self.cloud_json(&["lineages", "--device", &self.device])
                        .unwrap_or_default(),
                    self.cloud_json(&["quarantine", "--device", &self.device])
                        .unwrap_or_default(),
                    self.agent_status(),
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        omega_testkit::wait::until_true(
            "confirmed cursors at the published ones",
            CONVERGE,
            || {
                let s = self.agent_status();
                s["receipts_seen"] == true
                    && s["tables"].as_array().unwrap().iter().all(|t| {
                        t["last_published_commit_seq"].as_i64() > Some(0)
                            && t["confirmed_commit_seq"] == t["last_published_commit_seq"]
                    })
            },
        );
        let lineages = self
            .cloud_json(&["lineages", "--device", &self.device])
            .unwrap();
        let items = lineages["items"].as_array().unwrap();
        assert_eq!(items.len(), TABLES.len(), "{lineages:#}");
        for l in items {
            assert_eq!(l["status"], "active", "{l:#}");
            assert_eq!(l["confirmed_through"], l["last_commit_seq"], "{l:#}");
        }
        let q = self
            .cloud_json(&["quarantine", "--device", &self.device])
            .unwrap();
        assert_eq!(q["items"], Value::Array(vec![]), "nothing quarantined");
    }
}

/// The entry of table `name` in an `agent status --json` report (`null` when it has none).
pub(crate) fn table_of(status: &Value, name: &str) -> Value {
    status["tables"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["name"] == name))
        .cloned()
        .unwrap_or(Value::Null)
}

/// table → canonical pk (JSON of the key columns by name) → column → wire value.
pub(crate) type Rows = BTreeMap<String, BTreeMap<String, Map<String, Value>>>;

fn sql_value(v: ValueRef<'_>) -> SqlValue {
    match v {
        ValueRef::Null => SqlValue::Null,
        ValueRef::Integer(i) => SqlValue::Integer(i),
        ValueRef::Real(r) => SqlValue::Real(r),
        ValueRef::Text(t) => SqlValue::Text(String::from_utf8(t.to_vec()).unwrap()),
        ValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
    }
}

/// The source, read with rusqlite, in wire encoding.
pub(crate) fn source_rows(source: &Path) -> Rows {
    let conn = crate::support::app_conn(source);
    let mut out = Rows::new();
    for t in TABLES {
        let mut info = conn
            .prepare(&format!("PRAGMA table_info({})", quote(t)))
            .unwrap();
        let cols: Vec<(String, bool)> = info
            .query_map([], |r| {
                Ok((r.get::<_, String>(1)?, r.get::<_, i64>(5)? > 0))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let list: Vec<String> = cols.iter().map(|(c, _)| quote(c)).collect();
        let mut stmt = conn
            .prepare(&format!("SELECT {} FROM {}", list.join(", "), quote(t)))
            .unwrap();
        let mut rows = stmt.query([]).unwrap();
        let table: &mut BTreeMap<String, Map<String, Value>> =
            out.entry(t.to_string()).or_default();
        while let Some(r) = rows.next().unwrap() {
            let mut pk = Map::new();
            let mut row = Map::new();
            for (i, (c, is_key)) in cols.iter().enumerate() {
                let v = omega_cloud::view::value(&sql_value(r.get_ref(i).unwrap()));
                if *is_key {
                    pk.insert(c.clone(), v.clone());
                }
                row.insert(c.clone(), v);
            }
            table.insert(Value::Object(pk).to_string(), row);
        }
    }
    out.retain(|_, rows| !rows.is_empty());
    out
}

pub(crate) fn diff(got: &Rows, want: &Rows) -> String {
    let mut lines = Vec::new();
    for t in TABLES {
        let (g, w) = (got.get(t), want.get(t));
        let empty = BTreeMap::new();
        let (g, w) = (g.unwrap_or(&empty), w.unwrap_or(&empty));
        for (k, row) in w {
            match g.get(k) {
                None => lines.push(format!("{t} {k}: missing from the mirror")),
                Some(m) if m != row => {
                    lines.push(format!("{t} {k}: mirror {m:?} != source {row:?}"))
                }
                _ => {}
            }
        }
        for k in g.keys().filter(|k| !w.contains_key(*k)) {
            lines.push(format!("{t} {k}: in the mirror only"));
        }
    }
    let n = lines.len();
    lines.truncate(20);
    format!("{n} difference(s), first ones:\n{}", lines.join("\n"))
}

/// `rounds` transactions of inserts, updates and deletes with hostile values on every table.
pub(crate) fn app_writes(source: &Path, start: i64, rounds: i64) {
    const TEXTS: [&str; 6] = [
        "",
        "naïve ✓ 表",
        "quote ' \" \\ back",
        "line\nbreak\ttab",
        "😀 emoji",
        "SELECT 1; --",
    ];
    const REALS: [f64; 6] = [
        f64::INFINITY,
        f64::NEG_INFINITY,
        0.1,
        1e300,
        -2.5,
        9_007_199_254_740_993.0,
    ];
    let conn = crate::support::app_conn(source);
    let naive = quote(TABLES[2]);
    for r in start..start + rounds {
        let tx = conn.unchecked_transaction().unwrap();
        if r == 0 {
            for id in [i64::MIN, i64::MAX, 9_007_199_254_740_993] {
                tx.execute(
                    "INSERT INTO readings VALUES (?1, 'spoof', 'extreme', -0.5, x'00')",
                    [id],
                )
                .unwrap();
            }
        }
        for i in 0..20i64 {
            let id = r * 100 + i;
            let u = usize::try_from(i).unwrap();
            let text = (i % 7 != 6).then(|| TEXTS[u % TEXTS.len()]);
            let real = (i % 8 != 7).then(|| REALS[u % REALS.len()]);
            let blob: Option<Vec<u8>> = match i % 4 {
                0 => None,
                1 => Some(vec![]),
                2 => Some((0..=255).collect()),
                _ => Some(vec![0, 255, u8::try_from(r % 256).unwrap()]),
            };
            tx.execute(
                "INSERT INTO readings (id, device_id, sensor, value, raw) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (id) DO UPDATE SET device_id = excluded.device_id, \
                 sensor = excluded.sensor, value = excluded.value, raw = excluded.raw",
                rusqlite::params![id, format!("other-{i}"), text, real, blob],
            )
            .unwrap();
            tx.execute(
                r#"INSERT INTO "order" ("select", "group", "a""b", qty) VALUES (?1, ?2, ?3, ?4)
                   ON CONFLICT DO UPDATE SET qty = excluded.qty, "a""b" = excluded."a""b""#,
                rusqlite::params![
                    format!("k'{}", i % 7),
                    r % 5,
                    text,
                    (i % 3 != 0).then_some(i64::MAX - i)
                ],
            )
            .unwrap();
            tx.execute(
                &format!("INSERT OR REPLACE INTO {naive} (k, v, r) VALUES (?1, ?2, ?3)"),
                rusqlite::params![vec![0u8, u8::try_from(i).unwrap(), 0xff], text, real],
            )
            .unwrap();
        }
        tx.execute(
            "UPDATE readings SET value = -value, sensor = 'updated' WHERE id % 7 = 0 AND id >= ?1",
            [r * 100],
        )
        .unwrap();
        tx.execute(
            "DELETE FROM readings WHERE id % 11 = 0 AND id >= ?1",
            [r * 100],
        )
        .unwrap();
        tx.execute(&format!("DELETE FROM {naive} WHERE length(v) = 0"), [])
            .unwrap();
        tx.commit().unwrap();
    }
}
