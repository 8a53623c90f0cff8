//! Lineages: one per (device, source table) (`cloud.md` §6), and the pure rules that move them.
//!
//! Nothing here does I/O: the apply transaction loads a [`Lineage`] under its row lock, calls
//! these methods, and saves it back. [`ops`] holds the store reads the CLI and API show.

pub mod ops;

use std::collections::BTreeSet;
use std::fmt;

use time::OffsetDateTime;
use uuid::Uuid;

/// Whether a lineage flows (§6.1). Derived from the pause causes; stored for queries.
///
/// Transitions: `active` → `paused` when the first cause is added; `paused` → `active` when
/// the last cause is removed. Nothing else moves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LineageStatus {
    /// No pause cause.
    Active,
    /// At least one pause cause.
    Paused,
}

impl LineageStatus {
    /// The API and CLI string.
    pub fn as_str(self) -> &'static str {
        match self {
            LineageStatus::Active => "active",
            LineageStatus::Paused => "paused",
        }
    }

    /// Parses [`LineageStatus::as_str`]'s form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(LineageStatus::Active),
            "paused" => Some(LineageStatus::Paused),
            _ => None,
        }
    }
}

/// Why a lineage is paused (§6.2). The names are the API strings.
///
/// Allowed transitions (the only places that add or remove a cause):
///
/// | Cause | Added when | Removed when |
/// |---|---|---|
/// | `schema_review` | a batch leaves the lineage's newest hash unapproved | a review approval makes the lineage's latest hash approved |
/// | `backpressure` | staged rows or bytes exceed a cap | both fall under the resume threshold |
/// | `circuit_breaker` | `circuit_breaker_failures` consecutive row failures | operator resume |
/// | `operator` | operator pause | operator resume |
///
/// A rejected review removes nothing. `schema_review` is cloud-side (the device keeps sending,
/// the cloud stages); the other three are device-side (a `pause_lineage` control is sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PauseCause {
    /// The lineage's newest hash awaits a review.
    SchemaReview,
    /// Staging is over its caps.
    Backpressure,
    /// Too many consecutive materialization failures.
    CircuitBreaker,
    /// Paused by an operator.
    Operator,
}

impl PauseCause {
    /// The API string.
    pub fn as_str(self) -> &'static str {
        match self {
            PauseCause::SchemaReview => "schema_review",
            PauseCause::Backpressure => "backpressure",
            PauseCause::CircuitBreaker => "circuit_breaker",
            PauseCause::Operator => "operator",
        }
    }

    /// Parses [`PauseCause::as_str`]'s form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "schema_review" => Some(PauseCause::SchemaReview),
            "backpressure" => Some(PauseCause::Backpressure),
            "circuit_breaker" => Some(PauseCause::CircuitBreaker),
            "operator" => Some(PauseCause::Operator),
            _ => None,
        }
    }

    /// Whether the device is told (`pause_lineage`) about this cause.
    pub fn is_device_side(self) -> bool {
        !matches!(self, PauseCause::SchemaReview)
    }
}

