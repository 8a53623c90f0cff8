//! What an operator does with a lineage's staging (`cloud.md` §18): list it a page at a time
//! (`GET /v1/lineages/{id}/staged`) and drop the entries of rejected hashes
//! (`POST /v1/lineages/{id}/purge-staged`, **[Omega]**).

use uuid::Uuid;

use super::{StagedRow, StagedSample};
use crate::lineage::Lineage;
use crate::policy::Policy;
use crate::schema_review::ReviewStatus;
use crate::store::{LineageFilter, Store, StoreError, StoreTx};

/// One page of a lineage's staging: rows first (in (epoch, `commit_seq`) order), then
/// samples (in (`batch_seq`, event time) order), addressed by one offset over both.
#[derive(Debug, Clone, PartialEq)]
pub struct StagedPage {
    /// Staged rows on this page.
    pub rows: Vec<StagedRow>,
    /// Staged samples on this page (after the rows).
    pub samples: Vec<StagedSample>,
    /// The offset of the next page, when there is one.
    pub next: Option<usize>,
}

/// Reads `limit` staged entries of (device, table) after skipping `offset`.
pub async fn page<S: Store>(
    store: &S,
    device: &str,
    table: &str,
    offset: usize,
    limit: usize,
) -> Result<StagedPage, StoreError> {
    let mut tx = store.begin().await?;
    let out = page_in(&mut tx, device, table, offset, limit).await;
    let _ = tx.rollback().await;
    out
}

async fn page_in<T: StoreTx>(
    tx: &mut T,
    device: &str,
    table: &str,
    offset: usize,
    limit: usize,
) -> Result<StagedPage, StoreError> {
    // One more than asked tells whether a next page exists.
    let want = limit.saturating_add(1);
    let (total_rows, mut rows) = tx.staged_rows_page(device, table, offset, want).await?;
    let total_rows = usize::try_from(total_rows).unwrap_or(0);
    let mut samples = if rows.len() < want {
        let skip = offset.saturating_sub(total_rows);
        tx.staged_samples_page(device, table, skip, want - rows.len())
            .await?
    } else {
        Vec::new()
    };
    let more = rows.len() + samples.len() > limit;
    if more && samples.pop().is_none() {
        rows.pop();
    }
    Ok(StagedPage {
        rows,
        samples,
        next: more.then(|| offset.saturating_add(limit)),
    })
}

/// What a purge removed.
#[derive(Debug, Clone, PartialEq)]
pub struct Purged {
    /// The lineage after the purge (its staged counts lowered).
    pub lineage: Lineage,
    /// Staged entries (rows and samples) removed.
    pub entries: i64,
    /// Their bytes.
    pub bytes: i64,
}

/// Why a purge did nothing.
#[derive(Debug, thiserror::Error)]
pub enum PurgeError {
    /// No lineage has this id (404).
    #[error("no lineage {0}")]
    NotFound(Uuid),
    /// Nothing staged on the lineage has a rejected hash (409 `nothing_to_purge`).
    #[error("nothing_to_purge: {0}")]
    NothingToPurge(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Removes the staged rows and samples of a lineage whose hash is rejected in the lineage's
/// scope (only those of `hash`, when given), and lowers the lineage's `staged_rows` and
/// `staged_bytes` in the same transaction. Entries of pending or approved hashes stay: purge
/// never drops data an approval could still replay. A backpressure cause the lower counts no
/// longer justify goes at the next backpressure sweep (§12.2).
pub async fn purge<S: Store>(
    store: &S,
    policy: &Policy,
    lineage_id: Uuid,
    hash: Option<&str>,
) -> Result<Purged, PurgeError> {
    let mut tx = store.begin().await?;
    let out = purge_in(&mut tx, policy, lineage_id, hash).await;
    match out {
        Ok(p) => {
            tx.commit().await?;
            tracing::info!(
                lineage = %p.lineage.id, device_id = %p.lineage.device_id,
                table = %p.lineage.source_table, schema_hash = hash.unwrap_or("(any rejected)"),
                entries = p.entries, bytes = p.bytes, "staged entries of rejected hashes purged"
            );
            Ok(p)
        }
        Err(e) => {
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

async fn purge_in<T: StoreTx>(
    tx: &mut T,
    policy: &Policy,
    lineage_id: Uuid,
    hash: Option<&str>,
) -> Result<Purged, PurgeError> {
    let found = tx
        .lineages(&LineageFilter::default())
        .await?
        .into_iter()
        .find(|l| l.id == lineage_id)
        .ok_or(PurgeError::NotFound(lineage_id))?;
    // Device first, then lineage: the order apply takes them in.
    tx.device_lock(&found.device_id).await?;
    let mut lineage = tx
        .lineage_lock_id(lineage_id)
        .await?
        .ok_or(PurgeError::NotFound(lineage_id))?;
    let scope = policy.coalescing.scope_for(&lineage.device_id);
    let (entries, bytes) = tx
        .staged_purge(&scope, &lineage.device_id, &lineage.source_table, hash)
        .await?;
    if entries == 0 {
        let why = match hash {
            Some(h) => {
                let status = tx
                    .review_by_key(&scope, &lineage.source_table, h)
                    .await?
                    .map(|r| r.status);
                match status {
                    Some(ReviewStatus::Rejected) => {
                        format!("no staged entries of rejected hash {h} on this lineage")
                    }
                    Some(s) => format!(
                        "hash {h} is {}, not rejected; only rejected hashes are purged",
                        s.as_str()
                    ),
                    None => format!("hash {h} has no review in this lineage's scope"),
                }
            }
            None => "no staged entries of a rejected hash on this lineage".to_string(),
        };
        return Err(PurgeError::NothingToPurge(why));
    }
    lineage.staged_rows = lineage.staged_rows.saturating_sub(entries).max(0);
    lineage.staged_bytes = lineage.staged_bytes.saturating_sub(bytes).max(0);
    lineage.updated_at = tx.now();
    tx.lineage_save(&lineage).await?;
    Ok(Purged {
        lineage,
        entries,
        bytes,
    })
}
