//! A YAML scalar kept as text, for keys that accept a string or a number (`mqtt.version: 5`).

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// Any YAML scalar (string, integer, float, boolean) as the text it denotes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scalar(pub String);

impl Scalar {
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_owned()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::Scalar;

    #[test]
    fn strings_and_numbers_become_text() {
        let a: Scalar = serde_yaml_ng::from_str("\"3.1.1\"").unwrap();
        let b: Scalar = serde_yaml_ng::from_str("5").unwrap();
        let c: Scalar = serde_yaml_ng::from_str("3.1.1").unwrap();
        assert_eq!(
            (a.as_str(), b.as_str(), c.as_str()),
            ("3.1.1", "5", "3.1.1")
        );
        assert!(serde_yaml_ng::from_str::<Scalar>("[1]").is_err());
    }
}
