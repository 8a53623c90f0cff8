//! JSON views of the cloud's records, in the shapes of `cloud.md` §18 (lineage object §18.5,
//! review §8.1, quarantine item, mirror rows, lists `{"items", "next_cursor"}`). The CLI's
//! `--json` prints these, and the HTTP API can answer with the same values.
//!
//! Column values are in wire encoding (`protocol.md` §4): exact integers, `{"$real": "inf"}`,
//! `{"$blob": "…"}`. Times are RFC 3339 UTC.

use omega_protocol::json::Json;
use omega_protocol::message::Record;
use omega_protocol::time::format_rfc3339;
use omega_protocol::value::SqlValue;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use crate::lineage::Lineage;
use crate::lineage::ops::LineageRows;
use crate::materialize::affinity_name;
use crate::quarantine::QuarantineEntry;
use crate::schema_review::ops::ReviewDetail;
use crate::schema_review::{Review, SchemaDiff};
use crate::staging::{StagedRow, StagedSample};
use crate::ts_read::{LineageSamples, RowsView};

/// A list page (§18.4). The store reads return whole lists, so `next_cursor` is null.
pub fn list(items: Vec<Value>) -> Value {
    json!({ "items": items, "next_cursor": null })
}

/// RFC 3339 UTC.
pub fn time(t: OffsetDateTime) -> Value {
    Value::String(format_rfc3339(t))
}

fn opt_time(t: Option<OffsetDateTime>) -> Value {
    t.map_or(Value::Null, time)
}

/// A column value in wire encoding (`protocol.md` §4.1).
pub fn value(v: &SqlValue) -> Value {
    from_wire(&v.to_json())
}

/// A protocol JSON tree as a `serde_json` value (integers stay exact).
pub fn from_wire(j: &Json) -> Value {
    match j {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Integer(i) => Value::from(*i),
        Json::Real(r) => serde_json::Number::from_f64(*r).map_or(Value::Null, Value::Number),
        Json::String(s) => Value::String(s.clone()),
        Json::Array(a) => Value::Array(a.iter().map(from_wire).collect()),
        Json::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), from_wire(v)))
                .collect::<Map<String, Value>>(),
        ),
    }
}

/// The lineage object (§18.5).
pub fn lineage(l: &Lineage) -> Value {
    json!({
        "id": l.id.to_string(),
        "device_id": l.device_id,
        "source_table": l.source_table,
        "kinds": l.kinds.names(),
        "status": l.status().as_str(),
        "pause_causes": l.pause_causes.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
        "device_paused": l.device_paused,
        "journal_epoch": l.journal_epoch.map(|e| e.to_string()),
        "last_commit_seq": l.last_commit_seq,
        "last_batch_seq": l.last_batch_seq,
        "server_watermark": l.server_watermark(),
        "confirmed_through": l.confirmed_through,
        "schema_hash": l.schema_hash,
        "staged_rows": l.staged_rows,
        "staged_bytes": l.staged_bytes,
        "consecutive_failures": l.consecutive_failures,
        "mirror_table": l.mirror_table,
        "ts_table": l.ts_table,
        "created_at": time(l.created_at),
        "updated_at": time(l.updated_at),
        "last_batch_at": opt_time(l.last_batch_at),
    })
}

fn diff(d: &SchemaDiff) -> Value {
    json!({ "added": d.added, "dropped": d.dropped, "changed": d.changed })
}

/// A review record (§8.1) without the derived parts (devices, staged rows, samples).
pub fn review(r: &Review) -> Value {
    let decisions: Vec<Value> = r
        .decisions
        .iter()
        .map(|d| json!({ "name": d.name, "action": d.action.as_str(), "as": d.mirror_column }))
        .collect();
    json!({
        "id": r.id.to_string(),
        "scope": r.scope.key(),
        "source_table": r.source_table,
        "schema_hash": r.schema_hash,
        "class": r.class.as_str(),
        "columns": r.columns.as_ref().map(|c| serde_json::to_value(c).unwrap_or(Value::Null)),
        "compared_hash": r.compared_hash,
        "diff": r.diff.as_ref().map(diff),
        "status": r.status.as_str(),
        "decisions": decisions,
        "decided_by": r.decided_by.map(|d| d.as_str()),
        "reason": r.reason,
        "mirror_table": r.mirror_table,
        "created_at": time(r.created_at),
        "updated_at": time(r.updated_at),
        "decided_at": opt_time(r.decided_at),
    })
}

/// A staged row (`GET /v1/lineages/{id}/staged` item).
pub fn staged_row(s: &StagedRow) -> Value {
    json!({
        "device_id": s.device_id,
        "journal_epoch": s.journal_epoch.to_string(),
        "commit_seq": s.commit_seq,
        "op": s.op.as_str(),
        "pk": record(&s.pk),
        "row": s.row.as_ref().map_or(Value::Null, record),
        "schema_hash": s.schema_hash,
        "reason": s.reason.as_str(),
        "batch_id": s.batch_id.to_string(),
        "staged_at": time(s.staged_at),
    })
}

/// A staged telemetry sample (`GET /v1/lineages/{id}/staged` item).
pub fn staged_sample(s: &StagedSample) -> Value {
    json!({
        "device_id": s.device_id,
        "row_id": s.row_id,
        "ts": time(s.event_ts),
        "fields": record(&s.fields),
        "schema_hash": s.schema_hash,
        "batch_id": s.batch_id.to_string(),
        "batch_seq": s.batch_seq,
        "staged_at": time(s.staged_at),
    })
}

