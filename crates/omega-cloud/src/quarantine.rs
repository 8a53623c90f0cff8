//! Quarantine (`cloud.md` §5): rejected messages and refused row changes, kept for operators.

use time::OffsetDateTime;
use uuid::Uuid;

use crate::dedupe::{BatchKind, LedgerEntry, LedgerStatus, chain_step};
use crate::store::{LineageFilter, Store, StoreResult, StoreTx};

/// Bytes of a rejected payload the cloud keeps (`protocol.md` §13).
pub const PAYLOAD_PREFIX_BYTES: usize = omega_protocol::limits::QUARANTINE_PREFIX_BYTES;

/// Code of a row change refused by the fit check (§5.2).
pub const MATERIALIZATION_FAILED: &str = "materialization_failed";

/// One quarantine entry (§5.1).
#[derive(Debug, Clone, PartialEq)]
pub struct QuarantineEntry {
    /// UUIDv7.
    pub id: Uuid,
    /// Device, when the topic yielded one.
    pub device_id: Option<String>,
    /// Topic it arrived on.
    pub topic: String,
    /// Rejection code (`protocol.md` §14) or `materialization_failed`.
    pub code: String,
    /// Names the field, row, column or value at fault.
    pub message: String,
    /// At most the first 64 KiB of the payload (or the row change, §5.2).
    pub payload_prefix: Vec<u8>,
    /// Size of the whole payload.
    pub payload_bytes: i64,
    /// The batch id, when it could be read.
    pub batch_id: Option<Uuid>,
    /// When it arrived.
    pub received_at: OffsetDateTime,
}

impl QuarantineEntry {
    /// An entry for `payload`, keeping its first 64 KiB.
    pub fn new(
        device_id: Option<&str>,
        topic: &str,
        code: &str,
        message: &str,
        payload: &[u8],
        batch_id: Option<Uuid>,
        received_at: OffsetDateTime,
    ) -> Self {
        QuarantineEntry {
            id: Uuid::now_v7(),
            device_id: device_id.map(str::to_string),
            topic: topic.to_string(),
            code: code.to_string(),
            message: message.to_string(),
            payload_prefix: payload[..payload.len().min(PAYLOAD_PREFIX_BYTES)].to_vec(),
            payload_bytes: i64::try_from(payload.len()).unwrap_or(i64::MAX),
            batch_id,
            received_at,
        }
    }

    /// The payload prefix as text, invalid UTF-8 replaced (how the API shows it).
    pub fn payload_text(&self) -> String {
        String::from_utf8_lossy(&self.payload_prefix).into_owned()
    }
}

/// Filter for listing quarantine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuarantineFilter {
    /// Only this device.
    pub device_id: Option<String>,
    /// Only this code.
    pub code: Option<String>,
    /// At most this many, newest first.
    pub limit: Option<i64>,
}

/// What could still be read from a rejected batch, for its ledger row and the confirmed point
/// (`receipts.md` §3.6). Every field is best effort.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RejectedBatch {
    /// Rows or telemetry, from the topic.
    pub kind: Option<BatchKind>,
    /// `source_table`.
    pub source_table: Option<String>,
    /// `journal_epoch`.
    pub journal_epoch: Option<Uuid>,
    /// `first_commit_seq`.
    pub first_commit_seq: Option<i64>,
    /// `last_commit_seq`.
    pub last_commit_seq: Option<i64>,
    /// `prev_commit_seq`.
    pub prev_commit_seq: Option<i64>,
    /// `batch_seq`.
    pub batch_seq: Option<i64>,
    /// Number of rows, when `rows` was an array.
    pub row_count: i64,
}

/// A message refused by validation (`protocol.md` §14).
#[derive(Debug, Clone)]
pub struct RejectedMessage<'a> {
    /// Device from the topic, if any.
    pub device_id: Option<&'a str>,
    /// Topic.
    pub topic: &'a str,
    /// Rejection code.
    pub code: &'a str,
    /// Message naming the field or row at fault.
    pub message: &'a str,
    /// The whole payload (only its prefix is kept).
    pub payload: &'a [u8],
    /// `batch_id`, when it could be read.
    pub batch_id: Option<Uuid>,
    /// Further fields, when they could be read.
    pub batch: RejectedBatch,
}

