//! Discovery over real SQLite schemas, including hostile names.

use super::*;
use crate::config::{TableStrategy, Telemetry};

fn db(sql: &str) -> Connection {
    let c = Connection::open_in_memory().unwrap();
    c.execute_batch(sql).unwrap();
    c
}

fn strategies(entries: &[(&str, Strategy)]) -> TableStrategies {
    TableStrategies::new(
        entries
            .iter()
            .map(|(k, s)| TableStrategy {
                key: (*k).into(),
                strategy: s.clone(),
            })
            .collect(),
    )
    .unwrap()
}

fn telemetry(ts: &str, include: Option<&[&str]>) -> Strategy {
    Strategy::Telemetry(Telemetry {
        ts_column: ts.into(),
        include_columns: include.map(|l| l.iter().map(|s| s.to_string()).collect()),
        ts_unit: TsUnit::Seconds,
    })
}

fn find<'a>(tables: &'a [DiscoveredTable], name: &str) -> &'a DiscoveredTable {
    tables
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no table {name}"))
}

#[test]
fn schema_hashes_match_the_protocol_test_vectors() {
    let c = db(
        "CREATE TABLE device_state(id INTEGER PRIMARY KEY NOT NULL, mode TEXT);
                CREATE TABLE temps(id INTEGER PRIMARY KEY NOT NULL, ts TEXT NOT NULL, value REAL);",
    );
    let t = discover(&c, &TableStrategies::default()).unwrap();
    assert_eq!(
        find(&t, "device_state").schema_hash,
        "4d8f17a536ca112722082d44a2dfa63422465223a25d61f95c89302e858ad5e0"
    );
    assert_eq!(
        find(&t, "temps").schema_hash,
        "3591a22734304fa2d93aa1103dda6ca5670040e0627f591da004adc778866142"
    );
}

#[test]
fn tables_without_a_primary_key_are_skipped_with_the_fix() {
    let c = db("CREATE TABLE events(msg TEXT); CREATE TABLE logs(msg TEXT);");
    let s = strategies(&[("logs", Strategy::Rows)]);
    let t = discover(&c, &s).unwrap();
    let Verdict::Skipped(skip) = &find(&t, "events").verdict else {
        panic!()
    };
    assert_eq!(skip.reason, "no PRIMARY KEY");
    assert_eq!(skip.fix, "add a PRIMARY KEY or set strategy: ignore");
    assert!(!skip.config_error);
    let Verdict::Skipped(explicit) = &find(&t, "logs").verdict else {
        panic!()
    };
    assert!(
        explicit.config_error,
        "an explicit strategy on a table without key is a config error"
    );
}

#[test]
fn ignore_wins_even_without_a_primary_key() {
    let c = db("CREATE TABLE scratch(x);");
    let t = discover(&c, &strategies(&[("SCRATCH", Strategy::Ignore)])).unwrap();
    assert_eq!(t[0].verdict, Verdict::Ignore);
    assert_eq!(t[0].strategy_key.as_deref(), Some("SCRATCH"));
}

