//! Embedded, named migrations of `state.db`, tracked in `PRAGMA user_version`.

use std::path::Path;

use rusqlite::Connection;

use super::StateError;

/// One upgrade step: from `version - 1` to `version`.
struct Migration {
    version: i64,
    name: &'static str,
    sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
    version: 1,
    name: "initial layout",
    sql: "
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE epochs (journal_epoch TEXT PRIMARY KEY, started_at TEXT NOT NULL, reason TEXT NOT NULL);
        CREATE TABLE tables (
            name TEXT PRIMARY KEY,
            tid INTEGER,
            strategy TEXT NOT NULL,
            schema_hash TEXT,
            published_seq INTEGER NOT NULL DEFAULT 0,
            confirmed_seq INTEGER NOT NULL DEFAULT 0,
            chain_seq INTEGER NOT NULL DEFAULT 0,
            confirmed_at TEXT,
            paused INTEGER NOT NULL DEFAULT 0,
            server_watermark INTEGER,
            pause_reason TEXT,
            paused_epoch TEXT,
            needs_resnapshot INTEGER NOT NULL DEFAULT 0,
            blocked TEXT,
            ts_cursor TEXT,
            next_batch_seq INTEGER
        );
        CREATE TABLE schemas (
            table_name TEXT NOT NULL,
            schema_hash TEXT NOT NULL,
            columns TEXT NOT NULL,
            first_seen TEXT NOT NULL,
            PRIMARY KEY (table_name, schema_hash)
        );
        CREATE TABLE controls (
            control_id TEXT PRIMARY KEY,
            control_seq INTEGER NOT NULL,
            kind TEXT NOT NULL,
            source_table TEXT,
            server_watermark INTEGER,
            received_at TEXT NOT NULL,
            status TEXT NOT NULL
        );
        CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
    ",
    },
    Migration {
        version: 2,
        name: "when a table's oldest unconfirmed change was published (receipts.md §5.5)",
        sql: "ALTER TABLE tables ADD COLUMN unconfirmed_since TEXT;",
    },
    Migration {
        version: 3,
        name: "snapshot spools and the per-table snapshot floor (spec/agent.md §11)",
        sql: "
        ALTER TABLE tables ADD COLUMN snapshot_due TEXT;
        ALTER TABLE tables ADD COLUMN snapshot_floor INTEGER NOT NULL DEFAULT 0;
        CREATE TABLE snapshots (
            snapshot_id TEXT PRIMARY KEY,
            table_name TEXT NOT NULL,
            journal_epoch TEXT NOT NULL,
            h INTEGER NOT NULL,
            parts INTEGER NOT NULL,
            rows INTEGER NOT NULL,
            reason TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE TABLE snapshot_parts (
            snapshot_id TEXT NOT NULL,
            part INTEGER NOT NULL,
            batch_id TEXT NOT NULL,
            rows INTEGER NOT NULL,
            payload BLOB NOT NULL,
            published INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (snapshot_id, part)
        );
    ",
    },
    Migration {
        version: 4,
        name: "the confirmed cursor of telemetry tables (receipts.md §5)",
        sql: "ALTER TABLE tables ADD COLUMN ts_confirmed TEXT;",
    },
    Migration {
        version: 5,
        name: "the batch_seq of the telemetry confirmed cursor (the chain's start on re-send)",
        sql: "ALTER TABLE tables ADD COLUMN ts_confirmed_seq INTEGER NOT NULL DEFAULT 0;",
    },
];

/// The format version this agent writes.
pub const CURRENT: i64 = 5;

/// Applies every missing step, each in its own transaction with its `user_version` bump.
pub fn migrate(conn: &Connection, path: &Path) -> Result<(), StateError> {
    let err = |source| StateError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(err)?;
    if version > CURRENT {
        return Err(StateError::TooNew {
            path: path.to_path_buf(),
            found: version,
            supported: CURRENT,
        });
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > version) {
        tracing::info!(version = m.version, name = m.name, "migrating state.db");
        let tx = conn.unchecked_transaction().map_err(err)?;
        tx.execute_batch(m.sql).map_err(err)?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", m.version))
            .map_err(err)?;
        tx.commit().map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_without_gaps() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1, "{}", m.name);
        }
        assert_eq!(MIGRATIONS.last().unwrap().version, CURRENT);
    }

    #[test]
    fn a_fresh_file_migrates_to_current_and_again_is_a_no_op() {
        let conn = Connection::open_in_memory().unwrap();
        migrate(&conn, Path::new(":memory:")).unwrap();
        migrate(&conn, Path::new(":memory:")).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, CURRENT);
    }

    #[test]
    fn a_version_1_file_keeps_its_rows_when_migrated() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(MIGRATIONS[0].sql).unwrap();
        conn.execute_batch("PRAGMA user_version = 1").unwrap();
        conn.execute(
            "INSERT INTO tables (name, strategy, published_seq, confirmed_seq) VALUES ('t', 'rows', 9, 7)",
            [],
        )
        .unwrap();
        migrate(&conn, Path::new("s.db")).unwrap();
        let (p, c, since): (i64, i64, Option<String>) = conn
            .query_row(
                "SELECT published_seq, confirmed_seq, unconfirmed_since FROM tables",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!((p, c, since), (9, 7, None));
    }

    #[test]
    fn a_newer_file_is_refused() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("PRAGMA user_version = 99").unwrap();
        let err = migrate(&conn, Path::new("s.db")).unwrap_err();
        assert!(err.to_string().contains("newer"), "{err}");
    }
}
