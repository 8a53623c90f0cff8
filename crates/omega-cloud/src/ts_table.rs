//! Telemetry tables (`cloud.md` §11): their shape, provisioning plans, and the append-only
//! sample writes the stores execute.
//!
//! Pure, like [`crate::materialize`]: this module decides *what* to write; `store::{postgres,
//! sqlite}` turn it into SQL. A table `edge_ts_{t}` holds `device_id`, `row_id`, `event_ts`,
//! one column per approved field (typed and fit-checked as mirror columns, §10.3–§10.4),
//! `_omega_batch_id` and `_omega_received_at`, unique on (`device_id`, `row_id`, `event_ts`).
//!
//! Field columns are provisioned as samples bring them: a column the hash binds (action
//! `mirror`) is created the first time a sample carries its source column. A table therefore
//! never holds a column no sample was sent with (the table's `ts_column`, columns outside
//! `include_columns`), and reading a sample back gives exactly the fields it was sent with.

use std::collections::{BTreeSet, HashMap};

use omega_protocol::message::Record;
use omega_protocol::schema::SchemaColumns;
use omega_protocol::value::SqlValue;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::materialize::{MirrorColumn, affinity_name, fits};
use crate::policy::Scope;
use crate::schema_review::{ColumnAction, ColumnDecision};
use crate::wire;

/// The column holding a sample's `row_id`.
pub const ROW_ID_COLUMN: &str = "row_id";
/// The column holding a sample's event time.
pub const EVENT_TS_COLUMN: &str = "event_ts";

/// A telemetry table (`omega_ts_tables`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsDef {
    /// Table name (`edge_ts_…`).
    pub name: String,
    /// Reach.
    pub scope: Scope,
    /// Source table.
    pub source_table: String,
    /// Field columns, in creation order.
    pub columns: Vec<MirrorColumn>,
    /// Whether the table is a TimescaleDB hypertable on `event_ts` (PostgreSQL only).
    pub hypertable: bool,
}

/// What provisioning does to a telemetry table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsPlan {
    /// The table after the change.
    pub def: TsDef,
    /// The table does not exist yet: create it.
    pub create: bool,
    /// Columns to add to an existing table.
    pub add: Vec<MirrorColumn>,
}

/// Plans `want` against the stored table: create it, or add the columns it lacks. A column
/// that exists under the same name keeps its stored type (values that do not fit it are
/// refused by the fit check, never by the DDL).
pub fn plan_ts(existing: Option<&TsDef>, want: &TsDef) -> TsPlan {
    let Some(cur) = existing else {
        return TsPlan {
            def: want.clone(),
            create: true,
            add: Vec::new(),
        };
    };
    let add: Vec<MirrorColumn> = want
        .columns
        .iter()
        .filter(|c| !cur.columns.iter().any(|h| h.name == c.name))
        .cloned()
        .collect();
    let mut def = cur.clone();
    def.columns.extend(add.iter().cloned());
    TsPlan {
        def,
        create: false,
        add,
    }
}

/// One sample to materialize, borrowed from a batch or a staged sample.
#[derive(Debug, Clone, Copy)]
pub struct Sample<'a> {
    /// Its `row_id` (or `{batch_id}:{index}`).
    pub row_id: &'a str,
    /// Event time.
    pub event_ts: OffsetDateTime,
    /// Sent columns → values.
    pub fields: &'a Record,
    /// The batch it came in.
    pub batch_id: Uuid,
}

/// One row of a telemetry table to insert (on conflict do nothing).
#[derive(Debug, Clone, PartialEq)]
pub struct TsWrite {
    /// `row_id`.
    pub row_id: String,
    /// `event_ts`.
    pub event_ts: OffsetDateTime,
    /// One value per [`TsDef::columns`] entry, in order.
    pub values: Vec<SqlValue>,
    /// `_omega_batch_id`.
    pub batch_id: Uuid,
}

