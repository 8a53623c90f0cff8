//! The validation context shared by the agent's and the cloud's validated layers.
//!
//! A [`Context`] knows the file name (for messages), the file's directory (for relative paths)
//! and the environment lookup. It collects every error, warning and `_env` use, so a loader can
//! report all problems at once instead of stopping at the first.

use std::path::{Path, PathBuf};

use crate::env::{EnvLookup, EnvUse, Resolved, Secret, ValueSource, resolve_env};
use crate::error::{ConfigError, ConfigErrors, ErrorKind, Warning};

/// What a successful load found besides the configuration itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    /// Warnings, each with its YAML path.
    pub warnings: Vec<Warning>,
    /// Every `x` / `x_env` resolution (no values).
    pub env_uses: Vec<EnvUse>,
}

/// Collects errors, warnings and `_env` uses while a raw config is turned into a validated one.
pub struct Context<'a> {
    file: String,
    base_dir: PathBuf,
    env: EnvLookup<'a>,
    errors: Vec<ConfigError>,
    findings: Findings,
}

impl<'a> Context<'a> {
    /// A context for the file at `file_path` (named in messages; its directory anchors
    /// relative paths) reading variables through `env`.
    pub fn new(file_path: &Path, env: EnvLookup<'a>) -> Self {
        Context {
            file: file_path.display().to_string(),
            base_dir: file_path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
            env,
            errors: Vec::new(),
            findings: Findings::default(),
        }
    }

    /// The file name as shown in messages.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The directory relative paths are resolved against (empty: the current directory).
    pub fn base_dir(&self) -> &Path {
        &self.base_dir
    }

    /// The environment lookup.
    pub fn env(&self) -> EnvLookup<'a> {
        self.env
    }

    /// Records an error about `path`.
    pub fn error(&mut self, path: &str, kind: ErrorKind) {
        let e = ConfigError::new(self.file.clone(), path, kind);
        self.errors.push(e);
    }

    /// Records an [`ErrorKind::Invalid`] error about `path` (`value` is shown; `None` for secrets).
    pub fn invalid(&mut self, path: &str, value: Option<&str>, reason: impl Into<String>) {
        let e = ConfigError::invalid(self.file.clone(), path, value, reason);
        self.errors.push(e);
    }

    /// Records an error built elsewhere.
    pub fn push_error(&mut self, e: ConfigError) {
        self.errors.push(e);
    }

    /// Records a warning about `path`.
    pub fn warn(&mut self, path: &str, message: impl Into<String>) {
        self.findings.warnings.push(Warning::new(path, message));
    }

    /// Whether any error has been recorded.
    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// Resolves `x` / `x_env` at `path` (the path of `x`) and records where the value came from.
    pub fn resolve(
        &mut self,
        path: &str,
        literal: Option<&str>,
        env_var: Option<&str>,
        default: Option<&str>,
    ) -> Resolved {
        let r = resolve_env(literal, env_var, default, self.env);
        if env_var.is_some() || literal.is_some() || default.is_some() {
            self.findings.env_uses.push(EnvUse {
                path: path.to_owned(),
                variable: env_var.map(str::to_owned),
                source: r.source,
                secret: false,
            });
        }
        r
    }

    /// Resolves an optional `x` / `x_env` pair.
    pub fn optional(
        &mut self,
        path: &str,
        literal: Option<&str>,
        env_var: Option<&str>,
    ) -> Option<String> {
        self.resolve(path, literal, env_var, None).value
    }

    /// Resolves a required `x` / `x_env` pair; records the `x is required` error when nothing
    /// supplies a value.
    pub fn required(
        &mut self,
        path: &str,
        literal: Option<&str>,
        env_var: Option<&str>,
    ) -> Option<String> {
        let r = self.resolve(path, literal, env_var, None);
        if r.value.is_none() {
            self.error(
                path,
                ErrorKind::Required {
                    key: leaf(path).to_owned(),
                    has_env_form: true,
                    variable: env_var.map(str::to_owned),
                },
            );
        }
        r.value
    }

    /// Reads a secret from the variable named at `env_path` (a `*_env` key such as
    /// `connection.mqtt.password_env`). A variable that is named but unset or empty is an
    /// error; the value is never recorded or shown.
    pub fn secret(&mut self, env_path: &str, env_var: Option<&str>) -> Option<Secret> {
        let var = env_var?;
        let value = (self.env)(var).filter(|v| !v.is_empty());
        let path = env_path.strip_suffix("_env").unwrap_or(env_path);
        self.findings.env_uses.push(EnvUse {
            path: path.to_owned(),
            variable: Some(var.to_owned()),
            source: if value.is_some() {
                ValueSource::Variable
            } else {
                ValueSource::Unset
            },
            secret: true,
        });
        if value.is_none() {
            self.invalid(
                env_path,
                Some(var),
                format!(
                    "variable {var} named by {} is not set or empty",
                    leaf(env_path)
                ),
            );
        }
        value.map(Secret::new)
    }

    /// Resolves a path value against the config file's directory. A leading `{data_dir}` (or
    /// `{dataDir}`) is replaced by `data_dir` when one is given.
    pub fn resolve_path(&self, value: &str, data_dir: Option<&Path>) -> PathBuf {
        resolve_path(&self.base_dir, value, data_dir)
    }

    /// Ends validation: `Ok` with the findings when no error was recorded.
    pub fn finish(self) -> Result<Findings, ConfigErrors> {
        match ConfigErrors::from_vec(self.errors) {
            Some(errors) => Err(errors),
            None => Ok(self.findings),
        }
    }
}