#[test]
fn internal_tables_are_recognised() {
    let c = db("CREATE TABLE a(id INTEGER PRIMARY KEY AUTOINCREMENT);
                CREATE TABLE __omega_journal(seq INTEGER PRIMARY KEY);
                INSERT INTO a DEFAULT VALUES;");
    let t = discover(&c, &TableStrategies::default()).unwrap();
    assert_eq!(find(&t, "sqlite_sequence").verdict, Verdict::Internal);
    assert_eq!(find(&t, "__omega_journal").verdict, Verdict::Internal);
    assert_eq!(find(&t, "a").verdict, Verdict::Rows);
    assert!(t.iter().all(|x| x.name != "sqlite_schema"));
}

#[test]
fn virtual_and_shadow_tables_are_skipped() {
    let c = db("CREATE VIRTUAL TABLE docs USING fts5(body);");
    let t = discover(&c, &strategies(&[("docs", Strategy::Rows)])).unwrap();
    let docs = find(&t, "docs");
    assert_eq!(docs.kind, TableKind::Virtual);
    assert!(
        matches!(&docs.verdict, Verdict::Skipped(s) if s.reason.contains("virtual") && !s.config_error)
    );
    assert_eq!(docs.warnings.len(), 1);
    let shadow = find(&t, "docs_data");
    assert_eq!(shadow.kind, TableKind::Shadow);
    assert!(matches!(&shadow.verdict, Verdict::Skipped(s) if s.reason.contains("shadow")));
}

#[test]
fn without_rowid_tables_enroll_and_keys_keep_their_order() {
    let c = db(
        "CREATE TABLE kv(b TEXT, a INTEGER, v BLOB DEFAULT x'00', PRIMARY KEY (b, a)) WITHOUT ROWID;",
    );
    let t = discover(&c, &TableStrategies::default()).unwrap();
    assert!(t[0].without_rowid);
    assert_eq!(t[0].verdict, Verdict::Rows);
    assert_eq!(t[0].key_columns, ["b", "a"]);
    assert!(
        t[0].warnings.is_empty(),
        "WITHOUT ROWID keys are NOT NULL: {:?}",
        t[0].warnings
    );
    let v = &t[0].columns[2];
    assert_eq!(
        (v.decl_type.as_str(), v.affinity, v.has_default),
        ("BLOB", Affinity::Blob, true)
    );
}

#[test]
fn nullable_key_columns_warn_but_the_rowid_alias_does_not() {
    let c = db("CREATE TABLE a(id INTEGER PRIMARY KEY, x);
                CREATE TABLE b(code TEXT PRIMARY KEY, x);
                CREATE TABLE c(code TEXT PRIMARY KEY NOT NULL, x);
                CREATE TABLE d(id INTEGER, x, PRIMARY KEY (id DESC));");
    let t = discover(&c, &TableStrategies::default()).unwrap();
    assert!(find(&t, "a").warnings.is_empty());
    assert!(find(&t, "b").warnings[0].contains("`code` admits NULL: add NOT NULL"));
    assert!(find(&t, "c").warnings.is_empty());
    // `INTEGER PRIMARY KEY DESC` in a table constraint is still the rowid alias.
    assert!(
        find(&t, "d").warnings.is_empty(),
        "{:?}",
        find(&t, "d").warnings
    );
}

#[test]
fn telemetry_plans_resolve_column_names() {
    let c =
        db("CREATE TABLE temps(id INTEGER PRIMARY KEY, TS TEXT NOT NULL, value REAL, unit TEXT);");
    let t = discover(&c, &strategies(&[("temps", telemetry("ts", None))])).unwrap();
    let Verdict::Telemetry(p) = &t[0].verdict else {
        panic!("{:?}", t[0].verdict)
    };
    assert_eq!(p.ts_column, "TS");
    assert_eq!(p.field_columns, ["id", "value", "unit"]);
    let t = discover(
        &c,
        &strategies(&[("temps", telemetry("ts", Some(&["VALUE"])))]),
    )
    .unwrap();
    let Verdict::Telemetry(p) = &t[0].verdict else {
        panic!()
    };
    assert_eq!(p.field_columns, ["value"]);
}

#[test]
fn telemetry_with_missing_columns_is_a_configuration_error() {
    let c = db("CREATE TABLE temps(id INTEGER PRIMARY KEY, value REAL);");
    let t = discover(&c, &strategies(&[("temps", telemetry("ts", None))])).unwrap();
    let Verdict::Skipped(s) = &t[0].verdict else {
        panic!()
    };
    assert!(s.config_error);
    assert!(s.reason.contains("ts_column `ts`"), "{}", s.reason);
    assert!(s.fix.contains("`value`"), "{}", s.fix);
    let t = discover(
        &c,
        &strategies(&[("temps", telemetry("value", Some(&["nope"])))]),
    )
    .unwrap();
    assert!(
        matches!(&t[0].verdict, Verdict::Skipped(s) if s.reason.contains("`nope`") && s.config_error)
    );
}

#[test]
fn hostile_names_enroll_and_hash() {
    let c = db(
        r#"CREATE TABLE "order"("select" INTEGER PRIMARY KEY, "from" TEXT);
                  CREATE TABLE "a""b"("x""y" TEXT PRIMARY KEY NOT NULL);
                  CREATE TABLE "naïve table"("é" INTEGER PRIMARY KEY);"#,
    );
    let s = strategies(&[("ORDER", Strategy::Rows)]);
    let t = discover(&c, &s).unwrap();
    let names: Vec<&str> = t.iter().map(|x| x.name.as_str()).collect();
    assert_eq!(names, ["a\"b", "naïve table", "order"]);
    assert!(t.iter().all(|x| x.verdict == Verdict::Rows));
    assert_eq!(find(&t, "a\"b").key_columns, ["x\"y"]);
    assert_eq!(find(&t, "order").strategy_key.as_deref(), Some("ORDER"));
    for x in &t {
        let n: i64 = c
            .query_row(
                &format!("SELECT count(*) FROM {}", quote_ident(&x.name)),
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 0);
    }
}

#[test]
fn quote_ident_doubles_inner_quotes() {
    assert_eq!(quote_ident("order"), "\"order\"");
    assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    assert_eq!(quote_ident("naïve table"), "\"naïve table\"");
}

#[test]
fn views_and_generated_columns_are_left_out() {
    let c = db(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, a INT, b INT GENERATED ALWAYS AS (a * 2));
                CREATE VIEW v AS SELECT * FROM t;",
    );
    let t = discover(&c, &TableStrategies::default()).unwrap();
    assert_eq!(t.len(), 1);
    let names: Vec<&str> = t[0].columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["id", "a"]);
}

#[test]
fn strategy_keys_matching_no_table_are_reported() {
    let c = db("CREATE TABLE a(id INTEGER PRIMARY KEY);");
    let s = strategies(&[("A", Strategy::Rows), ("old_log", Strategy::Ignore)]);
    let t = discover(&c, &s).unwrap();
    let keys: Vec<&str> = unmatched_strategy_keys(&t, &s)
        .iter()
        .map(|e| e.key.as_str())
        .collect();
    assert_eq!(keys, ["old_log"]);
}

#[test]
fn the_source_opens_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let w = Connection::open(&path).unwrap();
    w.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY);")
        .unwrap();
    let ro = open_read_only(&path).unwrap();
    assert_eq!(journal_mode(&ro).unwrap(), "wal");
    assert!(ro.execute("INSERT INTO t DEFAULT VALUES", []).is_err());
    assert_eq!(discover(&ro, &TableStrategies::default()).unwrap().len(), 1);

    assert!(matches!(
        open_read_only(&dir.path().join("nope.db")),
        Err(DiscoverError::NotFound { .. })
    ));
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, b"this is not a database, not at all, no header here").unwrap();
    let e = open_read_only(&junk).unwrap_err();
    assert!(
        e.to_string().contains("cannot open as a SQLite database"),
        "{e}"
    );
}

#[test]
fn journal_mode_of_a_rollback_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY);")
        .unwrap();
    assert_eq!(
        journal_mode(&open_read_only(&path).unwrap()).unwrap(),
        "delete"
    );
}
