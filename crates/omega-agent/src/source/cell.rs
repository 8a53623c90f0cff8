//! [`Cell`]: one value read from the source, exact down to the bytes.
//!
//! rusqlite's owned `Value` insists on valid UTF-8 for TEXT; a source may hold anything. A
//! `Cell` keeps TEXT as raw bytes so that a key can be bound back exactly, and converts to the
//! wire's [`SqlValue`] with U+FFFD replacement only when published (`protocol.md` §4.6).

use omega_protocol::value::SqlValue;
use rusqlite::ToSql;
use rusqlite::types::{ToSqlOutput, ValueRef};

/// One SQLite value by storage class.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// NULL.
    Null,
    /// INTEGER.
    Integer(i64),
    /// REAL (SQLite never stores NaN).
    Real(f64),
    /// TEXT as stored (normally UTF-8, not guaranteed).
    Text(Vec<u8>),
    /// BLOB.
    Blob(Vec<u8>),
}

impl Cell {
    /// Copies a borrowed value.
    pub fn from_ref(v: ValueRef<'_>) -> Cell {
        match v {
            ValueRef::Null => Cell::Null,
            ValueRef::Integer(i) => Cell::Integer(i),
            ValueRef::Real(f) => Cell::Real(f),
            ValueRef::Text(t) => Cell::Text(t.to_vec()),
            ValueRef::Blob(b) => Cell::Blob(b.to_vec()),
        }
    }

    /// The wire value; the flag is true when invalid UTF-8 was replaced.
    pub fn to_wire(&self) -> (SqlValue, bool) {
        match self {
            Cell::Null => (SqlValue::Null, false),
            Cell::Integer(i) => (SqlValue::Integer(*i), false),
            Cell::Real(f) if f.is_nan() => (SqlValue::Null, false),
            Cell::Real(f) => (SqlValue::Real(*f), false),
            Cell::Text(t) => match String::from_utf8(t.clone()) {
                Ok(s) => (SqlValue::Text(s), false),
                Err(_) => (
                    SqlValue::Text(String::from_utf8_lossy(t).into_owned()),
                    true,
                ),
            },
            Cell::Blob(b) => (SqlValue::Blob(b.clone()), false),
        }
    }

    /// Bytes this value takes in local retention accounting.
    pub fn stored_len(&self) -> usize {
        match self {
            Cell::Null => 0,
            Cell::Integer(_) | Cell::Real(_) => 8,
            Cell::Text(b) | Cell::Blob(b) => b.len(),
        }
    }
}

impl ToSql for Cell {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Cell::Null => ValueRef::Null,
            Cell::Integer(i) => ValueRef::Integer(*i),
            Cell::Real(f) => ValueRef::Real(*f),
            Cell::Text(t) => ValueRef::Text(t),
            Cell::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_utf8_text_binds_back_exactly_and_publishes_replaced() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (k TEXT PRIMARY KEY)")
            .unwrap();
        conn.execute("INSERT INTO t VALUES (CAST(x'61ff62' AS TEXT))", [])
            .unwrap();
        let cell: Cell = conn
            .query_row("SELECT k FROM t", [], |r| Ok(Cell::from_ref(r.get_ref(0)?)))
            .unwrap();
        assert_eq!(cell, Cell::Text(vec![0x61, 0xff, 0x62]));
        let n: i64 = conn
            .query_row("SELECT count(*) FROM t WHERE k = ?1", [&cell], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
        assert_eq!(cell.to_wire(), (SqlValue::Text("a\u{fffd}b".into()), true));
    }
}
