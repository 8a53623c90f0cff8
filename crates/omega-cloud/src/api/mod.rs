//! The HTTP API (`cloud.md` §18): JSON over HTTP on `api.listen`.
//!
//! [`router`] builds the routes (tested in process); [`serve_http`] serves them on a listener
//! the caller bound until a shutdown future resolves. Every route but `GET /v1/health` needs
//! `Authorization: Bearer <token>` when a token is configured (`api.token_env`). Errors are one
//! enum, [`ApiError`]. POST routes accept `Idempotency-Key` ([`idempotency`], in memory).
//!
//! The status page `/` answers only clients on a loopback address (no token needed).
//!
//! Routes whose backend does not exist yet (pause and resume without a control key; JITR
//! without a `jitr` block) answer 501 `not_implemented`.

pub mod error;
pub mod idempotency;
mod jitr;
mod metrics;
mod routes;
mod staged;
mod status_page;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

pub use self::error::ApiError;
use omega_protocol::signing::ControlKey;

use self::idempotency::IdempotencyCache;
use crate::ingest::IngestStats;
use crate::policy::Policy;
use crate::store::AnyStore;

/// What the handlers share: the store, the schema policy (approval replays staged rows under
/// it), the bearer token, the ingest counters and the idempotency cache. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    inner: Arc<Inner>,
}

struct Inner {
    store: AnyStore,
    policy: Policy,
    token: Option<String>,
    stats: Option<Arc<IngestStats>>,
    idempotency: IdempotencyCache,
    control_key: std::sync::OnceLock<ControlKey>,
    jitr: std::sync::OnceLock<Arc<crate::jitr::JitrService>>,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("store", &self.inner.store)
            .field("token", &self.inner.token.as_ref().map(|_| "…"))
            .finish_non_exhaustive()
    }
}

impl ApiState {
    /// State over a store. `token`: the bearer token (`None`: no authentication, for loopback
    /// listeners only; the config refuses a non-loopback `api.listen` without `token_env`).
    /// `stats`: the ingest counters of this process, for health and metrics.
    pub fn new(
        store: AnyStore,
        policy: Policy,
        token: Option<String>,
        stats: Option<Arc<IngestStats>>,
    ) -> Self {
        ApiState {
            inner: Arc::new(Inner {
                store,
                policy,
                token: token.filter(|t| !t.is_empty()),
                stats,
                idempotency: IdempotencyCache::default(),
                control_key: std::sync::OnceLock::new(),
                jitr: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Signs the controls of `POST /v1/lineages/{id}/pause|resume` with `key`; without a key
    /// those routes answer 501. Set once: a second key is ignored.
    pub fn with_control_key(self, key: ControlKey) -> Self {
        let _ = self.inner.control_key.set(key);
        self
    }

    /// Serves `POST /v1/jitr` with `service`; without one the route answers 501. Set once.
    pub fn with_jitr(self, service: Arc<crate::jitr::JitrService>) -> Self {
        let _ = self.inner.jitr.set(service);
        self
    }
}

/// The API's routes (§18) with authentication and idempotency.
pub fn router(state: ApiState) -> Router {
    let protected = Router::new()
        .route("/v1/metrics", get(metrics::metrics))
        .route("/v1/lineages", get(routes::lineages))
        .route("/v1/lineages/{id}", get(routes::lineage))
        .route("/v1/lineages/{id}/rows", get(routes::rows))
        .route("/v1/lineages/{id}/staged", get(staged::staged))
        .route("/v1/lineages/{id}/pause", post(routes::pause))
        .route("/v1/lineages/{id}/resume", post(routes::resume))
        .route("/v1/lineages/{id}/resnapshot", post(routes::resnapshot))
        .route("/v1/lineages/{id}/purge-staged", post(staged::purge_staged))
        .route("/v1/reviews", get(routes::reviews))
        .route("/v1/reviews/{id}", get(routes::review))
        .route("/v1/reviews/{id}/approve", post(routes::approve))
        .route("/v1/reviews/{id}/reject", post(routes::reject))
        .route("/v1/quarantine", get(routes::quarantine))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            idempotency::layer,
        ))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .route("/", get(status_page::page))
        .route("/v1/health", get(routes::health))
        // Open like health: devices enroll before they hold a token (§18.1).
        .route("/v1/jitr", post(jitr::enroll))
        .merge(protected)
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
}

/// Serves [`router`] on `listener` until `shutdown` resolves, then lets in-flight requests
/// finish.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Middleware: the bearer token, when one is configured.
async fn auth(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    if let Some(token) = &state.inner.token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t)
            .map(str::trim);
        if !given.is_some_and(|g| same(g.as_bytes(), token.as_bytes())) {
            return ApiError::Unauthorized.into_response();
        }
    }
    next.run(req).await
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
