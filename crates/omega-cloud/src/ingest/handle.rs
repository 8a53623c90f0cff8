//! One received message, from topic to committed effect (`cloud.md` §4): route, validate,
//! apply or quarantine. Store errors are retried with backoff until they pass (or the task is
//! stopped at shutdown): a message is never acknowledged before its effects are stored, and a
//! store failure is never a reason to quarantine.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use omega_protocol::json::{self, Json};
use omega_protocol::topic::{DeviceTopicTemplate, Suffix};
use omega_protocol::validate::{DeviceMessage, Rejection, RejectionCode, decode_device_message};
use uuid::Uuid;

use omega_protocol::message::RejectedBatch as ReceiptRejection;
use tokio::sync::mpsc;

use crate::apply::{ApplyError, ApplyOutcome, ApplyReport, apply_row_batch};
use crate::dedupe::BatchKind;
use crate::policy::Policy;
use crate::quarantine::{RejectedBatch, RejectedMessage, RejectionOutcome, quarantine_message};
use crate::receipts::{DeviceNote, Note};
use crate::store::{Store, StoreError, StoreTx};
use crate::telemetry::apply_telemetry_batch;

/// Counters of the ingest loop (the seam for `omega_cloud_*` metrics, §19).
#[derive(Debug, Default)]
pub struct IngestStats {
    /// Messages received on the subscription.
    pub received: AtomicU64,
    /// Batches applied (materialized and/or staged).
    pub applied: AtomicU64,
    /// Deliveries of a batch already in the ledger.
    pub duplicates: AtomicU64,
    /// Messages quarantined.
    pub quarantined: AtomicU64,
    /// Schema observations recorded.
    pub observations: AtomicU64,
    /// Control ACKs received.
    pub control_acks: AtomicU64,
    /// Control ACKs naming no control of their device (counted and ignored).
    pub unknown_control_acks: AtomicU64,
    /// Messages skipped: the cloud's own topics, retained messages.
    pub skipped: AtomicU64,
    /// Store attempts that failed and were retried.
    pub store_retries: AtomicU64,
    /// PUBACKs sent.
    pub acked: AtomicU64,
    /// Subscriptions the broker confirmed (one per connect).
    pub subscribed: AtomicU64,
    /// Receipts published (`receipts.md` §4; a split receipt counts each part).
    pub receipts: AtomicU64,
    /// Receipt sends that failed (store read or publish) and were retried.
    pub receipt_failures: AtomicU64,
    /// Row changes and samples of applied batches written to a mirror or telemetry table
    /// (version no-ops included).
    pub rows_materialized: AtomicU64,
    /// Row changes and samples of applied batches staged (§9).
    pub rows_staged: AtomicU64,
    /// Row changes and samples refused by the fit check and quarantined (§10.4).
    pub rows_failed: AtomicU64,
    /// Seconds from receiving a batch to the commit of its effects (store retries included),
    /// for batches applied.
    pub apply_latency: crate::metrics::Histogram,
}

impl IngestStats {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts the rows of an applied batch.
    fn count_rows(&self, r: &ApplyReport) {
        let add = |c: &AtomicU64, n: usize| {
            c.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed)
        };
        add(&self.rows_materialized, r.materialized);
        add(&self.rows_staged, r.staged);
        add(&self.rows_failed, r.failed);
    }
}

/// What handling a message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// Applied.
    Applied,
    /// Already in the ledger.
    Duplicate,
    /// Quarantined.
    Quarantined,
    /// Observation recorded.
    Observed,
    /// Control ACK counted.
    ControlAck,
    /// Not for the cloud (own topics, retained).
    Skipped,
}

/// Everything a worker needs; shared by all workers.
pub(crate) struct Worker<S> {
    pub store: S,
    pub policy: Policy,
    pub template: DeviceTopicTemplate,
    pub stats: Arc<IngestStats>,
    /// Where committed messages are noted for receipts; `None` when receipts are off.
    pub receipts: Option<mpsc::UnboundedSender<DeviceNote>>,
}

impl<S: Store> Worker<S> {
    /// Tells the receipt sender what a committed message of `device` touched.
    fn note(&self, device: &str, note: Note) {
        if let Some(tx) = &self.receipts {
            let _ = tx.send((device.to_string(), note));
        }
    }

