//! The validated layer of `cloud.yaml`: raw types → [`CloudConfig`], every range checked.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use omega_config::{
    BrokerUrl, ConfigError, ConfigErrors, Context, EnvLookup, ErrorKind, format_duration,
    render_and_parse, resolve_path,
};
use omega_protocol::topic::DeviceTopicTemplate;

use super::defaults as d;
use super::raw::{
    RawAlg, RawApi, RawBroker, RawCloudConfig, RawCoalescing, RawControl, RawIngest, RawJitr,
    RawPolicy, RawStore,
};
use super::{
    ApiConfig, BrokerConfig, CloudConfig, ControlAlg, ControlConfig, Fleet, IngestConfig,
    JitrConfig, PolicyConfig, StoreUrl,
};
use crate::ingest::link::MqttVersion;
use crate::policy::{Coalescing, Policy};

pub(super) fn build(
    text: &str,
    file_path: &Path,
    env: EnvLookup<'_>,
) -> Result<CloudConfig, ConfigErrors> {
    let file = file_path.display().to_string();
    let (raw, template_vars): (RawCloudConfig, _) = render_and_parse(text, &file, env)?;
    let mut cx = Context::new(file_path, env);
    let broker = broker(&mut cx, raw.broker.unwrap_or_default());
    let ingest = ingest(&mut cx, raw.ingest.unwrap_or_default());
    let store = store(&mut cx, raw.store.unwrap_or_default());
    let policy = policy(&mut cx, raw.policy.unwrap_or_default());
    let control = control(&mut cx, raw.control);
    let api = api(&mut cx, raw.api.unwrap_or_default());
    let receipts_interval = ranged(
        &mut cx,
        "receipts.interval",
        raw.receipts.and_then(|r| r.interval),
        d::RECEIPTS_INTERVAL,
        d::RECEIPTS_INTERVAL_RANGE.0,
        Some(d::RECEIPTS_INTERVAL_RANGE.1),
    );
    let jitr = raw.jitr.and_then(|j| jitr(&mut cx, j));
    let findings = cx.finish()?;
    let (Some(broker), Some(ingest), Some(store), Some(control), Some(api)) =
        (broker, ingest, store, control, api)
    else {
        unreachable!("every missing part records an error");
    };
    Ok(CloudConfig {
        file: file_path.to_path_buf(),
        broker,
        ingest,
        store,
        policy,
        control,
        api,
        receipts_interval,
        jitr,
        findings,
        template_vars,
    })
}

fn broker(cx: &mut Context<'_>, raw: RawBroker) -> Option<BrokerConfig> {
    let url_text = cx
        .resolve(
            "broker.url",
            raw.url.as_deref(),
            raw.url_env.as_deref(),
            Some(d::BROKER_URL),
        )
        .value
        .unwrap_or_else(|| d::BROKER_URL.to_owned());
    let url = BrokerUrl::parse(&url_text)
        .map_err(|e| cx.invalid("broker.url", Some(&url_text), e))
        .ok();
    let client_id = raw.client_id.unwrap_or_else(|| d::CLIENT_ID.to_owned());
    if client_id.is_empty() {
        cx.invalid(
            "broker.client_id",
            Some(""),
            "cannot be empty: each process needs its own id",
        );
    }
    let username = raw.username_env.as_deref().and_then(|var| {
        let v = cx.secret("broker.username_env", Some(var));
        v.map(|s| s.expose().to_owned())
    });
    let password = cx.secret("broker.password_env", raw.password_env.as_deref());
    let tls = raw.tls.unwrap_or_default();
    let ca = tls.ca.map(|p| cx.resolve_path(&p, None));
    let client_cert = match (tls.cert, tls.key) {
        (Some(c), Some(k)) => Some((cx.resolve_path(&c, None), cx.resolve_path(&k, None))),
        (Some(_), None) => {
            cx.invalid(
                "broker.tls.key",
                None,
                "key is required with broker.tls.cert (mTLS needs both)",
            );
            None
        }
        (None, Some(_)) => {
            cx.invalid(
                "broker.tls.cert",
                None,
                "cert is required with broker.tls.key (mTLS needs both)",
            );
            None
        }
        (None, None) => None,
    };
    if let Some(u) = &url {
        if (ca.is_some() || client_cert.is_some()) && !u.scheme.is_secure() {
            cx.invalid(
                "broker.url",
                Some(&url_text),
                "broker.tls is set but the URL is plain: use mqtts://, ssl:// or quic://",
            );
        }
        if password.is_some() && !u.scheme.is_secure() {
            cx.warn(
                "broker.password_env",
                "the password would travel unencrypted over a plain URL",
            );
        }
    }
    let mqtt_version = match raw.mqtt_version.as_ref().map(|v| v.as_str()) {
        None | Some("5") | Some("5.0") => MqttVersion::V5,
        Some("3.1.1") => MqttVersion::V311,
        Some(other) => {
            cx.error(
                "broker.mqtt_version",
                ErrorKind::UnknownValue {
                    value: other.to_owned(),
                    expected: vec!["5".into(), "3.1.1".into()],
                    suggestion: None,
                },
            );
            MqttVersion::V5
        }
    };
    if let Some(why) = url.as_ref().and_then(|u| quic_refusal(u, mqtt_version)) {
        cx.invalid("broker.url", Some(&url_text), why);
    }
    Some(BrokerConfig {
        url: url?,
        mqtt_version,
        client_id,
        username,
        password,
        ca,
        client_cert,
    })
}

