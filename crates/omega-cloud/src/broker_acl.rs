//! `omega cloud broker-acl` (`cloud.md` §17, `protocol.md` §2.6): the Mosquitto ACL file and
//! listener fragment that confine each device to its own root topic.
//!
//! Pure text generation, no I/O. The device topic template's `{device}` level becomes `%u`
//! (the username, which the listener takes from the client certificate's CN with
//! `use_identity_as_username true`), so a device holding the certificate `CN=A` may only touch
//! topics whose device level is `A`:
//!
//! - it publishes the device-to-cloud suffixes of §2.5 (and the reserved `sync/ingest/request`,
//!   which the cloud rejects as `unknown_topic`), listed one by one so that the two
//!   cloud-to-device topics stay closed to it (a `deny` rule would also block its subscription);
//! - it subscribes to (reads) its `sync/ingest/control` and `sync/ingest/receipt` only;
//! - the cloud identity reads every device's `sync/#` and publishes every device's control and
//!   receipt topics.
//!
//! Anything not granted is denied by Mosquitto (an ACL file is a whitelist).

use std::fmt::Write as _;

use omega_protocol::topic::{DeviceTopicTemplate, Suffix, TemplateLevel};

/// The cloud's default MQTT identity (its certificate CN, or its username).
pub const DEFAULT_CLOUD_IDENTITY: &str = "omega-cloud";

/// Why an ACL cannot be generated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclError {
    /// A literal level of the device topic template would be misread by Mosquitto.
    #[error(
        "device topic level `{0}`: Mosquitto ACL files cannot hold `%` (it would be substituted) \
         or whitespace in a topic level"
    )]
    TemplateLevel(String),
    /// The cloud identity cannot be written as a `user` line.
    #[error(
        "cloud identity `{0}`: must be 1–128 bytes without whitespace, control characters, `/`, \
         `+`, `#` or `%`"
    )]
    CloudIdentity(String),
    /// A listener setting cannot be written on one configuration line.
    #[error(
        "{field} `{value}`: must be non-empty, on one line and without leading or trailing spaces"
    )]
    Setting {
        /// The option (`cafile`, `bind`…).
        field: &'static str,
        /// The value given.
        value: String,
    },
}

/// The rights of devices and of the cloud, in the template's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclRules {
    /// `pattern write …`: one topic per device-to-cloud suffix, under the device's root.
    pub device_publish: Vec<String>,
    /// `pattern read …`: the two cloud-to-device topics under the device's root.
    pub device_subscribe: Vec<String>,
    /// The cloud's user name.
    pub cloud_identity: String,
    /// `topic read …`: every device's `sync/#`.
    pub cloud_read: Vec<String>,
    /// `topic write …`: every device's control and receipt topics.
    pub cloud_write: Vec<String>,
}

/// Suffixes a device may publish: the device-to-cloud ones and the reserved request topic
/// (`protocol.md` §2.6.1: `{root}/sync/#` except the two cloud-to-device topics).
fn device_publish_suffixes() -> impl Iterator<Item = Suffix> {
    Suffix::ALL.into_iter().filter(|s| !s.is_cloud_to_device())
}

/// Suffixes the cloud publishes and the device subscribes to.
fn cloud_to_device_suffixes() -> impl Iterator<Item = Suffix> {
    Suffix::ALL.into_iter().filter(|s| s.is_cloud_to_device())
}

/// Checks a value that Mosquitto reads as the rest of a line.
fn check_identity(id: &str) -> Result<(), AclError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && !id
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | '+' | '#' | '%'));
    if ok {
        Ok(())
    } else {
        Err(AclError::CloudIdentity(id.to_owned()))
    }
}

/// The template with `{device}` → `device_level` (`%u` for patterns, `+` for the cloud).
fn root_with(template: &DeviceTopicTemplate, device_level: &str) -> Result<String, AclError> {
    let mut parts = Vec::with_capacity(template.levels().len());
    for level in template.levels() {
        parts.push(match level {
            TemplateLevel::Literal(l) => {
                if l.contains('%') || l.chars().any(char::is_whitespace) {
                    return Err(AclError::TemplateLevel(l.clone()));
                }
                l.as_str()
            }
            TemplateLevel::Any => "+",
            TemplateLevel::Device => device_level,
        });
    }
    Ok(parts.join("/"))
}

