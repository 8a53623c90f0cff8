//! `Idempotency-Key` on POST routes (`cloud.md` §18.3), kept **in memory**.
//!
//! The store has an `omega_idempotency` table, but no store API for it yet; until it has,
//! keys live in this process only: they do not survive a restart and are not shared between
//! several `serve` processes behind one load balancer. Within one process the behaviour is
//! §18.3's: the same key with the same method, path and body within 24 h answers the stored
//! status and body without running the request again; the same key with another method, path
//! or body answers 422 `idempotency_key_reused`. Responses with a 5xx status are not stored
//! (a retry may succeed). Concurrent requests with one key run one at a time: the second
//! waits for the first and then gets its stored answer. At most [`MAX_KEYS`] keys are kept
//! (the oldest goes first).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::ApiState;
use super::error::ApiError;

/// How long a key is remembered.
pub const TTL: Duration = Duration::from_secs(24 * 3600);

/// Largest request body the API reads.
pub(super) const MAX_BODY: usize = 1 << 20;

/// Largest stored response body (larger ones are not stored).
const MAX_STORED: usize = 1 << 20;

/// The header.
pub const HEADER: &str = "idempotency-key";

#[derive(Debug, Clone)]
struct Stored {
    fingerprint: [u8; 32],
    status: StatusCode,
    content_type: Option<HeaderValue>,
    body: Bytes,
}

/// Most keys kept at once.
pub const MAX_KEYS: usize = 100_000;

type Cell = Arc<tokio::sync::Mutex<Option<Stored>>>;

#[derive(Debug)]
struct Slot {
    first_used: Instant,
    cell: Cell,
}

/// Keys and their stored responses.
#[derive(Debug, Default)]
pub struct IdempotencyCache {
    entries: Mutex<HashMap<String, Slot>>,
}

impl IdempotencyCache {
    /// The cell of a key, new if the key is unknown or expired. Its lock serialises the
    /// requests that use the key.
    fn slot(&self, key: &str) -> Cell {
        let mut m = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        m.retain(|_, s| now.duration_since(s.first_used) < TTL);
        if let Some(s) = m.get(key) {
            return s.cell.clone();
        }
        if m.len() >= MAX_KEYS
            && let Some(oldest) = m
                .iter()
                .min_by_key(|(_, s)| s.first_used)
                .map(|(k, _)| k.clone())
        {
            m.remove(&oldest);
        }
        let cell = Cell::default();
        m.insert(
            key.to_string(),
            Slot {
                first_used: now,
                cell: cell.clone(),
            },
        );
        cell
    }
}

fn fingerprint(method: &Method, path: &str, body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(method.as_str().as_bytes());
    h.update([0]);
    h.update(path.as_bytes());
    h.update([0]);
    h.update(body);
    h.finalize().into()
}

/// Middleware: replays or records POST responses by `Idempotency-Key`.
pub(super) async fn layer(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let Some(key) = req.headers().get(HEADER) else {
        return next.run(req).await;
    };
    let key = match key.to_str() {
        Ok(k) if (1..=255).contains(&k.chars().count()) => k.to_string(),
        _ => {
            return ApiError::InvalidRequest(
                "Idempotency-Key must be 1 to 255 visible ASCII characters".into(),
            )
            .into_response();
        }
    };
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::InvalidRequest(format!("request body over {MAX_BODY} bytes"))
                .into_response();
        }
    };
    let fp = fingerprint(&parts.method, parts.uri.path(), &bytes);
    let cell = state.inner.idempotency.slot(&key);
    let mut slot = cell.lock().await;
    if let Some(stored) = &*slot {
        if stored.fingerprint != fp {
            return ApiError::Unprocessable {
                code: "idempotency_key_reused",
                message: "this Idempotency-Key was used with another method, path or body".into(),
            }
            .into_response();
        }
        let mut r = (stored.status, stored.body.clone()).into_response();
        if let Some(ct) = &stored.content_type {
            r.headers_mut().insert(header::CONTENT_TYPE, ct.clone());
        }
        return r;
    }
    let resp = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    if resp.status().is_server_error() {
        return resp;
    }
    let (rparts, rbody) = resp.into_response().into_parts();
    let Ok(rbytes) = axum::body::to_bytes(rbody, MAX_STORED).await else {
        return ApiError::Internal("response body over the idempotency limit".into())
            .into_response();
    };
    *slot = Some(Stored {
        fingerprint: fp,
        status: rparts.status,
        content_type: rparts.headers.get(header::CONTENT_TYPE).cloned(),
        body: rbytes.clone(),
    });
    Response::from_parts(rparts, Body::from(rbytes))
}
