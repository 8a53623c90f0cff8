//! Route handlers. Each reads or writes through the crate's operations (`lineage::ops`,
//! `schema_review::ops`, `quarantine`) and answers with the JSON of [`crate::view`].

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{ApiError, ApiState};
use crate::lineage::ops::RowsQuery;
use crate::lineage::{Lineage, LineageStatus};
use crate::quarantine::QuarantineFilter;
use crate::schema_review::decide::{ApproveRequest, ColumnRequest};
use crate::schema_review::{ColumnAction, ReviewStatus};
use crate::store::{LineageFilter, Store};
use crate::{lineage, quarantine, schema_review, view, with_store};

pub(super) type Params = Result<Query<HashMap<String, String>>, QueryRejection>;

pub(super) fn params(p: Params) -> Result<HashMap<String, String>, ApiError> {
    p.map(|Query(m)| m)
        .map_err(|e| ApiError::InvalidRequest(e.body_text()))
}

pub(super) type IdPath = Result<Path<String>, PathRejection>;

pub(super) fn path_id(p: IdPath) -> Result<String, ApiError> {
    p.map(|Path(id)| id)
        .map_err(|e| ApiError::InvalidRequest(e.body_text()))
}

pub(super) fn uuid(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::InvalidRequest(format!("`{id}` is not a UUID")))
}

fn flag(p: &HashMap<String, String>, name: &str) -> Result<bool, ApiError> {
    match p.get(name).map(String::as_str) {
        None | Some("false" | "0") => Ok(false),
        Some("true" | "1" | "") => Ok(true),
        Some(v) => Err(ApiError::InvalidRequest(format!(
            "`{name}` must be true or false, not `{v}`"
        ))),
    }
}

/// `limit` (1–1000, default 100) and `cursor` (the opaque position returned as
/// `next_cursor`, an offset) of a list (§18.4).
pub(super) fn page_params(p: &HashMap<String, String>) -> Result<(usize, usize), ApiError> {
    let limit = match p.get("limit") {
        None => 100,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => {
                return Err(ApiError::InvalidRequest(format!(
                    "`limit` must be 1 to 1000, not `{l}`"
                )));
            }
        },
    };
    let start = match p.get("cursor") {
        None => 0,
        Some(c) => c
            .parse::<usize>()
            .map_err(|_| ApiError::InvalidRequest(format!("`cursor` `{c}` is not valid")))?,
    };
    Ok((limit, start))
}

/// One page of a whole list (§18.4), see [`page_params`].
fn page(p: &HashMap<String, String>, items: Vec<Value>) -> Result<Value, ApiError> {
    let (limit, start) = page_params(p)?;
    let end = start.saturating_add(limit).min(items.len());
    let next = (end < items.len()).then(|| end.to_string());
    let items: Vec<Value> = items
        .into_iter()
        .skip(start)
        .take(end.saturating_sub(start))
        .collect();
    Ok(json!({ "items": items, "next_cursor": next }))
}

async fn ping(state: &ApiState) -> Result<(), crate::store::StoreError> {
    with_store!(&state.inner.store, s => {
        let tx = s.begin().await?;
        let _ = crate::store::StoreTx::rollback(tx).await;
        Ok(())
    })
}