impl AclRules {
    /// The rules for `template` (`ingest.device_topic`) and the cloud's identity.
    pub fn new(template: &DeviceTopicTemplate, cloud_identity: &str) -> Result<Self, AclError> {
        check_identity(cloud_identity)?;
        let device_root = root_with(template, "%u")?;
        let any_root = root_with(template, "+")?;
        let under = |root: &str, s: Suffix| format!("{root}/{}", s.as_str());
        Ok(AclRules {
            device_publish: device_publish_suffixes()
                .map(|s| under(&device_root, s))
                .collect(),
            device_subscribe: cloud_to_device_suffixes()
                .map(|s| under(&device_root, s))
                .collect(),
            cloud_identity: cloud_identity.to_owned(),
            cloud_read: vec![format!("{any_root}/sync/#")],
            cloud_write: cloud_to_device_suffixes()
                .map(|s| under(&any_root, s))
                .collect(),
        })
    }

    /// The Mosquitto ACL file.
    pub fn mosquitto_acl(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# Omega broker ACL (generated by `omega cloud broker-acl`; protocol.md §2.6).\n\
             # %u is the username, which the listener takes from the client certificate's CN\n\
             # (use_identity_as_username true): a device only touches its own root topic.\n\
             # Anything not granted here is denied.\n\n\
             # Devices: publish the device-to-cloud topics, never control or receipt.\n",
        );
        for t in &self.device_publish {
            let _ = writeln!(out, "pattern write {t}");
        }
        out.push_str("# Devices: subscribe to their own control and receipt topics.\n");
        for t in &self.device_subscribe {
            let _ = writeln!(out, "pattern read {t}");
        }
        let _ = write!(
            out,
            "\n# The cloud: reads every device's uplink, sends controls and receipts.\n\
             # Never issue a device certificate with this CN.\nuser {}\n",
            self.cloud_identity
        );
        for t in &self.cloud_read {
            let _ = writeln!(out, "topic read {t}");
        }
        for t in &self.cloud_write {
            let _ = writeln!(out, "topic write {t}");
        }
        out
    }
}

/// Where the listener fragment's files are and what it listens on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// TCP port (8883 for MQTT over TLS).
    pub port: u16,
    /// Bind address; `None` listens on every interface.
    pub bind: Option<String>,
    /// CA bundle that signs device (and cloud) certificates.
    pub cafile: String,
    /// The broker's certificate.
    pub certfile: String,
    /// The broker's private key.
    pub keyfile: String,
    /// The ACL file written by [`AclRules::mosquitto_acl`].
    pub acl_file: String,
}

impl Default for Listener {
    fn default() -> Self {
        Listener {
            port: 8883,
            bind: None,
            cafile: "/etc/mosquitto/certs/ca.crt".into(),
            certfile: "/etc/mosquitto/certs/server.crt".into(),
            keyfile: "/etc/mosquitto/certs/server.key".into(),
            acl_file: "/etc/mosquitto/omega.acl".into(),
        }
    }
}

fn check_setting(field: &'static str, value: &str) -> Result<(), AclError> {
    if value.is_empty() || value.trim() != value || value.chars().any(char::is_control) {
        return Err(AclError::Setting {
            field,
            value: value.to_owned(),
        });
    }
    Ok(())
}

