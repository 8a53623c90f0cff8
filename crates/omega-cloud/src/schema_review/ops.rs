//! Review operations (`cloud.md` §8): list, show, approve, reject. Each is one store
//! transaction; approval is followed by the replay of staged rows (§9.3).

use uuid::Uuid;

use super::decide::{ApproveRequest, ReviewError, check_approvable, decisions_from_request};
use super::{ColumnDecision, DecidedBy, Review, ReviewStatus};
use crate::lineage::PauseCause;
use crate::materialize::{self, MirrorDef};
use crate::naming;
use crate::policy::Policy;
use crate::replay::{self, ReplayReport};
use crate::staging::StagedRow;
use crate::store::{LineageFilter, Store, StoreError, StoreTx};

/// Most sample staged rows shown with a review (§8.1).
pub const REVIEW_SAMPLES: usize = 5;

/// A review with what §8.1 derives from other tables.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewDetail {
    /// The record.
    pub review: Review,
    /// Devices whose lineage has sent this hash.
    pub devices: Vec<String>,
    /// Staged rows of this hash in scope.
    pub staged_rows: i64,
    /// Up to 5 of them, oldest first.
    pub samples: Vec<StagedRow>,
}

/// Lists reviews, oldest first, optionally of one status.
pub async fn list<S: Store>(
    store: &S,
    status: Option<ReviewStatus>,
) -> Result<Vec<Review>, StoreError> {
    let mut tx = store.begin().await?;
    let out = tx.reviews(status).await;
    let _ = tx.rollback().await;
    out
}

/// One review with devices, staged count and samples.
pub async fn show<S: Store>(store: &S, id: Uuid) -> Result<ReviewDetail, ReviewError> {
    let mut tx = store.begin().await?;
    let result = show_in(&mut tx, id).await;
    let _ = tx.rollback().await;
    result
}

async fn show_in<T: StoreTx>(tx: &mut T, id: Uuid) -> Result<ReviewDetail, ReviewError> {
    let review = tx
        .review_get(id, false)
        .await?
        .ok_or(ReviewError::NotFound(id.to_string()))?;
    let mut devices = tx
        .schema_devices(&review.source_table, &review.schema_hash)
        .await?;
    if let Some(d) = review.scope.device() {
        devices.retain(|x| x == d);
    }
    let (staged_rows, samples) = tx
        .staged_of_hash(
            &review.source_table,
            &review.schema_hash,
            review.scope.device(),
            REVIEW_SAMPLES,
        )
        .await?;
    Ok(ReviewDetail {
        review,
        devices,
        staged_rows,
        samples,
    })
}

/// Approves a review (§8.2): validates the column actions, stores the bindings, creates or
/// extends the mirror, lifts `schema_review` from the lineages whose latest hash this is, all
/// in one transaction; then replays their staged rows.
pub async fn approve<S: Store>(
    store: &S,
    policy: &Policy,
    id: Uuid,
    req: &ApproveRequest,
) -> Result<(Review, ReplayReport), ReviewError> {
    let mut tx = store.begin().await?;
    let review = match approve_tx(&mut tx, id, req).await {
        Ok(r) => {
            tx.commit().await?;
            r
        }
        Err(e) => {
            let _ = tx.rollback().await;
            return Err(e);
        }
    };
    let replayed = replay::replay_table(store, policy, &review.scope, &review.source_table).await?;
    Ok((review, replayed))
}

async fn approve_tx<T: StoreTx>(
    tx: &mut T,
    id: Uuid,
    req: &ApproveRequest,
) -> Result<Review, ReviewError> {
    let mut review = tx
        .review_get(id, true)
        .await?
        .ok_or(ReviewError::NotFound(id.to_string()))?;
    let columns = check_approvable(&review)?;
    let decisions = decisions_from_request(columns, req)?;
    // Lock order: lineages (by id) before the mirror DDL, as the apply path does.
    let filter = LineageFilter {
        device_id: review.scope.device().map(str::to_string),
        source_table: Some(review.source_table.clone()),
        status: None,
    };
    let mut lineages = Vec::new();
    for l in tx.lineages(&filter).await? {
        if let Some(locked) = tx.lineage_lock_id(l.id).await? {
            lineages.push(locked);
        }
    }
    let mirror = approve_in(tx, &mut review, decisions, DecidedBy::Api).await?;
    for mut l in lineages {
        if l.schema_hash.as_deref() == Some(review.schema_hash.as_str()) {
            l.remove_cause(PauseCause::SchemaReview);
            l.mirror_table = Some(mirror.name.clone());
            l.updated_at = tx.now();
            tx.lineage_save(&l).await?;
        }
    }
    Ok(review)
}

/// The effects of an approval shared by operators and the policy: mirror created or extended,
/// review approved with its decisions (and bindings). Returns the mirror.
pub(crate) async fn approve_in<T: StoreTx>(
    tx: &mut T,
    review: &mut Review,
    decisions: Vec<ColumnDecision>,
    by: DecidedBy,
) -> Result<MirrorDef, ReviewError> {
    let columns = review.columns.clone().ok_or(ReviewError::ColumnsUnknown)?;
    let base_name = naming::mirror_table(&review.scope, &review.source_table);
    let keyed_name = naming::keyed_mirror_table(&base_name, &review.schema_hash);
    let base = tx.mirror_get(&base_name, true).await?;
    let keyed = tx.mirror_get(&keyed_name, true).await?;
    let plan = materialize::plan_mirror(
        &review.scope,
        &review.source_table,
        &review.schema_hash,
        &columns,
        &decisions,
        |name| {
            if name == base_name {
                base.clone()
            } else if name == keyed_name {
                keyed.clone()
            } else {
                None
            }
        },
    )?;
    if plan.create || !plan.add.is_empty() {
        tx.mirror_apply(&plan).await?;
    }
    let now = tx.now();
    review.status = ReviewStatus::Approved;
    review.decisions = decisions;
    review.decided_by = Some(by);
    review.decided_at = Some(now);
    review.updated_at = now;
    review.mirror_table = Some(plan.def.name.clone());
    tx.review_save(review).await?;
    Ok(plan.def)
}

/// Rejects a pending review (§8.3). Lineages stay paused; staged rows are kept.
pub async fn reject<S: Store>(
    store: &S,
    id: Uuid,
    reason: Option<&str>,
) -> Result<Review, ReviewError> {
    let mut tx = store.begin().await?;
    let result = reject_in(&mut tx, id, reason).await;
    match result {
        Ok(r) => {
            tx.commit().await?;
            Ok(r)
        }
        Err(e) => {
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

async fn reject_in<T: StoreTx>(
    tx: &mut T,
    id: Uuid,
    reason: Option<&str>,
) -> Result<Review, ReviewError> {
    let mut review = tx
        .review_get(id, true)
        .await?
        .ok_or(ReviewError::NotFound(id.to_string()))?;
    if review.status != ReviewStatus::Pending {
        return Err(ReviewError::NotPending(review.status.as_str()));
    }
    let now = tx.now();
    review.status = ReviewStatus::Rejected;
    review.reason = reason.map(str::to_string);
    review.decided_by = Some(DecidedBy::Api);
    review.decided_at = Some(now);
    review.updated_at = now;
    tx.review_save(&review).await?;
    Ok(review)
}
