//! The cloud's QUIC link: the `mqtt5` client (MQTT 5 over QUIC, quinn + rustls) for
//! `quic://` and `quics://` broker URLs.
//!
//! Manual acknowledgements are the library's *deferred acks*: the subscription is made with
//! `subscribe_with_ack`, each message arrives with an `AckToken`, and its PUBACK leaves only
//! when ingest calls [`LinkClient::ack`](super::LinkClient::ack) after the store committed.
//! Three rules keep the no-loss promise:
//!
//! - **A token is never dropped unresolved.** The library answers a dropped token with an
//!   error PUBACK, which ends the broker's delivery of that message. A message that is not
//!   acknowledged (shutdown before it committed, a lost session) keeps its token forgotten
//!   instead: no PUBACK at all, the broker redelivers.
//! - **Acknowledgements survive a reconnect** ([`LinkClient::acks_survive_reconnect`]). On a
//!   resumed session the library suppresses the broker's re-sends of messages whose token is
//!   still open and writes their PUBACK on the new connection when it comes; ingest therefore
//!   keeps its ack queue across reconnects. On a lost session the library discards the old
//!   tokens itself (their acks are not written).
//! - **The callback exists before the first CONNACK** (`register_ack_callback`), so messages a
//!   resumed session flushes right after CONNACK are not auto-acknowledged without a callback.
//!
//! Connecting runs on a driver task so that [`QuicLoop::poll`] stays cancel-safe; automatic
//! reconnection is off, ingest's loop decides when. The server certificate is always
//! verified: both schemes are dialled as `quics://`, never the library's unverified mode.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use mqtt5::{
    AckToken, ConnectOptions, ConnectionEvent, MqttClient, PublishOptions, QoS, SubscribeOptions,
};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::{Incoming, LinkError, LinkEvent, QuicTarget};

/// How long one QUIC connection attempt (handshake and CONNACK) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest keep-alive over QUIC. A broker that dies sends nothing over UDP (no TCP reset),
/// so an idle cloud notices only when its PINGREQ goes unanswered: the library pings at 75 %
/// of the keep-alive and gives up at 150 %. With rumqttc's 60 s that would be about 90 s.
pub const QUIC_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// A delivered message and the token that acknowledges it.
pub struct Message {
    pub(super) topic: String,
    pub(super) payload: Bytes,
    pub(super) retain: bool,
    token: Mutex<Option<AckToken>>,
}

impl Message {
    /// Sends the PUBACK (once; later calls do nothing).
    pub(super) fn ack(&self) {
        if let Some(token) = self.token.lock().unwrap_or_else(|e| e.into_inner()).take() {
            token.ack();
        }
    }
}

impl Drop for Message {
    fn drop(&mut self) {
        // Never let the library answer an unacknowledged message with an error PUBACK:
        // without any PUBACK the broker redelivers it.
        if let Some(token) = self
            .token
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            std::mem::forget(token);
        }
    }
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("topic", &self.topic)
            .field("payload_len", &self.payload.len())
            .field("retain", &self.retain)
            .finish_non_exhaustive()
    }
}

/// The client half.
#[derive(Clone)]
pub struct QuicClient {
    client: MqttClient,
    closed: Arc<AtomicBool>,
}

impl QuicClient {
    /// Publishes at QoS 1 (returns after the PUBACK, or once the library queued it while
    /// disconnected: it sends it after the reconnect).
    pub(super) async fn publish(&self, topic: String, payload: Vec<u8>) -> Result<(), LinkError> {
        let opts = PublishOptions {
            qos: QoS::AtLeastOnce,
            ..Default::default()
        };
        self.client
            .publish_with_options(topic, payload, opts)
            .await
            .map(|_| ())
            .map_err(super::err)
    }

    /// Sends DISCONNECT; the loop does not connect again.
    pub(super) async fn disconnect(&self) -> Result<(), LinkError> {
        self.closed.store(true, Ordering::SeqCst);
        self.client.disconnect().await.map_err(super::err)
    }
}

enum Internal {
    Connected { attempt: u64, session_present: bool },
    Failed { attempt: u64, error: String },
    Dropped { attempt: u64, error: String },
    Message(Message),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Connecting(u64),
    Connected(u64),
}

/// The event-loop half: events from the library's callbacks and the driver.
pub struct QuicLoop {
    rx: mpsc::UnboundedReceiver<Internal>,
    commands: mpsc::UnboundedSender<u64>,
    closed: Arc<AtomicBool>,
    driver: AbortHandle,
    state: State,
    attempt: u64,
    /// A SUBACK to report right after the CONNACK it followed.
    subscribed: bool,
}

