//! Batches between publish and PUBACK: an I/O-free state machine.
//!
//! The agent assigns MQTT packet ids itself, so a PUBACK names its batch directly and nothing
//! depends on the order in which the client library writes packets. A table's
//! published cursor moves to the `last_commit_seq` of the longest run of its in-flight
//! batches, oldest first, that all have their PUBACK (`spec/agent.md` §8.5). On a disconnect
//! every unacknowledged batch is kept and re-sent with the same bytes and packet id after the
//! next connect; the MQTT client holds nothing the agent relies on.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

/// One batch handed to the transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// MQTT packet id assigned by [`InFlight::start`].
    pub pkid: u16,
    /// Full topic.
    pub topic: Arc<str>,
    /// The exact bytes; a resend uses the same ones.
    pub payload: bytes::Bytes,
    /// True when this is a resend after a reconnect (MQTT DUP flag).
    pub dup: bool,
}

/// What a batch moves when it is acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchInfo {
    /// Source table.
    pub table: String,
    /// `batch_id`, for logs.
    pub batch_id: String,
    /// `last_commit_seq` (for snapshot parts: H).
    pub last_seq: i64,
    /// Number of row changes.
    pub rows: usize,
    /// For a snapshot part: its snapshot id and part number. Parts move no cursor.
    pub snapshot: Option<PartRef>,
}

/// Names one part of one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartRef {
    /// `snapshot.id`.
    pub id: String,
    /// `snapshot.part`.
    pub part: u32,
}

impl BatchInfo {
    /// The queue this batch waits in: its table's, or for a snapshot part the table's
    /// snapshot lane (see [`snapshot_lane`]).
    fn lane(&self) -> String {
        match self.snapshot {
            Some(_) => snapshot_lane(&self.table),
            None => self.table.clone(),
        }
    }
}

/// The in-flight lane of a table's snapshot parts: they have their own room, so a snapshot
/// never takes the room of the table's live changes (`spec/agent.md` §11.2.6).
pub fn snapshot_lane(table: &str) -> String {
    format!("{table}\u{0}snapshot")
}

/// What a PUBACK resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acked {
    /// The acknowledged prefix of a table's batches grew: its published cursor moves.
    Cursor(CursorMove, Vec<BatchInfo>),
    /// A snapshot part (parts are independent of each other and of the cursor).
    SnapshotPart(BatchInfo),
}

#[derive(Debug)]
struct Entry {
    /// `None` for a message that moves no cursor (a control ACK).
    info: Option<BatchInfo>,
    topic: Arc<str>,
    payload: bytes::Bytes,
    acked: bool,
}

/// The room for new batches at one instant (see [`InFlight::rooms`]).
#[derive(Debug, Clone)]
pub struct Rooms {
    total: usize,
    max_per_table: usize,
    used: HashMap<String, usize>,
}

impl Rooms {
    /// How many more batches `table` may start, as [`InFlight::room_for`] said then.
    pub fn room_for(&self, table: &str) -> usize {
        let used = self.used.get(table).copied().unwrap_or(0);
        self.total.min(self.max_per_table.saturating_sub(used))
    }

    /// How many more batches may start in all.
    pub fn total(&self) -> usize {
        self.total
    }
}

/// A cursor move produced by PUBACKs: table → new published cursor.
pub type CursorMove = (String, i64);

/// The in-flight set.
#[derive(Debug)]
pub struct InFlight {
    max_total: usize,
    max_per_table: usize,
    next_pkid: u16,
    max_pkid: u16,
    by_pkid: BTreeMap<u16, Entry>,
    order: HashMap<String, VecDeque<u16>>,
    others: usize,
}

