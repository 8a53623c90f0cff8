//! What the broker listens on, its TLS files, where sessions live, and its limits.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Defaults of [`BrokerConfig`], named once.
pub mod defaults {
    use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

    /// `127.0.0.1:1883`: loopback only, the standard MQTT port.
    pub const LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1883));

    /// 256 MiB, the largest packet MQTT can frame. Row batches are up to 512 KiB, but a single
    /// oversized row travels alone in a larger batch, so the broker never limits below the
    /// protocol.
    pub const MAX_PACKET_SIZE: usize = 256 * 1024 * 1024;

    /// Messages kept per offline persistent session before the oldest are dropped.
    pub const MAX_QUEUED_MESSAGES: usize = 100_000;

    /// Payload bytes kept per offline persistent session before the oldest are dropped (1 GiB),
    /// so that even a queue of maximum-size packets holds a few.
    pub const MAX_QUEUED_BYTES: usize = 1024 * 1024 * 1024;
}

/// Everything the broker needs to start. Build it with [`BrokerConfig::new`] and the `with_*`
/// methods, or fill the public fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerConfig {
    /// The one listener, for MQTT 3.1.1 and MQTT 5 alike. Port 0 lets the OS pick a port;
    /// [`crate::Broker::local_addr`] tells which. With [`BrokerConfig::tls`] set, this listener
    /// speaks TLS only.
    pub listen: SocketAddr,
    /// TLS certificate, key and optional client CA (mutual TLS). `None`: plain TCP.
    pub tls: Option<TlsFiles>,
    /// An MQTT-over-QUIC listener beside the TCP/TLS one (UDP; QUIC always uses TLS 1.3).
    pub quic: Option<QuicListener>,
    /// Where sessions and queued messages live.
    pub sessions: SessionStore,
    /// The largest MQTT packet, in bytes, the broker accepts and forwards. Advertised to
    /// MQTT 5 clients in CONNACK.
    pub max_packet_size: usize,
    /// Per offline persistent session: messages queued before the oldest are dropped.
    pub max_queued_messages: usize,
    /// Per offline persistent session: payload bytes queued before the oldest are dropped.
    pub max_queued_bytes: usize,
}

impl BrokerConfig {
    /// A plain-TCP broker on `listen` with in-memory sessions and the [`defaults`].
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            tls: None,
            quic: None,
            sessions: SessionStore::Memory,
            max_packet_size: defaults::MAX_PACKET_SIZE,
            max_queued_messages: defaults::MAX_QUEUED_MESSAGES,
            max_queued_bytes: defaults::MAX_QUEUED_BYTES,
        }
    }

    /// Serve TLS on the listener with these files.
    pub fn with_tls(mut self, tls: TlsFiles) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Also serve MQTT over QUIC on `quic.listen` (UDP).
    pub fn with_quic(mut self, quic: QuicListener) -> Self {
        self.quic = Some(quic);
        self
    }

    /// Keep sessions in `sessions` instead of memory.
    pub fn with_sessions(mut self, sessions: SessionStore) -> Self {
        self.sessions = sessions;
        self
    }

    /// Change the largest accepted packet.
    pub fn with_max_packet_size(mut self, bytes: usize) -> Self {
        self.max_packet_size = bytes;
        self
    }
}

impl Default for BrokerConfig {
    /// Plain TCP on [`defaults::LISTEN`].
    fn default() -> Self {
        Self::new(defaults::LISTEN)
    }
}

/// PEM files for a TLS listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server certificate chain, leaf first.
    pub cert: PathBuf,
    /// The server private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates that sign client certificates. When set, every client must present a
    /// certificate signed by one of them (mutual TLS); when `None`, clients are not asked for
    /// one.
    pub client_ca: Option<PathBuf>,
}

/// The QUIC listener: a UDP address and its TLS files (the client CA, when set, makes every
/// client present a certificate signed by it, as on the TLS listener).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuicListener {
    /// UDP `IP:PORT`; port 0 lets the OS pick ([`crate::Broker::quic_addr`] tells which).
    pub listen: SocketAddr,
    /// Certificate, key and optional client CA.
    pub tls: TlsFiles,
}

/// Where the broker keeps sessions (subscriptions, queued and in-flight QoS 1 messages) and
/// retained messages.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SessionStore {
    /// In memory: sessions survive client reconnects for as long as the broker runs, and are
    /// gone when it stops.
    #[default]
    Memory,
    /// In files under this directory (created if missing): sessions also survive a broker
    /// restart with the same directory.
    Dir(PathBuf),
}
