//! The apply transaction of one row batch (`cloud.md` §4.3), written once for both stores.
//!
//! Steps, all in one store transaction:
//!
//! 1. ledger lookup on (device, `batch_id`): a hit counts a delivery and ends the work;
//! 2. upsert the device and the lineage, lock the lineage;
//! 3. record `schema_columns` under its hash;
//! 4. epoch rule, watermarks and the lineage's newest hash ([`Lineage::accept_row_batch`]);
//! 5. classify the hash (§7), which may open a review or approve by policy;
//! 6. materialize (§10) when the hash is approved and the lineage has no pause cause other than
//!    `backpressure`, otherwise stage (§9);
//! 7. move `confirmed_through` along the batch chain (`receipts.md` §3);
//! 8. snapshot bookkeeping and the completion sweep (§10.7);
//! 9. insert the ledger row, save the lineage, commit.
//!
//! Backpressure (§12) and the circuit breaker (§13) hook in after step 6; controls are queued
//! from [`ApplyReport::pause_needed`] once they exist.

use omega_protocol::message::RowBatch;
use omega_protocol::schema::SchemaColumns;
use uuid::Uuid;

use crate::dedupe::{BatchKind, LedgerEntry, LedgerStatus, chain_step};
use crate::lineage::{EpochOrder, Lineage};
use crate::materialize::{self, Change};
use crate::policy::{Policy, Scope};
use crate::quarantine::{MATERIALIZATION_FAILED, QuarantineEntry};
use crate::schema_review::decide::{ReviewError, policy_decisions};
use crate::schema_review::{
    DecidedBy, Review, ReviewStatus, SchemaClass, classify_new, ops::approve_in,
};
use crate::snapshot::{SnapshotPhase, SnapshotState};
use crate::staging::{self, StageContext, StageReason, StagedRow};
use crate::store::{Store, StoreError, StoreTx};

/// Why a batch could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The store failed; nothing was committed. Retry.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The batch carries an id that is not a UUID (the validator should have refused it).
    /// Quarantine with `invalid_batch_id`.
    #[error("invalid {field}: `{value}`")]
    InvalidId {
        /// `batch_id`, `journal_epoch` or `snapshot.id`.
        field: &'static str,
        /// The value.
        value: String,
    },
}

/// What applying a batch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The batch id was already in the ledger: one more delivery counted, nothing else.
    Duplicate,
    /// Applied (materialized and/or staged) and ledgered.
    Applied(ApplyReport),
    /// Refused by a stateful check (`duplicate_batch_seq`, `stale_batch_seq`): quarantined
    /// and ledgered as rejected in the same transaction.
    Rejected {
        /// The rejection code.
        code: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// Counts of an applied batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    /// The lineage.
    pub lineage_id: Uuid,
    /// Class of the batch's hash.
    pub class: SchemaClass,
    /// Row changes that passed the fit check and were written (or were version no-ops).
    pub materialized: usize,
    /// Row changes staged (duplicates of staged keys not counted).
    pub staged: usize,
    /// Row changes refused by the fit check and quarantined.
    pub failed: usize,
    /// This batch completed a snapshot.
    pub snapshot_completed: bool,
    /// A new epoch arrived while a device-side cause holds: a fresh `pause_lineage` is due.
    pub pause_needed: bool,
    /// This batch found its hash approved while the lineage still held `schema_review` from
    /// an earlier batch (a part without `schema_columns` that arrived first) and lifted it;
    /// rows staged meanwhile can be replayed now instead of at the next sweep.
    pub replay_due: bool,
}

fn parse_id(field: &'static str, value: &str) -> Result<Uuid, ApplyError> {
    Uuid::parse_str(value).map_err(|_| ApplyError::InvalidId {
        field,
        value: value.to_string(),
    })
}

/// Applies one validated row batch from `device`, received on `topic`, in one transaction.
pub async fn apply_row_batch<S: Store>(
    store: &S,
    policy: &Policy,
    device: &str,
    topic: &str,
    batch: &RowBatch,
) -> Result<ApplyOutcome, ApplyError> {
    let ids = BatchIds {
        batch_id: parse_id("batch_id", &batch.batch_id)?,
        epoch: parse_id("journal_epoch", &batch.journal_epoch)?,
        snapshot: match &batch.snapshot {
            Some(s) => Some(parse_id("snapshot.id", &s.id)?),
            None => None,
        },
    };
    let mut tx = store.begin().await?;
    match apply_in(&mut tx, policy, device, topic, batch, &ids).await {
        Ok(outcome) => {
            tx.commit().await?;
            Ok(outcome)
        }
        Err(e) => {
            let _ = tx.rollback().await;
            Err(e.into())
        }
    }
}