/// Why a QUIC broker URL cannot be used with this build or this MQTT version, if it cannot.
fn quic_refusal(url: &BrokerUrl, version: MqttVersion) -> Option<&'static str> {
    if url.scheme.transport() != omega_config::url::Transport::Quic {
        None
    } else if !cfg!(feature = "quic") {
        Some(
            "this build of omega-cloud has no QUIC (Cargo feature `quic`); use mqtts:// or mqtt://",
        )
    } else if version == MqttVersion::V311 {
        Some("QUIC is MQTT 5 only: drop broker.mqtt_version: 3.1.1, or use mqtts:// or mqtt://")
    } else {
        None
    }
}

fn ingest(cx: &mut Context<'_>, raw: RawIngest) -> Option<IngestConfig> {
    let topic = raw
        .device_topic
        .unwrap_or_else(|| d::DEVICE_TOPIC.to_owned());
    let device_topic = DeviceTopicTemplate::parse(&topic)
        .map_err(|e| cx.invalid("ingest.device_topic", Some(&topic), e.to_string()))
        .ok();
    let workers = int_range(
        cx,
        "ingest.workers",
        raw.workers,
        d::WORKERS.into(),
        d::WORKERS_RANGE.0.into(),
        Some(d::WORKERS_RANGE.1.into()),
    );
    let group = raw
        .shared_group
        .unwrap_or_else(|| d::SHARED_GROUP.to_owned());
    let shared_group = if group.is_empty() {
        cx.warn(
            "ingest.shared_group",
            "empty: a plain subscription, so only one `serve` process may run",
        );
        None
    } else if group.contains(['/', '+', '#']) {
        cx.invalid(
            "ingest.shared_group",
            Some(&group),
            "a group name cannot contain `/`, `+` or `#`",
        );
        None
    } else {
        Some(group)
    };
    Some(IngestConfig {
        device_topic: device_topic?,
        workers: u32::try_from(workers).unwrap_or(d::WORKERS),
        shared_group,
    })
}

/// Parses a store URL; `base` anchors a relative SQLite path.
fn parse_store(text: &str, base: &Path) -> Result<StoreUrl, String> {
    if text.starts_with("postgres://") || text.starts_with("postgresql://") {
        return Ok(StoreUrl::Postgres(text.to_owned()));
    }
    match text.strip_prefix("sqlite://") {
        Some("") => Err("sqlite:// needs a path, e.g. sqlite://omega-cloud.db".into()),
        Some(path) => Ok(StoreUrl::Sqlite(resolve_path(base, path, None))),
        None => Err("a store URL is postgres://… or sqlite://PATH".into()),
    }
}

fn store(cx: &mut Context<'_>, raw: RawStore) -> Option<StoreUrl> {
    let text = cx
        .resolve(
            "store.url",
            raw.url.as_deref(),
            raw.url_env.as_deref(),
            Some(d::STORE_URL),
        )
        .value
        .unwrap_or_else(|| d::STORE_URL.to_owned());
    // The value is not shown: a PostgreSQL URL may hold a password.
    parse_store(&text, cx.base_dir())
        .map_err(|e| cx.invalid("store.url", None, e))
        .ok()
}