impl InFlight {
    /// A set allowing `max_total` batches in flight, at most `max_per_table` per table.
    /// Packet ids cycle through `1..=max_pkid` (`max_pkid` ≥ `max_total`).
    pub fn new(max_total: usize, max_per_table: usize, max_pkid: u16) -> Self {
        assert!(max_pkid as usize >= max_total && max_total > 0);
        InFlight {
            max_total,
            max_per_table,
            next_pkid: 1,
            max_pkid,
            by_pkid: BTreeMap::new(),
            order: HashMap::new(),
            others: 0,
        }
    }

    /// Batches in flight.
    pub fn len(&self) -> usize {
        self.by_pkid.len() - self.others
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many more batches `table` may start now.
    pub fn room_for(&self, table: &str) -> usize {
        let total_room = self.max_total.saturating_sub(self.len());
        let table_used = self.order.get(table).map_or(0, VecDeque::len);
        total_room.min(self.max_per_table.saturating_sub(table_used))
    }

    /// A copy of the room per table, to hand to the flush on another thread.
    pub fn rooms(&self) -> Rooms {
        Rooms {
            total: self.room(),
            max_per_table: self.max_per_table,
            used: self
                .order
                .iter()
                .map(|(t, q)| (t.clone(), q.len()))
                .collect(),
        }
    }

    /// Total room left.
    pub fn room(&self) -> usize {
        self.max_total.saturating_sub(self.len())
    }

    /// Registers a batch and returns what to hand to the transport. Callers check
    /// [`Self::room_for`] first.
    pub fn start(&mut self, info: BatchInfo, topic: Arc<str>, payload: bytes::Bytes) -> Outgoing {
        // Batches never exceed `max_total` ≤ `max_pkid`, and other messages are refused before
        // they would take the last ids a batch may need.
        let pkid = self
            .alloc_pkid()
            .expect("a packet id is free for a batch within the room");
        self.order.entry(info.lane()).or_default().push_back(pkid);
        let entry = Entry {
            info: Some(info),
            topic: topic.clone(),
            payload: payload.clone(),
            acked: false,
        };
        self.by_pkid.insert(pkid, entry);
        Outgoing {
            pkid,
            topic,
            payload,
            dup: false,
        }
    }

    /// Registers a message that moves no cursor (a control ACK): it gets a packet id from the
    /// same space and is re-sent after a reconnect like a batch. It does not count against
    /// the room for batches. Returns `None` when too many such messages are in flight (the
    /// cloud resends its control and the agent ACKs again).
    pub fn start_other(&mut self, topic: Arc<str>, payload: bytes::Bytes) -> Option<Outgoing> {
        if self.others + self.max_total >= self.max_pkid as usize {
            return None;
        }
        let pkid = self.alloc_pkid()?;
        let entry = Entry {
            info: None,
            topic: topic.clone(),
            payload: payload.clone(),
            acked: false,
        };
        self.by_pkid.insert(pkid, entry);
        self.others += 1;
        Some(Outgoing {
            pkid,
            topic,
            payload,
            dup: false,
        })
    }

    fn alloc_pkid(&mut self) -> Option<u16> {
        for _ in 0..self.max_pkid {
            let candidate = self.next_pkid;
            self.next_pkid = if self.next_pkid >= self.max_pkid {
                1
            } else {
                self.next_pkid + 1
            };
            if !self.by_pkid.contains_key(&candidate) {
                return Some(candidate);
            }
        }
        None
    }

    /// Handles a PUBACK. Returns the table's new published cursor when the acknowledged prefix
    /// grew, with the batches it covers. An unknown packet id (a late PUBACK from an earlier
    /// connection, already resolved) returns `None`.
    pub fn on_puback(&mut self, pkid: u16) -> Option<Acked> {
        let (table, lane, part) = {
            let entry = self.by_pkid.get_mut(&pkid)?;
            match &entry.info {
                Some(info) => {
                    entry.acked = true;
                    (info.table.clone(), info.lane(), info.snapshot.is_some())
                }
                None => {
                    self.by_pkid.remove(&pkid);
                    self.others -= 1;
                    return None;
                }
            }
        };
        if part {
            let info = self.by_pkid.remove(&pkid).and_then(|e| e.info)?;
            if let Some(queue) = self.order.get_mut(&lane) {
                queue.retain(|p| *p != pkid);
                if queue.is_empty() {
                    self.order.remove(&lane);
                }
            }
            return Some(Acked::SnapshotPart(info));
        }
        let queue = self.order.get_mut(&lane)?;
        let mut done = Vec::new();
        while let Some(&front) = queue.front() {
            if !self.by_pkid.get(&front).is_some_and(|e| e.acked) {
                break;
            }
            queue.pop_front();
            if let Some(info) = self.by_pkid.remove(&front).and_then(|e| e.info) {
                done.push(info);
            }
        }
        if queue.is_empty() {
            self.order.remove(&lane);
        }
        let last = done.iter().map(|b| b.last_seq).max()?;
        Some(Acked::Cursor((table, last), done))
    }

    /// Every unacknowledged batch, oldest first per table, to re-send after a reconnect with
    /// the same bytes and packet id (DUP set).
    pub fn resend_all(&self) -> Vec<Outgoing> {
        let mut out: Vec<Outgoing> = self
            .by_pkid
            .iter()
            .filter(|(_, e)| e.info.is_none())
            .map(|(pkid, e)| Outgoing {
                pkid: *pkid,
                topic: e.topic.clone(),
                payload: e.payload.clone(),
                dup: true,
            })
            .collect();
        let mut tables: Vec<&String> = self.order.keys().collect();
        tables.sort();
        for t in tables {
            for pkid in &self.order[t] {
                let e = &self.by_pkid[pkid];
                if !e.acked {
                    out.push(Outgoing {
                        pkid: *pkid,
                        topic: e.topic.clone(),
                        payload: e.payload.clone(),
                        dup: true,
                    });
                }
            }
        }
        out
    }

    /// Forgets every batch of `table`, snapshot parts included (after a rewind: they will be
    /// rebuilt).
    pub fn forget_table(&mut self, table: &str) {
        for lane in [table.to_string(), snapshot_lane(table)] {
            if let Some(queue) = self.order.remove(&lane) {
                for pkid in queue {
                    self.by_pkid.remove(&pkid);
                }
            }
        }
    }

    /// Forgets every batch (after a connect without a session, when rebuilding from
    /// cursors). Other messages (control ACKs) are kept and re-sent.
    pub fn clear(&mut self) {
        self.by_pkid.retain(|_, e| e.info.is_none());
        self.order.clear();
    }

    /// Tables with batches (or snapshot parts) in flight.
    pub fn tables(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .order
            .values()
            .filter_map(|q| q.front())
            .filter_map(|p| self.by_pkid.get(p)?.info.as_ref().map(|i| i.table.clone()))
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(table: &str, last: i64) -> BatchInfo {
        BatchInfo {
            table: table.into(),
            batch_id: format!("b{last}"),
            last_seq: last,
            rows: 1,
            snapshot: None,
        }
    }

    /// The cursor move of a PUBACK (none for a snapshot part).
    fn ack(f: &mut InFlight, pkid: u16) -> Option<(CursorMove, Vec<BatchInfo>)> {
        match f.on_puback(pkid)? {
            Acked::Cursor(m, done) => Some((m, done)),
            Acked::SnapshotPart(_) => None,
        }
    }

    fn start(f: &mut InFlight, table: &str, last: i64) -> u16 {
        f.start(
            info(table, last),
            Arc::from("t"),
            bytes::Bytes::from_static(b"x"),
        )
        .pkid
    }

    #[test]
    fn an_out_of_order_puback_waits_for_the_older_batch() {
        let mut f = InFlight::new(8, 4, 16);
        let a = start(&mut f, "t", 10);
        let b = start(&mut f, "t", 20);
        assert_eq!(ack(&mut f, b), None);
        let ((table, cursor), done) = ack(&mut f, a).unwrap();
        assert_eq!((table.as_str(), cursor, done.len()), ("t", 20, 2));
        assert!(f.is_empty());
    }

    #[test]
    fn tables_advance_independently() {
        let mut f = InFlight::new(8, 4, 16);
        let a = start(&mut f, "a", 5);
        let _b = start(&mut f, "b", 6);
        assert_eq!(ack(&mut f, a).unwrap().0, ("a".to_string(), 5));
        assert_eq!(f.len(), 1);
    }

    #[test]
    fn an_unknown_puback_changes_nothing() {
        let mut f = InFlight::new(8, 4, 16);
        start(&mut f, "a", 5);
        assert_eq!(ack(&mut f, 9), None);
        assert_eq!(f.len(), 1);
    }

    #[test]
    fn room_is_bounded_per_table_and_in_total() {
        let mut f = InFlight::new(3, 2, 3);
        start(&mut f, "a", 1);
        start(&mut f, "a", 2);
        assert_eq!(f.room_for("a"), 0);
        assert_eq!(f.room_for("b"), 1);
        start(&mut f, "b", 3);
        assert_eq!(f.room_for("c"), 0);
    }

    #[test]
    fn a_room_snapshot_agrees_with_the_set() {
        let mut f = InFlight::new(3, 2, 3);
        start(&mut f, "a", 1);
        start(&mut f, "a", 2);
        let r = f.rooms();
        for t in ["a", "b"] {
            assert_eq!(r.room_for(t), f.room_for(t));
        }
    }

    #[test]
    fn packet_ids_skip_those_still_in_flight() {
        let mut f = InFlight::new(2, 2, 2);
        let a = start(&mut f, "a", 1);
        let b = start(&mut f, "a", 2);
        ack(&mut f, a).unwrap();
        let c = start(&mut f, "a", 3);
        assert_ne!(c, b);
        assert_eq!(c, a);
    }

    #[test]
    fn other_messages_share_packet_ids_but_move_no_cursor() {
        let mut f = InFlight::new(2, 2, 4);
        let ack_id = f
            .start_other(Arc::from("ack"), bytes::Bytes::from_static(b"{}"))
            .unwrap()
            .pkid;
        let a = start(&mut f, "t", 1);
        assert_ne!(ack_id, a);
        assert_eq!(f.len(), 1);
        assert_eq!(f.room(), 1);
        f.clear();
        assert_eq!(f.resend_all().len(), 1, "the ACK survives a session loss");
        assert_eq!(ack(&mut f, ack_id), None);
        assert!(f.resend_all().is_empty());
    }

    #[test]
    fn snapshot_parts_have_their_own_lane_and_move_no_cursor() {
        let mut f = InFlight::new(8, 2, 16);
        let a = start(&mut f, "t", 10);
        let mut part = |n: u32| {
            let mut i = info("t", 50);
            i.snapshot = Some(PartRef {
                id: "s".into(),
                part: n,
            });
            f.start(i, Arc::from("t"), bytes::Bytes::from_static(b"p"))
                .pkid
        };
        let p1 = part(1);
        let p2 = part(2);
        assert_eq!(f.room_for("t"), 1, "parts do not take the table's room");
        assert_eq!(f.room_for(&snapshot_lane("t")), 0);
        assert_eq!(f.tables(), ["t"]);
        // A later part acknowledged first resolves on its own; no cursor moves.
        match f.on_puback(p2) {
            Some(Acked::SnapshotPart(i)) => assert_eq!(i.snapshot.unwrap().part, 2),
            other => panic!("{other:?}"),
        }
        assert_eq!(f.room_for(&snapshot_lane("t")), 1);
        assert!(matches!(f.on_puback(p1), Some(Acked::SnapshotPart(_))));
        assert_eq!(ack(&mut f, a).unwrap().0, ("t".to_string(), 10));
        assert!(f.is_empty());
    }

    #[test]
    fn resend_keeps_bytes_and_ids_of_unacked_batches_only() {
        let mut f = InFlight::new(8, 4, 16);
        let a = start(&mut f, "t", 1);
        let b = start(&mut f, "t", 2);
        ack(&mut f, b);
        let again = f.resend_all();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].pkid, a);
        assert!(again[0].dup);
    }
}

