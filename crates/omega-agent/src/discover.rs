//! Table discovery and enrollment verdicts (`spec/agent.md` §5).
//!
//! [`discover`] reads the `main` schema of the source database and gives each table its
//! [`Verdict`]: captured with `rows` or `telemetry`, ignored by configuration, internal
//! (`sqlite_*`, `__omega_*`), or skipped with a reason and a fix. It is pure reading: no
//! statement here writes, so it runs on a read-only connection (`omega agent validate`) as
//! well as on the agent's own (startup and after every schema change).
//!
//! Schema reads use the table-valued pragma functions (`pragma_table_list`,
//! `pragma_table_info`, `pragma_index_list`) with the table name as a bound parameter, so no
//! name is ever spliced into SQL here. Code that must splice names (trigger bodies, snapshots)
//! uses [`quote_ident`].
//!
//! `temp` and attached schemas are never looked at. Generated columns are not in
//! `table_info`, so they are neither hashed nor sent.

use std::path::{Path, PathBuf};

use omega_protocol::schema::{Affinity, ColumnInfo, SchemaColumns, affinity, schema_hash};
use rusqlite::{Connection, OpenFlags, params};

use crate::config::{Strategy, TableStrategies, TableStrategy, TsUnit, is_internal_table};

/// Why the schema could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    /// The source file does not exist.
    #[error("{}: no such file", path.display())]
    NotFound {
        /// The path that was tried.
        path: PathBuf,
    },
    /// The source could not be opened or is not a SQLite database.
    #[error("{}: cannot open as a SQLite database: {source}", path.display())]
    Open {
        /// The path that was tried.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// A schema query failed.
    #[error("reading the schema{}: {source}", table.as_ref().map(|t| format!(" of table `{t}`")).unwrap_or_default())]
    Schema {
        /// The table being read, if any.
        table: Option<String>,
        /// SQLite's error.
        source: rusqlite::Error,
    },
}

/// What `pragma_table_list` says a table is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    /// An ordinary table (rowid or WITHOUT ROWID).
    Table,
    /// A virtual table.
    Virtual,
    /// A shadow table of a virtual table.
    Shadow,
}

/// One column, from `table_info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Name, case kept.
    pub name: String,
    /// Declared type as written (may be empty).
    pub decl_type: String,
    /// Affinity of the declared type.
    pub affinity: Affinity,
    /// `NOT NULL` declared.
    pub not_null: bool,
    /// 0 if not in the primary key, else its 1-based position in the key.
    pub pk_ordinal: u32,
    /// Whether the column has a `DEFAULT`.
    pub has_default: bool,
}

/// What a telemetry table sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryPlan {
    /// The timestamp column, as named in the table.
    pub ts_column: String,
    /// The columns sent as fields, as named in the table.
    pub field_columns: Vec<String>,
    /// Unit of numeric timestamps.
    pub ts_unit: TsUnit,
}

/// Why a table is not captured, and how to change that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    /// Short reason, e.g. `no PRIMARY KEY`.
    pub reason: String,
    /// What the user can do, e.g. `add a PRIMARY KEY or set strategy: ignore`.
    pub fix: String,
    /// Whether this is a configuration error: the table's strategy is set explicitly to one
    /// that cannot work, so the agent refuses to start (exit 2).
    pub config_error: bool,
}

/// The fate of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Captured by triggers (`agent.md` §6).
    Rows,
    /// Read by a timestamp cursor (`agent.md` §12).
    Telemetry(TelemetryPlan),
    /// `strategy: ignore`.
    Ignore,
    /// SQLite's or the agent's own table.
    Internal,
    /// Not captured; see the reason.
    Skipped(Skip),
}

impl Verdict {
    /// The word `validate` prints: `rows`, `telemetry`, `ignore`, `internal` or `skipped`.
    pub fn action(&self) -> &'static str {
        match self {
            Verdict::Rows => "rows",
            Verdict::Telemetry(_) => "telemetry",
            Verdict::Ignore => "ignore",
            Verdict::Internal => "internal",
            Verdict::Skipped(_) => "skipped",
        }
    }

    /// Whether the table is captured (`rows` or `telemetry`).
    pub fn is_enrolled(&self) -> bool {
        matches!(self, Verdict::Rows | Verdict::Telemetry(_))
    }
}

