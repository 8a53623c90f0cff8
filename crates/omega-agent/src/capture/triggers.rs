//! Trigger text, installation and checking (`spec/agent.md` §4.4, §6, §10).

use rusqlite::{Connection, OptionalExtension};
use sha2::{Digest, Sha256};

use super::spec::TableSpec;
use crate::source::journal::{JOURNAL_TABLE, OP_DELETE, OP_INSERT, OP_UPDATE};
use crate::sql::quote_ident;

/// Prefix of every trigger the agent creates.
pub const TRIGGER_PREFIX: &str = "__omega_trg_";

/// The three trigger names of a table: `__omega_trg_{ins,upd,del}_{h}` where `{h}` is the first
/// 16 hex characters of SHA-256 of the table name.
pub fn trigger_names(table: &str) -> [String; 3] {
    let digest = Sha256::digest(table.as_bytes());
    let h = &hex::encode(digest)[..16];
    [
        format!("{TRIGGER_PREFIX}ins_{h}"),
        format!("{TRIGGER_PREFIX}upd_{h}"),
        format!("{TRIGGER_PREFIX}del_{h}"),
    ]
}

/// The `CREATE TRIGGER` statements for `spec`, journaling under table id `tid`.
///
/// The update trigger records a delete of the old key first when the key changed (compared
/// with binary collation and by type, so `'a'`→`'A'` under NOCASE and `1`→`'1'` count as key
/// changes), then an upsert of the new key.
pub fn trigger_sql(spec: &TableSpec, tid: i64) -> [String; 3] {
    let [ins, upd, del] = trigger_names(&spec.name);
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
    [
        format!(
            "CREATE TRIGGER {} AFTER INSERT ON {table} FOR EACH ROW BEGIN \
             INSERT INTO {j}(tid, op, {slot_list}) VALUES ({tid}, {OP_INSERT}, {}); END",
            quote_ident(&ins),
            refs("NEW")
        ),
        format!(
            "CREATE TRIGGER {} AFTER UPDATE ON {table} FOR EACH ROW BEGIN \
             INSERT INTO {j}(tid, op, {slot_list}) SELECT {tid}, {OP_DELETE}, {} WHERE {changed}; \
             INSERT INTO {j}(tid, op, {slot_list}) VALUES ({tid}, {OP_UPDATE}, {}); END",
            quote_ident(&upd),
            refs("OLD"),
            refs("NEW")
        ),
        format!(
            "CREATE TRIGGER {} AFTER DELETE ON {table} FOR EACH ROW BEGIN \
             INSERT INTO {j}(tid, op, {slot_list}) VALUES ({tid}, {OP_DELETE}, {}); END",
            quote_ident(&del),
            refs("OLD")
        ),
    ]
}

/// What [`check`] found for one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerState {
    /// All three triggers exist with the expected text.
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
        (3, 3) => TriggerState::Current,
        _ => TriggerState::Outdated,
    })
}

/// Drops and recreates the three triggers of `spec` in one short write transaction.
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
        let [ins, upd, del] = trigger_names("device_state");
        assert!(ins.starts_with("__omega_trg_ins_") && ins.len() == 16 + 16);
        assert!(upd.starts_with("__omega_trg_upd_"));
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
            .prepare("SELECT op, k1 FROM __omega_journal ORDER BY seq")
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
        assert_eq!(dropped.len(), 3);
        assert_eq!(check(&conn, &u, 2).unwrap(), TriggerState::Current);
    }
}
