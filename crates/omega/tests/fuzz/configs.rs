//! `agent.yaml` and `cloud.yaml` near the valid ones → `AgentConfig::check_yaml_str`,
//! `CloudConfig::check_yaml_str`. The property: no panic, and every input is either accepted
//! or refused with errors that each name the file and a key path or a line.

use std::path::Path;

use omega_agent::config::AgentConfig;
use omega_cloud::config::CloudConfig;
use omega_config::error::{ConfigError, ConfigErrors};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::mutate::{self, Mutation};
use crate::{Tally, fuzz};

/// The agent's documented example (`omega agent init` writes it).
const AGENT: &str = include_str!("../../../omega-agent/src/config/example.yaml");

/// A cloud configuration with every block.
const CLOUD: &str = "\
broker:
  url: mqtts://broker.example.com:8883
  client_id: omega-cloud-{hostname}
  username_env: OMEGA_BROKER_USER
  password_env: OMEGA_BROKER_PASSWORD
  tls: { ca: certs/ca.pem, cert: certs/cloud.pem, key: certs/cloud.key }
ingest:
  device_topic: \"omega/{device}\"
  workers: 8
  shared_group: omega-ingest
store:
  url_env: OMEGA_STORE_URL
policy:
  coalescing: project
  allow_additive_continue: true
  auto_approve: false
  max_pending_rows_per_lineage: 100000
  max_pending_bytes_per_lineage: 1 GiB
  resume_threshold_percent: 80
  circuit_breaker_failures: 5
  tombstone_retention: 168h
control:
  signing_key_path: keys/control.key
  alg: ed25519
  resend_after: 30s
api:
  listen: 0.0.0.0:8080
  token_env: OMEGA_API_TOKEN
receipts:
  interval: 1s
";

fn env(name: &str) -> Option<String> {
    Some(
        match name {
            "OMEGA_MQTT_BROKER_URL" => "mqtts://broker.example.com:8883",
            "OMEGA_DEVICE_ID" => "press-01",
            "OMEGA_TLS_CA_PATH" => "/etc/omega/ca.pem",
            "OMEGA_TLS_CERT_PATH" => "/etc/omega/device.pem",
            "OMEGA_TLS_KEY_PATH" => "/etc/omega/device.key",
            "OMEGA_SOURCE_DB_PATH" => "/var/lib/app/app.db",
            "OMEGA_STATE_DB_PATH" => "/var/lib/omega/state.db",
            "OMEGA_BROKER_USER" => "cloud",
            "OMEGA_BROKER_PASSWORD" => "secret",
            "OMEGA_STORE_URL" => "postgres://omega@db/omega",
            "OMEGA_API_TOKEN" => "token",
            _ => return None,
        }
        .to_string(),
    )
}

/// YAML tokens a JSON tree cannot carry, spliced in for the placeholders of
/// [`mutate::Replacement::Raw`] (same indexes).
const RAW: &[&str] = &[
    "99999999999999999999",
    "-1",
    ".nan",
    "-.inf",
    "0x10",
    "~",
    "\"{{ UNSET_VARIABLE }}\"",
    "\"{{ OMEGA_DEVICE_ID }}\"",
    "[1, 2",
    "*nowhere",
    "!!binary aGk=",
    "\"5 parsecs\"",
];

/// A change to the YAML text.
#[derive(Debug, Clone)]
enum Text {
    Keep,
    Truncate(u16),
    /// Repeats line `n` (mod the line count): duplicate keys, broken nesting.
    DuplicateLine(u16),
    /// Indents line `n` with a tab.
    Tab(u16),
}

fn text() -> impl Strategy<Value = Text> {
    prop_oneof![
        7 => Just(Text::Keep),
        1 => (0u16..1000).prop_map(Text::Truncate),
        1 => any::<u16>().prop_map(Text::DuplicateLine),
        1 => any::<u16>().prop_map(Text::Tab),
    ]
}