/// A table of the `main` schema and its verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredTable {
    /// Name as stored in the schema (case kept).
    pub name: String,
    /// Ordinary, virtual or shadow.
    pub kind: TableKind,
    /// Declared `WITHOUT ROWID`.
    pub without_rowid: bool,
    /// Columns in declaration order (generated columns excluded). May be empty for a virtual
    /// table whose module this SQLite lacks.
    pub columns: Vec<Column>,
    /// Primary-key columns in key order; empty for a rowid-only table.
    pub key_columns: Vec<String>,
    /// The schema-hash input and `schema_columns` wire object (`protocol.md` §6).
    pub schema: SchemaColumns,
    /// `schema_hash` of [`DiscoveredTable::schema`].
    pub schema_hash: String,
    /// The `table_strategies` key that matched this table, if any.
    pub strategy_key: Option<String>,
    /// What happens to the table.
    pub verdict: Verdict,
    /// Warnings about this table (nullable key columns, strategies that cannot apply).
    pub warnings: Vec<String>,
}

/// Reads every table of the `main` schema and gives each its verdict (`agent.md` §5).
/// Tables are returned sorted by name (UTF-8 byte order). Table names are matched to strategy
/// keys ASCII case-insensitively.
pub fn discover(
    conn: &Connection,
    strategies: &TableStrategies,
) -> Result<Vec<DiscoveredTable>, DiscoverError> {
    let schema_err = |table: Option<&str>| {
        let table = table.map(str::to_owned);
        move |source| DiscoverError::Schema { table, source }
    };
    let mut stmt = conn
        .prepare(
            "SELECT name, type, wr FROM pragma_table_list WHERE schema = 'main' \
             AND name NOT IN ('sqlite_schema', 'sqlite_master')",
        )
        .map_err(schema_err(None))?;
    let listed = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, bool>(2)?,
            ))
        })
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(schema_err(None))?;
    let mut tables = Vec::new();
    for (name, kind, without_rowid) in listed {
        let kind = match kind.as_str() {
            "table" => TableKind::Table,
            "virtual" => TableKind::Virtual,
            "shadow" => TableKind::Shadow,
            _ => continue, // views
        };
        tables.push(read_table(conn, name, kind, without_rowid, strategies)?);
    }
    tables.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    Ok(tables)
}

fn read_table(
    conn: &Connection,
    name: String,
    kind: TableKind,
    without_rowid: bool,
    strategies: &TableStrategies,
) -> Result<DiscoveredTable, DiscoverError> {
    let err = |source| DiscoverError::Schema {
        table: Some(name.clone()),
        source,
    };
    let columns = match read_columns(conn, &name) {
        Ok(c) => c,
        // A virtual table whose module is missing cannot even list its columns.
        Err(_) if kind != TableKind::Table => Vec::new(),
        Err(e) => return Err(err(e)),
    };
    let mut key: Vec<&Column> = columns.iter().filter(|c| c.pk_ordinal > 0).collect();
    key.sort_by_key(|c| c.pk_ordinal);
    let key_columns: Vec<String> = key.iter().map(|c| c.name.clone()).collect();
    let schema = SchemaColumns {
        table_name: name.clone(),
        columns: columns
            .iter()
            .map(|c| ColumnInfo {
                name: c.name.clone(),
                decl_type_affinity: c.affinity,
                pk_ordinal: c.pk_ordinal,
                not_null: c.not_null,
            })
            .collect(),
    };
    let schema_hash = schema_hash(&schema);
    let entry = strategies.get(&name);
    let mut warnings = Vec::new();
    let verdict = verdict(&name, kind, &columns, &key_columns, entry, &mut warnings);
    if verdict.is_enrolled() && kind == TableKind::Table && !without_rowid && !key.is_empty() {
        // A rowid table whose key is not the rowid alias has an automatic `pk` index; its
        // key columns admit NULL unless declared NOT NULL.
        if !key_is_rowid_alias(conn, &name).map_err(err)? {
            for c in key.iter().filter(|c| !c.not_null) {
                warnings.push(format!(
                    "key column `{}` admits NULL: add NOT NULL (a change whose key holds NULL \
                     is not published)",
                    c.name
                ));
            }
        }
    }
    Ok(DiscoveredTable {
        name,
        kind,
        without_rowid,
        columns,
        key_columns,
        schema,
        schema_hash,
        strategy_key: entry.map(|e| e.key.clone()),
        verdict,
        warnings,
    })
}

