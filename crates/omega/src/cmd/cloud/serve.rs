//! `omega cloud serve --config FILE [--broker URL] [--store URL] [--http ADDR] [--workers N]`
//! (`cloud.md` §2, §4, §15).
//!
//! Loads `cloud.yaml` and applies the flags over it (any error exits 2, naming the file or the
//! flag), reads the control-signing key (exit 2 if it cannot be read), opens the store
//! (migrations included), and runs ingest with signed delivery receipts (`receipts.md` §4,
//! paced by `receipts.interval`) until SIGINT or SIGTERM: in-flight messages then get a grace
//! period to commit and be acknowledged, pending receipts are sent, and the process exits 0.
//!
//! Prints one line on stdout once the broker confirmed the subscription,
//! `ready: subscribed to FILTER`, so scripts and tests can wait for it. Logs go to stderr.
//!
//! The HTTP API (`api.listen`, `--http`) is not part of this command yet: the address is
//! checked and logged as ignored.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use omega_cloud::ingest::{IngestError, IngestOptions, IngestStats, serve_with_stats};
use omega_cloud::receipts::ReceiptOptions;
use omega_cloud::with_store;

use super::ServeArgs;
use super::store::{load_config, store_error};
use crate::exit::UsageError;

/// Runs ingest until a signal.
pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = load_config(&args.config)?;
    cfg.apply_overrides(
        args.broker.as_deref(),
        args.store.as_deref(),
        args.http.as_deref(),
        args.workers,
    )
    .map_err(|e| UsageError(e.to_string()))?;
    for w in cfg.warnings() {
        tracing::warn!(path = %w.path, "{}", w.message);
    }
    let key = cfg
        .control
        .read_key(&cfg.file)
        .map_err(|e| UsageError(e.to_string()))?;
    let mut opts = IngestOptions::from_config(&cfg, &hostname()).map_err(ingest_error)?;
    opts.receipts = Some(ReceiptOptions::new(key, cfg.receipts_interval));
    let workers = opts.workers;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("omega-cloud")
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        // Handlers first, so that a signal right after the "ready" line is not missed.
        let stop = stop_signal()?;
        let store = omega_cloud::store::open_config(&cfg.store, workers + 2)
            .await
            .map_err(store_error)?;
        tracing::info!(
            listen = %cfg.api.listen,
            "the HTTP API is not served by this build yet: api.listen / --http is ignored"
        );
        let filter = opts.subscription().map_err(|e| ingest_error(e.into()))?;
        let stats = Arc::new(IngestStats::default());
        let ready = tokio::spawn(announce_ready(stats.clone(), filter));
        let result = with_store!(store, s => serve_with_stats(opts, s, stats.clone(), stop).await);
        ready.abort();
        result.map_err(ingest_error)?;
        tracing::info!(
            received = stats.received.load(Ordering::Relaxed),
            applied = stats.applied.load(Ordering::Relaxed),
            quarantined = stats.quarantined.load(Ordering::Relaxed),
            "cloud stopped"
        );
        Ok(ExitCode::SUCCESS)
    })
}

/// Prints the ready line once the broker confirmed the first subscription.
async fn announce_ready(stats: Arc<IngestStats>, filter: String) {
    while stats.subscribed.load(Ordering::Relaxed) == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "ready: subscribed to {filter}").and_then(|()| out.flush());
}

/// Configuration problems exit 2; a client failure exits 1.
fn ingest_error(e: IngestError) -> anyhow::Error {
    match e {
        IngestError::Client(_) => anyhow::Error::new(e).context("ingest stopped"),
        other => UsageError(other.to_string()).into(),
    }
}

/// The host name for `{hostname}` in `broker.client_id`.
fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Resolves on the first SIGINT or SIGTERM.
#[cfg(unix)]
fn stop_signal() -> anyhow::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    Ok(async move {
        let name = tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        };
        tracing::info!(
            signal = name,
            "stopping: in-flight messages get a grace period to commit and be acknowledged"
        );
    })
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
fn stop_signal() -> anyhow::Result<impl Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("stopping");
    })
}
