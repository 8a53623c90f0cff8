//! Broker URLs (`agent.md` §2.3): `mqtt://`, `tcp://`, `mqtts://`, `ssl://`, `quic://`, `quics://`.

use std::fmt;

/// A broker URL scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `mqtt://`: plain TCP.
    Mqtt,
    /// `tcp://`: plain TCP (the original product's spelling).
    Tcp,
    /// `mqtts://`: TLS over TCP.
    Mqtts,
    /// `ssl://`: TLS over TCP (the original product's spelling).
    Ssl,
    /// `quic://`: MQTT over QUIC (always TLS, server certificate always verified).
    Quic,
    /// `quics://`: the same as `quic://`.
    Quics,
}

/// How the bytes travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Plain TCP: no encryption.
    Plain,
    /// TLS over TCP.
    Tls,
    /// QUIC (TLS 1.3 built in).
    Quic,
}

impl Scheme {
    /// Every scheme word, as written before `://`.
    pub const ALL: [&'static str; 6] = ["mqtt", "tcp", "mqtts", "ssl", "quic", "quics"];

    fn parse(s: &str) -> Option<Scheme> {
        Some(match s.to_ascii_lowercase().as_str() {
            "mqtt" => Scheme::Mqtt,
            "tcp" => Scheme::Tcp,
            "mqtts" => Scheme::Mqtts,
            "ssl" => Scheme::Ssl,
            "quic" => Scheme::Quic,
            "quics" => Scheme::Quics,
            _ => return None,
        })
    }

    /// The scheme as written.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Mqtt => "mqtt",
            Scheme::Tcp => "tcp",
            Scheme::Mqtts => "mqtts",
            Scheme::Ssl => "ssl",
            Scheme::Quic => "quic",
            Scheme::Quics => "quics",
        }
    }

    /// How the scheme carries bytes.
    pub fn transport(self) -> Transport {
        match self {
            Scheme::Mqtt | Scheme::Tcp => Transport::Plain,
            Scheme::Mqtts | Scheme::Ssl => Transport::Tls,
            Scheme::Quic | Scheme::Quics => Transport::Quic,
        }
    }

    /// Whether the connection is encrypted (TLS or QUIC).
    pub fn is_secure(self) -> bool {
        self.transport() != Transport::Plain
    }

    /// The port used when the URL has none: 1883 plain, 8883 TLS, 14567 QUIC.
    pub fn default_port(self) -> u16 {
        match self.transport() {
            Transport::Plain => 1883,
            Transport::Tls => 8883,
            Transport::Quic => 14567,
        }
    }
}

/// A parsed broker URL: scheme, host and port (defaulted from the scheme).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BrokerUrl {
    /// The scheme.
    pub scheme: Scheme,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// Port, explicit or the scheme's default.
    pub port: u16,
}

impl BrokerUrl {
    /// Parses `scheme://host[:port][/]`. User info (`user:pass@`) is refused so that no
    /// password sits in a URL; paths and queries are refused (no MQTT over WebSocket).
    pub fn parse(text: &str) -> Result<BrokerUrl, String> {
        let text = text.trim();
        let Some((scheme, rest)) = text.split_once("://") else {
            return Err(format!(
                "not a broker URL: write scheme://host[:port] with a scheme among {}",
                Scheme::ALL.join(", ")
            ));
        };
        let Some(scheme_v) = Scheme::parse(scheme) else {
            let hint = crate::suggest::closest(scheme, Scheme::ALL)
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            return Err(format!(
                "unknown scheme `{scheme}`: use one of {}{hint}",
                Scheme::ALL.join(", ")
            ));
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#']) {
            return Err("a broker URL has no path or query: write scheme://host[:port]".into());
        }
        if authority.contains('@') {
            return Err(
                "credentials do not belong in the URL: use mqtt.username and mqtt.password_env"
                    .into(),
            );
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or("unclosed `[` in an IPv6 address")?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or("expected `:port` after `]`")?),
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err("the URL has no host".into());
        }
        if host.contains(|c: char| c.is_whitespace() || (c == ':' && !authority.starts_with('['))) {
            return Err(format!("`{host}` is not a host name"));
        }
        let port = match port {
            None => scheme_v.default_port(),
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => return Err(format!("`{p}` is not a port (1–65535)")),
            },
        };
        Ok(BrokerUrl {
            scheme: scheme_v,
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(
                f,
                "{}://[{}]:{}",
                self.scheme.as_str(),
                self.host,
                self.port
            )
        } else {
            write!(f, "{}://{}:{}", self.scheme.as_str(), self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ports_follow_the_scheme() {
        let cases = [
            ("mqtt://b", 1883),
            ("tcp://b", 1883),
            ("mqtts://b", 8883),
            ("ssl://b", 8883),
            ("quic://b", 14567),
            ("quics://b/", 14567),
        ];
        for (url, port) in cases {
            assert_eq!(BrokerUrl::parse(url).unwrap().port, port, "{url}");
        }
    }

    #[test]
    fn explicit_ports_and_ipv6_hosts_parse() {
        let u = BrokerUrl::parse("ssl://broker.example.com:9999").unwrap();
        assert_eq!(
            (u.scheme, u.host.as_str(), u.port),
            (Scheme::Ssl, "broker.example.com", 9999)
        );
        let v6 = BrokerUrl::parse("mqtt://[::1]:1884").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 1884));
        assert_eq!(v6.to_string(), "mqtt://[::1]:1884");
        assert_eq!(BrokerUrl::parse("mqtt://[::1]").unwrap().port, 1883);
    }

    #[test]
    fn secure_schemes_are_tls_or_quic() {
        assert!(!Scheme::Mqtt.is_secure());
        assert!(!Scheme::Tcp.is_secure());
        assert!(Scheme::Mqtts.is_secure());
        assert_eq!(Scheme::Quics.transport(), Transport::Quic);
    }

    #[test]
    fn bad_urls_say_why() {
        assert!(
            BrokerUrl::parse("http://b")
                .unwrap_err()
                .contains("unknown scheme `http`")
        );
        assert!(
            BrokerUrl::parse("mqtss://b")
                .unwrap_err()
                .contains("did you mean `mqtts`?")
        );
        assert!(
            BrokerUrl::parse("broker:1883")
                .unwrap_err()
                .contains("not a broker URL")
        );
        assert!(
            BrokerUrl::parse("mqtt://u:p@b")
                .unwrap_err()
                .contains("credentials")
        );
        assert!(BrokerUrl::parse("mqtt://b:0").is_err());
        assert!(BrokerUrl::parse("mqtt://b:70000").is_err());
        assert!(BrokerUrl::parse("mqtt://b/ws").is_err());
        assert!(BrokerUrl::parse("mqtt://").is_err());
        assert!(BrokerUrl::parse("mqtt://a:b:c").is_err());
    }
}
