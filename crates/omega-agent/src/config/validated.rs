//! The validated layer: raw YAML types → [`AgentConfig`], checking every rule of `agent.md`
//! §2.2–§2.7. Errors are collected in a [`Context`] so that one run reports them all.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use omega_config::{
    ConfigErrors, Context, EnvLookup, ErrorKind, format_duration, format_size, render_and_parse,
};
use serde_yaml_ng::Value;

use super::defaults as d;
use super::raw::{RawAgentConfig, RawAlg, RawDelivery, RawReplication, RawSecurity};
use super::{AgentConfig, Delivery, Replication, Security, SignedControl, strategies};

pub(super) fn build(
    text: &str,
    file_path: &Path,
    env: EnvLookup<'_>,
) -> Result<AgentConfig, ConfigErrors> {
    let file = file_path.display().to_string();
    let (raw, template_vars): (RawAgentConfig, _) = render_and_parse(text, &file, env)?;
    let mut cx = Context::new(file_path, env);

    top_level_compat(&mut cx, &raw);
    let data_dir_text = cx
        .resolve(
            "data_dir",
            raw.data_dir.as_deref(),
            raw.data_dir_env.as_deref(),
            Some(d::DATA_DIR),
        )
        .value
        .unwrap_or_else(|| d::DATA_DIR.to_owned());
    let data_dir = cx.resolve_path(&data_dir_text, None);
    let metrics_listen = raw.metrics.and_then(|m| m.listen).and_then(|l| {
        l.parse()
            .map_err(|_| {
                cx.invalid(
                    "metrics.listen",
                    Some(&l),
                    "not an address: write host:port, e.g. `127.0.0.1:9464`",
                )
            })
            .ok()
    });

    let connection = match raw.connection {
        Some(c) => super::connection::connection(&mut cx, c, &data_dir),
        None => {
            cx.error("connection", required("connection"));
            None
        }
    };
    let security = security(&mut cx, raw.security.unwrap_or_default());
    let replication = match raw.sqlite_replication {
        Some(r) => replication(&mut cx, r, &data_dir),
        None => {
            cx.error("sqlite-replication", required("sqlite-replication"));
            None
        }
    };

    let findings = cx.finish()?;
    let (Some(connection), Some(security), Some(replication)) = (connection, security, replication)
    else {
        unreachable!("every missing section records an error");
    };
    Ok(AgentConfig {
        file: file_path.to_path_buf(),
        name: raw.name,
        description: raw.description,
        data_dir,
        metrics_listen,
        connection,
        security,
        replication,
        findings,
        template_vars,
    })
}

fn required(key: &str) -> ErrorKind {
    ErrorKind::Required {
        key: key.to_owned(),
        has_env_form: false,
        variable: None,
    }
}

fn top_level_compat(cx: &mut Context<'_>, raw: &RawAgentConfig) {
    if raw.platform.is_some() {
        cx.warn("platform", "accepted for compatibility; ignored");
    }
    let Some(modules) = &raw.modules else { return };
    let mut listed = false;
    for (list, names) in [
        ("required", &modules.required),
        ("optional", &modules.optional),
    ] {
        for (i, name) in names.iter().flatten().enumerate() {
            if name == d::MODULE_NAME {
                listed = true;
            } else {
                cx.warn(
                    &format!("modules.{list}[{i}]"),
                    format!("module `{name}` is not provided by this agent"),
                );
            }
        }
    }
    if !listed {
        cx.warn(
            "modules",
            format!("`{}` is listed in neither modules.required nor modules.optional; this agent replicates anyway", d::MODULE_NAME),
        );
    }
}

fn security(cx: &mut Context<'_>, raw: RawSecurity) -> Option<Security> {
    let cap_path = format!("security.capabilities.{}", d::CAPABILITY);
    let granted =
        raw.capabilities.as_ref().and_then(|c| c.get(d::CAPABILITY)) == Some(&Value::Bool(true));
    if !granted {
        cx.error(
            &cap_path,
            ErrorKind::CapabilityMissing {
                capability: d::CAPABILITY.into(),
            },
        );
    }
    for key in ["rpc", "max_storage_bytes", "expose_sensitive_telemetry"] {
        let set = match key {
            "rpc" => raw.rpc.is_some(),
            "max_storage_bytes" => raw.max_storage_bytes.is_some(),
            _ => raw.expose_sensitive_telemetry.is_some(),
        };
        if set {
            cx.warn(
                &format!("security.{key}"),
                "accepted for compatibility; ignored",
            );
        }
    }
    let sc = raw.signed_control.unwrap_or_default();
    let p = "security.signed_control";
    if sc.allow_legacy_token == Some(true) {
        cx.invalid(
            &format!("{p}.allow_legacy_token"),
            Some("true"),
            "legacy control tokens are refused: remove the key or set it to false",
        );
    }
    let enabled = sc.enabled.unwrap_or(d::SIGNED_CONTROL_ENABLED);
    let alg = sc.alg.unwrap_or(RawAlg::Ed25519);
    let public_key_path = cx
        .optional(
            &format!("{p}.public_key_path"),
            sc.public_key_path.as_deref(),
            sc.public_key_path_env.as_deref(),
        )
        .map(|v| cx.resolve_path(&v, None));
    let signed_control = if !enabled {
        cx.warn(
            &format!("{p}.enabled"),
            "control signatures are not verified: anyone who can publish on the control topic can pause or resnapshot tables",
        );
        Some(SignedControl::Disabled)
    } else {
        match alg {
            RawAlg::Ed25519 => {
                if raw.auth_token_env.is_some() {
                    cx.warn("security.auth_token_env", "ignored with alg ed25519");
                }
                match public_key_path {
                    Some(public_key_path) => Some(SignedControl::Ed25519 { public_key_path }),
                    None => {
                        let var = sc.public_key_path_env.clone();
                        cx.error(
                            &format!("{p}.public_key_path"),
                            ErrorKind::Required {
                                key: "public_key_path".into(),
                                has_env_form: true,
                                variable: var,
                            },
                        );
                        None
                    }
                }
            }
            RawAlg::HmacSha256 => {
                if public_key_path.is_some() {
                    cx.warn(
                        &format!("{p}.public_key_path"),
                        "ignored with alg hmac-sha256",
                    );
                }
                if raw.auth_token_env.is_none() {
                    cx.invalid("security.auth_token_env", None, "auth_token_env is required with alg hmac-sha256: name the variable holding the secret");
                }
                cx.secret("security.auth_token_env", raw.auth_token_env.as_deref())
                    .map(|secret| SignedControl::HmacSha256 { secret })
            }
        }
    };
    let max_payload_bytes = raw
        .max_payload_bytes
        .map_or(d::MAX_PAYLOAD_BYTES, |b| b.bytes());
    if max_payload_bytes == 0 {
        cx.invalid(
            "security.max_payload_bytes",
            Some("0"),
            "must be at least 1 byte",
        );
    }
    Some(Security {
        signed_control: signed_control?,
        max_payload_bytes,
    })
}