/// What recording a rejection did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionOutcome {
    /// The batch id was already in the ledger: one more delivery counted, nothing else.
    Duplicate,
    /// Quarantined (and ledgered as rejected when the batch id was readable).
    Quarantined,
}

/// Records a rejected message (§4.2, §5.1) in one transaction: a ledgered `batch_id` counts a
/// delivery; otherwise quarantine, plus a rejected ledger row when the batch id is known, which
/// also moves the lineage's confirmed point when the batch continues its chain.
pub async fn quarantine_message<S: Store>(
    store: &S,
    msg: &RejectedMessage<'_>,
) -> StoreResult<RejectionOutcome> {
    let mut tx = store.begin().await?;
    match quarantine_in(&mut tx, msg).await {
        Ok(o) => {
            tx.commit().await?;
            Ok(o)
        }
        Err(e) => {
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

async fn quarantine_in<T: StoreTx>(
    tx: &mut T,
    msg: &RejectedMessage<'_>,
) -> StoreResult<RejectionOutcome> {
    let now = tx.now();
    let ledger_key = msg.device_id.zip(msg.batch_id);
    if let Some((device, batch_id)) = ledger_key
        && tx.ledger_get(device, batch_id).await?.is_some()
    {
        tx.ledger_count_delivery(device, batch_id).await?;
        return Ok(RejectionOutcome::Duplicate);
    }
    let entry = QuarantineEntry::new(
        msg.device_id,
        msg.topic,
        msg.code,
        msg.message,
        msg.payload,
        msg.batch_id,
        now,
    );
    tx.quarantine_insert(&entry).await?;
    let Some((device, batch_id)) = ledger_key else {
        return Ok(RejectionOutcome::Quarantined);
    };
    let b = &msg.batch;
    tx.ledger_insert(&LedgerEntry {
        device_id: device.to_string(),
        batch_id,
        kind: b.kind,
        source_table: b.source_table.clone(),
        status: LedgerStatus::Rejected(msg.code.to_string()),
        journal_epoch: b.journal_epoch,
        first_commit_seq: b.first_commit_seq,
        last_commit_seq: b.last_commit_seq,
        prev_commit_seq: b.prev_commit_seq,
        batch_seq: b.batch_seq,
        row_count: b.row_count,
        deliveries: 1,
        received_at: now,
    })
    .await?;
    // receipts.md §3.6: a rejected batch still moves the confirmed point.
    if let (Some(table), Some(epoch), Some(prev), Some(last)) = (
        &b.source_table,
        b.journal_epoch,
        b.prev_commit_seq,
        b.last_commit_seq,
    ) {
        let filter = LineageFilter {
            device_id: Some(device.to_string()),
            source_table: Some(table.clone()),
            status: None,
        };
        let found = tx.lineages(&filter).await?;
        if let Some(l) = found.first()
            && let Some(mut lineage) = tx.lineage_lock_id(l.id).await?
            && lineage.journal_epoch == Some(epoch)
            && let Some(moved) = chain_step(lineage.confirmed_through, prev, last)
        {
            crate::apply::confirm_to(tx, &mut lineage, epoch, moved).await?;
            lineage.updated_at = now;
            tx.lineage_save(&lineage).await?;
        }
    }
    Ok(RejectionOutcome::Quarantined)
}

/// Lists quarantine entries, newest first.
pub async fn list<S: Store>(
    store: &S,
    filter: &QuarantineFilter,
) -> StoreResult<Vec<QuarantineEntry>> {
    let mut tx = store.begin().await?;
    let out = tx.quarantine(filter).await;
    let _ = tx.rollback().await;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_row_failure_code_is_the_protocols() {
        use omega_protocol::validate::RejectionCode;
        assert_eq!(
            MATERIALIZATION_FAILED,
            RejectionCode::MaterializationFailed.as_str()
        );
    }

    #[test]
    fn only_the_first_64_kib_is_kept_but_the_size_is_whole() {
        let payload = vec![b'x'; PAYLOAD_PREFIX_BYTES + 10];
        let q = QuarantineEntry::new(
            None,
            "t",
            "c",
            "m",
            &payload,
            None,
            OffsetDateTime::UNIX_EPOCH,
        );
        assert_eq!(q.payload_prefix.len(), PAYLOAD_PREFIX_BYTES);
        assert_eq!(q.payload_bytes, (PAYLOAD_PREFIX_BYTES + 10) as i64);
    }
}
