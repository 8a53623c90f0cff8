//! Ingest over MQTT (`cloud.md` §4, §15): the loop that turns broker messages into store
//! transactions.
//!
//! - one MQTT 5 connection (rumqttc `v5`; MQTT 3.1.1 or QUIC through [`link`]), persistent
//!   session, manual acknowledgements;
//! - subscription `$share/{group}/{filter}/sync/#` at QoS 1 (plain `{filter}/sync/#` when the
//!   group is empty), where `{filter}` is the device topic template with `{device}` → `+`;
//! - each message is handled by one of `workers` concurrent tasks ([`handle`]): route,
//!   validate, apply or quarantine, retrying store errors;
//! - PUBACKs go in arrival order, each after its message's transaction committed
//!   ([`acks::AckQueue`]), from a dedicated task so the event loop is never blocked on them;
//! - with [`IngestOptions::receipts`] set, committed messages are noted for the receipt
//!   sender ([`crate::receipts`]), which publishes signed receipts on the same connection.
//!
//! [`serve`] takes the store and a shutdown future as arguments (mini-redis style), so tests
//! run it in process against a real broker.

pub mod acks;
pub mod handle;
pub mod link;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use omega_config::url::Transport;
use omega_protocol::topic::{DeviceTopicTemplate, TopicError};
use rumqttc::v5::MqttOptions;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;

use self::acks::{AckQueue, Ticket};
use self::handle::Worker;
pub use self::handle::{Handled, IngestStats};
use self::link::{Incoming, LinkClient, LinkError, LinkEvent, MqttVersion, QuicTarget};
use crate::config::CloudConfig;
use crate::policy::Policy;
use crate::receipts::{self, DeviceNote, ReceiptOptions};
use crate::replay;
use crate::store::{AnyStore, Store};
use crate::with_store;

/// The largest MQTT packet: single-row batches may exceed 512 KiB (`protocol.md` §13).
const MAX_PACKET_BYTES: u32 = 268_435_455;

/// Interval of the replay sweep (§9.3, §12.2).
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// How long in-flight messages may finish after shutdown is requested.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How long pending receipts may take to go out at shutdown.
const RECEIPT_FLUSH_GRACE: Duration = Duration::from_secs(3);

/// What [`serve`] needs besides the store.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Broker address, client id, credentials, TLS. [`serve`] forces MQTT 5 manual acks, a
    /// persistent session (`clean_start = false`) and a large maximum packet size.
    pub mqtt: MqttOptions,
    /// `ingest.device_topic`.
    pub device_topic: DeviceTopicTemplate,
    /// `broker.mqtt_version`: MQTT 5 (default) or 3.1.1 (session expiry and receive maximum
    /// do not exist there).
    pub mqtt_version: MqttVersion,
    /// Set for a `quic://`/`quics://` broker: the link is the `mqtt5` client over QUIC (always
    /// MQTT 5), with [`IngestOptions::mqtt`] giving every other setting.
    pub quic: Option<QuicTarget>,
    /// `ingest.shared_group`; empty for a plain subscription (one process only).
    pub shared_group: String,
    /// `ingest.workers`: concurrent batch handlers (1–256).
    pub workers: usize,
    /// Schema policy.
    pub policy: Policy,
    /// Session expiry requested from the broker.
    pub session_expiry: Duration,
    /// Delivery receipts (`receipts.md` §4): the signing key and the pacing. `None` sends
    /// none (for devices with `delivery: puback` only).
    pub receipts: Option<ReceiptOptions>,
    /// `control.resend_after` (§14.3). Controls are sent, signed with the receipts' key,
    /// whenever [`IngestOptions::receipts`] is set.
    pub control_resend_after: Duration,
    /// The staging caps of backpressure (§12), swept whenever receipts are on.
    pub backpressure: crate::controls::backpressure::Caps,
}

impl IngestOptions {
    /// Options with the defaults of `cloud.md` §2: shared group `omega-ingest`, 4 workers, a
    /// one-day session.
    pub fn new(mqtt: MqttOptions, device_topic: DeviceTopicTemplate, policy: Policy) -> Self {
        IngestOptions {
            mqtt,
            device_topic,
            mqtt_version: MqttVersion::V5,
            quic: None,
            shared_group: "omega-ingest".to_string(),
            workers: 4,
            policy,
            session_expiry: Duration::from_secs(24 * 3600),
            receipts: None,
            control_resend_after: Duration::from_secs(30),
            backpressure: crate::controls::backpressure::Caps::default(),
        }
    }

