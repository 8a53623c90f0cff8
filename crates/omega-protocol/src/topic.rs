//! Topics and identity (`protocol.md` §2): device ids, root topics, the cloud's device topic
//! template, suffixes, and routing a received topic to (device id, suffix).

use std::fmt;

use crate::validate::{Rejection, RejectionCode};

/// Longest device id in bytes (§2.2.2).
pub const MAX_DEVICE_ID_BYTES: usize = 128;

/// The template level that stands for the device id (§2.4.1).
pub const DEVICE_LEVEL: &str = "{device}";

/// The default cloud template (§2.4.3).
pub const DEFAULT_DEVICE_TOPIC: &str = "omega/{device}";

/// Why a device id, root topic, template or share group is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// A device id that is empty or longer than 128 bytes.
    #[error("device id must be 1 to {MAX_DEVICE_ID_BYTES} bytes, got {0}")]
    DeviceIdLength(usize),
    /// A device id with `/`, `+`, `#`, NUL or a control character.
    #[error("device id must not contain {0:?}")]
    DeviceIdChar(char),
    /// An empty root topic.
    #[error("root topic must not be empty")]
    RootEmpty,
    /// A root topic with `+`, `#` or NUL.
    #[error("root topic must not contain {0:?}")]
    RootChar(char),
    /// A root topic ending with `/`.
    #[error("root topic must not end with '/'")]
    RootTrailingSlash,
    /// A template without exactly one `{device}` level.
    #[error("device topic template must have exactly one level equal to {{device}}, found {0}")]
    TemplateDeviceLevels(usize),
    /// A template level that is neither a literal, `+` nor `{device}`.
    #[error("device topic template level {0:?} must be a literal without + # {{ }}, or +")]
    TemplateLevel(String),
    /// A template ending with `/`.
    #[error("device topic template must not end with '/'")]
    TemplateTrailingSlash,
    /// A shared-subscription group name that is empty or has `/`, `+` or `#`.
    #[error("shared subscription group {0:?} must be non-empty without / + #")]
    ShareGroup(String),
}

/// Checks a device id (§2.2.2): 1 to 128 bytes of UTF-8 with no `/`, `+`, `#`, NUL or control
/// characters (Unicode category Cc).
pub fn validate_device_id(id: &str) -> Result<(), TopicError> {
    if id.is_empty() || id.len() > MAX_DEVICE_ID_BYTES {
        return Err(TopicError::DeviceIdLength(id.len()));
    }
    match id
        .chars()
        .find(|&c| matches!(c, '/' | '+' | '#') || c.is_control())
    {
        Some(c) => Err(TopicError::DeviceIdChar(c)),
        None => Ok(()),
    }
}

/// Checks a root topic (§2.3.3): non-empty, no `+`, `#` or NUL, not ending with `/`. It may
/// start with `/`.
pub fn validate_root_topic(root: &str) -> Result<(), TopicError> {
    if root.is_empty() {
        return Err(TopicError::RootEmpty);
    }
    if let Some(c) = root.chars().find(|&c| matches!(c, '+' | '#' | '\0')) {
        return Err(TopicError::RootChar(c));
    }
    if root.ends_with('/') {
        return Err(TopicError::RootTrailingSlash);
    }
    Ok(())
}

/// The root topic when none is configured: `omega/{device_id}` (§2.3.2).
pub fn default_root_topic(device_id: &str) -> String {
    format!("omega/{device_id}")
}

/// The full topic of `suffix` under `root` (§2.3.4): `{root}/{suffix}`.
pub fn full_topic(root: &str, suffix: Suffix) -> String {
    format!("{root}/{}", suffix.as_str())
}

/// A topic suffix under the root (§2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Suffix {
    /// `sync/rows/batch`: row batch, device → cloud.
    RowsBatch,
    /// `sync/telemetry/batch`: telemetry batch, device → cloud.
    TelemetryBatch,
    /// `sync/schema/observe`: schema observation, device → cloud.
    SchemaObserve,
    /// `sync/ingest/ack`: control ACK, device → cloud.
    IngestAck,
    /// `sync/ingest/control`: control envelope, cloud → device.
    IngestControl,
    /// `sync/ingest/receipt`: delivery receipt, cloud → device.
    IngestReceipt,
    /// `sync/ingest/request`: reserved; never published, rejected as `unknown_topic`.
    IngestRequest,
}

