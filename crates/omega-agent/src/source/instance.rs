//! `__omega_db_instance` (who this file is, and its current epoch) and `__omega_tables`
//! (stable small ids for table names, used by triggers and journal entries).

use rusqlite::{Connection, OptionalExtension};

/// The instance row of a source file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// UUIDv7 written once when the agent first initialises the file.
    pub instance_id: String,
    /// When it was written (RFC 3339).
    pub created_at: String,
    /// The journal epoch in force.
    pub journal_epoch: String,
}

/// Creates `__omega_db_instance` and `__omega_tables` if missing.
pub fn create(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS __omega_db_instance (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            instance_id TEXT NOT NULL,
            created_at TEXT NOT NULL,
            journal_epoch TEXT NOT NULL
        );
        CREATE TABLE IF NOT EXISTS __omega_tables (
            tid INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE
        );",
    )
}

/// Reads the instance row, if the file has one.
pub fn read(conn: &Connection) -> rusqlite::Result<Option<Instance>> {
    let exists: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = '__omega_db_instance'",
        [],
        |r| r.get(0),
    )?;
    if exists == 0 {
        return Ok(None);
    }
    conn.query_row(
        "SELECT instance_id, created_at, journal_epoch FROM __omega_db_instance WHERE id = 1",
        [],
        |r| {
            Ok(Instance {
                instance_id: r.get(0)?,
                created_at: r.get(1)?,
                journal_epoch: r.get(2)?,
            })
        },
    )
    .optional()
}

/// Writes (or replaces) the instance row.
pub fn write(conn: &Connection, inst: &Instance) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO __omega_db_instance (id, instance_id, created_at, journal_epoch)
         VALUES (1, ?1, ?2, ?3)
         ON CONFLICT (id) DO UPDATE SET instance_id = excluded.instance_id,
           created_at = excluded.created_at, journal_epoch = excluded.journal_epoch",
        rusqlite::params![inst.instance_id, inst.created_at, inst.journal_epoch],
    )?;
    Ok(())
}

/// The id of `table`, assigning the next free one on first use. Ids are never reused for
/// another name, so journal entries of a dropped table can never be read as another's.
pub fn table_id(conn: &Connection, table: &str) -> rusqlite::Result<i64> {
    if let Some(tid) = conn
        .query_row(
            "SELECT tid FROM __omega_tables WHERE name = ?1",
            [table],
            |r| r.get(0),
        )
        .optional()?
    {
        return Ok(tid);
    }
    conn.execute(
        "INSERT INTO __omega_tables (tid, name)
         VALUES ((SELECT coalesce(max(tid), 0) + 1 FROM __omega_tables), ?1)",
        [table],
    )?;
    conn.query_row(
        "SELECT tid FROM __omega_tables WHERE name = ?1",
        [table],
        |r| r.get(0),
    )
}

/// Gives `table` a fresh id (after a key change or a rebuild, so that entries journaled under
/// the old layout are never mapped to the new one).
pub fn renew_table_id(conn: &Connection, table: &str) -> rusqlite::Result<i64> {
    conn.execute("DELETE FROM __omega_tables WHERE name = ?1", [table])?;
    conn.execute(
        "INSERT INTO __omega_tables (tid, name)
         VALUES ((SELECT coalesce(max(tid), 0) + 1 FROM __omega_tables), ?1)",
        [table],
    )?;
    conn.query_row(
        "SELECT tid FROM __omega_tables WHERE name = ?1",
        [table],
        |r| r.get(0),
    )
}
