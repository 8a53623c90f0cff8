//! Rows of the source and of the mirror in one shape, values in wire encoding (canonical JSON,
//! `protocol.md` §4–§5), so the two compare exactly: an INTEGER is not a REAL, `+inf` is
//! `{"$real":"inf"}`, a BLOB is its bytes.
//!
//! The mirror is read through the cloud's public API ([`omega_cloud::lineage::ops::rows`]),
//! with each mirror column named by the source column bound to it.

use std::collections::BTreeMap;

use omega_cloud::lineage::ops::{self, RowsError, RowsQuery};
use omega_cloud::store::AnyStore;
use omega_cloud::with_store;
use omega_protocol::value::{self, SqlValue};
use rusqlite::types::ValueRef;
use time::OffsetDateTime;
use uuid::Uuid;

use super::app::TableDef;

/// Source column name → wire value.
pub type Values = BTreeMap<String, String>;

/// The canonical JSON of one value.
pub fn wire(v: &SqlValue) -> String {
    let mut out = Vec::new();
    value::write_value(v, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// A row's key as shown and compared: `sensor="scale" seq=3`, in key order.
pub fn key_text(def: &TableDef, values: &Values) -> String {
    def.key
        .iter()
        .map(|k| format!("{k}={}", values.get(*k).map_or("?", String::as_str)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One mirror row (a live row or a tombstone).
#[derive(Debug, Clone, PartialEq)]
pub struct MirrorEntry {
    /// Every column, by source name (a tombstone's non-key values are NULL).
    pub values: Values,
    /// Version: (journal epoch, commit_seq).
    pub version: (Uuid, i64),
    /// Tombstone.
    pub deleted: bool,
    /// When the cloud wrote this version.
    pub updated_at: OffsetDateTime,
}

/// A table's mirror rows by [`key_text`]; empty while the cloud has no lineage or mirror
/// for it yet.
pub async fn mirror_table(
    store: &AnyStore,
    device: &str,
    def: &TableDef,
    include_deleted: bool,
) -> anyhow::Result<BTreeMap<String, MirrorEntry>> {
    let query = RowsQuery {
        include_deleted,
        limit: None,
    };
    let read = with_store!(store, s => ops::rows(s, device, def.name, query).await);
    let read = match read {
        Ok(r) => r,
        Err(RowsError::NoLineage { .. } | RowsError::NoMirror { .. }) => {
            return Ok(BTreeMap::new());
        }
        Err(e) => return Err(anyhow::Error::new(e).context("reading the mirror")),
    };
    let names: Vec<String> = read
        .columns
        .iter()
        .map(|c| c.source.clone().unwrap_or_else(|| c.name.clone()))
        .collect();
    let mut out = BTreeMap::new();
    for row in read.rows {
        let values: Values = names
            .iter()
            .cloned()
            .zip(row.key.iter().chain(row.values.iter()).map(wire))
            .collect();
        out.insert(
            key_text(def, &values),
            MirrorEntry {
                values,
                version: (row.epoch, row.seq),
                deleted: row.deleted,
                updated_at: row.updated_at,
            },
        );
    }
    Ok(out)
}

/// A table's source rows by [`key_text`].
pub fn source_table(
    conn: &rusqlite::Connection,
    def: &TableDef,
) -> rusqlite::Result<BTreeMap<String, Values>> {
    let mut stmt = conn.prepare(&format!("SELECT * FROM \"{}\"", def.name))?;
    let names: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
    let mut rows = stmt.query([])?;
    let mut out = BTreeMap::new();
    while let Some(r) = rows.next()? {
        let mut values = Values::new();
        for (i, name) in names.iter().enumerate() {
            values.insert(name.clone(), wire(&sql_value(r.get_ref(i)?)));
        }
        out.insert(key_text(def, &values), values);
    }
    Ok(out)
}

fn sql_value(v: ValueRef<'_>) -> SqlValue {
    match v {
        ValueRef::Null => SqlValue::Null,
        ValueRef::Integer(i) => SqlValue::Integer(i),
        ValueRef::Real(r) => SqlValue::Real(r),
        ValueRef::Text(t) => SqlValue::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
    }
}

/// The outcome of comparing one table.
#[derive(Debug, Default)]
pub struct TableCheck {
    /// Rows in the source.
    pub source_rows: usize,
    /// Live rows in the mirror.
    pub mirror_rows: usize,
    /// Tombstones in the mirror (rows deleted at the source).
    pub tombstones: usize,
    /// What differs, one line each.
    pub differences: Vec<String>,
}

/// Compares a table's source rows with its mirror rows (tombstones included in `mirror`):
/// every source row must be a live mirror row with the same values, and no other live row
/// may exist.
pub fn compare(
    table: &str,
    source: &BTreeMap<String, Values>,
    mirror: &BTreeMap<String, MirrorEntry>,
) -> TableCheck {
    let mut check = TableCheck {
        source_rows: source.len(),
        ..TableCheck::default()
    };
    for (key, entry) in mirror {
        if entry.deleted {
            check.tombstones += 1;
            if source.contains_key(key) {
                check.differences.push(format!(
                    "{table} {key}: deleted in the mirror, present in the source"
                ));
            }
            continue;
        }
        check.mirror_rows += 1;
        match source.get(key) {
            None => check.differences.push(format!(
                "{table} {key}: in the mirror, deleted or absent in the source"
            )),
            Some(want) if *want != entry.values => {
                let names: std::collections::BTreeSet<&String> =
                    want.keys().chain(entry.values.keys()).collect();
                let cols: Vec<String> = names
                    .into_iter()
                    .filter(|c| want.get(*c) != entry.values.get(*c))
                    .map(|c| {
                        format!(
                            "{c}: mirror {} != source {}",
                            entry.values.get(c).map_or("(no column)", String::as_str),
                            want.get(c).map_or("(no column)", String::as_str)
                        )
                    })
                    .collect();
                check
                    .differences
                    .push(format!("{table} {key}: {}", cols.join(", ")));
            }
            Some(_) => {}
        }
    }
    for key in source.keys().filter(|k| !mirror.contains_key(*k)) {
        check
            .differences
            .push(format!("{table} {key}: missing from the mirror"));
    }
    check
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(items: &[(&str, SqlValue)]) -> Values {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), wire(v)))
            .collect()
    }

    fn entry(v: Values, deleted: bool) -> MirrorEntry {
        MirrorEntry {
            values: v,
            version: (Uuid::nil(), 1),
            deleted,
            updated_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn wire_encoding_tells_integers_reals_infinities_and_blobs_apart() {
        assert_eq!(wire(&SqlValue::Integer(2)), "2");
        assert_eq!(wire(&SqlValue::Real(2.0)), "2.0");
        assert_eq!(wire(&SqlValue::Real(f64::INFINITY)), r#"{"$real":"inf"}"#);
        assert_eq!(wire(&SqlValue::Blob(vec![0, 1])), r#"{"$blob":"AAE="}"#);
    }

    #[test]
    fn compare_reports_each_kind_of_difference() {
        let row = |id: i64, w: SqlValue| values(&[("id", SqlValue::Integer(id)), ("w", w)]);
        let source: BTreeMap<String, Values> = [
            ("id=1".into(), row(1, SqlValue::Real(2.0))),
            ("id=2".into(), row(2, SqlValue::Null)),
            ("id=3".into(), row(3, SqlValue::Null)),
            ("id=5".into(), row(5, SqlValue::Real(f64::INFINITY))),
        ]
        .into();
        let mirror: BTreeMap<String, MirrorEntry> = [
            ("id=1".into(), entry(row(1, SqlValue::Integer(2)), false)),
            ("id=3".into(), entry(row(3, SqlValue::Null), true)),
            ("id=4".into(), entry(row(4, SqlValue::Null), false)),
            (
                "id=5".into(),
                entry(row(5, SqlValue::Real(f64::INFINITY)), false),
            ),
            ("id=6".into(), entry(row(6, SqlValue::Null), true)),
        ]
        .into();
        let check = compare("t", &source, &mirror);
        assert_eq!(
            check.differences,
            [
                "t id=1: w: mirror 2 != source 2.0",
                "t id=3: deleted in the mirror, present in the source",
                "t id=4: in the mirror, deleted or absent in the source",
                "t id=2: missing from the mirror",
            ]
        );
        assert_eq!(
            (check.source_rows, check.mirror_rows, check.tombstones),
            (4, 3, 2)
        );
        let equal = compare("t", &source, &BTreeMap::new());
        assert_eq!(equal.differences.len(), 4);
    }
}