impl Suffix {
    /// Every suffix of §2.5.
    pub const ALL: [Suffix; 7] = [
        Suffix::RowsBatch,
        Suffix::TelemetryBatch,
        Suffix::SchemaObserve,
        Suffix::IngestAck,
        Suffix::IngestControl,
        Suffix::IngestReceipt,
        Suffix::IngestRequest,
    ];

    /// The suffix text, such as `sync/rows/batch`.
    pub fn as_str(self) -> &'static str {
        match self {
            Suffix::RowsBatch => "sync/rows/batch",
            Suffix::TelemetryBatch => "sync/telemetry/batch",
            Suffix::SchemaObserve => "sync/schema/observe",
            Suffix::IngestAck => "sync/ingest/ack",
            Suffix::IngestControl => "sync/ingest/control",
            Suffix::IngestReceipt => "sync/ingest/receipt",
            Suffix::IngestRequest => "sync/ingest/request",
        }
    }

    /// Reads a suffix text.
    pub fn parse(s: &str) -> Option<Suffix> {
        Suffix::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// The four suffixes the agent publishes and the cloud processes.
    pub fn is_device_to_cloud(self) -> bool {
        matches!(
            self,
            Suffix::RowsBatch | Suffix::TelemetryBatch | Suffix::SchemaObserve | Suffix::IngestAck
        )
    }

    /// The two suffixes the cloud publishes (and ignores on its own subscription, §2.5.2).
    pub fn is_cloud_to_device(self) -> bool {
        matches!(self, Suffix::IngestControl | Suffix::IngestReceipt)
    }
}

impl fmt::Display for Suffix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One level of a [`DeviceTopicTemplate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateLevel {
    /// A level that must match exactly.
    Literal(String),
    /// `+`: any single level.
    Any,
    /// `{device}`: the device id.
    Device,
}

/// The cloud's `ingest.device_topic` (§2.4), such as `omega/{device}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceTopicTemplate {
    levels: Vec<TemplateLevel>,
    device_index: usize,
}

/// A received topic resolved by [`DeviceTopicTemplate::route`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    /// The device id taken from the `{device}` level.
    pub device_id: String,
    /// The suffix: one of the four device-to-cloud suffixes, or one of the two cloud-to-device
    /// ones (which the cloud acknowledges and skips, §2.5.2).
    pub suffix: Suffix,
}

impl DeviceTopicTemplate {
    /// Parses and checks a template (§2.4.1): exactly one level `{device}`; every other level a
    /// literal without `+`, `#`, `{`, `}`, NUL, or exactly `+`; no trailing `/`.
    pub fn parse(template: &str) -> Result<Self, TopicError> {
        if template.ends_with('/') {
            return Err(TopicError::TemplateTrailingSlash);
        }
        let mut levels = Vec::new();
        for level in template.split('/') {
            levels.push(match level {
                DEVICE_LEVEL => TemplateLevel::Device,
                "+" => TemplateLevel::Any,
                l if l.contains(['+', '#', '{', '}', '\0']) => {
                    return Err(TopicError::TemplateLevel(l.to_owned()));
                }
                l => TemplateLevel::Literal(l.to_owned()),
            });
        }
        let device: Vec<usize> = levels
            .iter()
            .enumerate()
            .filter(|(_, l)| **l == TemplateLevel::Device)
            .map(|(i, _)| i)
            .collect();
        match device.as_slice() {
            [i] => Ok(DeviceTopicTemplate {
                device_index: *i,
                levels,
            }),
            other => Err(TopicError::TemplateDeviceLevels(other.len())),
        }
    }

    /// The levels of the template.
    pub fn levels(&self) -> &[TemplateLevel] {
        &self.levels
    }

    /// The template with `{device}` replaced by `+` (§2.4.2), without the suffix.
    pub fn root_filter(&self) -> String {
        let parts: Vec<&str> = self
            .levels
            .iter()
            .map(|l| match l {
                TemplateLevel::Literal(s) => s.as_str(),
                TemplateLevel::Any | TemplateLevel::Device => "+",
            })
            .collect();
        parts.join("/")
    }