    fn note_lineage(&self, device: &str, table: &str) {
        self.note(
            device,
            Note::Lineage {
                table: table.to_string(),
            },
        );
    }

    fn note_rejected(&self, device: &str, batch_id: Uuid, table: Option<&str>, code: &str) {
        self.note(
            device,
            Note::Rejected(ReceiptRejection {
                batch_id: batch_id.to_string(),
                source_table: table.map(str::to_string),
                code: code.to_string(),
            }),
        );
    }

    /// Handles one message until its effects are committed.
    pub async fn handle(&self, topic: &str, payload: &[u8], retain: bool) -> Handled {
        let started = std::time::Instant::now();
        let outcome = self.handle_inner(topic, payload, retain).await;
        if outcome == Handled::Applied {
            self.stats.apply_latency.observe(started.elapsed());
        }
        let counter = match outcome {
            Handled::Applied => &self.stats.applied,
            Handled::Duplicate => &self.stats.duplicates,
            Handled::Quarantined => &self.stats.quarantined,
            Handled::Observed => &self.stats.observations,
            Handled::ControlAck => &self.stats.control_acks,
            Handled::Skipped => &self.stats.skipped,
        };
        IngestStats::bump(counter);
        outcome
    }

    async fn handle_inner(&self, topic: &str, payload: &[u8], retain: bool) -> Handled {
        let routed = match self.template.route(topic) {
            Ok(r) => r,
            Err(rejection) => {
                return self
                    .reject(None, topic, payload, rejection, BatchKind::Rows)
                    .await;
            }
        };
        let device = routed.device_id.as_str();
        // §2.5.2: the cloud's own topics come back on its subscription; retained messages on
        // sync topics are ignored (§2.1).
        if routed.suffix.is_cloud_to_device() || retain {
            return Handled::Skipped;
        }
        let kind = match routed.suffix {
            Suffix::TelemetryBatch => BatchKind::Telemetry,
            _ => BatchKind::Rows,
        };
        let message = match decode_device_message(routed.suffix, payload) {
            Ok(m) => m,
            Err(rejection) => {
                return self
                    .reject(Some(device), topic, payload, rejection, kind)
                    .await;
            }
        };
        match message {
            DeviceMessage::RowBatch(batch) => {
                let mut backoff = Backoff::new();
                let table = batch.source_table.as_str();
                loop {
                    let outcome =
                        apply_row_batch(&self.store, &self.policy, device, topic, &batch).await;
                    if let Ok(o) = &outcome {
                        self.note_lineage(device, table);
                        if let (Some(s), ApplyOutcome::Applied(_) | ApplyOutcome::Duplicate) =
                            (&batch.snapshot, o)
                            && let Ok(snapshot_id) = Uuid::parse_str(&s.id)
                        {
                            let table = table.to_string();
                            self.note(device, Note::Snapshot { table, snapshot_id });
                        }
                        if let (ApplyOutcome::Rejected { code, .. }, Ok(id)) =
                            (o, Uuid::parse_str(&batch.batch_id))
                        {
                            self.note_rejected(device, id, Some(table), code);
                        }
                    }
                    match outcome {
                        Ok(ApplyOutcome::Duplicate) => return Handled::Duplicate,
                        Ok(ApplyOutcome::Applied(report)) => {
                            self.stats.count_rows(&report);
                            tracing::debug!(
                                device_id = %device, table = %batch.source_table,
                                materialized = report.materialized,
                                staged = report.staged, failed = report.failed, "batch applied"
                            );
                            self.replay_if_due(&report).await;
                            return Handled::Applied;
                        }
                        Ok(ApplyOutcome::Rejected { .. }) => return Handled::Quarantined,
                        Err(ApplyError::InvalidId { field, value }) => {
                            let rejection = Rejection {
                                code: RejectionCode::InvalidBatchId,
                                message: format!("{field}: `{value}` is not a UUID"),
                                batch_id: None,
                            };
                            return self
                                .reject(Some(device), topic, payload, rejection, kind)
                                .await;
                        }
                        Err(ApplyError::Store(e)) => backoff.wait(&self.stats, &e).await,
                    }
                }
            }
            DeviceMessage::TelemetryBatch(batch) => {
                let mut backoff = Backoff::new();
                let table = batch.source_table.as_str();
                loop {
                    let outcome =
                        apply_telemetry_batch(&self.store, &self.policy, device, topic, &batch)
                            .await;
                    if let Ok(o) = &outcome {
                        self.note_lineage(device, table);
                        if let (ApplyOutcome::Rejected { code, .. }, Ok(id)) =
                            (o, Uuid::parse_str(&batch.batch_id))
                        {
                            self.note_rejected(device, id, Some(table), code);
                        }
                    }
                    match outcome {
                        Ok(ApplyOutcome::Duplicate) => return Handled::Duplicate,
                        Ok(ApplyOutcome::Applied(report)) => {
                            self.stats.count_rows(&report);
                            self.replay_if_due(&report).await;
                            return Handled::Applied;
                        }
                        Ok(ApplyOutcome::Rejected { .. }) => return Handled::Quarantined,
                        Err(ApplyError::InvalidId { field, value }) => {
                            let rejection = Rejection {
                                code: RejectionCode::InvalidBatchId,
                                message: format!("{field}: `{value}` is not a UUID"),
                                batch_id: None,
                            };
                            return self
                                .reject(Some(device), topic, payload, rejection, kind)
                                .await;
                        }
                        Err(ApplyError::Store(e)) => backoff.wait(&self.stats, &e).await,
                    }
                }
            }
            DeviceMessage::SchemaObservation(obs) => {
                let mut backoff = Backoff::new();
                loop {
                    match self.observe(device, &obs).await {
                        Ok(()) => return Handled::Observed,
                        Err(e) => backoff.wait(&self.stats, &e).await,
                    }
                }
            }
            DeviceMessage::ControlAck(ack) => {
                let mut backoff = Backoff::new();
                let control_id = Uuid::parse_str(&ack.control_id).unwrap_or(Uuid::nil());
                loop {
                    match self.control_ack(device, control_id).await {
                        Ok(true) => {
                            tracing::debug!(device_id = %device, control_id = %ack.control_id, "control acknowledged");
                            return Handled::ControlAck;
                        }
                        Ok(false) => {
                            tracing::debug!(device_id = %device, control_id = %ack.control_id, "ACK of an unknown control counted and ignored");
                            self.stats
                                .unknown_control_acks
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            return Handled::ControlAck;
                        }
                        Err(e) => backoff.wait(&self.stats, &e).await,
                    }
                }
            }
        }
    }

