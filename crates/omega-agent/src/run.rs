//! `omega agent run`: the event loop that joins the [`Engine`] (SQLite, on blocking threads)
//! with the MQTT connection.
//!
//! One task owns the broker [`Link`] (rumqttc over TCP/TLS, or mqtt5 over QUIC). Publishes
//! are handed to it with packet ids the agent assigned ([`InFlight`]), so a PUBACK always
//! names its batch. On a disconnect the link's own queue is discarded; after the next CONNACK
//! the agent re-sends what it holds (same bytes and ids when the broker kept the session;
//! rebuilt from the durable cursor when it did not). Cursors move only on PUBACK (and, with
//! receipts, on confirmation). With `connection.fallback_url`, [`Route`] decides which URL
//! the link dials.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::time::{MissedTickBehavior, interval, sleep};

use omega_protocol::signing::ControlVerifier;

use crate::downlink::{self, Verification};
use crate::engine::{Delivery, Engine, EngineConfig, EngineError};
use crate::link::route::{Route, Target};
use crate::link::{Link, LinkEvent};
use crate::publish::inflight::{Acked, InFlight};
use crate::transport::{MqttSettings, TransportError};

/// Batches in flight at most, in total and per table (`spec/agent.md` §8.5).
const MAX_INFLIGHT: usize = 32;
const MAX_INFLIGHT_PER_TABLE: usize = 4;
/// Packet ids cycle through 1..=this (rumqttc's in-flight window must be at least as large).
const MAX_PKID: u16 = 64;
/// Without a PUBACK for this long while connected, the connection is dropped and the batch
/// re-sent (a lost packet never blocks a table for good).
const PUBACK_TIMEOUT: Duration = Duration::from_secs(60);

/// Everything `run` needs.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The engine's part.
    pub engine: EngineConfig,
    /// The broker connection.
    pub mqtt: MqttSettings,
    /// `flush_interval`.
    pub flush_interval: Duration,
    /// `receipt_timeout` (`receipts.md` §5.3).
    pub receipt_timeout: Duration,
    /// How receipts and controls are verified.
    pub verification: Verification,
    /// `security.max_payload_bytes`: the largest control accepted.
    pub max_control_bytes: usize,
}

impl RunConfig {
    /// The run configuration a validated [`crate::config::AgentConfig`] describes.
    pub fn from_agent_config(cfg: &crate::config::AgentConfig) -> RunConfig {
        let c = &cfg.connection;
        let r = &cfg.replication;
        let tls = (c.mqtt.tls.ca_cert_path.is_some() || c.client_cert().is_some()).then(|| {
            crate::transport::TlsFiles {
                ca: c.mqtt.tls.ca_cert_path.clone(),
                client: c
                    .client_cert()
                    .map(|cc| (cc.cert_path.clone(), cc.key_path.clone())),
            }
        });
        RunConfig {
            engine: EngineConfig {
                device_id: c.device_id.clone(),
                root_topic: c.root_topic.clone(),
                source_db_path: r.source_db_path.clone(),
                state_db_path: r.state_db_path.clone(),
                strategies: r.table_strategies.clone(),
                delivery: r.delivery,
                snapshot_on_first_run: r.snapshot_on_first_run,
                local_retention_bytes: r.local_retention_bytes,
            },
            mqtt: MqttSettings {
                url: c.server_url.to_string(),
                fallback_url: c.fallback_url.as_ref().map(ToString::to_string),
                session_expiry: c.mqtt.session_expiry,
                client_id: c.device_id.clone(),
                keep_alive: c.mqtt.keep_alive,
                credentials: c.mqtt.username.clone().map(|u| {
                    (
                        u,
                        c.mqtt
                            .password
                            .as_ref()
                            .map(|p| p.expose().to_string())
                            .unwrap_or_default(),
                    )
                }),
                tls,
            },
            flush_interval: r.flush_interval,
            receipt_timeout: r.receipt_timeout,
            verification: Verification::Disabled,
            max_control_bytes: usize::try_from(cfg.security.max_payload_bytes)
                .unwrap_or(usize::MAX),
        }
    }

