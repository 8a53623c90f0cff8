//! Unit tests of the `cloud.yaml` rules (`cloud.md` §2).

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use super::*;
use crate::policy::Coalescing;

const MINIMAL: &str = "control:\n  signing_key_path: keys/control.key\n";

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k: &str| map.get(k).cloned()
}

fn load(text: &str) -> Result<CloudConfig, ConfigErrors> {
    CloudConfig::check_yaml_str(text, Path::new("/srv/omega/cloud.yaml"), &env_of(&[]))
}

fn err(text: &str) -> ConfigError {
    load(text).unwrap_err().into_first()
}

#[test]
fn a_minimal_config_gets_every_default() {
    let c = load(MINIMAL).unwrap();
    assert_eq!(c.broker.url.to_string(), "mqtt://127.0.0.1:1883");
    assert_eq!(c.broker.client_id_for("host-a"), "omega-cloud-host-a");
    assert_eq!(c.ingest.device_topic.root_filter(), "omega/+");
    assert_eq!(c.ingest.workers, 4);
    assert_eq!(c.ingest.shared_group.as_deref(), Some("omega-ingest"));
    assert_eq!(
        c.store,
        StoreUrl::Sqlite("/srv/omega/omega-cloud.db".into())
    );
    assert_eq!(c.policy.schema.coalescing, Coalescing::Project);
    assert!(!c.policy.schema.auto_approve && !c.policy.schema.allow_additive_continue);
    assert_eq!(c.policy.max_pending_rows_per_lineage, 100_000);
    assert_eq!(c.policy.max_pending_bytes_per_lineage, 1 << 30);
    assert_eq!(c.policy.resume_threshold_percent, 80);
    assert_eq!(c.policy.circuit_breaker_failures, 5);
    assert_eq!(
        c.policy.tombstone_retention,
        Duration::from_secs(168 * 3600)
    );
    assert_eq!(
        c.control.signing_key_path,
        Path::new("/srv/omega/keys/control.key")
    );
    assert_eq!(c.control.alg, ControlAlg::Ed25519);
    assert_eq!(c.control.resend_after, Duration::from_secs(30));
    assert_eq!(c.api.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.receipts_interval, Duration::from_secs(1));
    assert!(c.jitr.is_none());
    assert!(c.warnings().is_empty());
}

#[test]
fn the_signing_key_is_required() {
    let e = err("");
    assert_eq!(e.path(), Some("control.signing_key_path"));
    let e = err("control:\n  signing_key_path_env: OMEGA_CONTROL_KEY\n");
    assert!(
        e.to_string()
            .contains("the variable OMEGA_CONTROL_KEY named by signing_key_path_env"),
        "{e}"
    );
}

#[test]
fn ranges_are_checked() {
    let cases = [
        (
            "ingest: { workers: 0 }",
            "ingest.workers",
            "between 1 and 256",
        ),
        (
            "ingest: { workers: 257 }",
            "ingest.workers",
            "between 1 and 256",
        ),
        (
            "policy: { resume_threshold_percent: 100 }",
            "policy.resume_threshold_percent",
            "between 1 and 99",
        ),
        (
            "policy: { circuit_breaker_failures: 0 }",
            "policy.circuit_breaker_failures",
            "at least 1",
        ),
        (
            "policy: { max_pending_rows_per_lineage: -5 }",
            "policy.max_pending_rows_per_lineage",
            "at least 1",
        ),
        (
            "receipts: { interval: 10ms }",
            "receipts.interval",
            "between 100ms and 1h",
        ),
        (
            "control: { signing_key_path: k, resend_after: 0s }",
            "control.resend_after",
            "at least 1s",
        ),
    ];
    for (extra, path, msg) in cases {
        let text = if extra.starts_with("control") {
            extra.to_owned()
        } else {
            format!("{MINIMAL}{extra}\n")
        };
        let e = err(&text);
        assert_eq!(e.path(), Some(path), "{extra}: {e}");
        assert!(e.to_string().contains(msg), "{extra}: {e}");
    }
}

