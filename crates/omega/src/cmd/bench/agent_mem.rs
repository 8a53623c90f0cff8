//! `omega bench agent`: the agent's memory and CPU while an application writes at a steady
//! rate, as a device runs it.
//!
//! The agent is a real child process (`omega agent run --config device.yaml`, from
//! `--agent-bin` or this binary) publishing to a private mosquitto (or `--broker`) with
//! `delivery: puback` and `flush_interval: 100ms`. A thread of the bench is the application:
//! paced 100-row transactions into `readings` (WAL). The child's `/proc/PID/status` (VmRSS,
//! VmHWM) and `/proc/PID/stat` (utime + stime) are sampled every 250 ms through four phases:
//! 1. the agent idle (triggers installed, connected, no writes) — the memory reference;
//! 2. the application writing for `--seconds` while the agent publishes;
//! 3. the drain: writes stopped, until `state.db` and the journal say every row was published
//!    and pruned (what `omega agent status` reads);
//! 4. after the agent stopped (SIGTERM): the same writer alone for the same time — the
//!    application's own rate and CPU, the reference for the agent's CPU;
//! 5. catch-up: the agent started again with those rows waiting (as after an outage), until
//!    they are all published — the memory of full-size flushes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use super::procfs;
use super::report::{self, Machine, Table};
use super::workload::{self, JournalMode};

/// The section of `BENCHMARKS.md`.
pub const SECTION_TITLE: &str = "omega bench agent";
/// Seconds the application writes.
pub const DEFAULT_SECONDS: u64 = 20;
/// Rows per second the application writes.
pub const DEFAULT_RATE: u64 = 10_000;
/// Rows per application transaction.
const ROWS_PER_TXN: u64 = 100;
/// How often the agent's `/proc` files are read.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// How long the idle agent is sampled.
const IDLE: Duration = Duration::from_secs(5);
/// How long the agent may take to install its triggers, and to publish what is left after
/// the writes stopped.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);
/// The stated goal (`issues` #10).
const GOAL_MIB: f64 = 16.0;

/// One reading of the agent's `/proc` files.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Duration,
    rss_kib: u64,
    hwm_kib: u64,
    cpu: Duration,
}

/// The samples of one phase.
#[derive(Debug, Default)]
struct Phase {
    samples: Vec<Sample>,
}

impl Phase {
    fn wall(&self) -> Duration {
        match (self.samples.first(), self.samples.last()) {
            (Some(a), Some(b)) => b.at - a.at,
            _ => Duration::ZERO,
        }
    }

    fn rss_p50(&self) -> f64 {
        let v: Vec<f64> = self.samples.iter().map(|s| s.rss_kib as f64).collect();
        report::median(&v)
    }

    fn rss_max(&self) -> u64 {
        self.samples.iter().map(|s| s.rss_kib).max().unwrap_or(0)
    }

    fn hwm(&self) -> u64 {
        self.samples.iter().map(|s| s.hwm_kib).max().unwrap_or(0)
    }

    /// CPU time over wall time, in percent of one core.
    fn cpu_pct(&self) -> f64 {
        match (self.samples.first(), self.samples.last()) {
            (Some(a), Some(b)) if b.at > a.at => {
                (b.cpu - a.cpu).as_secs_f64() / (b.at - a.at).as_secs_f64() * 100.0
            }
            _ => f64::NAN,
        }
    }
}

/// What the application thread did.
#[derive(Debug, Clone, Copy)]
struct Written {
    rows: u64,
    wall: Duration,
    cpu: Duration,
}