/// A record (`pk`, `row`) in wire encoding, members in record order.
pub fn record(r: &Record) -> Value {
    Value::Object(r.iter().map(|(k, v)| (k.clone(), value(v))).collect())
}

/// A review with devices, staged count and samples (§8.1, `GET /v1/reviews/{id}`).
pub fn review_detail(d: &ReviewDetail) -> Value {
    let mut v = review(&d.review);
    if let Value::Object(m) = &mut v {
        m.insert("devices".into(), json!(d.devices));
        m.insert("staged_rows".into(), json!(d.staged_rows));
        m.insert(
            "samples".into(),
            Value::Array(d.samples.iter().map(staged_row).collect()),
        );
    }
    v
}

/// A quarantine item (`GET /v1/quarantine`); the payload prefix as text, invalid UTF-8
/// replaced (§5.1).
pub fn quarantine(q: &QuarantineEntry) -> Value {
    json!({
        "id": q.id.to_string(),
        "device_id": q.device_id,
        "topic": q.topic,
        "code": q.code,
        "message": q.message,
        "batch_id": q.batch_id.map(|b| b.to_string()),
        "payload_bytes": q.payload_bytes,
        "payload_prefix": q.payload_text(),
        "received_at": time(q.received_at),
    })
}

/// Mirror rows of a lineage (`GET /v1/lineages/{id}/rows`): `pk` and `row` are keyed by
/// mirror column; `columns` names the source column of each.
pub fn rows(r: &LineageRows) -> Value {
    let columns: Vec<Value> = r
        .columns
        .iter()
        .map(|c| json!({ "name": c.name, "source": c.source, "type": affinity_name(c.affinity) }))
        .collect();
    let nk = r.mirror.key_columns.len();
    let items: Vec<Value> = r
        .rows
        .iter()
        .map(|row| {
            let mut pk = Map::new();
            let mut all = Map::new();
            for (c, v) in r.columns.iter().zip(row.key.iter().chain(&row.values)) {
                if c.key {
                    pk.insert(c.name.clone(), value(v));
                }
                all.insert(c.name.clone(), value(v));
            }
            debug_assert_eq!(pk.len(), nk);
            json!({
                "pk": pk,
                "row": if row.deleted { Value::Null } else { Value::Object(all) },
                "version": { "journal_epoch": row.epoch.to_string(), "commit_seq": row.seq },
                "deleted": row.deleted,
                "updated_at": time(row.updated_at),
            })
        })
        .collect();
    json!({
        "lineage_id": r.lineage.id.to_string(),
        "mirror_table": r.mirror.name,
        "columns": columns,
        "items": items,
        "next_cursor": null,
    })
}

/// Telemetry samples of a lineage (`GET /v1/lineages/{id}/rows` of a telemetry lineage):
/// `fields` is keyed by source column (the name the device sent; the table column when no
/// binding names one), values in wire encoding, so a sample reads back as it was sent.
pub fn samples(r: &LineageSamples) -> Value {
    let columns: Vec<Value> = r
        .columns
        .iter()
        .map(|c| json!({ "name": c.name, "source": c.source, "type": affinity_name(c.affinity) }))
        .collect();
    let items: Vec<Value> = r
        .rows
        .iter()
        .map(|row| {
            let fields: Map<String, Value> = r
                .columns
                .iter()
                .zip(&row.values)
                .map(|(c, v)| (c.source.clone().unwrap_or_else(|| c.name.clone()), value(v)))
                .collect();
            json!({
                "row_id": row.row_id,
                "event_ts": time(row.event_ts),
                "fields": fields,
                "batch_id": row.batch_id.to_string(),
                "received_at": time(row.received_at),
            })
        })
        .collect();
    json!({
        "lineage_id": r.lineage.id.to_string(),
        "kind": "telemetry",
        "ts_table": r.table.name,
        "hypertable": r.table.hypertable,
        "columns": columns,
        "items": items,
        "next_cursor": null,
    })
}

/// Mirror rows or telemetry samples, whichever the lineage shows ([`crate::ts_read::read`]).
pub fn rows_view(v: &RowsView) -> Value {
    match v {
        RowsView::Rows(r) => rows(r),
        RowsView::Samples(s) => samples(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_keep_the_wire_encoding() {
        assert_eq!(value(&SqlValue::Integer(i64::MIN)), json!(i64::MIN));
        assert_eq!(
            value(&SqlValue::Real(f64::INFINITY)),
            json!({ "$real": "inf" })
        );
        assert_eq!(
            value(&SqlValue::Blob(vec![0, 255])),
            json!({ "$blob": "AP8=" })
        );
        assert_eq!(value(&SqlValue::Real(0.5)), json!(0.5));
        assert_eq!(value(&SqlValue::Null), Value::Null);
    }

    #[test]
    fn a_lineage_has_every_field_of_the_api_object() {
        let l = Lineage::new("press-01", "device_state", OffsetDateTime::UNIX_EPOCH);
        let v = lineage(&l);
        for k in [
            "id",
            "device_id",
            "source_table",
            "kinds",
            "status",
            "pause_causes",
            "device_paused",
            "journal_epoch",
            "last_commit_seq",
            "last_batch_seq",
            "server_watermark",
            "schema_hash",
            "staged_rows",
            "staged_bytes",
            "consecutive_failures",
            "mirror_table",
            "ts_table",
            "created_at",
            "updated_at",
            "last_batch_at",
        ] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        assert_eq!(v["status"], "active");
        assert_eq!(v["created_at"], "1970-01-01T00:00:00Z");
    }
}
