//! Mirror tables (`cloud.md` §10): their shape, provisioning plans, the fit check, and the
//! version-guarded writes the stores execute.
//!
//! Pure: this module decides *what* to write; `store::{postgres,sqlite}` turn the plans into
//! SQL. Both stores therefore accept and refuse exactly the same values.

use std::collections::HashMap;

use omega_protocol::message::{Op, Record};
use omega_protocol::schema::{Affinity, SchemaColumns};
use omega_protocol::value::SqlValue;
use uuid::Uuid;

use crate::naming;
use crate::policy::Scope;
use crate::schema_review::decide::ReviewError;
use crate::schema_review::{ColumnAction, ColumnDecision};
use crate::wire;

/// One mirror column with its type (§10.3, by affinity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorColumn {
    /// Column name in the mirror.
    pub name: String,
    /// Affinity; decides the SQL type and the fit check.
    pub affinity: Affinity,
}

/// A mirror table (§10.2, `omega_mirrors`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorDef {
    /// Table name.
    pub name: String,
    /// Reach.
    pub scope: Scope,
    /// Source table it mirrors.
    pub source_table: String,
    /// Key columns after `device_id`, in key order.
    pub key_columns: Vec<MirrorColumn>,
    /// Other columns, in creation order.
    pub columns: Vec<MirrorColumn>,
}

/// Name of an affinity, as stored and shown.
pub fn affinity_name(a: Affinity) -> &'static str {
    match a {
        Affinity::Integer => "INTEGER",
        Affinity::Real => "REAL",
        Affinity::Text => "TEXT",
        Affinity::Blob => "BLOB",
        Affinity::Numeric => "NUMERIC",
    }
}

/// Parses [`affinity_name`]'s form.
pub fn parse_affinity(s: &str) -> Option<Affinity> {
    Some(match s {
        "INTEGER" => Affinity::Integer,
        "REAL" => Affinity::Real,
        "TEXT" => Affinity::Text,
        "BLOB" => Affinity::Blob,
        "NUMERIC" => Affinity::Numeric,
        _ => return None,
    })
}

/// What an approval does to the store's mirrors (§8.2.4, §10.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorPlan {
    /// The mirror after the change.
    pub def: MirrorDef,
    /// The mirror does not exist yet: create it.
    pub create: bool,
    /// Columns to add to an existing mirror.
    pub add: Vec<MirrorColumn>,
}

/// Plans the mirror for an approved hash: create it, extend it, or (when the key differs
/// from the base mirror's) use the keyed mirror `{base}_{hash8}` (§10.8).
///
/// `existing` looks up a mirror by name in the same transaction.
pub fn plan_mirror(
    scope: &Scope,
    source_table: &str,
    schema_hash: &str,
    columns: &SchemaColumns,
    decisions: &[ColumnDecision],
    mut existing: impl FnMut(&str) -> Option<MirrorDef>,
) -> Result<MirrorPlan, ReviewError> {
    let by_name: HashMap<&str, &ColumnDecision> =
        decisions.iter().map(|d| (d.name.as_str(), d)).collect();
    let mut keys: Vec<(u32, MirrorColumn)> = Vec::new();
    let mut others = Vec::new();
    for c in &columns.columns {
        let Some(d) = by_name.get(c.name.as_str()) else {
            continue;
        };
        let (ColumnAction::Mirror, Some(m)) = (d.action, &d.mirror_column) else {
            continue;
        };
        let mc = MirrorColumn {
            name: m.clone(),
            affinity: c.decl_type_affinity,
        };
        if c.pk_ordinal > 0 {
            keys.push((c.pk_ordinal, mc));
        } else {
            others.push(mc);
        }
    }
    keys.sort_by_key(|(o, _)| *o);
    let keys: Vec<MirrorColumn> = keys.into_iter().map(|(_, c)| c).collect();

    let base = naming::mirror_table(scope, source_table);
    let (name, current) = match existing(&base) {
        Some(m) if m.key_columns != keys => {
            let keyed = naming::keyed_mirror_table(&base, schema_hash);
            let cur = existing(&keyed);
            if let Some(k) = &cur
                && k.key_columns != keys
            {
                return Err(ReviewError::InvalidRequest(format!(
                    "mirror `{keyed}` exists with other key columns"
                )));
            }
            (keyed, cur)
        }
        other => (base, other),
    };
    let Some(mut def) = current else {
        let def = MirrorDef {
            name,
            scope: scope.clone(),
            source_table: source_table.to_string(),
            key_columns: keys,
            columns: others,
        };
        return Ok(MirrorPlan {
            def,
            create: true,
            add: Vec::new(),
        });
    };
    let mut add = Vec::new();
    for c in others {
        let have = def
            .key_columns
            .iter()
            .chain(&def.columns)
            .find(|m| m.name == c.name);
        match have {
            Some(h) if h.affinity == c.affinity && !def.key_columns.contains(h) => {}
            Some(h) => {
                return Err(ReviewError::ColumnTypeConflict {
                    mirror: def.name.clone(),
                    column: c.name.clone(),
                    existing: if def.key_columns.contains(h) {
                        "a key column"
                    } else {
                        affinity_name(h.affinity)
                    },
                    wanted: affinity_name(c.affinity),
                });
            }
            None => add.push(c),
        }
    }
    def.columns.extend(add.iter().cloned());
    Ok(MirrorPlan {
        def,
        create: false,
        add,
    })
}

