//! Mirror table and column names (`cloud.md` §10.1, §8.2.2).
//!
//! Every name the cloud creates in the store is derived here, so that both stores and every
//! process agree on it byte for byte. The rules:
//!
//! 1. A name part matching `^[a-z_][a-z0-9_]*$` is used as is. Otherwise it is lowercased,
//!    every character outside `[a-z0-9_]` becomes `_`, and `_` plus the first 8 hex characters
//!    of SHA-256 of the original part is appended.
//! 2. An identifier longer than 63 bytes is cut to 54 bytes and gets `_` plus 8 hex characters
//!    of SHA-256 of the uncut identifier.
//!
//! Every identifier is quoted in SQL anyway ([`quote_ident`]): sanitizing keeps names portable
//! and readable, quoting keeps the SQL correct whatever the name.

use sha2::{Digest, Sha256};

use crate::policy::Scope;

/// The longest identifier PostgreSQL keeps without truncation.
pub const MAX_IDENT_BYTES: usize = 63;

/// Mirror columns the cloud owns; no source column may be stored under these names.
pub const RESERVED_PREFIX: &str = "_omega_";

/// The mirror column holding the device id.
pub const DEVICE_COLUMN: &str = "device_id";

fn sha8(s: &str) -> String {
    let digest = Sha256::digest(s.as_bytes());
    hex::encode(&digest[..4])
}

fn is_plain(part: &str) -> bool {
    let mut chars = part.chars();
    match chars.next() {
        Some(c) if c.is_ascii_lowercase() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Rule 1: a name part, used as is or sanitized with a hash suffix.
pub fn sanitize_part(part: &str) -> String {
    if is_plain(part) {
        return part.to_string();
    }
    let mut out: String = part
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    out.push('_');
    out.push_str(&sha8(part));
    out
}

/// Rule 2: an identifier over 63 bytes is cut to 54 bytes plus `_` and a hash of the whole.
pub fn fit_length(ident: &str) -> String {
    if ident.len() <= MAX_IDENT_BYTES {
        return ident.to_string();
    }
    let mut cut = 54;
    while !ident.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}_{}", &ident[..cut], sha8(ident))
}

/// The base mirror table of a source table: `edge_mirror_{t}` (`project`) or
/// `edge_mirror_{d}_{t}` (`per_device`).
pub fn mirror_table(scope: &Scope, source_table: &str) -> String {
    let ident = match scope {
        Scope::Project => format!("edge_mirror_{}", sanitize_part(source_table)),
        Scope::Device(d) => {
            format!(
                "edge_mirror_{}_{}",
                sanitize_part(d),
                sanitize_part(source_table)
            )
        }
    };
    fit_length(&ident)
}

/// The telemetry table of a source table (§11): `edge_ts_{t}` (`project`) or
/// `edge_ts_{d}_{t}` (`per_device`).
pub fn ts_table(scope: &Scope, source_table: &str) -> String {
    let ident = match scope {
        Scope::Project => format!("edge_ts_{}", sanitize_part(source_table)),
        Scope::Device(d) => format!(
            "edge_ts_{}_{}",
            sanitize_part(d),
            sanitize_part(source_table)
        ),
    };
    fit_length(&ident)
}

/// The mirror for a hash whose key columns differ from the base mirror's (§10.8): the base
/// name plus `_` and the first 8 hex characters of the hash.
pub fn keyed_mirror_table(base: &str, schema_hash: &str) -> String {
    let short: String = schema_hash.chars().take(8).collect();
    fit_length(&format!("{base}_{short}"))
}

/// The default mirror column of a source column (rules 1–2, and §8.2.2: a source column named
/// `device_id` or `_omega_…` becomes `{name}_src`).
pub fn mirror_column(source: &str) -> String {
    if source == DEVICE_COLUMN || source.starts_with(RESERVED_PREFIX) {
        fit_length(&sanitize_part(&format!("{source}_src")))
    } else {
        fit_length(&sanitize_part(source))
    }
}

/// Why a name given with `as` in an approval is refused (§8.2.2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenameError {
    /// Does not match `^[a-z_][a-z0-9_]{0,62}$`.
    #[error("`{0}` must match ^[a-z_][a-z0-9_]{{0,62}}$")]
    Pattern(String),
    /// Starts with `_omega_`.
    #[error("`{0}` starts with the reserved prefix `_omega_`")]
    Reserved(String),
    /// Is `device_id`.
    #[error("`{0}` is the mirror's own device column")]
    DeviceColumn(String),
}

