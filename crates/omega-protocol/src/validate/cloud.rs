//! Cloud-to-device payloads: control envelopes (§12) and receipts (`receipts.md` §4).
//!
//! The device drops what fails here (`agent.md` §13.1) and logs the rejection's message; the
//! codes are reused for their meaning, not sent anywhere. Signatures are checked separately
//! with [`crate::signing::ControlVerifier`] on the kept raw object.

use super::device::check_format_version;
use super::fields::{Ctx, Loc, malformed};
use super::{Rejection, RejectionCode};
use crate::ids::normalize_uuid_v7;
use crate::json::{Json, member, parse};
use crate::limits::MAX_PAYLOAD_BYTES;
use crate::message::{
    ControlEnvelope, ControlKind, Receipt, ReceiptLineage, RejectedBatch, Signature,
    SnapshotComplete,
};

type Members = [(String, Json)];

fn parse_object(payload: &[u8], max_bytes: usize) -> Result<Json, Rejection> {
    if payload.len() > max_bytes {
        return Err(Rejection::new(
            RejectionCode::PayloadTooLarge,
            format!("payload: {} bytes, over {max_bytes}", payload.len()),
        ));
    }
    let json = parse(payload).map_err(|e| {
        let code = if e.is_number_error() {
            RejectionCode::InvalidNumberEncoding
        } else {
            RejectionCode::MalformedJson
        };
        Rejection::new(code, format!("payload: {e}"))
    })?;
    if json.as_object().is_none() {
        return Err(Rejection::new(
            RejectionCode::MalformedJson,
            format!("payload: expected an object, got {}", json.kind()),
        ));
    }
    check_format_version(Ctx { bad: &[] }, json.as_object().unwrap_or_default())?;
    Ok(json)
}

fn uuid(ctx: Ctx<'_>, obj: &Members, at: &Loc<'_>, key: &str) -> Result<String, Rejection> {
    let s = ctx.str(obj, at, key)?;
    normalize_uuid_v7(s).ok_or_else(|| malformed(&at.key(key), &format!("{s:?} is not a UUIDv7")))
}

fn signature(ctx: Ctx<'_>, obj: &Members) -> Result<Option<Signature>, Rejection> {
    match member(obj, "signature") {
        None => Ok(None),
        Some(v) => Signature::from_json(v).map(Some).ok_or_else(|| {
            ctx.wrong(
                RejectionCode::MalformedJson,
                &Loc::Root.key("signature"),
                "an object with string alg, key_id and value",
                v,
            )
        }),
    }
}

/// Decodes a control envelope (§12.2): at most `max_bytes` (`security.max_payload_bytes`),
/// JSON, `format_version` 1, the fields of its kind. The parsed object is kept in
/// [`ControlEnvelope::raw`] for signature verification. Unknown kinds decode as
/// [`ControlKind::Other`].
pub fn decode_control(payload: &[u8], max_bytes: usize) -> Result<ControlEnvelope, Rejection> {
    let json = parse_object(payload, max_bytes)?;
    let obj = json.as_object().unwrap_or_default();
    let (ctx, at) = (Ctx { bad: &[] }, Loc::Root);
    let control_kind = ControlKind::parse(ctx.name(obj, &at, "control_kind")?);
    let source_table = ctx.opt_str(obj, &at, "source_table")?.map(str::to_owned);
    let server_watermark = ctx.opt_int(obj, &at, "server_watermark", 0)?;
    if control_kind.needs_table() && source_table.is_none() {
        return Err(malformed(&at.key("source_table"), "missing"));
    }
    if control_kind.needs_watermark() && server_watermark.is_none() {
        return Err(malformed(&at.key("server_watermark"), "missing"));
    }
    let envelope = ControlEnvelope {
        control_id: uuid(ctx, obj, &at, "control_id")?,
        control_kind,
        control_seq: ctx.int(obj, &at, "control_seq", 1)?,
        source_table,
        server_watermark,
        reason: ctx.opt_str(obj, &at, "reason")?.map(str::to_owned),
        issued_at: ctx.time(obj, &at, "issued_at")?,
        signature: signature(ctx, obj)?,
        raw: None,
    };
    Ok(ControlEnvelope {
        raw: Some(json),
        ..envelope
    })
}

/// Decodes a receipt (`receipts.md` §4): at most 512 KiB, JSON, `format_version` 1,
/// `issued_at`, and the three arrays (a missing array reads as empty). Each `lineages` entry
/// is a rows entry when it has `journal_epoch`, else a telemetry entry. The parsed object is
/// kept in [`Receipt::raw`].
pub fn decode_receipt(payload: &[u8]) -> Result<Receipt, Rejection> {
    let json = parse_object(payload, MAX_PAYLOAD_BYTES)?;
    let obj = json.as_object().unwrap_or_default();
    let (ctx, at) = (Ctx { bad: &[] }, Loc::Root);
    let issued_at = ctx.time(obj, &at, "issued_at")?;
    let empty: &[Json] = &[];
    let list = |key: &str| match member(obj, key) {
        None => Ok(empty),
        Some(_) => ctx.array(obj, &at, key),
    };

    let mut lineages = Vec::new();
    let l_at = at.key("lineages");
    for (i, e) in list("lineages")?.iter().enumerate() {
        let e_at = l_at.index(i);
        let e = ctx.obj_value(e, &e_at)?;
        let source_table = ctx.name(e, &e_at, "source_table")?.to_owned();
        lineages.push(if member(e, "journal_epoch").is_some() {
            ReceiptLineage::Rows {
                source_table,
                journal_epoch: uuid(ctx, e, &e_at, "journal_epoch")?,
                confirmed_through: ctx.int(e, &e_at, "confirmed_through", 0)?,
            }
        } else {
            ReceiptLineage::Telemetry {
                source_table,
                batch_seq_through: ctx.int(e, &e_at, "batch_seq_through", 0)?,
            }
        });
    }

    let mut snapshots_complete = Vec::new();
    let s_at = at.key("snapshots_complete");
    for (i, e) in list("snapshots_complete")?.iter().enumerate() {
        let e_at = s_at.index(i);
        let e = ctx.obj_value(e, &e_at)?;
        snapshots_complete.push(SnapshotComplete {
            source_table: ctx.name(e, &e_at, "source_table")?.to_owned(),
            snapshot_id: uuid(ctx, e, &e_at, "snapshot_id")?,
        });
    }

    let mut rejected = Vec::new();
    let r_at = at.key("rejected");
    for (i, e) in list("rejected")?.iter().enumerate() {
        let e_at = r_at.index(i);
        let e = ctx.obj_value(e, &e_at)?;
        rejected.push(RejectedBatch {
            batch_id: uuid(ctx, e, &e_at, "batch_id")?,
            source_table: ctx.opt_str(e, &e_at, "source_table")?.map(str::to_owned),
            code: ctx.name(e, &e_at, "code")?.to_owned(),
        });
    }

    Ok(Receipt {
        issued_at,
        lineages,
        snapshots_complete,
        rejected,
        signature: signature(ctx, obj)?,
        raw: Some(json),
    })
}