#[test]
fn sizes_durations_and_words_parse() {
    let c = load(&format!(
        "{MINIMAL}policy:\n  coalescing: none\n  max_pending_bytes_per_lineage: 512 MiB\n  tombstone_retention: 24h\n  auto_approve: true\n"
    ))
    .unwrap();
    assert_eq!(c.policy.schema.coalescing, Coalescing::PerDevice);
    assert_eq!(c.policy.max_pending_bytes_per_lineage, 512 << 20);
    assert_eq!(c.policy.tombstone_retention, Duration::from_secs(86_400));
    assert!(c.policy.schema.auto_approve);
    let e = err(&format!("{MINIMAL}policy: {{ coalescing: per_devise }}\n"));
    assert!(e.to_string().contains("did you mean `per_device`?"), "{e}");
}

#[test]
fn mqtt_version_is_5_by_default_or_3_1_1_for_older_brokers() {
    use crate::ingest::link::MqttVersion;
    assert_eq!(load(MINIMAL).unwrap().broker.mqtt_version, MqttVersion::V5);
    for (text, want) in [
        ("'3.1.1'", MqttVersion::V311),
        ("5", MqttVersion::V5),
        ("'5'", MqttVersion::V5),
    ] {
        let c = load(&format!("{MINIMAL}broker: {{ mqtt_version: {text} }}\n")).unwrap();
        assert_eq!(c.broker.mqtt_version, want, "{text}");
    }
    let e = err(&format!("{MINIMAL}broker: {{ mqtt_version: 4 }}\n"));
    assert_eq!(e.path(), Some("broker.mqtt_version"));
    assert!(e.to_string().contains("3.1.1"), "{e}");
}

#[test]
fn quic_urls_need_the_feature_and_mqtt_5() {
    let quic = format!("{MINIMAL}broker: {{ url: 'quic://b.example:14567' }}\n");
    if cfg!(feature = "quic") {
        assert!(load(&quic).is_ok());
        let e = err(&format!(
            "{MINIMAL}broker: {{ url: 'quics://b.example', mqtt_version: '3.1.1' }}\n"
        ));
        assert_eq!(e.path(), Some("broker.url"));
        assert!(e.to_string().contains("MQTT 5 only"), "{e}");
    } else {
        let e = err(&quic);
        assert_eq!(e.path(), Some("broker.url"));
        assert!(e.to_string().contains("feature `quic`"), "{e}");
    }
}

#[test]
fn unknown_keys_suggest_the_closest() {
    let e = err(&format!("{MINIMAL}ingest: {{ worker: 2 }}\n"));
    assert_eq!(e.path(), Some("ingest.worker"));
    assert!(e.to_string().contains("did you mean `workers`?"));
}

#[test]
fn device_topic_templates_follow_the_protocol() {
    let c = load(&format!(
        "{MINIMAL}ingest: {{ device_topic: \"fleet/+/{{device}}\" }}\n"
    ))
    .unwrap();
    assert_eq!(
        c.ingest.device_topic.subscription_filter(),
        "fleet/+/+/sync/#"
    );
    let e = err(&format!(
        "{MINIMAL}ingest: {{ device_topic: fleet/devices }}\n"
    ));
    assert_eq!(e.path(), Some("ingest.device_topic"));
    let e = err(&format!(
        "{MINIMAL}ingest: {{ device_topic: \"a/#/{{device}}\" }}\n"
    ));
    assert_eq!(e.path(), Some("ingest.device_topic"));
}

#[test]
fn an_empty_shared_group_is_a_plain_subscription_with_a_warning() {
    let c = load(&format!("{MINIMAL}ingest: {{ shared_group: \"\" }}\n")).unwrap();
    assert_eq!(c.ingest.shared_group, None);
    assert_eq!(c.warnings()[0].path, "ingest.shared_group");
    assert_eq!(
        err(&format!("{MINIMAL}ingest: {{ shared_group: a/b }}\n")).path(),
        Some("ingest.shared_group")
    );
}

