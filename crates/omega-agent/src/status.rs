//! `omega agent status`: what `state.db` (and, read-only, the source's journal) says, without
//! touching the network (`spec/agent.md` §20, `receipts.md` §5.5).

use std::path::Path;

use serde::Serialize;

use crate::source::journal;
use crate::state::{StateDb, StateError};

/// The whole report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StatusReport {
    /// Device id recorded in `state.db`.
    pub device_id: Option<String>,
    /// Epoch in force.
    pub journal_epoch: Option<String>,
    /// Last applied `control_seq`.
    pub last_control_seq: Option<i64>,
    /// Unconfirmed bytes kept for `rows` tables (`null` if the source could not be read).
    pub buffered_bytes: Option<i64>,
    /// The configured bound.
    pub local_retention_bytes: u64,
    /// Whether a receipt ever confirmed anything (with `delivery: receipts`).
    pub receipts_seen: bool,
    /// Per table.
    pub tables: Vec<TableStatus>,
    /// Counters (`null_key_rows`, `oversized_rows`, …).
    pub counters: std::collections::BTreeMap<String, i64>,
    /// Problems met while collecting (e.g. the source could not be opened).
    pub warnings: Vec<String>,
}

/// One table.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TableStatus {
    /// Table name.
    pub name: String,
    /// `rows`, `telemetry` or `ignore`.
    pub strategy: String,
    /// Hash of the schema last seen.
    pub schema_hash: Option<String>,
    /// `last_published_commit_seq` (moves on PUBACK).
    pub last_published_commit_seq: i64,
    /// Confirmed cursor (moves on a verified receipt).
    pub confirmed_commit_seq: i64,
    /// When the confirmed cursor last moved.
    pub confirmed_at: Option<String>,
    /// When the oldest change not yet confirmed by a receipt was published (`null`: none).
    pub unconfirmed_since: Option<String>,
    /// Seconds since then: an upper bound on how long the oldest unconfirmed change has
    /// waited for its receipt.
    pub oldest_unconfirmed_age_s: Option<i64>,
    /// Journal entries above the published cursor (`null` when the source is unreadable).
    pub pending_rows: Option<i64>,
    /// Entries above the confirmed cursor: kept until the cloud confirms them.
    pub buffered_rows: Option<i64>,
    /// Their stored bytes.
    pub buffered_bytes: Option<i64>,
    /// Paused by the cloud.
    pub paused: bool,
    /// The pause's watermark.
    pub server_watermark: Option<i64>,
    /// The pause's reason.
    pub pause_reason: Option<String>,
    /// Local retention dropped history; a snapshot is due.
    pub needs_resnapshot: bool,
    /// Why publishing is blocked.
    pub blocked: Option<String>,
    /// Why a snapshot is due and not yet taken (e.g. the table is paused).
    pub snapshot_due: Option<String>,
    /// The snapshot being sent, if any.
    pub snapshot: Option<SnapshotStatus>,
    /// Telemetry: the published cursor, (ts, key…) as stored (`null` before the first row).
    pub telemetry_cursor: Option<String>,
    /// Telemetry: the confirmed cursor.
    pub telemetry_confirmed: Option<String>,
    /// Telemetry: the next `batch_seq`.
    pub next_batch_seq: Option<i64>,
}

/// A snapshot being sent (`spec/agent.md` §11): its spool in `state.db`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SnapshotStatus {
    /// `snapshot.id`.
    pub id: String,
    /// H.
    pub h: i64,
    /// Rows in it.
    pub rows: i64,
    /// Parts in all.
    pub parts: u32,
    /// Parts with their PUBACK; the spool is deleted when the cloud confirms it complete.
    pub parts_published: u32,
    /// Why it was taken.
    pub reason: String,
    /// When.
    pub taken_at: String,
}

/// Reads the report. `source` is opened read-only; when it cannot be, pending counts are
/// `null` and a warning says why.
pub fn collect(
    state_path: &Path,
    source: &Path,
    local_retention_bytes: u64,
) -> Result<StatusReport, StateError> {
    let state = StateDb::open_read_only(state_path)?;
    let tables = state.tables()?;
    let spools = state.spools()?;
    let counters = state.counters()?.into_iter().collect();
    let mut warnings = Vec::new();
    let src =
        rusqlite::Connection::open_with_flags(source, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .and_then(|c| {
                journal::max_seq(&c)?;
                Ok(c)
            });
    let src = match src {
        Ok(c) => Some(c),
        Err(e) => {
            warnings.push(format!(
                "source {} unreadable, pending counts unknown: {e}",
                source.display()
            ));
            None
        }
    };
    let mut out = Vec::new();
    let mut total = Some(0i64);
    for t in &tables {
        let counts = |cursor: i64| -> Option<(i64, i64)> {
            let (c, tid) = (src.as_ref()?, t.tid?);
            journal::pending_by_table(c, &[(tid, cursor)])
                .ok()?
                .first()
                .map(|&(_, n, b)| (n, b))
        };
        let pending = counts(t.published_seq.max(t.snapshot_floor)).map(|(n, _)| n);
        let buffered = counts(t.confirmed_seq.max(t.snapshot_floor));
        // Telemetry tables hold nothing (their rows stay in the table, §12.10).
        if t.strategy == "rows" {
            total = match (total, buffered) {
                (Some(a), Some((_, b))) => Some(a + b),
                _ => None,
            };
        }
        let since = state.unconfirmed_since(&t.name)?;
        let age = since
            .as_deref()
            .and_then(|s| omega_protocol::time::parse_rfc3339(s).ok())
            .map(|at| {
                (time::OffsetDateTime::now_utc() - at)
                    .whole_seconds()
                    .max(0)
            });
        out.push(TableStatus {
            unconfirmed_since: since,
            oldest_unconfirmed_age_s: age,
            name: t.name.clone(),
            strategy: t.strategy.clone(),
            schema_hash: t.schema_hash.clone(),
            last_published_commit_seq: t.published_seq,
            confirmed_commit_seq: t.confirmed_seq,
            confirmed_at: t.confirmed_at.clone(),
            pending_rows: pending,
            buffered_rows: buffered.map(|(n, _)| n),
            buffered_bytes: buffered.map(|(_, b)| b),
            paused: t.paused,
            server_watermark: t.server_watermark,
            pause_reason: t.pause_reason.clone(),
            needs_resnapshot: t.needs_resnapshot,
            blocked: t.blocked.clone(),
            snapshot_due: t.snapshot_due.clone(),
            telemetry_cursor: t.ts_cursor.clone(),
            telemetry_confirmed: t.ts_confirmed.clone(),
            next_batch_seq: t.next_batch_seq,
            snapshot: spools
                .iter()
                .find(|h| h.table == t.name)
                .map(|h| SnapshotStatus {
                    id: h.snapshot_id.clone(),
                    h: h.h,
                    rows: h.rows,
                    parts: h.parts,
                    parts_published: h.parts_published,
                    reason: h.reason.clone(),
                    taken_at: h.created_at.clone(),
                }),
        });
    }
    Ok(StatusReport {
        device_id: state.meta("device_id")?,
        journal_epoch: state.meta("journal_epoch")?,
        last_control_seq: state.meta("last_control_seq")?.and_then(|s| s.parse().ok()),
        buffered_bytes: total,
        local_retention_bytes,
        receipts_seen: tables.iter().any(|t| t.confirmed_at.is_some()),
        tables: out,
        counters,
        warnings,
    })
}
