//! The broker link: the one seam between the agent's loop ([`crate::run`]) and the MQTT client
//! library that carries its batches.
//!
//! Two links exist: [`tcp::TcpLink`] (`rumqttc` over TCP or TLS: `mqtt://`, `mqtts://`,
//! `ssl://`) and, with the `quic` feature, [`quic::QuicLink`] (the `mqtt5` client over QUIC:
//! `quic://`, `quics://`). Both take publishes tagged with the agent's packet ids
//! ([`crate::publish::inflight`]) and report [`LinkEvent::PubAck`] with the same id, so the
//! in-flight set, cursors and receipts never see which library is underneath. Which URL is
//! used, the primary or `connection.fallback_url`, is decided by [`route::Route`].

pub mod route;
pub mod tcp;

#[cfg(feature = "quic")]
pub mod quic;

use crate::publish::inflight::Outgoing;
use crate::transport::{MqttSettings, TransportError};

/// What a link reports to the agent's loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// The broker accepted the connection and both downlink subscriptions (control and
    /// receipt) are acknowledged: publishing may start.
    Connected {
        /// Whether the broker kept the session (CONNACK session present).
        session_present: bool,
    },
    /// The broker acknowledged the publish the agent tagged with this packet id.
    PubAck(u16),
    /// A message arrived on a subscribed topic.
    Message {
        /// Its topic.
        topic: String,
        /// Its payload.
        payload: bytes::Bytes,
    },
    /// The connection ended, or a connection attempt failed. Nothing queued in the link
    /// survives; the agent re-sends what it holds after the next [`LinkEvent::Connected`].
    Down {
        /// Why, for the log.
        error: String,
        /// Whether a connection had been made ([`LinkEvent::Connected`] was reported) before
        /// it ended; `false` for a failed attempt.
        was_connected: bool,
    },
}

/// The link to one broker URL.
pub enum Link {
    /// `rumqttc` over TCP or TLS.
    Tcp(Box<tcp::TcpLink>),
    /// The `mqtt5` client over QUIC.
    #[cfg(feature = "quic")]
    Quic(Box<quic::QuicLink>),
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Link::Tcp(_) => f.write_str("Link::Tcp"),
            #[cfg(feature = "quic")]
            Link::Quic(_) => f.write_str("Link::Quic"),
        }
    }
}

/// Whether `url` is a `quic://` or `quics://` URL.
pub fn is_quic(url: &str) -> bool {
    url.starts_with("quic://") || url.starts_with("quics://")
}

impl Link {
    /// A link to `url` with the identity, keep-alive and TLS material of `settings`. Nothing
    /// connects until [`Link::next`] is polled.
    pub fn open(
        settings: &MqttSettings,
        url: &str,
        subscriptions: [String; 2],
        max_pkid: u16,
    ) -> Result<Link, TransportError> {
        if is_quic(url) {
            #[cfg(feature = "quic")]
            return Ok(Link::Quic(Box::new(quic::QuicLink::open(
                settings,
                url,
                subscriptions,
            )?)));
            #[cfg(not(feature = "quic"))]
            return Err(TransportError::Url(
                url.to_string(),
                crate::transport::QUIC_NOT_BUILT.to_string(),
            ));
        }
        let mut s = settings.clone();
        s.url = url.to_string();
        Ok(Link::Tcp(Box::new(tcp::TcpLink::open(
            &s,
            subscriptions,
            max_pkid,
        )?)))
    }

    /// Queues a QoS 1 publish carrying the agent's packet id (and DUP flag on a re-send).
    pub fn publish(&mut self, out: &Outgoing) {
        match self {
            Link::Tcp(l) => l.publish(out),
            #[cfg(feature = "quic")]
            Link::Quic(l) => l.publish(out),
        }
    }

    /// The next event; connects (again) when not connected. Cancel-safe: it may be dropped
    /// inside `select!` without losing an event.
    pub async fn next(&mut self) -> LinkEvent {
        match self {
            Link::Tcp(l) => l.next().await,
            #[cfg(feature = "quic")]
            Link::Quic(l) => l.next().await,
        }
    }

    /// Drops the connection and whatever is queued in it (a PUBACK is overdue); the next
    /// [`Link::next`] reconnects.
    pub fn reset(&mut self) {
        match self {
            Link::Tcp(l) => l.reset(),
            #[cfg(feature = "quic")]
            Link::Quic(l) => l.reset(),
        }
    }

    /// Disconnects cleanly (best effort).
    pub async fn close(self) {
        match self {
            Link::Tcp(l) => l.close(),
            #[cfg(feature = "quic")]
            Link::Quic(l) => l.close().await,
        }
    }
}