#[test]
fn store_urls_are_postgres_or_sqlite() {
    let c = load(&format!(
        "{MINIMAL}store: {{ url: \"postgres://u:pw@db/omega\" }}\n"
    ))
    .unwrap();
    assert_eq!(
        c.store,
        StoreUrl::Postgres("postgres://u:pw@db/omega".into())
    );
    let c = load(&format!(
        "{MINIMAL}store: {{ url: \"sqlite:///var/lib/omega.db\" }}\n"
    ))
    .unwrap();
    assert_eq!(c.store, StoreUrl::Sqlite("/var/lib/omega.db".into()));
    let e = err(&format!(
        "{MINIMAL}store: {{ url: \"mysql://u:secret@db\" }}\n"
    ));
    assert_eq!(e.path(), Some("store.url"));
    assert!(
        !e.to_string().contains("secret"),
        "store URLs are never shown: {e}"
    );
    let env = env_of(&[("DB", "postgres://db/x")]);
    let c = CloudConfig::from_yaml_str(
        &format!("{MINIMAL}store: {{ url_env: DB }}\n"),
        Path::new("c.yaml"),
        &env,
    )
    .unwrap();
    assert_eq!(c.store, StoreUrl::Postgres("postgres://db/x".into()));
}

#[test]
fn broker_tls_needs_a_tls_url_and_both_halves() {
    let e = err(&format!("{MINIMAL}broker: {{ tls: {{ ca: ca.pem }} }}\n"));
    assert_eq!(e.path(), Some("broker.url"));
    let e = err(&format!(
        "{MINIMAL}broker: {{ url: \"ssl://b\", tls: {{ cert: c.pem }} }}\n"
    ));
    assert_eq!(e.path(), Some("broker.tls.key"));
    let c = load(&format!(
        "{MINIMAL}broker: {{ url: \"ssl://b\", tls: {{ ca: ca.pem, cert: c.pem, key: k.pem }} }}\n"
    ))
    .unwrap();
    assert_eq!(c.broker.url.port, 8883);
    assert_eq!(c.broker.ca.as_deref(), Some(Path::new("/srv/omega/ca.pem")));
}

#[test]
fn broker_credentials_come_from_variables() {
    let env = env_of(&[("U", "omega-cloud"), ("P", "pw")]);
    let text = format!("{MINIMAL}broker: {{ username_env: U, password_env: P }}\n");
    let c = CloudConfig::from_yaml_str(&text, Path::new("c.yaml"), &env).unwrap();
    assert_eq!(c.broker.username.as_deref(), Some("omega-cloud"));
    assert_eq!(c.broker.password.as_ref().unwrap().expose(), "pw");
    assert_eq!(c.warnings()[0].path, "broker.password_env");
    let e = CloudConfig::from_yaml_str(&text, Path::new("c.yaml"), &env_of(&[])).unwrap_err();
    assert_eq!(e.path(), Some("broker.username_env"));
}

#[test]
fn a_token_is_required_off_loopback() {
    let e = err(&format!("{MINIMAL}api: {{ listen: \"0.0.0.0:8080\" }}\n"));
    assert_eq!(e.path(), Some("api.token_env"));
    let env = env_of(&[("TOKEN", "t0k")]);
    let c = CloudConfig::from_yaml_str(
        &format!("{MINIMAL}api: {{ listen: \"0.0.0.0:8080\", token_env: TOKEN }}\n"),
        Path::new("c.yaml"),
        &env,
    )
    .unwrap();
    assert_eq!(c.api.token.as_ref().unwrap().expose(), "t0k");
    assert_eq!(
        err(&format!("{MINIMAL}api: {{ listen: localhost }}\n")).path(),
        Some("api.listen")
    );
}

