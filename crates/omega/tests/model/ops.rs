//! The operations a case is made of, and their proptest strategies.

use omega_agent::engine::Delivery;
use proptest::prelude::*;

/// One row change inside an application transaction.
#[derive(Debug, Clone)]
pub struct RowOp {
    /// Which key of the table (a small domain, so rows are hit again).
    pub key: u8,
    /// What the application does with it.
    pub kind: RowKind,
    /// Per column (in order, added columns included): NULL, or the seed of a value.
    pub values: Vec<Option<u8>>,
}

/// A row change.
#[derive(Debug, Clone, Copy)]
pub enum RowKind {
    /// `INSERT`, or `UPDATE` of every non-key column when the row exists.
    Upsert,
    /// `INSERT OR REPLACE` (SQLite deletes the old row without a delete trigger).
    Replace,
    /// `DELETE` (nothing when the row does not exist).
    Delete,
}

/// One step of a case.
#[derive(Debug, Clone)]
pub enum Op {
    /// An application transaction of 1..=5 row changes over the tables (index mod 3).
    Txn(Vec<(u8, RowOp)>),
    /// Waits until the mirror equals the model for every table not paused.
    Settle,
    /// Waits `after_ms`, then cuts the agent's broker connection (PUBLISHes in flight lose
    /// their PUBACK; the agent reconnects and sends again).
    Cut { after_ms: u8 },
    /// Waits `after_ms`, then crashes the agent and starts it again from the same files.
    Crash { after_ms: u8 },
    /// Publishes a batch the agent sent earlier (index mod their number) again, from a
    /// test client: a duplicate delivery.
    Redeliver(u16),
    /// An operator pause of a table (index mod 3).
    Pause(u8),
    /// An operator resume of a table (index mod 3).
    Resume(u8),
    /// `ALTER TABLE … ADD COLUMN` (nullable; at most 2 per table) on a table (index mod 3).
    AddColumn(u8),
    /// Creates the third table (once).
    NewTable,
}

/// The delivery rule of a case.
#[derive(Debug, Clone, Copy)]
pub enum DeliveryRule {
    /// `delivery: receipts`.
    Receipts,
    /// `delivery: puback`.
    Puback,
}

impl From<DeliveryRule> for Delivery {
    fn from(d: DeliveryRule) -> Delivery {
        match d {
            DeliveryRule::Receipts => Delivery::Receipts,
            DeliveryRule::Puback => Delivery::Puback,
        }
    }
}

fn row_op() -> impl Strategy<Value = RowOp> {
    (
        0u8..6,
        prop_oneof![
            6 => Just(RowKind::Upsert),
            2 => Just(RowKind::Replace),
            3 => Just(RowKind::Delete),
        ],
        prop::collection::vec(prop::option::weighted(0.8, any::<u8>()), 6),
    )
        .prop_map(|(key, kind, values)| RowOp { key, kind, values })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => prop::collection::vec((0u8..3, row_op()), 1..=5).prop_map(Op::Txn),
        2 => Just(Op::Settle),
        2 => (0u8..150).prop_map(|after_ms| Op::Cut { after_ms }),
        2 => (0u8..150).prop_map(|after_ms| Op::Crash { after_ms }),
        2 => any::<u16>().prop_map(Op::Redeliver),
        1 => (0u8..3).prop_map(Op::Pause),
        1 => (0u8..3).prop_map(Op::Resume),
        1 => (0u8..3).prop_map(Op::AddColumn),
        1 => Just(Op::NewTable),
    ]
}

/// A case: the delivery rule and 1..=24 operations.
pub fn case() -> impl Strategy<Value = (DeliveryRule, Vec<Op>)> {
    (
        prop_oneof![Just(DeliveryRule::Receipts), Just(DeliveryRule::Puback)],
        prop::collection::vec(op(), 1..=24),
    )
}
