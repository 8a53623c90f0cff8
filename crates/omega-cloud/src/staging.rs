//! Staging (`cloud.md` §9): row changes the cloud may not apply yet, kept under the row-ledger
//! key (device, table, epoch, `source_pk_hash`, `commit_seq`) until their hash is approved and
//! the lineage flows again; then replayed in (epoch, `commit_seq`) order.

pub mod ops;

use omega_protocol::message::{Op, Record, RowChange, SnapshotMarker};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::wire;

/// Most staged entries replayed in one transaction (§9.3).
pub const REPLAY_CHUNK: usize = 1_000;

/// Why a row change was staged (§9.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageReason {
    /// Its hash is not approved in scope.
    SchemaReview,
    /// Its hash is approved but the lineage holds a pause cause.
    LineagePaused,
}

impl StageReason {
    /// The API string.
    pub fn as_str(self) -> &'static str {
        match self {
            StageReason::SchemaReview => "schema_review",
            StageReason::LineagePaused => "lineage_paused",
        }
    }

    /// Parses [`StageReason::as_str`]'s form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "schema_review" => Some(StageReason::SchemaReview),
            "lineage_paused" => Some(StageReason::LineagePaused),
            _ => None,
        }
    }
}

/// One staged row change (§9.1).
#[derive(Debug, Clone, PartialEq)]
pub struct StagedRow {
    /// Device.
    pub device_id: String,
    /// Source table.
    pub source_table: String,
    /// Epoch of its batch.
    pub journal_epoch: Uuid,
    /// SHA-256 of the canonical `pk` (`protocol.md` §7).
    pub source_pk_hash: String,
    /// Its `commit_seq`.
    pub commit_seq: i64,
    /// The operation.
    pub op: Op,
    /// Key columns.
    pub pk: Record,
    /// Row image (`None` for delete).
    pub row: Option<Record>,
    /// Hash its row follows.
    pub schema_hash: String,
    /// The batch it came in.
    pub batch_id: Uuid,
    /// Snapshot marker of its batch.
    pub snapshot: Option<SnapshotMarker>,
    /// Why it waits.
    pub reason: StageReason,
    /// Bytes of its JSON (counted in the lineage's `staged_bytes`).
    pub size_bytes: i64,
    /// When it was staged.
    pub staged_at: OffsetDateTime,
}

/// One staged telemetry sample (§9.2), keyed by (device, table, `row_id`, event time).
#[derive(Debug, Clone, PartialEq)]
pub struct StagedSample {
    /// Device.
    pub device_id: String,
    /// Source table.
    pub source_table: String,
    /// `row_id`, or `{batch_id}:{index}` when the sample had none.
    pub row_id: String,
    /// Event time.
    pub event_ts: OffsetDateTime,
    /// Sent columns → values.
    pub fields: Record,
    /// Hash of the table.
    pub schema_hash: String,
    /// The batch it came in.
    pub batch_id: Uuid,
    /// Its batch's `batch_seq`.
    pub batch_seq: i64,
    /// Bytes of its fields' JSON.
    pub size_bytes: i64,
    /// When it was staged.
    pub staged_at: OffsetDateTime,
}

/// The stored name of an op.
pub fn op_name(op: Op) -> &'static str {
    match op {
        Op::Insert => "insert",
        Op::Update => "update",
        Op::Delete => "delete",
    }
}

/// Parses [`op_name`]'s form.
pub fn parse_op(s: &str) -> Option<Op> {
    match s {
        "insert" => Some(Op::Insert),
        "update" => Some(Op::Update),
        "delete" => Some(Op::Delete),
        _ => None,
    }
}

/// The wire JSON of one row change: the quarantine payload of a refused row (§5.2) and the
/// measure of a staged row's size (§9.1).
pub fn change_json(commit_seq: i64, op: Op, pk: &Record, row: Option<&Record>) -> String {
    wire::change_json(commit_seq, op, pk, row)
}

/// Everything of a batch a staged row needs besides the change itself.
#[derive(Debug, Clone, Copy)]
pub struct StageContext<'a> {
    /// Device.
    pub device_id: &'a str,
    /// Source table.
    pub source_table: &'a str,
    /// Batch epoch.
    pub journal_epoch: Uuid,
    /// Batch hash.
    pub schema_hash: &'a str,
    /// Batch id.
    pub batch_id: Uuid,
    /// Snapshot marker.
    pub snapshot: Option<&'a SnapshotMarker>,
    /// Why.
    pub reason: StageReason,
    /// Now.
    pub now: OffsetDateTime,
}

/// Builds the staged form of a row change.
pub fn stage(ctx: &StageContext<'_>, change: &RowChange) -> StagedRow {
    let json = change_json(
        change.commit_seq,
        change.op,
        &change.pk,
        change.row.as_ref(),
    );
    StagedRow {
        device_id: ctx.device_id.to_string(),
        source_table: ctx.source_table.to_string(),
        journal_epoch: ctx.journal_epoch,
        source_pk_hash: wire::source_pk_hash(&change.pk),
        commit_seq: change.commit_seq,
        op: change.op,
        pk: change.pk.clone(),
        row: change.row.clone(),
        schema_hash: ctx.schema_hash.to_string(),
        batch_id: ctx.batch_id,
        snapshot: ctx.snapshot.cloned(),
        reason: ctx.reason,
        size_bytes: i64::try_from(json.len()).unwrap_or(i64::MAX),
        staged_at: ctx.now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use omega_protocol::value::SqlValue;

    #[test]
    fn staged_rows_carry_the_row_ledger_key_and_their_size() {
        let change = RowChange {
            commit_seq: 7,
            op: Op::Delete,
            pk: vec![("id".into(), SqlValue::Integer(1))],
            row: None,
        };
        let ctx = StageContext {
            device_id: "d",
            source_table: "t",
            journal_epoch: Uuid::from_u128(1),
            schema_hash: "h",
            batch_id: Uuid::from_u128(2),
            snapshot: None,
            reason: StageReason::SchemaReview,
            now: OffsetDateTime::UNIX_EPOCH,
        };
        let s = stage(&ctx, &change);
        assert_eq!(
            s.source_pk_hash,
            "037c9214eef74cc3887f3a4f085b4e17d76280dafd273b0ee160c09c4ba1cfd4"
        );
        let json = r#"{"commit_seq":7,"op":"delete","pk":{"id":1},"row":null}"#;
        assert_eq!(s.size_bytes, json.len() as i64);
    }
}
