//! `omega bench …`: measurements on this machine, printed as Markdown and optionally written
//! into a section of `BENCHMARKS.md`.
//!
//! ## Layout
//! - [`agent_mem`]: the agent as a device runs it (a child process publishing to a private
//!   mosquitto) while an application writes ~10k rows/s: its RSS, peak RSS and CPU.
//! - [`capture`]: what the capture triggers cost the application (insert rate and commit
//!   latency, bare against captured, side by side) and how fast the engine builds batches.
//! - [`latency`]: the application's transaction latency with the agent (a second thread
//!   driving the engine without a network) or a control running beside it.
//! - [`variants`]: trigger and journal variants measured the same way (a profiling aid for
//!   the capture design; `--variants`).
//! - [`mosquitto`]: a private broker for one run.
//! - [`workload`]: the application side: its table and rows, a new file per run, timed
//!   transactions.
//! - [`report`]: machine facts, the statistics used, and the `BENCHMARKS.md` section.
//!
//! Every figure is a ratio against a reference measured in the same run, alternating the two
//! sides so that drift and caching do not favour either; absolute numbers are noisy on a busy
//! machine and are given only as the references of the ratios.

mod agent_mem;
mod capture;
#[cfg(all(feature = "cloud", feature = "broker"))]
mod e2e;
#[cfg(feature = "cloud")]
mod fleet;
mod latency;
mod mosquitto;
mod procfs;
mod report;
mod variants;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

/// Benchmarks. Each one prints a Markdown section; `--write` also puts it into a file.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// What capture costs the application: insert rate and commit latency with Omega's
    /// triggers against the same inserts without them, and the engine's batch build rate.
    Capture(CaptureArgs),
    /// The agent's memory and CPU (a child process, as a device runs it) while an
    /// application writes ~10k rows/s, next to the agent idle and the writer alone.
    Agent(AgentArgs),
    /// Rows per second from the application's file to the cloud's store (snapshot, live
    /// rows, telemetry), each next to the bare batched upsert of the same rows into the same
    /// store: SQLite always, PostgreSQL with `--postgres`.
    #[cfg(all(feature = "cloud", feature = "broker"))]
    E2e(E2eArgs),
    /// Many simulated devices into one, then two `omega cloud serve` processes sharing the
    /// subscription: rows/s, lag and the second process's speed-up.
    #[cfg(feature = "cloud")]
    Fleet(FleetArgs),
}

/// Arguments of `omega bench agent`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Seconds the application writes (and, for the reference, writes again alone).
    #[arg(long, value_name = "S", default_value_t = agent_mem::DEFAULT_SECONDS,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub seconds: u64,
    /// Rows per second the application writes, in 100-row transactions.
    #[arg(long, value_name = "N", default_value_t = agent_mem::DEFAULT_RATE,
          value_parser = clap::value_parser!(u64).range(100..=1_000_000))]
    pub rate: u64,
    /// The `omega` binary to run as the agent (default: this one). Devices run the build
    /// `cargo build --release -p omega --no-default-features --features agent`.
    #[arg(long, value_name = "PATH")]
    pub agent_bin: Option<PathBuf>,
    /// Use this broker (`mqtt://HOST:PORT`) instead of a private mosquitto.
    #[arg(long, value_name = "URL")]
    pub broker: Option<String>,
    /// Also replace (or append) this benchmark's section in FILE.
    #[arg(long, value_name = "FILE", num_args = 0..=1,
          default_missing_value = "BENCHMARKS.md")]
    pub write: Option<PathBuf>,
}

/// Arguments of `omega bench fleet`.
#[cfg(feature = "cloud")]
#[derive(Debug, Args)]
pub struct FleetArgs {
    /// Simulated devices (each its own MQTT connection and root topic).
    #[arg(long, value_name = "N", default_value_t = fleet::DEFAULT_DEVICES,
          value_parser = clap::value_parser!(u64).range(1..=50_000))]
    pub devices: u64,
    /// Batches each device publishes.
    #[arg(long, value_name = "N", default_value_t = fleet::DEFAULT_BATCHES,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub batches: u64,
    /// Rows per batch (1–4096, the agent's batch limit).
    #[arg(long, value_name = "N", default_value_t = fleet::DEFAULT_ROWS,
          value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub rows: u64,
    /// `ingest.workers` of each cloud process (concurrent batch transactions).
    #[arg(long, value_name = "N", default_value_t = fleet::DEFAULT_WORKERS,
          value_parser = clap::value_parser!(u64).range(1..=256))]
    pub workers: u64,
    /// The store: a fresh database is created next to this PostgreSQL URL's for each run
    /// (default: a SQLite file).
    #[arg(long, value_name = "URL")]
    pub postgres: Option<String>,
    /// Use this broker (`mqtt://HOST:PORT`) instead of a private mosquitto; it must queue
    /// enough for the cloud's session.
    #[arg(long, value_name = "URL")]
    pub broker: Option<String>,
    /// Also replace (or append) this benchmark's section in FILE.
    #[arg(long, value_name = "FILE", num_args = 0..=1,
          default_missing_value = "BENCHMARKS.md")]
    pub write: Option<PathBuf>,
}

