//! The MQTT connection settings: broker URL, identity, TLS (rustls) → `rumqttc` options.
//!
//! The client library is transport only: the agent assigns packet ids, keeps every
//! unacknowledged batch itself and re-sends after reconnects (see [`crate::publish::inflight`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{MqttOptions, TlsConfiguration, Transport};

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct MqttSettings {
    /// `mqtt://`, `tcp://`, `mqtts://`, `ssl://`, `quic://` or `quics://` URL
    /// (`connection.server_url`).
    pub url: String,
    /// `connection.fallback_url`: used after repeated failures on `url` ([`crate::link::route`]).
    pub fallback_url: Option<String>,
    /// MQTT 5 session expiry (`connection.mqtt.session_expiry`); used over QUIC, which is
    /// always MQTT 5.
    pub session_expiry: Duration,
    /// MQTT client id (the device id).
    pub client_id: String,
    /// Keep-alive interval.
    pub keep_alive: Duration,
    /// Username and password, when password authentication is used.
    pub credentials: Option<(String, String)>,
    /// TLS material for `mqtts://`/`ssl://`.
    pub tls: Option<TlsFiles>,
}

/// PEM files for TLS.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    /// CA bundle; system roots are not bundled, so a CA file is required for TLS.
    pub ca: Option<PathBuf>,
    /// Client certificate chain and key for mTLS.
    pub client: Option<(PathBuf, PathBuf)>,
}

/// Why a `quic://` URL is refused by a build without the `quic` feature.
pub const QUIC_NOT_BUILT: &str = "MQTT over QUIC is not in this build: build omega-agent with its \
     `quic` feature (on in omega's default and `agent` features), or use an ssl:// URL";

/// Errors building the connection.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The URL is not one this agent speaks.
    #[error("broker URL `{0}`: {1}")]
    Url(String, String),
    /// A TLS file could not be read or parsed.
    #[error("TLS file {0}: {1}")]
    Tls(PathBuf, String),
}

/// Host, port and whether TLS is used, from a broker URL.
pub fn parse_url(url: &str) -> Result<(String, u16, bool), TransportError> {
    let bad = |why: &str| TransportError::Url(url.to_string(), why.to_string());
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| bad("missing scheme (mqtt://, mqtts://)"))?;
    let (tls, default_port) = match scheme {
        "mqtt" | "tcp" => (false, 1883),
        "mqtts" | "ssl" => (true, 8883),
        "quic" | "quics" if cfg!(feature = "quic") => {
            return Err(bad("QUIC URLs are served by the QUIC link, not rumqttc"));
        }
        "quic" | "quics" => return Err(bad(QUIC_NOT_BUILT)),
        other => return Err(bad(&format!("unknown scheme `{other}`"))),
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
            h.trim_matches(|c| c == '[' || c == ']').to_string(),
            p.parse().map_err(|_| bad("bad port"))?,
        ),
        _ => (authority.to_string(), default_port),
    };
    if host.is_empty() {
        return Err(bad("missing host"));
    }
    Ok((host, port, tls))
}

/// Builds `rumqttc` options: persistent session (`clean_session = false`), the given
/// keep-alive, large enough in-flight window and packet size for 512 KiB batches (and a
/// single oversized row).
pub fn mqtt_options(s: &MqttSettings, max_inflight: u16) -> Result<MqttOptions, TransportError> {
    let (host, port, tls) = parse_url(&s.url)?;
    let mut o = MqttOptions::new(s.client_id.clone(), host, port);
    o.set_keep_alive(s.keep_alive);
    o.set_clean_session(false);
    o.set_inflight(max_inflight);
    o.set_max_packet_size(64 * 1024 * 1024, 64 * 1024 * 1024);
    if let Some((u, p)) = &s.credentials {
        o.set_credentials(u.clone(), p.clone());
    }
    if tls {
        let config = rustls_config(s.tls.as_ref().cloned().unwrap_or_default())?;
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(config),
        )));
    }
    Ok(o)
}

/// A rustls client configuration (ring provider, built by [`omega_tls::client_config`]) that
/// always verifies the server against the CA file and sends the client certificate when given.
pub fn rustls_config(files: TlsFiles) -> Result<rustls::ClientConfig, TransportError> {
    const TLS: &str = "connection.mqtt.tls";
    let (ca_field, cert_field, key_field) = (
        format!("{TLS}.ca_cert_path"),
        format!("{TLS}.client_cert_path"),
        format!("{TLS}.client_key_path"),
    );
    let client = files
        .client
        .as_ref()
        .map(|(cert, key)| omega_tls::ClientPair {
            cert,
            cert_field: &cert_field,
            key,
            key_field: &key_field,
        });
    omega_tls::client_config(&omega_tls::ClientFiles {
        ca: files.ca.as_deref(),
        ca_field: &ca_field,
        client,
    })
    .map_err(|e| TransportError::Tls(e.path.clone(), format!("({}) {}", e.field, e.reason)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_host_port_and_tls() {
        assert_eq!(
            parse_url("mqtt://127.0.0.1:1884").unwrap(),
            ("127.0.0.1".into(), 1884, false)
        );
        assert_eq!(
            parse_url("ssl://broker.example").unwrap(),
            ("broker.example".into(), 8883, true)
        );
        assert_eq!(parse_url("tcp://h").unwrap(), ("h".into(), 1883, false));
        assert!(parse_url("http://h").is_err());
        assert!(parse_url("h:1883").is_err());
    }
}
