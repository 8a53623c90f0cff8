//! Store reads of lineages and of the mirror rows a lineage wrote (`cloud.md` §18: the CLI
//! and the API show the same records). Each call is one short transaction that is rolled
//! back: nothing here writes.

use omega_protocol::schema::Affinity;

use super::Lineage;
use crate::materialize::MirrorDef;
use crate::schema_review::ColumnAction;
use crate::store::{LineageFilter, MirrorRow, Store, StoreError, StoreResult, StoreTx};

/// Lists lineages, ordered by (device, table).
pub async fn list<S: Store>(store: &S, filter: &LineageFilter) -> StoreResult<Vec<Lineage>> {
    let mut tx = store.begin().await?;
    let out = tx.lineages(filter).await;
    let _ = tx.rollback().await;
    out
}

/// The lineage of (device, table), if the cloud has seen it.
pub async fn find<S: Store>(store: &S, device: &str, table: &str) -> StoreResult<Option<Lineage>> {
    let filter = LineageFilter {
        device_id: Some(device.to_string()),
        source_table: Some(table.to_string()),
        status: None,
    };
    Ok(list(store, &filter).await?.into_iter().next())
}

/// What [`rows`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RowsQuery {
    /// Also tombstones (§10.6).
    pub include_deleted: bool,
    /// At most this many rows, in (key) order.
    pub limit: Option<usize>,
}

/// One column of a mirror as shown with its rows: `{"name", "source", "type"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnView {
    /// The mirror column.
    pub name: String,
    /// The source column bound to it by the lineage's current hash, if any.
    pub source: Option<String>,
    /// Its affinity.
    pub affinity: Affinity,
    /// Whether it is a key column (after `device_id`).
    pub key: bool,
}

/// A lineage's mirror rows (`GET /v1/lineages/{id}/rows`).
#[derive(Debug, Clone, PartialEq)]
pub struct LineageRows {
    /// The lineage.
    pub lineage: Lineage,
    /// Its mirror.
    pub mirror: MirrorDef,
    /// Key columns, then the other columns, in [`MirrorRow`] order.
    pub columns: Vec<ColumnView>,
    /// This device's rows, ordered by key.
    pub rows: Vec<MirrorRow>,
}

/// Why [`rows`] has nothing to show.
#[derive(Debug, thiserror::Error)]
pub enum RowsError {
    /// The cloud has no lineage for (device, table).
    #[error("no lineage for device `{device}` and table `{table}`")]
    NoLineage {
        /// Device asked for.
        device: String,
        /// Table asked for.
        table: String,
    },
    /// The lineage has no mirror yet (its schema awaits a review, or it carries telemetry
    /// only). API code `no_mirror`.
    #[error(
        "lineage of device `{device}` and table `{table}` has no mirror yet (status {status}; \
         a schema review may be pending: `omega cloud reviews`)"
    )]
    NoMirror {
        /// Device.
        device: String,
        /// Table.
        table: String,
        /// The lineage's status.
        status: &'static str,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The mirror rows of (device, table), with the mirror's columns and the source column bound
/// to each by the lineage's current hash.
pub async fn rows<S: Store>(
    store: &S,
    device: &str,
    table: &str,
    query: RowsQuery,
) -> Result<LineageRows, RowsError> {
    let mut tx = store.begin().await?;
    let out = rows_in(&mut tx, device, table, query).await;
    let _ = tx.rollback().await;
    out
}

async fn rows_in<T: StoreTx>(
    tx: &mut T,
    device: &str,
    table: &str,
    query: RowsQuery,
) -> Result<LineageRows, RowsError> {
    let filter = LineageFilter {
        device_id: Some(device.to_string()),
        source_table: Some(table.to_string()),
        status: None,
    };
    let Some(lineage) = tx.lineages(&filter).await?.into_iter().next() else {
        return Err(RowsError::NoLineage {
            device: device.to_string(),
            table: table.to_string(),
        });
    };
    let no_mirror = || RowsError::NoMirror {
        device: device.to_string(),
        table: table.to_string(),
        status: lineage.status().as_str(),
    };
    let Some(name) = lineage.mirror_table.clone() else {
        return Err(no_mirror());
    };
    let Some(mirror) = tx.mirror_get(&name, false).await? else {
        return Err(no_mirror());
    };
    let decisions = match &lineage.schema_hash {
        Some(hash) => tx
            .review_by_key(&mirror.scope, table, hash)
            .await?
            .map(|r| r.decisions)
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let source_of = |mirror_column: &str| {
        decisions
            .iter()
            .find(|d| {
                d.action == ColumnAction::Mirror
                    && d.mirror_column.as_deref() == Some(mirror_column)
            })
            .map(|d| d.name.clone())
    };
    let columns = mirror
        .key_columns
        .iter()
        .map(|c| (c, true))
        .chain(mirror.columns.iter().map(|c| (c, false)))
        .map(|(c, key)| ColumnView {
            name: c.name.clone(),
            source: source_of(&c.name),
            affinity: c.affinity,
            key,
        })
        .collect();
    let rows = tx
        .mirror_rows(&mirror, Some(device), query.include_deleted, query.limit)
        .await?;
    Ok(LineageRows {
        lineage,
        mirror,
        columns,
        rows,
    })
}