fn render(base: &str, muts: &[Mutation], t: &Text) -> Result<String, TestCaseError> {
    let mut doc: serde_json::Value = serde_yaml_ng::from_str(base)
        .map_err(|e| TestCaseError::fail(format!("the base config does not parse: {e}")))?;
    for m in muts {
        mutate::apply(&mut doc, m);
    }
    let mut s = serde_yaml_ng::to_string(&doc)
        .map_err(|e| TestCaseError::fail(format!("a tree does not serialise: {e}")))?;
    for (i, raw) in RAW.iter().enumerate().rev() {
        let p = format!("@@RAW{i}@@");
        for quoted in [format!("'{p}'"), format!("\"{p}\""), p.clone()] {
            s = s.replace(&quoted, raw);
        }
    }
    let lines: Vec<&str> = s.lines().collect();
    Ok(match t {
        Text::Keep => s,
        Text::Truncate(pm) => {
            let mut end = s.len() * usize::from(*pm) / 1000;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s[..end].to_string()
        }
        Text::DuplicateLine(n) if !lines.is_empty() => {
            let n = usize::from(*n) % lines.len();
            let mut out = lines[..=n].to_vec();
            out.extend_from_slice(&lines[n..]);
            out.join("\n")
        }
        Text::Tab(n) if !lines.is_empty() => {
            let n = usize::from(*n) % lines.len();
            let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
            out[n].insert(0, '\t');
            out.join("\n")
        }
        _ => s,
    })
}

/// Every error names `file` and a key path or a line.
fn named(
    errors: &ConfigErrors,
    file: &str,
    text: &str,
    known: &[&str],
) -> Result<String, TestCaseError> {
    for e in errors.errors() {
        let e: &ConfigError = e;
        prop_assert_eq!(e.file(), file, "{}\n---\n{}", e, text);
        prop_assert!(
            e.path().is_some() || e.line().is_some(),
            "an error naming neither a key nor a line: {}\n---\n{}",
            e,
            text
        );
        prop_assert!(e.to_string().starts_with(file), "{}", e);
    }
    let first = errors.first();
    Ok(
        match first.path().map(|p| p.split('.').next().unwrap_or(p)) {
            Some(top) if known.contains(&top) => format!("refused at {top}"),
            Some(_) => "refused at an unknown key".to_string(),
            None => "refused at a line".to_string(),
        },
    )
}

/// Top-level keys of the two files (errors elsewhere are tallied as "an unknown key").
const KNOWN: &[&str] = &[
    "name",
    "connection",
    "security",
    "sqlite-replication",
    "broker",
    "ingest",
    "store",
    "policy",
    "control",
    "api",
    "receipts",
    "jitr",
];

fn strategy() -> impl Strategy<Value = (Vec<Mutation>, Text)> {
    (prop::collection::vec(mutate::mutation(), 0..=3), text())
}

#[test]
fn near_valid_agent_configs_are_accepted_or_refused_naming_the_key() {
    let file = "/etc/omega/agent.yaml";
    AgentConfig::check_yaml_str(AGENT, Path::new(file), &env).expect("the example is valid");
    let tally = Tally::default();
    fuzz("agent.yaml", strategy(), &tally, |(muts, t)| {
        let yaml = render(AGENT, &muts, &t)?;
        match AgentConfig::check_yaml_str(&yaml, Path::new(file), &env) {
            Ok(_) => tally.count("accepted"),
            Err(errors) => tally.count(named(&errors, file, &yaml, KNOWN)?),
        }
        Ok(())
    });
    assert!(tally.get("accepted") > 0, "no mutated config was accepted");
    assert!(tally.outcomes() >= 4, "the mutations reach few keys");
}

#[test]
fn near_valid_cloud_configs_are_accepted_or_refused_naming_the_key() {
    let file = "/etc/omega/cloud.yaml";
    CloudConfig::check_yaml_str(CLOUD, Path::new(file), &env).expect("the base is valid");
    let tally = Tally::default();
    fuzz("cloud.yaml", strategy(), &tally, |(muts, t)| {
        let yaml = render(CLOUD, &muts, &t)?;
        match CloudConfig::check_yaml_str(&yaml, Path::new(file), &env) {
            Ok(_) => tally.count("accepted"),
            Err(errors) => tally.count(named(&errors, file, &yaml, KNOWN)?),
        }
        Ok(())
    });
    assert!(tally.get("accepted") > 0, "no mutated config was accepted");
    assert!(tally.outcomes() >= 4, "the mutations reach few keys");
}
