//! The apply transaction of a telemetry batch (`cloud.md` §4.3, §9.2), written once for both
//! stores.
//!
//! Ledger dedupe, lineage (`kinds` gains `telemetry`), the stateful checks
//! `duplicate_batch_seq` and `stale_batch_seq` (`protocol.md` §14, §15.5), schema
//! classification (one review per table whatever the kind), then the samples: inserted into
//! the telemetry table (`edge_ts_*`, §11, provisioned on first use) when the hash is approved
//! and the lineage may materialize, staged otherwise (§9.2) and replayed later
//! ([`crate::replay`]).

use omega_protocol::limits::STALE_BATCH_SEQ_WINDOW;
use omega_protocol::message::TelemetryBatch;
use omega_protocol::validate::RejectionCode;
use uuid::Uuid;

use crate::apply::{ApplyError, ApplyOutcome, ApplyReport, classify};
use crate::dedupe::{BatchKind, LedgerEntry, LedgerStatus, chain_step};
use crate::lineage::Lineage;
use crate::naming;
use crate::policy::{Policy, Scope};
use crate::quarantine::{MATERIALIZATION_FAILED, QuarantineEntry};
use crate::schema_review::{Review, ReviewStatus};
use crate::staging::StagedSample;
use crate::store::{Store, StoreError, StoreTx};
use crate::ts_table::{self, Sample};
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
    if crate::apply::counted_duplicate(tx, device, batch_id).await? {
        return Ok(ApplyOutcome::Duplicate);
    }
    let mut ledger = LedgerEntry {
        device_id: device.to_string(),
        batch_id,
        kind: Some(BatchKind::Telemetry),
        source_table: Some(table.to_string()),
        status: LedgerStatus::Accepted,
        journal_epoch: None,
        first_commit_seq: None,
        last_commit_seq: None,
        // Telemetry entries keep `prev_batch_seq` here: the chain of `receipts.md` §3.5.
        prev_commit_seq: batch.prev_batch_seq,
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
        .filter(|r| r.status == ReviewStatus::Approved);
    let lifted = lineage.review_cause(newest, approved.is_some());

    let row_ids: Vec<String> = batch
        .rows
        .iter()
        .enumerate()
        .map(|(i, s)| {
            s.row_id
                .clone()
                .unwrap_or_else(|| format!("{batch_id}:{i}"))
        })
        .collect();
    let mut report = ApplyReport {
        lineage_id: lineage.id,
        class,
        materialized: 0,
        staged: 0,
        failed: 0,
        snapshot_completed: false,
        pause_needed: false,
        replay_due: false,
    };
    match approved {
        Some(review) if lineage.may_materialize() => {
            let samples: Vec<Sample<'_>> = batch
                .rows
                .iter()
                .zip(&row_ids)
                .map(|(s, row_id)| Sample {
                    row_id,
                    event_ts: s.ts,
                    fields: &s.fields,
                    batch_id,
                })
                .collect();
            let (ok, failed) =
                materialize_samples(tx, &mut lineage, &scope, review, topic, &samples).await?;
            report.materialized = ok;
            report.failed = failed;
        }
        _ => {
            let samples: Vec<StagedSample> = batch
                .rows
                .iter()
                .zip(row_ids)
                .map(|(s, row_id)| {
                    let fields = wire::record_json(&s.fields);
                    StagedSample {
                        device_id: device.to_string(),
                        source_table: table.to_string(),
                        row_id,
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
            report.staged = usize::try_from(n).unwrap_or(usize::MAX);
        }
    }

    // receipts.md §3.5: the point moves along the `prev_batch_seq` chain, absorbing batches
    // already stored that chain from it; a batch past a gap waits in the ledger.
    // -1 marks a chained lineage whose chain has not started (its first batch is missing), so
    // that receipts never fall back to the highest accepted number for it.
    if let Some(prev) = batch.prev_batch_seq {
        match chain_step(lineage.batch_seq_through.max(0), prev, batch.batch_seq) {
            Some(moved) => {
                lineage.batch_seq_through = moved;
                while let Some(next) = tx
                    .ledger_ts_chain_next(device, table, lineage.batch_seq_through)
                    .await?
                {
                    lineage.batch_seq_through = next;
                }
            }
            None if lineage.batch_seq_through == 0 => lineage.batch_seq_through = -1,
            None => {}
        }
    }
    tx.ledger_insert(&ledger).await?;
    report.replay_due = lifted && (lineage.staged_rows > 0 || report.staged > 0);
    tx.lineage_save(&lineage).await?;
    Ok(ApplyOutcome::Applied(report))
}

/// Inserts samples of one approved hash into the telemetry table of (scope, table) (§11),
/// provisioning the table or its new columns first. Samples refused by the fit check (§10.4)
/// are quarantined; a sample already in the table (same `device_id`, `row_id`, `event_ts`) is
/// left as it is. Records the table in the lineage. Returns (passed, failed).
pub(crate) async fn materialize_samples<T: StoreTx>(
    tx: &mut T,
    lineage: &mut Lineage,
    scope: &Scope,
    review: &Review,
    topic: &str,
    samples: &[Sample<'_>],
) -> Result<(usize, usize), StoreError> {
    let Some(columns) = review.columns.as_ref() else {
        return Err(StoreError::corrupt(
            "omega_reviews.columns",
            "approved without columns",
        ));
    };
    let name = naming::ts_table(scope, &lineage.source_table);
    let want = ts_table::wanted_def(
        &name,
        scope,
        &lineage.source_table,
        columns,
        &review.decisions,
        samples,
    );
    let def = match tx.ts_get(&name).await? {
        Some(d) if ts_table::covers(&d, &want) => d,
        _ => tx.ts_provision(&want).await?,
    };
    let plan = ts_table::plan_samples(&def, &review.decisions, samples);
    if !plan.writes.is_empty() {
        tx.ts_insert(&def, &lineage.device_id, &plan.writes).await?;
    }
    let mut passed = vec![true; samples.len()];
    for f in &plan.failures {
        let Some(s) = samples.get(f.index) else {
            continue;
        };
        passed[f.index] = false;
        let entry = QuarantineEntry::new(
            Some(&lineage.device_id),
            topic,
            MATERIALIZATION_FAILED,
            &f.message,
            ts_table::sample_json(s).as_bytes(),
            Some(s.batch_id),
            tx.now(),
        );
        tx.quarantine_insert(&entry).await?;
    }
    for p in passed {
        lineage.count_row_result(p);
    }
    lineage.ts_table = Some(def.name);
    Ok((plan.writes.len(), plan.failures.len()))
}