/// Re-checks the ledger once the lineage is locked: a copy of the same batch that another
/// worker applied while this one waited for the lock is visible now (read committed), and is
/// counted as a delivery instead of failing on the ledger's primary key (a store error, a
/// rollback and a retry with backoff for a plain duplicate).
pub(crate) async fn counted_duplicate<T: StoreTx>(
    tx: &mut T,
    device: &str,
    batch_id: Uuid,
) -> Result<bool, StoreError> {
    if tx.ledger_get(device, batch_id).await?.is_some() {
        tx.ledger_count_delivery(device, batch_id).await?;
        return Ok(true);
    }
    Ok(false)
}

struct BatchIds {
    batch_id: Uuid,
    epoch: Uuid,
    snapshot: Option<Uuid>,
}

async fn apply_in<T: StoreTx>(
    tx: &mut T,
    policy: &Policy,
    device: &str,
    topic: &str,
    batch: &RowBatch,
    ids: &BatchIds,
) -> Result<ApplyOutcome, StoreError> {
    let now = tx.now();
    if tx.ledger_get(device, ids.batch_id).await?.is_some() {
        tx.ledger_count_delivery(device, ids.batch_id).await?;
        return Ok(ApplyOutcome::Duplicate);
    }
    tx.device_touch(device).await?;
    let table = batch.source_table.as_str();
    let hash = batch.schema_hash.as_str();
    let mut lineage = tx.lineage_lock(device, table).await?;
    if counted_duplicate(tx, device, ids.batch_id).await? {
        return Ok(ApplyOutcome::Duplicate);
    }

    let columns = match &batch.schema_columns {
        Some(c) => {
            tx.schema_put(hash, c).await?;
            Some(c.clone())
        }
        None => tx.schema_get(hash).await?,
    };

    let had_epoch = lineage.journal_epoch.is_some();
    let order = lineage.accept_row_batch(ids.epoch, batch.last_commit_seq, hash, now);
    let pause_needed = order == EpochOrder::Newer && had_epoch && lineage.has_device_side_cause();

    let scope = policy.coalescing.scope_for(device);
    let (class, review) = classify(tx, policy, &scope, table, hash, columns.as_ref()).await?;
    tx.schema_version_seen(lineage.id, hash, class).await?;
    let approved = review
        .as_ref()
        .filter(|r| r.status == ReviewStatus::Approved);
    // Under the lineage lock: a stale cause lifted here lets this batch materialize instead of
    // staging until the sweep.
    let newest = lineage.schema_hash.as_deref() == Some(hash);
    let lifted = lineage.review_cause(newest, approved.is_some());

    let mut report = ApplyReport {
        lineage_id: lineage.id,
        class,
        materialized: 0,
        staged: 0,
        failed: 0,
        snapshot_completed: false,
        pause_needed,
        replay_due: false,
    };
    match approved {
        Some(review) if lineage.may_materialize() => {
            let changes: Vec<Change<'_>> = batch
                .rows
                .iter()
                .map(|r| Change {
                    epoch: ids.epoch,
                    commit_seq: r.commit_seq,
                    op: r.op,
                    pk: &r.pk,
                    row: r.row.as_ref(),
                })
                .collect();
            let (ok, failed) =
                materialize_changes(tx, &mut lineage, review, topic, ids.batch_id, &changes)
                    .await?;
            report.materialized = ok;
            report.failed = failed;
        }
        _ => {
            let ctx = StageContext {
                device_id: device,
                source_table: table,
                journal_epoch: ids.epoch,
                schema_hash: hash,
                batch_id: ids.batch_id,
                snapshot: batch.snapshot.as_ref(),
                reason: if approved.is_some() {
                    StageReason::LineagePaused
                } else {
                    StageReason::SchemaReview
                },
                now,
            };
            let rows: Vec<StagedRow> = batch.rows.iter().map(|r| staging::stage(&ctx, r)).collect();
            let (n, bytes) = tx.stage(&rows).await?;
            lineage.staged_rows = lineage.staged_rows.saturating_add(n);
            lineage.staged_bytes = lineage.staged_bytes.saturating_add(bytes);
            report.staged = usize::try_from(n).unwrap_or(usize::MAX);
        }
    }

    if order != EpochOrder::Older
        && batch.snapshot.is_none()
        && let Some(prev) = batch.prev_commit_seq
        && let Some(moved) = chain_step(lineage.confirmed_through, prev, batch.last_commit_seq)
    {
        confirm_to(tx, &mut lineage, ids.epoch, moved).await?;
    }

    if let (Some(marker), Some(snapshot_id)) = (&batch.snapshot, ids.snapshot) {
        let mut state = match tx.snapshot_lock(device, table, snapshot_id).await? {
            Some(s) => s,
            None => SnapshotState::new(
                device,
                table,
                snapshot_id,
                ids.epoch,
                batch.last_commit_seq,
                now,
            ),
        };
        if state.phase == SnapshotPhase::InProgress {
            state.record_part(marker.part, marker.last, now);
            report.snapshot_completed = try_complete(tx, &scope, &mut state).await?;
            tx.snapshot_save(&state).await?;
        }
        if state.all_parts_in() {
            confirm_through_snapshot(tx, &mut lineage, &state).await?;
        }
    }

    tx.ledger_insert(&LedgerEntry {
        device_id: device.to_string(),
        batch_id: ids.batch_id,
        kind: Some(BatchKind::Rows),
        source_table: Some(table.to_string()),
        status: LedgerStatus::Accepted,
        journal_epoch: Some(ids.epoch),
        first_commit_seq: Some(batch.first_commit_seq),
        last_commit_seq: Some(batch.last_commit_seq),
        prev_commit_seq: batch.prev_commit_seq,
        batch_seq: None,
        row_count: i64::try_from(batch.rows.len()).unwrap_or(i64::MAX),
        deliveries: 1,
        received_at: now,
    })
    .await?;
    report.replay_due = lifted && lineage.staged_rows > 0;
    tx.lineage_save(&lineage).await?;
    Ok(ApplyOutcome::Applied(report))
}

