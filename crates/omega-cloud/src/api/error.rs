//! The one error type of the HTTP API (`cloud.md` §18.2): each variant maps to a status and
//! an error code, and renders as `{"error": {"code", "message"}}`. A 500 (and a 503) never
//! carries internals: the detail is logged with a reference id that the message names.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use uuid::Uuid;

use crate::controls::ControlError;
use crate::lineage::ops::RowsError;
use crate::schema_review::decide::ReviewError;
use crate::store::StoreError;

/// An API error: status code, error code and message.
#[derive(Debug)]
pub enum ApiError {
    /// 400 `invalid_request`: a malformed parameter, path id or body.
    InvalidRequest(String),
    /// 401 `unauthorized`: missing or wrong bearer token.
    Unauthorized,
    /// 404 with a code (`not_found`, `no_mirror`).
    NotFound {
        /// Error code.
        code: &'static str,
        /// Message.
        message: String,
    },
    /// 405 `method_not_allowed`: the route exists, not with this method.
    MethodNotAllowed,
    /// 409 with a conflict code (`review_not_pending`, `column_type_conflict`, …).
    Conflict {
        /// Error code.
        code: &'static str,
        /// Message.
        message: String,
    },
    /// 422 with a code (`incomplete_column_actions`, `idempotency_key_reused`, …).
    Unprocessable {
        /// Error code.
        code: &'static str,
        /// Message.
        message: String,
    },
    /// 501 `not_implemented`: a route of §18 whose backend does not exist yet.
    NotImplemented(&'static str),
    /// 503 `store_unavailable`; the detail is logged, not returned.
    StoreUnavailable(String),
    /// 500 `internal`; the detail is logged, not returned.
    Internal(String),
}

impl ApiError {
    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::NotFound {
            code: "not_found",
            message: message.into(),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The error code of §18.2.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidRequest(_) => "invalid_request",
            ApiError::Unauthorized => "unauthorized",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::NotFound { code, .. }
            | ApiError::Conflict { code, .. }
            | ApiError::Unprocessable { code, .. } => code,
            ApiError::NotImplemented(_) => "not_implemented",
            ApiError::StoreUnavailable(_) => "store_unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let code = self.code();
        let message = match self {
            ApiError::InvalidRequest(m)
            | ApiError::NotFound { message: m, .. }
            | ApiError::Conflict { message: m, .. }
            | ApiError::Unprocessable { message: m, .. } => m,
            ApiError::Unauthorized => "a valid bearer token is required".to_string(),
            ApiError::MethodNotAllowed => "this route does not take this method".to_string(),
            ApiError::NotImplemented(what) => {
                format!("{what} is not implemented by this version of the cloud")
            }
            ApiError::StoreUnavailable(detail) => {
                let reference = Uuid::now_v7();
                tracing::warn!(%reference, detail, "API: store unavailable");
                format!("the store is unavailable (log reference {reference})")
            }
            ApiError::Internal(detail) => {
                let reference = Uuid::now_v7();
                tracing::error!(%reference, detail, "API: internal error");
                format!("internal error (log reference {reference})")
            }
        };
        (
            status,
            Json(json!({ "error": { "code": code, "message": message } })),
        )
            .into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if e.is_transient() {
            ApiError::StoreUnavailable(e.to_string())
        } else {
            ApiError::Internal(e.to_string())
        }
    }
}

impl From<ReviewError> for ApiError {
    fn from(e: ReviewError) -> Self {
        let code = e.code();
        match e {
            ReviewError::Store(s) => s.into(),
            ReviewError::NotFound(_) => ApiError::NotFound {
                code,
                message: e.to_string(),
            },
            ReviewError::InvalidRequest(m) => ApiError::InvalidRequest(m),
            ReviewError::NotPending(_)
            | ReviewError::ColumnsUnknown
            | ReviewError::ColumnTypeConflict { .. } => ApiError::Conflict {
                code,
                message: e.to_string(),
            },
            ReviewError::IncompleteColumnActions(_)
            | ReviewError::KeyColumnNotMirrored(_)
            | ReviewError::InvalidColumnName(_) => ApiError::Unprocessable {
                code,
                message: e.to_string(),
            },
        }
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::Store(s) => s.into(),
            ControlError::NotFound { .. } => ApiError::not_found(e.to_string()),
            ControlError::NotOperatorPaused { .. } => ApiError::Conflict {
                code: "not_operator_paused",
                message: e.to_string(),
            },
        }
    }
}

impl From<RowsError> for ApiError {
    fn from(e: RowsError) -> Self {
        match e {
            RowsError::Store(s) => s.into(),
            RowsError::NoLineage { .. } => ApiError::not_found(e.to_string()),
            RowsError::NoMirror { .. } => ApiError::NotFound {
                code: "no_mirror",
                message: e.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn review_errors_map_to_the_statuses_of_section_18() {
        let cases = [
            (
                ReviewError::NotPending("approved"),
                409,
                "review_not_pending",
            ),
            (ReviewError::ColumnsUnknown, 409, "columns_unknown"),
            (
                ReviewError::IncompleteColumnActions(vec!["a".into()]),
                422,
                "incomplete_column_actions",
            ),
            (
                ReviewError::InvalidColumnName("x".into()),
                422,
                "invalid_column_name",
            ),
            (ReviewError::NotFound("x".into()), 404, "not_found"),
            (
                ReviewError::InvalidRequest("x".into()),
                400,
                "invalid_request",
            ),
        ];
        for (e, status, code) in cases {
            let a = ApiError::from(e);
            assert_eq!((a.status().as_u16(), a.code()), (status, code));
        }
    }

    #[test]
    fn an_internal_error_does_not_leak_its_detail() {
        let r = ApiError::Internal("password=hunter2 at /secret/path".into()).into_response();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = futures_body(r);
        assert!(!body.contains("hunter2"), "{body}");
        assert!(body.contains("\"internal\""), "{body}");
        assert!(body.contains("log reference"), "{body}");
    }

    fn futures_body(r: Response) -> String {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let bytes = rt
            .block_on(axum::body::to_bytes(r.into_body(), 1 << 20))
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }
}