    /// The cloud's subscription filter (§2.4.2), such as `omega/+/sync/#`.
    pub fn subscription_filter(&self) -> String {
        format!("{}/sync/#", self.root_filter())
    }

    /// The MQTT 5 shared-subscription form `$share/{group}/{filter}`, for several workers.
    pub fn shared_subscription_filter(&self, group: &str) -> Result<String, TopicError> {
        if group.is_empty() || group.contains(['/', '+', '#']) {
            return Err(TopicError::ShareGroup(group.to_owned()));
        }
        Ok(format!("$share/{group}/{}", self.subscription_filter()))
    }

    /// The root topic of `device_id` under this template, when the template has no `+` level.
    pub fn root_for(&self, device_id: &str) -> Option<String> {
        let parts: Option<Vec<&str>> = self
            .levels
            .iter()
            .map(|l| match l {
                TemplateLevel::Literal(s) => Some(s.as_str()),
                TemplateLevel::Device => Some(device_id),
                TemplateLevel::Any => None,
            })
            .collect();
        parts.map(|p| p.join("/"))
    }

    /// The device id of a root topic that has this template's shape (§2.4.3), if it has it.
    pub fn device_of_root(&self, root: &str) -> Option<String> {
        let levels: Vec<&str> = root.split('/').collect();
        self.match_levels(&levels)
    }

    fn match_levels(&self, levels: &[&str]) -> Option<String> {
        if levels.len() != self.levels.len() {
            return None;
        }
        for (t, l) in self.levels.iter().zip(levels) {
            if let TemplateLevel::Literal(s) = t
                && s != l
            {
                return None;
            }
        }
        let device = levels[self.device_index];
        validate_device_id(device).ok()?;
        Some(device.to_owned())
    }

    /// Routes a received topic (§2.4.2, §2.5.2): the template, then one of the suffixes other
    /// than the reserved `sync/ingest/request`. Anything else is `unknown_topic` (§14, code 1),
    /// including a `{device}` level that is not a valid device id.
    pub fn route(&self, topic: &str) -> Result<Routed, Rejection> {
        let unknown = |why: &str| {
            Rejection::new(
                RejectionCode::UnknownTopic,
                format!("topic {topic:?}: {why}"),
            )
        };
        let levels: Vec<&str> = topic.split('/').collect();
        let n = self.levels.len();
        if levels.len() != n + 3 {
            return Err(unknown(
                "does not match the device topic template and a suffix",
            ));
        }
        let device_id = self
            .match_levels(&levels[..n])
            .ok_or_else(|| unknown("does not match the device topic template"))?;
        let suffix_text = levels[n..].join("/");
        match Suffix::parse(&suffix_text) {
            Some(Suffix::IngestRequest) => Err(unknown("reserved suffix sync/ingest/request")),
            Some(suffix) => Ok(Routed { device_id, suffix }),
            None => Err(unknown("unknown suffix")),
        }
    }
}

