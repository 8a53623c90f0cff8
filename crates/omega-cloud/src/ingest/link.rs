//! The cloud's broker link: MQTT 5 (the default, `cloud.md` §2) or MQTT 3.1.1 for brokers
//! without MQTT 5 (RabbitMQ's MQTT plugin before 3.13, `docs/brokers.md`), over TCP or TLS
//! (rumqttc), or MQTT 5 over QUIC (`quic://`, `quics://`: the `mqtt5` client, feature `quic`,
//! [`quic`]).
//!
//! Ingest, the receipt sender and the control sender see one client ([`LinkClient`]), one
//! event loop ([`LinkLoop`]) and one incoming message type ([`Incoming`]); only this module
//! knows which client carries them. All are configured from the same
//! `rumqttc::v5::MqttOptions` (transport, TLS, credentials, keep-alive, session), so every
//! broker setting is made once; QUIC adds its URL and PEM files ([`QuicTarget`]).

use bytes::Bytes;
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::v5::mqttbytes::v5::{Packet as Packet5, Publish as Publish5};
use rumqttc::{Event as Event4, Packet as Packet4, Publish as Publish4, QoS as QoS4};

#[cfg(feature = "quic")]
pub mod quic;

/// Where a QUIC link dials and the TLS material it presents: the broker URL (`quic://` or
/// `quics://`, both dialled with the server certificate verified) and the `broker.tls` PEM
/// files, read when the configuration is loaded.
#[derive(Clone)]
pub struct QuicTarget {
    /// `quic://host:port` or `quics://host:port`.
    pub url: String,
    /// `broker.tls.ca` (PEM); without it the library trusts the webpki roots.
    pub ca: Option<Vec<u8>>,
    /// `broker.tls.cert` (PEM), sent for mTLS.
    pub cert: Option<Vec<u8>>,
    /// `broker.tls.key` (PEM).
    pub key: Option<Vec<u8>>,
}

impl std::fmt::Debug for QuicTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuicTarget")
            .field("url", &self.url)
            .field("ca", &self.ca.is_some())
            .field("client_cert", &self.cert.is_some())
            .finish()
    }
}

/// Which MQTT version the cloud speaks to its broker (`broker.mqtt_version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MqttVersion {
    /// MQTT 5: shared subscriptions, session expiry, receive maximum.
    #[default]
    V5,
    /// MQTT 3.1.1: `clean_session = false`; no shared subscriptions on most brokers, the
    /// broker alone bounds how many unacknowledged messages it sends.
    V311,
}

impl MqttVersion {
    /// The name used in configuration and logs: `5` or `3.1.1`.
    pub fn as_str(self) -> &'static str {
        match self {
            MqttVersion::V5 => "5",
            MqttVersion::V311 => "3.1.1",
        }
    }
}

/// A failed request to the MQTT client (its event loop stopped or its queue is closed).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LinkError(String);

/// The client half: publish, subscribe, acknowledge. Cheap to clone.
#[derive(Clone)]
pub enum LinkClient {
    /// MQTT 5.
    V5(rumqttc::v5::AsyncClient),
    /// MQTT 3.1.1.
    V311(rumqttc::AsyncClient),
    /// MQTT 5 over QUIC.
    #[cfg(feature = "quic")]
    Quic(quic::QuicClient),
}

/// A message the broker delivered, acknowledged later with [`LinkClient::ack`].
#[derive(Debug)]
pub enum Incoming {
    /// Over MQTT 5.
    V5(Publish5),
    /// Over MQTT 3.1.1.
    V311(Publish4),
    /// Over QUIC, with its acknowledgement token.
    #[cfg(feature = "quic")]
    Quic(Box<quic::Message>),
}

impl Incoming {
    /// The topic (lossy UTF-8: a non-UTF-8 topic cannot match a device topic anyway).
    pub fn topic(&self) -> String {
        match self {
            Incoming::V5(p) => String::from_utf8_lossy(&p.topic).into_owned(),
            Incoming::V311(p) => p.topic.clone(),
            #[cfg(feature = "quic")]
            Incoming::Quic(m) => m.topic.clone(),
        }
    }

    /// The payload.
    pub fn payload(&self) -> Bytes {
        match self {
            Incoming::V5(p) => p.payload.clone(),
            Incoming::V311(p) => p.payload.clone(),
            #[cfg(feature = "quic")]
            Incoming::Quic(m) => m.payload.clone(),
        }
    }

