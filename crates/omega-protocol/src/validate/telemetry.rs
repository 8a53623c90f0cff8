//! Telemetry batches (§9): codes 7–16 of §14.1, in order.

use ::time::OffsetDateTime;

use super::fields::{Ctx, Loc, malformed};
use super::rows::{check_schema_columns, decode_record};
use super::{Rejection, RejectionCode};
use crate::ids::is_uuid_v7;
use crate::json::{Json, member};
use crate::limits::{MAX_ROW_ID_BYTES, MAX_ROWS_PER_BATCH};
use crate::message::{TELEMETRY_BATCH_CAPTURE_STRATEGY, TelemetryBatch, TelemetrySample};
use crate::time::format_rfc3339;

type Members = [(String, Json)];

/// A sample read for its shape (code 7).
struct RawSample<'a> {
    ts: OffsetDateTime,
    row_id: Option<&'a Json>,
    fields: &'a Members,
}

/// Steps 7–16 for a telemetry batch whose steps 2–6 passed.
pub(super) fn validate(ctx: Ctx<'_>, obj: &Members) -> Result<TelemetryBatch, Rejection> {
    let at = Loc::Root;
    // 7. Required fields, types and forms.
    let strategy = ctx.str(obj, &at, "capture_strategy")?;
    if strategy != TELEMETRY_BATCH_CAPTURE_STRATEGY {
        return Err(malformed(
            &at.key("capture_strategy"),
            &format!("unknown {strategy:?}"),
        ));
    }
    let batch_id = ctx.str(obj, &at, "batch_id")?;
    let batch_seq = ctx.int(obj, &at, "batch_seq", 1)?;
    let prev_batch_seq = ctx.opt_int(obj, &at, "prev_batch_seq", 0)?;
    let source_table = ctx.name(obj, &at, "source_table")?;
    let schema_hash = ctx.hash(obj, &at, "schema_hash")?;
    let schema_columns = ctx.schema_columns(obj)?;
    let cursor_start = ctx.time(obj, &at, "cursor_start_ts")?;
    let cursor_end = ctx.time(obj, &at, "cursor_end_ts")?;
    let row_count = ctx.int(obj, &at, "row_count", 0)?;
    let rows_at = at.key("rows");
    let raw_rows = ctx.array(obj, &at, "rows")?;
    if raw_rows.is_empty() {
        return Err(malformed(
            &rows_at,
            "empty; a telemetry batch has 1 to 4096 samples",
        ));
    }
    let mut samples = Vec::with_capacity(raw_rows.len());
    for (i, r) in raw_rows.iter().enumerate() {
        let s_at = rows_at.index(i);
        let s = ctx.obj_value(r, &s_at)?;
        samples.push(RawSample {
            ts: ctx.time(s, &s_at, "ts")?,
            row_id: member(s, "row_id"),
            fields: ctx.obj(s, &s_at, "fields")?,
        });
    }

    // 8. Identifiers.
    if !is_uuid_v7(batch_id) {
        return Err(Rejection::new(
            RejectionCode::InvalidBatchId,
            format!("batch_id: {batch_id:?} is not a UUIDv7"),
        ));
    }

    // 9. Row count limit.
    if samples.len() > MAX_ROWS_PER_BATCH {
        return Err(Rejection::new(
            RejectionCode::BatchTooManyRows,
            format!("rows: {} samples, over {MAX_ROWS_PER_BATCH}", samples.len()),
        ));
    }

    // 10. row_count.
    if usize::try_from(row_count).ok() != Some(samples.len()) {
        return Err(Rejection::new(
            RejectionCode::RowCountMismatch,
            format!("row_count: {row_count}, but rows has {}", samples.len()),
        ));
    }

    // 12. Cursor times, compared as instants.
    let lo = samples.iter().map(|s| s.ts).min().unwrap_or(cursor_start);
    let hi = samples.iter().map(|s| s.ts).max().unwrap_or(cursor_end);
    if cursor_start != lo || cursor_end != hi {
        return Err(Rejection::new(
            RejectionCode::CursorTimestampMismatch,
            format!(
                "cursor_start_ts/cursor_end_ts {}/{} are not the earliest/latest ts {}/{}",
                format_rfc3339(cursor_start),
                format_rfc3339(cursor_end),
                format_rfc3339(lo),
                format_rfc3339(hi)
            ),
        ));
    }

    // 13. row_id.
    let mut row_ids = Vec::with_capacity(samples.len());
    for (i, s) in samples.iter().enumerate() {
        row_ids.push(match s.row_id {
            None => None,
            Some(v) => Some(row_id(ctx, v, &rows_at.index(i).key("row_id"))?),
        });
    }

    // 14. Number tokens anywhere.
    if let Some(r) = ctx.first_bad_number() {
        return Err(r);
    }

    // 15. Values.
    let mut rows = Vec::with_capacity(samples.len());
    for ((i, s), row_id) in samples.iter().enumerate().zip(row_ids) {
        let fields = decode_record(s.fields, &rows_at.index(i).key("fields"))?;
        rows.push(TelemetrySample {
            ts: s.ts,
            row_id,
            fields,
        });
    }

    // 16. Schema columns.
    if let Some(cols) = &schema_columns {
        check_schema_columns(cols, source_table, schema_hash)?;
    }

    if let Some(p) = prev_batch_seq
        && p >= batch_seq
    {
        return Err(Rejection::new(
            RejectionCode::SeqRangeMismatch,
            format!("prev_batch_seq {p} is not below batch_seq {batch_seq}"),
        ));
    }

    Ok(TelemetryBatch {
        batch_id: batch_id.to_ascii_lowercase(),
        batch_seq,
        prev_batch_seq,
        source_table: source_table.to_owned(),
        schema_hash: schema_hash.to_owned(),
        schema_columns,
        cursor_start_ts: cursor_start,
        cursor_end_ts: cursor_end,
        rows,
    })
}

/// Code 13: a present `row_id` is a non-empty string of at most 1,024 bytes.
fn row_id(ctx: Ctx<'_>, v: &Json, loc: &Loc<'_>) -> Result<String, Rejection> {
    let Some(s) = v.as_str() else {
        return Err(ctx.wrong(RejectionCode::InvalidRowId, loc, "a string", v));
    };
    if s.is_empty() || s.len() > MAX_ROW_ID_BYTES {
        return Err(Rejection::new(
            RejectionCode::InvalidRowId,
            format!("{loc}: {} bytes, must be 1 to {MAX_ROW_ID_BYTES}", s.len()),
        ));
    }
    Ok(s.to_owned())
}
