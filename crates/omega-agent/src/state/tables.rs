//! Per-table state: strategy, schema hash, the two cursors, pause and block flags.

use rusqlite::OptionalExtension;

use super::{StateDb, StateError};

/// One row of the `tables` table of `state.db`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableState {
    /// Table name as stored in the source schema.
    pub name: String,
    /// Table id in `__omega_tables` (None for telemetry tables).
    pub tid: Option<i64>,
    /// `rows`, `telemetry` or `ignore`.
    pub strategy: String,
    /// Hash of the schema last published.
    pub schema_hash: Option<String>,
    /// `last_published_commit_seq`: moves on PUBACK.
    pub published_seq: i64,
    /// Confirmed cursor: moves on a verified receipt (`receipts.md` §5), or with
    /// `published_seq` under `delivery: puback`.
    pub confirmed_seq: i64,
    /// `last_commit_seq` of the last batch built in this epoch: the next batch's
    /// `prev_commit_seq`.
    pub chain_seq: i64,
    /// When `confirmed_seq` last moved (RFC 3339).
    pub confirmed_at: Option<String>,
    /// Paused by a `pause_lineage` control.
    pub paused: bool,
    /// The control's `server_watermark`.
    pub server_watermark: Option<i64>,
    /// The control's reason.
    pub pause_reason: Option<String>,
    /// Epoch in force when paused.
    pub paused_epoch: Option<String>,
    /// Local retention dropped history: snapshot before publishing again.
    pub needs_resnapshot: bool,
    /// Why publishing is blocked (`oversized_row …`), if it is.
    pub blocked: Option<String>,
    /// Why a snapshot of this table is due (`spec/agent.md` §11.1); `None` when none is.
    pub snapshot_due: Option<String>,
    /// H of the last snapshot taken in this epoch: journal entries at or below it are
    /// covered by that snapshot and are neither sent nor kept.
    pub snapshot_floor: i64,
    /// Telemetry: the published cursor (`telemetry::Cursor::encode`); `None` before the
    /// first row.
    pub ts_cursor: Option<String>,
    /// Telemetry: the confirmed cursor.
    pub ts_confirmed: Option<String>,
    /// Telemetry: the next `batch_seq`.
    pub next_batch_seq: Option<i64>,
    /// Telemetry: the `batch_seq` whose end the confirmed cursor is (0: none); a re-send
    /// chains from it (`prev_batch_seq`).
    pub ts_confirmed_seq: i64,
}

const COLUMNS: &str = "name, tid, strategy, schema_hash, published_seq, confirmed_seq, chain_seq, \
    confirmed_at, paused, server_watermark, pause_reason, paused_epoch, needs_resnapshot, blocked, \
    snapshot_due, snapshot_floor, ts_cursor, ts_confirmed, next_batch_seq, ts_confirmed_seq";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TableState> {
    Ok(TableState {
        name: r.get(0)?,
        tid: r.get(1)?,
        strategy: r.get(2)?,
        schema_hash: r.get(3)?,
        published_seq: r.get(4)?,
        confirmed_seq: r.get(5)?,
        chain_seq: r.get(6)?,
        confirmed_at: r.get(7)?,
        paused: r.get::<_, i64>(8)? != 0,
        server_watermark: r.get(9)?,
        pause_reason: r.get(10)?,
        paused_epoch: r.get(11)?,
        needs_resnapshot: r.get::<_, i64>(12)? != 0,
        blocked: r.get(13)?,
        snapshot_due: r.get(14)?,
        snapshot_floor: r.get(15)?,
        ts_cursor: r.get(16)?,
        ts_confirmed: r.get(17)?,
        next_batch_seq: r.get(18)?,
        ts_confirmed_seq: r.get(19)?,
    })
}

