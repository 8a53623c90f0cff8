//! Shared fixtures: a temp directory with the `omega agent init` config, certificates made
//! with rcgen, a control public key, and a sample source database built with rusqlite.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rcgen::{CertificateParams, DnType, KeyPair};
use tempfile::TempDir;
use time::{Duration, OffsetDateTime};

/// The device id every fixture uses.
pub const DEVICE: &str = "press-01";

/// Runs the binary with exactly `env` (the process environment is cleared).
pub fn omega(args: &[&str], env: &[(String, String)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_omega"))
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run omega")
}

/// Standard output as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// A directory holding everything `validate` looks at.
pub struct Fixture {
    /// Kept alive for the test's duration.
    pub dir: TempDir,
    /// The variables the init config documents.
    pub env: Vec<(String, String)>,
}

impl Fixture {
    /// The init config, valid certificates and key, `certs/control.pub`, and a source DB
    /// with `device_state`, `temps` and `events` (no primary key).
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("certs")).unwrap();
        std::fs::create_dir_all(d.join("pki")).unwrap();

        let init = omega(&["agent", "init"], &[]);
        assert!(init.status.success());
        std::fs::write(d.join("c.yaml"), &init.stdout).unwrap();

        let control = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        std::fs::write(d.join("certs/control.pub"), control.public_key_pem()).unwrap();

        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name
            .push(DnType::CommonName, "test broker CA");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        std::fs::write(d.join("pki/ca.pem"), ca.self_signed(&ca_key).unwrap().pem()).unwrap();

        write_cert(d, "device", DEVICE, &KeyPair::generate().unwrap(), -1, 90);
        source_db(&d.join("app.db"), SAMPLE_SCHEMA);

        let p = |rel: &str| d.join(rel).display().to_string();
        let env = vec![
            (
                "OMEGA_MQTT_BROKER_URL".into(),
                "mqtts://broker.example.com:8883".into(),
            ),
            ("OMEGA_DEVICE_ID".into(), DEVICE.into()),
            ("OMEGA_TLS_CA_PATH".into(), p("pki/ca.pem")),
            ("OMEGA_TLS_CERT_PATH".into(), p("pki/device.crt")),
            ("OMEGA_TLS_KEY_PATH".into(), p("pki/device.key")),
            ("OMEGA_SOURCE_DB_PATH".into(), p("app.db")),
            ("OMEGA_STATE_DB_PATH".into(), p("state/state.db")),
        ];
        Fixture { dir, env }
    }

    /// A path inside the fixture directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The config file.
    pub fn config(&self) -> PathBuf {
        self.path("c.yaml")
    }

    /// Rewrites the config, replacing `from` (which must be present) by `to`.
    pub fn edit(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(self.config()).unwrap();
        assert!(text.contains(from), "`{from}` is not in the config");
        std::fs::write(self.config(), text.replacen(from, to, 1)).unwrap();
    }

    /// Sets (or with `None` removes) a variable.
    pub fn set_env(&mut self, name: &str, value: Option<&str>) {
        self.env.retain(|(k, _)| k != name);
        if let Some(v) = value {
            self.env.push((name.into(), v.into()));
        }
    }

    /// `omega agent validate --config c.yaml [extra…]`.
    pub fn validate(&self, extra: &[&str]) -> Output {
        let cfg = self.config().display().to_string();
        let mut args = vec!["agent", "validate", "--config", cfg.as_str()];
        args.extend_from_slice(extra);
        omega(&args, &self.env)
    }
}

/// The sample source schema: a rows table, a telemetry table and one without a key.
pub const SAMPLE_SCHEMA: &str = "
    PRAGMA journal_mode = WAL;
    CREATE TABLE device_state(id INTEGER PRIMARY KEY NOT NULL, mode TEXT);
    CREATE TABLE temps(id INTEGER PRIMARY KEY NOT NULL, ts TEXT NOT NULL, value REAL);
    CREATE TABLE events(msg TEXT);
    INSERT INTO device_state VALUES (1, 'run');
";

/// Creates a SQLite database with `schema`.
pub fn source_db(path: &Path, schema: &str) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch(schema).unwrap();
}

/// Writes `pki/{name}.crt` and `pki/{name}.key`: a self-signed certificate for `cn` valid from
/// `from_days` to `to_days` around now.
pub fn write_cert(dir: &Path, name: &str, cn: &str, key: &KeyPair, from_days: i64, to_days: i64) {
    let mut params = CertificateParams::new(vec![cn.to_owned()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.not_before = OffsetDateTime::now_utc() + Duration::days(from_days);
    params.not_after = OffsetDateTime::now_utc() + Duration::days(to_days);
    let cert = params.self_signed(key).unwrap();
    std::fs::write(dir.join(format!("pki/{name}.crt")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("pki/{name}.key")), key.serialize_pem()).unwrap();
}

/// The `error:` lines of a human report.
pub fn error_lines(out: &str) -> Vec<&str> {
    out.lines().filter(|l| l.starts_with("error:")).collect()
}

/// A connection to a source database as an application opens it (10 s busy timeout).
pub fn app_conn(path: impl AsRef<Path>) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).expect("open the source database");
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .expect("busy timeout");
    conn
}
