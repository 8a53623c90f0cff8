//! Binding and running the broker.
//!
//! Two steps, as in mini-redis: [`Broker::bind`] binds the listener and checks the files (so
//! that errors come before anything prints "listening"), then [`Broker::run`] serves until the
//! caller's shutdown future resolves. Tests bind port 0 and read [`Broker::local_addr`];
//! [`Broker::spawn`] runs the broker on a background task for tests and the demo.

use std::future::Future;
use std::net::SocketAddr;

use mqtt5::broker::MqttBroker;
use mqtt5::broker::config::{
    BrokerConfig as LibConfig, QuicConfig as LibQuic, StorageBackend, StorageConfig,
    TlsConfig as LibTls,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::{BrokerConfig, SessionStore};
use crate::error::BrokerError;
use crate::tls;

/// A bound broker that is not serving yet. Connections that arrive before [`Broker::run`]
/// wait in the listen backlog.
pub struct Broker {
    inner: MqttBroker,
    local_addr: SocketAddr,
    tls: bool,
    quic_addr: Option<SocketAddr>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("local_addr", &self.local_addr)
            .field("tls", &self.tls)
            .field("quic_addr", &self.quic_addr)
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// Checks the configuration and TLS files, opens the session store and binds
    /// `config.listen`.
    pub async fn bind(config: BrokerConfig) -> Result<Broker, BrokerError> {
        if config.max_packet_size < 1024 {
            return Err(BrokerError::Config(format!(
                "max packet size {} is below the 1024-byte minimum",
                config.max_packet_size
            )));
        }
        for files in config
            .tls
            .iter()
            .chain(config.quic.as_ref().map(|q| &q.tls))
        {
            tls::check(files)?;
            tls::install_provider();
        }
        if let SessionStore::Dir(dir) = &config.sessions {
            std::fs::create_dir_all(dir).map_err(|e| {
                BrokerError::Config(format!("session directory {}: {e}", dir.display()))
            })?;
        }
        let tls = config.tls.is_some();
        let listen = config.listen;
        let inner = match MqttBroker::with_config(library_config(&config)).await {
            Ok(inner) => inner,
            Err(e) => return Err(diagnose_bind(listen).unwrap_or_else(|| started(e))),
        };
        // The library logs and carries on without TLS when the TLS listener cannot bind.
        let bound = if tls {
            inner.tls_local_addr()
        } else {
            inner.local_addr()
        };
        let Some(local_addr) = bound else {
            return Err(diagnose_bind(listen).unwrap_or_else(|| BrokerError::Bind {
                addr: listen,
                source: std::io::Error::other("the listener did not bind"),
            }));
        };
        let quic_addr = match &config.quic {
            None => None,
            Some(q) => Some(inner.quic_local_addr().ok_or_else(|| BrokerError::Bind {
                addr: q.listen,
                source: std::io::Error::other("the QUIC (UDP) listener did not bind"),
            })?),
        };
        Ok(Broker {
            inner,
            local_addr,
            tls,
            quic_addr,
        })
    }

    /// The address the listener is bound to (the real port when `listen` had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Whether the listener speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The UDP address of the QUIC listener, when there is one.
    pub fn quic_addr(&self) -> Option<SocketAddr> {
        self.quic_addr
    }

    /// `quics://ADDR`, the URL QUIC clients use, when there is a QUIC listener.
    pub fn quic_url(&self) -> Option<String> {
        self.quic_addr.map(|a| format!("quics://{a}"))
    }

    /// `mqtt://ADDR` or `mqtts://ADDR`, the URL clients use.
    pub fn url(&self) -> String {
        url(self.local_addr, self.tls)
    }

    /// Serves clients until `shutdown` resolves, then disconnects them and stops (waiting at
    /// most a few seconds for connections to close). In-memory sessions end with it.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), BrokerError> {
        let stop = self.inner.shutdown_handle();
        let mut ready = self.inner.ready_receiver();
        let addr = self.local_addr;
        let run = self.inner.run();
        tokio::pin!(run, shutdown);
        tracing::info!(%addr, tls = self.tls, "broker serving");
        tokio::select! {
            res = &mut run => return res.map_err(stopped),
            () = &mut shutdown => {}
        }
        // The library only hears a stop request once it is serving; wait for that first.
        tokio::select! {
            res = &mut run => return res.map_err(stopped),
            _ = ready.wait_for(|serving| *serving) => {}
        }
        tracing::info!(%addr, "broker stopping");
        stop.shutdown();
        run.await.map_err(stopped)
    }

    /// Runs the broker on a background task of the current tokio runtime until
    /// [`RunningBroker::stop`] or drop.
    pub fn spawn(self) -> RunningBroker {
        let (tx, rx) = oneshot::channel::<()>();
        let local_addr = self.local_addr;
        let tls = self.tls;
        let quic_addr = self.quic_addr;
        let task = tokio::spawn(self.run(async move {
            let _ = rx.await;
        }));
        RunningBroker {
            local_addr,
            tls,
            quic_addr,
            stop: Some(tx),
            task: Some(task),
        }
    }
}

