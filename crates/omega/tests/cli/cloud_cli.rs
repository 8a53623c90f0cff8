//! `omega cloud keygen` and the store commands (`lineages`, `reviews`, `review
//! show|approve|reject`, `rows`, `quarantine`) on a SQLite store prepared in process with
//! `omega-cloud`: output shapes, the review workflow and exit statuses.

use std::path::Path;
use std::process::{Command, Output};

use omega_cloud::apply::apply_row_batch;
use omega_cloud::policy::Policy;
use omega_cloud::store::sqlite::SqliteStore;
use omega_protocol::message::{Op, RowBatch, RowChange};
use omega_protocol::schema::{Affinity, ColumnInfo, SchemaColumns};
use omega_protocol::value::SqlValue;
use serde_json::{Value, json};

fn omega(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_omega"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run omega")
}

fn ok_json(args: &[&str]) -> Value {
    let out = omega(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap()
}

#[test]
fn keygen_writes_a_private_key_only_its_owner_reads_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("keys");
    let d = out_dir.to_str().unwrap();
    let out = omega(&["cloud", "keygen", "--out", d]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let private = std::fs::read_to_string(out_dir.join("control.key")).unwrap();
    let public = std::fs::read_to_string(out_dir.join("control.pub")).unwrap();
    assert!(private.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(out_dir.join("control.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // The pair matches: what the private key signs, the public key verifies.
    let key = omega_protocol::signing::ControlKey::ed25519_from_pkcs8_pem(&private).unwrap();
    let verifier =
        omega_protocol::signing::ControlVerifier::ed25519_from_public_pem(&public).unwrap();
    assert_eq!(key.key_id(), verifier.key_id());
    assert!(String::from_utf8_lossy(&out.stdout).contains(key.key_id()));

    let again = omega(&["cloud", "keygen", "--out", d]);
    assert_eq!(code(&again), 2);
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    assert_eq!(
        std::fs::read_to_string(out_dir.join("control.key")).unwrap(),
        private
    );
}

#[test]
fn store_commands_without_a_usable_store_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("sqlite://{}", dir.path().join("nope.db").display());
    for args in [
        vec!["cloud", "lineages"],
        vec!["cloud", "lineages", "--store", "mysql://x"],
        vec!["cloud", "lineages", "--store", &missing],
        vec!["cloud", "reviews", "--store", &missing, "--status", "maybe"],
        vec!["cloud", "review", "show", "not-a-uuid", "--store", &missing],
    ] {
        let out = omega(&args);
        assert_eq!(
            code(&out),
            2,
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        !dir.path().join("nope.db").exists(),
        "a read command created a store"
    );
}

#[test]
fn serve_exits_2_on_configuration_errors_naming_the_file_or_flag() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let keys = d.join("keys");
    assert!(
        omega(&["cloud", "keygen", "--out", keys.to_str().unwrap()])
            .status
            .success()
    );
    let cfg = d.join("cloud.yaml");
    let c = cfg.to_str().unwrap();
    let write = |yaml: &str| std::fs::write(&cfg, yaml).unwrap();
    let serve = |extra: &[&str]| {
        let mut args = vec!["cloud", "serve", "--config", c];
        args.extend_from_slice(extra);
        let out = omega(&args);
        (
            code(&out),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let good = "store:\n  url: sqlite://cloud.db\ncontrol:\n  signing_key_path: keys/control.key\n";

    let (status, err) = serve(&[]);
    assert_eq!(status, 2, "no file: {err}");
    write("control:\n  signing_key_path: keys/control.key\n  colour: blue\n");
    let (status, err) = serve(&[]);
    assert_eq!(status, 2, "{err}");
    assert!(
        err.contains("cloud.yaml") && err.contains("colour"),
        "{err}"
    );
    write("store:\n  url: sqlite://cloud.db\ncontrol:\n  signing_key_path: keys/missing.key\n");
    let (status, err) = serve(&[]);
    assert_eq!(status, 2, "{err}");
    assert!(err.contains("control.signing_key_path"), "{err}");
    write(good);
    for (flag, value) in [
        ("--workers", "0"),
        ("--broker", "http://x"),
        ("--store", "mysql://x"),
        ("--http", "not an address"),
    ] {
        let (status, err) = serve(&[flag, value]);
        assert_eq!(status, 2, "{flag} {value}: {err}");
        assert!(err.contains(flag), "{flag}: {err}");
    }
    assert!(!d.join("cloud.db").exists(), "nothing started");
}

fn columns() -> SchemaColumns {
    let col = |name: &str, a, pk| ColumnInfo {
        name: name.into(),
        decl_type_affinity: a,
        pk_ordinal: pk,
        not_null: pk > 0,
    };
    SchemaColumns {
        table_name: "order".into(),
        columns: vec![
            col("id", Affinity::Integer, 1),
            col("mode", Affinity::Text, 0),
            col("raw", Affinity::Blob, 0),
        ],
    }
}

fn batch(rows: Vec<(i64, &str, Vec<u8>)>) -> RowBatch {
    let cols = columns();
    let n = rows.len() as i64;
    RowBatch {
        batch_id: omega_protocol::ids::new_v7(),
        journal_epoch: "019dd31a-2800-7000-8000-000000000001".into(),
        source_table: "order".into(),
        schema_hash: omega_protocol::schema::schema_hash(&cols),
        schema_columns: Some(cols),
        first_commit_seq: 1,
        last_commit_seq: n,
        prev_commit_seq: Some(0),
        rows: rows
            .into_iter()
            .enumerate()
            .map(|(i, (id, mode, raw))| RowChange {
                commit_seq: i as i64 + 1,
                op: Op::Insert,
                pk: vec![("id".into(), SqlValue::Integer(id))],
                row: Some(vec![
                    ("id".into(), SqlValue::Integer(id)),
                    ("mode".into(), SqlValue::Text(mode.into())),
                    ("raw".into(), SqlValue::Blob(raw)),
                ]),
            })
            .collect(),
        snapshot: None,
    }
}

/// A store with one batch of `order` from `press-01`, staged behind a pending review.
fn staged_store(path: &Path) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = SqliteStore::open(path).await.unwrap();
        let b = batch(vec![
            (i64::MIN, "naïve ✓", vec![0, 255]),
            (7, "run", vec![]),
        ]);
        apply_row_batch(
            &store,
            &Policy::default(),
            "press-01",
            "omega/press-01/sync/rows/batch",
            &b,
        )
        .await
        .unwrap();
    });
}

#[test]
fn a_review_is_listed_shown_approved_with_a_rename_and_its_rows_appear() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cloud.db");
    staged_store(&db);
    let url = format!("sqlite://{}", db.display());
    let s = url.as_str();

    let lineages = ok_json(&["cloud", "lineages", "--store", s, "--json"]);
    let l = &lineages["items"][0];
    assert_eq!(l["device_id"], "press-01");
    assert_eq!(l["source_table"], "order");
    assert_eq!(l["status"], "paused");
    assert_eq!(l["pause_causes"], json!(["schema_review"]));
    assert_eq!(l["staged_rows"], 2);
    assert_eq!(l["confirmed_through"], 2);
    assert_eq!(lineages["next_cursor"], Value::Null);
    let human = omega(&["cloud", "lineages", "--store", s, "--device", "press-01"]);
    assert!(String::from_utf8_lossy(&human.stdout).contains("paused (schema_review)"));

    let no_mirror = omega(&[
        "cloud", "rows", "--store", s, "--device", "press-01", "--table", "order",
    ]);
    assert_eq!(code(&no_mirror), 1);
    assert!(String::from_utf8_lossy(&no_mirror.stderr).contains("no mirror yet"));

    let reviews = ok_json(&[
        "cloud", "reviews", "--store", s, "--status", "pending", "--json",
    ]);
    let id = reviews["items"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(reviews["items"][0]["class"], "ambiguous");
    let shown = ok_json(&["cloud", "review", "show", &id, "--store", s, "--json"]);
    assert_eq!(shown["devices"], json!(["press-01"]));
    assert_eq!(shown["staged_rows"], 2);
    assert_eq!(shown["samples"].as_array().unwrap().len(), 2);
    assert_eq!(shown["columns"]["columns"][0]["name"], "id");

    // Columns without an action: the command line is at fault.
    let incomplete = omega(&[
        "cloud",
        "review",
        "approve",
        &id,
        "--store",
        s,
        "--column",
        "id=mirror",
    ]);
    assert_eq!(
        code(&incomplete),
        2,
        "{}",
        String::from_utf8_lossy(&incomplete.stderr)
    );
    assert!(String::from_utf8_lossy(&incomplete.stderr).contains("incomplete_column_actions"));
    let bad = omega(&[
        "cloud",
        "review",
        "approve",
        &id,
        "--store",
        s,
        "--column",
        "mode=keep",
    ]);
    assert_eq!(code(&bad), 2);

    let approved = ok_json(&[
        "cloud",
        "review",
        "approve",
        &id,
        "--store",
        s,
        "--all-mirror",
        "--column",
        "mode=mirror:mode_v2",
        "--column",
        "raw=ignore",
        "--json",
    ]);
    assert_eq!(approved["status"], "approved");
    assert_eq!(approved["decided_by"], "api");

    let rows = ok_json(&[
        "cloud", "rows", "--store", s, "--device", "press-01", "--table", "order", "--json",
    ]);
    assert_eq!(rows["mirror_table"], "edge_mirror_order");
    assert_eq!(
        rows["columns"],
        json!([
            {"name": "id", "source": "id", "type": "INTEGER"},
            {"name": "mode_v2", "source": "mode", "type": "TEXT"},
        ])
    );
    let items = rows["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["pk"], json!({"id": i64::MIN}));
    assert_eq!(
        items[0]["row"],
        json!({"id": i64::MIN, "mode_v2": "naïve ✓"})
    );
    assert_eq!(items[1]["version"]["commit_seq"], 2);
    let limited = ok_json(&[
        "cloud", "rows", "--store", s, "--device", "press-01", "--table", "order", "--limit", "1",
        "--json",
    ]);
    assert_eq!(limited["items"].as_array().unwrap().len(), 1);

    let lineages = ok_json(&["cloud", "lineages", "--store", s, "--json"]);
    assert_eq!(lineages["items"][0]["status"], "active");
    assert_eq!(lineages["items"][0]["staged_rows"], 0);

    // Only a pending review can be rejected: a refusal, not a usage error.
    let reject = omega(&[
        "cloud", "review", "reject", &id, "--store", s, "--reason", "late",
    ]);
    assert_eq!(code(&reject), 1);
    assert!(String::from_utf8_lossy(&reject.stderr).contains("review_not_pending"));
    let unknown = omega(&[
        "cloud",
        "review",
        "show",
        "019dd31a-2800-7000-8000-000000000009",
        "--store",
        s,
    ]);
    assert_eq!(code(&unknown), 1);

    let q = ok_json(&["cloud", "quarantine", "--store", s, "--json"]);
    assert_eq!(q["items"], json!([]));
}
