//! The apply transaction of a telemetry batch (`cloud.md` §4.3, §9.2), written once for both
//! stores.
//!
//! Ledger dedupe, lineage (`kinds` gains `telemetry`), the stateful checks
//! `duplicate_batch_seq` and `stale_batch_seq` (`protocol.md` §14, §15.5), schema
//! classification (one review per table whatever the kind), then staging of the samples.
//! Telemetry tables (`edge_ts_*`, §11) are not provisioned yet, so every accepted sample is
//! staged (nothing is lost) until they are; the replay of samples hooks in there.

use omega_protocol::limits::STALE_BATCH_SEQ_WINDOW;
use omega_protocol::message::TelemetryBatch;
use omega_protocol::validate::RejectionCode;
use uuid::Uuid;

use crate::apply::{ApplyError, ApplyOutcome, ApplyReport, classify};
use crate::dedupe::{BatchKind, LedgerEntry, LedgerStatus};
use crate::lineage::PauseCause;
use crate::policy::Policy;
use crate::quarantine::QuarantineEntry;
use crate::schema_review::ReviewStatus;
use crate::staging::StagedSample;
use crate::store::{Store, StoreError, StoreTx};
use crate::wire;

/// Applies one validated telemetry batch in one transaction.
pub async fn apply_telemetry_batch<S: Store>(
    store: &S,
    policy: &Policy,
    device: &str,
    topic: &str,
    batch: &TelemetryBatch,
) -> Result<ApplyOutcome, ApplyError> {
    let batch_id = Uuid::parse_str(&batch.batch_id).map_err(|_| ApplyError::InvalidId {
        field: "batch_id",
        value: batch.batch_id.clone(),
    })?;
    let mut tx = store.begin().await?;
    match apply_in(&mut tx, policy, device, topic, batch, batch_id).await {
        Ok(o) => {
            tx.commit().await?;
            Ok(o)
        }
        Err(e) => {
            let _ = tx.rollback().await;
            Err(e.into())
        }
    }
}

async fn apply_in<T: StoreTx>(
    tx: &mut T,
    policy: &Policy,
    device: &str,
    topic: &str,
    batch: &TelemetryBatch,
    batch_id: Uuid,
) -> Result<ApplyOutcome, StoreError> {
    let now = tx.now();
    if tx.ledger_get(device, batch_id).await?.is_some() {
        tx.ledger_count_delivery(device, batch_id).await?;
        return Ok(ApplyOutcome::Duplicate);
    }
    tx.device_touch(device).await?;
    let table = batch.source_table.as_str();
    let mut lineage = tx.lineage_lock(device, table).await?;
    let mut ledger = LedgerEntry {
        device_id: device.to_string(),
        batch_id,
        kind: Some(BatchKind::Telemetry),
        source_table: Some(table.to_string()),
        status: LedgerStatus::Accepted,
        journal_epoch: None,
        first_commit_seq: None,
        last_commit_seq: None,
        prev_commit_seq: None,
        batch_seq: Some(batch.batch_seq),
        row_count: i64::try_from(batch.rows.len()).unwrap_or(i64::MAX),
        deliveries: 1,
        received_at: now,
    };
    // §14 codes 17–18, after the duplicate check.
    let refusal = if tx
        .ledger_batch_seq_taken(device, table, batch.batch_seq, batch_id)
        .await?
    {
        Some((
            RejectionCode::DuplicateBatchSeq,
            format!(
                "batch_seq {} was accepted under another batch_id",
                batch.batch_seq
            ),
        ))
    } else if lineage
        .last_batch_seq
        .is_some_and(|hi| batch.batch_seq < hi.saturating_sub(STALE_BATCH_SEQ_WINDOW))
    {
        Some((
            RejectionCode::StaleBatchSeq,
            format!(
                "batch_seq {} is more than {STALE_BATCH_SEQ_WINDOW} below the highest accepted ({})",
                batch.batch_seq,
                lineage.last_batch_seq.unwrap_or(0)
            ),
        ))
    } else {
        None
    };
    if let Some((code, message)) = refusal {
        let payload = batch.to_json_bytes();
        let entry = QuarantineEntry::new(
            Some(device),
            topic,
            code.as_str(),
            &message,
            &payload,
            Some(batch_id),
            now,
        );
        tx.quarantine_insert(&entry).await?;
        ledger.status = LedgerStatus::Rejected(code.as_str().to_string());
        tx.ledger_insert(&ledger).await?;
        return Ok(ApplyOutcome::Rejected {
            code: code.as_str(),
            message,
        });
    }

    let hash = batch.schema_hash.as_str();
    let columns = match &batch.schema_columns {
        Some(c) => {
            tx.schema_put(hash, c).await?;
            Some(c.clone())
        }
        None => tx.schema_get(hash).await?,
    };
    let newest = lineage
        .last_batch_seq
        .is_none_or(|hi| batch.batch_seq >= hi);
    lineage.kinds.telemetry = true;
    lineage.last_batch_seq = Some(
        lineage
            .last_batch_seq
            .map_or(batch.batch_seq, |hi| hi.max(batch.batch_seq)),
    );
    lineage.last_batch_at = Some(now);
    lineage.updated_at = now;
    if newest && !lineage.kinds.rows {
        lineage.schema_hash = Some(hash.to_string());
    }
    let scope = policy.coalescing.scope_for(device);
    let (class, review) = classify(tx, policy, &scope, table, hash, columns.as_ref()).await?;
    tx.schema_version_seen(lineage.id, hash, class).await?;
    let approved = review
        .as_ref()
        .is_some_and(|r| r.status == ReviewStatus::Approved);
    if !approved && newest {
        lineage.add_cause(PauseCause::SchemaReview);
    }

    let samples: Vec<StagedSample> = batch
        .rows
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let fields = wire::record_json(&s.fields);
            StagedSample {
                device_id: device.to_string(),
                source_table: table.to_string(),
                row_id: s
                    .row_id
                    .clone()
                    .unwrap_or_else(|| format!("{batch_id}:{i}")),
                event_ts: s.ts,
                size_bytes: i64::try_from(fields.len()).unwrap_or(i64::MAX),
                fields: s.fields.clone(),
                schema_hash: hash.to_string(),
                batch_id,
                batch_seq: batch.batch_seq,
                staged_at: now,
            }
        })
        .collect();
    let (n, bytes) = tx.stage_samples(&samples).await?;
    lineage.staged_rows = lineage.staged_rows.saturating_add(n);
    lineage.staged_bytes = lineage.staged_bytes.saturating_add(bytes);

    tx.ledger_insert(&ledger).await?;
    tx.lineage_save(&lineage).await?;
    Ok(ApplyOutcome::Applied(ApplyReport {
        lineage_id: lineage.id,
        class,
        materialized: 0,
        staged: usize::try_from(n).unwrap_or(usize::MAX),
        failed: 0,
        snapshot_completed: false,
        pause_needed: false,
    }))
}
