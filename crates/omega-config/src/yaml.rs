//! Strict YAML decoding into raw serde types, with errors that carry the YAML path.
//!
//! Raw types use `#[serde(deny_unknown_fields)]`; [`parse_yaml`] turns serde's messages into
//! [`ConfigError`]s: an unknown key names its full path and suggests the closest valid key, an
//! unknown enum word lists the accepted words, and every message loses serde_yaml's own
//! location suffix in favour of [`ConfigError::line`].

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;

use crate::error::{ConfigError, ErrorKind};
use crate::suggest::closest;

/// The 1-based line of a document marker (`---` or `...`) after the first line that holds
/// content, if any.
fn second_document_line(text: &str) -> Option<usize> {
    let mut content = false;
    for (i, l) in text.lines().enumerate() {
        let marker = l.starts_with("---") || l.starts_with("...");
        if marker && content {
            return Some(i + 1);
        }
        content |= !marker && !l.trim().is_empty() && !l.trim_start().starts_with('#');
    }
    None
}

/// Decodes `text` (already templated) into `T`, naming `file` in errors.
///
/// Duplicate keys and syntax errors are reported first (a YAML mapping with a key twice is an
/// error, not "last one wins"); then `T` is decoded with its path tracked.
pub fn parse_yaml<T: DeserializeOwned>(text: &str, file: &str) -> Result<T, ConfigError> {
    if let Err(e) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text) {
        // serde_yaml_ng gives no location for "more than one document": name the line where
        // the second one starts (or line 1), so that every syntax error names a line.
        let line = e
            .location()
            .map(|l| l.line())
            .or_else(|| Some(second_document_line(text).unwrap_or(1)));
        let reason = strip_location(&e.to_string()).to_owned();
        let err = ConfigError::new(file, "", ErrorKind::Syntax { reason });
        return Err(match line {
            Some(l) => err.at_line(l),
            None => err,
        });
    }
    let de = serde_yaml_ng::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let segments: Vec<String> = e.path().iter().filter_map(segment_text).collect();
        let line = e.inner().location().map(|l| l.line());
        let raw = e.inner().to_string();
        let err = convert(file, &segments, &raw);
        match line {
            Some(l) => err.at_line(l),
            None => err,
        }
    })
}

fn segment_text(seg: &Segment) -> Option<String> {
    match seg {
        Segment::Seq { index } => Some(format!("[{index}]")),
        Segment::Map { key } => Some(key.clone()),
        Segment::Enum { variant } => Some(variant.clone()),
        Segment::Unknown => Some("?".into()),
    }
}

/// Joins path segments the way the error messages show them: `a.b[0].c`.
pub(crate) fn join_path(segments: &[String]) -> String {
    let mut out = String::new();
    for s in segments {
        if !out.is_empty() && !s.starts_with('[') {
            out.push('.');
        }
        out.push_str(s);
    }
    out
}

fn strip_location(msg: &str) -> &str {
    // serde_yaml appends " at line L column C" (and sometimes ", while parsing …").
    match msg.find(" at line ") {
        Some(i) => &msg[..i],
        None => msg,
    }
}

fn convert(file: &str, segments: &[String], raw: &str) -> ConfigError {
    let mut msg = strip_location(raw);
    // serde_yaml prefixes its own path ("a.b: "); it is either our path or its parent.
    for n in [segments.len(), segments.len().saturating_sub(1)] {
        let prefix = join_path(&segments[..n]);
        if !prefix.is_empty()
            && let Some(rest) = msg.strip_prefix(&prefix).and_then(|r| r.strip_prefix(": "))
        {
            msg = rest;
            break;
        }
    }
    let path = join_path(segments);
    if let Some(rest) = msg.strip_prefix("unknown field ") {
        let words = backticked_words(rest);
        let key = words.first().cloned().unwrap_or_default();
        let expected: Vec<String> = words.into_iter().skip(1).collect();
        let suggestion = closest(&key, expected.iter().map(String::as_str)).map(str::to_owned);
        // The path may stop at the parent section: make sure it ends with the key.
        let path = if segments.last() == Some(&key) {
            path
        } else {
            join_path(&[segments.to_vec(), vec![key.clone()]].concat())
        };
        return ConfigError::new(
            file,
            path,
            ErrorKind::UnknownKey {
                key,
                suggestion,
                expected,
            },
        );
    }
    if let Some(rest) = msg.strip_prefix("unknown variant ") {
        let words = backticked_words(rest);
        let value = words.first().cloned().unwrap_or_default();
        let expected: Vec<String> = words.into_iter().skip(1).collect();
        let suggestion = closest(&value, expected.iter().map(String::as_str)).map(str::to_owned);
        return ConfigError::new(
            file,
            path,
            ErrorKind::UnknownValue {
                value,
                expected,
                suggestion,
            },
        );
    }
    if let Some(rest) = msg.strip_prefix("missing field ") {
        let key = backticked_words(rest)
            .into_iter()
            .next()
            .unwrap_or_default();
        let path = join_path(&[segments.to_vec(), vec![key.clone()]].concat());
        return ConfigError::new(
            file,
            path,
            ErrorKind::Required {
                key,
                has_env_form: false,
                variable: None,
            },
        );
    }
    ConfigError::new(
        file,
        path,
        ErrorKind::Invalid {
            value: None,
            reason: msg.to_owned(),
        },
    )
}

