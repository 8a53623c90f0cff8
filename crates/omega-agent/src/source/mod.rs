//! The application's SQLite file (the *source*) and Omega's objects inside it
//! (`spec/agent.md` §4).
//!
//! ## Layout
//! - [`journal`]: `__omega_journal`, the key-only change log whose rowid is `commit_seq`.
//! - [`instance`]: `__omega_db_instance` and `__omega_tables` (table ids).
//! - [`image`]: reading current row images by key at flush time.

pub mod cell;
pub mod image;
pub mod instance;
pub mod journal;

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// How long the agent's own statements wait for the application's locks. The agent's write
/// transactions are short; this only bounds how long the agent waits, never the application.
pub const AGENT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens the source read-write without creating it. The agent never changes the journal mode
/// or any persistent setting of the file.
pub fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.busy_timeout(AGENT_BUSY_TIMEOUT)?;
    // Per connection, not persistent: in WAL mode the agent's own commits (pruning, trigger
    // installs) need no fsync while holding the write lock; a lost prune is redone.
    // A small page cache: the agent reads the journal's tail and single rows by key, so a
    // large cache buys little and counts against the device's memory (per connection).
    conn.execute_batch("PRAGMA cache_size = -512")?;
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
    if mode.eq_ignore_ascii_case("wal") {
        conn.execute_batch("PRAGMA synchronous = NORMAL")?;
    }
    Ok(conn)
}

/// `PRAGMA schema_version`: changes with every DDL statement committed to the file.
pub fn schema_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA schema_version", [], |r| r.get(0))
}