/// The last segment of a dotted path (`connection.server_url` → `server_url`).
pub fn leaf(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

/// Resolves `value` against `base_dir` unless it is absolute. A leading `{data_dir}/` or
/// `{dataDir}/` is replaced by `data_dir` (itself already resolved) when one is given.
pub fn resolve_path(base_dir: &Path, value: &str, data_dir: Option<&Path>) -> PathBuf {
    if let Some(dd) = data_dir {
        for token in ["{data_dir}", "{dataDir}"] {
            if let Some(rest) = value.strip_prefix(token) {
                let rest = rest.trim_start_matches(['/', '\\']);
                return if rest.is_empty() {
                    dd.to_path_buf()
                } else {
                    dd.join(rest)
                };
            }
        }
    }
    let p = Path::new(value);
    if p.is_absolute() || base_dir.as_os_str().is_empty() {
        p.to_path_buf()
    } else {
        base_dir.join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "PW").then(|| "hunter2".to_owned())
    }

    #[test]
    fn relative_paths_resolve_against_the_config_directory() {
        let base = Path::new("/etc/omega");
        assert_eq!(
            resolve_path(base, "certs/ca.pem", None),
            Path::new("/etc/omega/certs/ca.pem")
        );
        assert_eq!(
            resolve_path(base, "/abs/x.db", None),
            Path::new("/abs/x.db")
        );
        assert_eq!(resolve_path(Path::new(""), "x.db", None), Path::new("x.db"));
    }

    #[test]
    fn the_data_dir_token_is_replaced() {
        let dd = Path::new("/var/omega");
        assert_eq!(
            resolve_path(
                Path::new("/etc"),
                "{data_dir}/sqlite-replication/state.db",
                Some(dd)
            ),
            Path::new("/var/omega/sqlite-replication/state.db")
        );
        assert_eq!(
            resolve_path(Path::new("/etc"), "{dataDir}/s.db", Some(dd)),
            Path::new("/var/omega/s.db")
        );
    }

    #[test]
    fn a_missing_required_value_names_the_variable() {
        let mut cx = Context::new(Path::new("dir/c.yaml"), &env);
        assert_eq!(
            cx.required("connection.server_url", None, Some("BROKER")),
            None
        );
        let err = cx.finish().unwrap_err();
        assert_eq!(
            err.first().to_string(),
            "dir/c.yaml: connection.server_url: server_url is required: set server_url or the variable BROKER named by server_url_env"
        );
    }

    #[test]
    fn secrets_are_recorded_without_values() {
        let mut cx = Context::new(Path::new("c.yaml"), &env);
        let s = cx
            .secret("connection.mqtt.password_env", Some("PW"))
            .unwrap();
        assert_eq!(s.expose(), "hunter2");
        let f = cx.finish().unwrap();
        assert_eq!(f.env_uses[0].path, "connection.mqtt.password");
        assert!(f.env_uses[0].secret);
        assert!(!format!("{f:?}").contains("hunter2"));
    }

    #[test]
    fn an_unset_secret_variable_is_an_error() {
        let mut cx = Context::new(Path::new("c.yaml"), &env);
        assert!(cx.secret("security.auth_token_env", Some("NOPE")).is_none());
        let e = cx.finish().unwrap_err();
        assert_eq!(
            e.first().to_string(),
            "c.yaml: security.auth_token_env: `NOPE`: variable NOPE named by auth_token_env is not set or empty"
        );
    }
}
