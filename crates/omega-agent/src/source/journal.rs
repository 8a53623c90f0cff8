//! `__omega_journal`: one key-only entry per captured change.
//!
//! `seq INTEGER PRIMARY KEY` is the change's `commit_seq`. SQLite gives a new row
//! `max(seq) + 1`, so as long as the entry with the greatest `seq` is never deleted the
//! counter never goes back while the file lives (`spec/agent.md` §7.1.2) — pruning keeps that
//! one entry. `tid` names the table (see [`super::instance`]), `op` is 1 insert, 2 update,
//! 3 delete, and `k1`…`k8` hold the key values in untyped columns, so every storage class is
//! kept exactly.

use rusqlite::{Connection, params_from_iter};

use super::cell::Cell;

use crate::capture::spec::MAX_KEY_COLUMNS;

/// Name of the journal table.
pub const JOURNAL_TABLE: &str = "__omega_journal";
/// `op` of an insert entry.
pub const OP_INSERT: i64 = 1;
/// `op` of an update entry.
pub const OP_UPDATE: i64 = 2;
/// `op` of a delete entry.
pub const OP_DELETE: i64 = 3;

/// `op` of the position marker written into an empty journal (`tid` 0, no table).
pub const OP_MARKER: i64 = 0;

/// Creates the journal if it does not exist. An empty journal gets a position marker at
/// `seq` 1, so the position is never 0: a snapshot of a table with no captured change yet
/// still has an H ≥ 1 (`commit_seq` starts at 1, `protocol.md` §8) below every later change.
pub fn create(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS __omega_journal (
            seq INTEGER PRIMARY KEY,
            tid INTEGER NOT NULL,
            op INTEGER NOT NULL,
            k1, k2, k3, k4, k5, k6, k7, k8
        );
        INSERT INTO __omega_journal (seq, tid, op)
            SELECT 1, 0, 0 WHERE NOT EXISTS (SELECT 1 FROM __omega_journal);",
    )
}

/// Whether the journal exists.
pub fn exists(conn: &Connection) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = '__omega_journal'",
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
}

/// One journal entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// `commit_seq`.
    pub seq: i64,
    /// Table id.
    pub tid: i64,
    /// [`OP_INSERT`], [`OP_UPDATE`] or [`OP_DELETE`].
    pub op: i64,
    /// Key values in key order (as many as the table has key columns; the rest are dropped).
    pub key: Vec<Cell>,
}

/// The greatest `seq` in the journal (0 when empty): the source's position.
pub fn max_seq(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT coalesce(max(seq), 0) FROM __omega_journal",
        [],
        |r| r.get(0),
    )
}

/// Reads up to `limit` entries with `seq > after`, in `seq` order. `key_len(tid)` says how
/// many key slots to keep for a table (`None`: keep none, the table is not enrolled).
pub fn read_after(
    conn: &Connection,
    after: i64,
    limit: usize,
    key_len: impl Fn(i64) -> Option<usize>,
) -> rusqlite::Result<Vec<Entry>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, tid, op, k1, k2, k3, k4, k5, k6, k7, k8 FROM __omega_journal
         WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let mut rows = stmt.query(rusqlite::params![after, limit as i64])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let tid: i64 = r.get(1)?;
        let n = key_len(tid).unwrap_or(0).min(MAX_KEY_COLUMNS);
        let mut key = Vec::with_capacity(n);
        for i in 0..n {
            key.push(Cell::from_ref(r.get_ref(3 + i)?));
        }
        out.push(Entry {
            seq: r.get(0)?,
            tid,
            op: r.get(2)?,
            key,
        });
    }
    Ok(out)
}