    /// Options from the validated `cloud.yaml` (`broker.*`, `ingest.*`, `policy.*`);
    /// `hostname` fills `{hostname}` in `broker.client_id`. Receipts stay off until the caller
    /// sets [`IngestOptions::receipts`] (it needs the signing key, read with
    /// [`crate::config::ControlConfig::read_key`], and `receipts.interval`).
    ///
    /// `mqtts://`/`ssl://` brokers are verified against `broker.tls.ca` under the URL's host
    /// name, with `broker.tls.cert`/`key` sent for mTLS ([`omega_tls`]); a file that cannot be
    /// used, a key that does not match, or a client certificate outside its validity is
    /// [`IngestError::Tls`], naming the key. `quic://`/`quics://` brokers use the same files
    /// (checked the same way) over QUIC; a build without the `quic` feature refuses them
    /// ([`IngestError::UnsupportedTransport`]).
    pub fn from_config(cfg: &CloudConfig, hostname: &str) -> Result<Self, IngestError> {
        let url = &cfg.broker.url;
        let mut mqtt = MqttOptions::new(
            cfg.broker.client_id_for(hostname),
            url.host.clone(),
            url.port,
        );
        let mut quic = None;
        match url.scheme.transport() {
            Transport::Plain => {}
            Transport::Tls => {
                mqtt.set_transport(broker_tls(cfg)?);
            }
            Transport::Quic if cfg!(feature = "quic") => {
                broker_tls(cfg)?;
                let read = |path: &std::path::Path, field: &str| {
                    std::fs::read(path).map_err(|e| omega_tls::TlsError {
                        field: field.to_string(),
                        path: path.to_path_buf(),
                        reason: e.to_string(),
                    })
                };
                let (cert, key) = match &cfg.broker.client_cert {
                    Some((c, k)) => (
                        Some(read(c, "broker.tls.cert")?),
                        Some(read(k, "broker.tls.key")?),
                    ),
                    None => (None, None),
                };
                quic = Some(QuicTarget {
                    url: url.to_string(),
                    ca: cfg
                        .broker
                        .ca
                        .as_deref()
                        .map(|p| read(p, "broker.tls.ca"))
                        .transpose()?,
                    cert,
                    key,
                });
            }
            Transport::Quic => return Err(IngestError::UnsupportedTransport(url.to_string())),
        }
        if let Some(user) = &cfg.broker.username {
            let password = cfg.broker.password.as_ref().map(|p| p.expose().to_string());
            mqtt.set_credentials(user.clone(), password.unwrap_or_default());
        }
        let mut opts = IngestOptions::new(mqtt, cfg.ingest.device_topic.clone(), cfg.policy.schema);
        opts.mqtt_version = cfg.broker.mqtt_version;
        opts.quic = quic;
        opts.shared_group = cfg.ingest.shared_group.clone().unwrap_or_default();
        opts.workers = usize::try_from(cfg.ingest.workers).unwrap_or(usize::MAX);
        opts.control_resend_after = cfg.control.resend_after;
        opts.backpressure = crate::controls::backpressure::Caps {
            max_rows: cfg.policy.max_pending_rows_per_lineage,
            max_bytes: cfg.policy.max_pending_bytes_per_lineage,
            resume_percent: cfg.policy.resume_threshold_percent,
            breaker_failures: cfg.policy.circuit_breaker_failures,
        };
        Ok(opts)
    }

    /// The subscription filter (§15.2).
    pub fn subscription(&self) -> Result<String, TopicError> {
        if self.shared_group.is_empty() {
            Ok(self.device_topic.subscription_filter())
        } else {
            self.device_topic
                .shared_subscription_filter(&self.shared_group)
        }
    }
}

/// The TLS transport of `broker.tls` (CA, optional client pair), with the client certificate's
/// validity checked; errors name the key and the file.
fn broker_tls(cfg: &CloudConfig) -> Result<rumqttc::Transport, IngestError> {
    let client = cfg
        .broker
        .client_cert
        .as_ref()
        .map(|(cert, key)| omega_tls::ClientPair {
            cert,
            cert_field: "broker.tls.cert",
            key,
            key_field: "broker.tls.key",
        });
    let tls = omega_tls::client_config(&omega_tls::ClientFiles {
        ca: cfg.broker.ca.as_deref(),
        ca_field: "broker.tls.ca",
        client: client.clone(),
    })?;
    if let Some(pair) = &client {
        omega_tls::check_client_validity(pair)?;
    }
    Ok(rumqttc::Transport::tls_with_config(
        rumqttc::TlsConfiguration::Rustls(Arc::new(tls)),
    ))
}

