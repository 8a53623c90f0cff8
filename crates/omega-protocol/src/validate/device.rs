//! Device-to-cloud payloads: the common steps of §14.1 (codes 2–6) and dispatch by suffix.

use super::fields::{Ctx, Loc};
use super::{Rejection, RejectionCode, rows, telemetry};
use crate::FORMAT_VERSION;
use crate::ids::normalize_uuid_v7;
use crate::json::{Json, parse_lenient};
use crate::limits::MAX_PAYLOAD_BYTES;
use crate::message::{ControlAck, RowBatch, SchemaObservation, TelemetryBatch};
use crate::topic::Suffix;

/// Top-level keys a device-to-cloud payload must not have (§3.2).
pub const TENANT_KEYS: [&str; 4] = ["device_id", "org_id", "project_id", "fleet_id"];

/// A decoded and validated device-to-cloud payload.
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceMessage {
    /// From `sync/rows/batch`.
    RowBatch(RowBatch),
    /// From `sync/telemetry/batch`.
    TelemetryBatch(TelemetryBatch),
    /// From `sync/schema/observe`.
    SchemaObservation(SchemaObservation),
    /// From `sync/ingest/ack`.
    ControlAck(ControlAck),
}

/// Decodes and validates the payload of a device-to-cloud topic (§14.1, codes 2–16, in table
/// order, stopping at the first failure). A cloud-to-device or reserved `suffix` is
/// `unknown_topic`. Never panics, whatever the bytes.
pub fn decode_device_message(suffix: Suffix, payload: &[u8]) -> Result<DeviceMessage, Rejection> {
    if !suffix.is_device_to_cloud() {
        return Err(Rejection::new(
            RejectionCode::UnknownTopic,
            format!("suffix {suffix} is not a device-to-cloud topic"),
        ));
    }
    // 2. malformed_json: UTF-8, JSON, object, unique keys.
    let parsed = parse_lenient(payload)
        .map_err(|e| Rejection::new(RejectionCode::MalformedJson, format!("payload: {e}")))?;
    let ctx = Ctx {
        bad: &parsed.bad_numbers,
    };
    let root = &parsed.value;
    let result = (|| {
        let obj = top_object(root)?;
        // 3. payload_too_large, except a batch of exactly one row.
        let is_batch = matches!(suffix, Suffix::RowsBatch | Suffix::TelemetryBatch);
        let one_row = root
            .get("rows")
            .and_then(Json::as_array)
            .is_some_and(|r| r.len() == 1);
        if payload.len() > MAX_PAYLOAD_BYTES && !(is_batch && one_row) {
            return Err(Rejection::new(
                RejectionCode::PayloadTooLarge,
                format!("payload: {} bytes, over {MAX_PAYLOAD_BYTES}", payload.len()),
            ));
        }
        common(ctx, obj)?;
        Ok(match suffix {
            Suffix::RowsBatch => DeviceMessage::RowBatch(rows::validate(ctx, obj)?),
            Suffix::TelemetryBatch => DeviceMessage::TelemetryBatch(telemetry::validate(ctx, obj)?),
            Suffix::SchemaObserve => DeviceMessage::SchemaObservation(observation(ctx, obj)?),
            _ => DeviceMessage::ControlAck(ack(ctx, obj)?),
        })
    })();
    result.map_err(|r| with_batch_id(r, root, suffix))
}

/// Validates a parsed row batch (§14.1 codes 2, 4–16; the size check needs the bytes and is
/// [`decode_device_message`]'s).
pub fn validate_row_batch(json: &Json) -> Result<RowBatch, Rejection> {
    let ctx = Ctx { bad: &[] };
    let run = || {
        let obj = top_object(json)?;
        common(ctx, obj)?;
        rows::validate(ctx, obj)
    };
    run().map_err(|r| with_batch_id(r, json, Suffix::RowsBatch))
}