impl fmt::Display for DeviceTopicTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<&str> = self
            .levels
            .iter()
            .map(|l| match l {
                TemplateLevel::Literal(s) => s.as_str(),
                TemplateLevel::Any => "+",
                TemplateLevel::Device => DEVICE_LEVEL,
            })
            .collect();
        f.write_str(&parts.join("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(t: &str) -> DeviceTopicTemplate {
        DeviceTopicTemplate::parse(t).unwrap()
    }

    #[test]
    fn device_ids_are_1_to_128_bytes_without_topic_or_control_characters() {
        assert!(validate_device_id("gw-07").is_ok());
        assert!(validate_device_id("presse Nº 1").is_ok());
        assert!(validate_device_id(&"é".repeat(64)).is_ok());
        assert_eq!(validate_device_id(""), Err(TopicError::DeviceIdLength(0)));
        assert_eq!(
            validate_device_id(&"x".repeat(129)),
            Err(TopicError::DeviceIdLength(129))
        );
        for c in ['/', '+', '#', '\0', '\n', '\u{7f}', '\u{85}'] {
            assert_eq!(
                validate_device_id(&format!("a{c}b")),
                Err(TopicError::DeviceIdChar(c))
            );
        }
    }

    #[test]
    fn root_topics_may_start_with_a_slash_but_not_end_with_one() {
        assert!(validate_root_topic("/e023_4f19/press-01").is_ok());
        assert_eq!(default_root_topic("gw-07"), "omega/gw-07");
        assert_eq!(validate_root_topic(""), Err(TopicError::RootEmpty));
        assert_eq!(
            validate_root_topic("a/"),
            Err(TopicError::RootTrailingSlash)
        );
        assert_eq!(validate_root_topic("a/+/b"), Err(TopicError::RootChar('+')));
        assert_eq!(validate_root_topic("a/#"), Err(TopicError::RootChar('#')));
        assert_eq!(
            full_topic("/e023_4f19/press-01", Suffix::RowsBatch),
            "/e023_4f19/press-01/sync/rows/batch"
        );
    }

    #[test]
    fn templates_need_exactly_one_device_level_and_plain_other_levels() {
        assert_eq!(template("omega/{device}").to_string(), "omega/{device}");
        assert!(DeviceTopicTemplate::parse("/+/site/{device}").is_ok());
        let err = |t: &str| DeviceTopicTemplate::parse(t).unwrap_err();
        assert_eq!(err("omega"), TopicError::TemplateDeviceLevels(0));
        assert_eq!(
            err("{device}/{device}"),
            TopicError::TemplateDeviceLevels(2)
        );
        assert_eq!(
            err("omega/#/{device}"),
            TopicError::TemplateLevel("#".into())
        );
        assert_eq!(err("om+/{device}"), TopicError::TemplateLevel("om+".into()));
        assert_eq!(
            err("x{device}/a"),
            TopicError::TemplateLevel("x{device}".into())
        );
        assert_eq!(err("omega/{device}/"), TopicError::TemplateTrailingSlash);
    }

    #[test]
    fn subscription_filters_replace_the_device_level_by_plus() {
        let t = template("omega/{device}");
        assert_eq!(t.subscription_filter(), "omega/+/sync/#");
        assert_eq!(
            t.shared_subscription_filter("ingest").unwrap(),
            "$share/ingest/omega/+/sync/#"
        );
        assert!(t.shared_subscription_filter("a/b").is_err());
        assert!(t.shared_subscription_filter("").is_err());
        assert_eq!(template("/+/{device}").subscription_filter(), "/+/+/sync/#");
        assert_eq!(t.root_for("gw-07").unwrap(), "omega/gw-07");
        assert_eq!(template("+/{device}").root_for("gw"), None);
    }

    #[test]
    fn routing_takes_the_device_id_from_the_template_position() {
        let t = template("/+/{device}");
        let r = t.route("/e023_4f19/press-01/sync/rows/batch").unwrap();
        assert_eq!(
            r,
            Routed {
                device_id: "press-01".into(),
                suffix: Suffix::RowsBatch
            }
        );
        let d = template("omega/{device}");
        for s in Suffix::ALL
            .into_iter()
            .filter(|s| *s != Suffix::IngestRequest)
        {
            assert_eq!(d.route(&full_topic("omega/gw-07", s)).unwrap().suffix, s);
        }
        assert_eq!(d.device_of_root("omega/gw-07").as_deref(), Some("gw-07"));
        assert_eq!(d.device_of_root("other/gw-07"), None);
    }

    #[test]
    fn topics_outside_the_template_or_suffixes_are_unknown_topic() {
        let t = template("omega/{device}");
        for topic in [
            "omega/gw-07/sync/ingest/request",
            "omega/gw-07/sync/rows/batches",
            "omega/gw-07/sync/rows",
            "other/gw-07/sync/rows/batch",
            "omega//sync/rows/batch",
            "omega/a/b/sync/rows/batch",
            "omega/gw-07/sync/rows/batch/x",
            "",
        ] {
            let r = t.route(topic).unwrap_err();
            assert_eq!(r.code, RejectionCode::UnknownTopic, "{topic}");
        }
    }
}
