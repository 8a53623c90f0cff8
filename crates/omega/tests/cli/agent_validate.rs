//! `omega agent validate`: each bad case exits 2 with one error line naming the file and the
//! key; `--json` has the shape of `agent.md` §19; hostile table names get verdicts.

use rcgen::KeyPair;

use crate::support::{DEVICE, Fixture, error_lines, source_db, stdout, write_cert};

/// Runs validate and checks: exit 2, exactly one error line, naming the file and `key`, and
/// containing `needle`. Returns the line.
fn fails_once(f: &Fixture, key: &str, needle: &str) -> String {
    let out = f.validate(&[]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    let errors = error_lines(&text);
    assert_eq!(errors.len(), 1, "expected one error line:\n{text}");
    let line = errors[0].to_owned();
    let file = f.config().display().to_string();
    assert!(line.starts_with(&format!("error: {file}: ")), "{line}");
    assert!(line.contains(key), "`{key}` not in: {line}");
    assert!(line.contains(needle), "`{needle}` not in: {line}");
    assert!(text.ends_with("not ok\n"), "{text}");
    line
}

#[test]
fn an_unknown_key_suggests_the_closest() {
    let f = Fixture::new();
    f.edit("flush_interval: 5s", "flush_intervall: 5s");
    fails_once(
        &f,
        "sqlite-replication.flush_intervall: ",
        "unknown key; did you mean `flush_interval`?",
    );
}

#[test]
fn a_bare_number_is_not_a_duration() {
    let f = Fixture::new();
    f.edit("flush_interval: 5s", "flush_interval: 5");
    fails_once(
        &f,
        "sqlite-replication.flush_interval: ",
        "`5`: a bare number is not a duration",
    );
}

#[test]
fn a_bad_size_names_its_unit() {
    let f = Fixture::new();
    f.edit(
        "local_retention_bytes: 256 MiB",
        "local_retention_bytes: 256 mib",
    );
    fails_once(
        &f,
        "sqlite-replication.local_retention_bytes: ",
        "unknown size unit `mib`",
    );
}

#[test]
fn a_missing_variable_named_by_an_env_key_is_named() {
    let mut f = Fixture::new();
    f.set_env("OMEGA_SOURCE_DB_PATH", None);
    fails_once(
        &f,
        "sqlite-replication.source_db_path: ",
        "source_db_path is required: set source_db_path or the variable OMEGA_SOURCE_DB_PATH named by source_db_path_env",
    );
}

#[test]
fn an_unset_template_variable_is_named_with_its_line() {
    let mut f = Fixture::new();
    f.set_env("OMEGA_DEVICE_ID", None);
    fails_once(&f, ": line ", "variable `OMEGA_DEVICE_ID` is not set");
}

#[test]
fn an_unreadable_certificate_is_named() {
    let mut f = Fixture::new();
    f.set_env("OMEGA_TLS_CERT_PATH", Some("/nonexistent/device.crt"));
    fails_once(
        &f,
        "connection.mqtt.tls.client_cert_path: ",
        "/nonexistent/device.crt: cannot read",
    );
}

#[test]
fn a_malformed_certificate_is_named() {
    let f = Fixture::new();
    std::fs::write(
        f.path("pki/device.crt"),
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    fails_once(
        &f,
        "connection.mqtt.tls.client_cert_path: ",
        "does not parse as X.509",
    );
}

#[test]
fn a_key_that_does_not_match_the_certificate_is_named() {
    let mut f = Fixture::new();
    write_cert(
        f.dir.path(),
        "other",
        DEVICE,
        &KeyPair::generate().unwrap(),
        -1,
        90,
    );
    let other_key = f.path("pki/other.key").display().to_string();
    f.set_env("OMEGA_TLS_KEY_PATH", Some(&other_key));
    fails_once(
        &f,
        "connection.mqtt.tls.client_key_path: ",
        "the private key does not match the certificate",
    );
}

#[test]
fn an_expired_certificate_is_named() {
    let f = Fixture::new();
    write_cert(
        f.dir.path(),
        "device",
        DEVICE,
        &KeyPair::generate().unwrap(),
        -30,
        -1,
    );
    fails_once(
        &f,
        "connection.mqtt.tls.client_cert_path: ",
        "certificate expired on",
    );
}

#[test]
fn a_missing_source_database_is_named() {
    let mut f = Fixture::new();
    let missing = f.path("nope.db").display().to_string();
    f.set_env("OMEGA_SOURCE_DB_PATH", Some(&missing));
    fails_once(
        &f,
        "sqlite-replication.source_db_path: ",
        "nope.db: no such file",
    );
}

#[test]
fn clean_session_true_is_refused() {
    let f = Fixture::new();
    f.edit("clean_session: false", "clean_session: true");
    fails_once(&f, "connection.mqtt.clean_session: ", "persistent session");
}

#[test]
fn a_telemetry_table_needs_a_ts_column() {
    let f = Fixture::new();
    f.edit(
        "temps: { strategy: telemetry, ts_column: ts }",
        "temps: { strategy: telemetry }",
    );
    fails_once(
        &f,
        "sqlite-replication.table_strategies.temps.ts_column: ",
        "ts_column is required with `strategy: telemetry`",
    );
}

#[test]
fn a_strategy_outside_rows_telemetry_ignore_is_refused() {
    let f = Fixture::new();
    f.edit(
        "scratch: { strategy: ignore }",
        "scratch: { strategy: skip }",
    );
    fails_once(
        &f,
        "sqlite-replication.table_strategies.scratch.strategy: ",
        "`skip` is not one of `rows`, `telemetry`, `ignore`",
    );
}

#[test]
fn the_replication_capability_is_required() {
    let f = Fixture::new();
    f.edit(
        "{ sqlite-replication: true }",
        "{ sqlite-replication: false }",
    );
    fails_once(
        &f,
        "security.capabilities.sqlite-replication: ",
        "capability `sqlite-replication` must be `true`",
    );
}

#[test]
fn a_telemetry_column_missing_from_the_table_is_an_error() {
    let f = Fixture::new();
    f.edit("ts_column: ts }", "ts_column: taken_at }");
    fails_once(
        &f,
        "sqlite-replication.table_strategies.temps: ",
        "ts_column `taken_at` is not a column of the table",
    );
}

#[test]
fn secrets_are_never_printed() {
    let mut f = Fixture::new();
    f.edit(
        "# password_env: OMEGA_MQTT_PASSWORD",
        "password_env: OMEGA_MQTT_PASSWORD",
    );
    f.set_env("OMEGA_MQTT_PASSWORD", Some("hunter2-secret"));
    let out = f.validate(&[]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains(
            "connection.mqtt.password: from variable OMEGA_MQTT_PASSWORD (secret, not shown)"
        ),
        "{text}"
    );
    assert!(!text.contains("hunter2-secret"));
    let json = stdout(&f.validate(&["--json"]));
    assert!(!json.contains("hunter2-secret"));
}

#[test]
fn json_has_the_shape_of_the_spec() {
    let f = Fixture::new();
    let out = f.validate(&["--json"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["errors", "ok", "tables", "warnings"]);
    assert_eq!(v["ok"], true);
    assert_eq!(v["errors"], serde_json::json!([]));
    for w in v["warnings"].as_array().unwrap() {
        let keys: Vec<&str> = w.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["message", "path"], "{w}");
    }
    assert!(
        v["warnings"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!({"path": "sqlite-replication.table_strategies.scratch", "message": "no such table"}))
    );
    let tables = v["tables"].as_array().unwrap();
    for t in tables {
        let keys: Vec<&str> = t.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["action", "fix", "name", "reason", "schema_hash"],
            "{t}"
        );
    }
    let by_name = |n: &str| tables.iter().find(|t| t["name"] == n).unwrap().clone();
    assert_eq!(
        by_name("device_state"),
        serde_json::json!({"name": "device_state", "action": "rows",
            "schema_hash": "4d8f17a536ca112722082d44a2dfa63422465223a25d61f95c89302e858ad5e0",
            "reason": null, "fix": null})
    );
    assert_eq!(by_name("temps")["action"], "telemetry");
    assert_eq!(
        by_name("events"),
        serde_json::json!({"name": "events", "action": "skipped", "schema_hash": null,
            "reason": "no PRIMARY KEY", "fix": "add a PRIMARY KEY or set strategy: ignore"})
    );
}

#[test]
fn json_lists_errors_with_their_paths() {
    let f = Fixture::new();
    f.edit("clean_session: false", "clean_session: true");
    let out = f.validate(&["--json"]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["errors"][0]["path"], "connection.mqtt.clean_session");
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("`true`: must be false")
    );
}