    /// Loads the verification key the configuration names (`security.signed_control`).
    pub fn load_verification(
        cfg: &crate::config::AgentConfig,
    ) -> Result<Verification, TransportError> {
        use crate::config::SignedControl;
        match &cfg.security.signed_control {
            SignedControl::Disabled => Ok(Verification::Disabled),
            SignedControl::Ed25519 { public_key_path } => {
                let pem = std::fs::read_to_string(public_key_path)
                    .map_err(|e| TransportError::Tls(public_key_path.clone(), e.to_string()))?;
                ControlVerifier::ed25519_from_public_pem(&pem)
                    .map(|v| Verification::Key(Box::new(v)))
                    .map_err(|e| TransportError::Tls(public_key_path.clone(), e.to_string()))
            }
            SignedControl::HmacSha256 { secret } => {
                ControlVerifier::hmac(secret.expose().as_bytes())
                    .map(|v| Verification::Key(Box::new(v)))
                    .map_err(|e| TransportError::Tls("auth_token_env".into(), e.to_string()))
            }
        }
    }
}

/// Errors that end `run`.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Startup or a later engine step failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The connection settings are unusable.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A blocking task panicked.
    #[error("internal task failed: {0}")]
    Join(String),
}

/// What a finished run reports.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RunSummary {
    /// Batches acknowledged by the broker during the run.
    pub batches_acked: u64,
    /// Row changes in those batches.
    pub rows_acked: u64,
}

type Shared = Arc<Mutex<Engine>>;

async fn with_engine<T: Send + 'static>(
    engine: &Shared,
    f: impl FnOnce(&mut Engine) -> Result<T, EngineError> + Send + 'static,
) -> Result<T, RunError> {
    let engine = engine.clone();
    tokio::task::spawn_blocking(move || {
        let mut guard = engine.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    })
    .await
    .map_err(|e| RunError::Join(e.to_string()))?
    .map_err(RunError::from)
}