impl Drop for QuicLoop {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// `quics://host:port` for either scheme (the library's `quic://` does not verify the server).
fn verified_url(url: &str) -> String {
    match url.strip_prefix("quic://") {
        Some(rest) => format!("quics://{rest}"),
        None => url.to_string(),
    }
}

/// The library's options from rumqttc's: client id, keep-alive (at most [`QUIC_KEEP_ALIVE`]),
/// credentials, clean start,
/// session expiry, receive maximum, maximum packet size; deferred acks and session resumption
/// on (a restarted `cloud serve` resumes the broker's session).
fn connect_options(o: &rumqttc::v5::MqttOptions) -> ConnectOptions {
    let mut opts = ConnectOptions::new(o.client_id())
        .with_clean_start(o.clean_start())
        .with_keep_alive(o.keep_alive().min(QUIC_KEEP_ALIVE))
        .with_session_expiry_interval(o.session_expiry_interval().unwrap_or(0))
        .with_resume_existing_session(true)
        .with_automatic_reconnect(false)
        .with_deferred_ack(true);
    if let Some(max) = o.receive_maximum() {
        opts = opts.with_receive_maximum(max);
    }
    if let Some(login) = o.credentials() {
        opts = opts.with_credentials(login.username, login.password.as_bytes());
    }
    opts.protocol_options.properties.maximum_packet_size = o.max_packet_size();
    opts
}

/// A client and its loop for `target`, subscribing to `filter` with deferred acks. Must be
/// called inside a tokio runtime.
pub(super) fn connect(
    opts: &rumqttc::v5::MqttOptions,
    target: &QuicTarget,
    filter: String,
) -> Result<(QuicClient, QuicLoop), LinkError> {
    let options = connect_options(opts);
    options.validate_deferred_ack().map_err(super::err)?;
    let client = MqttClient::with_options(options.clone());
    let closed = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::unbounded_channel();
    let (commands, command_rx) = mpsc::unbounded_channel();
    let driver = tokio::spawn(drive(
        client.clone(),
        verified_url(&target.url),
        options,
        target.clone(),
        filter,
        tx,
        command_rx,
    ))
    .abort_handle();
    Ok((
        QuicClient {
            client,
            closed: closed.clone(),
        },
        QuicLoop {
            rx,
            commands,
            closed,
            driver,
            state: State::Idle,
            attempt: 0,
            subscribed: false,
        },
    ))
}

impl QuicLoop {
    /// The next event; asks the driver to connect when idle (never after a disconnect).
    pub(super) async fn poll(&mut self) -> Result<LinkEvent, LinkError> {
        loop {
            if self.subscribed {
                self.subscribed = false;
                return Ok(LinkEvent::Subscribed);
            }
            if self.state == State::Idle {
                if self.closed.load(Ordering::SeqCst) {
                    return Err(LinkError("disconnected".into()));
                }
                self.attempt += 1;
                self.state = State::Connecting(self.attempt);
                let _ = self.commands.send(self.attempt);
            }
            let Some(event) = self.rx.recv().await else {
                self.state = State::Idle;
                return Err(LinkError("QUIC link closed".into()));
            };
            match event {
                Internal::Connected {
                    attempt,
                    session_present,
                } if self.state == State::Connecting(attempt) => {
                    self.state = State::Connected(attempt);
                    // The driver subscribed (or the session kept the subscription) before
                    // reporting the connection.
                    self.subscribed = true;
                    return Ok(LinkEvent::Connected { session_present });
                }
                Internal::Failed { attempt, error } | Internal::Dropped { attempt, error }
                    if self.state == State::Connecting(attempt)
                        || self.state == State::Connected(attempt) =>
                {
                    self.state = State::Idle;
                    return Err(LinkError(error));
                }
                Internal::Message(m) => {
                    return Ok(LinkEvent::Message(Incoming::Quic(Box::new(m))));
                }
                // Stale: an earlier attempt's news.
                Internal::Connected { .. } | Internal::Failed { .. } | Internal::Dropped { .. } => {
                }
            }
        }
    }
}

/// The deferred-ack callback: every message goes to the loop with its token.
fn on_message(
    tx: mpsc::UnboundedSender<Internal>,
) -> impl Fn(mqtt5::packet::publish::PublishPacket, AckToken) + Send + Sync + 'static {
    move |p, token| {
        let _ = tx.send(Internal::Message(Message {
            topic: p.topic_name,
            payload: p.payload,
            retain: p.retain,
            token: Mutex::new(Some(token)),
        }));
    }
}