fn replication(cx: &mut Context<'_>, raw: RawReplication, data_dir: &Path) -> Option<Replication> {
    let p = "sqlite-replication";
    let source = cx
        .required(
            &format!("{p}.source_db_path"),
            raw.source_db_path.as_deref(),
            raw.source_db_path_env.as_deref(),
        )
        .map(|v| cx.resolve_path(&v, None));
    let state_text = cx
        .resolve(
            &format!("{p}.state_db_path"),
            raw.state_db_path.as_deref(),
            raw.state_db_path_env.as_deref(),
            Some(d::STATE_DB_PATH),
        )
        .value
        .unwrap_or_else(|| d::STATE_DB_PATH.to_owned());
    let state = cx.resolve_path(&state_text, Some(data_dir));
    if let Some(src) = &source
        && normalize(src) == normalize(&state)
    {
        cx.invalid(
            &format!("{p}.state_db_path"),
            Some(&state.display().to_string()),
            "must not be the source database: the agent keeps its state in a separate file",
        );
    }
    let flush_interval = ranged(
        cx,
        &format!("{p}.flush_interval"),
        raw.flush_interval,
        d::FLUSH_INTERVAL,
        d::FLUSH_INTERVAL_MIN,
        Some(d::FLUSH_INTERVAL_MAX),
    );
    let local_retention_bytes = raw
        .local_retention_bytes
        .map_or(d::LOCAL_RETENTION_BYTES, |b| b.bytes());
    if local_retention_bytes < d::LOCAL_RETENTION_MIN {
        cx.invalid(
            &format!("{p}.local_retention_bytes"),
            Some(&format_size(local_retention_bytes)),
            format!("must be at least {}", format_size(d::LOCAL_RETENTION_MIN)),
        );
    }
    let delivery = match raw.delivery {
        None | Some(RawDelivery::Receipts) => Delivery::Receipts,
        Some(RawDelivery::Puback) => Delivery::Puback,
    };
    if delivery == Delivery::Puback && raw.receipt_timeout.is_some() {
        cx.warn(
            &format!("{p}.receipt_timeout"),
            "ignored with delivery: puback",
        );
    }
    let receipt_timeout = ranged(
        cx,
        &format!("{p}.receipt_timeout"),
        raw.receipt_timeout,
        d::RECEIPT_TIMEOUT,
        d::RECEIPT_TIMEOUT_MIN,
        None,
    );
    let table_strategies = strategies::build(cx, raw.table_strategies);
    Some(Replication {
        source_db_path: source?,
        state_db_path: state,
        flush_interval,
        local_retention_bytes,
        snapshot_on_first_run: raw
            .snapshot_on_first_run
            .unwrap_or(d::SNAPSHOT_ON_FIRST_RUN),
        delivery,
        receipt_timeout,
        table_strategies,
    })
}

/// A duration with its default and range; out-of-range values record an error.
pub(super) fn ranged(
    cx: &mut Context<'_>,
    path: &str,
    value: Option<omega_config::Duration>,
    default: Duration,
    min: Duration,
    max: Option<Duration>,
) -> Duration {
    let v = value.map_or(default, |v| v.get());
    let out = v < min || max.is_some_and(|m| v > m);
    if out {
        let range = match max {
            Some(m) => format!(
                "between {} and {}",
                format_duration(min),
                format_duration(m)
            ),
            None => format!("at least {}", format_duration(min)),
        };
        cx.invalid(
            path,
            Some(&format_duration(v)),
            format!("out of range: must be {range}"),
        );
    }
    v
}

/// Lexical normalisation (`.` dropped, `..` folded) so `a/./b` and `a/b` compare equal.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}
