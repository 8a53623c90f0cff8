//! Replay of staged rows and samples (`cloud.md` §9.3): for a lineage whose causes are a
//! subset of {`backpressure`}, staged rows whose hash is approved go to the mirror in (epoch,
//! `commit_seq`) order, then staged samples whose hash is approved go to the telemetry table
//! in (`batch_seq`, event time) order; at most [`REPLAY_CHUNK`] entries per transaction, each
//! removed from staging in the transaction that materializes it. Nothing else records
//! progress, so a crash resumes where the last committed chunk ended.

use std::collections::BTreeSet;

use uuid::Uuid;

use crate::apply::{materialize_changes, try_complete};
use crate::lineage::PauseCause;
use crate::materialize::Change;
use crate::policy::{Policy, Scope};
use crate::schema_review::ReviewStatus;
use crate::staging::REPLAY_CHUNK;
use crate::store::{LineageFilter, Store, StoreError, StoreTx};
use crate::telemetry::materialize_samples;
use crate::ts_table::Sample;

/// What a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Staged rows taken out of staging.
    pub replayed: usize,
    /// Of those, refused by the fit check and quarantined.
    pub failed: usize,
    /// Transactions committed.
    pub chunks: usize,
}

impl ReplayReport {
    fn add(&mut self, other: ReplayReport) {
        self.replayed += other.replayed;
        self.failed += other.failed;
        self.chunks += other.chunks;
    }
}

/// Replays every lineage of `table` in `scope` (after an approval).
pub async fn replay_table<S: Store>(
    store: &S,
    policy: &Policy,
    scope: &Scope,
    table: &str,
) -> Result<ReplayReport, StoreError> {
    let filter = LineageFilter {
        device_id: scope.device().map(str::to_string),
        source_table: Some(table.to_string()),
        status: None,
    };
    let lineages = {
        let mut tx = store.begin().await?;
        let l = tx.lineages(&filter).await;
        let _ = tx.rollback().await;
        l?
    };
    let mut report = ReplayReport::default();
    for l in lineages.iter().filter(|l| l.staged_rows > 0) {
        report.add(replay_lineage(store, policy, l.id).await?);
    }
    Ok(report)
}

/// The replay sweep: first lifts `schema_review` from lineages whose latest hash is approved
/// (an apply that raced an approval may have added it after the approval looked), then
/// replays every lineage with staged rows that may materialize.
pub async fn replay_sweep<S: Store>(
    store: &S,
    policy: &Policy,
) -> Result<ReplayReport, StoreError> {
    for l in all_lineages(store).await? {
        if !l.pause_causes.contains(&PauseCause::SchemaReview) {
            continue;
        }
        let mut tx = store.begin().await?;
        match reconcile_review_cause(&mut tx, policy, l.id).await {
            Ok(()) => tx.commit().await?,
            Err(e) => {
                let _ = tx.rollback().await;
                return Err(e);
            }
        }
    }
    let mut report = ReplayReport::default();
    for l in all_lineages(store).await? {
        if l.staged_rows > 0 && l.may_materialize() {
            report.add(replay_lineage(store, policy, l.id).await?);
        }
    }
    Ok(report)
}

async fn all_lineages<S: Store>(store: &S) -> Result<Vec<crate::lineage::Lineage>, StoreError> {
    let mut tx = store.begin().await?;
    let l = tx.lineages(&LineageFilter::default()).await;
    let _ = tx.rollback().await;
    l
}

async fn reconcile_review_cause<T: StoreTx>(
    tx: &mut T,
    policy: &Policy,
    lineage_id: Uuid,
) -> Result<(), StoreError> {
    let Some(mut lineage) = tx.lineage_lock_id(lineage_id).await? else {
        return Ok(());
    };
    let Some(hash) = lineage.schema_hash.clone() else {
        return Ok(());
    };
    let scope = policy.coalescing.scope_for(&lineage.device_id);
    let approved = tx
        .review_by_key(&scope, &lineage.source_table, &hash)
        .await?
        .is_some_and(|r| r.status == ReviewStatus::Approved);
    if approved && lineage.remove_cause(PauseCause::SchemaReview) {
        lineage.updated_at = tx.now();
        tx.lineage_save(&lineage).await?;
    }
    Ok(())
}

/// Replays one lineage until nothing replayable is left.
pub async fn replay_lineage<S: Store>(
    store: &S,
    policy: &Policy,
    lineage_id: Uuid,
) -> Result<ReplayReport, StoreError> {
    let mut report = ReplayReport::default();
    loop {
        let mut tx = store.begin().await?;
        match replay_chunk(&mut tx, policy, lineage_id).await {
            Ok(Some(chunk)) => {
                tx.commit().await?;
                report.add(chunk);
            }
            Ok(None) => {
                let _ = tx.rollback().await;
                return Ok(report);
            }
            Err(e) => {
                let _ = tx.rollback().await;
                return Err(e);
            }
        }
    }
}

