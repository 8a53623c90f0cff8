//! Store reads of the telemetry samples a lineage wrote (`cloud.md` §11, §18 rows route), and
//! the choice between them and mirror rows: `omega cloud rows` and `GET
//! /v1/lineages/{id}/rows` show a lineage's telemetry table when it carries telemetry only (or
//! has no mirror), its mirror rows otherwise. Each read is one short, rolled-back transaction.

use crate::lineage::Lineage;
use crate::lineage::ops::{self, ColumnView, LineageRows, RowsError, RowsQuery};
use crate::schema_review::ColumnAction;
use crate::store::{Store, StoreTx};
use crate::ts_table::{TsDef, TsRow};

/// A lineage's telemetry samples.
#[derive(Debug, Clone, PartialEq)]
pub struct LineageSamples {
    /// The lineage.
    pub lineage: Lineage,
    /// Its telemetry table.
    pub table: TsDef,
    /// The field columns, in [`TsRow::values`] order (`key` is always false).
    pub columns: Vec<ColumnView>,
    /// This device's samples, ordered by (`event_ts`, `row_id`).
    pub rows: Vec<TsRow>,
}

/// What `rows` shows for a lineage.
#[derive(Debug, Clone, PartialEq)]
pub enum RowsView {
    /// Mirror rows (a lineage carrying row batches).
    Rows(LineageRows),
    /// Telemetry samples (a telemetry lineage).
    Samples(LineageSamples),
}

/// Whether `rows` shows the lineage's telemetry table rather than its mirror.
pub fn shows_samples(l: &Lineage) -> bool {
    l.kinds.telemetry && (!l.kinds.rows || l.mirror_table.is_none())
}

/// The rows of (device, table): samples for a telemetry lineage, mirror rows otherwise.
/// `include_deleted` means nothing to samples (they have no tombstones).
pub async fn read<S: Store>(
    store: &S,
    device: &str,
    table: &str,
    query: RowsQuery,
) -> Result<RowsView, RowsError> {
    let Some(lineage) = ops::find(store, device, table).await? else {
        return Err(RowsError::NoLineage {
            device: device.to_string(),
            table: table.to_string(),
        });
    };
    if shows_samples(&lineage) {
        let mut tx = store.begin().await?;
        let out = samples_in(&mut tx, lineage, query.limit).await;
        let _ = tx.rollback().await;
        out.map(RowsView::Samples)
    } else {
        ops::rows(store, device, table, query)
            .await
            .map(RowsView::Rows)
    }
}

async fn samples_in<T: StoreTx>(
    tx: &mut T,
    lineage: Lineage,
    limit: Option<usize>,
) -> Result<LineageSamples, RowsError> {
    let no_table = || RowsError::NoMirror {
        device: lineage.device_id.clone(),
        table: lineage.source_table.clone(),
        status: lineage.status().as_str(),
    };
    let Some(name) = lineage.ts_table.clone() else {
        return Err(no_table());
    };
    let Some(def) = tx.ts_get(&name).await? else {
        return Err(no_table());
    };
    let decisions = match &lineage.schema_hash {
        Some(hash) => tx
            .review_by_key(&def.scope, &lineage.source_table, hash)
            .await?
            .map(|r| r.decisions)
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let columns = def
        .columns
        .iter()
        .map(|c| ColumnView {
            name: c.name.clone(),
            source: decisions
                .iter()
                .find(|d| {
                    d.action == ColumnAction::Mirror
                        && d.mirror_column.as_deref() == Some(c.name.as_str())
                })
                .map(|d| d.name.clone()),
            affinity: c.affinity,
            key: false,
        })
        .collect();
    let rows = tx.ts_rows(&def, Some(&lineage.device_id), limit).await?;
    Ok(LineageSamples {
        lineage,
        table: def,
        columns,
        rows,
    })
}
