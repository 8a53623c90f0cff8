//! Wire timestamps (`protocol.md` §1.4): RFC 3339 in UTC with a `Z` suffix; fractional
//! seconds only when non-zero, trailing zeros removed, at most 9 digits.

use std::fmt::Write as _;

use ::time::format_description::well_known::Rfc3339;
use ::time::{OffsetDateTime, UtcOffset};

/// Why a string is not an RFC 3339 timestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an RFC 3339 timestamp: {0}")]
pub struct TimeError(pub String);

/// Formats an instant for the wire (§1.4), converting it to UTC first. Example:
/// `2026-04-28T09:00:02.5Z`. Years outside 0000–9999 have no RFC 3339 form and are written as
/// the `time` crate prints them.
pub fn format_rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    let mut out = String::with_capacity(30);
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    let nanos = t.nanosecond();
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Formats nanoseconds since the Unix epoch for the wire; `None` outside the `time` crate's
/// range.
pub fn format_unix_nanos(nanos: i128) -> Option<String> {
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .map(format_rfc3339)
}

/// Parses an RFC 3339 timestamp. Any offset is accepted (senders use `Z`), and so is the
/// space separator RFC 3339 §5.6 allows in place of `T`; the result is converted to UTC.
pub fn parse_rfc3339(s: &str) -> Result<OffsetDateTime, TimeError> {
    OffsetDateTime::parse(s, &Rfc3339)
        .map(|t| t.to_offset(UtcOffset::UTC))
        .map_err(|e| TimeError(e.to_string()))
}

/// Parses an RFC 3339 timestamp to nanoseconds since the Unix epoch.
pub fn parse_rfc3339_unix_nanos(s: &str) -> Result<i128, TimeError> {
    parse_rfc3339(s).map(OffsetDateTime::unix_timestamp_nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(s: &str) -> String {
        format_rfc3339(parse_rfc3339(s).unwrap())
    }

    #[test]
    fn fractions_appear_only_when_non_zero_with_trailing_zeros_removed() {
        assert_eq!(round("2026-04-28T09:00:00Z"), "2026-04-28T09:00:00Z");
        assert_eq!(round("2026-04-28T09:00:00.000Z"), "2026-04-28T09:00:00Z");
        assert_eq!(round("2026-04-28T09:00:02.500Z"), "2026-04-28T09:00:02.5Z");
        assert_eq!(
            round("2026-04-28T09:00:00.123456789Z"),
            "2026-04-28T09:00:00.123456789Z"
        );
        assert_eq!(
            round("2026-04-28T09:00:00.000000001Z"),
            "2026-04-28T09:00:00.000000001Z"
        );
    }

    #[test]
    fn offsets_are_accepted_and_converted_to_utc() {
        assert_eq!(round("2026-04-28T11:30:00+02:30"), "2026-04-28T09:00:00Z");
        assert_eq!(round("2026-04-27T23:00:00-10:00"), "2026-04-28T09:00:00Z");
        assert_eq!(
            parse_rfc3339_unix_nanos("1970-01-01T00:00:01.5Z").unwrap(),
            1_500_000_000
        );
        assert_eq!(
            format_unix_nanos(1_500_000_000).unwrap(),
            "1970-01-01T00:00:01.5Z"
        );
    }

    #[test]
    fn text_that_is_not_rfc_3339_is_rejected() {
        for s in [
            "",
            "2026-04-28",
            "2026-04-28T09:00:00",
            "2026-13-01T00:00:00Z",
            "2026-04-28T09:00:00.Z",
            "1777366800",
        ] {
            assert!(parse_rfc3339(s).is_err(), "{s}");
        }
    }
}
