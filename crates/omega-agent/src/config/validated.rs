//! The validated layer: raw YAML types → [`AgentConfig`], checking every rule of `agent.md`
//! §2.2–§2.7. Errors are collected in a [`Context`] so that one run reports them all.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use omega_config::{
    BrokerUrl, ConfigErrors, Context, EnvLookup, ErrorKind, format_duration, format_size,
    render_and_parse,
};
use serde_yaml_ng::Value;

use super::defaults as d;
use super::identity::{check_device_id, root_topic};
use super::raw::{
    RawAgentConfig, RawAlg, RawConnection, RawDelivery, RawJitr, RawMqtt, RawReplication,
    RawSecurity, RawTls,
};
use super::{
    AgentConfig, ClientCert, Connection, Delivery, Jitr, Mqtt, MqttVersion, Replication, Security,
    SignedControl, Tls, strategies,
};

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
        Some(c) => connection(&mut cx, c, &data_dir),
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

fn broker_url(cx: &mut Context<'_>, path: &str, text: &str) -> Option<BrokerUrl> {
    BrokerUrl::parse(text)
        .map_err(|e| cx.invalid(path, Some(text), e))
        .ok()
}

fn connection(cx: &mut Context<'_>, raw: RawConnection, data_dir: &Path) -> Option<Connection> {
    if let Some(t) = raw.transport.as_deref()
        && t != d::TRANSPORT
    {
        cx.error(
            "connection.transport",
            ErrorKind::UnknownValue {
                value: t.to_owned(),
                expected: vec![d::TRANSPORT.into()],
                suggestion: None,
            },
        );
    }
    if raw.cert_renewal.is_some() {
        cx.warn(
            "connection.cert_renewal",
            "accepted for compatibility; not implemented",
        );
    }
    let server_url = cx
        .required(
            "connection.server_url",
            raw.server_url.as_deref(),
            raw.server_url_env.as_deref(),
        )
        .and_then(|u| broker_url(cx, "connection.server_url", &u));
    let fallback_url = cx
        .optional(
            "connection.fallback_url",
            raw.fallback_url.as_deref(),
            raw.fallback_url_env.as_deref(),
        )
        .and_then(|u| broker_url(cx, "connection.fallback_url", &u));
    if let (Some(s), Some(_)) = (&server_url, &fallback_url)
        && s.scheme.transport() != omega_config::Transport::Quic
    {
        cx.warn(
            "connection.fallback_url",
            "only used after repeated QUIC failures; server_url is not quic://",
        );
    }

    let jitr = raw.jitr.and_then(|j| jitr(cx, j, data_dir));
    let device_id = match cx.optional(
        "connection.device_id",
        raw.device_id.as_deref(),
        raw.device_id_env.as_deref(),
    ) {
        Some(id) => {
            if let Some(j) = &jitr
                && j.device_name != id
            {
                cx.invalid(
                    "connection.device_id",
                    Some(&id),
                    format!("must equal connection.jitr.device_name `{}` (JITR enrolls under that name)", j.device_name),
                );
            }
            check_device_id(&id)
                .map_err(|e| cx.invalid("connection.device_id", Some(&id), e))
                .ok()
                .map(|()| id)
        }
        None => match &jitr {
            Some(j) => Some(j.device_name.clone()),
            None => {
                let var = raw.device_id_env.clone();
                cx.error(
                    "connection.device_id",
                    ErrorKind::Required {
                        key: "device_id".into(),
                        has_env_form: true,
                        variable: var,
                    },
                );
                None
            }
        },
    };
    let template = cx
        .resolve(
            "connection.root_topic",
            raw.root_topic.as_deref(),
            raw.root_topic_env.as_deref(),
            Some(d::ROOT_TOPIC),
        )
        .value
        .unwrap_or_else(|| d::ROOT_TOPIC.to_owned());
    let root = device_id.as_deref().and_then(|id| {
        root_topic(&template, id)
            .map_err(|e| cx.invalid("connection.root_topic", Some(&template), e))
            .ok()
    });

    let mqtt = mqtt(
        cx,
        raw.mqtt.unwrap_or_default(),
        server_url.as_ref(),
        fallback_url.as_ref(),
        jitr.is_some(),
    );
    if jitr.is_some()
        && let Some(s) = &server_url
        && !s.scheme.is_secure()
    {
        cx.invalid(
            "connection.server_url",
            Some(&s.to_string()),
            "JITR enrolls a client certificate, which needs a TLS URL (mqtts://, ssl://, quic://)",
        );
    }
    Some(Connection {
        server_url: server_url?,
        fallback_url,
        device_id: device_id?,
        root_topic: root?,
        mqtt: mqtt?,
        jitr,
    })
}

