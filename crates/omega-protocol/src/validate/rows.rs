//! Row batches (§8): codes 7–16 of §14.1, in order.

use super::fields::{Ctx, Loc, malformed};
use super::{Rejection, RejectionCode};
use crate::ids::is_uuid_v7;
use crate::json::Json;
use crate::limits::MAX_ROWS_PER_BATCH;
use crate::message::{Op, ROW_BATCH_CAPTURE_STRATEGY, Record, RowBatch, RowChange, SnapshotMarker};
use crate::schema::SchemaColumns;
use crate::value::SqlValue;

type Members = [(String, Json)];

/// A row change read for its shape (code 7), values not yet decoded.
struct RawChange<'a> {
    commit_seq: i64,
    op: Op,
    pk: &'a Members,
    row: Option<&'a Members>,
}

/// Steps 7–16 for a row batch whose steps 2–6 passed.
pub(super) fn validate(ctx: Ctx<'_>, obj: &Members) -> Result<RowBatch, Rejection> {
    let at = Loc::Root;
    // 7. Required fields, types and forms.
    let strategy = ctx.str(obj, &at, "capture_strategy")?;
    if strategy != ROW_BATCH_CAPTURE_STRATEGY {
        return Err(malformed(
            &at.key("capture_strategy"),
            &format!("unknown {strategy:?}"),
        ));
    }
    let batch_id = ctx.str(obj, &at, "batch_id")?;
    let journal_epoch = ctx.str(obj, &at, "journal_epoch")?;
    let source_table = ctx.name(obj, &at, "source_table")?;
    let schema_hash = ctx.hash(obj, &at, "schema_hash")?;
    let schema_columns = ctx.schema_columns(obj)?;
    let first = ctx.int(obj, &at, "first_commit_seq", 1)?;
    let last = ctx.int(obj, &at, "last_commit_seq", 1)?;
    let prev = ctx.opt_int(obj, &at, "prev_commit_seq", 0)?;
    let rows_at = at.key("rows");
    let raw_rows = ctx.array(obj, &at, "rows")?;
    let mut changes = Vec::with_capacity(raw_rows.len());
    for (i, r) in raw_rows.iter().enumerate() {
        changes.push(raw_change(ctx, r, &rows_at.index(i))?);
    }
    let snapshot = snapshot(ctx, obj)?;

    // 8. Identifiers.
    for (name, id) in [("batch_id", batch_id), ("journal_epoch", journal_epoch)]
        .into_iter()
        .chain(snapshot.as_ref().map(|s| ("snapshot.id", s.id.as_str())))
    {
        if !is_uuid_v7(id) {
            return Err(Rejection::new(
                RejectionCode::InvalidBatchId,
                format!("{name}: {id:?} is not a UUIDv7"),
            ));
        }
    }

    // 9. Row count.
    if changes.len() > MAX_ROWS_PER_BATCH {
        return Err(Rejection::new(
            RejectionCode::BatchTooManyRows,
            format!("rows: {} rows, over {MAX_ROWS_PER_BATCH}", changes.len()),
        ));
    }

    // 11. Sequence ranges.
    check_seqs(&changes, first, last, prev, snapshot.is_some())?;

    // 14. Number tokens anywhere.
    if let Some(r) = ctx.first_bad_number() {
        return Err(r);
    }

    // 15. Values.
    let mut rows = Vec::with_capacity(changes.len());
    for (i, c) in changes.iter().enumerate() {
        rows.push(decode_change(c, &rows_at.index(i))?);
    }

    // 16. Schema columns.
    if let Some(cols) = &schema_columns {
        check_schema_columns(cols, source_table, schema_hash)?;
    }

    Ok(RowBatch {
        batch_id: batch_id.to_ascii_lowercase(),
        journal_epoch: journal_epoch.to_ascii_lowercase(),
        source_table: source_table.to_owned(),
        schema_hash: schema_hash.to_owned(),
        schema_columns,
        first_commit_seq: first,
        last_commit_seq: last,
        prev_commit_seq: prev,
        rows,
        snapshot,
    })
}

fn raw_change<'a>(ctx: Ctx<'_>, r: &'a Json, at: &Loc<'_>) -> Result<RawChange<'a>, Rejection> {
    let obj = ctx.obj_value(r, at)?;
    let commit_seq = ctx.int(obj, at, "commit_seq", 1)?;
    let op_text = ctx.str(obj, at, "op")?;
    let op = Op::parse(op_text)
        .ok_or_else(|| malformed(&at.key("op"), &format!("unknown op {op_text:?}")))?;
    let pk = ctx.obj(obj, at, "pk")?;
    let row_value = ctx.req(obj, at, "row")?;
    let row = match (op, row_value) {
        (Op::Delete, Json::Null) => None,
        (Op::Delete, other) => {
            return Err(ctx.wrong(
                RejectionCode::MalformedJson,
                &at.key("row"),
                "null for a delete",
                other,
            ));
        }
        (_, Json::Object(m)) => Some(m.as_slice()),
        (_, other) => {
            let expected = format!("an object for an {}", op.as_str());
            return Err(ctx.wrong(
                RejectionCode::MalformedJson,
                &at.key("row"),
                &expected,
                other,
            ));
        }
    };
    Ok(RawChange {
        commit_seq,
        op,
        pk,
        row,
    })
}