/// Why [`serve`] stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The shared group name cannot be used in a topic filter.
    #[error("ingest.shared_group: {0}")]
    Subscription(#[from] TopicError),
    /// `ingest.workers` out of range.
    #[error("ingest.workers must be 1–256, got {0}")]
    Workers(usize),
    /// A QUIC broker URL in a build without the `quic` feature.
    #[error(
        "broker.url {0}: this build of omega-cloud has no QUIC (Cargo feature `quic`); use mqtts:// or mqtt://"
    )]
    UnsupportedTransport(String),
    /// A `broker.tls` file cannot be used (the message names the key and the file).
    #[error(transparent)]
    Tls(#[from] omega_tls::TlsError),
    /// The MQTT client's request channel is gone (the event loop stopped).
    #[error("MQTT client: {0}")]
    Client(#[from] LinkError),
}

/// Runs ingest until `shutdown` resolves: connects, subscribes (on every connect), and
/// handles messages. Connection errors are logged and retried with backoff; they never end the
/// loop. Returns the counters.
pub async fn serve<S: Store>(
    opts: IngestOptions,
    store: S,
    shutdown: impl Future<Output = ()>,
) -> Result<Arc<IngestStats>, IngestError> {
    let stats = Arc::new(IngestStats::default());
    serve_with_stats(opts, store, stats.clone(), shutdown).await?;
    Ok(stats)
}

/// [`serve`] with counters the caller holds (metrics, health, tests waiting for the
/// subscription).
pub async fn serve_with_stats<S: Store>(
    opts: IngestOptions,
    store: S,
    stats: Arc<IngestStats>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), IngestError> {
    if !(1..=256).contains(&opts.workers) {
        return Err(IngestError::Workers(opts.workers));
    }
    let filter = opts.subscription()?;
    let mut mqtt = opts.mqtt.clone();
    mqtt.set_manual_acks(true);
    mqtt.set_clean_start(false);
    mqtt.set_session_expiry_interval(Some(
        u32::try_from(opts.session_expiry.as_secs()).unwrap_or(u32::MAX),
    ));
    if mqtt.max_packet_size().is_none() {
        mqtt.set_max_packet_size(Some(MAX_PACKET_BYTES));
    }
    // The broker sends at most this many unacknowledged messages: bounds memory and the
    // ack queue, and keeps every worker busy.
    let receive_max = u16::try_from(opts.workers.saturating_mul(8).max(16)).unwrap_or(u16::MAX);
    mqtt.set_receive_maximum(Some(receive_max));
    let (client, mut eventloop) = match &opts.quic {
        Some(target) => link::connect_quic(&mqtt, target, filter.clone())?,
        None => link::connect(mqtt, opts.mqtt_version, usize::from(receive_max) + 16),
    };

    let (receipt_tx, receipt_flush, mut receipt_task) = match &opts.receipts {
        Some(r) => {
            let (tx, rx) = mpsc::unbounded_channel::<DeviceNote>();
            let (flush_tx, flush_rx) = oneshot::channel();
            let task = tokio::spawn(receipts::run_sender(
                store.clone(),
                client.clone(),
                opts.device_topic.clone(),
                r.clone(),
                rx,
                flush_rx,
                stats.clone(),
            ));
            (Some(tx), Some(flush_tx), Some(task))
        }
        None => (None, None, None),
    };
    let worker = Arc::new(Worker {
        store,
        policy: opts.policy,
        template: opts.device_topic.clone(),
        stats: stats.clone(),
        receipts: receipt_tx,
    });
    let permits = Arc::new(Semaphore::new(opts.workers));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Ticket>();
    let (ack_tx, ack_rx) = mpsc::unbounded_channel::<Incoming>();
    let acker = tokio::spawn(send_acks(client.clone(), ack_rx, stats.clone()));
    let sweeper = tokio::spawn(sweep_forever(worker.store.clone(), opts.policy));
    // Controls (§14) go out when the cloud has its signing key (the receipts' key).
    let control_sender = opts.receipts.as_ref().map(|r| {
        (
            tokio::spawn(crate::controls::send::run_sender(
                worker.store.clone(),
                client.clone(),
                opts.device_topic.clone(),
                opts.control_resend_after,
            )),
            tokio::spawn(crate::controls::backpressure::run(
                worker.store.clone(),
                r.key.clone(),
                opts.backpressure,
            )),
        )
    });
    let mut queue: AckQueue<Incoming> = AckQueue::new();
    let mut tasks = JoinSet::new();
    let mut reconnect_pause = Duration::from_millis(100);
    tokio::pin!(shutdown);

    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(ticket) = done_rx.recv() => {
                for p in queue.complete(ticket) {
                    let _ = ack_tx.send(p);
                }
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            event = eventloop.poll() => match event {
                Ok(LinkEvent::Connected { session_present }) => {
                    reconnect_pause = Duration::from_millis(100);
                    if !client.acks_survive_reconnect() {
                        queue.reconnected();
                    }
                    tracing::info!(session_present, %filter, mqtt = opts.mqtt_version.as_str(), "connected to the broker");
                    // Subscribe on every connect: cheap, and covers a broker that lost the session.
                    client.subscribe(filter.clone()).await?;
                }
                Ok(LinkEvent::Message(publish)) => {
                    stats.received.fetch_add(1, Ordering::Relaxed);
                    let topic = publish.topic();
                    let payload = publish.payload();
                    let retain = publish.retain();
                    let ticket = queue.push(publish);
                    let worker = worker.clone();
                    let permits = permits.clone();
                    let done = done_tx.clone();
                    // A message waiting for a worker is a small task: the handler's future
                    // (several KiB) is allocated only once it holds a permit.
                    tasks.spawn(async move {
                        let Ok(_permit) = permits.acquire_owned().await else { return };
                        Box::pin(worker.handle(&topic, &payload, retain)).await;
                        let _ = done.send(ticket);
                    });
                    // Finished tasks keep their memory until joined: reap them here too, not
                    // only when the select below has nothing else to do.
                    while tasks.try_join_next().is_some() {}
                }
                Ok(LinkEvent::Subscribed) => {
                    stats.subscribed.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, pause = ?reconnect_pause, "broker connection lost; reconnecting");
                    tokio::time::sleep(reconnect_pause).await;
                    reconnect_pause = (reconnect_pause * 2).min(Duration::from_secs(10));
                }
            },
        }
    }

    // Shutdown: let in-flight messages commit and acknowledge, for a bounded time, while the
    // event loop keeps the connection alive to carry the PUBACKs.
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    while queue.pending() > 0 {
        tokio::select! {
            Some(ticket) = done_rx.recv() => {
                for p in queue.complete(ticket) {
                    let _ = ack_tx.send(p);
                }
            }
            event = eventloop.poll() => {
                if event.is_err() {
                    break;
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                tracing::warn!(pending = queue.pending(), "shutdown: unacknowledged messages left for redelivery");
                break;
            }
        }
    }
    tasks.abort_all();
    sweeper.abort();
    if let Some((sender, backpressure)) = &control_sender {
        sender.abort();
        backpressure.abort();
    }
    drop(ack_tx);
    let _ = acker.await;
    // Receipts still pending go out now, while the connection carries them.
    if let (Some(flush), Some(task)) = (receipt_flush, receipt_task.as_mut()) {
        let _ = flush.send(());
        let deadline = tokio::time::Instant::now() + RECEIPT_FLUSH_GRACE;
        loop {
            tokio::select! {
                _ = &mut *task => break,
                event = eventloop.poll() => {
                    if event.is_err() {
                        break;
                    }
                }
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
    }
    if let Some(task) = receipt_task {
        task.abort();
    }
    let _ = client.disconnect().await;
    // Flush the DISCONNECT (and any last PUBACK) out of the event loop.
    let flush = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        tokio::select! {
            event = eventloop.poll() => {
                if event.is_err() {
                    break;
                }
            }
            () = tokio::time::sleep_until(flush) => break,
        }
    }
    Ok(())
}

/// [`serve`] for a store opened by URL.
pub async fn serve_any(
    opts: IngestOptions,
    store: AnyStore,
    shutdown: impl Future<Output = ()>,
) -> Result<Arc<IngestStats>, IngestError> {
    with_store!(store, s => serve(opts, s, shutdown).await)
}

/// The replay sweep, every [`SWEEP_EVERY`]. Errors are logged; the next round retries.
async fn sweep_forever<S: Store>(store: S, policy: Policy) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match replay::replay_sweep(&store, &policy).await {
            Ok(r) if r.replayed > 0 => {
                tracing::info!(replayed = r.replayed, failed = r.failed, "replay sweep");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "replay sweep failed; retrying next round"),
        }
    }
}