/// Runs the agent until `shutdown` completes; then stops starting batches, waits up to 10 s
/// for PUBACKs of those in flight, commits cursors and returns.
pub async fn run(
    cfg: RunConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<RunSummary, RunError> {
    use tracing::Instrument;
    let span = tracing::info_span!(
        "agent",
        device_id = %cfg.engine.device_id,
        journal_epoch = tracing::field::Empty
    );
    run_in_span(cfg, shutdown, span.clone())
        .instrument(span)
        .await
}

async fn run_in_span(
    cfg: RunConfig,
    shutdown: impl Future<Output = ()>,
    span: tracing::Span,
) -> Result<RunSummary, RunError> {
    let engine_cfg = cfg.engine.clone();
    let engine = tokio::task::spawn_blocking(move || Engine::open(engine_cfg))
        .await
        .map_err(|e| RunError::Join(e.to_string()))??;
    let device = cfg.engine.device_id.clone();
    let epoch = engine.epoch().to_string();
    span.record("journal_epoch", epoch.as_str());
    tracing::info!(tables = ?engine.table_names(), telemetry = ?engine.telemetry_names(), "capture enrolled");
    if matches!(cfg.verification, Verification::Disabled) {
        tracing::warn!(
            "signed_control is disabled: receipts and controls are accepted without verification"
        );
    }
    let mut engine = engine;
    for (id, kind, table, watermark) in engine.unapplied_controls()? {
        engine.apply_control(&id, &kind, table.as_deref(), watermark, None)?;
    }
    let engine: Shared = Arc::new(Mutex::new(engine));

    let root = cfg.engine.root_topic.clone();
    let batch_topic: Arc<str> = Arc::from(format!("{root}/sync/rows/batch"));
    let telemetry_topic: Arc<str> = Arc::from(format!("{root}/sync/telemetry/batch"));
    let observe_topic: Arc<str> = Arc::from(format!("{root}/sync/schema/observe"));
    let control_topic = format!("{root}/sync/ingest/control");
    let receipt_topic = format!("{root}/sync/ingest/receipt");
    let ack_topic: Arc<str> = Arc::from(format!("{root}/sync/ingest/ack"));
    let subscriptions = [control_topic.clone(), receipt_topic.clone()];
    let mut route = Route::new(cfg.mqtt.fallback_url.is_some());
    let url_of = |t: Target| match (t, &cfg.mqtt.fallback_url) {
        (Target::Fallback, Some(f)) => f.clone(),
        _ => cfg.mqtt.url.clone(),
    };
    let mut link = Link::open(&cfg.mqtt, &cfg.mqtt.url, subscriptions.clone(), MAX_PKID)?;

    let mut inflight = InFlight::new(MAX_INFLIGHT, MAX_INFLIGHT_PER_TABLE, MAX_PKID);
    let mut sent_at: std::collections::HashMap<u16, Instant> = Default::default();
    let mut connected = false;
    let mut backoff = Duration::from_secs(1);
    let mut summary = RunSummary::default();
    let tick_every = cfg.flush_interval.min(Duration::from_secs(1));
    let mut ticker = interval(tick_every);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_flush = Instant::now() - cfg.flush_interval;
    let mut more_pending = false;
    let mut last_progress = Instant::now();
    let mut receipts_seen = with_engine(&engine, |e| {
        Ok(e.state()
            .tables()
            .map_err(EngineError::from)?
            .iter()
            .any(|t| t.confirmed_at.is_some()))
    })
    .await?;
    // The first WARN comes a minute after startup, not at once.
    let mut last_no_receipt_warn = Instant::now();
    tokio::pin!(shutdown);
    let mut stopping: Option<Instant> = None;

    loop {
        if let Some(since) = stopping
            && (inflight.is_empty() || since.elapsed() > Duration::from_secs(10) || !connected)
        {
            break;
        }
        // Flush when due: the interval passed, or a backlog waits and there is room.
        let due = last_flush.elapsed() >= cfg.flush_interval || more_pending;
        if connected && stopping.is_none() && due && inflight.room() > 0 {
            last_flush = Instant::now();
            // A copy of the in-flight room, read on the blocking thread without locking the
            // engine from this task.
            let rooms = inflight.rooms();
            let (ready, observations, backlog) = with_engine(&engine, move |e| {
                let ready = e.flush_within(&|t| rooms.room_for(t), rooms.total())?;
                e.enforce_retention()?;
                Ok((ready, e.take_observations(), e.backlog()))
            })
            .await?;
            for o in observations {
                if let Some(out) = inflight
                    .start_other(observe_topic.clone(), bytes::Bytes::from(o.to_json_bytes()))
                {
                    link.publish(&out);
                }
            }
            // More can be built at once (the read slice ended with room left): flush again now,
            // not a whole `flush_interval` later. Changes left behind for want of room go when
            // a PUBACK frees some (it sets `more_pending`).
            more_pending = !ready.is_empty() && (backlog || inflight.room() <= ready.len());
            for b in ready {
                crate::failpoint::crash_point!("agent::publish");
                let topic = if b.telemetry {
                    telemetry_topic.clone()
                } else {
                    batch_topic.clone()
                };
                let out = inflight.start(b.info, topic, bytes::Bytes::from(b.payload));
                sent_at.insert(out.pkid, Instant::now());
                link.publish(&out);
            }
        }
        // Local retention holds while offline too (the flush, which checks it, needs a
        // connection).
        if !connected && last_flush.elapsed() >= cfg.flush_interval.max(Duration::from_secs(1)) {
            last_flush = Instant::now();
            with_engine(&engine, |e| e.enforce_retention().map(|_| ())).await?;
        }
        // Receipts: say so every minute while none has ever arrived (receipts.md §5.6).
        if connected
            && cfg.engine.delivery == Delivery::Receipts
            && !receipts_seen
            && last_no_receipt_warn.elapsed() >= Duration::from_secs(60)
        {
            last_no_receipt_warn = Instant::now();
            tracing::warn!(
                "no delivery receipt received yet: nothing is pruned until the cloud confirms \
                 (use `delivery: puback` only with a cloud that sends no receipts)"
            );
        }
        // Receipts: without progress for receipt_timeout, re-send from the confirmed point.
        if connected
            && cfg.engine.delivery == Delivery::Receipts
            && last_progress.elapsed() > cfg.receipt_timeout
        {
            let unconfirmed = with_engine(&engine, |e| {
                Ok(e.snapshots_awaiting_confirmation()
                    || e.telemetry_unconfirmed()
                    || e.state()
                        .tables()
                        .map_err(EngineError::from)?
                        .iter()
                        .any(|t| t.published_seq > t.confirmed_seq))
            })
            .await?;
            last_progress = Instant::now();
            if unconfirmed {
                tracing::warn!(timeout = ?cfg.receipt_timeout, "no receipt progress: re-sending unconfirmed changes");
                // Batches still in flight stay registered: their packet ids are still in the
                // MQTT client's state, and reusing one would make the client hold the new
                // publish (rumqttc keeps a single "collision" slot) while the old PUBACK is
                // taken for the new batch. The rebuilt batches are duplicates the cloud
                // ignores.
                with_engine(&engine, |e| e.rewind_all()).await?;
                more_pending = true;
            }
        }
        if connected && sent_at.values().any(|t| t.elapsed() > PUBACK_TIMEOUT) {
            tracing::warn!("PUBACK overdue: reconnecting");
            link.reset();
            sent_at.clear();
            connected = false;
        }
        // On the fallback long enough: try the primary again.
        if let Some(to) = route.poll(Instant::now()) {
            tracing::info!(url = %url_of(to), "retrying the primary broker URL");
            let old = std::mem::replace(
                &mut link,
                Link::open(&cfg.mqtt, &url_of(to), subscriptions.clone(), MAX_PKID)?,
            );
            old.close().await;
            sent_at.clear();
            connected = false;
        }

        tokio::select! {
            biased;
            _ = &mut shutdown, if stopping.is_none() => {
                tracing::info!(in_flight = inflight.len(), "stopping: waiting for in-flight batches");
                stopping = Some(Instant::now());
            }
            ev = link.next() => match ev {
                LinkEvent::Connected { session_present } => {
                    backoff = Duration::from_secs(1);
                    route.on_connected();
                    tracing::info!(session_present, "connected to broker");
                    connected = true;
                    if session_present {
                        for out in inflight.resend_all() {
                            sent_at.insert(out.pkid, Instant::now());
                            link.publish(&out);
                        }
                    } else {
                        // The broker has no session: nothing it holds can be trusted to arrive.
                        inflight.clear();
                        sent_at.clear();
                        match cfg.engine.delivery {
                            Delivery::Receipts => with_engine(&engine, |e| e.rewind_all()).await?,
                            Delivery::Puback => with_engine(&engine, |e| e.rewind_to_published()).await?,
                        }
                    }
                    last_progress = Instant::now();
                    more_pending = true;
                }
                LinkEvent::PubAck(pkid) => {
                    sent_at.remove(&pkid);
                    match inflight.on_puback(pkid) {
                        Some(Acked::Cursor(mv, done)) => {
                            crate::failpoint::crash_point!("agent::puback");
                            summary.batches_acked += done.len() as u64;
                            summary.rows_acked += done.iter().map(|b| b.rows as u64).sum::<u64>();
                            with_engine(&engine, move |e| e.on_published(&[mv])).await?;
                            if cfg.engine.delivery == Delivery::Puback {
                                last_progress = Instant::now();
                            }
                            more_pending = true;
                        }
                        Some(Acked::SnapshotPart(info)) => {
                            summary.batches_acked += 1;
                            summary.rows_acked += info.rows as u64;
                            if let Some(part) = info.snapshot {
                                with_engine(&engine, move |e| e.on_snapshot_part_published(&part)).await?;
                            }
                            // A snapshot in progress is progress: the receipt timeout counts
                            // from its last part.
                            last_progress = Instant::now();
                            more_pending = true;
                        }
                        None => {}
                    }
                }
                LinkEvent::Message { topic, payload } if topic == receipt_topic => {
                    let epoch = epoch.clone();
                    match downlink::receipt(&payload, &cfg.verification, &device, &epoch) {
                        Ok(fx) => {
                            receipts_seen = true;
                            for r in &fx.rejected {
                                tracing::error!(batch_id = %r.batch_id, table = ?r.source_table, code = %r.code,
                                    "the cloud rejected a batch (quarantined); fix the cause on the device");
                            }
                            let rejected = fx.rejected.len() as i64;
                            if !fx.confirms.is_empty() || rejected > 0 || !fx.snapshots_complete.is_empty() || !fx.telemetry_confirms.is_empty() {
                                let moved = with_engine(&engine, move |e| {
                                    if rejected > 0 {
                                        e.state().bump_counter("batches_rejected", rejected)?;
                                    }
                                    e.on_snapshots_complete(&fx.snapshots_complete)?;
                                    e.on_telemetry_confirmed(&fx.telemetry_confirms)?;
                                    e.on_confirmed(&fx.confirms)
                                })
                                .await;
                                moved?;
                                last_progress = Instant::now();
                            }
                        }
                        Err(why) => {
                            tracing::warn!(%why, "receipt dropped");
                            with_engine(&engine, |e| Ok(e.state().bump_counter("receipts_rejected", 1)?)).await?;
                        }
                    }
                }
                LinkEvent::Message { topic, payload } if topic == control_topic => {
                    match downlink::control(&payload, cfg.max_control_bytes, &cfg.verification, &device) {
                        Ok(c) => {
                            let c2 = c.clone();
                            let fresh = with_engine(&engine, move |e| {
                                let fresh = c2.control_seq > e.last_control_seq()?;
                                if fresh {
                                    e.record_control(&c2)?;
                                }
                                Ok(fresh)
                            })
                            .await?;
                            let ack = omega_protocol::message::ControlAck { control_id: c.control_id.clone() };
                            if let Some(out) = inflight.start_other(ack_topic.clone(), bytes::Bytes::from(ack.to_json_bytes())) {
                                link.publish(&out);
                            }
                            if fresh {
                                let kind = c.control_kind.as_str().to_string();
                                with_engine(&engine, move |e| {
                                    e.apply_control(&c.control_id, &kind, c.source_table.as_deref(), c.server_watermark, c.reason.as_deref())
                                })
                                .await?;
                                more_pending = true;
                            } else {
                                tracing::debug!(control_seq = c.control_seq, "control already applied: ACKed again");
                            }
                        }
                        Err(why) => {
                            tracing::warn!(%why, "control dropped");
                            with_engine(&engine, |e| Ok(e.state().bump_counter("controls_rejected", 1)?)).await?;
                        }
                    }
                }
                LinkEvent::Message { .. } => {}
                LinkEvent::Down { error, was_connected } => {
                    if was_connected {
                        tracing::warn!(%error, "broker connection lost");
                    } else {
                        tracing::warn!(%error, retry_in = ?backoff, "cannot connect to broker");
                        if let Some(to) = route.on_attempt_failed(Instant::now()) {
                            tracing::warn!(url = %url_of(to), "falling back to connection.fallback_url");
                            let old = std::mem::replace(
                                &mut link,
                                Link::open(&cfg.mqtt, &url_of(to), subscriptions.clone(), MAX_PKID)?,
                            );
                            old.close().await;
                            backoff = Duration::from_secs(1);
                        }
                    }
                    connected = false;
                    sent_at.clear();
                    if stopping.is_some() {
                        break;
                    }
                    let pause = jitter(backoff);
                    tokio::select! {
                        _ = sleep(pause) => {}
                        _ = &mut shutdown, if stopping.is_none() => { stopping = Some(Instant::now()); }
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                }
            },
            _ = ticker.tick() => {}
        }
    }
    link.close().await;
    with_engine(&engine, |e| e.record_position()).await?;
    tracing::info!(
        batches = summary.batches_acked,
        rows = summary.rows_acked,
        "agent stopped"
    );
    Ok(summary)
}

/// `d` ± 25 %, so a fleet does not reconnect in step.
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.subsec_nanos());
    let spread = d.as_millis() as u64 / 2;
    let offset = if spread == 0 {
        0
    } else {
        u64::from(nanos) % spread
    };
    d - d / 4 + Duration::from_millis(offset)
}