    /// Replays a lineage's staged rows right after the batch that lifted its stale
    /// `schema_review` cause committed ([`ApplyReport::replay_due`]), instead of leaving them to
    /// the next sweep (up to 5 s). A failure is left to the sweep.
    async fn replay_if_due(&self, report: &ApplyReport) {
        if !report.replay_due {
            return;
        }
        match crate::replay::replay_lineage(&self.store, &self.policy, report.lineage_id).await {
            Ok(r) => {
                tracing::debug!(lineage = %report.lineage_id, replayed = r.replayed, "staged rows replayed after approval")
            }
            Err(e) => {
                tracing::warn!(lineage = %report.lineage_id, error = %e, "replay after approval failed; the sweep retries")
            }
        }
    }

    /// Marks (device, `control_id`) acked (§14.4); `false` for an unknown control.
    async fn control_ack(&self, device: &str, control_id: Uuid) -> Result<bool, StoreError> {
        let mut tx = self.store.begin().await?;
        match tx.control_ack(device, control_id).await {
            Ok(found) => {
                tx.commit().await?;
                Ok(found)
            }
            Err(e) => {
                let _ = tx.rollback().await;
                Err(e)
            }
        }
    }

    async fn observe(
        &self,
        device: &str,
        obs: &omega_protocol::message::SchemaObservation,
    ) -> Result<(), StoreError> {
        let mut tx = self.store.begin().await?;
        let r = tx
            .observation_put(device, &obs.source_table, &obs.schema_hash, obs.observed_at)
            .await;
        match r {
            Ok(()) => tx.commit().await,
            Err(e) => {
                let _ = tx.rollback().await;
                Err(e)
            }
        }
    }