/// One row of a telemetry table as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct TsRow {
    /// Device.
    pub device_id: String,
    /// `row_id`.
    pub row_id: String,
    /// `event_ts`.
    pub event_ts: OffsetDateTime,
    /// One value per [`TsDef::columns`] entry, in order.
    pub values: Vec<SqlValue>,
    /// `_omega_batch_id`.
    pub batch_id: Uuid,
    /// `_omega_received_at`.
    pub received_at: OffsetDateTime,
}

/// mirror column → source column, for the columns a hash binds.
fn bound(decisions: &[ColumnDecision]) -> HashMap<&str, &str> {
    decisions
        .iter()
        .filter(|d| d.action == ColumnAction::Mirror)
        .filter_map(|d| d.mirror_column.as_deref().map(|m| (m, d.name.as_str())))
        .collect()
}

/// The table `samples` need: every column the hash binds whose source column at least one
/// sample carries, typed by the hash's columns, in the hash's column order.
pub fn wanted_def(
    name: &str,
    scope: &Scope,
    source_table: &str,
    columns: &SchemaColumns,
    decisions: &[ColumnDecision],
    samples: &[Sample<'_>],
) -> TsDef {
    let sent: BTreeSet<&str> = samples
        .iter()
        .flat_map(|s| s.fields.iter().map(|(k, _)| k.as_str()))
        .collect();
    let by_source: HashMap<&str, &ColumnDecision> =
        decisions.iter().map(|d| (d.name.as_str(), d)).collect();
    let mut cols = Vec::new();
    for c in &columns.columns {
        if !sent.contains(c.name.as_str()) {
            continue;
        }
        let Some(d) = by_source.get(c.name.as_str()) else {
            continue;
        };
        if let (ColumnAction::Mirror, Some(m)) = (d.action, &d.mirror_column) {
            cols.push(MirrorColumn {
                name: m.clone(),
                affinity: c.decl_type_affinity,
            });
        }
    }
    TsDef {
        name: name.to_string(),
        scope: scope.clone(),
        source_table: source_table.to_string(),
        columns: cols,
        hypertable: false,
    }
}

/// Whether `def` already has every column of `want`.
pub fn covers(def: &TsDef, want: &TsDef) -> bool {
    want.columns
        .iter()
        .all(|c| def.columns.iter().any(|h| h.name == c.name))
}

/// A sample refused by the fit check (quarantined with `materialization_failed`).
#[derive(Debug, Clone, PartialEq)]
pub struct SampleFailure {
    /// Index of the sample in the input.
    pub index: usize,
    /// Names the column and the value at fault.
    pub message: String,
}

/// The writes of samples of one hash into a telemetry table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SamplePlan {
    /// One write per sample that passed the fit check.
    pub writes: Vec<TsWrite>,
    /// Refused samples.
    pub failures: Vec<SampleFailure>,
}

/// Plans the inserts of `samples` (all of one hash, bound by `decisions`) into `def`: each
/// column the hash binds takes the sample's field (NULL when the sample lacks it), every other
/// column NULL. A value that does not fit its column refuses the whole sample.
pub fn plan_samples(
    def: &TsDef,
    decisions: &[ColumnDecision],
    samples: &[Sample<'_>],
) -> SamplePlan {
    let bound = bound(decisions);
    let sources: Vec<Option<&str>> = def
        .columns
        .iter()
        .map(|c| bound.get(c.name.as_str()).copied())
        .collect();
    let mut plan = SamplePlan::default();
    'samples: for (index, s) in samples.iter().enumerate() {
        let mut values = Vec::with_capacity(def.columns.len());
        for (col, src) in def.columns.iter().zip(&sources) {
            let v = src
                .and_then(|src| s.fields.iter().find(|(k, _)| k == src).map(|(_, v)| v))
                .unwrap_or(&SqlValue::Null);
            if !fits(col.affinity, v) {
                let mut shown = String::new();
                wire::write_value(&mut shown, v);
                if shown.len() > 80 {
                    shown.truncate(shown.floor_char_boundary(80));
                    shown.push('…');
                }
                plan.failures.push(SampleFailure {
                    index,
                    message: format!(
                        "row_id {}: column `{}`: {shown} does not fit {}",
                        s.row_id,
                        src.unwrap_or(col.name.as_str()),
                        affinity_name(col.affinity)
                    ),
                });
                continue 'samples;
            }
            values.push(match (col.affinity, v) {
                // As SQLite's REAL affinity does (and as mirrors store it).
                (omega_protocol::schema::Affinity::Real, SqlValue::Integer(i)) => {
                    SqlValue::Real(*i as f64)
                }
                _ => v.clone(),
            });
        }
        plan.writes.push(TsWrite {
            row_id: s.row_id.to_string(),
            event_ts: s.event_ts,
            values,
            batch_id: s.batch_id,
        });
    }
    plan
}