/// Every `word` between backticks, in order.
fn backticked_words(s: &str) -> Vec<String> {
    s.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, w)| w.to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;
    use crate::{ByteSize, Duration};

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Top {
        #[serde(rename = "sqlite-replication")]
        repl: Option<Repl>,
        name: Option<String>,
        list: Option<Vec<Item>>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Repl {
        flush_interval: Option<Duration>,
        local_retention_bytes: Option<ByteSize>,
        table_strategies: Option<BTreeMap<String, Entry>>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Entry {
        strategy: Option<Strategy>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        a: Option<u32>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Strategy {
        Rows,
        Telemetry,
        Ignore,
    }

    fn err(text: &str) -> ConfigError {
        parse_yaml::<Top>(text, "config.yaml").unwrap_err()
    }

    #[test]
    fn an_unknown_key_names_its_path_and_suggests_the_closest() {
        let e = err("sqlite-replication:\n  flush_intervall: 5s\n");
        assert_eq!(
            e.to_string(),
            "config.yaml: sqlite-replication.flush_intervall: unknown key; did you mean `flush_interval`? (line 2)"
        );
        assert_eq!(e.path(), Some("sqlite-replication.flush_intervall"));
    }

    #[test]
    fn an_unknown_key_far_from_any_lists_the_valid_keys() {
        let e = err("banana: 1\n");
        assert_eq!(e.path(), Some("banana"));
        assert!(
            e.to_string()
                .contains("expected one of `sqlite-replication`, `name`, `list`"),
            "{e}"
        );
    }

    #[test]
    fn an_unknown_key_in_a_map_entry_names_the_entry() {
        let e = err("sqlite-replication:\n  table_strategies:\n    a.b:\n      stratgy: rows\n");
        assert_eq!(
            e.path(),
            Some("sqlite-replication.table_strategies.a.b.stratgy")
        );
        assert!(e.to_string().contains("did you mean `strategy`?"));
    }

    #[test]
    fn an_unknown_word_lists_the_accepted_ones() {
        let e = err("sqlite-replication:\n  table_strategies:\n    t:\n      strategy: row\n");
        assert_eq!(
            e.path(),
            Some("sqlite-replication.table_strategies.t.strategy")
        );
        assert_eq!(
            e.message(),
            "`row` is not one of `rows`, `telemetry`, `ignore`; did you mean `rows`? (line 4)"
        );
    }

    #[test]
    fn a_bad_duration_names_the_key_and_value() {
        let e = err("sqlite-replication:\n  flush_interval: 5\n");
        assert_eq!(e.path(), Some("sqlite-replication.flush_interval"));
        assert!(
            e.to_string()
                .contains("`5`: a bare number is not a duration"),
            "{e}"
        );
        assert!(!e.to_string().contains(" at line "), "{e}");
    }

    #[test]
    fn a_bad_size_names_the_key_and_value() {
        let e = err("sqlite-replication:\n  local_retention_bytes: 12 parsecs\n");
        assert_eq!(e.path(), Some("sqlite-replication.local_retention_bytes"));
        assert!(
            e.to_string()
                .contains("`12 parsecs`: unknown size unit `parsecs`"),
            "{e}"
        );
    }

    #[test]
    fn wrong_types_and_sequence_indexes_are_in_the_path() {
        let e = err("list:\n  - a: 1\n  - a: x\n");
        assert_eq!(e.path(), Some("list[1].a"));
        assert!(
            e.message()
                .starts_with("invalid type: string \"x\", expected u32"),
            "{e}"
        );
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let e = err("sqlite-replication:\n  table_strategies:\n    a: {}\n    a: {}\n");
        assert!(
            e.to_string().contains("duplicate entry with key \"a\""),
            "{e}"
        );
        assert_eq!(e.line(), Some(3));
        let e = err("name: a\nname: b\n");
        assert!(e.to_string().contains("duplicate"), "{e}");
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let e = err("name: [1\n");
        assert!(e.to_string().starts_with("config.yaml: line "), "{e}");
        assert!(matches!(e.kind(), ErrorKind::Syntax { .. }));
    }

    #[test]
    fn a_second_document_is_an_error_naming_its_line() {
        let e = err("name: a\n---\nname: b\n");
        assert!(matches!(e.kind(), ErrorKind::Syntax { .. }));
        assert_eq!(e.line(), Some(2), "{e}");
        // Found by the config fuzz target (crates/omega/tests/fuzz/configs.rs).
        let e = err("''\n''\n");
        assert!(e.line().is_some(), "{e}");
    }

    #[test]
    fn an_empty_document_is_an_empty_config() {
        assert!(parse_yaml::<Top>("", "c").is_ok());
        assert!(parse_yaml::<Top>("# only a comment\n", "c").is_ok());
    }
}
