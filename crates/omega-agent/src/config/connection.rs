//! The `connection` section (`agent.md` §2.3, §2.4): broker URLs, device id and root topic,
//! MQTT settings, TLS files and the JITR block.

use std::path::Path;

use omega_config::{BrokerUrl, Context, ErrorKind};

use super::defaults as d;
use super::identity::{check_device_id, root_topic};
use super::raw::{RawConnection, RawJitr, RawMqtt, RawTls};
use super::validated::ranged;
use super::{ClientCert, Connection, Jitr, Mqtt, MqttVersion, Tls};

fn broker_url(cx: &mut Context<'_>, path: &str, text: &str) -> Option<BrokerUrl> {
    BrokerUrl::parse(text)
        .map_err(|e| cx.invalid(path, Some(text), e))
        .ok()
}

pub(super) fn connection(
    cx: &mut Context<'_>,
    raw: RawConnection,
    data_dir: &Path,
) -> Option<Connection> {
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
    for (path, url) in [
        ("connection.server_url", &server_url),
        ("connection.fallback_url", &fallback_url),
    ] {
        if let Some(u) = url
            && let Some(why) = quic_unavailable(u, cfg!(feature = "quic"))
        {
            cx.invalid(path, Some(&u.to_string()), why);
        }
    }
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

/// Why `url` cannot be used by a build with (`quic_built`) or without the `quic` feature.
pub(super) fn quic_unavailable(url: &BrokerUrl, quic_built: bool) -> Option<&'static str> {
    (url.scheme.transport() == omega_config::Transport::Quic && !quic_built)
        .then_some(crate::transport::QUIC_NOT_BUILT)
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