/// Checks a mirror column name given with `as` in an approval.
pub fn validate_rename(name: &str) -> Result<(), RenameError> {
    if !is_plain(name) || name.len() > MAX_IDENT_BYTES {
        return Err(RenameError::Pattern(name.to_string()));
    }
    if name.starts_with(RESERVED_PREFIX) {
        return Err(RenameError::Reserved(name.to_string()));
    }
    if name == DEVICE_COLUMN {
        return Err(RenameError::DeviceColumn(name.to_string()));
    }
    Ok(())
}

/// Quotes an identifier for SQL (both stores): wrapped in `"`, inner `"` doubled.
pub fn quote_ident(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_are_kept_as_they_are() {
        assert_eq!(
            mirror_table(&Scope::Project, "device_state"),
            "edge_mirror_device_state"
        );
        assert_eq!(mirror_table(&Scope::Project, "order"), "edge_mirror_order");
        assert_eq!(mirror_column("mode"), "mode");
    }

    #[test]
    fn hostile_names_are_sanitized_with_a_hash_of_the_original() {
        let t = mirror_table(&Scope::Project, "naïve table");
        assert!(t.starts_with("edge_mirror_na_ve_table_"), "{t}");
        assert_eq!(t.len(), "edge_mirror_na_ve_table_".len() + 8);
        let c = mirror_column("a\"b");
        assert!(c.starts_with("a_b_"), "{c}");
        assert_ne!(mirror_column("Mode"), mirror_column("mode"));
        assert!(mirror_column("Mode").starts_with("mode_"));
        assert!(mirror_column("1abc").starts_with("1abc_"));
    }

    #[test]
    fn telemetry_tables_follow_the_mirror_rules() {
        assert_eq!(ts_table(&Scope::Project, "temps"), "edge_ts_temps");
        let t = ts_table(&Scope::Device("press-01".into()), "temps");
        assert!(
            t.starts_with("edge_ts_press_01_") && t.ends_with("_temps"),
            "{t}"
        );
        assert_eq!(ts_table(&Scope::Project, &"x".repeat(80)).len(), 63);
    }

    #[test]
    fn per_device_names_join_both_parts() {
        let t = mirror_table(&Scope::Device("press-01".into()), "device_state");
        assert!(t.starts_with("edge_mirror_press_01_"), "{t}");
        assert!(t.ends_with("_device_state"), "{t}");
    }

    #[test]
    fn long_identifiers_are_cut_to_54_bytes_plus_a_hash() {
        let long = "x".repeat(80);
        let t = mirror_table(&Scope::Project, &long);
        assert_eq!(t.len(), 63);
        assert_eq!(&t[..54], &format!("edge_mirror_{long}")[..54]);
        assert_eq!(&t[54..55], "_");
    }

    #[test]
    fn reserved_source_columns_get_a_src_suffix() {
        assert_eq!(mirror_column("device_id"), "device_id_src");
        assert_eq!(mirror_column("_omega_seq"), "_omega_seq_src");
    }

    #[test]
    fn renames_follow_the_approval_rules() {
        assert!(validate_rename("mode_v2").is_ok());
        assert!(matches!(
            validate_rename("Mode"),
            Err(RenameError::Pattern(_))
        ));
        assert!(matches!(
            validate_rename(&"a".repeat(64)),
            Err(RenameError::Pattern(_))
        ));
        assert!(matches!(
            validate_rename("_omega_x"),
            Err(RenameError::Reserved(_))
        ));
        assert!(matches!(
            validate_rename("device_id"),
            Err(RenameError::DeviceColumn(_))
        ));
    }

    #[test]
    fn identifiers_are_quoted_with_inner_quotes_doubled() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
