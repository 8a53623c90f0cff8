//! Unit tests of the agent configuration rules (`agent.md` §2).

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use super::*;

const MINIMAL: &str = "
connection:
  server_url: mqtt://127.0.0.1
  device_id: press-01
security:
  capabilities: { sqlite-replication: true }
  signed_control: { enabled: true, public_key_path: certs/control.pub }
sqlite-replication:
  source_db_path: app.db
";

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k: &str| map.get(k).cloned()
}

fn load(text: &str) -> Result<AgentConfig, ConfigErrors> {
    AgentConfig::check_yaml_str(text, Path::new("/etc/omega/c.yaml"), &env_of(&[]))
}

fn first_err(text: &str) -> ConfigError {
    load(text).unwrap_err().into_first()
}

fn with(extra_replace: &[(&str, &str)]) -> String {
    let mut t = MINIMAL.to_owned();
    for (from, to) in extra_replace {
        assert!(t.contains(from), "{from} not in the minimal config");
        t = t.replacen(from, to, 1);
    }
    t
}

#[test]
fn a_minimal_config_gets_every_default() {
    let c = load(MINIMAL).unwrap();
    assert_eq!(c.data_dir, Path::new("/etc/omega/var/data"));
    assert_eq!(c.connection.server_url.port, 1883);
    assert_eq!(c.connection.root_topic, "omega/press-01");
    assert_eq!(c.connection.mqtt.version, MqttVersion::V311);
    assert_eq!(c.connection.mqtt.keep_alive, Duration::from_secs(30));
    assert_eq!(
        c.connection.mqtt.session_expiry,
        Duration::from_secs(168 * 3600)
    );
    assert_eq!(c.security.max_payload_bytes, 64 * 1024);
    assert!(matches!(
        &c.security.signed_control,
        SignedControl::Ed25519 { public_key_path } if public_key_path == Path::new("/etc/omega/certs/control.pub")
    ));
    let r = &c.replication;
    assert_eq!(r.source_db_path, Path::new("/etc/omega/app.db"));
    assert_eq!(
        r.state_db_path,
        Path::new("/etc/omega/var/data/sqlite-replication/state.db")
    );
    assert_eq!(r.flush_interval, Duration::from_secs(5));
    assert_eq!(r.local_retention_bytes, 256 << 20);
    assert!(!r.snapshot_on_first_run);
    assert_eq!(r.delivery, Delivery::Receipts);
    assert_eq!(r.receipt_timeout, Duration::from_secs(30));
    assert!(r.table_strategies.is_empty());
    assert!(c.warnings().is_empty(), "{:?}", c.warnings());
}

#[test]
fn the_spec_example_loads_with_its_variables() {
    let text = include_str!("example.yaml");
    let env = env_of(&[
        ("OMEGA_MQTT_BROKER_URL", "mqtts://broker.example.com:8883"),
        ("OMEGA_DEVICE_ID", "press-01"),
        ("OMEGA_TLS_CA_PATH", "/pki/ca.pem"),
        ("OMEGA_TLS_CERT_PATH", "/pki/device.crt"),
        ("OMEGA_TLS_KEY_PATH", "/pki/device.key"),
        ("OMEGA_SOURCE_DB_PATH", "/data/app.db"),
        ("OMEGA_STATE_DB_PATH", "/data/state.db"),
    ]);
    let c = AgentConfig::from_yaml_str(text, Path::new("c.yaml"), &env).unwrap();
    assert_eq!(c.connection.root_topic, "omega/press-01");
    assert_eq!(c.connection.server_url.scheme, Scheme::Mqtts);
    assert_eq!(
        c.connection.mqtt.tls.client.as_ref().unwrap().key_path,
        Path::new("/pki/device.key")
    );
    let s = &c.replication.table_strategies;
    assert_eq!(s.len(), 3);
    assert!(matches!(s.strategy_for("TEMPS"), Strategy::Telemetry(t) if t.ts_column == "ts"));
    assert_eq!(c.template_vars[0].name, "OMEGA_DEVICE_ID");
    let used: Vec<_> = c
        .findings
        .env_uses
        .iter()
        .map(|u| (u.path.as_str(), u.source))
        .collect();
    assert!(used.contains(&("connection.server_url", omega_config::ValueSource::Variable)));
}