/// The fit check (§10.4): whether a value may be stored in a column of this affinity.
pub fn fits(affinity: Affinity, v: &SqlValue) -> bool {
    match (affinity, v) {
        (_, SqlValue::Null) => true,
        (Affinity::Integer, SqlValue::Integer(_)) => true,
        (Affinity::Real, SqlValue::Integer(_) | SqlValue::Real(_)) => true,
        (Affinity::Text, SqlValue::Text(s)) => !s.contains('\0'),
        (Affinity::Blob, SqlValue::Blob(_)) => true,
        (Affinity::Numeric, SqlValue::Integer(_)) => true,
        (Affinity::Numeric, SqlValue::Real(r)) => r.is_finite(),
        _ => false,
    }
}

/// The value as stored: an integer in a REAL column becomes a real, as SQLite's affinity does.
fn stored(affinity: Affinity, v: &SqlValue) -> SqlValue {
    match (affinity, v) {
        (Affinity::Real, SqlValue::Integer(i)) => SqlValue::Real(*i as f64),
        _ => v.clone(),
    }
}

/// One row change to materialize, borrowed from a batch or a staged row.
#[derive(Debug, Clone, Copy)]
pub struct Change<'a> {
    /// Epoch of its batch.
    pub epoch: Uuid,
    /// Its `commit_seq`.
    pub commit_seq: i64,
    /// The operation.
    pub op: Op,
    /// Key columns.
    pub pk: &'a Record,
    /// Row image for upserts.
    pub row: Option<&'a Record>,
}

/// One version-guarded write (§10.5): key values, then one value per non-key mirror column
/// (NULL when the change's hash does not bind it, or for a tombstone).
#[derive(Debug, Clone, PartialEq)]
pub struct MirrorWrite {
    /// Values of [`MirrorDef::key_columns`], in order.
    pub key: Vec<SqlValue>,
    /// Values of [`MirrorDef::columns`], in order.
    pub values: Vec<SqlValue>,
    /// Version: epoch.
    pub epoch: Uuid,
    /// Version: commit_seq.
    pub seq: i64,
    /// A tombstone.
    pub deleted: bool,
}

/// A row change refused by the fit check (§10.4, quarantined with `materialization_failed`).
#[derive(Debug, Clone, PartialEq)]
pub struct FitFailure {
    /// Index of the change in the input.
    pub index: usize,
    /// Names the column and the value at fault.
    pub message: String,
}

/// The writes for a list of changes of one hash into one mirror.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WritePlan {
    /// At most one write per key: the greatest version of the input (a multi-row statement may
    /// not touch a row twice; the version rule makes this the same result).
    pub writes: Vec<MirrorWrite>,
    /// Refused changes.
    pub failures: Vec<FitFailure>,
    /// For each input change, in order: `true` when it passed the fit check.
    pub passed: Vec<bool>,
}

