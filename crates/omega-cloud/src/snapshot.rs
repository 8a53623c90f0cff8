//! Snapshot bookkeeping and completion (`cloud.md` §10.7).
//!
//! For each (device, table, snapshot id) the cloud records the epoch, H, the parts received
//! and the number of the part that carried `last: true`. The snapshot completes when parts
//! 1..n are all in and none of its rows waits in staging (a staged part counts once replayed);
//! then every row of that device below (epoch, H) is tombstoned with version (epoch, H).

use std::collections::BTreeSet;

use time::OffsetDateTime;
use uuid::Uuid;

/// A snapshot's state.
///
/// Transitions: `in_progress` → `complete`, once; a complete snapshot ignores later parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotPhase {
    /// Parts still missing or staged.
    InProgress,
    /// Swept.
    Complete,
}

impl SnapshotPhase {
    /// The API string.
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotPhase::InProgress => "in_progress",
            SnapshotPhase::Complete => "complete",
        }
    }

    /// Parses [`SnapshotPhase::as_str`]'s form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "in_progress" => Some(SnapshotPhase::InProgress),
            "complete" => Some(SnapshotPhase::Complete),
            _ => None,
        }
    }
}

/// One `omega_snapshots` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotState {
    /// Device.
    pub device_id: String,
    /// Source table.
    pub source_table: String,
    /// Snapshot id.
    pub snapshot_id: Uuid,
    /// Epoch of its parts.
    pub journal_epoch: Uuid,
    /// H: the `commit_seq` of every row in it.
    pub h: i64,
    /// Parts received (applied or staged).
    pub parts: BTreeSet<u32>,
    /// Number of the part with `last: true`, once seen.
    pub last_part: Option<u32>,
    /// State.
    pub phase: SnapshotPhase,
    /// Last change.
    pub updated_at: OffsetDateTime,
}

impl SnapshotState {
    /// A snapshot first seen with this part.
    pub fn new(
        device_id: &str,
        source_table: &str,
        snapshot_id: Uuid,
        journal_epoch: Uuid,
        h: i64,
        now: OffsetDateTime,
    ) -> Self {
        SnapshotState {
            device_id: device_id.to_string(),
            source_table: source_table.to_string(),
            snapshot_id,
            journal_epoch,
            h,
            parts: BTreeSet::new(),
            last_part: None,
            phase: SnapshotPhase::InProgress,
            updated_at: now,
        }
    }

    /// Records a received part.
    pub fn record_part(&mut self, part: u32, last: bool, now: OffsetDateTime) {
        self.parts.insert(part);
        if last {
            self.last_part = Some(part);
        }
        self.updated_at = now;
    }

    /// Whether every part 1..n has arrived. Completion also needs no staged rows left.
    pub fn all_parts_in(&self) -> bool {
        match self.last_part {
            Some(n) => (1..=n).all(|p| self.parts.contains(&p)),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_complete_in_any_order() {
        let mut s = SnapshotState::new(
            "d",
            "t",
            Uuid::from_u128(1),
            Uuid::from_u128(2),
            10,
            OffsetDateTime::UNIX_EPOCH,
        );
        s.record_part(3, true, OffsetDateTime::UNIX_EPOCH);
        assert!(!s.all_parts_in());
        s.record_part(1, false, OffsetDateTime::UNIX_EPOCH);
        assert!(!s.all_parts_in());
        s.record_part(2, false, OffsetDateTime::UNIX_EPOCH);
        assert!(s.all_parts_in());
    }
}