#[test]
fn clean_session_true_is_refused_with_the_reason() {
    let e = first_err(&with(&[(
        "  device_id: press-01\n",
        "  device_id: press-01\n  mqtt: { clean_session: true }\n",
    )]));
    assert_eq!(e.path(), Some("connection.mqtt.clean_session"));
    assert!(e.to_string().contains("persistent session"), "{e}");
    assert!(e.to_string().contains("downlink"), "{e}");
}

#[test]
fn durations_out_of_range_are_refused() {
    let cases = [
        (
            "  source_db_path: app.db\n",
            "  source_db_path: app.db\n  flush_interval: 50ms\n",
            "sqlite-replication.flush_interval",
            "between 100ms and 1h",
        ),
        (
            "  source_db_path: app.db\n",
            "  source_db_path: app.db\n  flush_interval: 2h\n",
            "sqlite-replication.flush_interval",
            "between 100ms and 1h",
        ),
        (
            "  device_id: press-01\n",
            "  device_id: press-01\n  mqtt: { keep_alive: 1s }\n",
            "connection.mqtt.keep_alive",
            "between 5s and 18h",
        ),
        (
            "  device_id: press-01\n",
            "  device_id: press-01\n  mqtt: { keep_alive: 19h }\n",
            "connection.mqtt.keep_alive",
            "between 5s and 18h",
        ),
        (
            "  device_id: press-01\n",
            "  device_id: press-01\n  mqtt: { version: 5, session_expiry: 30m }\n",
            "connection.mqtt.session_expiry",
            "at least 1h",
        ),
    ];
    for (from, to, path, msg) in cases {
        let e = first_err(&with(&[(from, to)]));
        assert_eq!(e.path(), Some(path));
        assert!(e.to_string().contains(msg), "{e}");
    }
}

#[test]
fn retention_below_one_mib_is_refused() {
    let e = first_err(&with(&[(
        "  source_db_path: app.db\n",
        "  source_db_path: app.db\n  local_retention_bytes: 512 KiB\n",
    )]));
    assert_eq!(
        e.to_string(),
        "/etc/omega/c.yaml: sqlite-replication.local_retention_bytes: `512 KiB`: must be at least 1 MiB"
    );
}

#[test]
fn tls_keys_with_a_plain_url_are_refused() {
    let e = first_err(&with(&[(
        "  device_id: press-01\n",
        "  device_id: press-01\n  mqtt: { tls: { ca_cert_path: ca.pem } }\n",
    )]));
    assert_eq!(e.path(), Some("connection.server_url"));
    assert!(e.to_string().contains("URL is plain"), "{e}");
}

#[test]
fn a_certificate_without_its_key_is_refused() {
    let t = with(&[
        ("mqtt://127.0.0.1", "mqtts://broker"),
        (
            "  device_id: press-01\n",
            "  device_id: press-01\n  mqtt: { tls: { client_cert_path: d.crt } }\n",
        ),
    ]);
    let e = first_err(&t);
    assert_eq!(e.path(), Some("connection.mqtt.tls.client_key_path"));
}

#[test]
fn schemes_and_ports_parse() {
    let quic = cfg!(feature = "quic").then_some(("quic://b", 14567));
    for (url, port) in [("ssl://b", 8883), ("tcp://b:1999", 1999)]
        .into_iter()
        .chain(quic)
    {
        let c = load(&with(&[("mqtt://127.0.0.1", url)])).unwrap();
        assert_eq!(c.connection.server_url.port, port);
    }
    let e = first_err(&with(&[("mqtt://127.0.0.1", "ws://b")]));
    assert_eq!(e.path(), Some("connection.server_url"));
}

