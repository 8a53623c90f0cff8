//! # omega-config
//!
//! The configuration loading rules shared by the Omega agent and cloud (`agent.md` §2.1):
//!
//! 1. the file is UTF-8 text ([`read_config_file`]);
//! 2. `{{ NAME }}` is replaced by variable NAME everywhere, comments included ([`template`]);
//! 3. keys are strict: raw serde types with `deny_unknown_fields`, decoded by [`parse_yaml`] so
//!    that errors carry the YAML path and an unknown key suggests the closest valid one;
//! 4. `x` / `x_env` pairs resolve variable → literal → default ([`resolve_env`], [`Context`]);
//! 5. relative paths resolve against the config file's directory ([`resolve_path`]);
//! 6. durations `250ms`/`5s`/`1m`/`2h` ([`Duration`]) and sizes `1048576`/`256 MiB` ([`ByteSize`]);
//! 7. every error is one [`ConfigError`] whose `Display` is one line naming the file, the YAML
//!    path, the bad value and the fix.
//!
//! Parsing never touches the file system or the process environment: it takes `&str`, a file
//! name and an [`EnvLookup`]. The agent's and cloud's validated layers (in their own crates)
//! build on [`Context`], which collects every error and warning of one load.
//!
//! ## Layout
//! - [`error`]: [`ConfigError`], [`ErrorKind`], [`ConfigErrors`], [`Warning`].
//! - [`template`]: `{{ NAME }}` rendering.
//! - [`yaml`]: strict decoding with paths and suggestions.
//! - [`env`](mod@env): the `_env` convention, [`Secret`].
//! - [`context`]: the error/warning collector and path resolution.
//! - [`duration`], [`size`]: unit parsers; [`url`]: broker URLs; [`scalar`]: string-or-number.
//! - [`suggest`]: closest-word suggestions.

pub mod context;
pub mod duration;
pub mod env;
pub mod error;
pub mod scalar;
pub mod size;
pub mod suggest;
pub mod template;
pub mod url;
pub mod yaml;

use std::path::Path;

pub use context::{Context, Findings, leaf, resolve_path};
pub use duration::{Duration, ParseError, format_duration, parse_duration};
pub use env::{EnvLookup, EnvUse, Resolved, Secret, ValueSource, process_env, resolve_env};
pub use error::{ConfigError, ConfigErrors, ErrorKind, Warning};
pub use scalar::Scalar;
pub use size::{ByteSize, format_size, parse_size};
pub use template::{Rendered, TemplateVar, render};
pub use url::{BrokerUrl, Scheme, Transport};
pub use yaml::parse_yaml;

/// Reads a configuration file as UTF-8 text. Errors name the file.
pub fn read_config_file(path: &Path) -> Result<String, ConfigError> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| {
        ConfigError::new(
            file.clone(),
            "",
            ErrorKind::Read {
                reason: e.to_string(),
            },
        )
    })?;
    String::from_utf8(bytes).map_err(|_| ConfigError::new(file, "", ErrorKind::NotUtf8))
}

/// Templating then strict decoding: the first two steps every loader shares. Returns the raw
/// value and the template variables used.
pub fn render_and_parse<T: serde::de::DeserializeOwned>(
    text: &str,
    file: &str,
    env: EnvLookup<'_>,
) -> Result<(T, Vec<TemplateVar>), ConfigErrors> {
    let rendered = render(text, file, env)?;
    let raw = parse_yaml(&rendered.text, file)?;
    Ok((raw, rendered.vars))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_a_missing_file_names_it() {
        let e = read_config_file(Path::new("/nonexistent/omega.yaml")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/nonexistent/omega.yaml: cannot read the file:"),
            "{e}"
        );
    }

    #[test]
    fn reading_a_non_utf8_file_is_an_error() {
        let dir = std::env::temp_dir().join(format!("omega-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("bad.yaml");
        std::fs::write(&p, b"name: \xff\n").unwrap();
        let e = read_config_file(&p).unwrap_err();
        assert_eq!(e.kind(), &ErrorKind::NotUtf8);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn templating_happens_before_parsing() {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct T {
            flush_interval: Duration,
        }
        let env = |n: &str| (n == "F").then(|| "250ms".to_owned());
        let (t, vars): (T, _) = render_and_parse("flush_interval: {{ F }}\n", "c", &env).unwrap();
        assert_eq!(
            t.flush_interval.get(),
            std::time::Duration::from_millis(250)
        );
        assert_eq!(vars[0].name, "F");
    }
}