fn policy(cx: &mut Context<'_>, raw: RawPolicy) -> PolicyConfig {
    let coalescing = match raw.coalescing {
        None | Some(RawCoalescing::Project) => Coalescing::Project,
        Some(RawCoalescing::PerDevice | RawCoalescing::None) => Coalescing::PerDevice,
    };
    let p = "policy";
    let rows = int_range(
        cx,
        &format!("{p}.max_pending_rows_per_lineage"),
        raw.max_pending_rows_per_lineage,
        d::MAX_PENDING_ROWS as i64,
        1,
        None,
    );
    let bytes = raw
        .max_pending_bytes_per_lineage
        .map_or(d::MAX_PENDING_BYTES, |b| b.bytes());
    if bytes == 0 {
        cx.invalid(
            &format!("{p}.max_pending_bytes_per_lineage"),
            Some("0"),
            "must be at least 1 byte",
        );
    }
    let resume = int_range(
        cx,
        &format!("{p}.resume_threshold_percent"),
        raw.resume_threshold_percent,
        d::RESUME_THRESHOLD_PERCENT.into(),
        1,
        Some(99),
    );
    let breaker = int_range(
        cx,
        &format!("{p}.circuit_breaker_failures"),
        raw.circuit_breaker_failures,
        d::CIRCUIT_BREAKER_FAILURES.into(),
        1,
        None,
    );
    let tombstone_retention = ranged(
        cx,
        &format!("{p}.tombstone_retention"),
        raw.tombstone_retention,
        d::TOMBSTONE_RETENTION,
        d::TOMBSTONE_RETENTION_MIN,
        None,
    );
    PolicyConfig {
        schema: Policy {
            coalescing,
            auto_approve: raw.auto_approve.unwrap_or(false),
            allow_additive_continue: raw.allow_additive_continue.unwrap_or(false),
        },
        max_pending_rows_per_lineage: u64::try_from(rows).unwrap_or(d::MAX_PENDING_ROWS),
        max_pending_bytes_per_lineage: bytes,
        resume_threshold_percent: u8::try_from(resume).unwrap_or(d::RESUME_THRESHOLD_PERCENT),
        circuit_breaker_failures: u32::try_from(breaker).unwrap_or(u32::MAX),
        tombstone_retention,
    }
}

fn control(cx: &mut Context<'_>, raw: Option<RawControl>) -> Option<ControlConfig> {
    let raw = raw.unwrap_or_default();
    let path = cx
        .required(
            "control.signing_key_path",
            raw.signing_key_path.as_deref(),
            raw.signing_key_path_env.as_deref(),
        )
        .map(|p| cx.resolve_path(&p, None));
    let alg = match raw.alg {
        None | Some(RawAlg::Ed25519) => ControlAlg::Ed25519,
        Some(RawAlg::HmacSha256) => ControlAlg::HmacSha256,
    };
    let resend_after = ranged(
        cx,
        "control.resend_after",
        raw.resend_after,
        d::RESEND_AFTER,
        d::RESEND_AFTER_MIN,
        None,
    );
    Some(ControlConfig {
        signing_key_path: path?,
        alg,
        resend_after,
    })
}

fn api(cx: &mut Context<'_>, raw: RawApi) -> Option<ApiConfig> {
    let text = raw.listen.unwrap_or_else(|| d::API_LISTEN.to_owned());
    let listen: Option<SocketAddr> = text
        .parse()
        .map_err(|_| {
            cx.invalid(
                "api.listen",
                Some(&text),
                "not an address: write ip:port, e.g. `127.0.0.1:8080`",
            )
        })
        .ok();
    let token = cx.secret("api.token_env", raw.token_env.as_deref());
    if let Some(l) = listen
        && !l.ip().is_loopback()
        && raw.token_env.is_none()
    {
        cx.invalid(
            "api.token_env",
            None,
            format!("token_env is required when api.listen ({l}) is not a loopback address: name the variable holding the bearer token"),
        );
    }
    Some(ApiConfig {
        listen: listen?,
        token,
    })
}