#[test]
fn quic_urls_need_the_quic_feature() {
    let quic = omega_config::BrokerUrl::parse("quics://b:14567").unwrap();
    let ssl = omega_config::BrokerUrl::parse("ssl://b").unwrap();
    let why = super::connection::quic_unavailable(&quic, false).unwrap();
    assert!(why.contains("`quic` feature"), "{why}");
    assert_eq!(super::connection::quic_unavailable(&quic, true), None);
    assert_eq!(super::connection::quic_unavailable(&ssl, false), None);
    // This build's verdict, as `agent validate` reports it.
    let loaded = load(&with(&[("mqtt://127.0.0.1", "quic://b")]));
    if cfg!(feature = "quic") {
        assert!(loaded.is_ok());
    } else {
        let e = first_err(&with(&[("mqtt://127.0.0.1", "quic://b")]));
        assert_eq!(e.path(), Some("connection.server_url"));
    }
}

#[test]
fn the_capability_missing_is_a_distinct_error() {
    let e = first_err(&with(&[(
        "{ sqlite-replication: true }",
        "{ sqlite-replication: false, other: true }",
    )]));
    assert!(matches!(e.kind(), ErrorKind::CapabilityMissing { .. }));
    assert_eq!(e.path(), Some("security.capabilities.sqlite-replication"));
    let no_security = MINIMAL.replace("security:\n  capabilities: { sqlite-replication: true }\n  signed_control: { enabled: true, public_key_path: certs/control.pub }\n", "");
    assert!(
        load(&no_security)
            .unwrap_err()
            .errors()
            .iter()
            .any(|e| matches!(e.kind(), ErrorKind::CapabilityMissing { .. }))
    );
}

#[test]
fn signed_control_needs_its_key_material() {
    let e = first_err(&with(&[(
        "{ enabled: true, public_key_path: certs/control.pub }",
        "{ enabled: true }",
    )]));
    assert_eq!(e.path(), Some("security.signed_control.public_key_path"));
    let e = first_err(&with(&[(
        "{ enabled: true, public_key_path: certs/control.pub }",
        "{ alg: hmac-sha256 }",
    )]));
    assert_eq!(e.path(), Some("security.auth_token_env"));
    let t = with(&[(
        "{ enabled: true, public_key_path: certs/control.pub }",
        "{ alg: hmac-sha256 }\n  auth_token_env: TOKEN",
    )]);
    let env = env_of(&[("TOKEN", "s3cret")]);
    let c = AgentConfig::from_yaml_str(&t, Path::new("c.yaml"), &env).unwrap();
    assert!(
        matches!(&c.security.signed_control, SignedControl::HmacSha256 { secret } if secret.expose() == "s3cret")
    );
    assert!(!format!("{c:?}").contains("s3cret"));
    let e = AgentConfig::from_yaml_str(&t, Path::new("c.yaml"), &env_of(&[])).unwrap_err();
    assert!(
        e.to_string()
            .contains("variable TOKEN named by auth_token_env is not set"),
        "{e}"
    );
}

#[test]
fn legacy_tokens_are_refused() {
    let e = first_err(&with(&[(
        "{ enabled: true, public_key_path: certs/control.pub }",
        "{ public_key_path: k.pub, allow_legacy_token: true }",
    )]));
    assert_eq!(e.path(), Some("security.signed_control.allow_legacy_token"));
}

#[test]
fn the_state_db_cannot_be_the_source() {
    let e = first_err(&with(&[(
        "  source_db_path: app.db\n",
        "  source_db_path: app.db\n  state_db_path: ./app.db\n",
    )]));
    assert_eq!(e.path(), Some("sqlite-replication.state_db_path"));
}

