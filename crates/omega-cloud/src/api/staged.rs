//! `GET /v1/lineages/{id}/staged` and `POST /v1/lineages/{id}/purge-staged` (`cloud.md` §18):
//! a lineage's staging, a page at a time, and the purge of its rejected hashes.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::routes::{IdPath, Params, body, lineage_by_id, page_params, params, path_id, uuid};
use super::{ApiError, ApiState};
use crate::staging::ops::{self, PurgeError};
use crate::{view, with_store};

/// `GET /v1/lineages/{id}/staged?limit=&cursor=`: staged rows (in version order), then staged
/// samples, `{"lineage_id", "items", "next_cursor"}`.
pub(super) async fn staged(
    State(state): State<ApiState>,
    id: IdPath,
    q: Params,
) -> Result<Response, ApiError> {
    let p = params(q)?;
    let (limit, offset) = page_params(&p)?;
    let l = lineage_by_id(&state, &path_id(id)?).await?;
    let page = with_store!(&state.inner.store, s => {
        ops::page(s, &l.device_id, &l.source_table, offset, limit).await
    })?;
    let items: Vec<Value> = page
        .rows
        .iter()
        .map(view::staged_row)
        .chain(page.samples.iter().map(view::staged_sample))
        .collect();
    Ok(Json(json!({
        "lineage_id": l.id.to_string(),
        "items": items,
        "next_cursor": page.next.map(|n| n.to_string()),
    }))
    .into_response())
}

/// The body of `POST /v1/lineages/{id}/purge-staged`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct PurgeBody {
    schema_hash: Option<String>,
}

/// `POST /v1/lineages/{id}/purge-staged` (`{"schema_hash"?}`) **[Omega]**: 200
/// `{"purged_rows", "purged_bytes", "lineage"}`; 409 `nothing_to_purge` when no staged entry
/// of the lineage has a rejected hash.
pub(super) async fn purge_staged(
    State(state): State<ApiState>,
    id: IdPath,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let id = uuid(&path_id(id)?)?;
    let req: PurgeBody = body(b)?;
    if req.schema_hash.as_deref().is_some_and(str::is_empty) {
        return Err(ApiError::InvalidRequest(
            "`schema_hash` must not be empty".into(),
        ));
    }
    let policy = state.inner.policy;
    let out = with_store!(&state.inner.store, s => {
        ops::purge(s, &policy, id, req.schema_hash.as_deref()).await
    })?;
    Ok(Json(json!({
        "purged_rows": out.entries,
        "purged_bytes": out.bytes,
        "lineage": view::lineage(&out.lineage),
    }))
    .into_response())
}

impl From<PurgeError> for ApiError {
    fn from(e: PurgeError) -> Self {
        match e {
            PurgeError::Store(s) => s.into(),
            PurgeError::NotFound(_) => ApiError::not_found(e.to_string()),
            PurgeError::NothingToPurge(m) => ApiError::Conflict {
                code: "nothing_to_purge",
                message: m,
            },
        }
    }
}