/// Plans the writes of `changes` (all of one hash, bound by `decisions`) into `mirror`.
pub fn plan_writes(
    mirror: &MirrorDef,
    decisions: &[ColumnDecision],
    changes: &[Change<'_>],
) -> WritePlan {
    // mirror column name → source column name, for columns this hash binds.
    let bound: HashMap<&str, &str> = decisions
        .iter()
        .filter(|d| d.action == ColumnAction::Mirror)
        .filter_map(|d| d.mirror_column.as_deref().map(|m| (m, d.name.as_str())))
        .collect();
    let key_sources: Vec<Option<&str>> = mirror
        .key_columns
        .iter()
        .map(|k| bound.get(k.name.as_str()).copied())
        .collect();
    let mut plan = WritePlan::default();
    let mut slot: HashMap<String, usize> = HashMap::new();
    for (index, ch) in changes.iter().enumerate() {
        match plan_one(mirror, &bound, &key_sources, ch) {
            Ok(w) => {
                plan.passed.push(true);
                let key = key_string(&w.key);
                match slot.get(&key) {
                    Some(&i) => {
                        let cur = &plan.writes[i];
                        if (w.epoch, w.seq) > (cur.epoch, cur.seq) {
                            plan.writes[i] = w;
                        }
                    }
                    None => {
                        slot.insert(key, plan.writes.len());
                        plan.writes.push(w);
                    }
                }
            }
            Err(message) => {
                plan.passed.push(false);
                plan.failures.push(FitFailure { index, message });
            }
        }
    }
    plan
}

fn key_string(key: &[SqlValue]) -> String {
    let mut s = String::new();
    for v in key {
        wire::write_value(&mut s, v);
        s.push(',');
    }
    s
}

fn lookup<'r>(rec: &'r Record, name: &str) -> Option<&'r SqlValue> {
    rec.iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

fn describe(v: &SqlValue) -> String {
    match v {
        SqlValue::Text(s) if s.contains('\0') => "a TEXT value containing U+0000".to_string(),
        SqlValue::Blob(b) => format!("a BLOB of {} bytes", b.len()),
        other => {
            let mut s = String::new();
            wire::write_value(&mut s, other);
            if s.len() > 80 {
                s.truncate(s.floor_char_boundary(80));
                s.push('…');
            }
            s
        }
    }
}

