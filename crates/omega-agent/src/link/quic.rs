//! The QUIC link: the `mqtt5` client (MQTT 5 over QUIC, quinn + rustls) for `quic://` and
//! `quics://`.
//!
//! `mqtt5` chooses its own packet ids, so the agent's ids cannot go on the wire. Instead each
//! publish runs on its own task that awaits the library's per-publish outcome (the PUBACK of
//! that very publish, never matched by packet id) and then reports [`LinkEvent::PubAck`] with
//! the agent's id. A generation number per agent id makes a late outcome of an older publish
//! under the same id harmless (it is dropped). While a publish is still pending in the
//! library, a re-send of the same agent id after a reconnect is skipped: the library's session
//! re-sends it itself and its outcome still arrives. Connecting runs on a driver task so that
//! [`QuicLink::next`] stays cancel-safe; automatic reconnection is off, the agent's loop
//! decides when (and, with a fallback URL, where) to connect.
//!
//! The server certificate is always verified: both schemes are dialled as `quics://`, never
//! with the library's unverified `quic://` mode. With an IP address as host the library checks
//! the certificate for the name `localhost` (its rule for IP hosts).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mqtt5::{
    ConnectOptions, ConnectionEvent, MqttClient, PublishOptions, PublishOutcome, PublishResult,
    QoS, SubscribeOptions,
};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::LinkEvent;
use crate::publish::inflight::Outgoing;
use crate::transport::{MqttSettings, TlsFiles, TransportError};

/// How long one QUIC connection attempt (handshake and CONNACK) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

enum Internal {
    Connected {
        attempt: u64,
        session_present: bool,
    },
    Failed {
        attempt: u64,
        error: String,
    },
    Dropped {
        attempt: u64,
        error: String,
    },
    Done {
        pkid: u16,
        generation: u64,
        result: Result<(), String>,
    },
    Message {
        topic: String,
        payload: bytes::Bytes,
    },
}

enum Command {
    Connect(u64),
    Reset,
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Connecting(u64),
    Connected(u64),
}

/// The `mqtt5` client and the tasks that wait for its outcomes.
pub struct QuicLink {
    client: MqttClient,
    tx: mpsc::UnboundedSender<Internal>,
    rx: mpsc::UnboundedReceiver<Internal>,
    commands: mpsc::UnboundedSender<Command>,
    driver: AbortHandle,
    state: State,
    attempt: u64,
    generation: u64,
    /// Agent packet id → (generation, task awaiting its outcome).
    pending: HashMap<u16, (u64, AbortHandle)>,
}

/// The PEM bytes handed to the library: CA, client certificate, client key.
type Pem = (Option<Vec<u8>>, Option<Vec<u8>>, Option<Vec<u8>>);

fn read_tls(files: Option<&TlsFiles>) -> Result<Pem, TransportError> {
    let Some(files) = files else {
        return Ok((None, None, None));
    };
    // The library logs and ignores unreadable PEM; check it here so that a bad file is an
    // error naming it.
    if files.ca.is_some() {
        crate::transport::rustls_config(files.clone())?;
    }
    let read = |p: &std::path::PathBuf| {
        std::fs::read(p).map_err(|e| TransportError::Tls(p.clone(), e.to_string()))
    };
    let ca = files.ca.as_ref().map(read).transpose()?;
    let (cert, key) = match &files.client {
        Some((c, k)) => (Some(read(c)?), Some(read(k)?)),
        None => (None, None),
    };
    Ok((ca, cert, key))
}

/// `quics://host:port` for either scheme (the library's `quic://` does not verify the server).
fn verified_url(url: &str) -> String {
    match url.strip_prefix("quic://") {
        Some(rest) => format!("quics://{rest}"),
        None => url.to_string(),
    }
}