#[test]
fn the_jitr_block_is_checked() {
    let text = format!(
        "{MINIMAL}jitr:\n  ca_cert: pki/device-ca.crt\n  ca_key_path_env: CA_KEY\n  cert_validity: 2160h\n  fleets:\n    - {{ org_id: acme, fleet_id: presses, bootstrap_ca: pki/b.crt, max_devices: 500, revoked_serials: [\"0A:1b\"] }}\n"
    );
    let env = env_of(&[("CA_KEY", "/keys/ca.key")]);
    let c = CloudConfig::from_yaml_str(&text, Path::new("/etc/cloud.yaml"), &env).unwrap();
    let j = c.jitr.unwrap();
    assert_eq!(j.ca_key_path, Path::new("/keys/ca.key"));
    assert_eq!(j.cert_validity, Duration::from_secs(2160 * 3600));
    assert_eq!(j.fleets[0].bootstrap_ca, Path::new("/etc/pki/b.crt"));
    assert_eq!(j.fleets[0].max_devices, Some(500));
    assert_eq!(j.fleets[0].revoked_serials, ["a1b"]);

    let e = CloudConfig::from_yaml_str(
        &text.replace("fleet_id: presses, ", ""),
        Path::new("c"),
        &env,
    )
    .unwrap_err();
    assert_eq!(e.path(), Some("jitr.fleets[0].fleet_id"));
    let twice = text.clone() + "    - { org_id: acme, fleet_id: presses, bootstrap_ca: x }\n";
    let e = CloudConfig::from_yaml_str(&twice, Path::new("c"), &env).unwrap_err();
    assert_eq!(e.path(), Some("jitr.fleets[1]"));
    let e = CloudConfig::from_yaml_str(&text.replace("\"0A:1b\"", "\"zz\""), Path::new("c"), &env)
        .unwrap_err();
    assert_eq!(e.path(), Some("jitr.fleets[0].revoked_serials[0]"));
}

#[test]
fn overrides_replace_file_values_and_name_the_flag() {
    let mut c = load(MINIMAL).unwrap();
    c.apply_overrides(
        Some("mqtt://10.0.0.1:1884"),
        Some("postgres://db/omega"),
        Some("127.0.0.1:9090"),
        Some(8),
    )
    .unwrap();
    assert_eq!(c.broker.url.to_string(), "mqtt://10.0.0.1:1884");
    assert_eq!(c.store, StoreUrl::Postgres("postgres://db/omega".into()));
    assert_eq!(c.api.listen.port(), 9090);
    assert_eq!(c.ingest.workers, 8);
    let e = c.apply_overrides(None, None, None, Some(0)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "--workers: ingest.workers: `0`: out of range: must be between 1 and 256"
    );
    let e = c
        .apply_overrides(None, None, Some("0.0.0.0:80"), None)
        .unwrap_err();
    assert!(e.to_string().starts_with("--http: api.token_env: "), "{e}");
    let e = c
        .apply_overrides(Some("http://x"), None, None, None)
        .unwrap_err();
    assert!(e.to_string().starts_with("--broker: broker.url: "), "{e}");
    let e = c
        .apply_overrides(None, Some("redis://x"), None, None)
        .unwrap_err();
    assert!(e.to_string().starts_with("--store: store.url: "), "{e}");
}

#[test]
fn signing_keys_are_read_from_their_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hmac.key"), "s3cret\n").unwrap();
    let cfg = dir.path().join("cloud.yaml");
    let text = "control: { signing_key_path: hmac.key, alg: hmac-sha256 }\n";
    let c = CloudConfig::from_yaml_str(text, &cfg, &env_of(&[])).unwrap();
    let key = c.control.read_key(&cfg).unwrap();
    assert_eq!(
        key.key_id(),
        omega_protocol::signing::ControlKey::hmac(b"s3cret")
            .unwrap()
            .key_id()
    );
    let missing = CloudConfig::from_yaml_str(MINIMAL, &cfg, &env_of(&[])).unwrap();
    let e = missing.control.read_key(&cfg).unwrap_err();
    assert_eq!(e.path(), Some("control.signing_key_path"));
    assert!(e.to_string().contains("cannot read"), "{e}");
}