/// The wire JSON of one sample: the quarantine payload of a refused sample.
pub fn sample_json(s: &Sample<'_>) -> String {
    format!(
        "{{\"ts\":\"{}\",\"row_id\":{},\"fields\":{}}}",
        omega_protocol::time::format_rfc3339(s.event_ts),
        serde_json::Value::String(s.row_id.to_string()),
        wire::record_json(s.fields)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use omega_protocol::schema::{Affinity, ColumnInfo};

    fn cols() -> SchemaColumns {
        let c = |name: &str, a: Affinity, pk: u32| ColumnInfo {
            name: name.into(),
            decl_type_affinity: a,
            pk_ordinal: pk,
            not_null: pk > 0,
        };
        SchemaColumns {
            table_name: "temps".into(),
            columns: vec![
                c("id", Affinity::Integer, 1),
                c("ts", Affinity::Text, 0),
                c("value", Affinity::Real, 0),
                c("raw", Affinity::Blob, 0),
            ],
        }
    }

    fn decisions() -> Vec<ColumnDecision> {
        crate::schema_review::decide::policy_decisions(&cols(), None, false)
    }

    #[test]
    fn only_sent_bound_columns_are_provisioned_then_added() {
        let f1 = vec![
            ("id".to_string(), SqlValue::Integer(1)),
            ("value".to_string(), SqlValue::Integer(2)),
        ];
        let s = [Sample {
            row_id: "{\"id\":1}",
            event_ts: OffsetDateTime::UNIX_EPOCH,
            fields: &f1,
            batch_id: Uuid::nil(),
        }];
        let want = wanted_def(
            "edge_ts_temps",
            &Scope::Project,
            "temps",
            &cols(),
            &decisions(),
            &s,
        );
        let names: Vec<&str> = want.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, vec!["id", "value"]);
        let p = plan_samples(&want, &decisions(), &s);
        assert_eq!(
            p.writes[0].values,
            vec![SqlValue::Integer(1), SqlValue::Real(2.0)]
        );
        let f2 = vec![("raw".to_string(), SqlValue::Blob(vec![0]))];
        let s2 = [Sample {
            fields: &f2,
            ..s[0]
        }];
        let want2 = wanted_def(
            "edge_ts_temps",
            &Scope::Project,
            "temps",
            &cols(),
            &decisions(),
            &s2,
        );
        assert!(!covers(&want, &want2));
        let plan = plan_ts(Some(&want), &want2);
        assert!(!plan.create);
        assert_eq!(plan.add.len(), 1);
        assert_eq!(plan.def.columns.len(), 3);
    }

    #[test]
    fn a_misfit_value_refuses_the_sample() {
        let f = vec![
            ("id".to_string(), SqlValue::Text("x".into())),
            ("value".to_string(), SqlValue::Real(1.5)),
        ];
        let s = [Sample {
            row_id: "r",
            event_ts: OffsetDateTime::UNIX_EPOCH,
            fields: &f,
            batch_id: Uuid::nil(),
        }];
        let def = wanted_def("t", &Scope::Project, "temps", &cols(), &decisions(), &s);
        let p = plan_samples(&def, &decisions(), &s);
        assert!(p.writes.is_empty());
        assert!(
            p.failures[0].message.contains("`id`"),
            "{}",
            p.failures[0].message
        );
        assert!(sample_json(&s[0]).starts_with("{\"ts\":\"1970-01-01T00:00:00Z\""));
    }
}
