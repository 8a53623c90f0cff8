//! Snapshot spools (`spec/agent.md` §11.2): the parts of a snapshot, written in full before
//! the first one is published, sent in order and deleted once the cloud confirms the snapshot
//! complete (or, under `delivery: puback`, once every part has its PUBACK).

use rusqlite::OptionalExtension;

use super::{StateDb, StateError};

/// One snapshot held in `state.db`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolHeader {
    /// `snapshot.id`.
    pub snapshot_id: String,
    /// Source table.
    pub table: String,
    /// Epoch of its parts.
    pub journal_epoch: String,
    /// H: the `commit_seq` of every row in it.
    pub h: i64,
    /// Number of parts.
    pub parts: u32,
    /// Rows in all parts.
    pub rows: i64,
    /// Why it was taken.
    pub reason: String,
    /// When it was taken (RFC 3339).
    pub created_at: String,
    /// Parts with their PUBACK.
    pub parts_published: u32,
}

/// One part, ready to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolPart {
    /// 1, 2, 3 …
    pub part: u32,
    /// Its `batch_id` (the same on every send).
    pub batch_id: String,
    /// Rows in it.
    pub rows: usize,
    /// The JSON payload.
    pub payload: Vec<u8>,
}

/// A transaction writing one snapshot's spool; nothing is visible until [`SpoolWriter::commit`].
#[derive(Debug)]
pub struct SpoolWriter<'a> {
    db: &'a StateDb,
    tx: rusqlite::Transaction<'a>,
    header: SpoolHeader,
}

impl SpoolWriter<'_> {
    /// Appends the next part.
    pub fn push(&mut self, part: &SpoolPart) -> Result<(), StateError> {
        self.tx
            .prepare_cached(
                "INSERT INTO snapshot_parts (snapshot_id, part, batch_id, rows, payload)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut s| {
                s.execute(rusqlite::params![
                    self.header.snapshot_id,
                    part.part,
                    part.batch_id,
                    part.rows as i64,
                    part.payload
                ])
            })
            .map_err(|e| self.db.err(e))?;
        self.header.parts = self.header.parts.max(part.part);
        self.header.rows += part.rows as i64;
        Ok(())
    }

    /// Records the header, replaces any earlier spool of the table, applies `after` (the
    /// table's state change) in the same transaction, and commits.
    pub fn commit(
        self,
        after: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<()>,
    ) -> Result<SpoolHeader, StateError> {
        let h = &self.header;
        let run = || -> rusqlite::Result<()> {
            delete_of_table(&self.tx, &h.table, Some(&h.snapshot_id))?;
            self.tx.execute(
                "INSERT INTO snapshots (snapshot_id, table_name, journal_epoch, h, parts, rows, reason, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                rusqlite::params![
                    h.snapshot_id,
                    h.table,
                    h.journal_epoch,
                    h.h,
                    h.parts,
                    h.rows,
                    h.reason,
                    h.created_at
                ],
            )?;
            after(&self.tx)
        };
        run().map_err(|e| self.db.err(e))?;
        self.tx.commit().map_err(|e| self.db.err(e))?;
        Ok(self.header)
    }
}

fn delete_of_table(
    conn: &rusqlite::Connection,
    table: &str,
    except: Option<&str>,
) -> rusqlite::Result<()> {
    let except = except.unwrap_or("");
    conn.execute(
        "DELETE FROM snapshot_parts WHERE snapshot_id IN
           (SELECT snapshot_id FROM snapshots WHERE table_name = ?1 AND snapshot_id <> ?2)",
        [table, except],
    )?;
    conn.execute(
        "DELETE FROM snapshots WHERE table_name = ?1 AND snapshot_id <> ?2",
        [table, except],
    )?;
    Ok(())
}

const HEADER: &str = "SELECT s.snapshot_id, s.table_name, s.journal_epoch, s.h, s.parts, s.rows,
      s.reason, s.created_at,
      (SELECT count(*) FROM snapshot_parts p WHERE p.snapshot_id = s.snapshot_id AND p.published)
    FROM snapshots s";

fn header(r: &rusqlite::Row<'_>) -> rusqlite::Result<SpoolHeader> {
    Ok(SpoolHeader {
        snapshot_id: r.get(0)?,
        table: r.get(1)?,
        journal_epoch: r.get(2)?,
        h: r.get(3)?,
        parts: r.get(4)?,
        rows: r.get(5)?,
        reason: r.get(6)?,
        created_at: r.get(7)?,
        parts_published: r.get(8)?,
    })
}

