//! `POST /v1/jitr` (`cloud.md` §16.2): open like health (devices enroll before they hold a
//! token). The body and the `Idempotency-Key` go to [`crate::jitr::JitrService`], which keeps
//! its answers in the store for the 24 h replay, so this route is outside the in-memory
//! idempotency layer of the other POST routes.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{ApiError, ApiState};
use crate::jitr::check::JitrError;
use crate::with_store;

/// Handles `POST /v1/jitr`; 501 `not_implemented` when `cloud.yaml` has no `jitr` block.
pub(super) async fn enroll(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(service) = state.inner.jitr.get() else {
        return ApiError::NotImplemented("POST /v1/jitr without a `jitr` block in cloud.yaml")
            .into_response();
    };
    let key = match headers.get(super::idempotency::HEADER).map(|v| v.to_str()) {
        None => None,
        Some(Ok(k)) if (1..=255).contains(&k.len()) => Some(k.to_string()),
        Some(_) => {
            return ApiError::InvalidRequest(
                "Idempotency-Key must be 1 to 255 visible ASCII characters".into(),
            )
            .into_response();
        }
    };
    let result =
        with_store!(&state.inner.store, s => service.enroll(s, key.as_deref(), &body).await);
    match result {
        Ok(v) => (StatusCode::OK, Json(v)).into_response(),
        Err(JitrError::Store(e)) => ApiError::from(e).into_response(),
        Err(JitrError::Signing(m)) => ApiError::Internal(m).into_response(),
        Err(e) => {
            tracing::info!(code = e.code(), error = %e, "JITR: enrollment refused");
            let status =
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (
                status,
                Json(json!({"error": {"code": e.code(), "message": e.to_string()}})),
            )
                .into_response()
        }
    }
}