async fn send_acks(
    client: LinkClient,
    mut rx: mpsc::UnboundedReceiver<Incoming>,
    stats: Arc<IngestStats>,
) {
    while let Some(p) = rx.recv().await {
        match client.ack(&p).await {
            Ok(()) => {
                stats.acked.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not send PUBACK; the broker will redeliver");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn options_follow_the_config_file() {
        let yaml = "control:\n  signing_key_path: k\ningest:\n  workers: 7\n  shared_group: ''\n\
                    broker:\n  url: mqtt://broker.example:1884\n  client_id: c-{hostname}\n";
        let cfg = CloudConfig::from_yaml_str(yaml, Path::new("/x/cloud.yaml"), &|_| None).unwrap();
        let o = IngestOptions::from_config(&cfg, "h1").unwrap();
        assert_eq!(
            o.mqtt.broker_address(),
            ("broker.example".to_string(), 1884)
        );
        assert_eq!(o.mqtt.client_id(), "c-h1");
        assert_eq!(o.workers, 7);
        assert_eq!(o.subscription().unwrap(), "omega/+/sync/#");
    }

    #[test]
    fn tls_brokers_need_usable_files_named_by_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let yaml = "control:\n  signing_key_path: k\nbroker:\n  url: mqtts://b.example\n  \
                    tls:\n    ca: ca.pem\n    cert: c.pem\n    key: c.key\n";
        let cfg = CloudConfig::from_yaml_str(yaml, &d.join("cloud.yaml"), &|_| None).unwrap();
        let err = IngestOptions::from_config(&cfg, "h").unwrap_err();
        assert!(err.to_string().starts_with("broker.tls.ca: "), "{err}");
        let pki = omega_testkit::pki::Pki::generate("omega-cloud");
        std::fs::copy(pki.path("ca.pem"), d.join("ca.pem")).unwrap();
        std::fs::copy(pki.path("client.pem"), d.join("c.pem")).unwrap();
        std::fs::copy(pki.path("server.key"), d.join("c.key")).unwrap();
        let err = IngestOptions::from_config(&cfg, "h").unwrap_err();
        assert!(err.to_string().starts_with("broker.tls.key: "), "{err}");
        std::fs::copy(pki.path("client.key"), d.join("c.key")).unwrap();
        let o = IngestOptions::from_config(&cfg, "h").unwrap();
        assert_eq!(o.mqtt.broker_address(), ("b.example".to_string(), 8883));
        assert!(matches!(o.mqtt.transport(), rumqttc::Transport::Tls(_)));
    }

    #[test]
    fn quic_brokers_use_the_broker_tls_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let yaml = "control:\n  signing_key_path: k\nbroker:\n  url: quic://b.example\n  \
                    tls:\n    ca: ca.pem\n    cert: c.pem\n    key: c.key\n";
        let cfg = CloudConfig::from_yaml_str(yaml, &d.join("cloud.yaml"), &|_| None);
        if !cfg!(feature = "quic") {
            // Refused at validation already (`config::tests`).
            assert!(cfg.is_err());
            return;
        }
        let cfg = cfg.unwrap();
        let err = IngestOptions::from_config(&cfg, "h").unwrap_err();
        assert!(err.to_string().starts_with("broker.tls.ca: "), "{err}");
        let pki = omega_testkit::pki::Pki::generate("omega-cloud");
        for (from, to) in [
            ("ca.pem", "ca.pem"),
            ("client.pem", "c.pem"),
            ("client.key", "c.key"),
        ] {
            std::fs::copy(pki.path(from), d.join(to)).unwrap();
        }
        let o = IngestOptions::from_config(&cfg, "h").unwrap();
        let quic = o.quic.expect("a QUIC target");
        assert_eq!(quic.url, "quic://b.example:14567");
        assert_eq!(quic.ca.unwrap(), std::fs::read(d.join("ca.pem")).unwrap());
        assert_eq!(quic.cert.unwrap(), std::fs::read(d.join("c.pem")).unwrap());
        assert_eq!(quic.key.unwrap(), std::fs::read(d.join("c.key")).unwrap());
    }
}