/// A model check in the style of vector's disk buffer: random starts, PUBACKs (in any order,
/// duplicated, unknown), session losses and resends applied to the real [`InFlight`] and to a
/// plain model; the published cursor must always equal the model's longest acknowledged
/// prefix, never move backwards, and never pass a batch whose PUBACK did not arrive.
#[cfg(test)]
mod model {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Debug, Clone)]
    enum Action {
        Start(u8),
        Ack(u8),
        LoseSession,
        Resend,
    }

    fn action() -> impl Strategy<Value = Action> {
        prop_oneof![
            4 => (0u8..3).prop_map(Action::Start),
            4 => any::<u8>().prop_map(Action::Ack),
            1 => Just(Action::LoseSession),
            1 => Just(Action::Resend),
        ]
    }

    proptest! {
        #[test]
        fn cursor_is_the_longest_acknowledged_prefix(actions in proptest::collection::vec(action(), 1..200)) {
            let mut real = InFlight::new(6, 3, 8);
            // Model: per table, the batches in order with their acked flag; the cursor.
            let mut model: BTreeMap<String, Vec<(u16, i64, bool)>> = BTreeMap::new();
            let mut cursor: BTreeMap<String, i64> = BTreeMap::new();
            let mut seq = 0i64;
            for a in actions {
                match a {
                    Action::Start(t) => {
                        let table = format!("t{t}");
                        if real.room_for(&table) == 0 {
                            continue;
                        }
                        seq += 1;
                        let info = BatchInfo { table: table.clone(), batch_id: seq.to_string(), last_seq: seq, rows: 1, snapshot: None };
                        let out = real.start(info, Arc::from("x"), bytes::Bytes::new());
                        prop_assert!(model.values().flatten().all(|(p, _, _)| *p != out.pkid), "packet id reused while in flight");
                        model.entry(table).or_default().push((out.pkid, seq, false));
                    }
                    Action::Ack(n) => {
                        let pkid = u16::from(n % 10);
                        let moved = match real.on_puback(pkid) {
                            Some(Acked::Cursor(m, done)) => Some((m, done)),
                            _ => None,
                        };
                        let mut expect = None;
                        for (table, q) in model.iter_mut() {
                            if let Some(e) = q.iter_mut().find(|e| e.0 == pkid) {
                                e.2 = true;
                                let done = q.iter().take_while(|e| e.2).count();
                                if done > 0 {
                                    let last = q[done - 1].1;
                                    q.drain(..done);
                                    expect = Some((table.clone(), last));
                                }
                                break;
                            }
                        }
                        prop_assert_eq!(moved.as_ref().map(|(m, _)| m.clone()), expect.clone());
                        if let Some((t, c)) = expect {
                            let prev = cursor.insert(t, c).unwrap_or(0);
                            prop_assert!(c > prev, "cursor moved backwards");
                        }
                    }
                    Action::LoseSession => {
                        real.clear();
                        model.clear();
                    }
                    Action::Resend => {
                        let again: Vec<u16> = real.resend_all().iter().map(|o| o.pkid).collect();
                        let unacked: std::collections::BTreeSet<u16> =
                            model.values().flatten().filter(|e| !e.2).map(|e| e.0).collect();
                        prop_assert_eq!(again.iter().copied().collect::<std::collections::BTreeSet<_>>(), unacked);
                    }
                }
                prop_assert_eq!(real.len(), model.values().map(Vec::len).sum::<usize>());
            }
        }
    }
}