/// Reads up to `limit` entries of one table with `seq > after`, in `seq` order.
pub fn read_table_after(
    conn: &Connection,
    tid: i64,
    after: i64,
    limit: usize,
    key_len: usize,
) -> rusqlite::Result<Vec<Entry>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, tid, op, k1, k2, k3, k4, k5, k6, k7, k8 FROM __omega_journal
         WHERE seq > ?1 AND tid = ?2 ORDER BY seq LIMIT ?3",
    )?;
    let mut rows = stmt.query(rusqlite::params![after, tid, limit as i64])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let n = key_len.min(MAX_KEY_COLUMNS);
        let mut key = Vec::with_capacity(n);
        for i in 0..n {
            key.push(Cell::from_ref(r.get_ref(3 + i)?));
        }
        out.push(Entry {
            seq: r.get(0)?,
            tid,
            op: r.get(2)?,
            key,
        });
    }
    Ok(out)
}

/// Per-table pending counts and stored bytes (keys plus a fixed 32-byte overhead per entry,
/// `spec/agent.md` §14.1) of entries above each table's cursor.
pub fn pending_by_table(
    conn: &Connection,
    cursors: &[(i64, i64)],
) -> rusqlite::Result<Vec<(i64, i64, i64)>> {
    let mut out = Vec::with_capacity(cursors.len());
    let mut stmt = conn.prepare_cached(
        "SELECT count(*), coalesce(sum(32 + coalesce(length(k1),0) + coalesce(length(k2),0)
                + coalesce(length(k3),0) + coalesce(length(k4),0) + coalesce(length(k5),0)
                + coalesce(length(k6),0) + coalesce(length(k7),0) + coalesce(length(k8),0)), 0)
         FROM __omega_journal WHERE tid = ?1 AND seq > ?2",
    )?;
    for &(tid, cursor) in cursors {
        let (n, bytes) = stmt.query_row([tid, cursor], |r| Ok((r.get(0)?, r.get(1)?)))?;
        out.push((tid, n, bytes));
    }
    Ok(out)
}

/// The `seq` up to which a table's oldest entries above `after` add up to at least `bytes`
/// stored bytes (size as in [`pending_by_table`]), with their count and bytes; `None` when
/// the table has no entry above `after`. Used by local retention to pick what to drop.
pub fn oldest_covering(
    conn: &Connection,
    tid: i64,
    after: i64,
    bytes: i64,
) -> rusqlite::Result<Option<(i64, i64, i64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, 32 + coalesce(length(k1),0) + coalesce(length(k2),0)
                + coalesce(length(k3),0) + coalesce(length(k4),0) + coalesce(length(k5),0)
                + coalesce(length(k6),0) + coalesce(length(k7),0) + coalesce(length(k8),0)
         FROM __omega_journal WHERE tid = ?1 AND seq > ?2 ORDER BY seq",
    )?;
    let mut rows = stmt.query([tid, after])?;
    let (mut upto, mut n, mut sum) = (None, 0i64, 0i64);
    while let Some(r) = rows.next()? {
        upto = Some(r.get::<_, i64>(0)?);
        n += 1;
        sum += r.get::<_, i64>(1)?;
        if sum >= bytes {
            break;
        }
    }
    Ok(upto.map(|s| (s, n, sum)))
}

