//! Real MQTT brokers for tests: the machine's mosquitto, or a private one on a free port.
//!
//! A missing broker is a test failure with an install hint, never a skip.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::ports::{answers, free_port};
use crate::wait;

const INSTALL_HINT: &str = "install it with `apt-get install -y mosquitto` \
     (CI's .ci/run does this) and start it with `mosquitto -d -c /etc/mosquitto/mosquitto.conf`";

/// The broker the machine runs on 127.0.0.1:1883. Panics with an install hint when it does not
/// answer.
pub fn machine_broker() -> SocketAddr {
    let addr: SocketAddr = "127.0.0.1:1883".parse().unwrap();
    assert!(
        answers(addr),
        "no MQTT broker answers on {addr}: {INSTALL_HINT}"
    );
    addr
}

/// Path of the mosquitto binary, or a panic with an install hint.
pub fn mosquitto_binary() -> PathBuf {
    for candidate in [
        "/usr/sbin/mosquitto",
        "/usr/bin/mosquitto",
        "/usr/local/sbin/mosquitto",
    ] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    panic!("mosquitto binary not found: {INSTALL_HINT}");
}

/// A private mosquitto on a free loopback port, killed on drop. Its configuration is
/// `listener PORT 127.0.0.1`, `allow_anonymous true`, plus whatever extra lines the test gives
/// (TLS, ACL, persistence).
pub struct Mosquitto {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    extra: String,
    /// Replaces the anonymous listener: the listener section for a port (see
    /// [`Mosquitto::start_config`]).
    custom: Option<ListenerFn>,
}

/// Builds a broker's listener section for the port it was given.
type ListenerFn = std::sync::Arc<dyn Fn(u16) -> String + Send + Sync>;

impl Mosquitto {
    /// Starts a plain broker with anonymous access and no persistence.
    pub fn start() -> Self {
        Self::start_with("")
    }

    /// Starts a broker with extra configuration lines appended after the listener line. Lines
    /// that belong to the listener (e.g. `cafile`, `require_certificate`) go right after it.
    pub fn start_with(extra: &str) -> Self {
        Self::start_inner(extra, None)
    }

    /// Starts a broker whose listener section is `config(port)` for a free port (for example
    /// the output of `omega cloud broker-acl`, which brings its own `listener`, TLS lines,
    /// `allow_anonymous false` and `acl_file`); only logging and persistence lines are added.
    pub fn start_config(config: impl Fn(u16) -> String + Send + Sync + 'static) -> Self {
        Self::start_inner("", Some(std::sync::Arc::new(config)))
    }

    fn start_inner(extra: &str, custom: Option<ListenerFn>) -> Self {
        let mut dir = tempfile::tempdir().expect("tempdir");
        let mut last_err = String::new();
        for _ in 0..5 {
            let port = free_port();
            let mut broker = Mosquitto {
                child: None,
                port,
                dir,
                extra: extra.to_string(),
                custom: custom.clone(),
            };
            match broker.spawn() {
                Ok(()) => return broker,
                Err(e) => {
                    last_err = e;
                    dir = broker.take_dir();
                }
            }
        }
        panic!("could not start a private mosquitto: {last_err}");
    }

    fn take_dir(mut self) -> tempfile::TempDir {
        self.kill();
        std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"))
    }

    fn spawn(&mut self) -> Result<(), String> {
        let conf = self.dir.path().join("mosquitto.conf");
        let log = self.dir.path().join("mosquitto.log");
        let mut f = std::fs::File::create(&conf).map_err(|e| e.to_string())?;
        let listener = match &self.custom {
            Some(custom) => custom(self.port),
            None => format!("listener {} 127.0.0.1\nallow_anonymous true", self.port),
        };
        writeln!(
            f,
            "max_queued_messages 0\nmax_inflight_messages 0\nlog_dest file {log}\n\
             persistence_location {dir}/\n{listener}\n{extra}",
            log = log.display(),
            dir = self.dir.path().display(),
            extra = self.extra
        )
        .map_err(|e| e.to_string())?;
        let child = Command::new(mosquitto_binary())
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn mosquitto: {e}"))?;
        self.child = Some(child);
        let addr = self.addr();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if answers(addr) {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!("mosquitto exited with {status}: {log}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("mosquitto did not answer on {addr} within 10 s"))
    }

    /// The broker's address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// The directory holding the config, log and persistence file; tests may put certs here.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the broker with SIGKILL (sessions and queued messages are lost unless
    /// persistence was configured and saved).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same port and with the same configuration.
    pub fn restart(&mut self) {
        self.kill();
        wait::until_true(
            "old mosquitto port to close",
            Duration::from_secs(10),
            || !answers(self.addr()),
        );
        let mut last = String::new();
        for _ in 0..50 {
            match self.spawn() {
                Ok(()) => return,
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("could not restart mosquitto on port {}: {last}", self.port);
    }

    /// The broker's log so far (useful in assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}
