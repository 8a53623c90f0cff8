//! The `x` / `x_env` convention (`agent.md` §2.1 rule 4) and secrets.

use std::fmt;

/// How the loaders read environment variables: a function from a name to its value.
/// Tests pass a closure over a map; programs pass [`process_env`].
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Reads the process environment (non-UTF-8 values count as unset).
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Where a resolved value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueSource {
    /// The variable named by `x_env`, set and non-empty.
    Variable,
    /// The literal `x` in the file.
    Literal,
    /// The built-in default.
    Default,
    /// Nothing: no variable value, no literal, no default.
    Unset,
}

impl ValueSource {
    /// A lowercase word for reports: `variable`, `literal`, `default`, `unset`.
    pub fn as_str(self) -> &'static str {
        match self {
            ValueSource::Variable => "variable",
            ValueSource::Literal => "literal",
            ValueSource::Default => "default",
            ValueSource::Unset => "unset",
        }
    }
}

/// The outcome of resolving one `x` / `x_env` pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The value, unless nothing supplied one.
    pub value: Option<String>,
    /// Where it came from.
    pub source: ValueSource,
    /// Whether `x_env` named a variable that was unset or empty.
    pub variable_unset: bool,
}

/// Resolves `x` / `x_env`: the variable named by `x_env` wins when it is set and non-empty,
/// else the literal `x`, else `default`, else nothing ([`ValueSource::Unset`]).
pub fn resolve_env(
    literal: Option<&str>,
    env_var: Option<&str>,
    default: Option<&str>,
    env: EnvLookup<'_>,
) -> Resolved {
    let from_var = env_var.and_then(|var| env(var).filter(|v| !v.is_empty()));
    let variable_unset = env_var.is_some() && from_var.is_none();
    let (value, source) = if let Some(v) = from_var {
        (Some(v), ValueSource::Variable)
    } else if let Some(l) = literal {
        (Some(l.to_owned()), ValueSource::Literal)
    } else if let Some(d) = default {
        (Some(d.to_owned()), ValueSource::Default)
    } else {
        (None, ValueSource::Unset)
    };
    Resolved {
        value,
        source,
        variable_unset,
    }
}

/// A record of one `_env` resolution, for `omega agent validate` (never holds the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvUse {
    /// Dotted YAML path of the key `x` (e.g. `connection.server_url`).
    pub path: String,
    /// The variable named by `x_env`, if any.
    pub variable: Option<String>,
    /// Where the value came from.
    pub source: ValueSource,
    /// Whether the value is a secret (password, token).
    pub secret: bool,
}

impl fmt::Display for EnvUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.path)?;
        match (&self.variable, self.source) {
            (Some(var), ValueSource::Variable) => write!(f, "from variable {var}")?,
            (Some(var), other) => write!(f, "variable {var} is not set; {}", other.as_str())?,
            (None, other) => f.write_str(other.as_str())?,
        }
        if self.secret {
            f.write_str(" (secret, not shown)")?;
        }
        Ok(())
    }
}

/// A secret value (password, token). Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself: use it only to authenticate.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SET" => Some("from-env".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn the_variable_wins_when_set_and_non_empty() {
        let r = resolve_env(Some("lit"), Some("SET"), Some("def"), &env);
        assert_eq!(r.value.as_deref(), Some("from-env"));
        assert_eq!(r.source, ValueSource::Variable);
        assert!(!r.variable_unset);
    }

    #[test]
    fn an_empty_variable_falls_back_to_the_literal() {
        let r = resolve_env(Some("lit"), Some("EMPTY"), Some("def"), &env);
        assert_eq!(r.value.as_deref(), Some("lit"));
        assert_eq!(r.source, ValueSource::Literal);
        assert!(r.variable_unset);
    }

    #[test]
    fn an_unset_variable_without_literal_falls_back_to_the_default() {
        let r = resolve_env(None, Some("NOPE"), Some("def"), &env);
        assert_eq!(r.value.as_deref(), Some("def"));
        assert_eq!(r.source, ValueSource::Default);
    }

    #[test]
    fn nothing_at_all_is_unset() {
        let r = resolve_env(None, Some("NOPE"), None, &env);
        assert_eq!(r.value, None);
        assert_eq!(r.source, ValueSource::Unset);
        assert!(r.variable_unset);
    }

    #[test]
    fn secrets_do_not_debug_print() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(***)");
    }

    #[test]
    fn env_use_never_shows_a_value() {
        let u = EnvUse {
            path: "connection.mqtt.password".into(),
            variable: Some("PW".into()),
            source: ValueSource::Variable,
            secret: true,
        };
        assert_eq!(
            u.to_string(),
            "connection.mqtt.password: from variable PW (secret, not shown)"
        );
    }
}