#[test]
fn strategy_rules_are_checked() {
    let cases = [
        (
            "t: { strategy: telemetry }",
            "sqlite-replication.table_strategies.t.ts_column",
            "required",
        ),
        (
            "t: { strategy: rows, ts_column: ts }",
            "sqlite-replication.table_strategies.t.ts_column",
            "for `strategy: telemetry` only",
        ),
        (
            "t: { include_columns: [a] }",
            "sqlite-replication.table_strategies.t.include_columns",
            "for `strategy: telemetry` only",
        ),
        (
            "t: { strategy: ignore, ts_unit: ms }",
            "sqlite-replication.table_strategies.t.ts_unit",
            "for `strategy: telemetry` only",
        ),
        (
            "t: { strategy: telemetry, ts_column: ts, include_columns: [v, TS] }",
            "sqlite-replication.table_strategies.t.include_columns[1]",
            "cannot be listed",
        ),
        (
            "t: { strategy: telemetry, ts_column: ts, include_columns: [] }",
            "sqlite-replication.table_strategies.t.include_columns",
            "empty",
        ),
        (
            "t: { strategy: stream }",
            "sqlite-replication.table_strategies.t.strategy",
            "`stream` is not one of `rows`, `telemetry`, `ignore`",
        ),
        (
            "t: { strategy: telemetry, ts_column: ts, ts_unit: us }",
            "sqlite-replication.table_strategies.t.ts_unit",
            "`us` is not one of `s`, `ms`",
        ),
        (
            "Temps: {}\n    temps: {}",
            "sqlite-replication.table_strategies.temps",
            "name the same table",
        ),
    ];
    for (entry, path, msg) in cases {
        let t = with(&[(
            "  source_db_path: app.db\n",
            &format!("  source_db_path: app.db\n  table_strategies:\n    {entry}\n"),
        )]);
        let e = first_err(&t);
        assert_eq!(e.path(), Some(path), "{entry}: {e}");
        assert!(e.to_string().contains(msg), "{entry}: {e}");
    }
}

#[test]
fn strategies_for_internal_tables_are_dropped_with_a_warning() {
    let t = with(&[(
        "  source_db_path: app.db\n",
        "  source_db_path: app.db\n  table_strategies:\n    sqlite_sequence: { strategy: ignore }\n    temps: { strategy: telemetry, ts_column: ts, ts_unit: ms }\n",
    )]);
    let c = load(&t).unwrap();
    assert_eq!(c.replication.table_strategies.len(), 1);
    assert_eq!(
        c.warnings()[0].path,
        "sqlite-replication.table_strategies.sqlite_sequence"
    );
    assert!(
        matches!(c.replication.table_strategies.strategy_for("temps"), Strategy::Telemetry(t) if t.ts_unit == TsUnit::Millis)
    );
}

#[test]
fn compatibility_keys_warn() {
    let t = format!(
        "platform: linux\nmodules: {{ required: [other] }}\n{}",
        with(&[
            (
                "  device_id: press-01\n",
                "  device_id: press-01\n  cert_renewal: { days: 30 }\n  mqtt: { password_env: PW }\n"
            ),
            (
                "{ enabled: true, public_key_path: certs/control.pub }",
                "{ enabled: false }\n  rpc: {}"
            ),
        ])
    );
    let c = AgentConfig::from_yaml_str(&t, Path::new("c.yaml"), &env_of(&[("PW", "pw")])).unwrap();
    let paths: Vec<&str> = c.warnings().iter().map(|w| w.path.as_str()).collect();
    for p in [
        "platform",
        "modules.required[0]",
        "modules",
        "connection.cert_renewal",
        "connection.mqtt.password_env",
        "security.rpc",
        "security.signed_control.enabled",
    ] {
        assert!(paths.contains(&p), "missing warning {p}: {paths:?}");
    }
    assert!(matches!(c.security.signed_control, SignedControl::Disabled));
}

#[test]
fn device_ids_and_root_topics_follow_the_protocol() {
    let e = first_err(&with(&[("device_id: press-01", "device_id: a/b")]));
    assert_eq!(e.path(), Some("connection.device_id"));
    let e = first_err(&with(&[(
        "device_id: press-01",
        "device_id: p1\n  root_topic: fleet/+/x",
    )]));
    assert_eq!(e.path(), Some("connection.root_topic"));
    let c = load(&with(&[(
        "device_id: press-01",
        "device_id: p1\n  root_topic: /e023/{device_id}",
    )]))
    .unwrap();
    assert_eq!(c.connection.root_topic, "/e023/p1");
}

