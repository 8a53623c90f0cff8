//! Device id and root topic rules (`protocol.md` §2.2.2, §2.3).
//!
//! The rules themselves live in `omega_protocol::topic`; this module turns them into
//! configuration messages and replaces the `{device_id}` token.

use omega_protocol::topic::{validate_device_id, validate_root_topic};

/// Checks a device id: 1 to 128 bytes of UTF-8 with no `/`, `+`, `#`, NUL or control
/// characters. Returns why it is refused.
pub fn check_device_id(id: &str) -> Result<(), String> {
    validate_device_id(id).map_err(|e| e.to_string())
}

/// Replaces `{device_id}` in a root topic template and checks the result: non-empty, no `+`,
/// `#` or NUL, no trailing `/` (a leading `/` is allowed).
pub fn root_topic(template: &str, device_id: &str) -> Result<String, String> {
    let topic = template.replace("{device_id}", device_id);
    validate_root_topic(&topic).map_err(|e| e.to_string())?;
    Ok(topic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids_follow_the_protocol_rules() {
        assert!(check_device_id("press-01").is_ok());
        assert!(check_device_id("naïve device").is_ok());
        assert!(check_device_id(&"x".repeat(128)).is_ok());
        assert!(
            check_device_id(&"x".repeat(129))
                .unwrap_err()
                .contains("128 bytes")
        );
        assert!(check_device_id("").is_err());
        assert!(check_device_id("a/b").unwrap_err().contains("'/'"));
        assert!(check_device_id("a+b").is_err());
        assert!(check_device_id("a#b").is_err());
        assert!(check_device_id("a\0b").is_err());
        assert!(check_device_id("a\nb").is_err());
    }

    #[test]
    fn root_topics_replace_the_device_id_and_follow_the_rules() {
        assert_eq!(root_topic("omega/{device_id}", "p1").unwrap(), "omega/p1");
        assert_eq!(root_topic("/e023/{device_id}", "p1").unwrap(), "/e023/p1");
        assert!(root_topic("", "p1").is_err());
        assert!(root_topic("omega/+", "p1").unwrap_err().contains("'+'"));
        assert!(root_topic("omega/#", "p1").is_err());
        assert!(root_topic("omega/", "p1").unwrap_err().contains("end with"));
        assert!(root_topic("om\0ega", "p1").is_err());
    }
}
