//! Delivery receipts (`receipts.md` §3–§4): after a message's store commit, the cloud tells
//! the device, in a signed receipt on `{root}/sync/ingest/receipt`, how far each touched
//! lineage is durably stored, which snapshots have every part stored, and which batches it
//! rejected.
//!
//! # Design
//!
//! - **The point lives in the store.** `confirmed_through` is moved by the apply transaction
//!   ([`crate::apply`], [`crate::quarantine`]); the receipt reads it when it is sent. Any
//!   `serve` process may send any device's receipt: values only move forward and the device
//!   keeps the greatest it verified, so two processes naming the same lineage are harmless.
//! - **Memory holds only the "not yet sent" set.** Workers send a [`Note`] per committed
//!   message to one sender task, whose [`Coalescer`] (an I/O-free state machine) merges them
//!   per device and paces them to at most one receipt per device per `receipts.interval`.
//!   Every batch message names its lineage, even a duplicate delivery or one that moved
//!   nothing: a device re-sends when it missed a receipt, and must then hear the point again.
//!   A crash loses only pending notes; the device's `receipt_timeout` re-send brings them
//!   back (its duplicates are ledger hits that note the lineage again).
//! - **Signed like controls**, bound to the device id, split below 512 KiB ([`build`]).
//! - Published at QoS 1, not retained, on the ingest connection. A publish that cannot be
//!   queued is retried one interval later.

pub mod build;
pub mod coalesce;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::ingest::link::LinkClient;
use omega_protocol::message::SnapshotComplete;
use omega_protocol::signing::ControlKey;
use omega_protocol::topic::{DeviceTopicTemplate, Suffix, full_topic};
use tokio::sync::{mpsc, oneshot};

pub use self::build::{MAX_RECEIPT_BYTES, ReceiptContent, lineage_entries, signed_payloads};
pub use self::coalesce::{Coalescer, Note, Pending};
use crate::ingest::IngestStats;
use crate::snapshot::SnapshotPhase;
use crate::store::{LineageFilter, Store, StoreError, StoreTx};

/// What the receipt sender needs (`receipts.interval`, the control-signing key).
#[derive(Debug, Clone)]
pub struct ReceiptOptions {
    /// The key that signs receipts: the control key (`control.signing_key_path`).
    pub key: Arc<ControlKey>,
    /// At most one receipt per device per this interval (default 1 s).
    pub interval: Duration,
}

impl ReceiptOptions {
    /// Options with `key` and `interval`.
    pub fn new(key: ControlKey, interval: Duration) -> Self {
        ReceiptOptions {
            key: Arc::new(key),
            interval,
        }
    }
}

/// A note with its device, as workers send it.
pub(crate) type DeviceNote = (String, Note);

/// The sender task: collects notes, and publishes each device's receipt when due. On
/// `flush` (shutdown) or when every worker is gone, it sends everything pending at once and
/// returns.
pub(crate) async fn run_sender<S: Store>(
    store: S,
    client: LinkClient,
    template: DeviceTopicTemplate,
    opts: ReceiptOptions,
    mut notes: mpsc::UnboundedReceiver<DeviceNote>,
    mut flush: oneshot::Receiver<()>,
    stats: Arc<IngestStats>,
) {
    let sender = Sender {
        store,
        client,
        template,
        opts,
        stats,
    };
    let mut coalescer = Coalescer::new(sender.opts.interval);
    loop {
        let due = coalescer.next_due();
        tokio::select! {
            biased;
            _ = &mut flush => break,
            note = notes.recv() => match note {
                Some((device, note)) => coalescer.note(&device, note, Instant::now()),
                None => break,
            },
            () = sleep_until(due), if due.is_some() => {
                let now = Instant::now();
                for (device, pending) in coalescer.take_due(now) {
                    if let Err(pending) = sender.send(&device, pending).await {
                        coalescer.retry(&device, pending, now);
                    }
                }
                coalescer.forget_idle(now);
            }
        }
    }
    // Shutdown: whatever is pending goes now, interval or not.
    while let Ok((device, note)) = notes.try_recv() {
        coalescer.note(&device, note, Instant::now());
    }
    for (device, pending) in coalescer.take_all() {
        let _ = sender.send(&device, pending).await;
    }
}

async fn sleep_until(due: Option<Instant>) {
    if let Some(t) = due {
        tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await;
    }
}

struct Sender<S> {
    store: S,
    client: LinkClient,
    template: DeviceTopicTemplate,
    opts: ReceiptOptions,
    stats: Arc<IngestStats>,
}

impl<S: Store> Sender<S> {
    /// Reads the points of `device` and publishes its receipt(s). On failure the work is
    /// given back.
    async fn send(&self, device: &str, pending: Pending) -> Result<(), Pending> {
        let Some(root) = self.template.root_for(device) else {
            tracing::warn!(device_id = %device, "no root topic for this device id: receipt dropped");
            return Ok(());
        };
        let content = match self.read(device, &pending).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(device_id = %device, error = %e, "cannot read points for a receipt; retrying next interval");
                self.stats.receipt_failures.fetch_add(1, Ordering::Relaxed);
                return Err(pending);
            }
        };
        let topic = full_topic(&root, Suffix::IngestReceipt);
        let issued_at = crate::store::codec::now();
        let payloads = signed_payloads(
            content,
            &self.opts.key,
            device,
            issued_at,
            MAX_RECEIPT_BYTES,
        );
        for payload in payloads {
            if let Err(e) = self.client.publish(topic.clone(), payload).await {
                tracing::warn!(device_id = %device, error = %e, "cannot publish a receipt; retrying next interval");
                self.stats.receipt_failures.fetch_add(1, Ordering::Relaxed);
                return Err(pending);
            }
            self.stats.receipts.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// The receipt's content from the store: the touched lineages' points, the noted
    /// snapshots that have every part stored, and the rejections.
    async fn read(&self, device: &str, pending: &Pending) -> Result<ReceiptContent, StoreError> {
        let mut tx = self.store.begin().await?;
        let result = async {
            let lineages = if pending.tables.is_empty() {
                Vec::new()
            } else {
                let filter = LineageFilter {
                    device_id: Some(device.to_string()),
                    source_table: None,
                    status: None,
                };
                tx.lineages(&filter).await?
            };
            let mut snapshots_complete = Vec::new();
            for (table, id) in &pending.snapshots {
                if let Some(s) = tx.snapshot_lock(device, table, *id).await?
                    && (s.all_parts_in() || s.phase == SnapshotPhase::Complete)
                {
                    snapshots_complete.push(SnapshotComplete {
                        source_table: table.clone(),
                        snapshot_id: id.to_string(),
                    });
                }
            }
            Ok::<_, StoreError>(ReceiptContent {
                lineages: lineage_entries(&lineages, &pending.tables),
                snapshots_complete,
                rejected: pending.rejected.clone(),
            })
        }
        .await;
        let _ = tx.rollback().await;
        result
    }
}