    /// The retain flag.
    pub fn retain(&self) -> bool {
        match self {
            Incoming::V5(p) => p.retain,
            Incoming::V311(p) => p.retain,
            #[cfg(feature = "quic")]
            Incoming::Quic(m) => m.retain,
        }
    }
}

/// What the event loop reports.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "one event at a time, moved straight into the ack queue: boxing would add an allocation per message"
)]
pub enum LinkEvent {
    /// CONNACK: connected, with or without the broker's stored session.
    Connected {
        /// Whether the broker kept the session.
        session_present: bool,
    },
    /// A message to handle.
    Message(Incoming),
    /// SUBACK.
    Subscribed,
    /// Anything else (PUBACKs of our publishes, pings).
    Other,
}

/// The event-loop half; [`LinkLoop::poll`] drives the connection (and reconnects after an
/// error on the next call).
pub enum LinkLoop {
    /// MQTT 5.
    V5(Box<rumqttc::v5::EventLoop>),
    /// MQTT 3.1.1.
    V311(Box<rumqttc::EventLoop>),
    /// MQTT 5 over QUIC.
    #[cfg(feature = "quic")]
    Quic(quic::QuicLoop),
}

/// A client and its event loop for `version`, from MQTT 5 options. For 3.1.1 the options that
/// exist there are carried over (address, client id, transport, keep-alive, credentials,
/// clean start, manual acks, max packet size); the MQTT 5-only ones (session expiry, receive
/// maximum) have no 3.1.1 counterpart.
pub fn connect(
    opts: rumqttc::v5::MqttOptions,
    version: MqttVersion,
    cap: usize,
) -> (LinkClient, LinkLoop) {
    match version {
        MqttVersion::V5 => {
            let (c, l) = rumqttc::v5::AsyncClient::new(opts, cap);
            (LinkClient::V5(c), LinkLoop::V5(Box::new(l)))
        }
        MqttVersion::V311 => {
            let (c, l) = rumqttc::AsyncClient::new(v311_options(&opts), cap);
            (LinkClient::V311(c), LinkLoop::V311(Box::new(l)))
        }
    }
}

fn v311_options(o: &rumqttc::v5::MqttOptions) -> rumqttc::MqttOptions {
    let (host, port) = o.broker_address();
    let mut v4 = rumqttc::MqttOptions::new(o.client_id(), host, port);
    v4.set_transport(o.transport());
    v4.set_keep_alive(o.keep_alive());
    v4.set_clean_session(o.clean_start());
    v4.set_manual_acks(o.manual_acks());
    if let Some(login) = o.credentials() {
        v4.set_credentials(login.username, login.password);
    }
    if let Some(max) = o.max_packet_size() {
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        v4.set_max_packet_size(max, max);
    }
    v4
}

/// A client and its event loop over QUIC to `target`, from the same MQTT 5 options, already
/// subscribed to `filter` with deferred acknowledgements (see [`quic`]). Must be called inside
/// a tokio runtime. Without the `quic` feature it fails, naming the feature.
pub fn connect_quic(
    opts: &rumqttc::v5::MqttOptions,
    target: &QuicTarget,
    filter: String,
) -> Result<(LinkClient, LinkLoop), LinkError> {
    #[cfg(feature = "quic")]
    {
        let (c, l) = quic::connect(opts, target, filter)?;
        Ok((LinkClient::Quic(c), LinkLoop::Quic(l)))
    }
    #[cfg(not(feature = "quic"))]
    {
        let _ = (opts, filter);
        Err(LinkError(format!(
            "{}: this build of omega-cloud has no QUIC (feature `quic`)",
            target.url
        )))
    }
}

fn err(e: impl std::fmt::Display) -> LinkError {
    LinkError(e.to_string())
}

impl LinkClient {
    /// Publishes at QoS 1, not retained.
    pub async fn publish(&self, topic: String, payload: Vec<u8>) -> Result<(), LinkError> {
        match self {
            LinkClient::V5(c) => c
                .publish(topic, QoS5::AtLeastOnce, false, payload)
                .await
                .map_err(err),
            LinkClient::V311(c) => c
                .publish(topic, QoS4::AtLeastOnce, false, payload)
                .await
                .map_err(err),
            #[cfg(feature = "quic")]
            LinkClient::Quic(c) => c.publish(topic, payload).await,
        }
    }

    /// Subscribes to `filter` at QoS 1. The QUIC link subscribes itself (to the filter given
    /// to [`connect_quic`]); there it does nothing.
    pub async fn subscribe(&self, filter: String) -> Result<(), LinkError> {
        match self {
            LinkClient::V5(c) => c.subscribe(filter, QoS5::AtLeastOnce).await.map_err(err),
            LinkClient::V311(c) => c.subscribe(filter, QoS4::AtLeastOnce).await.map_err(err),
            #[cfg(feature = "quic")]
            LinkClient::Quic(_) => Ok(()),
        }
    }

