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
//! The HTTP API (`cloud.md` §18) is served on `api.listen` (or `--http`) beside ingest and
//! stops with it; once bound it prints `http: listening on ADDR` on stdout. If the address
//! cannot be bound the error is logged and ingest runs without the API.

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
    // JITR (cloud.md §16): the CA files are read now, so a bad one stops the start (exit 2).
    let jitr = (cfg.jitr.as_ref())
        .map(omega_cloud::jitr::JitrService::load)
        .transpose()
        .map_err(|e| UsageError(format!("jitr: {e}")))?
        .map(Arc::new);
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
        let filter = opts.subscription().map_err(|e| ingest_error(e.into()))?;
        let stats = Arc::new(IngestStats::default());
        // One stop signal for ingest and the HTTP API.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stop_tx = Arc::new(stop_tx);
        let stopped = move |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let http_stop = stopped(stop_rx.clone());
        let http = serve_api(
            &cfg,
            store.clone(),
            opts.policy,
            stats.clone(),
            jitr,
            http_stop,
        )
        .await;
        let ready = tokio::spawn(announce_ready(stats.clone(), filter));
        let relay = tokio::spawn({
            let stop_tx = stop_tx.clone();
            async move {
                stop.await;
                let _ = stop_tx.send(true);
            }
        });
        let ingest_stop = stopped(stop_rx);
        let result =
            with_store!(store, s => serve_with_stats(opts, s, stats.clone(), ingest_stop).await);
        ready.abort();
        relay.abort();
        // Ingest is done (stopped or failed): the API stops too, in-flight requests get a
        // moment to finish.
        let _ = stop_tx.send(true);
        if let Some(mut http) = http
            && tokio::time::timeout(Duration::from_secs(5), &mut http)
                .await
                .is_err()
        {
            http.abort();
        }
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

/// Binds `api.listen` and serves the HTTP API until `stop`; `None` if it cannot be bound.
async fn serve_api(
    cfg: &omega_cloud::config::CloudConfig,
    store: omega_cloud::store::AnyStore,
    policy: omega_cloud::policy::Policy,
    stats: Arc<IngestStats>,
    jitr: Option<Arc<omega_cloud::jitr::JitrService>>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Option<tokio::task::JoinHandle<()>> {
    let listener = match tokio::net::TcpListener::bind(cfg.api.listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(
                listen = %cfg.api.listen,
                error = %e,
                "cannot bind the HTTP API: running without it"
            );
            return None;
        }
    };
    let addr = listener.local_addr().unwrap_or(cfg.api.listen);
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "http: listening on {addr}").and_then(|()| out.flush());
    }
    let token = cfg.api.token.as_ref().map(|t| t.expose().to_string());
    let mut state = omega_cloud::api::ApiState::new(store, policy, token, Some(stats));
    // Read (and checked) once already by `run`; the API signs pause/resume controls with it.
    if let Ok(key) = cfg.control.read_key(&cfg.file) {
        state = state.with_control_key(key);
    }
    if let Some(j) = jitr {
        state = state.with_jitr(j);
    }
    Some(tokio::spawn(async move {
        if let Err(e) = omega_cloud::api::serve_http(listener, state, stop).await {
            tracing::error!(error = %e, "the HTTP API stopped");
        }
    }))
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