/// A broker serving on a background task. Dropping it asks the broker to stop without
/// waiting; [`RunningBroker::stop`] waits until it has.
#[derive(Debug)]
pub struct RunningBroker {
    local_addr: SocketAddr,
    tls: bool,
    quic_addr: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), BrokerError>>>,
}

impl RunningBroker {
    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `mqtt://ADDR` or `mqtts://ADDR`.
    pub fn url(&self) -> String {
        url(self.local_addr, self.tls)
    }

    /// `quics://ADDR` when the broker has a QUIC listener.
    pub fn quic_url(&self) -> Option<String> {
        self.quic_addr.map(|a| format!("quics://{a}"))
    }

    /// Whether the broker task has ended (stopped or failed).
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stops the broker and waits until its listener is closed and its clients are
    /// disconnected. Returns the error it stopped with, if any.
    pub async fn stop(mut self) -> Result<(), BrokerError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await?,
            None => Ok(()),
        }
    }
}

impl Drop for RunningBroker {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn url(addr: SocketAddr, tls: bool) -> String {
    format!("{}://{addr}", if tls { "mqtts" } else { "mqtt" })
}

/// Our configuration in the library's terms: one listener (plain or TLS), no `$SYS` topics, a
/// session store that is always on (without one the library keeps no sessions at all).
fn library_config(config: &BrokerConfig) -> LibConfig {
    let mut lib = LibConfig::default();
    match &config.tls {
        None => lib.bind_addresses = vec![config.listen],
        Some(files) => {
            lib.bind_addresses = Vec::new();
            let mut tls =
                LibTls::new(files.cert.clone(), files.key.clone()).with_bind_address(config.listen);
            if let Some(ca) = &files.client_ca {
                tls = tls.with_ca_file(ca.clone()).with_require_client_cert(true);
            }
            lib.tls_config = Some(tls);
        }
    }
    if let Some(q) = &config.quic {
        let mut quic =
            LibQuic::new(q.tls.cert.clone(), q.tls.key.clone()).with_bind_address(q.listen);
        if let Some(ca) = &q.tls.client_ca {
            quic = quic.with_ca_file(ca.clone()).with_require_client_cert(true);
        }
        lib.quic_config = Some(quic);
    }
    lib.max_packet_size = config.max_packet_size;
    lib.sys_topics_enabled = false;
    let storage = StorageConfig::default()
        .with_persistence(true)
        .with_max_queued_messages_per_client(config.max_queued_messages)
        .with_max_queued_bytes_per_client(config.max_queued_bytes);
    lib.storage_config = match &config.sessions {
        SessionStore::Memory => storage.with_backend(StorageBackend::Memory),
        SessionStore::Dir(dir) => storage
            .with_backend(StorageBackend::File)
            .with_base_dir(dir.clone()),
    };
    lib
}

/// The library reports bind failures as text; re-bind to get the operating system's reason.
fn diagnose_bind(addr: SocketAddr) -> Option<BrokerError> {
    std::net::TcpListener::bind(addr)
        .err()
        .map(|source| BrokerError::Bind { addr, source })
}

fn started(e: mqtt5::MqttError) -> BrokerError {
    BrokerError::Broker {
        stage: "start",
        source: Box::new(e),
    }
}

fn stopped(e: mqtt5::MqttError) -> BrokerError {
    BrokerError::Broker {
        stage: "run",
        source: Box::new(e),
    }
}