impl StateDb {
    /// Every table the agent has state for, by name.
    pub fn tables(&self) -> Result<Vec<TableState>, StateError> {
        let mut stmt = self
            .conn()
            .prepare(&format!("SELECT {COLUMNS} FROM tables ORDER BY name"))
            .map_err(|e| self.err(e))?;
        let rows = stmt.query_map([], from_row).map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// One table's state.
    pub fn table(&self, name: &str) -> Result<Option<TableState>, StateError> {
        self.conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM tables WHERE name = ?1"),
                [name],
                from_row,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Inserts or replaces a table's whole state in one transaction.
    pub fn put_table(&self, t: &TableState) -> Result<(), StateError> {
        self.conn()
            .execute(
                &format!(
                    "INSERT OR REPLACE INTO tables ({COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)"
                ),
                rusqlite::params![
                    t.name,
                    t.tid,
                    t.strategy,
                    t.schema_hash,
                    t.published_seq,
                    t.confirmed_seq,
                    t.chain_seq,
                    t.confirmed_at,
                    t.paused as i64,
                    t.server_watermark,
                    t.pause_reason,
                    t.paused_epoch,
                    t.needs_resnapshot as i64,
                    t.blocked,
                    t.snapshot_due,
                    t.snapshot_floor,
                    t.ts_cursor,
                    t.ts_confirmed,
                    t.next_batch_seq,
                    t.ts_confirmed_seq,
                ],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Moves cursors of several tables in one transaction: `(name, published, confirmed)`.
    /// Cursors only move forward here; rewinds go through [`Self::put_table`].
    pub fn advance_cursors(
        &self,
        moves: &[(String, i64, i64)],
        now: &str,
    ) -> Result<(), StateError> {
        let tx = self
            .conn()
            .unchecked_transaction()
            .map_err(|e| self.err(e))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE tables SET
                       published_seq = max(published_seq, ?2, ?3),
                       confirmed_at = CASE WHEN ?3 > confirmed_seq THEN ?4 ELSE confirmed_at END,
                       confirmed_seq = max(confirmed_seq, ?3)
                     WHERE name = ?1",
                )
                .map_err(|e| self.err(e))?;
            let mut since = tx
                .prepare_cached(
                    "UPDATE tables SET unconfirmed_since = CASE
                       WHEN published_seq > confirmed_seq THEN coalesce(unconfirmed_since, ?2)
                       ELSE NULL END
                     WHERE name = ?1",
                )
                .map_err(|e| self.err(e))?;
            for (name, published, confirmed) in moves {
                stmt.execute(rusqlite::params![name, published, confirmed, now])
                    .map_err(|e| self.err(e))?;
                since
                    .execute(rusqlite::params![name, now])
                    .map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// When each table's oldest unconfirmed change was published (None: all confirmed).
    pub fn unconfirmed_since(&self, name: &str) -> Result<Option<String>, StateError> {
        self.conn()
            .query_row(
                "SELECT unconfirmed_since FROM tables WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()
            .map(Option::flatten)
            .map_err(|e| self.err(e))
    }

    /// Sets or clears why a table's snapshot is due.
    pub fn set_snapshot_due(&self, name: &str, reason: Option<&str>) -> Result<(), StateError> {
        self.conn()
            .execute(
                "UPDATE tables SET snapshot_due = ?2 WHERE name = ?1",
                rusqlite::params![name, reason],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Telemetry cursors, the `batch_seq` the confirmed cursor belongs to, and the next
    /// `batch_seq`, in one statement: each `Some` is written, `None` kept (`Some(None)` clears
    /// a cursor).
    pub fn set_ts_state(
        &self,
        name: &str,
        published: Option<Option<&str>>,
        confirmed: Option<Option<&str>>,
        confirmed_seq: Option<i64>,
        next_batch_seq: Option<i64>,
    ) -> Result<(), StateError> {
        self.conn()
            .execute(
                "UPDATE tables SET
                   ts_cursor = CASE WHEN ?2 THEN ?3 ELSE ts_cursor END,
                   ts_confirmed = CASE WHEN ?4 THEN ?5 ELSE ts_confirmed END,
                   ts_confirmed_seq = coalesce(?6, ts_confirmed_seq),
                   next_batch_seq = coalesce(?7, next_batch_seq)
                 WHERE name = ?1",
                rusqlite::params![
                    name,
                    published.is_some(),
                    published.flatten(),
                    confirmed.is_some(),
                    confirmed.flatten(),
                    confirmed_seq,
                    next_batch_seq
                ],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// The columns JSON recorded for a table's schema hash.
    pub fn schema_columns(&self, table: &str, hash: &str) -> Result<Option<String>, StateError> {
        self.conn()
            .query_row(
                "SELECT columns FROM schemas WHERE table_name = ?1 AND schema_hash = ?2",
                [table, hash],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Records a schema hash and its columns (JSON) the first time it is seen.
    pub fn remember_schema(
        &self,
        table: &str,
        hash: &str,
        columns_json: &str,
        now: &str,
    ) -> Result<bool, StateError> {
        self.conn()
            .execute(
                "INSERT OR IGNORE INTO schemas (table_name, schema_hash, columns, first_seen) VALUES (?1, ?2, ?3, ?4)",
                [table, hash, columns_json, now],
            )
            .map(|n| n > 0)
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_only_move_forward_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let db = StateDb::open(&path).unwrap();
            db.put_table(&TableState {
                name: "t".into(),
                strategy: "rows".into(),
                ..Default::default()
            })
            .unwrap();
            db.advance_cursors(&[("t".into(), 10, 5)], "now").unwrap();
            db.advance_cursors(&[("t".into(), 7, 3)], "later").unwrap();
        }
        let db = StateDb::open(&path).unwrap();
        let t = db.table("t").unwrap().unwrap();
        assert_eq!((t.published_seq, t.confirmed_seq), (10, 5));
        assert_eq!(t.confirmed_at.as_deref(), Some("now"));
    }

    #[test]
    fn unconfirmed_since_is_the_first_publish_not_yet_confirmed() {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(&dir.path().join("s.db")).unwrap();
        db.put_table(&TableState {
            name: "t".into(),
            strategy: "rows".into(),
            ..Default::default()
        })
        .unwrap();
        db.advance_cursors(&[("t".into(), 10, 0)], "t1").unwrap();
        db.advance_cursors(&[("t".into(), 20, 0)], "t2").unwrap();
        assert_eq!(db.unconfirmed_since("t").unwrap().as_deref(), Some("t1"));
        db.advance_cursors(&[("t".into(), 0, 20)], "t3").unwrap();
        assert_eq!(db.unconfirmed_since("t").unwrap(), None);
    }

    #[test]
    fn a_second_lock_on_the_same_state_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let _first = super::super::StateLock::acquire(&path).unwrap();
        let second = super::super::StateLock::acquire(&path);
        assert!(matches!(second, Err(StateError::Locked(_))));
    }

    #[test]
    fn a_foreign_device_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(&dir.path().join("s.db")).unwrap();
        db.claim_device("a").unwrap();
        db.claim_device("a").unwrap();
        assert!(matches!(
            db.claim_device("b"),
            Err(StateError::ForeignDevice { .. })
        ));
    }
}