#[test]
fn a_missing_device_id_variable_is_named() {
    let e = first_err(&with(&[(
        "device_id: press-01",
        "device_id_env: OMEGA_DEVICE_ID",
    )]));
    assert_eq!(
        e.to_string(),
        "/etc/omega/c.yaml: connection.device_id: device_id is required: set device_id or the variable OMEGA_DEVICE_ID named by device_id_env"
    );
}

#[test]
fn jitr_supplies_the_device_id_and_owns_the_client_certificate() {
    let jitr = "  server_url: ssl://b\n  jitr:\n    api_base_url: https://cloud.example/\n    bootstrap_cert_path: boot.crt\n    org_id: acme\n    fleet_id: presses\n    device_name: press-07\n";
    let t = with(&[(
        "  server_url: mqtt://127.0.0.1\n  device_id: press-01\n",
        jitr,
    )]);
    let c = load(&t).unwrap();
    assert_eq!(c.connection.device_id, "press-07");
    let j = c.connection.jitr.as_ref().unwrap();
    assert_eq!(j.cert_dir, Path::new("/etc/omega/var/data/certs"));
    assert_eq!(j.api_base_url, "https://cloud.example");
    assert_eq!(
        c.connection.client_cert().unwrap().cert_path,
        Path::new("/etc/omega/var/data/certs/device.crt")
    );

    let mismatch = with(&[(
        "  server_url: mqtt://127.0.0.1\n  device_id: press-01\n",
        &format!("{jitr}  device_id: press-01\n"),
    )]);
    let e = first_err(&mismatch);
    assert_eq!(e.path(), Some("connection.device_id"));
    assert!(
        e.to_string()
            .contains("must equal connection.jitr.device_name `press-07`"),
        "{e}"
    );

    let plain = with(&[(
        "  server_url: mqtt://127.0.0.1\n  device_id: press-01\n",
        &jitr.replace("ssl://b", "mqtt://b"),
    )]);
    assert_eq!(first_err(&plain).path(), Some("connection.server_url"));
}

#[test]
fn every_error_is_reported_at_once() {
    let t = "connection:\n  server_url: mqtt://b\n  mqtt: { clean_session: true }\nsecurity: {}\nsqlite-replication: {}\n";
    let errs = load(t).unwrap_err();
    let paths: Vec<_> = errs.errors().iter().filter_map(|e| e.path()).collect();
    assert_eq!(
        paths,
        [
            "connection.device_id",
            "connection.mqtt.clean_session",
            "security.capabilities.sqlite-replication",
            "security.signed_control.public_key_path",
            "sqlite-replication.source_db_path"
        ]
    );
}

#[test]
fn an_unknown_key_suggests_the_closest() {
    let e = first_err(&with(&[(
        "  source_db_path: app.db\n",
        "  source_db_path: app.db\n  flush_intervall: 5s\n",
    )]));
    assert_eq!(
        e.to_string(),
        "/etc/omega/c.yaml: sqlite-replication.flush_intervall: unknown key; did you mean `flush_interval`? (line 10)"
    );
}

#[test]
fn mqtt_versions_accept_strings_and_numbers() {
    for (v, want) in [
        ("\"3.1.1\"", MqttVersion::V311),
        ("5", MqttVersion::V5),
        ("\"5\"", MqttVersion::V5),
    ] {
        let c = load(&with(&[(
            "device_id: press-01",
            &format!("device_id: p\n  mqtt: {{ version: {v} }}"),
        )]))
        .unwrap();
        assert_eq!(c.connection.mqtt.version, want);
    }
    let e = first_err(&with(&[(
        "device_id: press-01",
        "device_id: p\n  mqtt: { version: 4 }",
    )]));
    assert_eq!(e.path(), Some("connection.mqtt.version"));
}

#[test]
fn data_dir_env_and_state_defaults_follow_it() {
    let t = with(&[("connection:", "data_dir_env: DD\nconnection:")]);
    let c = AgentConfig::from_yaml_str(&t, Path::new("c.yaml"), &env_of(&[("DD", "/srv/omega")]))
        .unwrap();
    assert_eq!(
        c.replication.state_db_path,
        Path::new("/srv/omega/sqlite-replication/state.db")
    );
}