impl Listener {
    /// The Mosquitto (2.x) configuration fragment: global `allow_anonymous false` and
    /// `acl_file`, then an mTLS listener that requires a client certificate and takes its CN
    /// as the username.
    pub fn mosquitto_conf(&self) -> Result<String, AclError> {
        check_setting("cafile", &self.cafile)?;
        check_setting("certfile", &self.certfile)?;
        check_setting("keyfile", &self.keyfile)?;
        check_setting("acl_file", &self.acl_file)?;
        if let Some(b) = &self.bind {
            check_setting("bind", b)?;
        }
        let listener = match &self.bind {
            Some(b) => format!("listener {} {b}", self.port),
            None => format!("listener {}", self.port),
        };
        Ok(format!(
            "# Omega device listener (generated by `omega cloud broker-acl`; protocol.md §2.6).\n\
             # Mosquitto 2 applies allow_anonymous and acl_file to every listener unless\n\
             # per_listener_settings is true.\n\
             allow_anonymous false\n\
             acl_file {acl}\n\n\
             {listener}\n\
             # The CA that signs device and cloud certificates.\n\
             cafile {ca}\n\
             certfile {cert}\n\
             keyfile {key}\n\
             require_certificate true\n\
             use_identity_as_username true\n\
             # Revoked device certificates: crlfile /etc/mosquitto/certs/devices.crl\n",
            acl = self.acl_file,
            ca = self.cafile,
            cert = self.certfile,
            key = self.keyfile,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(template: &str) -> AclRules {
        AclRules::new(
            &DeviceTopicTemplate::parse(template).unwrap(),
            DEFAULT_CLOUD_IDENTITY,
        )
        .unwrap()
    }

    #[test]
    fn the_default_template_gives_the_spec_rules() {
        let acl = rules("omega/{device}").mosquitto_acl();
        let lines: Vec<&str> = acl
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .collect();
        assert_eq!(
            lines,
            [
                "pattern write omega/%u/sync/rows/batch",
                "pattern write omega/%u/sync/telemetry/batch",
                "pattern write omega/%u/sync/schema/observe",
                "pattern write omega/%u/sync/ingest/ack",
                "pattern write omega/%u/sync/ingest/request",
                "pattern read omega/%u/sync/ingest/control",
                "pattern read omega/%u/sync/ingest/receipt",
                "user omega-cloud",
                "topic read omega/+/sync/#",
                "topic write omega/+/sync/ingest/control",
                "topic write omega/+/sync/ingest/receipt",
            ]
        );
    }

    #[test]
    fn devices_never_publish_on_cloud_to_device_topics() {
        let r = rules("omega/{device}");
        for t in &r.device_publish {
            assert!(
                !t.ends_with("/sync/ingest/control") && !t.ends_with("/sync/ingest/receipt"),
                "{t}"
            );
        }
        assert_eq!(r.device_publish.len(), 5);
    }

    #[test]
    fn plus_levels_and_a_leading_slash_keep_their_shape() {
        let r = rules("/+/{device}");
        assert_eq!(r.device_publish[0], "/+/%u/sync/rows/batch");
        assert_eq!(r.device_subscribe[0], "/+/%u/sync/ingest/control");
        assert_eq!(r.cloud_read, ["/+/+/sync/#"]);
        let r = rules("fleet/{device}/x");
        assert_eq!(r.device_subscribe[1], "fleet/%u/x/sync/ingest/receipt");
        assert_eq!(r.cloud_write[0], "fleet/+/x/sync/ingest/control");
    }

    #[test]
    fn a_percent_or_space_in_a_level_is_refused() {
        for t in ["omega%c/{device}", "a b/{device}"] {
            let err = AclRules::new(&DeviceTopicTemplate::parse(t).unwrap(), "c").unwrap_err();
            assert!(matches!(err, AclError::TemplateLevel(_)), "{t}: {err}");
        }
    }

    #[test]
    fn the_cloud_identity_must_fit_a_user_line() {
        let t = DeviceTopicTemplate::parse("omega/{device}").unwrap();
        for bad in ["", "a b", "x/y", "a+", "#", "u%u", "line\nbreak"] {
            assert!(
                matches!(AclRules::new(&t, bad), Err(AclError::CloudIdentity(_))),
                "{bad:?}"
            );
        }
        let acl = AclRules::new(&t, "cloud.example-1")
            .unwrap()
            .mosquitto_acl();
        assert!(acl.contains("\nuser cloud.example-1\n"), "{acl}");
    }

    #[test]
    fn the_listener_requires_certificates_and_uses_the_cn() {
        let conf = Listener {
            port: 18883,
            bind: Some("127.0.0.1".into()),
            acl_file: "/tmp/x/omega.acl".into(),
            ..Listener::default()
        }
        .mosquitto_conf()
        .unwrap();
        for line in [
            "allow_anonymous false",
            "acl_file /tmp/x/omega.acl",
            "listener 18883 127.0.0.1",
            "cafile /etc/mosquitto/certs/ca.crt",
            "require_certificate true",
            "use_identity_as_username true",
        ] {
            assert!(conf.lines().any(|l| l == line), "{line} missing:\n{conf}");
        }
        let conf = Listener::default().mosquitto_conf().unwrap();
        assert!(conf.lines().any(|l| l == "listener 8883"), "{conf}");
    }

    #[test]
    fn a_setting_that_breaks_the_line_is_refused() {
        let err = Listener {
            cafile: "a\nb".into(),
            ..Listener::default()
        }
        .mosquitto_conf()
        .unwrap_err();
        assert!(err.to_string().starts_with("cafile"), "{err}");
    }
}