/// §7: the class of `hash` in `scope` and its review (created here when new; approved here
/// when the policy says so).
pub(crate) async fn classify<T: StoreTx>(
    tx: &mut T,
    policy: &Policy,
    scope: &Scope,
    table: &str,
    hash: &str,
    columns: Option<&SchemaColumns>,
) -> Result<(SchemaClass, Option<Review>), StoreError> {
    if let Some(mut review) = tx.review_by_key(scope, table, hash).await? {
        if review.status == ReviewStatus::Approved {
            return Ok((SchemaClass::CompatibleMapped, Some(review)));
        }
        // §7.4: a review opened without columns learns them from the first batch carrying them.
        if review.columns.is_none()
            && let Some(cols) = columns
        {
            let latest = tx.review_latest_approved(scope, table).await?;
            let c = classify_new(Some(cols), latest.as_ref());
            review.columns = Some(cols.clone());
            review.class = c.class;
            review.compared_hash = c.compared_hash;
            review.diff = c.diff;
            review.updated_at = tx.now();
            tx.review_save(&review).await?;
            if review.status == ReviewStatus::Pending
                && try_policy_approval(tx, policy, &mut review, latest.as_ref()).await?
            {
                return Ok((SchemaClass::CompatibleMapped, Some(review)));
            }
        }
        return Ok((SchemaClass::Pending, Some(review)));
    }
    let latest = tx.review_latest_approved(scope, table).await?;
    let classified = classify_new(columns, latest.as_ref());
    let class = classified.class;
    let mut review = Review::new_pending(
        scope.clone(),
        table,
        hash,
        columns.cloned(),
        classified,
        tx.now(),
    );
    if !tx.review_insert(&review).await? {
        // Another transaction opened it first; its decision stands.
        let Some(existing) = tx.review_by_key(scope, table, hash).await? else {
            return Err(StoreError::corrupt(
                "omega_reviews",
                "review vanished after conflict",
            ));
        };
        let class = if existing.status == ReviewStatus::Approved {
            SchemaClass::CompatibleMapped
        } else {
            SchemaClass::Pending
        };
        return Ok((class, Some(existing)));
    }
    if try_policy_approval(tx, policy, &mut review, latest.as_ref()).await? {
        return Ok((SchemaClass::CompatibleMapped, Some(review)));
    }
    Ok((class, Some(review)))
}

/// §7.2 additive continue and §7.3 auto approve. A policy approval that would conflict with
/// the mirror (a type change) leaves the review pending for an operator.
async fn try_policy_approval<T: StoreTx>(
    tx: &mut T,
    policy: &Policy,
    review: &mut Review,
    latest: Option<&Review>,
) -> Result<bool, StoreError> {
    let Some(columns) = review.columns.clone() else {
        return Ok(false);
    };
    let decisions = if policy.auto_approve {
        policy_decisions(&columns, latest, false)
    } else if policy.allow_additive_continue && review.class == SchemaClass::CompatibleAdditive {
        policy_decisions(&columns, latest, true)
    } else {
        return Ok(false);
    };
    match approve_in(tx, review, decisions, DecidedBy::Policy).await {
        Ok(_) => Ok(true),
        Err(ReviewError::Store(e)) => Err(e),
        Err(e) => {
            tracing::warn!(
                review = %review.id, table = %review.source_table, hash = %review.schema_hash,
                error = %e, "policy could not approve; the review waits for an operator"
            );
            Ok(false)
        }
    }
}

