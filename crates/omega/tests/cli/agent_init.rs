//! `omega agent init` prints a config that `validate` accepts with the variables it documents.

use crate::support::{Fixture, omega, stdout};

#[test]
fn init_prints_an_annotated_config_that_documents_its_variables() {
    let out = omega(&["agent", "init"], &[]);
    assert!(out.status.success());
    let text = stdout(&out);
    for var in [
        "OMEGA_MQTT_BROKER_URL",
        "OMEGA_DEVICE_ID",
        "OMEGA_TLS_CA_PATH",
        "OMEGA_TLS_CERT_PATH",
        "OMEGA_TLS_KEY_PATH",
        "OMEGA_SOURCE_DB_PATH",
        "OMEGA_STATE_DB_PATH",
    ] {
        assert!(text.contains(var), "init does not document {var}");
    }
    for default in [
        "default 30s",
        "default 168h",
        "default 256 MiB",
        "default 5s",
        "default receipts",
    ] {
        assert!(text.contains(default), "init does not give `{default}`");
    }
}

#[test]
fn the_init_config_validates_with_its_documented_environment() {
    let f = Fixture::new();
    let out = f.validate(&[]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.ends_with("ok\n"), "{text}");
    assert!(text.contains("  device_state  rows"), "{text}");
    assert!(text.contains("  temps         telemetry"), "{text}");
    assert!(
        text.contains("  events        skipped    no PRIMARY KEY"),
        "{text}"
    );
    assert!(text.contains("info: "), "{text}");
    assert!(
        text.contains("connection.server_url: from variable OMEGA_MQTT_BROKER_URL"),
        "{text}"
    );
    // The scratch entry names no table of the sample: a warning, not an error.
    assert!(
        text.contains("sqlite-replication.table_strategies.scratch: no such table"),
        "{text}"
    );
}

#[test]
fn profile_and_client_are_aliases_of_config() {
    let f = Fixture::new();
    let cfg = f.config().display().to_string();
    for flag in ["--profile", "--client"] {
        let out = omega(&["agent", "validate", flag, &cfg], &f.env);
        assert_eq!(out.status.code(), Some(0), "{flag}: {}", stdout(&out));
    }
}

#[test]
fn validate_without_config_is_a_usage_error() {
    let out = omega(&["agent", "validate"], &[]);
    assert_eq!(out.status.code(), Some(2));
}