/// Validates a parsed telemetry batch (§14.1 codes 2, 4–16).
pub fn validate_telemetry_batch(json: &Json) -> Result<TelemetryBatch, Rejection> {
    let ctx = Ctx { bad: &[] };
    let run = || {
        let obj = top_object(json)?;
        common(ctx, obj)?;
        telemetry::validate(ctx, obj)
    };
    run().map_err(|r| with_batch_id(r, json, Suffix::TelemetryBatch))
}

fn top_object(root: &Json) -> Result<&[(String, Json)], Rejection> {
    root.as_object().ok_or_else(|| {
        Rejection::new(
            RejectionCode::MalformedJson,
            format!("payload: expected an object, got {}", root.kind()),
        )
    })
}

/// Codes 4–6: tenant keys, then `format_version`.
fn common(ctx: Ctx<'_>, obj: &[(String, Json)]) -> Result<(), Rejection> {
    if let Some((k, _)) = obj.iter().find(|(k, _)| TENANT_KEYS.contains(&k.as_str())) {
        return Err(Rejection::new(
            RejectionCode::EnvelopeUnstrippedTenantFields,
            format!("{k}: tenant fields must not be sent by a device"),
        ));
    }
    check_format_version(ctx, obj)
}

/// Codes 5–6 for any payload: missing, not an integer or < 1 → `invalid_format_version`;
/// above 1 → `unsupported_format_version`.
pub(super) fn check_format_version(ctx: Ctx<'_>, obj: &[(String, Json)]) -> Result<(), Rejection> {
    let at = Loc::Root.key("format_version");
    let Some(v) = crate::json::member(obj, "format_version") else {
        return Err(Rejection::new(
            RejectionCode::InvalidFormatVersion,
            "format_version: missing",
        ));
    };
    match v.as_i64() {
        Some(FORMAT_VERSION) => Ok(()),
        Some(n) if n > FORMAT_VERSION => Err(Rejection::new(
            RejectionCode::UnsupportedFormatVersion,
            format!("format_version: {n} is newer than {FORMAT_VERSION}"),
        )),
        Some(n) => Err(Rejection::new(
            RejectionCode::InvalidFormatVersion,
            format!("format_version: {n} is not a version"),
        )),
        None => Err(ctx.wrong(RejectionCode::InvalidFormatVersion, &at, "an integer", v)),
    }
}

fn with_batch_id(mut r: Rejection, root: &Json, suffix: Suffix) -> Rejection {
    if matches!(suffix, Suffix::RowsBatch | Suffix::TelemetryBatch) {
        r.batch_id = root
            .get("batch_id")
            .and_then(Json::as_str)
            .and_then(normalize_uuid_v7);
    }
    r
}

/// A schema observation (§10): code 7, then 14.
fn observation(ctx: Ctx<'_>, obj: &[(String, Json)]) -> Result<SchemaObservation, Rejection> {
    let at = Loc::Root;
    let o = SchemaObservation {
        source_table: ctx.name(obj, &at, "source_table")?.to_owned(),
        schema_hash: ctx.hash(obj, &at, "schema_hash")?.to_owned(),
        observed_at: ctx.time(obj, &at, "observed_at")?,
    };
    ctx.first_bad_number().map_or(Ok(o), Err)
}

/// A control ACK (§11): code 7 (a `control_id` that is not a UUIDv7 is a field of the wrong
/// form), then 14.
fn ack(ctx: Ctx<'_>, obj: &[(String, Json)]) -> Result<ControlAck, Rejection> {
    let id = ctx.str(obj, &Loc::Root, "control_id")?;
    let control_id = normalize_uuid_v7(id).ok_or_else(|| {
        Rejection::new(
            RejectionCode::MalformedJson,
            format!("control_id: {id:?} is not a UUIDv7"),
        )
    })?;
    ctx.first_bad_number()
        .map_or(Ok(ControlAck { control_id }), Err)
}