/// Materializes changes of one approved hash into its mirror (§10.4–§10.5); refused changes are
/// quarantined (§5.2). Returns (passed, failed).
pub(crate) async fn materialize_changes<T: StoreTx>(
    tx: &mut T,
    lineage: &mut Lineage,
    review: &Review,
    topic: &str,
    batch_id: Uuid,
    changes: &[Change<'_>],
) -> Result<(usize, usize), StoreError> {
    let Some(name) = review.mirror_table.as_deref() else {
        return Err(StoreError::corrupt(
            "omega_reviews.mirror_table",
            "approved without a mirror",
        ));
    };
    let Some(mirror) = tx.mirror_get(name, false).await? else {
        return Err(StoreError::corrupt(
            "omega_mirrors",
            format!("mirror `{name}` missing"),
        ));
    };
    let plan = materialize::plan_writes(&mirror, &review.decisions, changes);
    if !plan.writes.is_empty() {
        tx.mirror_write(&mirror, &lineage.device_id, &plan.writes)
            .await?;
    }
    for f in &plan.failures {
        let Some(ch) = changes.get(f.index) else {
            continue;
        };
        let payload = staging::change_json(ch.commit_seq, ch.op, ch.pk, ch.row);
        let entry = QuarantineEntry::new(
            Some(&lineage.device_id),
            topic,
            MATERIALIZATION_FAILED,
            &format!("commit_seq {}: {}", ch.commit_seq, f.message),
            payload.as_bytes(),
            Some(batch_id),
            tx.now(),
        );
        tx.quarantine_insert(&entry).await?;
    }
    for passed in &plan.passed {
        lineage.count_row_result(*passed);
    }
    lineage.mirror_table = Some(mirror.name.clone());
    let ok = plan.passed.iter().filter(|p| **p).count();
    Ok((ok, plan.failures.len()))
}

/// A snapshot whose parts are all stored stands for every change of its table up to H, so
/// the lineage's confirmed point of that epoch moves to at least H (then absorbs the batches
/// already chained from there). The agent chains its next live batch from a point at or
/// below this one, and pruned what the snapshot covers.
pub(crate) async fn confirm_through_snapshot<T: StoreTx>(
    tx: &mut T,
    lineage: &mut Lineage,
    state: &SnapshotState,
) -> Result<(), StoreError> {
    if lineage.journal_epoch != Some(state.journal_epoch) || state.h <= lineage.confirmed_through {
        return Ok(());
    }
    confirm_to(tx, lineage, state.journal_epoch, state.h).await
}

/// Moves the lineage's `confirmed_through` (epoch `epoch`) to `to`, then along the batches
/// already stored that chain from there (`receipts.md` §3.2). The one place the rows point
/// moves: apply, quarantine and snapshot completion call it.
pub(crate) async fn confirm_to<T: StoreTx>(
    tx: &mut T,
    lineage: &mut Lineage,
    epoch: Uuid,
    to: i64,
) -> Result<(), StoreError> {
    lineage.confirmed_through = to;
    while let Some(next) = tx
        .ledger_chain_next(
            &lineage.device_id,
            &lineage.source_table,
            epoch,
            lineage.confirmed_through,
        )
        .await?
    {
        lineage.confirmed_through = next;
    }
    Ok(())
}

/// Completes a snapshot whose parts are all in and none staged (§10.7.2): tombstones the
/// device's rows below (epoch, H) in every mirror of the table. Returns whether it completed.
pub(crate) async fn try_complete<T: StoreTx>(
    tx: &mut T,
    scope: &Scope,
    state: &mut SnapshotState,
) -> Result<bool, StoreError> {
    if state.phase != SnapshotPhase::InProgress || !state.all_parts_in() {
        return Ok(false);
    }
    if tx
        .staged_count_snapshot(&state.device_id, &state.source_table, state.snapshot_id)
        .await?
        > 0
    {
        return Ok(false);
    }
    for mirror in tx.mirrors_of(scope, &state.source_table).await? {
        tx.mirror_tombstone_below(&mirror, &state.device_id, state.journal_epoch, state.h)
            .await?;
    }
    state.phase = SnapshotPhase::Complete;
    state.updated_at = tx.now();
    Ok(true)
}