    /// Whether a message of an earlier connection may still be acknowledged after a
    /// reconnect. rumqttc: no (its packet ids belong to a dead connection; the broker
    /// redelivers and ingest forgets the old messages). QUIC: yes, and it must be: the library
    /// suppresses the redelivery of a message whose token is open and writes its PUBACK on
    /// the new connection.
    pub fn acks_survive_reconnect(&self) -> bool {
        match self {
            LinkClient::V5(_) | LinkClient::V311(_) => false,
            #[cfg(feature = "quic")]
            LinkClient::Quic(_) => true,
        }
    }

    /// Sends DISCONNECT (a graceful goodbye; the persistent session stays at the broker).
    pub async fn disconnect(&self) -> Result<(), LinkError> {
        match self {
            LinkClient::V5(c) => c.disconnect().await.map_err(err),
            LinkClient::V311(c) => c.disconnect().await.map_err(err),
            #[cfg(feature = "quic")]
            LinkClient::Quic(c) => c.disconnect().await,
        }
    }

    /// Acknowledges a delivered message (manual acks: only after it is stored).
    pub async fn ack(&self, message: &Incoming) -> Result<(), LinkError> {
        match (self, message) {
            (LinkClient::V5(c), Incoming::V5(p)) => c.ack(p).await.map_err(err),
            (LinkClient::V311(c), Incoming::V311(p)) => c.ack(p).await.map_err(err),
            #[cfg(feature = "quic")]
            (LinkClient::Quic(_), Incoming::Quic(m)) => {
                m.ack();
                Ok(())
            }
            _ => Err(LinkError(
                "a message acknowledged on a client of another MQTT version".into(),
            )),
        }
    }
}

impl LinkLoop {
    /// The next event; an error means the connection dropped (the next call reconnects).
    pub async fn poll(&mut self) -> Result<LinkEvent, LinkError> {
        match self {
            LinkLoop::V5(l) => Ok(match l.poll().await.map_err(err)? {
                rumqttc::v5::Event::Incoming(Packet5::ConnAck(ack)) => LinkEvent::Connected {
                    session_present: ack.session_present,
                },
                rumqttc::v5::Event::Incoming(Packet5::Publish(p)) => {
                    LinkEvent::Message(Incoming::V5(p))
                }
                rumqttc::v5::Event::Incoming(Packet5::SubAck(_)) => LinkEvent::Subscribed,
                _ => LinkEvent::Other,
            }),
            LinkLoop::V311(l) => Ok(match l.poll().await.map_err(err)? {
                Event4::Incoming(Packet4::ConnAck(ack)) => LinkEvent::Connected {
                    session_present: ack.session_present,
                },
                Event4::Incoming(Packet4::Publish(p)) => LinkEvent::Message(Incoming::V311(p)),
                Event4::Incoming(Packet4::SubAck(_)) => LinkEvent::Subscribed,
                _ => LinkEvent::Other,
            }),
            #[cfg(feature = "quic")]
            LinkLoop::Quic(l) => l.poll().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn v311_options_carry_every_setting_that_exists_in_3_1_1() {
        let mut o = rumqttc::v5::MqttOptions::new("cloud-1", "broker.example", 1884);
        o.set_keep_alive(Duration::from_secs(17));
        o.set_clean_start(false);
        o.set_manual_acks(true);
        o.set_credentials("u", "p");
        o.set_max_packet_size(Some(4096));
        let v4 = v311_options(&o);
        assert_eq!(v4.broker_address(), ("broker.example".to_string(), 1884));
        assert_eq!(v4.client_id(), "cloud-1");
        assert_eq!(v4.keep_alive(), Duration::from_secs(17));
        assert!(!v4.clean_session());
        assert!(v4.manual_acks());
        let login = v4.credentials().expect("credentials");
        assert_eq!(
            (login.username.as_str(), login.password.as_str()),
            ("u", "p")
        );
        assert_eq!(v4.max_packet_size(), 4096);
    }

    #[test]
    fn version_names_match_the_configuration() {
        assert_eq!(MqttVersion::V5.as_str(), "5");
        assert_eq!(MqttVersion::V311.as_str(), "3.1.1");
        assert_eq!(MqttVersion::default(), MqttVersion::V5);
    }
}
