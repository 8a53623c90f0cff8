//! Shared encodings of the store's JSON columns and times, so both stores write the same
//! bytes: JSON arrays/objects for sets and column lists (PostgreSQL `jsonb`, SQLite TEXT),
//! times as fixed-width RFC 3339 (SQLite TEXT sorts in time order; PostgreSQL `timestamptz`
//! holds the same microseconds).

use std::collections::BTreeSet;

use omega_protocol::schema::SchemaColumns;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::FormatItem;
use time::macros::format_description;

use super::StoreError;
use crate::lineage::{Kinds, PauseCause};
use crate::materialize::{MirrorColumn, affinity_name, parse_affinity};
use crate::schema_review::{ColumnAction, ColumnDecision, SchemaDiff};

const TIME_FORMAT: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

/// The store's clock: now, UTC, cut to microseconds (PostgreSQL's precision).
pub fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(t.nanosecond() / 1_000 * 1_000)
        .unwrap_or(t)
}

/// `2026-04-28T09:00:00.000000Z`.
pub fn format_time(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(TIME_FORMAT)
        .unwrap_or_default()
}

/// Parses any RFC 3339 time (including [`format_time`]'s).
pub fn parse_time(s: &str) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| StoreError::corrupt("time column", format!("`{s}`: {e}")))
}

fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".to_string())
}

fn from_json<'a, T: Deserialize<'a>>(what: &'static str, s: &'a str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::corrupt(what, e))
}

/// `["schema_review", …]`.
pub fn causes_json(c: &BTreeSet<PauseCause>) -> String {
    to_json(&c.iter().map(|c| c.as_str()).collect::<Vec<_>>())
}

/// Reads [`causes_json`]'s form.
pub fn parse_causes(s: &str) -> Result<BTreeSet<PauseCause>, StoreError> {
    let names: Vec<String> = from_json("omega_lineages.pause_causes", s)?;
    names
        .iter()
        .map(|n| {
            PauseCause::parse(n)
                .ok_or_else(|| StoreError::corrupt("omega_lineages.pause_causes", n))
        })
        .collect()
}

/// `["rows", "telemetry"]`.
pub fn kinds_json(k: Kinds) -> String {
    to_json(&k.names())
}

/// Reads [`kinds_json`]'s form.
pub fn parse_kinds(s: &str) -> Result<Kinds, StoreError> {
    let names: Vec<String> = from_json("omega_lineages.kinds", s)?;
    Ok(Kinds::from_names(names.iter().map(String::as_str)))
}

/// The `schema_columns` object.
pub fn columns_json(c: &SchemaColumns) -> String {
    to_json(c)
}

/// Reads [`columns_json`]'s form.
pub fn parse_columns(s: &str) -> Result<SchemaColumns, StoreError> {
    from_json("omega_schemas.columns", s)
}

#[derive(Serialize, Deserialize)]
struct DecisionJson {
    name: String,
    action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mirror_column: Option<String>,
}

/// `[{"name", "action", "mirror_column"?}, …]`.
pub fn decisions_json(d: &[ColumnDecision]) -> String {
    to_json(
        &d.iter()
            .map(|d| DecisionJson {
                name: d.name.clone(),
                action: d.action.as_str().to_string(),
                mirror_column: d.mirror_column.clone(),
            })
            .collect::<Vec<_>>(),
    )
}

/// Reads [`decisions_json`]'s form.
pub fn parse_decisions(s: &str) -> Result<Vec<ColumnDecision>, StoreError> {
    let v: Vec<DecisionJson> = from_json("omega_reviews.decisions", s)?;
    v.into_iter()
        .map(|d| {
            let action = match d.action.as_str() {
                "mirror" => ColumnAction::Mirror,
                "ignore" => ColumnAction::Ignore,
                other => return Err(StoreError::corrupt("omega_reviews.decisions", other)),
            };
            Ok(ColumnDecision {
                name: d.name,
                action,
                mirror_column: d.mirror_column,
            })
        })
        .collect()
}

#[derive(Serialize, Deserialize)]
struct DiffJson {
    added: Vec<String>,
    dropped: Vec<String>,
    changed: Vec<String>,
}

/// `{"added", "dropped", "changed"}`.
pub fn diff_json(d: &SchemaDiff) -> String {
    to_json(&DiffJson {
        added: d.added.clone(),
        dropped: d.dropped.clone(),
        changed: d.changed.clone(),
    })
}

/// Reads [`diff_json`]'s form.
pub fn parse_diff(s: &str) -> Result<SchemaDiff, StoreError> {
    let d: DiffJson = from_json("omega_reviews.diff", s)?;
    Ok(SchemaDiff {
        added: d.added,
        dropped: d.dropped,
        changed: d.changed,
    })
}

#[derive(Serialize, Deserialize)]
struct MirrorColumnJson {
    name: String,
    affinity: String,
}

/// `[{"name", "affinity"}, …]`.
pub fn mirror_columns_json(c: &[MirrorColumn]) -> String {
    to_json(
        &c.iter()
            .map(|c| MirrorColumnJson {
                name: c.name.clone(),
                affinity: affinity_name(c.affinity).to_string(),
            })
            .collect::<Vec<_>>(),
    )
}

/// Reads [`mirror_columns_json`]'s form.
pub fn parse_mirror_columns(s: &str) -> Result<Vec<MirrorColumn>, StoreError> {
    let v: Vec<MirrorColumnJson> = from_json("omega_mirrors.columns", s)?;
    v.into_iter()
        .map(|c| {
            let affinity = parse_affinity(&c.affinity)
                .ok_or_else(|| StoreError::corrupt("omega_mirrors.columns", &c.affinity))?;
            Ok(MirrorColumn {
                name: c.name,
                affinity,
            })
        })
        .collect()
}

/// `[1, 2, 3]`.
pub fn parts_json(p: &BTreeSet<u32>) -> String {
    to_json(p)
}

/// Reads [`parts_json`]'s form.
pub fn parse_parts(s: &str) -> Result<BTreeSet<u32>, StoreError> {
    from_json("omega_snapshots.parts", s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_fixed_width_and_round_trip() {
        let t = now();
        let s = format_time(t);
        assert_eq!(s.len(), "2026-04-28T09:00:00.000000Z".len());
        assert_eq!(parse_time(&s).unwrap(), t);
    }
}