impl QuicLink {
    /// A link to `url` (`quic://` or `quics://`). Must be called inside a tokio runtime.
    pub fn open(
        settings: &MqttSettings,
        url: &str,
        subscriptions: [String; 2],
    ) -> Result<QuicLink, TransportError> {
        let pem = read_tls(settings.tls.as_ref())?;
        let mut opts = ConnectOptions::new(settings.client_id.clone())
            .with_clean_start(false)
            .with_keep_alive(settings.keep_alive)
            .with_session_expiry_interval(
                u32::try_from(settings.session_expiry.as_secs()).unwrap_or(u32::MAX),
            )
            .with_resume_existing_session(true)
            .with_automatic_reconnect(false);
        if let Some((u, p)) = &settings.credentials {
            opts = opts.with_credentials(u.clone(), p.as_bytes());
        }
        let client = MqttClient::new(settings.client_id.clone());
        let (tx, rx) = mpsc::unbounded_channel();
        let (commands, command_rx) = mpsc::unbounded_channel();
        let driver = tokio::spawn(drive(
            client.clone(),
            verified_url(url),
            opts,
            pem,
            subscriptions,
            tx.clone(),
            command_rx,
        ))
        .abort_handle();
        Ok(QuicLink {
            client,
            tx,
            rx,
            commands,
            driver,
            state: State::Idle,
            attempt: 0,
            generation: 0,
            pending: HashMap::new(),
        })
    }

    /// Publishes at QoS 1 on its own task; its outcome comes back as [`LinkEvent::PubAck`]
    /// with the agent's packet id.
    pub fn publish(&mut self, out: &Outgoing) {
        if out.dup && self.pending.contains_key(&out.pkid) {
            // Still in flight inside the library's session, which re-sends it.
            return;
        }
        self.generation += 1;
        let generation = self.generation;
        let pkid = out.pkid;
        let client = self.client.clone();
        let tx = self.tx.clone();
        let topic = out.topic.to_string();
        let payload = out.payload.to_vec();
        let task = tokio::spawn(async move {
            let opts = PublishOptions {
                qos: QoS::AtLeastOnce,
                ..Default::default()
            };
            let result = match client.publish_with_options(topic, payload, opts).await {
                Ok(PublishResult::Sent(d)) if d.packet_id().is_some() => Ok(()),
                Ok(PublishResult::Sent(d)) => Err(format!("not acknowledged: {d:?}")),
                Ok(PublishResult::Queued(handle)) => match handle.await {
                    PublishOutcome::Delivered(d) if d.packet_id().is_some() => Ok(()),
                    other => Err(format!("{other:?}")),
                },
                Err(e) => Err(e.to_string()),
            };
            let _ = tx.send(Internal::Done {
                pkid,
                generation,
                result,
            });
        });
        if let Some((_, old)) = self.pending.insert(pkid, (generation, task.abort_handle())) {
            old.abort();
        }
    }

    /// The next event; asks the driver to connect when idle.
    pub async fn next(&mut self) -> LinkEvent {
        loop {
            if self.state == State::Idle {
                self.attempt += 1;
                self.state = State::Connecting(self.attempt);
                let _ = self.commands.send(Command::Connect(self.attempt));
            }
            let Some(ev) = self.rx.recv().await else {
                // Unreachable while `self.tx` lives.
                self.state = State::Idle;
                return LinkEvent::Down {
                    error: "QUIC link closed".into(),
                    was_connected: false,
                };
            };
            match ev {
                Internal::Connected {
                    attempt,
                    session_present,
                } if self.state == State::Connecting(attempt) => {
                    self.state = State::Connected(attempt);
                    if !session_present {
                        // Whatever the library still holds belongs to a lost session; the
                        // agent rebuilds it under new ids.
                        self.forget_pending();
                    }
                    return LinkEvent::Connected { session_present };
                }
                Internal::Failed { attempt, error } | Internal::Dropped { attempt, error }
                    if self.state == State::Connecting(attempt)
                        || self.state == State::Connected(attempt) =>
                {
                    let was_connected = matches!(self.state, State::Connected(_));
                    self.state = State::Idle;
                    return LinkEvent::Down {
                        error,
                        was_connected,
                    };
                }
                Internal::Done {
                    pkid,
                    generation,
                    result,
                } => {
                    if self.pending.get(&pkid).map(|p| p.0) != Some(generation) {
                        continue;
                    }
                    self.pending.remove(&pkid);
                    match result {
                        Ok(()) => return LinkEvent::PubAck(pkid),
                        // No PUBACK: the agent's PUBACK timeout re-sends it.
                        Err(why) => tracing::warn!(pkid, %why, "QUIC publish not acknowledged"),
                    }
                }
                Internal::Message { topic, payload } => {
                    return LinkEvent::Message { topic, payload };
                }
                // Stale: an earlier attempt's news.
                Internal::Connected { .. } | Internal::Failed { .. } | Internal::Dropped { .. } => {
                }
            }
        }
    }

