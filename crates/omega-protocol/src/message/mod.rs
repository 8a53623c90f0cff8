//! Every payload of the protocol, as typed values, with encoders to compact JSON bytes.
//!
//! Decoding (with the checks of `protocol.md` §14) lives in [`crate::validate`]. Encoders omit
//! absent optional fields (never `null`), except `row: null` of a delete (§8.3).
//!
//! - [`RowBatch`] (§8) with [`RowChange`] and [`SnapshotMarker`]
//! - [`TelemetryBatch`] (§9) with [`TelemetrySample`]
//! - [`SchemaObservation`] (§10), [`ControlAck`] (§11)
//! - [`ControlEnvelope`] (§12) with [`ControlKind`] and [`Signature`]
//! - [`Receipt`] (`receipts.md` §4)

mod control;
mod observe;
mod receipt;
mod rows;
mod telemetry;
mod write;

pub use control::{ControlAck, ControlEnvelope, ControlKind, Signature};
pub use observe::SchemaObservation;
pub use receipt::{Receipt, ReceiptLineage, RejectedBatch, SnapshotComplete};
pub use rows::{ROW_BATCH_CAPTURE_STRATEGY, encode_row_change, row_batch_overhead_bound};
pub use telemetry::{
    TELEMETRY_BATCH_CAPTURE_STRATEGY, TelemetryBatch, TelemetrySample, encode_telemetry_sample,
    telemetry_batch_overhead_bound,
};

use crate::schema::SchemaColumns;
use crate::value::SqlValue;

/// `op` of a row change (§8.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `insert` (an upsert in the cloud).
    Insert,
    /// `update` (an upsert in the cloud).
    Update,
    /// `delete` (a tombstone in the cloud).
    Delete,
}

impl Op {
    /// The wire name: `insert`, `update` or `delete`.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Insert => "insert",
            Op::Update => "update",
            Op::Delete => "delete",
        }
    }

    /// Reads a wire name.
    pub fn parse(s: &str) -> Option<Op> {
        match s {
            "insert" => Some(Op::Insert),
            "update" => Some(Op::Update),
            "delete" => Some(Op::Delete),
            _ => None,
        }
    }
}

/// Column name → value, in the order the columns were given. Used for `pk`, `row`, `fields`.
pub type Record = Vec<(String, SqlValue)>;

/// One row change (§8.3).
#[derive(Debug, Clone, PartialEq)]
pub struct RowChange {
    /// Position in the device's commit order.
    pub commit_seq: i64,
    /// The operation.
    pub op: Op,
    /// Primary-key columns → values; never empty, never NULL.
    pub pk: Record,
    /// Every column → value for insert/update; `None` for delete.
    pub row: Option<Record>,
}

/// Snapshot marker (§8.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotMarker {
    /// UUIDv7, same for every part.
    pub id: String,
    /// 1, 2, 3, … without gaps.
    pub part: u32,
    /// True on the final part only.
    pub last: bool,
}

/// A row batch on `sync/rows/batch` (§8, `receipts.md` §2).
#[derive(Debug, Clone, PartialEq)]
pub struct RowBatch {
    /// UUIDv7, new for every built batch.
    pub batch_id: String,
    /// The device's current epoch (UUIDv7).
    pub journal_epoch: String,
    /// Source table name.
    pub source_table: String,
    /// Hash of the schema every row follows.
    pub schema_hash: String,
    /// The hash input, when due.
    pub schema_columns: Option<SchemaColumns>,
    /// Smallest `commit_seq`.
    pub first_commit_seq: i64,
    /// Largest `commit_seq`.
    pub last_commit_seq: i64,
    /// `last_commit_seq` of the previous batch of this table and epoch, 0 for the first
    /// (`receipts.md` §2). Absent on snapshot parts and from agents without receipts.
    pub prev_commit_seq: Option<i64>,
    /// The changes, ascending `commit_seq`.
    pub rows: Vec<RowChange>,
    /// Present on snapshot parts only.
    pub snapshot: Option<SnapshotMarker>,
}