fn mqtt(
    cx: &mut Context<'_>,
    raw: RawMqtt,
    server: Option<&BrokerUrl>,
    fallback: Option<&BrokerUrl>,
    jitr: bool,
) -> Option<Mqtt> {
    let version = match raw.version.as_ref().map(|v| v.as_str()) {
        None | Some("3.1.1") => MqttVersion::V311,
        Some("5") | Some("5.0") => MqttVersion::V5,
        Some(other) => {
            cx.error(
                "connection.mqtt.version",
                ErrorKind::UnknownValue {
                    value: other.to_owned(),
                    expected: vec!["3.1.1".into(), "5".into()],
                    suggestion: None,
                },
            );
            MqttVersion::V311
        }
    };
    let keep_alive = ranged(
        cx,
        "connection.mqtt.keep_alive",
        raw.keep_alive,
        d::KEEP_ALIVE,
        d::KEEP_ALIVE_MIN,
        Some(d::KEEP_ALIVE_MAX),
    );
    if raw.clean_session == Some(true) {
        cx.invalid(
            "connection.mqtt.clean_session",
            Some("true"),
            "must be false: the agent needs a persistent session so that the broker queues \
             controls (the downlink) while the device is offline",
        );
    }
    if raw.session_expiry.is_some() && version == MqttVersion::V311 {
        cx.warn(
            "connection.mqtt.session_expiry",
            "MQTT 5 only; ignored with version 3.1.1",
        );
    }
    let session_expiry = ranged(
        cx,
        "connection.mqtt.session_expiry",
        raw.session_expiry,
        d::SESSION_EXPIRY,
        d::SESSION_EXPIRY_MIN,
        None,
    );
    let username = cx.optional(
        "connection.mqtt.username",
        raw.username.as_deref(),
        raw.username_env.as_deref(),
    );
    let password = cx.secret("connection.mqtt.password_env", raw.password_env.as_deref());
    let plain = |u: Option<&BrokerUrl>| u.is_some_and(|u| !u.scheme.is_secure());
    if password.is_some() && (plain(server) || plain(fallback)) {
        cx.warn(
            "connection.mqtt.password_env",
            "the password would travel unencrypted over a plain mqtt:// or tcp:// URL",
        );
    }
    let tls = tls(cx, raw.tls.unwrap_or_default(), jitr);
    let has_tls = tls.ca_cert_path.is_some() || tls.client.is_some();
    for (path, url) in [
        ("connection.server_url", server),
        ("connection.fallback_url", fallback),
    ] {
        if has_tls && let Some(u) = url.filter(|u| !u.scheme.is_secure()) {
            cx.invalid(
                path,
                Some(&u.to_string()),
                "connection.mqtt.tls is set but the URL is plain: use mqtts://, ssl:// or quic://, or remove the TLS keys",
            );
        }
    }
    Some(Mqtt {
        version,
        keep_alive,
        session_expiry,
        username,
        password,
        tls,
    })
}