/// The agent child; SIGKILL on drop if still running.
struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails with the end of its log when the agent has exited.
    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("the agent exited ({status}):\n{}", log_tail(&self.log));
        }
        Ok(())
    }

    /// SIGTERM, then waits for the exit (SIGKILL after 15 s).
    fn stop(&mut self) -> anyhow::Result<()> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!("the agent stopped with {status}:\n{}", log_tail(&self.log));
                }
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("the agent did not stop within 15 s of SIGTERM")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Runs the bench and returns its Markdown section.
pub fn run(args: &super::AgentArgs) -> anyhow::Result<String> {
    let started = Instant::now();
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let dir = scratch.path();
    let bin = match &args.agent_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe().context("finding the omega binary")?,
    };
    let build = describe_binary(&bin)?;
    let (_mosquitto, broker) = match &args.broker {
        Some(url) => (None, url.clone()),
        None => {
            let (m, url) = super::mosquitto::start(dir)?;
            (Some(m), url)
        }
    };
    let source = workload::create_source(dir, JournalMode::Wal, workload::READINGS_DDL)?;
    let state = dir.join("state").join("state.db");
    let config = dir.join("device.yaml");
    let device = format!("bench-agent-{}", &omega_protocol::ids::new_v7()[24..]);
    std::fs::write(
        &config,
        format!(
            "name: {device}\nconnection:\n  server_url: {broker}\n  device_id: {device}\n\
             security:\n  capabilities: {{ sqlite-replication: true }}\n  signed_control: {{ enabled: false }}\n\
             sqlite-replication:\n  source_db_path: {}\n  state_db_path: {}\n  flush_interval: 100ms\n  delivery: puback\n",
            source.display(),
            state.display()
        ),
    )?;
    let duration = Duration::from_secs(args.seconds);

    eprintln!("bench agent: starting {} …", bin.display());
    let mut agent = start_agent(&bin, &config, dir)?;
    wait_captured(&mut agent, &source)?;

    eprintln!("bench agent: idle for {} s …", IDLE.as_secs());
    let t0 = Instant::now();
    let idle = sample_until(&mut agent, t0, |_| Ok(t0.elapsed() >= IDLE))?;

    eprintln!(
        "bench agent: writing {} rows/s for {} s while the agent publishes …",
        args.rate, args.seconds
    );
    let writer = spawn_writer(source.clone(), 1, args.rate, duration);
    let loaded = sample_until(&mut agent, t0, |_| Ok(writer.is_finished()))?;
    let with_agent = writer
        .join()
        .map_err(|_| anyhow::anyhow!("the writer thread panicked"))??;

    eprintln!("bench agent: waiting until every row is published …");
    let drain_start = Instant::now();
    let drain = sample_until(&mut agent, t0, |_| {
        if drain_start.elapsed() > DRAIN_TIMEOUT {
            bail!(
                "rows still pending {} s after the writes stopped",
                DRAIN_TIMEOUT.as_secs()
            );
        }
        all_published(&state, &source)
    })?;
    let drain_wall = drain_start.elapsed();
    agent.stop()?;
    let acked = acked_rows(&agent.log);
    let final_status = omega_agent::status::collect(&state, &source, 256 << 20)
        .context("reading state.db after the run")?;
    let readings = final_status
        .tables
        .iter()
        .find(|t| t.name == "readings")
        .context("state.db does not track `readings`")?;
    let (pending, buffered) = (
        readings.pending_rows.unwrap_or(-1),
        readings.buffered_rows.unwrap_or(-1),
    );

    eprintln!("bench agent: the writer alone for {} s …", args.seconds);
    let alone = spawn_writer(
        source.clone(),
        1 + with_agent.rows as i64,
        args.rate,
        duration,
    )
    .join()
    .map_err(|_| anyhow::anyhow!("the writer thread panicked"))??;

    eprintln!(
        "bench agent: the agent restarted with {} rows waiting …",
        alone.rows
    );
    let t1 = Instant::now();
    let mut agent = start_agent(&bin, &config, dir)?;
    let catch_up = sample_until(&mut agent, t1, |_| {
        if t1.elapsed() > DRAIN_TIMEOUT {
            bail!(
                "the backlog was not published within {} s",
                DRAIN_TIMEOUT.as_secs()
            );
        }
        all_published(&state, &source)
    })?;
    let catch_up_wall = t1.elapsed();
    agent.stop()?;

    let machine = Machine::probe(dir);
    let mut out = report::header(
        SECTION_TITLE,
        &format!(
            "Agent: `{}` — {build}; bench: {}",
            bin.display(),
            report::build_line()
        ),
        &machine,
        started.elapsed(),
    );
    let broker_line = match &args.broker {
        Some(url) => format!("the broker at {url}"),
        None => "a private mosquitto".into(),
    };
    let _ = write!(
        out,
        "`omega agent run` as a child process → {broker_line}, `delivery: puback` (the journal is pruned on the broker's PUBACK; no cloud), `flush_interval: 100ms`. \
         The application is a thread of the bench: {} rows/s in {ROWS_PER_TXN}-row transactions into `readings` (7 columns, ~90 B/row, WAL, `synchronous=NORMAL`), paced to a fixed schedule. \
         The agent's `/proc/PID/status` (VmRSS, VmHWM) and `/proc/PID/stat` (utime + stime) are read every {} ms; CPU is in % of one core over the phase. \
         The reference rows: the same agent idle before the writes, and the same writer after the agent stopped (its triggers still installed); the last row is the agent started again with those rows waiting, until all are published. Everything shares this machine's cores.\n\n",
        report::count(args.rate as f64),
        SAMPLE_EVERY.as_millis()
    );
    let mut t = Table::new(&[
        "phase",
        "time",
        "app rows/s",
        "app CPU",
        "agent VmRSS p50",
        "agent VmRSS max",
        "agent VmHWM at the end",
        "agent CPU",
    ]);
    let mib = |kib: f64| format!("{:.1} MiB", kib / 1024.0);
    let pct = |x: f64| {
        if x.is_finite() {
            format!("{x:.1} %")
        } else {
            "–".into()
        }
    };
    let app = |w: &Written| {
        (
            report::count(w.rows as f64 / w.wall.as_secs_f64()),
            pct(w.cpu.as_secs_f64() / w.wall.as_secs_f64() * 100.0),
        )
    };
    let phase_row = |name: &str, p: &Phase, app: (String, String)| {
        vec![
            name.to_string(),
            format!("{:.1} s", p.wall().as_secs_f64()),
            app.0,
            app.1,
            mib(p.rss_p50()),
            mib(p.rss_max() as f64),
            mib(p.hwm() as f64),
            pct(p.cpu_pct()),
        ]
    };
    t.row(phase_row(
        "agent idle (reference)",
        &idle,
        ("–".into(), "–".into()),
    ));
    t.row(phase_row(
        "app writing, agent publishing",
        &loaded,
        app(&with_agent),
    ));
    t.row(phase_row(
        "drain (writes stopped, until all published)",
        &drain,
        ("–".into(), "–".into()),
    ));
    let (rate, cpu) = app(&alone);
    t.row(vec![
        "app writing, agent stopped (reference)".into(),
        format!("{:.1} s", alone.wall.as_secs_f64()),
        rate,
        cpu,
        "–".into(),
        "–".into(),
        "–".into(),
        "–".into(),
    ]);
    t.row(phase_row(
        "catch-up: agent restarted with the reference's rows waiting",
        &catch_up,
        ("–".into(), "–".into()),
    ));
    out.push_str(&t.render());
    let peak = [&idle, &loaded, &drain]
        .iter()
        .map(|p| p.hwm())
        .max()
        .unwrap_or(0) as f64
        / 1024.0;
    let every: Vec<String> = loaded
        .samples
        .iter()
        .chain(&drain.samples)
        .step_by(20)
        .map(|s| format!("{:.1}", s.rss_kib as f64 / 1024.0))
        .collect();
    let _ = write!(
        out,
        "\nAgent VmRSS every 5 s from the first write (MiB): {}.\n\n\
         Rows: {} written while the agent ran; the agent counted {} PUBACKed; at the end `state.db` and the journal show {pending} pending and {buffered} buffered (every row published and pruned); drain took {}.\n\n\
         **Peak agent RSS (VmHWM): {peak:.1} MiB** — goal ≤ {GOAL_MIB:.0} MiB (stated, not asserted; `issues` #10): {}. \
         Agent CPU while publishing: {} of one core, against {} for the application writing the same rows.\n\n\
         Catch-up (as after an outage): {} rows published {} after the agent process started ({} rows/s), peak RSS {:.1} MiB.\n",
        every.join(", "),
        report::count(with_agent.rows as f64),
        acked.map_or("?".to_string(), |n| report::count(n as f64)),
        report::dur(drain_wall),
        if peak <= GOAL_MIB { "met" } else { "missed" },
        pct(loaded.cpu_pct()),
        app(&with_agent).1,
        report::count(alone.rows as f64),
        report::dur(catch_up_wall),
        report::count(alone.rows as f64 / catch_up_wall.as_secs_f64()),
        catch_up.hwm() as f64 / 1024.0,
    );
    Ok(out)
}

