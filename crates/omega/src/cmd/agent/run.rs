//! `omega agent run` (`cli.md`, `agent.md` §3, §18).

use std::process::ExitCode;

use anyhow::Context;
use omega_agent::config::AgentConfig;
use omega_agent::engine::EngineError;
use omega_agent::run::{RunConfig, RunError, run as run_agent};
use omega_config::process_env;

use super::RunArgs;
use crate::exit::UsageError;

/// Loads the configuration (exit 2 on any error), then runs until a signal.
pub fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let config = AgentConfig::load(&args.config, &process_env).map_err(|errors| {
        let lines: Vec<String> = errors.errors().iter().map(ToString::to_string).collect();
        UsageError(lines.join("\n"))
    })?;
    for w in &config.findings.warnings {
        tracing::warn!(path = %w.path, "{}", w.message);
    }
    // Crash points armed by FAILPOINTS, in test builds only (a no-op otherwise).
    omega_agent::failpoint::setup_from_env();
    let mut cfg = RunConfig::from_agent_config(&config);
    cfg.verification =
        RunConfig::load_verification(&config).map_err(|e| UsageError(e.to_string()))?;
    let rt = runtime().context("starting the runtime")?;
    // Progress bars when a person watches (stdout a terminal), log lines otherwise.
    let stop_bars = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let bars = std::io::IsTerminal::is_terminal(&std::io::stdout()).then(|| {
        super::progress::spawn(
            cfg.engine.state_db_path.clone(),
            cfg.engine.source_db_path.clone(),
            stop_bars.clone(),
        )
    });
    // JITR (agent.md §3 step 2, §17): one attempt before anything else; failure exits 1.
    if let Some(j) = &config.connection.jitr {
        let ca = config.connection.mqtt.tls.ca_cert_path.as_deref();
        let now = time::OffsetDateTime::now_utc();
        rt.block_on(omega_agent::enroll::ensure_enrolled(j, ca, now))
            .context(
                "JITR enrollment failed (no retry: the agent exits; a supervisor restarts it)",
            )?;
    }
    // The handlers exist before the engine opens (and installs the capture triggers): a
    // signal during startup stops the agent cleanly instead of killing it.
    let shutdown = {
        let _runtime = rt.enter();
        shutdown_signal()
    };
    let summary = rt.block_on(async move { run_agent(cfg, shutdown).await });
    stop_bars.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(b) = bars {
        let _ = b.join();
    }
    match summary {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(RunError::Transport(e)) => Err(UsageError(e.to_string()).into()),
        Err(RunError::Engine(EngineError::Discover(e))) => {
            Err(anyhow::Error::new(e).context("reading the source schema"))
        }
        Err(e) => Err(e.into()),
    }
}

/// The agent's runtime: the event loop on this thread and one blocking thread for the engine
/// (SQLite). Every engine step is serialised by the engine's lock anyway, and each thread
/// that allocates gets its own glibc malloc arena that keeps what it once held: with a
/// multi-thread runtime the agent's RSS under load was ~2× its live heap
/// (`BENCHMARKS.md`, "omega bench agent").
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(1)
        .enable_all()
        .build()
}

/// Resolves on the first SIGINT or SIGTERM; a second signal exits at once (the state stays
/// safe: `agent.md` §16). The handlers are registered when this is called (inside the
/// runtime), not when the future is first polled.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        tracing::info!(
            "signal received: finishing in-flight batches (a second signal exits at once)"
        );
        tokio::spawn(async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            std::process::exit(1);
        });
    }
}