fn verdict(
    name: &str,
    kind: TableKind,
    columns: &[Column],
    key_columns: &[String],
    entry: Option<&TableStrategy>,
    warnings: &mut Vec<String>,
) -> Verdict {
    if is_internal_table(name) {
        return Verdict::Internal;
    }
    let explicit = entry.is_some();
    let strategy = entry.map_or(Strategy::Rows, |e| e.strategy.clone());
    if strategy == Strategy::Ignore {
        return Verdict::Ignore;
    }
    if kind != TableKind::Table {
        if explicit {
            warnings.push(format!(
                "strategy `{}` cannot apply: triggers cannot observe a {} table",
                strategy.as_str(),
                if kind == TableKind::Virtual {
                    "virtual"
                } else {
                    "shadow"
                }
            ));
        }
        let reason = if kind == TableKind::Virtual {
            "virtual table: triggers cannot observe it"
        } else {
            "shadow table of a virtual table"
        };
        return skipped(
            reason,
            "none needed; set strategy: ignore to silence this",
            false,
        );
    }
    if key_columns.is_empty() {
        return skipped(
            "no PRIMARY KEY",
            "add a PRIMARY KEY or set strategy: ignore",
            explicit,
        );
    }
    let Strategy::Telemetry(t) = strategy else {
        return Verdict::Rows;
    };
    let find = |wanted: &str| columns.iter().find(|c| c.name.eq_ignore_ascii_case(wanted));
    let names = || {
        columns
            .iter()
            .map(|c| format!("`{}`", c.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(ts) = find(&t.ts_column) else {
        return skipped(
            &format!("ts_column `{}` is not a column of the table", t.ts_column),
            &format!("set ts_column to one of {}", names()),
            true,
        );
    };
    let field_columns = match &t.include_columns {
        None => columns
            .iter()
            .filter(|c| c.name != ts.name)
            .map(|c| c.name.clone())
            .collect(),
        Some(list) => {
            let mut out = Vec::new();
            for wanted in list {
                match find(wanted) {
                    Some(c) => out.push(c.name.clone()),
                    None => {
                        return skipped(
                            &format!(
                                "include_columns names `{wanted}`, which is not a column of the table"
                            ),
                            &format!("list only columns of the table: {}", names()),
                            true,
                        );
                    }
                }
            }
            out
        }
    };
    Verdict::Telemetry(TelemetryPlan {
        ts_column: ts.name.clone(),
        field_columns,
        ts_unit: t.ts_unit,
    })
}

fn skipped(reason: &str, fix: &str, config_error: bool) -> Verdict {
    Verdict::Skipped(Skip {
        reason: reason.to_owned(),
        fix: fix.to_owned(),
        config_error,
    })
}

fn read_columns(conn: &Connection, table: &str) -> rusqlite::Result<Vec<Column>> {
    let mut stmt = conn.prepare(
        "SELECT name, type, \"notnull\", pk, dflt_value IS NOT NULL \
         FROM pragma_table_info(?1, 'main') ORDER BY cid",
    )?;
    let rows = stmt.query_map(params![table], |r| {
        let decl_type: String = r.get(1)?;
        Ok(Column {
            name: r.get(0)?,
            affinity: affinity(&decl_type),
            decl_type,
            not_null: r.get(2)?,
            pk_ordinal: r.get(3)?,
            has_default: r.get(4)?,
        })
    })?;
    rows.collect()
}

/// Whether a rowid table's primary key is its rowid alias (`INTEGER PRIMARY KEY`), which has
/// no separate index and can never hold NULL.
fn key_is_rowid_alias(conn: &Connection, table: &str) -> rusqlite::Result<bool> {
    let n: i64 = conn.query_row(
        "SELECT count(*) FROM pragma_index_list(?1, 'main') WHERE origin = 'pk'",
        params![table],
        |r| r.get(0),
    )?;
    Ok(n == 0)
}

/// Table names in `strategies` that match no discovered table (a WARN: the entry applies if
/// the table appears later).
pub fn unmatched_strategy_keys<'a>(
    tables: &[DiscoveredTable],
    strategies: &'a TableStrategies,
) -> Vec<&'a TableStrategy> {
    strategies
        .iter()
        .filter(|e| !tables.iter().any(|t| t.name.eq_ignore_ascii_case(&e.key)))
        .collect()
}

/// Opens the source database read-only (`SQLITE_OPEN_READ_ONLY`), as `omega agent validate`
/// does, and checks that it is a SQLite database.
pub fn open_read_only(path: &Path) -> Result<Connection, DiscoverError> {
    if !path.exists() {
        return Err(DiscoverError::NotFound {
            path: path.to_path_buf(),
        });
    }
    let open_err = |source| DiscoverError::Open {
        path: path.to_path_buf(),
        source,
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(open_err)?;
    conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
        r.get::<_, i64>(0)
    })
    .map_err(open_err)?;
    Ok(conn)
}

/// The source's journal mode (`wal`, `delete`, …), lower case.
pub fn journal_mode(conn: &Connection) -> Result<String, DiscoverError> {
    conn.query_row("PRAGMA main.journal_mode", [], |r| r.get::<_, String>(0))
        .map(|m| m.to_ascii_lowercase())
        .map_err(|source| DiscoverError::Schema {
            table: None,
            source,
        })
}

pub use crate::sql::quote_ident;

#[cfg(test)]
mod tests;