/// `GET /v1/health`.
pub(super) async fn health(State(state): State<ApiState>) -> Response {
    let store = ping(&state).await;
    let broker = match &state.inner.stats {
        Some(s) if s.subscribed.load(Ordering::Relaxed) > 0 => "connected",
        Some(_) => "disconnected",
        None => "unknown",
    };
    if let Err(e) = &store {
        tracing::warn!(error = %e, "health: store ping failed");
    }
    let ok = store.is_ok();
    let body = json!({
        "status": if ok { "ok" } else { "degraded" },
        "store": if ok { "ok" } else { "unavailable" },
        "broker": broker,
        "version": env!("CARGO_PKG_VERSION"),
    });
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// `GET /v1/lineages?device=&table=&status=`.
pub(super) async fn lineages(
    State(state): State<ApiState>,
    q: Params,
) -> Result<Response, ApiError> {
    let p = params(q)?;
    let status = match p.get("status") {
        None => None,
        Some(s) => Some(LineageStatus::parse(s).ok_or_else(|| {
            ApiError::InvalidRequest(format!("`status` must be active or paused, not `{s}`"))
        })?),
    };
    let filter = LineageFilter {
        device_id: p.get("device").cloned(),
        source_table: p.get("table").cloned(),
        status,
    };
    let list = with_store!(&state.inner.store, s => lineage::ops::list(s, &filter).await)?;
    let items = list.iter().map(view::lineage).collect();
    Ok(Json(page(&p, items)?).into_response())
}

pub(super) async fn lineage_by_id(state: &ApiState, id: &str) -> Result<Lineage, ApiError> {
    let id = uuid(id)?;
    let all = LineageFilter::default();
    let all = with_store!(&state.inner.store, s => lineage::ops::list(s, &all).await)?;
    all.into_iter()
        .find(|l| l.id == id)
        .ok_or_else(|| ApiError::not_found(format!("no lineage {id}")))
}

/// `GET /v1/lineages/{id}`: the lineage object. Schemas, pending controls and snapshots have
/// no store read yet and are answered as empty lists.
pub(super) async fn lineage(
    State(state): State<ApiState>,
    id: IdPath,
) -> Result<Response, ApiError> {
    let l = lineage_by_id(&state, &path_id(id)?).await?;
    Ok(Json(json!({
        "lineage": view::lineage(&l),
        "schemas": [],
        "pending_controls": [],
        "snapshots": [],
    }))
    .into_response())
}

/// `GET /v1/lineages/{id}/rows?include_deleted=`: mirror rows, or the samples of a telemetry
/// lineage.
pub(super) async fn rows(
    State(state): State<ApiState>,
    id: IdPath,
    q: Params,
) -> Result<Response, ApiError> {
    let p = params(q)?;
    let include_deleted = flag(&p, "include_deleted")?;
    let l = lineage_by_id(&state, &path_id(id)?).await?;
    let query = RowsQuery {
        include_deleted,
        limit: None,
    };
    let rows = with_store!(&state.inner.store, s => {
        crate::ts_read::read(s, &l.device_id, &l.source_table, query).await
    })?;
    let mut v = view::rows_view(&rows);
    let items = match v.get_mut("items").map(Value::take) {
        Some(Value::Array(a)) => a,
        _ => Vec::new(),
    };
    let paged = page(&p, items)?;
    if let Value::Object(m) = &mut v {
        m.insert("items".into(), paged["items"].clone());
        m.insert("next_cursor".into(), paged["next_cursor"].clone());
    }
    Ok(Json(v).into_response())
}

/// `GET /v1/reviews?status=`.
pub(super) async fn reviews(
    State(state): State<ApiState>,
    q: Params,
) -> Result<Response, ApiError> {
    let p = params(q)?;
    let status = match p.get("status") {
        None => None,
        Some(s) => Some(ReviewStatus::parse(s).ok_or_else(|| {
            ApiError::InvalidRequest(format!("`status` `{s}` is not a review status"))
        })?),
    };
    let list = with_store!(&state.inner.store, s => schema_review::ops::list(s, status).await)?;
    let items = list.iter().map(view::review).collect();
    Ok(Json(page(&p, items)?).into_response())
}

/// `GET /v1/reviews/{id}`.
pub(super) async fn review(
    State(state): State<ApiState>,
    id: IdPath,
) -> Result<Response, ApiError> {
    let id = uuid(&path_id(id)?)?;
    let d = with_store!(&state.inner.store, s => schema_review::ops::show(s, id).await)?;
    Ok(Json(view::review_detail(&d)).into_response())
}

/// The body of `POST /v1/reviews/{id}/approve` (§8.2).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct ApproveBody {
    columns: Vec<ColumnBody>,
    all_mirror: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ColumnBody {
    name: String,
    action: String,
    #[serde(rename = "as")]
    as_name: Option<String>,
}

/// The body of `POST /v1/reviews/{id}/reject` (§8.3).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RejectBody {
    reason: Option<String>,
}

pub(super) fn body<T: for<'de> Deserialize<'de> + Default>(
    b: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let b = b.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
    if b.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&b).map_err(|e| ApiError::InvalidRequest(format!("request body: {e}")))
}

/// `POST /v1/reviews/{id}/approve`: 200 with the review.
pub(super) async fn approve(
    State(state): State<ApiState>,
    id: IdPath,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let id = uuid(&path_id(id)?)?;
    let req: ApproveBody = body(b)?;
    let mut columns = Vec::with_capacity(req.columns.len());
    for c in req.columns {
        let action = match c.action.as_str() {
            "mirror" => ColumnAction::Mirror,
            "ignore" => ColumnAction::Ignore,
            other => {
                return Err(ApiError::InvalidRequest(format!(
                    "column `{}`: action must be mirror or ignore, not `{other}`",
                    c.name
                )));
            }
        };
        columns.push(ColumnRequest {
            name: c.name,
            action,
            as_name: c.as_name,
        });
    }
    let req = ApproveRequest {
        columns,
        all_mirror: req.all_mirror,
    };
    let policy = state.inner.policy;
    let (review, _replayed) = with_store!(&state.inner.store, s => {
        schema_review::ops::approve(s, &policy, id, &req).await
    })?;
    Ok(Json(view::review(&review)).into_response())
}

