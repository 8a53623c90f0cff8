//! A private PostgreSQL cluster for the restart test: `initdb` in a temp directory, a free
//! loopback port, trust auth, started and stopped with `pg_ctl`. The machine's server on
//! 127.0.0.1:5432 is shared by every other test and is never restarted.
//!
//! PostgreSQL refuses to run as root, so as root (CI) the tools run as user `postgres`
//! through `runuser`, in a directory that user owns.

use std::path::PathBuf;
use std::process::{Command, Output};

use omega_testkit::ports::{answers, free_port};

const INSTALL_HINT: &str =
    "install PostgreSQL's server binaries with `apt-get install -y postgresql` (CI's .ci/run does)";

/// A running cluster, stopped (immediate) and deleted on drop.
pub(crate) struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

/// The newest `/usr/lib/postgresql/<version>/bin` holding `initdb`.
fn server_bin() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| {
                    let v = e.file_name().to_str()?.parse::<u32>().ok()?;
                    let bin = e.path().join("bin");
                    bin.join("initdb").exists().then_some((v, bin))
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
        .pop()
        .map(|(_, b)| b)
        .unwrap_or_else(|| panic!("no initdb under /usr/lib/postgresql/*/bin: {INSTALL_HINT}"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

impl PgCluster {
    /// `initdb`, then `pg_ctl start` on a free port (retried on another port if taken).
    pub(crate) fn start() -> PgCluster {
        let dir = tempfile::tempdir().unwrap();
        let as_postgres = is_root();
        if as_postgres {
            let out = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .output()
                .expect("run chown");
            assert!(
                out.status.success(),
                "chown postgres {}: {} (does user postgres exist? {INSTALL_HINT})",
                dir.path().display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut cluster = PgCluster {
            dir,
            bin: server_bin(),
            port: 0,
            as_postgres,
        };
        let data = cluster.data();
        cluster.tool(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        let mut last = String::new();
        for _ in 0..5 {
            cluster.port = free_port();
            match cluster.pg_ctl_start() {
                Ok(()) => return cluster,
                Err(e) => last = e,
            }
        }
        panic!("could not start a private PostgreSQL: {last}");
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Runs one of the server tools (as user `postgres` when root).
    fn run(&self, tool: &str, args: &[&str]) -> Output {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e} ({INSTALL_HINT})", exe.display()))
    }

    fn tool(&self, tool: &str, args: &[&str]) {
        let out = self.run(tool, args);
        assert!(
            out.status.success(),
            "{tool} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let data = self.data();
        let log = self.log();
        let out = self.run(
            "pg_ctl",
            &[
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &opts,
            ],
        );
        if out.status.success() && answers(self.addr()) {
            Ok(())
        } else {
            Err(format!(
                "pg_ctl start on port {}: {}{}\n{}",
                self.port,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(self.log()).unwrap_or_default()
            ))
        }
    }

    fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub(crate) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// `pg_ctl stop -m MODE` (`immediate`: no checkpoint, crash recovery at the next start;
    /// `fast`: clients disconnected, clean shutdown).
    pub(crate) fn stop(&self, mode: &str) {
        let data = self.data();
        self.tool(
            "pg_ctl",
            &["stop", "-w", "-m", mode, "-D", data.to_str().unwrap()],
        );
    }

    /// Starts the stopped cluster again on the same port.
    pub(crate) fn start_again(&self) {
        self.pg_ctl_start()
            .unwrap_or_else(|e| panic!("restart the private PostgreSQL: {e}"));
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self.run(
            "pg_ctl",
            &[
                "stop",
                "-w",
                "-m",
                "immediate",
                "-D",
                data.to_str().unwrap(),
            ],
        );
    }
}