/// Arguments of `omega bench e2e`.
#[cfg(all(feature = "cloud", feature = "broker"))]
#[derive(Debug, Args)]
pub struct E2eArgs {
    /// Rows per flow.
    #[arg(long, value_name = "N", default_value_t = e2e::DEFAULT_ROWS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub rows: u64,
    /// Also measure into this PostgreSQL database (its tables are created as the cloud does).
    #[arg(long, value_name = "URL")]
    pub postgres: Option<String>,
    /// Instead of the flows above: the live rows, the paced latency and the reconnect time
    /// after broker restarts over each of these transports, side by side (repeat the flag or
    /// separate with commas); its own section `omega bench e2e --transport`.
    #[arg(long, value_enum, value_name = "TRANSPORT", value_delimiter = ',')]
    pub transport: Vec<e2e::transport::Transport>,
    /// Also replace (or append) this benchmark's section in FILE.
    #[arg(long, value_name = "FILE", num_args = 0..=1,
          default_missing_value = "BENCHMARKS.md")]
    pub write: Option<PathBuf>,
}

/// Arguments of `omega bench capture`.
#[derive(Debug, Args)]
pub struct CaptureArgs {
    /// Rows per measurement (1 row/txn measurements use a twentieth of it).
    #[arg(long, value_name = "N", default_value_t = capture::DEFAULT_ROWS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub rows: u64,
    /// Repetitions of each measurement; figures are medians over them.
    #[arg(long, value_name = "N", default_value_t = capture::DEFAULT_REPEAT,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub repeat: u64,
    /// Also replace (or append) this benchmark's section in FILE.
    #[arg(long, value_name = "FILE", num_args = 0..=1,
          default_missing_value = "BENCHMARKS.md")]
    pub write: Option<PathBuf>,
    /// Directory for the scratch databases (default: a new directory under the system
    /// temporary directory). Its file system decides what a commit costs.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Also measure trigger and journal variants (where the capture time goes; slower).
    #[arg(long)]
    pub variants: bool,
}

/// Runs a bench subcommand.
pub fn run(cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCommand::Agent(args) => {
            let section = agent_mem::run(&args)?;
            print!("{section}");
            if let Some(path) = &args.write {
                report::write_section(path, agent_mem::SECTION_TITLE, &section)?;
                eprintln!(
                    "wrote section `{}` of {}",
                    agent_mem::SECTION_TITLE,
                    path.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Capture(args) => {
            let section = capture::run(&args)?;
            print!("{section}");
            if let Some(path) = &args.write {
                report::write_section(path, capture::SECTION_TITLE, &section)?;
                eprintln!(
                    "wrote section `{}` of {}",
                    capture::SECTION_TITLE,
                    path.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(all(feature = "cloud", feature = "broker"))]
        BenchCommand::E2e(args) => {
            let (title, section) = if args.transport.is_empty() {
                (e2e::SECTION_TITLE, e2e::run(&args)?)
            } else {
                (e2e::transport::SECTION_TITLE, e2e::transport::run(&args)?)
            };
            print!("{section}");
            if let Some(path) = &args.write {
                report::write_section(path, title, &section)?;
                eprintln!("wrote section `{title}` of {}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "cloud")]
        BenchCommand::Fleet(args) => {
            let section = fleet::run(&args)?;
            print!("{section}");
            if let Some(path) = &args.write {
                report::write_section(path, fleet::SECTION_TITLE, &section)?;
                eprintln!(
                    "wrote section `{}` of {}",
                    fleet::SECTION_TITLE,
                    path.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