async fn replay_chunk<T: StoreTx>(
    tx: &mut T,
    policy: &Policy,
    lineage_id: Uuid,
) -> Result<Option<ReplayReport>, StoreError> {
    let Some(mut lineage) = tx.lineage_lock_id(lineage_id).await? else {
        return Ok(None);
    };
    if !lineage.may_materialize() {
        return Ok(None);
    }
    let scope = policy.coalescing.scope_for(&lineage.device_id);
    let rows = tx
        .staged_replayable(
            &scope,
            &lineage.device_id,
            &lineage.source_table,
            REPLAY_CHUNK,
        )
        .await?;
    if rows.is_empty() {
        return replay_samples_chunk(tx, &mut lineage, &scope).await;
    }
    let mut report = ReplayReport {
        replayed: rows.len(),
        failed: 0,
        chunks: 1,
    };
    let hashes: BTreeSet<&str> = rows.iter().map(|r| r.schema_hash.as_str()).collect();
    for hash in hashes {
        let Some(review) = tx
            .review_by_key(&scope, &lineage.source_table, hash)
            .await?
        else {
            continue;
        };
        if review.status != ReviewStatus::Approved {
            continue;
        }
        // Changes of one batch share a batch id; quarantine entries name the first.
        let of_hash: Vec<_> = rows.iter().filter(|r| r.schema_hash == hash).collect();
        let changes: Vec<Change<'_>> = of_hash
            .iter()
            .map(|r| Change {
                epoch: r.journal_epoch,
                commit_seq: r.commit_seq,
                op: r.op,
                pk: &r.pk,
                row: r.row.as_ref(),
            })
            .collect();
        let batch_id = of_hash.first().map(|r| r.batch_id).unwrap_or_default();
        let topic = format!("replay/{}/{}", lineage.device_id, lineage.source_table);
        let (_, failed) =
            materialize_changes(tx, &mut lineage, &review, &topic, batch_id, &changes).await?;
        report.failed += failed;
    }
    tx.staged_remove(&rows).await?;
    let bytes: i64 = rows.iter().map(|r| r.size_bytes).sum();
    let n = i64::try_from(rows.len()).unwrap_or(i64::MAX);
    lineage.staged_rows = lineage.staged_rows.saturating_sub(n).max(0);
    lineage.staged_bytes = lineage.staged_bytes.saturating_sub(bytes).max(0);
    lineage.updated_at = tx.now();
    let snapshots: BTreeSet<Uuid> = rows
        .iter()
        .filter(|r| r.snapshot.is_some())
        .filter_map(snapshot_id)
        .collect();
    for id in snapshots {
        if let Some(mut state) = tx
            .snapshot_lock(&lineage.device_id, &lineage.source_table, id)
            .await?
            && try_complete(tx, &scope, &mut state).await?
        {
            tx.snapshot_save(&state).await?;
        }
    }
    tx.lineage_save(&lineage).await?;
    Ok(Some(report))
}

/// One chunk of staged samples whose hash is approved (the lineage is locked and may
/// materialize): inserted into the telemetry table and removed from staging.
async fn replay_samples_chunk<T: StoreTx>(
    tx: &mut T,
    lineage: &mut crate::lineage::Lineage,
    scope: &Scope,
) -> Result<Option<ReplayReport>, StoreError> {
    let staged = tx
        .staged_samples_replayable(
            scope,
            &lineage.device_id,
            &lineage.source_table,
            REPLAY_CHUNK,
        )
        .await?;
    if staged.is_empty() {
        return Ok(None);
    }
    let mut report = ReplayReport {
        replayed: staged.len(),
        failed: 0,
        chunks: 1,
    };
    let topic = format!("replay/{}/{}", lineage.device_id, lineage.source_table);
    let hashes: BTreeSet<&str> = staged.iter().map(|s| s.schema_hash.as_str()).collect();
    for hash in hashes {
        let Some(review) = tx
            .review_by_key(scope, &lineage.source_table, hash)
            .await?
            .filter(|r| r.status == ReviewStatus::Approved)
        else {
            continue;
        };
        let samples: Vec<Sample<'_>> = staged
            .iter()
            .filter(|s| s.schema_hash == hash)
            .map(|s| Sample {
                row_id: &s.row_id,
                event_ts: s.event_ts,
                fields: &s.fields,
                batch_id: s.batch_id,
            })
            .collect();
        let (_, failed) =
            materialize_samples(tx, lineage, scope, &review, &topic, &samples).await?;
        report.failed += failed;
    }
    tx.staged_samples_remove(&staged).await?;
    let bytes: i64 = staged.iter().map(|s| s.size_bytes).sum();
    let n = i64::try_from(staged.len()).unwrap_or(i64::MAX);
    lineage.staged_rows = lineage.staged_rows.saturating_sub(n).max(0);
    lineage.staged_bytes = lineage.staged_bytes.saturating_sub(bytes).max(0);
    lineage.updated_at = tx.now();
    tx.lineage_save(lineage).await?;
    Ok(Some(report))
}

fn snapshot_id(r: &crate::staging::StagedRow) -> Option<Uuid> {
    r.snapshot
        .as_ref()
        .and_then(|s| Uuid::parse_str(&s.id).ok())
}