#[test]
fn hostile_table_names_get_verdicts() {
    let f = Fixture::new();
    std::fs::remove_file(f.path("app.db")).unwrap();
    source_db(
        &f.path("app.db"),
        r#"CREATE TABLE "order"("select" INTEGER PRIMARY KEY, "from" TEXT);
           CREATE TABLE "a""b"("x""y" TEXT PRIMARY KEY NOT NULL, v BLOB);
           CREATE TABLE "naïve table"("é" INTEGER PRIMARY KEY, t TEXT);
           CREATE TABLE "scratch"(x);
           CREATE TABLE "Device_State"(id INTEGER PRIMARY KEY NOT NULL, mode TEXT);
           CREATE TABLE temps(id INTEGER PRIMARY KEY NOT NULL, ts TEXT NOT NULL, value REAL);"#,
    );
    let out = f.validate(&["--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{v:#}");
    let verdicts: Vec<(String, String)> = v["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_owned(),
                t["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want = [
        ("Device_State", "rows"),
        ("a\"b", "rows"),
        ("naïve table", "rows"),
        ("order", "rows"),
        ("scratch", "ignore"),
        ("temps", "telemetry"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(verdicts, want);
    // The rollback-journal source draws the WAL warning.
    assert!(v["warnings"].to_string().contains("not WAL"), "{v:#}");
    // `a"b` has a nullable-key warning? No: it is declared NOT NULL.
    assert!(!v["warnings"].to_string().contains("admits NULL"), "{v:#}");
}

#[test]
fn a_missing_config_file_is_named() {
    let f = Fixture::new();
    let missing = f.path("nope.yaml").display().to_string();
    let out = crate::support::omega(
        &["agent", "validate", "--config", &missing, "--json"],
        &f.env,
    );
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["errors"][0]["path"], serde_json::Value::Null);
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("cannot read the file"),
        "{v}"
    );
}

#[test]
fn a_state_db_of_another_device_is_refused() {
    let f = Fixture::new();
    std::fs::create_dir_all(f.path("state")).unwrap();
    source_db(
        &f.path("state/state.db"),
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
         INSERT INTO meta VALUES ('device_id', 'press-99');",
    );
    fails_once(
        &f,
        "sqlite-replication.state_db_path: ",
        "belongs to device `press-99`",
    );
    source_db(
        &f.path("state/state.db"),
        "UPDATE meta SET value = 'press-01';",
    );
    let out = f.validate(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("device id `press-01`"));
}

/// The device certificate must chain to a CA of `ca_cert_path` for a broker that trusts only
/// that CA: one from another CA draws a warning naming both files (not an error: a broker may
/// trust a different CA for clients than the one that signs its own certificate).
#[test]
fn a_certificate_from_another_ca_draws_a_warning() {
    let warning = "not issued by a CA in";
    // The fixture's device certificate is self-signed: not from pki/ca.pem.
    let f = Fixture::new();
    let out = f.validate(&[]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let line = text
        .lines()
        .find(|l| l.contains(warning))
        .unwrap_or_else(|| panic!("no wrong-CA warning:\n{text}"));
    assert!(line.starts_with("warning: "), "{line}");
    assert!(
        line.contains("connection.mqtt.tls.client_cert_path: "),
        "{line}"
    );
    assert!(
        line.contains("device.crt") && line.contains("ca.pem"),
        "{line}"
    );

    // Issued by the CA in pki/ca.pem: no warning.
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "device CA");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf = rcgen::CertificateParams::new(vec![DEVICE.to_owned()]).unwrap();
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, DEVICE);
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    std::fs::write(f.path("pki/ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(f.path("pki/device.crt"), cert.pem()).unwrap();
    std::fs::write(f.path("pki/device.key"), key.serialize_pem()).unwrap();
    let out = f.validate(&[]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(!text.contains(warning), "{text}");
}
