//! `omega broker`: the embedded MQTT broker for development, tests and the demo
//! (`crates/omega-broker`, `docs/broker.md`).
//!
//! Prints one line on stdout once the listener is bound, `listening on mqtt://ADDR` (or
//! `mqtts://`), so scripts can wait for it and read the port, and with `--quic` a second one,
//! `listening on quics://ADDR`; logs go to stderr. Stops
//! gracefully on SIGINT or SIGTERM and exits 0.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use omega_broker::{Broker, BrokerConfig, BrokerError, QuicListener, SessionStore, TlsFiles};

use crate::exit::UsageError;

/// `omega broker` options.
#[derive(Debug, Args)]
pub struct BrokerArgs {
    /// IP:PORT to listen on, for MQTT 3.1.1 and 5 alike (TLS only when --tls-cert is given).
    /// Port 0 picks a free port; the printed line tells which.
    #[arg(long, value_name = "ADDR", default_value_t = omega_broker::config::defaults::LISTEN)]
    listen: SocketAddr,
    /// Server certificate chain (PEM). Makes the listener TLS; needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Server private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// CA certificates (PEM) for client certificates: with it every client must present a
    /// certificate signed by this CA (mutual TLS).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_ca: Option<PathBuf>,
    /// Keep sessions and queued messages in DIR so that they survive a broker restart
    /// (default: in memory, kept only while the broker runs).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// UDP IP:PORT for MQTT over QUIC, beside the --listen listener. Uses --quic-cert,
    /// --quic-key and --quic-ca, or else the --tls-* files (QUIC always needs a certificate).
    #[arg(long, value_name = "ADDR")]
    quic: Option<SocketAddr>,
    /// Server certificate chain (PEM) for the QUIC listener only (the --listen listener
    /// stays as --tls-* make it, e.g. plain TCP).
    #[arg(long, value_name = "FILE", requires_all = ["quic", "quic_key"])]
    quic_cert: Option<PathBuf>,
    /// Server private key (PEM) for the QUIC listener.
    #[arg(long, value_name = "FILE", requires_all = ["quic", "quic_cert"])]
    quic_key: Option<PathBuf>,
    /// CA certificates (PEM) for client certificates on the QUIC listener (mutual TLS).
    #[arg(long, value_name = "FILE", requires = "quic_cert")]
    quic_ca: Option<PathBuf>,
}

impl BrokerArgs {
    fn config(&self) -> Result<BrokerConfig, UsageError> {
        let mut config = BrokerConfig::new(self.listen);
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            config = config.with_tls(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: self.tls_ca.clone(),
            });
        }
        if let Some(dir) = &self.data_dir {
            config = config.with_sessions(SessionStore::Dir(dir.clone()));
        }
        if let Some(listen) = self.quic {
            let tls = match (&self.quic_cert, &self.quic_key, &config.tls) {
                (Some(cert), Some(key), _) => TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    client_ca: self.quic_ca.clone(),
                },
                (_, _, Some(tls)) => tls.clone(),
                _ => {
                    return Err(UsageError(
                        "--quic needs a server certificate: give --quic-cert and --quic-key \
                         (or --tls-cert and --tls-key)"
                            .into(),
                    ));
                }
            };
            config = config.with_quic(QuicListener { listen, tls });
        }
        Ok(config)
    }
}

/// Runs the broker until SIGINT or SIGTERM.
pub fn run(args: BrokerArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("omega-broker")
        .build()
        .context("cannot start the async runtime")?;
    let config = args.config()?;
    runtime.block_on(serve(config))
}

async fn serve(config: BrokerConfig) -> anyhow::Result<ExitCode> {
    // Handlers first, so that a signal right after the "listening" line is not missed.
    let stop = stop_signal()?;
    let broker = Broker::bind(config).await.map_err(classify)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {}", broker.url())
        .and_then(|()| match broker.quic_url() {
            Some(quic) => writeln!(out, "listening on {quic}"),
            None => Ok(()),
        })
        .and_then(|()| out.flush())
        .context("cannot write to stdout")?;
    drop(out);
    broker.run(stop).await?;
    tracing::info!("broker stopped");
    Ok(ExitCode::SUCCESS)
}

/// Bad files and options exit 2 (`spec/cli.md`); a port in use or a broker failure exits 1.
fn classify(err: BrokerError) -> anyhow::Error {
    if err.is_configuration() {
        anyhow::Error::new(UsageError(err.to_string()))
    } else {
        anyhow::Error::new(err)
    }
}

/// Resolves on the first SIGINT (Ctrl-C) or SIGTERM.
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
        tracing::info!(signal = name, "stopping the broker");
    })
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
fn stop_signal() -> anyhow::Result<impl Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("stopping the broker");
    })
}
