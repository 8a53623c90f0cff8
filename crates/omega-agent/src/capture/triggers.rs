//! Trigger text, installation and checking (`spec/agent.md` §4.4, §6, §10).

use rusqlite::{Connection, OptionalExtension};
use sha2::{Digest, Sha256};

use super::spec::TableSpec;
use crate::source::journal::{JOURNAL_TABLE, OP_DELETE, OP_INSERT, OP_UPDATE};
use crate::sql::quote_ident;

/// Prefix of every trigger the agent creates.
pub const TRIGGER_PREFIX: &str = "__omega_trg_";

/// The trigger names of a table: `__omega_trg_{ins,upd,key,del}_{h}` where `{h}` is the
/// first 16 hex characters of SHA-256 of the table name (`spec/agent.md` §4.4; the `key`
/// trigger journals the delete of the old key when an update changes the primary key).
pub fn trigger_names(table: &str) -> [String; 4] {
    let digest = Sha256::digest(table.as_bytes());
    let h = &hex::encode(digest)[..16];
    ["ins", "upd", "key", "del"].map(|kind| format!("{TRIGGER_PREFIX}{kind}_{h}"))
}

/// The `CREATE TRIGGER` statements for `spec`, journaling under table id `tid`, in creation
/// order.
///
/// - Every body is `INSERT OR FAIL`: the journal insert cannot fail on a constraint, and
///   without the default `ABORT` SQLite needs no statement journal for it (measured: +23 % on
///   the application's insert rate, `BENCHMARKS.md`).
/// - The key-change check lives in its own `AFTER UPDATE OF <key columns> … WHEN` trigger, so
///   updates that do not touch the key pay nothing for it. A key counts as changed when it
///   differs under binary collation or by type (`'a'`→`'A'` under NOCASE, `1`→`'1'`); the
///   old key is then journaled as a delete, the new one as an upsert by the update trigger.
///   The two entries name different keys, so their relative order does not matter.
pub fn trigger_sql(spec: &TableSpec, tid: i64) -> [String; 4] {
    let [ins, upd, key, del] = trigger_names(&spec.name);
    let table = quote_ident(&spec.name);
    let slots: Vec<String> = (1..=spec.key_columns.len())
        .map(|i| format!("k{i}"))
        .collect();
    let slot_list = slots.join(", ");
    let refs = |alias: &str| {
        spec.key_columns
            .iter()
            .map(|c| format!("{alias}.{}", quote_ident(c)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let key_cols = spec
        .key_columns
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    let changed = spec
        .key_columns
        .iter()
        .map(|c| {
            let c = quote_ident(c);
            format!("OLD.{c} IS NOT NEW.{c} COLLATE BINARY OR typeof(OLD.{c}) <> typeof(NEW.{c})")
        })
        .collect::<Vec<_>>()
        .join(" OR ");
    let j = JOURNAL_TABLE;
    let body = |op: i64, alias: &str| {
        format!(
            "INSERT OR FAIL INTO {j}(tid, op, {slot_list}) VALUES ({tid}, {op}, {});",
            refs(alias)
        )
    };
    [
        format!(
            "CREATE TRIGGER {} AFTER INSERT ON {table} FOR EACH ROW BEGIN {} END",
            quote_ident(&ins),
            body(OP_INSERT, "NEW")
        ),
        format!(
            "CREATE TRIGGER {} AFTER UPDATE ON {table} FOR EACH ROW BEGIN {} END",
            quote_ident(&upd),
            body(OP_UPDATE, "NEW")
        ),
        format!(
            "CREATE TRIGGER {} AFTER UPDATE OF {key_cols} ON {table} FOR EACH ROW WHEN {changed} BEGIN {} END",
            quote_ident(&key),
            body(OP_DELETE, "OLD")
        ),
        format!(
            "CREATE TRIGGER {} AFTER DELETE ON {table} FOR EACH ROW BEGIN {} END",
            quote_ident(&del),
            body(OP_DELETE, "OLD")
        ),
    ]
}

/// What [`check`] found for one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerState {
    /// Every trigger exists with the expected text.
    Current,
    /// Some exist but differ from the expected text (an older key layout or table id).
    Outdated,
    /// None of the three exists (first enrollment, or the table was rebuilt or recreated).
    Missing,
}

/// Compares the stored trigger SQL with what [`trigger_sql`] would create.
pub fn check(conn: &Connection, spec: &TableSpec, tid: i64) -> rusqlite::Result<TriggerState> {
    let expected = trigger_sql(spec, tid);
    let names = trigger_names(&spec.name);
    let mut found = 0;
    let mut same = 0;
    for (name, want) in names.iter().zip(expected.iter()) {
        let stored: Option<(String, String)> = conn
            .query_row(
                "SELECT sql, tbl_name FROM sqlite_schema WHERE type = 'trigger' AND name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        if let Some((sql, tbl)) = stored {
            found += 1;
            if &sql == want && tbl == spec.name {
                same += 1;
            }
        }
    }
    Ok(match (found, same) {
        (0, _) => TriggerState::Missing,
        (n, m) if n == names.len() && m == n => TriggerState::Current,
        _ => TriggerState::Outdated,
    })
}

/// Drops and recreates the triggers of `spec` in one short write transaction.
pub fn install(conn: &Connection, spec: &TableSpec, tid: i64) -> rusqlite::Result<()> {
    let tx = conn.unchecked_transaction()?;
    for name in trigger_names(&spec.name) {
        tx.execute_batch(&format!("DROP TRIGGER IF EXISTS {}", quote_ident(&name)))?;
    }
    for sql in trigger_sql(spec, tid) {
        tx.execute_batch(&sql)?;
    }
    tx.commit()
}

/// Drops every `__omega_trg_*` trigger whose name is not in `keep` (tables that were dropped,
/// renamed or are no longer enrolled). Returns the names dropped.
pub fn drop_others(conn: &Connection, keep: &[String]) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT name FROM sqlite_schema WHERE type = 'trigger' AND substr(name, 1, 12) = ?1",
    )?;
    let existing: Vec<String> = stmt
        .query_map([TRIGGER_PREFIX], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let stale: Vec<String> = existing.into_iter().filter(|n| !keep.contains(n)).collect();
    if !stale.is_empty() {
        let tx = conn.unchecked_transaction()?;
        for name in &stale {
            tx.execute_batch(&format!("DROP TRIGGER IF EXISTS {}", quote_ident(name)))?;
        }
        tx.commit()?;
    }
    Ok(stale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::journal;

    fn setup(ddl: &str, table: &str) -> (Connection, TableSpec) {
        let conn = Connection::open_in_memory().unwrap();
        journal::create(&conn).unwrap();
        conn.execute_batch(ddl).unwrap();
        let spec = TableSpec::read(&conn, table).unwrap();
        (conn, spec)
    }

    #[test]
    fn trigger_names_follow_the_spec() {
        let [ins, upd, key, del] = trigger_names("device_state");
        assert!(ins.starts_with("__omega_trg_ins_") && ins.len() == 16 + 16);
        assert!(upd.starts_with("__omega_trg_upd_"));
        assert!(key.starts_with("__omega_trg_key_"));
        assert!(del.starts_with("__omega_trg_del_"));
    }

    #[test]
    fn installed_triggers_are_current_and_reinstall_is_idempotent() {
        let (conn, spec) = setup(
            r#"CREATE TABLE "order" (id INTEGER PRIMARY KEY, v)"#,
            "order",
        );
        assert_eq!(check(&conn, &spec, 1).unwrap(), TriggerState::Missing);
        install(&conn, &spec, 1).unwrap();
        assert_eq!(check(&conn, &spec, 1).unwrap(), TriggerState::Current);
        assert_eq!(check(&conn, &spec, 2).unwrap(), TriggerState::Outdated);
        install(&conn, &spec, 2).unwrap();
        assert_eq!(check(&conn, &spec, 2).unwrap(), TriggerState::Current);
    }

    #[test]
    fn a_key_change_journals_a_delete_then_an_upsert() {
        let (conn, spec) = setup(
            r#"CREATE TABLE "a""b" (k TEXT PRIMARY KEY COLLATE NOCASE, v)"#,
            r#"a"b"#,
        );
        install(&conn, &spec, 4).unwrap();
        conn.execute_batch(r#"INSERT INTO "a""b" VALUES ('x', 1); UPDATE "a""b" SET k = 'X'; UPDATE "a""b" SET v = 2;"#)
            .unwrap();
        let ops: Vec<(i64, String)> = conn
            .prepare("SELECT op, k1 FROM __omega_journal WHERE tid <> 0 ORDER BY seq")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            ops,
            vec![
                (OP_INSERT, "x".into()),
                (OP_DELETE, "x".into()),
                (OP_UPDATE, "X".into()),
                (OP_UPDATE, "X".into())
            ]
        );
    }

    #[test]
    fn stale_triggers_of_renamed_tables_are_dropped() {
        let (conn, spec) = setup("CREATE TABLE t (id INTEGER PRIMARY KEY)", "t");
        install(&conn, &spec, 1).unwrap();
        conn.execute_batch("ALTER TABLE t RENAME TO u").unwrap();
        let u = TableSpec::read(&conn, "u").unwrap();
        install(&conn, &u, 2).unwrap();
        let dropped = drop_others(&conn, &trigger_names("u")).unwrap();
        assert_eq!(dropped.len(), 4);
        assert_eq!(check(&conn, &u, 2).unwrap(), TriggerState::Current);
    }
}
