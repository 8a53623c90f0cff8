//! Reading a row's current image by key at flush time (`spec/agent.md` §8.3).

use rusqlite::{Connection, OptionalExtension, params_from_iter};

use super::cell::Cell;

use crate::capture::TableSpec;
use crate::sql::quote_ident;

/// `SELECT <every column> FROM "t" WHERE "k1" = ?1 AND …`, for a cached prepared statement.
pub fn select_by_key_sql(spec: &TableSpec) -> String {
    let cond = spec
        .key_columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{} = ?{}", quote_ident(c), i + 1))
        .collect::<Vec<_>>()
        .join(" AND ");
    format!(
        "SELECT {} FROM main.{} WHERE {cond}",
        spec.column_list(),
        quote_ident(&spec.name)
    )
}

/// The row with this key as it is now, every column in declaration order; `None` when the
/// row no longer exists.
pub fn read(
    conn: &Connection,
    spec: &TableSpec,
    sql: &str,
    key: &[Cell],
) -> rusqlite::Result<Option<Vec<Cell>>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let n = spec.columns.len();
    stmt.query_row(params_from_iter(key.iter()), |r| {
        let mut row = Vec::with_capacity(n);
        for i in 0..n {
            row.push(Cell::from_ref(r.get_ref(i)?));
        }
        Ok(row)
    })
    .optional()
}