impl StateDb {
    /// Starts writing the spool of a new snapshot.
    pub fn spool_writer(
        &self,
        snapshot_id: &str,
        table: &str,
        journal_epoch: &str,
        h: i64,
        reason: &str,
        created_at: &str,
    ) -> Result<SpoolWriter<'_>, StateError> {
        let tx = self
            .conn()
            .unchecked_transaction()
            .map_err(|e| self.err(e))?;
        Ok(SpoolWriter {
            db: self,
            tx,
            header: SpoolHeader {
                snapshot_id: snapshot_id.to_string(),
                table: table.to_string(),
                journal_epoch: journal_epoch.to_string(),
                h,
                parts: 0,
                rows: 0,
                reason: reason.to_string(),
                created_at: created_at.to_string(),
                parts_published: 0,
            },
        })
    }

    /// Every spool, by table. A `state.db` older than the spool tables has none.
    pub fn spools(&self) -> Result<Vec<SpoolHeader>, StateError> {
        let mut stmt = match self
            .conn()
            .prepare(&format!("{HEADER} ORDER BY s.table_name"))
        {
            Ok(s) => s,
            Err(e) if e.to_string().contains("no such table") => return Ok(Vec::new()),
            Err(e) => return Err(self.err(e)),
        };
        let rows = stmt.query_map([], header).map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// One spool.
    pub fn spool(&self, snapshot_id: &str) -> Result<Option<SpoolHeader>, StateError> {
        self.conn()
            .query_row(
                &format!("{HEADER} WHERE s.snapshot_id = ?1"),
                [snapshot_id],
                header,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Up to `limit` parts from number `from` on, in order.
    pub fn spool_parts(
        &self,
        snapshot_id: &str,
        from: u32,
        limit: usize,
    ) -> Result<Vec<SpoolPart>, StateError> {
        let mut stmt = self
            .conn()
            .prepare_cached(
                "SELECT part, batch_id, rows, payload FROM snapshot_parts
                 WHERE snapshot_id = ?1 AND part >= ?2 ORDER BY part LIMIT ?3",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(rusqlite::params![snapshot_id, from, limit as i64], |r| {
                Ok(SpoolPart {
                    part: r.get(0)?,
                    batch_id: r.get(1)?,
                    rows: r.get::<_, i64>(2)? as usize,
                    payload: r.get(3)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// The first part without its PUBACK (`None` when all have one).
    pub fn spool_first_unpublished(&self, snapshot_id: &str) -> Result<Option<u32>, StateError> {
        self.conn()
            .query_row(
                "SELECT min(part) FROM snapshot_parts WHERE snapshot_id = ?1 AND NOT published",
                [snapshot_id],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    /// Records a part's PUBACK.
    pub fn spool_part_published(&self, snapshot_id: &str, part: u32) -> Result<(), StateError> {
        self.conn()
            .execute(
                "UPDATE snapshot_parts SET published = 1 WHERE snapshot_id = ?1 AND part = ?2",
                rusqlite::params![snapshot_id, part],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Deletes a spool (the snapshot is complete, or superseded).
    pub fn spool_delete(&self, snapshot_id: &str) -> Result<(), StateError> {
        let tx = self
            .conn()
            .unchecked_transaction()
            .map_err(|e| self.err(e))?;
        tx.execute(
            "DELETE FROM snapshot_parts WHERE snapshot_id = ?1",
            [snapshot_id],
        )
        .map_err(|e| self.err(e))?;
        tx.execute(
            "DELETE FROM snapshots WHERE snapshot_id = ?1",
            [snapshot_id],
        )
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    /// Deletes every spool of `table`.
    pub fn spool_delete_table(&self, table: &str) -> Result<(), StateError> {
        delete_of_table(self.conn(), table, None).map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(n: u32) -> SpoolPart {
        SpoolPart {
            part: n,
            batch_id: format!("b{n}"),
            rows: 2,
            payload: vec![n as u8; 3],
        }
    }

    #[test]
    fn a_spool_is_invisible_until_committed_and_replaces_the_tables_earlier_one() {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(&dir.path().join("s.db")).unwrap();
        {
            let mut w = db.spool_writer("s1", "t", "e", 10, "test", "now").unwrap();
            w.push(&part(1)).unwrap();
            // Dropped without commit: a crash before the spool is complete.
        }
        assert!(db.spools().unwrap().is_empty());
        let mut w = db.spool_writer("s1", "t", "e", 10, "test", "now").unwrap();
        w.push(&part(1)).unwrap();
        w.push(&part(2)).unwrap();
        let h = w.commit(|_| Ok(())).unwrap();
        assert_eq!((h.parts, h.rows), (2, 4));
        let mut w = db.spool_writer("s2", "t", "e", 20, "test", "now").unwrap();
        w.push(&part(1)).unwrap();
        w.commit(|_| Ok(())).unwrap();
        let all = db.spools().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!((all[0].snapshot_id.as_str(), all[0].h), ("s2", 20));
        assert!(db.spool_parts("s1", 1, 10).unwrap().is_empty());
    }

    #[test]
    fn parts_are_read_in_order_and_their_pubacks_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        {
            let db = StateDb::open(&path).unwrap();
            let mut w = db.spool_writer("s", "t", "e", 5, "test", "now").unwrap();
            for n in 1..=3 {
                w.push(&part(n)).unwrap();
            }
            w.commit(|_| Ok(())).unwrap();
            db.spool_part_published("s", 1).unwrap();
        }
        let db = StateDb::open(&path).unwrap();
        assert_eq!(db.spool_first_unpublished("s").unwrap(), Some(2));
        let parts = db.spool_parts("s", 2, 10).unwrap();
        assert_eq!(parts.iter().map(|p| p.part).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(db.spool("s").unwrap().unwrap().parts_published, 1);
        db.spool_part_published("s", 2).unwrap();
        db.spool_part_published("s", 3).unwrap();
        assert_eq!(db.spool_first_unpublished("s").unwrap(), None);
        db.spool_delete("s").unwrap();
        assert!(db.spool("s").unwrap().is_none());
    }
}
