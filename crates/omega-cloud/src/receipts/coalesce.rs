//! The receipt coalescer: an I/O-free state machine that decides, per device, what the next
//! receipt must name and when it may go (`receipts.md` §4.3: at most one per device per
//! `receipts.interval`).
//!
//! Workers [`Coalescer::note`] what each committed message touched; the sender asks for the
//! [`Coalescer::next_due`] instant, sleeps until then, [`Coalescer::take_due`]s the devices
//! whose receipt may go, reads their points from the store and publishes. A failed send gives
//! its work back with [`Coalescer::retry`]. Nothing here is durable: the points themselves
//! live in the store, this is only the "not yet sent" set.
//!
//! Per device, the transitions are:
//!
//! | State | Event | Next |
//! |---|---|---|
//! | idle (nothing pending) | note | pending, due at once if nothing was sent within `interval`, else at last send + `interval` |
//! | pending | note | pending (merged), same due time |
//! | pending, due | take | idle, last send = now |
//! | idle | retry | pending, due at last send + `interval` |
//! | idle, last send ≥ `interval` ago | forget | removed |

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use omega_protocol::message::RejectedBatch;
use uuid::Uuid;

/// What a committed message told the sender about its device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// A batch of this table was committed (applied, staged, rejected or a duplicate
    /// delivery): the lineage's point may have moved, or the device may be re-sending because
    /// it missed the receipt that named it. Either way the next receipt names it.
    Lineage {
        /// Source table.
        table: String,
    },
    /// A part of this snapshot was recorded; the receipt names the snapshot once every part
    /// is in.
    Snapshot {
        /// Source table.
        table: String,
        /// Snapshot id.
        snapshot_id: Uuid,
    },
    /// A batch was quarantined (`receipts.md` §4.4).
    Rejected(RejectedBatch),
}

/// What the next receipt of one device must name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pending {
    /// Tables whose lineage was touched.
    pub tables: BTreeSet<String>,
    /// Snapshots that received a part: (table, snapshot id).
    pub snapshots: BTreeSet<(String, Uuid)>,
    /// Batches rejected, in the order they were.
    pub rejected: Vec<RejectedBatch>,
}

impl Pending {
    /// Nothing to say.
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty() && self.snapshots.is_empty() && self.rejected.is_empty()
    }

    fn add(&mut self, note: Note) {
        match note {
            Note::Lineage { table } => {
                self.tables.insert(table);
            }
            Note::Snapshot { table, snapshot_id } => {
                self.snapshots.insert((table, snapshot_id));
            }
            Note::Rejected(r) => {
                if !self.rejected.iter().any(|x| x.batch_id == r.batch_id) {
                    self.rejected.push(r);
                }
            }
        }
    }

    /// Adds everything of `other` (a failed send given back).
    pub fn merge(&mut self, other: Pending) {
        self.tables.extend(other.tables);
        self.snapshots.extend(other.snapshots);
        for r in other.rejected {
            self.add(Note::Rejected(r));
        }
    }
}

#[derive(Debug)]
struct Slot {
    pending: Pending,
    /// When `pending` last went from empty to non-empty.
    since: Instant,
    last_sent: Option<Instant>,
}

impl Slot {
    fn due(&self, interval: Duration) -> Instant {
        match self.last_sent {
            Some(t) => (t + interval).max(self.since),
            None => self.since,
        }
    }
}

/// Per-device pending receipts and their send times. See the module documentation.
#[derive(Debug)]
pub struct Coalescer {
    interval: Duration,
    devices: HashMap<String, Slot>,
}

impl Coalescer {
    /// A coalescer that lets at most one receipt per device go per `interval`.
    pub fn new(interval: Duration) -> Self {
        Coalescer {
            interval,
            devices: HashMap::new(),
        }
    }

    /// Records what a committed message of `device` touched.
    pub fn note(&mut self, device: &str, note: Note, now: Instant) {
        let slot = self
            .devices
            .entry(device.to_string())
            .or_insert_with(|| Slot {
                pending: Pending::default(),
                since: now,
                last_sent: None,
            });
        if slot.pending.is_empty() {
            slot.since = now;
        }
        slot.pending.add(note);
    }

    /// The earliest instant a pending receipt may go, if any is pending.
    pub fn next_due(&self) -> Option<Instant> {
        self.devices
            .values()
            .filter(|s| !s.pending.is_empty())
            .map(|s| s.due(self.interval))
            .min()
    }