/// Owns connecting: registers the event callback, the TLS material and the message callback
/// once (before any CONNACK), then connects on each request. The first successful connection
/// subscribes; later ones need not (a resumed session keeps the subscription, and after a
/// lost session the library re-subscribes its deferred-ack filters itself).
async fn drive(
    client: MqttClient,
    url: String,
    opts: ConnectOptions,
    target: QuicTarget,
    filter: String,
    tx: mpsc::UnboundedSender<Internal>,
    mut commands: mpsc::UnboundedReceiver<u64>,
) {
    let current = Arc::new(AtomicU64::new(0));
    let (cb_tx, cb_current) = (tx.clone(), current.clone());
    let _ = client
        .on_connection_event(move |ev| {
            if let ConnectionEvent::Disconnected { reason } = ev {
                let _ = cb_tx.send(Internal::Dropped {
                    attempt: cb_current.load(Ordering::SeqCst),
                    error: format!("QUIC connection lost: {reason:?}"),
                });
            }
        })
        .await;
    if target.ca.is_some() || target.cert.is_some() {
        client
            .set_tls_config(target.cert.clone(), target.key.clone(), target.ca.clone())
            .await;
    }
    client.set_quic_connect_timeout(CONNECT_TIMEOUT).await;
    if let Err(e) = client
        .register_ack_callback(filter.clone(), on_message(tx.clone()))
        .await
    {
        let _ = tx.send(Internal::Failed {
            attempt: 1,
            error: format!("registering the message callback: {e}"),
        });
        return;
    }
    let mut subscribed = false;
    while let Some(attempt) = commands.recv().await {
        current.store(attempt, Ordering::SeqCst);
        let result = match client.connect_with_options(&url, opts.clone()).await {
            Ok(r) if subscribed => Ok(r.session_present),
            Ok(r) => {
                let sub = SubscribeOptions {
                    qos: QoS::AtLeastOnce,
                    ..Default::default()
                };
                match client
                    .subscribe_with_ack(filter.clone(), sub, on_message(tx.clone()))
                    .await
                {
                    Ok(_) => {
                        subscribed = true;
                        Ok(r.session_present)
                    }
                    Err(e) => {
                        // A failed subscribe unregisters the callback: put it back before the
                        // next CONNACK can flush messages.
                        let _ = client
                            .register_ack_callback(filter.clone(), on_message(tx.clone()))
                            .await;
                        let _ = client.disconnect_abnormally().await;
                        Err(format!("subscribing to {filter}: {e}"))
                    }
                }
            }
            Err(e) => Err(format!("QUIC connect to {url}: {e}")),
        };
        let _ = tx.send(match result {
            Ok(session_present) => Internal::Connected {
                attempt,
                session_present,
            },
            Err(error) => Internal::Failed { attempt, error },
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_schemes_are_dialled_with_server_verification() {
        assert_eq!(verified_url("quic://h:1"), "quics://h:1");
        assert_eq!(verified_url("quics://h:1"), "quics://h:1");
    }

    #[test]
    fn the_library_gets_every_session_setting_and_deferred_acks() {
        let mut o = rumqttc::v5::MqttOptions::new("cloud-1", "b", 1);
        o.set_keep_alive(Duration::from_secs(7));
        o.set_clean_start(false);
        o.set_session_expiry_interval(Some(3600));
        o.set_receive_maximum(Some(32));
        o.set_credentials("u", "p");
        o.set_max_packet_size(Some(4096));
        let c = connect_options(&o);
        assert!(c.deferred_ack && c.resume_existing_session);
        assert!(!c.reconnect_config.enabled);
        let p = &c.protocol_options;
        assert_eq!(p.client_id, "cloud-1");
        assert!(!p.clean_start);
        assert_eq!(p.keep_alive, Duration::from_secs(7));
        o.set_keep_alive(Duration::from_secs(60));
        assert_eq!(
            connect_options(&o).protocol_options.keep_alive,
            QUIC_KEEP_ALIVE
        );
        assert_eq!(p.properties.session_expiry_interval, Some(3600));
        assert_eq!(p.properties.receive_maximum, Some(32));
        assert_eq!(p.properties.maximum_packet_size, Some(4096));
        assert_eq!(p.username.as_deref(), Some("u"));
        assert!(c.validate_deferred_ack().is_ok());
    }
}
