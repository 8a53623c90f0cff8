//! Errors of the embedded broker.

use std::net::SocketAddr;
use std::path::PathBuf;

/// The underlying error from the broker library, kept as a source without exposing its type.
pub type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why the broker could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}{}", bind_hint(source))]
    Bind {
        /// The address from `--listen`.
        addr: SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A TLS file is missing, unreadable or holds no usable PEM item.
    #[error("TLS {role} file {}: {reason}", path.display())]
    Tls {
        /// Which file: `certificate`, `private key` or `client CA`.
        role: &'static str,
        /// The file as given.
        path: PathBuf,
        /// What is wrong with it, and the fix where there is one.
        reason: String,
    },
    /// The configuration was refused before anything was bound.
    #[error("invalid broker configuration: {0}")]
    Config(String),
    /// The broker library failed to start (storage, TLS setup) or stopped with an error.
    #[error("broker {stage} failed")]
    Broker {
        /// `start` or `run`.
        stage: &'static str,
        /// The library's error.
        source: Source,
    },
    /// The background task running the broker panicked or was cancelled.
    #[error("broker task ended abnormally")]
    Task(#[from] tokio::task::JoinError),
}

impl BrokerError {
    /// Whether the user can fix this by changing the command line or files (exit status 2),
    /// as opposed to a runtime failure (exit status 1).
    pub fn is_configuration(&self) -> bool {
        matches!(self, BrokerError::Tls { .. } | BrokerError::Config(_))
    }
}

fn bind_hint(err: &std::io::Error) -> &'static str {
    match err.kind() {
        std::io::ErrorKind::AddrInUse => {
            " (another broker, e.g. mosquitto, may own that port: stop it or pick another --listen)"
        }
        std::io::ErrorKind::AddrNotAvailable => " (that IP is not an address of this machine)",
        std::io::ErrorKind::PermissionDenied => " (ports below 1024 need privileges)",
        _ => "",
    }
}