    fn forget_pending(&mut self) {
        for (_, (_, task)) in self.pending.drain() {
            task.abort();
        }
    }

    /// Drops the connection (the library keeps its session and re-sends on reconnect).
    pub fn reset(&mut self) {
        let _ = self.commands.send(Command::Reset);
        self.state = State::Idle;
    }

    /// Disconnects cleanly.
    pub async fn close(mut self) {
        self.forget_pending();
        let _ = self.commands.send(Command::Close);
        // The driver ends after the DISCONNECT; give it a moment, no more.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while !self.driver.is_finished() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }
}

impl Drop for QuicLink {
    fn drop(&mut self) {
        self.forget_pending();
        self.driver.abort();
    }
}

/// Owns connecting: registers the event callback and TLS material once, then connects on
/// each request and subscribes after the first success (the library restores the
/// subscriptions on later connections itself).
async fn drive(
    client: MqttClient,
    url: String,
    opts: ConnectOptions,
    (ca, cert, key): Pem,
    subscriptions: [String; 2],
    tx: mpsc::UnboundedSender<Internal>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let current = Arc::new(AtomicU64::new(0));
    let (cb_tx, cb_current) = (tx.clone(), current.clone());
    let _ = client
        .on_connection_event(move |ev| {
            if let ConnectionEvent::Disconnected { reason } = ev {
                let _ = cb_tx.send(Internal::Dropped {
                    attempt: cb_current.load(Ordering::SeqCst),
                    error: format!("{reason:?}"),
                });
            }
        })
        .await;
    if ca.is_some() || cert.is_some() {
        client.set_tls_config(cert, key, ca).await;
    }
    client.set_quic_connect_timeout(CONNECT_TIMEOUT).await;
    let mut subscribed = false;
    while let Some(cmd) = commands.recv().await {
        match cmd {
            Command::Connect(attempt) => {
                current.store(attempt, Ordering::SeqCst);
                let result = match client.connect_with_options(&url, opts.clone()).await {
                    Ok(r) if subscribed => Ok(r.session_present),
                    Ok(r) => match subscribe(&client, &subscriptions, &tx).await {
                        Ok(()) => {
                            subscribed = true;
                            Ok(r.session_present)
                        }
                        Err(e) => {
                            let _ = client.disconnect_abnormally().await;
                            Err(format!("subscribing: {e}"))
                        }
                    },
                    Err(e) => Err(e.to_string()),
                };
                let _ = tx.send(match result {
                    Ok(session_present) => Internal::Connected {
                        attempt,
                        session_present,
                    },
                    Err(error) => Internal::Failed { attempt, error },
                });
            }
            Command::Reset => {
                let _ = client.disconnect_abnormally().await;
            }
            Command::Close => {
                let _ = client.disconnect().await;
                return;
            }
        }
    }
}

async fn subscribe(
    client: &MqttClient,
    topics: &[String; 2],
    tx: &mpsc::UnboundedSender<Internal>,
) -> Result<(), mqtt5::MqttError> {
    for topic in topics {
        let tx = tx.clone();
        let opts = SubscribeOptions {
            qos: QoS::AtLeastOnce,
            ..Default::default()
        };
        client
            .subscribe_with_options(topic.clone(), opts, move |m| {
                let _ = tx.send(Internal::Message {
                    topic: m.topic,
                    payload: bytes::Bytes::from(m.payload),
                });
            })
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_schemes_are_dialled_with_server_verification() {
        assert_eq!(verified_url("quic://h:1"), "quics://h:1");
        assert_eq!(verified_url("quics://h:1"), "quics://h:1");
    }
}
