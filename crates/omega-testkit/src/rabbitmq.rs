//! A private RabbitMQ node with its MQTT plugin, for tests that prove Omega on a second broker.
//!
//! Each [`RabbitMq`] is its own Erlang node (unique node name, its own data, log, cookie and
//! config in a temp dir) with AMQP listeners off and one MQTT listener on a free loopback port,
//! so a test never touches the machine's RabbitMQ service. A missing `rabbitmq-server` is a test
//! failure with an install hint, never a skip.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::ports::{answers, free_port};

const INSTALL_HINT: &str = "install it with `apt-get install -y rabbitmq-server` (CI's .ci/run \
     does this); the test starts its own node, the service need not run";

/// How long a node may take to open its MQTT listener (an Erlang VM boots in ~5–10 s here).
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// The server script that runs a node in the foreground as the current user.
pub fn rabbitmq_server_binary() -> PathBuf {
    for candidate in [
        "/usr/lib/rabbitmq/bin/rabbitmq-server",
        "/usr/local/lib/rabbitmq/bin/rabbitmq-server",
    ] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    panic!("rabbitmq-server not found: {INSTALL_HINT}");
}

/// A RabbitMQ node with `rabbitmq_mqtt` enabled on a free loopback port; killed on drop.
pub struct RabbitMq {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl RabbitMq {
    /// Starts a node and waits until its MQTT listener answers. Anonymous MQTT clients log in
    /// as `guest` (allowed from loopback only, RabbitMQ's default).
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut last = String::new();
        let mut node = RabbitMq {
            child: None,
            port: 0,
            dir,
        };
        for _ in 0..3 {
            node.port = free_port();
            match node.spawn() {
                Ok(()) => return node,
                Err(e) => {
                    last = e;
                    node.kill();
                }
            }
        }
        panic!("could not start a private RabbitMQ node: {last}");
    }

    fn spawn(&mut self) -> Result<(), String> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let d = self.dir.path();
        let conf = d.join("rabbitmq.conf");
        std::fs::write(
            &conf,
            format!(
                "listeners.tcp = none\nmqtt.listeners.tcp.1 = 127.0.0.1:{port}\n\
                 mqtt.allow_anonymous = true\nloopback_users = none\n\
                 log.console = true\nlog.console.level = warning\nlog.file = false\n",
                port = self.port
            ),
        )
        .map_err(|e| e.to_string())?;
        let plugins = d.join("enabled_plugins");
        std::fs::write(&plugins, "[rabbitmq_mqtt].\n").map_err(|e| e.to_string())?;
        let node = format!(
            "omega-test-{}-{}@localhost",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let log = std::fs::File::create(d.join("node.log")).map_err(|e| e.to_string())?;
        let child = Command::new(rabbitmq_server_binary())
            .env("HOME", d)
            .env("RABBITMQ_NODENAME", &node)
            .env("RABBITMQ_DIST_PORT", free_port().to_string())
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_CONFIG_FILE", &conf)
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", &plugins)
            .env("RABBITMQ_PID_FILE", d.join("node.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("spawn rabbitmq-server: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if answers(self.addr()) {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                return Err(format!(
                    "rabbitmq-server exited with {status}: {}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "RabbitMQ's MQTT listener did not answer on {} within {START_TIMEOUT:?}: {}",
            self.addr(),
            self.log()
        ))
    }

    /// The MQTT listener's address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The node's console log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("node.log")).unwrap_or_default()
    }

    /// Kills the node's whole process group (the script, the Erlang VM and its helpers).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .stderr(Stdio::null())
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RabbitMq {
    fn drop(&mut self) {
        self.kill();
    }
}