/// "device build" or "full build", from whether the binary has the `cloud` subcommand, with
/// its version line.
fn describe_binary(bin: &Path) -> anyhow::Result<String> {
    let version = Command::new(bin)
        .arg("--version")
        .output()
        .with_context(|| format!("running {} --version", bin.display()))?;
    if !version.status.success() {
        bail!("{} --version failed", bin.display());
    }
    let cloud = Command::new(bin)
        .args(["cloud", "--help"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?
        .success();
    Ok(format!(
        "`{}`, {}",
        String::from_utf8_lossy(&version.stdout).trim(),
        if cloud {
            "a full build (has `omega cloud`; devices run `--no-default-features --features agent`)"
        } else {
            "the device build (agent only)"
        }
    ))
}

fn start_agent(bin: &Path, config: &Path, dir: &Path) -> anyhow::Result<Agent> {
    let log = dir.join("agent.log");
    let child = Command::new(bin)
        .args(["agent", "run", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn,omega_agent::run=info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .with_context(|| format!("starting {} agent run", bin.display()))?;
    Ok(Agent { child, log })
}

/// Waits until the agent's capture triggers exist (rows written earlier would need a
/// snapshot).
fn wait_captured(agent: &mut Agent, source: &Path) -> anyhow::Result<()> {
    let conn = rusqlite::Connection::open(source)?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let n: i64 = conn.query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = 'readings'",
            [],
            |r| r.get(0),
        )?;
        if n >= 3 {
            return Ok(());
        }
        agent.check_alive()?;
        if Instant::now() > deadline {
            bail!(
                "the agent installed no triggers within {} s:\n{}",
                START_TIMEOUT.as_secs(),
                log_tail(&agent.log)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Samples the agent every [`SAMPLE_EVERY`] (times from `t0`) until `done` says so; the
/// first sample is taken at once, the last after `done` returned true.
fn sample_until(
    agent: &mut Agent,
    t0: Instant,
    mut done: impl FnMut(&Phase) -> anyhow::Result<bool>,
) -> anyhow::Result<Phase> {
    let mut phase = Phase::default();
    let mut next = Instant::now();
    loop {
        agent.check_alive()?;
        phase.samples.push(sample(agent.pid(), t0)?);
        if done(&phase)? {
            phase.samples.push(sample(agent.pid(), t0)?);
            return Ok(phase);
        }
        next += SAMPLE_EVERY;
        if let Some(d) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
}

fn sample(pid: u32, t0: Instant) -> anyhow::Result<Sample> {
    let m = procfs::memory(Some(pid)).with_context(|| format!("reading /proc/{pid}/status"))?;
    Ok(Sample {
        at: t0.elapsed(),
        rss_kib: m.rss / 1024,
        hwm_kib: m.peak / 1024,
        cpu: procfs::process_cpu(Some(pid)).with_context(|| format!("reading /proc/{pid}/stat"))?,
    })
}

/// The application: `rate` rows/s in [`ROWS_PER_TXN`]-row transactions for `duration`, ids
/// from `first_id`, each transaction started at its slot of a fixed schedule (late ones run
/// at once, so the rate holds on average). Reports its own CPU time (this thread's).
fn spawn_writer(
    source: PathBuf,
    first_id: i64,
    rate: u64,
    duration: Duration,
) -> JoinHandle<anyhow::Result<Written>> {
    std::thread::spawn(move || {
        let conn = workload::app_conn(&source, JournalMode::Wal)?;
        let mut stmt = conn.prepare(workload::INSERT_SQL)?;
        let slot = Duration::from_secs_f64(ROWS_PER_TXN as f64 / rate as f64);
        let cpu0 = thread_cpu()?;
        let start = Instant::now();
        let txns = (rate as f64 * duration.as_secs_f64() / ROWS_PER_TXN as f64).round() as u32;
        let mut id = first_id;
        for k in 0..txns {
            let due = start + slot * k;
            if let Some(d) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(d);
            }
            conn.execute_batch("BEGIN")?;
            for _ in 0..ROWS_PER_TXN {
                workload::row(id).insert(&mut stmt)?;
                id += 1;
            }
            conn.execute_batch("COMMIT")?;
        }
        let wall = start.elapsed();
        Ok(Written {
            rows: (id - first_id) as u64,
            wall,
            cpu: thread_cpu()? - cpu0,
        })
    })
}

/// This thread's CPU time.
fn thread_cpu() -> anyhow::Result<Duration> {
    procfs::thread_cpu().context("reading /proc/thread-self/stat")
}

/// Whether every captured change of `readings` is published and pruned: nothing above the
/// published cursor, nothing kept unconfirmed (what `omega agent status` shows).
fn all_published(state: &Path, source: &Path) -> anyhow::Result<bool> {
    let r = omega_agent::status::collect(state, source, 256 << 20)?;
    Ok(r.tables
        .iter()
        .find(|t| t.name == "readings")
        .is_some_and(|t| t.pending_rows == Some(0) && t.buffered_rows == Some(0)))
}

/// The rows the agent reported PUBACKed in its `agent stopped` log line.
fn acked_rows(log: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text.lines().rev().find(|l| l.contains("agent stopped"))?;
    let at = line.find(" rows=")? + " rows=".len();
    line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stop_line_gives_the_acked_rows() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("agent.log");
        std::fs::write(
            &log,
            "x INFO agent{device_id=d}: omega_agent::run: agent stopped batches=12 rows=200000\n",
        )
        .unwrap();
        assert_eq!(acked_rows(&log), Some(200_000));
    }
}
