//! `state.db`: the agent's own durable state (`spec/agent.md` §15).
//!
//! Versioned with `PRAGMA user_version`; each migration is a named step applied in one
//! transaction ([`migrations`]). Every change of state is one transaction, so a `kill -9` at
//! any instant leaves either the old or the new value — at worst changes are sent again.
//!
//! A second agent on the same `state.db` is refused through an advisory lock on
//! `state.db.lock` ([`StateLock`]), so that `omega agent status` can still read the file.

pub mod migrations;
pub mod spool;
pub mod tables;

use std::fs::File;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension};

pub use tables::TableState;

/// Errors of the state store.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// SQLite failed.
    #[error("state.db {path}: {source}")]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: rusqlite::Error,
    },
    /// The file was written by a newer agent.
    #[error(
        "state.db {path} has format version {found}, newer than this agent's {supported}; upgrade the agent"
    )]
    TooNew {
        /// The file.
        path: PathBuf,
        /// `user_version` found.
        found: i64,
        /// Newest this agent knows.
        supported: i64,
    },
    /// Another agent holds the lock.
    #[error("another agent is running on {0} (its lock file is held)")]
    Locked(PathBuf),
    /// The file belongs to another device.
    #[error(
        "state.db {path} belongs to device `{found}`, not `{expected}`; point state_db_path elsewhere"
    )]
    ForeignDevice {
        /// The file.
        path: PathBuf,
        /// Device id recorded in the file.
        found: String,
        /// This agent's device id.
        expected: String,
    },
    /// I/O on the lock file or directory.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Holds the advisory lock that keeps a second agent off this `state.db`.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

impl StateLock {
    /// Takes the lock next to `state_path`, or fails with [`StateError::Locked`].
    pub fn acquire(state_path: &Path) -> Result<StateLock, StateError> {
        let lock_path = lock_path(state_path);
        if let Some(dir) = state_path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StateError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| StateError::Io {
                path: lock_path.clone(),
                source,
            })?;
        match file.try_lock() {
            Ok(()) => Ok(StateLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => {
                Err(StateError::Locked(state_path.to_path_buf()))
            }
            Err(std::fs::TryLockError::Error(source)) => Err(StateError::Io {
                path: lock_path,
                source,
            }),
        }
    }
}

fn lock_path(state_path: &Path) -> PathBuf {
    let mut s = state_path.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

/// An open, migrated `state.db`.
#[derive(Debug)]
pub struct StateDb {
    conn: Connection,
    path: PathBuf,
}

impl StateDb {
    /// Opens (creating the file and its directory when missing) and migrates to the current
    /// format.
    pub fn open(path: &Path) -> Result<StateDb, StateError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StateError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let err = |source| StateError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA cache_size = -256;",
        )
        .map_err(err)?;
        migrations::migrate(&conn, path)?;
        Ok(StateDb {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Opens an existing file read-only, without migrating (for `omega agent status`).
    pub fn open_read_only(path: &Path) -> Result<StateDb, StateError> {
        let err = |source| StateError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(err)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(err)?;
        if version > migrations::CURRENT {
            return Err(StateError::TooNew {
                path: path.to_path_buf(),
                found: version,
                supported: migrations::CURRENT,
            });
        }
        Ok(StateDb {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// The underlying connection (for modules of this crate).
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Wraps an SQLite error with this file's path.
    pub fn err(&self, source: rusqlite::Error) -> StateError {
        StateError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// A value of the `meta` table.
    pub fn meta(&self, key: &str) -> Result<Option<String>, StateError> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Sets a value of the `meta` table.
    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), StateError> {
        self.conn
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [key, value],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Records the device id on first use and refuses a file of another device.
    pub fn claim_device(&self, device_id: &str) -> Result<(), StateError> {
        match self.meta("device_id")? {
            Some(found) if found != device_id => Err(StateError::ForeignDevice {
                path: self.path.clone(),
                found,
                expected: device_id.to_string(),
            }),
            Some(_) => Ok(()),
            None => self.set_meta("device_id", device_id),
        }
    }

    /// Adds `by` to a named counter (`null_key_rows`, `oversized_rows`, …).
    pub fn bump_counter(&self, name: &str, by: i64) -> Result<(), StateError> {
        self.conn
            .execute(
                "INSERT INTO counters (name, value) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
                rusqlite::params![name, by],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Adds several counters at once in one transaction; zero amounts are skipped.
    pub fn bump_counters(&self, counters: &[(&str, u64)]) -> Result<(), StateError> {
        if counters.iter().all(|(_, n)| *n == 0) {
            return Ok(());
        }
        let tx = self.conn.unchecked_transaction().map_err(|e| self.err(e))?;
        for (name, n) in counters.iter().filter(|(_, n)| *n > 0) {
            tx.execute(
                "INSERT INTO counters (name, value) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
                rusqlite::params![name, i64::try_from(*n).unwrap_or(i64::MAX)],
            )
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Every counter with its value.
    pub fn counters(&self) -> Result<Vec<(String, i64)>, StateError> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, value FROM counters ORDER BY name")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }
}