    async fn reject(
        &self,
        device: Option<&str>,
        topic: &str,
        payload: &[u8],
        rejection: Rejection,
        kind: BatchKind,
    ) -> Handled {
        tracing::info!(
            device_id = device.unwrap_or(""), topic = %topic, code = %rejection.code,
            message = %rejection.message, "message rejected"
        );
        let batch_id = rejection
            .batch_id
            .as_deref()
            .and_then(|b| Uuid::parse_str(b).ok());
        let mut batch = if batch_id.is_some() {
            rejected_fields(payload)
        } else {
            RejectedBatch::default()
        };
        if batch_id.is_some() {
            batch.kind = Some(kind);
        }
        let msg = RejectedMessage {
            device_id: device,
            topic,
            code: rejection.code.as_str(),
            message: &rejection.message,
            payload,
            batch_id,
            batch,
        };
        let mut backoff = Backoff::new();
        let outcome = loop {
            match quarantine_message(&self.store, &msg).await {
                Ok(o) => break o,
                Err(e) => backoff.wait(&self.stats, &e).await,
            }
        };
        // receipts.md §3.6, §4.4: a rejected batch of a known device moves its lineage's
        // point and is named in the next receipt.
        if let (Some(device), Some(batch_id)) = (device, batch_id) {
            let table = msg.batch.source_table.as_deref();
            if let Some(t) = table {
                self.note_lineage(device, t);
            }
            if outcome == RejectionOutcome::Quarantined {
                self.note_rejected(device, batch_id, table, msg.code);
            }
        }
        match outcome {
            RejectionOutcome::Duplicate => Handled::Duplicate,
            RejectionOutcome::Quarantined => Handled::Quarantined,
        }
    }
}

/// Best effort: the ledger fields of a rejected batch (`receipts.md` §3.6).
fn rejected_fields(payload: &[u8]) -> RejectedBatch {
    let Ok(root) = json::parse(payload) else {
        return RejectedBatch::default();
    };
    let int = |k: &str| root.get(k).and_then(Json::as_i64);
    RejectedBatch {
        kind: None,
        source_table: root
            .get("source_table")
            .and_then(Json::as_str)
            .map(str::to_string),
        journal_epoch: root
            .get("journal_epoch")
            .and_then(Json::as_str)
            .and_then(|s| Uuid::parse_str(s).ok()),
        first_commit_seq: int("first_commit_seq"),
        last_commit_seq: int("last_commit_seq"),
        prev_commit_seq: int("prev_commit_seq"),
        batch_seq: int("batch_seq"),
        row_count: root
            .get("rows")
            .and_then(Json::as_array)
            .map(|r| i64::try_from(r.len()).unwrap_or(i64::MAX))
            .unwrap_or(0),
    }
}

/// Exponential backoff for store retries: 50 ms doubling to 5 s.
struct Backoff {
    next: Duration,
    attempts: u32,
}

impl Backoff {
    fn new() -> Self {
        Backoff {
            next: Duration::from_millis(50),
            attempts: 0,
        }
    }

    async fn wait(&mut self, stats: &IngestStats, e: &StoreError) {
        self.attempts += 1;
        IngestStats::bump(&stats.store_retries);
        if e.is_transient() {
            tracing::warn!(error = %e, attempt = self.attempts, "store unavailable; retrying");
        } else {
            tracing::error!(
                error = %e, attempt = self.attempts,
                "store error; the message stays unacknowledged and is retried"
            );
        }
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejected_fields_are_read_when_the_json_parses() {
        let p = br#"{"source_table":"t","journal_epoch":"019dd31a-2800-7000-8000-000000000001",
            "prev_commit_seq":3,"last_commit_seq":9,"rows":[1,2]}"#;
        let b = rejected_fields(p);
        assert_eq!(b.source_table.as_deref(), Some("t"));
        assert_eq!(
            (b.prev_commit_seq, b.last_commit_seq, b.row_count),
            (Some(3), Some(9), 2)
        );
        assert_eq!(rejected_fields(b"not json"), RejectedBatch::default());
    }
}
