//! Durations: an integer and a unit `ms`, `s`, `m` or `h` (`agent.md` §2.1 rule 6).

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// Why a duration or size did not parse. Its `Display` is a sentence fit for [`crate::ErrorKind::Invalid`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct ParseError {
    /// What is wrong and how to write it instead.
    pub reason: String,
}

impl ParseError {
    pub(crate) fn new(reason: impl Into<String>) -> Self {
        ParseError {
            reason: reason.into(),
        }
    }
}

const UNITS: [(&str, u64); 4] = [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];

/// Parses `250ms`, `5s`, `1m`, `2h` (spaces around the number and between number and unit are
/// allowed). A bare number is an error: the unit is never guessed.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, ParseError> {
    let s = text.trim();
    let digits = s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let (number, unit) = s.split_at(digits);
    let unit = unit.trim_start();
    if number.is_empty() {
        return Err(ParseError::new(
            "not a duration: write an integer and a unit ms, s, m or h, e.g. `5s`",
        ));
    }
    if unit.is_empty() {
        return Err(ParseError::new(format!(
            "a bare number is not a duration: add a unit ms, s, m or h, e.g. `{number}s`"
        )));
    }
    let Some(&(_, millis)) = UNITS.iter().find(|(u, _)| *u == unit) else {
        return Err(ParseError::new(format!(
            "unknown duration unit `{unit}`: use ms, s, m or h"
        )));
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(millis))
        .map(std::time::Duration::from_millis)
        .ok_or_else(|| ParseError::new("duration too large"))
}

/// Writes a duration in the largest unit that divides it exactly (`90s` → `90s`, `3600s` →
/// `1h`); sub-millisecond parts are dropped. [`parse_duration`] reads the result back.
pub fn format_duration(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_owned();
    }
    for (unit, per) in UNITS {
        let per = u128::from(per);
        if ms.is_multiple_of(per) {
            return format!("{}{unit}", ms / per);
        }
    }
    unreachable!("every millisecond count is a whole number of ms")
}

/// A configuration duration: deserializes from `"5s"`-style strings and refuses bare numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    /// The standard-library duration.
    pub fn get(self) -> std::time::Duration {
        self.0
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        Duration(d)
    }
}

impl FromStr for Duration {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        parse_duration(s).map(Duration)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as `5s`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                v.parse()
                    .map_err(|e: ParseError| E::custom(format_args!("`{v}`: {e}")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
                Err(E::custom(format_args!(
                    "`{v}`: a bare number is not a duration: add a unit ms, s, m or h, e.g. `{v}s`"
                )))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
                Err(E::custom(format_args!(
                    "`{v}`: not a duration: write an integer and a unit ms, s, m or h, e.g. `5s`"
                )))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
                Err(E::custom(format_args!(
                    "`{v}`: not a duration: write an integer and a unit ms, s, m or h, e.g. `5s`"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration as Std;

    #[test]
    fn every_unit_parses() {
        assert_eq!(parse_duration("250ms").unwrap(), Std::from_millis(250));
        assert_eq!(parse_duration("5s").unwrap(), Std::from_secs(5));
        assert_eq!(parse_duration("1m").unwrap(), Std::from_secs(60));
        assert_eq!(parse_duration("2h").unwrap(), Std::from_secs(7200));
        assert_eq!(parse_duration(" 10 s ").unwrap(), Std::from_secs(10));
    }

    #[test]
    fn a_bare_number_is_an_error_that_suggests_a_unit() {
        let e = parse_duration("5").unwrap_err();
        assert!(e.reason.contains("bare number"), "{e}");
        assert!(e.reason.contains("`5s`"), "{e}");
    }

    #[test]
    fn unknown_units_and_garbage_are_errors() {
        assert!(
            parse_duration("5sec")
                .unwrap_err()
                .reason
                .contains("unknown duration unit `sec`")
        );
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("1.5s").is_err());
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("5S").is_err());
    }

    #[test]
    fn overflow_is_an_error() {
        assert_eq!(
            parse_duration("99999999999999999999h").unwrap_err().reason,
            "duration too large"
        );
        assert_eq!(
            parse_duration("18446744073709551615h").unwrap_err().reason,
            "duration too large"
        );
    }

    #[test]
    fn formatting_picks_the_largest_exact_unit() {
        assert_eq!(format_duration(Std::from_millis(250)), "250ms");
        assert_eq!(format_duration(Std::from_secs(90)), "90s");
        assert_eq!(format_duration(Std::from_secs(3600)), "1h");
        assert_eq!(format_duration(Std::from_secs(168 * 3600)), "168h");
        assert_eq!(format_duration(Std::ZERO), "0s");
    }

    #[test]
    fn deserializing_a_yaml_integer_is_an_error() {
        let r: Result<Duration, _> = serde_yaml_ng::from_str("5");
        assert!(r.unwrap_err().to_string().contains("bare number"));
        let ok: Duration = serde_yaml_ng::from_str("\"1m\"").unwrap();
        assert_eq!(ok.get(), Std::from_secs(60));
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(ms in 0u64..=u64::MAX / 3_600_000 * 1000) {
            let d = Std::from_millis(ms);
            prop_assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
        }

        #[test]
        fn every_unit_round_trips(n in 0u64..1_000_000, unit in prop::sample::select(vec!["ms", "s", "m", "h"])) {
            let text = format!("{n}{unit}");
            let d = parse_duration(&text).unwrap();
            prop_assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
        }
    }
}