    /// Takes the pending work of every device whose receipt may go at `now`, and records
    /// `now` as their last send. Devices come out in id order.
    pub fn take_due(&mut self, now: Instant) -> Vec<(String, Pending)> {
        let interval = self.interval;
        let mut out: Vec<(String, Pending)> = self
            .devices
            .iter_mut()
            .filter(|(_, s)| !s.pending.is_empty() && s.due(interval) <= now)
            .map(|(d, s)| {
                s.last_sent = Some(now);
                (d.clone(), std::mem::take(&mut s.pending))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Takes every device's pending work regardless of the interval (shutdown).
    pub fn take_all(&mut self) -> Vec<(String, Pending)> {
        let mut out: Vec<(String, Pending)> = self
            .devices
            .drain()
            .filter(|(_, s)| !s.pending.is_empty())
            .map(|(d, s)| (d, s.pending))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Gives back work whose send failed; it goes again one interval after the failed try.
    pub fn retry(&mut self, device: &str, pending: Pending, now: Instant) {
        if pending.is_empty() {
            return;
        }
        let slot = self
            .devices
            .entry(device.to_string())
            .or_insert_with(|| Slot {
                pending: Pending::default(),
                since: now,
                last_sent: Some(now),
            });
        if slot.pending.is_empty() {
            slot.since = now;
        }
        slot.pending.merge(pending);
    }

    /// Drops devices with nothing pending whose last send is at least an interval old, so
    /// memory follows the devices active within the last interval.
    pub fn forget_idle(&mut self, now: Instant) {
        let interval = self.interval;
        self.devices.retain(|_, s| {
            !s.pending.is_empty() || s.last_sent.is_some_and(|t| t + interval > now)
        });
    }

    /// Devices tracked (pending or sent within the last interval).
    pub fn tracked(&self) -> usize {
        self.devices.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn lineage(t: &str) -> Note {
        Note::Lineage { table: t.into() }
    }

    fn rejected(id: &str) -> Note {
        Note::Rejected(RejectedBatch {
            batch_id: id.into(),
            source_table: Some("t".into()),
            code: "malformed_json".into(),
        })
    }

    #[test]
    fn the_first_note_of_a_quiet_device_is_due_at_once() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(SEC);
        assert_eq!(c.next_due(), None);
        c.note("d1", lineage("a"), t0);
        assert_eq!(c.next_due(), Some(t0));
        let taken = c.take_due(t0);
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].0, "d1");
        assert_eq!(taken[0].1.tables, BTreeSet::from(["a".to_string()]));
        assert_eq!(c.next_due(), None);
    }

    #[test]
    fn notes_within_an_interval_of_a_send_are_coalesced_into_one_receipt() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(SEC);
        c.note("d1", lineage("a"), t0);
        c.take_due(t0);
        for (i, t) in ["a", "b", "a", "c"].iter().enumerate() {
            c.note(
                "d1",
                lineage(t),
                t0 + Duration::from_millis(100 * (i as u64 + 1)),
            );
        }
        assert_eq!(c.next_due(), Some(t0 + SEC));
        assert!(c.take_due(t0 + Duration::from_millis(999)).is_empty());
        let taken = c.take_due(t0 + SEC);
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].1.tables.len(), 3);
        // The next one waits a full interval again.
        c.note("d1", lineage("a"), t0 + SEC + Duration::from_millis(1));
        assert_eq!(c.next_due(), Some(t0 + 2 * SEC));
    }

    #[test]
    fn a_note_long_after_the_last_send_is_due_when_it_arrives() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(SEC);
        c.note("d1", lineage("a"), t0);
        c.take_due(t0);
        let later = t0 + 5 * SEC;
        c.note("d1", lineage("a"), later);
        assert_eq!(c.next_due(), Some(later));
    }

    #[test]
    fn devices_are_paced_independently() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(SEC);
        c.note("d1", lineage("a"), t0);
        c.take_due(t0);
        c.note("d1", lineage("a"), t0 + Duration::from_millis(10));
        c.note("d2", lineage("a"), t0 + Duration::from_millis(20));
        let taken = c.take_due(t0 + Duration::from_millis(20));
        assert_eq!(
            taken.iter().map(|(d, _)| d.as_str()).collect::<Vec<_>>(),
            ["d2"]
        );
        assert_eq!(c.next_due(), Some(t0 + SEC));
    }

    #[test]
    fn rejections_and_snapshots_are_kept_once_each_until_sent() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(SEC);
        let id = Uuid::from_u128(7);
        c.note("d1", rejected("b1"), t0);
        c.note("d1", rejected("b1"), t0);
        c.note("d1", rejected("b2"), t0);
        for _ in 0..3 {
            c.note(
                "d1",
                Note::Snapshot {
                    table: "t".into(),
                    snapshot_id: id,
                },
                t0,
            );
        }
        let p = c.take_due(t0).remove(0).1;
        assert_eq!(p.rejected.len(), 2);
        assert_eq!(p.snapshots.len(), 1);
        assert!(p.tables.is_empty());
    }

    #[test]
    fn a_failed_send_goes_again_an_interval_later_with_what_came_since() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(SEC);
        c.note("d1", lineage("a"), t0);
        c.note("d1", rejected("b1"), t0);
        let (device, failed) = c.take_due(t0).remove(0);
        c.note("d1", lineage("b"), t0 + Duration::from_millis(5));
        c.retry(&device, failed, t0 + Duration::from_millis(10));
        assert_eq!(c.next_due(), Some(t0 + SEC));
        let p = c.take_due(t0 + SEC).remove(0).1;
        assert_eq!(p.tables.len(), 2);
        assert_eq!(p.rejected.len(), 1);
    }

    #[test]
    fn shutdown_takes_everything_pending_and_idle_devices_are_forgotten() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(SEC);
        c.note("d1", lineage("a"), t0);
        c.take_due(t0);
        c.note("d1", lineage("a"), t0);
        c.note("d2", lineage("a"), t0);
        c.note("d3", lineage("a"), t0);
        c.take_due(t0);
        assert_eq!(c.take_all().len(), 1, "d1 waited for its interval");
        let mut c = Coalescer::new(SEC);
        c.note("d1", lineage("a"), t0);
        c.take_due(t0);
        c.forget_idle(t0 + Duration::from_millis(500));
        assert_eq!(c.tracked(), 1, "sent within the interval: still paced");
        c.forget_idle(t0 + SEC);
        assert_eq!(c.tracked(), 0);
    }
}