/// `POST /v1/reviews/{id}/reject`: 200 with the review.
pub(super) async fn reject(
    State(state): State<ApiState>,
    id: IdPath,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let id = uuid(&path_id(id)?)?;
    let req: RejectBody = body(b)?;
    let review = with_store!(&state.inner.store, s => {
        schema_review::ops::reject(s, id, req.reason.as_deref()).await
    })?;
    Ok(Json(view::review(&review)).into_response())
}

/// `GET /v1/quarantine?device=&code=&since=` (newest first; `since` is RFC 3339).
pub(super) async fn quarantine(
    State(state): State<ApiState>,
    q: Params,
) -> Result<Response, ApiError> {
    let p = params(q)?;
    let since = match p.get("since") {
        None => None,
        Some(t) => Some(omega_protocol::time::parse_rfc3339(t).map_err(|_| {
            ApiError::InvalidRequest(format!("`since` must be an RFC 3339 time, not `{t}`"))
        })?),
    };
    let filter = QuarantineFilter {
        device_id: p.get("device").cloned(),
        code: p.get("code").cloned(),
        limit: None,
    };
    let list = with_store!(&state.inner.store, s => quarantine::list(s, &filter).await)?;
    let items = list
        .iter()
        .filter(|q| since.is_none_or(|t| q.received_at >= t))
        .map(view::quarantine)
        .collect();
    Ok(Json(page(&p, items)?).into_response())
}

/// The body of `POST /v1/lineages/{id}/pause`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct PauseBody {
    reason: Option<String>,
}

fn control_key(state: &ApiState) -> Result<&omega_protocol::signing::ControlKey, ApiError> {
    state
        .inner
        .control_key
        .get()
        .ok_or(ApiError::NotImplemented(
            "pause and resume without a control-signing key",
        ))
}

fn control_json(out: &crate::controls::ControlOutcome) -> Value {
    json!({
        "lineage": view::lineage(&out.lineage),
        "control_id": out.control_id.map(|c| c.to_string()),
    })
}

/// `POST /v1/lineages/{id}/pause` (`{"reason"?}`): 200 `{"lineage", "control_id"}`.
pub(super) async fn pause(
    State(state): State<ApiState>,
    id: IdPath,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let key = control_key(&state)?;
    let l = lineage_by_id(&state, &path_id(id)?).await?;
    let req: PauseBody = body(b)?;
    let out = with_store!(&state.inner.store, s => {
        crate::controls::operator_pause(
            s,
            key,
            &l.device_id,
            &l.source_table,
            req.reason.as_deref(),
        )
        .await
    })?;
    Ok(Json(control_json(&out)).into_response())
}

/// `POST /v1/lineages/{id}/resume`: 200 `{"lineage", "control_id" | null}`; 409
/// `not_operator_paused`.
pub(super) async fn resume(
    State(state): State<ApiState>,
    id: IdPath,
) -> Result<Response, ApiError> {
    let key = control_key(&state)?;
    let l = lineage_by_id(&state, &path_id(id)?).await?;
    let out = with_store!(&state.inner.store, s => {
        crate::controls::operator_resume(s, key, &l.device_id, &l.source_table).await
    })?;
    Ok(Json(control_json(&out)).into_response())
}

/// `POST /v1/lineages/{id}/resnapshot` **[Omega]**: 202 `{"control_id"}`, a signed
/// `resnapshot_table` queued for the device.
pub(super) async fn resnapshot(
    State(state): State<ApiState>,
    id: IdPath,
) -> Result<Response, ApiError> {
    let key = control_key(&state)?;
    let l = lineage_by_id(&state, &path_id(id)?).await?;
    let out = with_store!(&state.inner.store, s => {
        crate::controls::operator_resnapshot(s, key, &l.device_id, &l.source_table).await
    })?;
    let body = json!({ "control_id": out.control_id.map(|c| c.to_string()) });
    Ok((axum::http::StatusCode::ACCEPTED, Json(body)).into_response())
}