fn snapshot(ctx: Ctx<'_>, obj: &Members) -> Result<Option<SnapshotMarker>, Rejection> {
    let Some(v) = crate::json::member(obj, "snapshot") else {
        return Ok(None);
    };
    let at = Loc::Root.key("snapshot");
    let s = ctx.obj_value(v, &at)?;
    let id = ctx.str(s, &at, "id")?.to_ascii_lowercase();
    let part = ctx.int(s, &at, "part", 1)?;
    let part = u32::try_from(part).map_err(|_| malformed(&at.key("part"), "out of range"))?;
    let last = ctx.bool(s, &at, "last")?;
    Ok(Some(SnapshotMarker { id, part, last }))
}

/// Code 11 (§8.2, §8.5, `receipts.md` §2).
fn check_seqs(
    changes: &[RawChange<'_>],
    first: i64,
    last: i64,
    prev: Option<i64>,
    snapshot: bool,
) -> Result<(), Rejection> {
    let fail = |m: String| Err(Rejection::new(RejectionCode::SeqRangeMismatch, m));
    if first > last {
        return fail(format!(
            "first_commit_seq {first} is above last_commit_seq {last}"
        ));
    }
    if let Some(p) = prev
        && p >= first
    {
        return fail(format!(
            "prev_commit_seq {p} is not below first_commit_seq {first}"
        ));
    }
    if snapshot {
        if first != last {
            return fail(format!(
                "snapshot part: first_commit_seq {first} and last_commit_seq {last} must be equal"
            ));
        }
        for (i, c) in changes.iter().enumerate() {
            if c.op != Op::Insert || c.commit_seq != first {
                return fail(format!(
                    "rows[{i}]: a snapshot row must be an insert at commit_seq {first}, got {} at {}",
                    c.op.as_str(),
                    c.commit_seq
                ));
            }
        }
        return Ok(());
    }
    let (Some(lo), Some(hi)) = (changes.first(), changes.last()) else {
        return fail("rows: empty outside a snapshot".into());
    };
    for (i, pair) in changes.windows(2).enumerate() {
        if pair[1].commit_seq <= pair[0].commit_seq {
            return fail(format!(
                "rows[{}].commit_seq: {} is not above rows[{i}].commit_seq {}",
                i + 1,
                pair[1].commit_seq,
                pair[0].commit_seq
            ));
        }
    }
    if lo.commit_seq != first || hi.commit_seq != last {
        return fail(format!(
            "first_commit_seq/last_commit_seq {first}/{last} are not the rows' {}/{}",
            lo.commit_seq, hi.commit_seq
        ));
    }
    Ok(())
}

fn value_error(loc: &Loc<'_>, why: impl std::fmt::Display) -> Rejection {
    Rejection::new(RejectionCode::InvalidValueEncoding, format!("{loc}: {why}"))
}

/// Decodes a `pk`, `row` or `fields` object (code 15): non-empty keys, values of §4.
pub(super) fn decode_record(members: &Members, at: &Loc<'_>) -> Result<Record, Rejection> {
    let mut out = Vec::with_capacity(members.len());
    for (k, v) in members {
        if k.is_empty() {
            return Err(value_error(at, "empty column name"));
        }
        let value = SqlValue::from_json(v).map_err(|e| value_error(&at.key(k), e))?;
        out.push((k.clone(), value));
    }
    Ok(out)
}

fn decode_change(c: &RawChange<'_>, at: &Loc<'_>) -> Result<RowChange, Rejection> {
    let pk_at = at.key("pk");
    if c.pk.is_empty() {
        return Err(value_error(&pk_at, "empty primary key"));
    }
    let pk = decode_record(c.pk, &pk_at)?;
    if let Some((k, _)) = pk.iter().find(|(_, v)| v.is_null()) {
        return Err(value_error(&pk_at.key(k), "null in a primary key"));
    }
    let row = match c.row {
        None => None,
        Some(members) => {
            let row_at = at.key("row");
            let row = decode_record(members, &row_at)?;
            for (k, v) in &pk {
                match row.iter().find(|(rk, _)| rk == k) {
                    None => {
                        return Err(value_error(
                            &row_at.key(k),
                            "primary-key column missing from row",
                        ));
                    }
                    Some((_, rv)) if rv != v => {
                        return Err(value_error(&row_at.key(k), "differs from the pk value"));
                    }
                    Some(_) => {}
                }
            }
            Some(row)
        }
    };
    Ok(RowChange {
        commit_seq: c.commit_seq,
        op: c.op,
        pk,
        row,
    })
}

/// Code 16: `schema_columns` names the batch's table and hashes to its `schema_hash`.
pub(super) fn check_schema_columns(
    cols: &SchemaColumns,
    source_table: &str,
    schema_hash: &str,
) -> Result<(), Rejection> {
    if cols.table_name != source_table {
        return Err(Rejection::new(
            RejectionCode::SchemaHashMismatch,
            format!(
                "schema_columns.table_name: {:?} is not source_table {source_table:?}",
                cols.table_name
            ),
        ));
    }
    let actual = cols.hash();
    if actual != schema_hash {
        return Err(Rejection::new(
            RejectionCode::SchemaHashMismatch,
            format!("schema_columns: hashes to {actual}, not schema_hash {schema_hash}"),
        ));
    }
    Ok(())
}
