//! The batch ledger (`protocol.md` §15.2, `cloud.md` §3.2 `omega_batches`) and the confirmed
//! point it drives (`receipts.md` §3).
//!
//! Every batch the cloud accepted or rejected is recorded under (device, `batch_id`). A hit is a
//! duplicate delivery: counted, acknowledged, never applied or quarantined again.

use time::OffsetDateTime;
use uuid::Uuid;

/// Kind of a ledgered batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchKind {
    /// `sync/rows/batch`.
    Rows,
    /// `sync/telemetry/batch`.
    Telemetry,
}

impl BatchKind {
    /// Stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            BatchKind::Rows => "rows",
            BatchKind::Telemetry => "telemetry",
        }
    }

    /// Parses [`BatchKind::as_str`]'s form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "rows" => Some(BatchKind::Rows),
            "telemetry" => Some(BatchKind::Telemetry),
            _ => None,
        }
    }
}

/// Whether a ledgered batch was taken or refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerStatus {
    /// Applied or staged.
    Accepted,
    /// Quarantined with this rejection code.
    Rejected(String),
}

/// One ledger row.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerEntry {
    /// Device the topic named.
    pub device_id: String,
    /// The batch's id.
    pub batch_id: Uuid,
    /// Rows or telemetry; `None` when a rejected payload did not say.
    pub kind: Option<BatchKind>,
    /// Source table, when known.
    pub source_table: Option<String>,
    /// Accepted or rejected.
    pub status: LedgerStatus,
    /// Row batches: the epoch.
    pub journal_epoch: Option<Uuid>,
    /// Row batches: smallest `commit_seq`.
    pub first_commit_seq: Option<i64>,
    /// Row batches: largest `commit_seq`.
    pub last_commit_seq: Option<i64>,
    /// Row batches: the chain link (`receipts.md` §2).
    pub prev_commit_seq: Option<i64>,
    /// Telemetry: `batch_seq`.
    pub batch_seq: Option<i64>,
    /// Number of rows or samples.
    pub row_count: i64,
    /// Deliveries so far (1 on insert).
    pub deliveries: i64,
    /// First received.
    pub received_at: OffsetDateTime,
}

/// One step of `receipts.md` §3.2: a batch whose `prev_commit_seq` ≤ `confirmed` <
/// `last_commit_seq` moves the point to its `last_commit_seq`.
pub fn chain_step(confirmed: i64, prev_commit_seq: i64, last_commit_seq: i64) -> Option<i64> {
    (prev_commit_seq <= confirmed && confirmed < last_commit_seq).then_some(last_commit_seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_chained_at_or_below_the_point_moves_it() {
        assert_eq!(chain_step(0, 0, 10), Some(10));
        assert_eq!(chain_step(10, 10, 20), Some(20));
        assert_eq!(chain_step(15, 10, 20), Some(20));
    }

    #[test]
    fn a_batch_after_a_gap_or_already_covered_does_not() {
        assert_eq!(chain_step(10, 12, 20), None);
        assert_eq!(chain_step(20, 10, 20), None);
    }
}