impl fmt::Display for PauseCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which message kinds a lineage has carried (§6.1 `kinds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Kinds {
    /// Row batches.
    pub rows: bool,
    /// Telemetry batches.
    pub telemetry: bool,
}

impl Kinds {
    /// The API form: `["rows"]`, `["telemetry"]` or both.
    pub fn names(self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.rows {
            v.push("rows");
        }
        if self.telemetry {
            v.push("telemetry");
        }
        v
    }

    /// Parses [`Kinds::names`]'s form; unknown names are ignored.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut k = Kinds::default();
        for n in names {
            match n {
                "rows" => k.rows = true,
                "telemetry" => k.telemetry = true,
                _ => {}
            }
        }
        k
    }
}

/// One lineage record (§6.1, plus `confirmed_through` of `receipts.md` §3).
#[derive(Debug, Clone, PartialEq)]
pub struct Lineage {
    /// UUIDv7, assigned on the first message for (device, table).
    pub id: Uuid,
    /// The device.
    pub device_id: String,
    /// The source table.
    pub source_table: String,
    /// Kinds carried so far.
    pub kinds: Kinds,
    /// Current pause causes; the status is derived from them.
    pub pause_causes: BTreeSet<PauseCause>,
    /// Whether the last pause/resume control issued was `pause_lineage`.
    pub device_paused: bool,
    /// Highest accepted epoch.
    pub journal_epoch: Option<Uuid>,
    /// Highest accepted `commit_seq` in `journal_epoch`.
    pub last_commit_seq: Option<i64>,
    /// Highest accepted telemetry `batch_seq`.
    pub last_batch_seq: Option<i64>,
    /// Every change of the current epoch up to here is durably stored (`receipts.md` §3).
    pub confirmed_through: i64,
    /// Telemetry: every batch of the `prev_batch_seq` chain up to this `batch_seq` is stored
    /// (`receipts.md` §3.5); 0 until a chained batch arrives, -1 while a chained lineage's
    /// first batch is missing.
    pub batch_seq_through: i64,
    /// Hash of the newest batch.
    pub schema_hash: Option<String>,
    /// Staged row changes and samples.
    pub staged_rows: i64,
    /// Bytes of their JSON.
    pub staged_bytes: i64,
    /// Consecutive row failures (§13).
    pub consecutive_failures: i64,
    /// Mirror table, once provisioned.
    pub mirror_table: Option<String>,
    /// Telemetry table, once provisioned.
    pub ts_table: Option<String>,
    /// Creation time.
    pub created_at: OffsetDateTime,
    /// Last change to this record.
    pub updated_at: OffsetDateTime,
    /// Last accepted batch.
    pub last_batch_at: Option<OffsetDateTime>,
}

/// How a batch's epoch relates to the lineage's (§4.3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochOrder {
    /// Greater (or the lineage had none): the batch's epoch replaced the lineage's.
    Newer,
    /// The lineage's current epoch.
    Current,
    /// Older than the lineage's: touches no watermark.
    Older,
}

impl Lineage {
    /// A fresh, `active` lineage.
    pub fn new(device_id: &str, source_table: &str, now: OffsetDateTime) -> Self {
        Lineage {
            id: Uuid::now_v7(),
            device_id: device_id.to_string(),
            source_table: source_table.to_string(),
            kinds: Kinds::default(),
            pause_causes: BTreeSet::new(),
            device_paused: false,
            journal_epoch: None,
            last_commit_seq: None,
            last_batch_seq: None,
            confirmed_through: 0,
            batch_seq_through: 0,
            schema_hash: None,
            staged_rows: 0,
            staged_bytes: 0,
            consecutive_failures: 0,
            mirror_table: None,
            ts_table: None,
            created_at: now,
            updated_at: now,
            last_batch_at: None,
        }
    }

    /// `active` or `paused`.
    pub fn status(&self) -> LineageStatus {
        if self.pause_causes.is_empty() {
            LineageStatus::Active
        } else {
            LineageStatus::Paused
        }
    }

    /// `server_watermark` (§6.1): `last_commit_seq`, or `last_batch_seq` for a telemetry-only
    /// lineage, or 0.
    pub fn server_watermark(&self) -> i64 {
        if !self.kinds.rows && self.kinds.telemetry {
            self.last_batch_seq.unwrap_or(0)
        } else {
            self.last_commit_seq.unwrap_or(0)
        }
    }

    /// Whether rows may go to the mirror: no cause other than `backpressure` (§4.3.7, §9.3).
    pub fn may_materialize(&self) -> bool {
        self.pause_causes
            .iter()
            .all(|c| *c == PauseCause::Backpressure)
    }

    /// Whether a device-side cause holds.
    pub fn has_device_side_cause(&self) -> bool {
        self.pause_causes.iter().any(|c| c.is_device_side())
    }

    /// The epoch rule (§4.3.5) and the row watermarks (§4.3.8) for an accepted row batch.
    ///
    /// A greater epoch replaces the lineage's and restarts `last_commit_seq` (and
    /// `confirmed_through`, `receipts.md` §3.4) from this batch. The lineage's `schema_hash`
    /// follows the newest batch, by (epoch, `last_commit_seq`).
    pub fn accept_row_batch(
        &mut self,
        epoch: Uuid,
        last_commit_seq: i64,
        schema_hash: &str,
        now: OffsetDateTime,
    ) -> EpochOrder {
        self.kinds.rows = true;
        self.last_batch_at = Some(now);
        self.updated_at = now;
        let order = match self.journal_epoch {
            None => EpochOrder::Newer,
            Some(cur) if epoch > cur => EpochOrder::Newer,
            Some(cur) if epoch == cur => EpochOrder::Current,
            Some(_) => EpochOrder::Older,
        };
        match order {
            EpochOrder::Newer => {
                self.journal_epoch = Some(epoch);
                self.last_commit_seq = Some(last_commit_seq);
                self.confirmed_through = 0;
                self.schema_hash = Some(schema_hash.to_string());
            }
            EpochOrder::Current => {
                let cur = self.last_commit_seq.unwrap_or(0);
                if last_commit_seq >= cur {
                    self.schema_hash = Some(schema_hash.to_string());
                }
                self.last_commit_seq = Some(cur.max(last_commit_seq));
            }
            EpochOrder::Older => {}
        }
        order
    }

    /// Adds a cause; returns whether it was new.
    pub fn add_cause(&mut self, cause: PauseCause) -> bool {
        self.pause_causes.insert(cause)
    }

    /// `schema_review` (§9) after a batch of `hash` was classified: added when the batch's hash
    /// is the lineage's newest and not approved; lifted when it is approved — a cause an earlier
    /// batch of the same hash added before the approval (e.g. a snapshot part without
    /// `schema_columns` applied before the part carrying them) is stale. Returns whether the
    /// cause was lifted.
    pub fn review_cause(&mut self, newest: bool, approved: bool) -> bool {
        match (newest, approved) {
            (true, false) => {
                self.add_cause(PauseCause::SchemaReview);
                false
            }
            (true, true) => self.remove_cause(PauseCause::SchemaReview),
            (false, _) => false,
        }
    }

    /// Removes a cause; returns whether it was present.
    pub fn remove_cause(&mut self, cause: PauseCause) -> bool {
        self.pause_causes.remove(&cause)
    }

    /// Counts the outcome of one row change written to (or refused by) the mirror (§10.4).
    pub fn count_row_result(&mut self, written: bool) {
        if written {
            self.consecutive_failures = 0;
        } else {
            self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn lineage() -> Lineage {
        Lineage::new("d", "t", OffsetDateTime::UNIX_EPOCH)
    }

    #[test]
    fn first_batch_sets_epoch_watermark_and_hash() {
        let mut l = lineage();
        let o = l.accept_row_batch(epoch(5), 10, "h1", OffsetDateTime::UNIX_EPOCH);
        assert_eq!(o, EpochOrder::Newer);
        assert_eq!(
            (l.journal_epoch, l.last_commit_seq),
            (Some(epoch(5)), Some(10))
        );
        assert_eq!(l.schema_hash.as_deref(), Some("h1"));
        assert!(l.kinds.rows);
    }

    #[test]
    fn newer_epoch_restarts_the_watermark_and_older_epoch_touches_nothing() {
        let mut l = lineage();
        l.accept_row_batch(epoch(5), 100, "h1", OffsetDateTime::UNIX_EPOCH);
        l.confirmed_through = 100;
        assert_eq!(
            l.accept_row_batch(epoch(6), 3, "h2", OffsetDateTime::UNIX_EPOCH),
            EpochOrder::Newer
        );
        assert_eq!((l.last_commit_seq, l.confirmed_through), (Some(3), 0));
        assert_eq!(
            l.accept_row_batch(epoch(5), 500, "h3", OffsetDateTime::UNIX_EPOCH),
            EpochOrder::Older
        );
        assert_eq!(
            (l.journal_epoch, l.last_commit_seq),
            (Some(epoch(6)), Some(3))
        );
        assert_eq!(l.schema_hash.as_deref(), Some("h2"));
    }

    #[test]
    fn late_older_batch_of_the_current_epoch_keeps_the_newest_hash() {
        let mut l = lineage();
        l.accept_row_batch(epoch(5), 100, "new", OffsetDateTime::UNIX_EPOCH);
        l.accept_row_batch(epoch(5), 50, "old", OffsetDateTime::UNIX_EPOCH);
        assert_eq!(l.last_commit_seq, Some(100));
        assert_eq!(l.schema_hash.as_deref(), Some("new"));
    }

    #[test]
    fn only_backpressure_still_lets_rows_through() {
        let mut l = lineage();
        assert!(l.may_materialize());
        l.add_cause(PauseCause::Backpressure);
        assert!(l.may_materialize());
        assert_eq!(l.status(), LineageStatus::Paused);
        l.add_cause(PauseCause::SchemaReview);
        assert!(!l.may_materialize());
        assert!(l.has_device_side_cause());
    }

    #[test]
    fn cause_names_round_trip() {
        for c in [
            PauseCause::SchemaReview,
            PauseCause::Backpressure,
            PauseCause::CircuitBreaker,
            PauseCause::Operator,
        ] {
            assert_eq!(PauseCause::parse(c.as_str()), Some(c));
        }
    }
}