/// Deletes up to `chunk` entries that `prunable(tid)` allows (`Some(c)`: entries with
/// `seq <= c`; `None`: every entry of that table, for tables no longer enrolled up to
/// `unknown_upto`), never the entry with the greatest `seq`. Runs as one short write
/// transaction that gives up at once when the application holds the write lock. Returns the
/// number deleted, or `None` when the source was busy.
pub fn prune_chunk(
    conn: &Connection,
    cursors: &[(i64, i64)],
    unknown_upto: i64,
    chunk: usize,
) -> rusqlite::Result<Option<usize>> {
    let mut case = String::from("CASE tid");
    let mut params: Vec<i64> = Vec::new();
    for &(tid, cursor) in cursors {
        case.push_str(&format!(" WHEN {tid} THEN seq <= ?{}", params.len() + 1));
        params.push(cursor);
    }
    case.push_str(&format!(" ELSE seq <= ?{} END", params.len() + 1));
    params.push(unknown_upto);
    let sql = format!(
        "DELETE FROM __omega_journal WHERE seq IN (
            SELECT seq FROM __omega_journal
            WHERE seq < (SELECT max(seq) FROM __omega_journal) AND ({case})
            ORDER BY seq LIMIT {chunk})"
    );
    // Never wait for the application: try once, and come back at the next tick if busy.
    conn.busy_timeout(std::time::Duration::ZERO)?;
    let result = (|| {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        match conn.execute(&sql, params_from_iter(params.iter())) {
            Ok(n) => {
                conn.execute_batch("COMMIT")?;
                Ok(n)
            }
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    })();
    conn.busy_timeout(super::AGENT_BUSY_TIMEOUT)?;
    match result {
        Ok(n) => Ok(Some(n)),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal_with(n: i64) -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        create(&conn).unwrap();
        // These tests number entries from 1: drop the position marker.
        conn.execute("DELETE FROM __omega_journal", []).unwrap();
        for i in 0..n {
            conn.execute(
                "INSERT INTO __omega_journal(tid, op, k1) VALUES (?1, 1, ?2)",
                rusqlite::params![i % 2 + 1, i],
            )
            .unwrap();
        }
        conn
    }

    #[test]
    fn pruning_keeps_the_greatest_entry_so_seq_never_goes_back() {
        let conn = journal_with(10);
        let n = prune_chunk(&conn, &[(1, 100), (2, 100)], 100, 500)
            .unwrap()
            .unwrap();
        assert_eq!(n, 9);
        assert_eq!(max_seq(&conn).unwrap(), 10);
        conn.execute(
            "INSERT INTO __omega_journal(tid, op, k1) VALUES (1, 1, 0)",
            [],
        )
        .unwrap();
        assert_eq!(max_seq(&conn).unwrap(), 11);
    }

    #[test]
    fn pruning_respects_each_tables_cursor_and_chunk() {
        let conn = journal_with(10); // seq 1..10; tid 1 on odd seqs, tid 2 on even
        assert_eq!(
            prune_chunk(&conn, &[(1, 5), (2, 0)], 0, 2).unwrap(),
            Some(2)
        );
        assert_eq!(
            prune_chunk(&conn, &[(1, 5), (2, 0)], 0, 500).unwrap(),
            Some(1)
        );
        let left: Vec<i64> = read_after(&conn, 0, 100, |_| Some(1))
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(left, vec![2, 4, 6, 7, 8, 9, 10]);
    }

    #[test]
    fn a_new_journal_starts_at_position_1_and_create_again_adds_nothing() {
        let conn = Connection::open_in_memory().unwrap();
        create(&conn).unwrap();
        create(&conn).unwrap();
        assert_eq!(max_seq(&conn).unwrap(), 1);
        conn.execute(
            "INSERT INTO __omega_journal(tid, op, k1) VALUES (1, 1, 0)",
            [],
        )
        .unwrap();
        assert_eq!(
            max_seq(&conn).unwrap(),
            2,
            "the first change is above H = 1"
        );
    }

    #[test]
    fn key_values_keep_their_storage_class() {
        let conn = Connection::open_in_memory().unwrap();
        create(&conn).unwrap();
        conn.execute(
            "INSERT INTO __omega_journal(tid, op, k1, k2, k3) VALUES (1, 1, ?1, ?2, ?3)",
            rusqlite::params![i64::MAX, vec![0u8, 255], f64::INFINITY],
        )
        .unwrap();
        let e = &read_after(&conn, 1, 10, |_| Some(3)).unwrap()[0];
        assert_eq!(
            e.key,
            vec![
                Cell::Integer(i64::MAX),
                Cell::Blob(vec![0, 255]),
                Cell::Real(f64::INFINITY)
            ]
        );
    }
}
