//! The one configuration error type, its kinds, and warnings.
//!
//! Every error renders as ONE line: `{file}: {yaml.path}: {message}` (with ` (line N)` appended
//! when the YAML parser knew the line), so that a user can go straight to the key at fault.

use std::fmt;

/// What is wrong. The message of each kind is written for the person editing the file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The file could not be read.
    Read {
        /// The operating system's reason.
        reason: String,
    },
    /// The file is not UTF-8 text.
    NotUtf8,
    /// A `{{ NAME }}` template names a variable that is not set.
    UnsetVariable {
        /// The variable name.
        name: String,
    },
    /// The text is not valid YAML (syntax, duplicate keys).
    Syntax {
        /// The parser's reason.
        reason: String,
    },
    /// A key that this section does not have.
    UnknownKey {
        /// The key as written.
        key: String,
        /// The closest valid key, when one is close enough.
        suggestion: Option<String>,
        /// Every valid key of the section.
        expected: Vec<String>,
    },
    /// A value outside a fixed set of words.
    UnknownValue {
        /// The value as written.
        value: String,
        /// The accepted words.
        expected: Vec<String>,
        /// The closest accepted word, when one is close enough.
        suggestion: Option<String>,
    },
    /// A value that does not satisfy a rule.
    Invalid {
        /// The value at fault, when it may be shown (never a secret).
        value: Option<String>,
        /// What is wrong and, where possible, how to fix it.
        reason: String,
    },
    /// A required key is absent (`x is required: set x or the variable VAR named by x_env`).
    Required {
        /// The key, e.g. `server_url`.
        key: String,
        /// Whether the key has an `x_env` form.
        has_env_form: bool,
        /// The variable named by `x_env`, when one was named (and was unset or empty).
        variable: Option<String>,
    },
    /// A capability the agent needs is not granted (`security.capabilities`).
    CapabilityMissing {
        /// The capability name, e.g. `sqlite-replication`.
        capability: String,
    },
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Read { reason } => write!(f, "cannot read the file: {reason}"),
            ErrorKind::NotUtf8 => f.write_str("the file is not UTF-8 text"),
            ErrorKind::UnsetVariable { name } => {
                write!(
                    f,
                    "variable `{name}` is not set (used as `{{{{ {name} }}}}`)"
                )
            }
            ErrorKind::Syntax { reason } => write!(f, "invalid YAML: {reason}"),
            ErrorKind::UnknownKey {
                suggestion: Some(s),
                ..
            } => write!(f, "unknown key; did you mean `{s}`?"),
            ErrorKind::UnknownKey { expected, .. } if expected.is_empty() => {
                f.write_str("unknown key; this section takes no keys")
            }
            ErrorKind::UnknownKey { expected, .. } => {
                write!(f, "unknown key; expected one of {}", backticked(expected))
            }
            ErrorKind::UnknownValue {
                value,
                expected,
                suggestion,
            } => {
                write!(f, "`{value}` is not one of {}", backticked(expected))?;
                if let Some(s) = suggestion {
                    write!(f, "; did you mean `{s}`?")?;
                }
                Ok(())
            }
            ErrorKind::Invalid {
                value: Some(v),
                reason,
            } => write!(f, "`{v}`: {reason}"),
            ErrorKind::Invalid {
                value: None,
                reason,
            } => f.write_str(reason),
            ErrorKind::Required {
                key,
                has_env_form,
                variable,
            } => match (has_env_form, variable) {
                (_, Some(var)) => write!(
                    f,
                    "{key} is required: set {key} or the variable {var} named by {key}_env"
                ),
                (true, None) => write!(f, "{key} is required: set {key} or {key}_env"),
                (false, None) => write!(f, "{key} is required"),
            },
            ErrorKind::CapabilityMissing { capability } => write!(
                f,
                "capability `{capability}` must be `true`: the agent refuses to replicate \
                 without it (set `security.capabilities.{capability}: true`)"
            ),
        }
    }
}