fn plan_one(
    mirror: &MirrorDef,
    bound: &HashMap<&str, &str>,
    key_sources: &[Option<&str>],
    ch: &Change<'_>,
) -> Result<MirrorWrite, String> {
    let mut key = Vec::with_capacity(mirror.key_columns.len());
    for (kc, src) in mirror.key_columns.iter().zip(key_sources) {
        let src =
            src.ok_or_else(|| format!("key column `{}` is not bound by this hash", kc.name))?;
        let v = lookup(ch.pk, src)
            .or_else(|| ch.row.and_then(|r| lookup(r, src)))
            .ok_or_else(|| format!("key column `{src}` missing from pk"))?;
        if matches!(v, SqlValue::Null) || !fits(kc.affinity, v) {
            return Err(format!(
                "column `{src}`: {} does not fit {}",
                describe(v),
                affinity_name(kc.affinity)
            ));
        }
        key.push(stored(kc.affinity, v));
    }
    let deleted = ch.op == Op::Delete;
    let mut values = Vec::with_capacity(mirror.columns.len());
    for mc in &mirror.columns {
        let v = match (deleted, bound.get(mc.name.as_str()), ch.row) {
            (false, Some(src), Some(row)) => lookup(row, src).cloned().unwrap_or(SqlValue::Null),
            _ => SqlValue::Null,
        };
        if !fits(mc.affinity, &v) {
            let src = bound
                .get(mc.name.as_str())
                .copied()
                .unwrap_or(mc.name.as_str());
            return Err(format!(
                "column `{src}`: {} does not fit {}",
                describe(&v),
                affinity_name(mc.affinity)
            ));
        }
        values.push(stored(mc.affinity, &v));
    }
    Ok(MirrorWrite {
        key,
        values,
        epoch: ch.epoch,
        seq: ch.commit_seq,
        deleted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use omega_protocol::schema::ColumnInfo;

    fn cols(extra: &[(&str, Affinity)]) -> SchemaColumns {
        let mut c = vec![ColumnInfo {
            name: "id".into(),
            decl_type_affinity: Affinity::Integer,
            pk_ordinal: 1,
            not_null: true,
        }];
        for (n, a) in extra {
            c.push(ColumnInfo {
                name: n.to_string(),
                decl_type_affinity: *a,
                pk_ordinal: 0,
                not_null: false,
            });
        }
        SchemaColumns {
            table_name: "t".into(),
            columns: c,
        }
    }

    fn all_mirror(c: &SchemaColumns) -> Vec<ColumnDecision> {
        crate::schema_review::decide::policy_decisions(c, None, false)
    }

    fn plan(c: &SchemaColumns, existing: Option<MirrorDef>) -> Result<MirrorPlan, ReviewError> {
        plan_mirror(&Scope::Project, "t", "abcdef0123", c, &all_mirror(c), |n| {
            existing.clone().filter(|m| m.name == n)
        })
    }

    #[test]
    fn values_fit_by_affinity() {
        assert!(fits(Affinity::Real, &SqlValue::Real(f64::NEG_INFINITY)));
        assert!(fits(Affinity::Real, &SqlValue::Integer(3)));
        assert!(!fits(Affinity::Numeric, &SqlValue::Real(f64::INFINITY)));
        assert!(!fits(Affinity::Integer, &SqlValue::Real(1.0)));
        assert!(!fits(Affinity::Text, &SqlValue::Text("a\0b".into())));
        assert!(!fits(Affinity::Blob, &SqlValue::Text("x".into())));
        assert!(fits(Affinity::Blob, &SqlValue::Null));
    }

    #[test]
    fn a_new_mirror_is_created_then_extended() {
        let c1 = cols(&[("mode", Affinity::Text)]);
        let p1 = plan(&c1, None).unwrap();
        assert!(p1.create);
        assert_eq!(p1.def.name, "edge_mirror_t");
        let c2 = cols(&[("mode", Affinity::Text), ("temp", Affinity::Real)]);
        let p2 = plan(&c2, Some(p1.def.clone())).unwrap();
        assert!(!p2.create);
        assert_eq!(
            p2.add,
            vec![MirrorColumn {
                name: "temp".into(),
                affinity: Affinity::Real
            }]
        );
    }

    #[test]
    fn a_type_change_conflicts_and_a_key_change_gets_its_own_mirror() {
        let p1 = plan(&cols(&[("mode", Affinity::Text)]), None).unwrap();
        let e = plan(&cols(&[("mode", Affinity::Integer)]), Some(p1.def.clone())).unwrap_err();
        assert_eq!(e.code(), "column_type_conflict");
        let mut c = cols(&[("mode", Affinity::Text)]);
        c.columns[0].decl_type_affinity = Affinity::Text;
        let p = plan(&c, Some(p1.def)).unwrap();
        assert_eq!(p.def.name, "edge_mirror_t_abcdef01");
        assert!(p.create);
    }

    #[test]
    fn writes_keep_the_greatest_version_per_key_and_refuse_misfits() {
        let c = cols(&[("mode", Affinity::Text)]);
        let def = plan(&c, None).unwrap().def;
        let pk1 = vec![("id".to_string(), SqlValue::Integer(1))];
        let r1 = vec![
            ("id".into(), SqlValue::Integer(1)),
            ("mode".into(), SqlValue::Text("a".into())),
        ];
        let r2 = vec![
            ("id".into(), SqlValue::Integer(1)),
            ("mode".into(), SqlValue::Integer(2)),
        ];
        let e = Uuid::from_u128(1);
        let changes = [
            Change {
                epoch: e,
                commit_seq: 1,
                op: Op::Insert,
                pk: &pk1,
                row: Some(&r1),
            },
            Change {
                epoch: e,
                commit_seq: 2,
                op: Op::Update,
                pk: &pk1,
                row: Some(&r2),
            },
            Change {
                epoch: e,
                commit_seq: 3,
                op: Op::Delete,
                pk: &pk1,
                row: None,
            },
        ];
        let p = plan_writes(&def, &all_mirror(&c), &changes);
        assert_eq!(p.passed, vec![true, false, true]);
        assert_eq!(p.writes.len(), 1);
        assert!(p.writes[0].deleted);
        assert_eq!(p.writes[0].values, vec![SqlValue::Null]);
        assert!(
            p.failures[0].message.contains("`mode`"),
            "{}",
            p.failures[0].message
        );
    }
}