fn jitr(cx: &mut Context<'_>, raw: RawJitr) -> Option<JitrConfig> {
    let p = "jitr";
    let ca_cert = match raw.ca_cert {
        Some(c) => Some(cx.resolve_path(&c, None)),
        None => {
            cx.error(
                &format!("{p}.ca_cert"),
                ErrorKind::Required {
                    key: "ca_cert".into(),
                    has_env_form: false,
                    variable: None,
                },
            );
            None
        }
    };
    let ca_key = cx
        .required(
            &format!("{p}.ca_key_path"),
            raw.ca_key_path.as_deref(),
            raw.ca_key_path_env.as_deref(),
        )
        .map(|k| cx.resolve_path(&k, None));
    let cert_validity = ranged(
        cx,
        &format!("{p}.cert_validity"),
        raw.cert_validity,
        d::CERT_VALIDITY,
        d::CERT_VALIDITY_MIN,
        None,
    );
    let mut fleets: Vec<Fleet> = Vec::new();
    let raw_fleets = raw.fleets.unwrap_or_default();
    if raw_fleets.is_empty() {
        cx.warn(
            &format!("{p}.fleets"),
            "no fleet: every enrollment is refused with unknown_fleet",
        );
    }
    for (i, f) in raw_fleets.into_iter().enumerate() {
        let fp = format!("{p}.fleets[{i}]");
        let need = |cx: &mut Context<'_>, key: &str, v: Option<String>| {
            if v.as_deref().is_none_or(str::is_empty) {
                cx.error(
                    &format!("{fp}.{key}"),
                    ErrorKind::Required {
                        key: key.into(),
                        has_env_form: false,
                        variable: None,
                    },
                );
            }
            v
        };
        let org_id = need(cx, "org_id", f.org_id);
        let fleet_id = need(cx, "fleet_id", f.fleet_id);
        let bootstrap = need(cx, "bootstrap_ca", f.bootstrap_ca).map(|b| cx.resolve_path(&b, None));
        let max_devices = match f.max_devices {
            Some(n) if n < 1 => {
                cx.invalid(
                    &format!("{fp}.max_devices"),
                    Some(&n.to_string()),
                    "must be at least 1 (omit it for no quota)",
                );
                None
            }
            other => other.map(|n| n as u64),
        };
        let mut serials = Vec::new();
        for (j, s) in f
            .revoked_serials
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            let norm: String = s
                .chars()
                .filter(|c| *c != ':')
                .collect::<String>()
                .to_ascii_lowercase();
            if norm.is_empty() || !norm.chars().all(|c| c.is_ascii_hexdigit()) {
                cx.invalid(
                    &format!("{fp}.revoked_serials[{j}]"),
                    Some(&s),
                    "a serial is hex digits, optionally separated by `:`",
                );
            } else {
                serials.push(norm.trim_start_matches('0').to_owned());
            }
        }
        if let (Some(o), Some(fl)) = (&org_id, &fleet_id)
            && fleets.iter().any(|x| &x.org_id == o && &x.fleet_id == fl)
        {
            cx.invalid(&fp, None, format!("fleet `{o}/{fl}` is listed twice"));
        }
        if let (Some(org_id), Some(fleet_id), Some(bootstrap_ca)) = (org_id, fleet_id, bootstrap) {
            fleets.push(Fleet {
                org_id,
                fleet_id,
                bootstrap_ca,
                max_devices,
                revoked_serials: serials,
            });
        }
    }
    Some(JitrConfig {
        ca_cert: ca_cert?,
        ca_key_path: ca_key?,
        cert_validity,
        fleets,
    })
}

fn int_range(
    cx: &mut Context<'_>,
    path: &str,
    value: Option<i64>,
    default: i64,
    min: i64,
    max: Option<i64>,
) -> i64 {
    let v = value.unwrap_or(default);
    if v < min || max.is_some_and(|m| v > m) {
        let range = match max {
            Some(m) => format!("between {min} and {m}"),
            None => format!("at least {min}"),
        };
        cx.invalid(
            path,
            Some(&v.to_string()),
            format!("out of range: must be {range}"),
        );
        return default;
    }
    v
}

fn ranged(
    cx: &mut Context<'_>,
    path: &str,
    value: Option<omega_config::Duration>,
    default: Duration,
    min: Duration,
    max: Option<Duration>,
) -> Duration {
    let v = value.map_or(default, |v| v.get());
    if v < min || max.is_some_and(|m| v > m) {
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

pub(super) fn apply_overrides(
    c: &mut CloudConfig,
    broker: Option<&str>,
    store: Option<&str>,
    http: Option<&str>,
    workers: Option<u32>,
) -> Result<(), ConfigError> {
    if let Some(u) = broker {
        let url = BrokerUrl::parse(u)
            .map_err(|e| ConfigError::invalid("--broker", "broker.url", Some(u), e))?;
        if (c.broker.ca.is_some() || c.broker.client_cert.is_some()) && !url.scheme.is_secure() {
            return Err(ConfigError::invalid(
                "--broker",
                "broker.url",
                Some(u),
                "broker.tls is set in the file but the URL is plain: use mqtts://, ssl:// or quic://",
            ));
        }
        if let Some(why) = quic_refusal(&url, c.broker.mqtt_version) {
            return Err(ConfigError::invalid("--broker", "broker.url", Some(u), why));
        }
        c.broker.url = url;
    }
    if let Some(s) = store {
        // Relative SQLite paths given on the command line are relative to the working directory.
        c.store = parse_store(s, Path::new(""))
            .map_err(|e| ConfigError::invalid("--store", "store.url", None, e))?;
    }
    if let Some(h) = http {
        let listen: SocketAddr = h.parse().map_err(|_| {
            ConfigError::invalid(
                "--http",
                "api.listen",
                Some(h),
                "not an address: write ip:port, e.g. `127.0.0.1:8080`",
            )
        })?;
        if !listen.ip().is_loopback() && c.api.token.is_none() {
            return Err(ConfigError::invalid(
                "--http",
                "api.token_env",
                None,
                format!("a non-loopback address ({listen}) needs api.token_env in the config"),
            ));
        }
        c.api.listen = listen;
    }
    if let Some(n) = workers {
        let (min, max) = d::WORKERS_RANGE;
        if !(min..=max).contains(&n) {
            return Err(ConfigError::invalid(
                "--workers",
                "ingest.workers",
                Some(&n.to_string()),
                format!("out of range: must be between {min} and {max}"),
            ));
        }
        c.ingest.workers = n;
    }
    Ok(())
}