fn tls(cx: &mut Context<'_>, raw: RawTls, jitr: bool) -> Tls {
    let p = "connection.mqtt.tls";
    let path = |cx: &mut Context<'_>, key: &str, lit: Option<&str>, var: Option<&str>| {
        cx.optional(&format!("{p}.{key}"), lit, var)
            .map(|v| cx.resolve_path(&v, None))
    };
    let ca_cert_path = path(
        cx,
        "ca_cert_path",
        raw.ca_cert_path.as_deref(),
        raw.ca_cert_path_env.as_deref(),
    );
    let cert = path(
        cx,
        "client_cert_path",
        raw.client_cert_path.as_deref(),
        raw.client_cert_path_env.as_deref(),
    );
    let key = path(
        cx,
        "client_key_path",
        raw.client_key_path.as_deref(),
        raw.client_key_path_env.as_deref(),
    );
    let client = match (cert, key) {
        (Some(cert_path), Some(key_path)) => Some(ClientCert {
            cert_path,
            key_path,
        }),
        (Some(_), None) => {
            let var = raw.client_key_path_env.clone();
            cx.error(
                &format!("{p}.client_key_path"),
                ErrorKind::Required {
                    key: "client_key_path".into(),
                    has_env_form: true,
                    variable: var,
                },
            );
            None
        }
        (None, Some(_)) => {
            let var = raw.client_cert_path_env.clone();
            cx.error(
                &format!("{p}.client_cert_path"),
                ErrorKind::Required {
                    key: "client_cert_path".into(),
                    has_env_form: true,
                    variable: var,
                },
            );
            None
        }
        (None, None) => None,
    };
    if jitr && client.is_some() {
        cx.invalid(
            &format!("{p}.client_cert_path"),
            None,
            "must be unset with connection.jitr: the client certificate and key are those in jitr.cert_dir",
        );
    }
    Tls {
        ca_cert_path,
        client,
    }
}

fn jitr(cx: &mut Context<'_>, raw: RawJitr, data_dir: &Path) -> Option<Jitr> {
    let p = "connection.jitr";
    let api = cx.required(
        &format!("{p}.api_base_url"),
        raw.api_base_url.as_deref(),
        raw.api_base_url_env.as_deref(),
    );
    if let Some(u) = &api
        && !(u.starts_with("https://") || u.starts_with("http://"))
    {
        cx.invalid(
            &format!("{p}.api_base_url"),
            Some(u),
            "must be an http:// or https:// URL",
        );
    }
    let bootstrap = cx
        .required(
            &format!("{p}.bootstrap_cert_path"),
            raw.bootstrap_cert_path.as_deref(),
            raw.bootstrap_cert_path_env.as_deref(),
        )
        .map(|v| cx.resolve_path(&v, None));
    let cert_dir_text = cx
        .resolve(
            &format!("{p}.cert_dir"),
            raw.cert_dir.as_deref(),
            raw.cert_dir_env.as_deref(),
            Some(d::JITR_CERT_DIR),
        )
        .value
        .unwrap_or_else(|| d::JITR_CERT_DIR.to_owned());
    let cert_dir = cx.resolve_path(&cert_dir_text, Some(data_dir));
    let org_id = cx.required(
        &format!("{p}.org_id"),
        raw.org_id.as_deref(),
        raw.org_id_env.as_deref(),
    );
    let fleet_id = cx.required(
        &format!("{p}.fleet_id"),
        raw.fleet_id.as_deref(),
        raw.fleet_id_env.as_deref(),
    );
    let project_id = cx.optional(
        &format!("{p}.project_id"),
        raw.project_id.as_deref(),
        raw.project_id_env.as_deref(),
    );
    let device_name = cx
        .required(
            &format!("{p}.device_name"),
            raw.device_name.as_deref(),
            raw.device_name_env.as_deref(),
        )
        .and_then(|n| {
            check_device_id(&n)
                .map_err(|e| cx.invalid(&format!("{p}.device_name"), Some(&n), e))
                .ok()
                .map(|()| n)
        });
    Some(Jitr {
        api_base_url: api?.trim_end_matches('/').to_owned(),
        bootstrap_cert_path: bootstrap?,
        cert_dir,
        org_id: org_id?,
        fleet_id: fleet_id?,
        project_id,
        device_name: device_name?,
    })
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
fn ranged(
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
