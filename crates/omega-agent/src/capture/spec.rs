//! What capture needs to know about one table.

use omega_protocol::schema::SchemaColumns;
use rusqlite::Connection;

use crate::sql::quote_ident;

/// The most key columns a captured table may have (the journal has this many key slots).
pub const MAX_KEY_COLUMNS: usize = 8;

/// One table as capture and the publisher see it: its columns in declaration order, its key
/// columns in key order, and its schema fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    /// Table name as stored in the schema.
    pub name: String,
    /// Every column (from `PRAGMA table_info`), in declaration order.
    pub columns: Vec<String>,
    /// Primary-key columns in key order (`pk` ordinal 1..N).
    pub key_columns: Vec<String>,
    /// Whether the table was declared `WITHOUT ROWID`.
    pub without_rowid: bool,
    /// The hash input (`protocol.md` §6).
    pub schema: SchemaColumns,
    /// `schema_hash` of [`Self::schema`].
    pub schema_hash: String,
}

/// Why a table cannot be captured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The table does not exist in `main`.
    #[error("table `{0}` does not exist")]
    Missing(String),
    /// No explicit PRIMARY KEY.
    #[error("table `{0}` has no PRIMARY KEY: add one or set `strategy: ignore`")]
    NoPrimaryKey(String),
    /// More key columns than the journal has slots for.
    #[error(
        "table `{0}` has a primary key of {1} columns; at most {MAX_KEY_COLUMNS} are supported: set `strategy: ignore`"
    )]
    TooManyKeyColumns(String, usize),
    /// SQLite failed while reading the schema.
    #[error("reading the schema of `{0}`: {1}")]
    Sqlite(String, String),
}

impl TableSpec {
    /// Reads the table's current definition from `main`, through [`crate::discover`] (the
    /// one schema reader shared by `validate` and `run`).
    pub fn read(conn: &Connection, table: &str) -> Result<TableSpec, SpecError> {
        let found = crate::discover::discover(conn, &crate::config::TableStrategies::default())
            .map_err(|e| SpecError::Sqlite(table.to_string(), e.to_string()))?;
        let t = found
            .iter()
            .find(|t| t.name.eq_ignore_ascii_case(table))
            .ok_or_else(|| SpecError::Missing(table.to_string()))?;
        TableSpec::from_discovered(t)
    }

    /// Builds the spec from a table [`crate::discover`] found, refusing keys wider than the
    /// journal.
    pub fn from_discovered(t: &crate::discover::DiscoveredTable) -> Result<TableSpec, SpecError> {
        if t.key_columns.is_empty() {
            return Err(SpecError::NoPrimaryKey(t.name.clone()));
        }
        if t.key_columns.len() > MAX_KEY_COLUMNS {
            return Err(SpecError::TooManyKeyColumns(
                t.name.clone(),
                t.key_columns.len(),
            ));
        }
        Ok(TableSpec {
            name: t.name.clone(),
            columns: t.columns.iter().map(|c| c.name.clone()).collect(),
            key_columns: t.key_columns.clone(),
            without_rowid: t.without_rowid,
            schema: t.schema.clone(),
            schema_hash: t.schema_hash.clone(),
        })
    }

    /// `"a", "b", …` for every column.
    pub fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_composite_key_in_key_order() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            r#"CREATE TABLE "a""b" (x TEXT, "naïve" BLOB, y INTEGER, PRIMARY KEY (y, x)) WITHOUT ROWID"#,
        )
        .unwrap();
        let spec = TableSpec::read(&conn, r#"a"b"#).unwrap();
        assert_eq!(spec.key_columns, vec!["y", "x"]);
        assert_eq!(spec.columns, vec!["x", "naïve", "y"]);
        assert!(spec.without_rowid);
    }

    #[test]
    fn rowid_only_tables_are_refused_with_the_fix() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE events (msg TEXT)")
            .unwrap();
        let err = TableSpec::read(&conn, "events").unwrap_err();
        assert!(
            err.to_string()
                .contains("add one or set `strategy: ignore`"),
            "{err}"
        );
    }

    #[test]
    fn schema_hash_matches_the_spec_vector() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE device_state(id INTEGER PRIMARY KEY NOT NULL, mode TEXT)")
            .unwrap();
        let spec = TableSpec::read(&conn, "device_state").unwrap();
        assert_eq!(
            spec.schema_hash,
            "4d8f17a536ca112722082d44a2dfa63422465223a25d61f95c89302e858ad5e0"
        );
    }
}