fn backticked(words: &[String]) -> String {
    words
        .iter()
        .map(|w| format!("`{w}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A configuration error: the file, the YAML path, the line when known, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    file: String,
    path: Option<String>,
    line: Option<usize>,
    kind: Box<ErrorKind>,
}

impl ConfigError {
    /// An error about the key at `path` (dotted YAML path such as `connection.mqtt.keep_alive`;
    /// empty for the whole file) of `file`.
    pub fn new(file: impl Into<String>, path: impl Into<String>, kind: ErrorKind) -> Self {
        let path = path.into();
        ConfigError {
            file: file.into(),
            path: (!path.is_empty()).then_some(path),
            line: None,
            kind: Box::new(kind),
        }
    }

    /// An [`ErrorKind::Invalid`] error: `value` is shown (pass `None` for secrets).
    pub fn invalid(
        file: impl Into<String>,
        path: impl Into<String>,
        value: Option<&str>,
        reason: impl Into<String>,
    ) -> Self {
        Self::new(
            file,
            path,
            ErrorKind::Invalid {
                value: value.map(str::to_owned),
                reason: reason.into(),
            },
        )
    }

    /// The same error with the 1-based line it was found on.
    pub fn at_line(mut self, line: usize) -> Self {
        self.line = Some(line);
        self
    }

    /// The file name as given to the loader.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The dotted YAML path of the key at fault, if the error is about one key.
    pub fn path(&self) -> Option<&str> {
        self.path.as_deref()
    }

    /// The 1-based line, when the parser knew it.
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    /// What is wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The message without the file and path prefix (what `--json` prints as `message`).
    /// With a path, the line (when known) is appended; without one, it leads: `line 3: …`.
    pub fn message(&self) -> String {
        match (&self.path, self.line) {
            (Some(_), Some(line)) => format!("{} (line {line})", self.kind),
            (None, Some(line)) => format!("line {line}: {}", self.kind),
            _ => self.kind.to_string(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(path) => write!(f, "{}: {path}: {}", self.file, self.message()),
            None => write!(f, "{}: {}", self.file, self.message()),
        }
    }
}

/// One or more configuration errors, in the order found (never empty).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(Vec<ConfigError>);

impl ConfigErrors {
    /// Wraps a list of errors; `None` when the list is empty.
    pub fn from_vec(errors: Vec<ConfigError>) -> Option<Self> {
        (!errors.is_empty()).then_some(ConfigErrors(errors))
    }

    /// The first error found.
    pub fn first(&self) -> &ConfigError {
        &self.0[0]
    }

    /// Every error, in the order found.
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }

    /// The first error found, dropping the others.
    pub fn into_first(self) -> ConfigError {
        self.0
            .into_iter()
            .next()
            .expect("ConfigErrors is never empty")
    }

    /// Every error, in the order found.
    pub fn into_vec(self) -> Vec<ConfigError> {
        self.0
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.first())?;
        if self.0.len() > 1 {
            write!(f, " (and {} more)", self.0.len() - 1)?;
        }
        Ok(())
    }
}

/// A finding that does not stop the program: a YAML path and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Dotted YAML path of the key concerned (may be empty for the whole file).
    pub path: String,
    /// What the user should know.
    pub message: String,
}

impl Warning {
    /// A warning about the key at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Warning {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_renders_as_one_line_with_the_suggestion() {
        let e = ConfigError::new(
            "config.yaml",
            "sqlite-replication.flush_intervall",
            ErrorKind::UnknownKey {
                key: "flush_intervall".into(),
                suggestion: Some("flush_interval".into()),
                expected: vec![],
            },
        );
        assert_eq!(
            e.to_string(),
            "config.yaml: sqlite-replication.flush_intervall: unknown key; did you mean `flush_interval`?"
        );
    }

    #[test]
    fn required_names_the_variable_of_the_env_form() {
        let e = ConfigError::new(
            "c.yaml",
            "connection.server_url",
            ErrorKind::Required {
                key: "server_url".into(),
                has_env_form: true,
                variable: Some("BROKER".into()),
            },
        );
        assert_eq!(
            e.to_string(),
            "c.yaml: connection.server_url: server_url is required: set server_url or the variable BROKER named by server_url_env"
        );
    }

    #[test]
    fn line_only_errors_name_the_line() {
        let e = ConfigError::new("c.yaml", "", ErrorKind::UnsetVariable { name: "X".into() })
            .at_line(3);
        assert_eq!(
            e.to_string(),
            "c.yaml: line 3: variable `X` is not set (used as `{{ X }}`)"
        );
        assert!(!e.to_string().contains('\n'));
    }

    #[test]
    fn errors_list_shows_the_first_and_a_count() {
        let a = ConfigError::invalid("f", "a", Some("1"), "bad");
        let b = ConfigError::invalid("f", "b", None, "worse");
        let all = ConfigErrors::from_vec(vec![a.clone(), b]).unwrap();
        assert_eq!(all.to_string(), "f: a: `1`: bad (and 1 more)");
        assert_eq!(all.first(), &a);
        assert!(ConfigErrors::from_vec(vec![]).is_none());
    }
}
