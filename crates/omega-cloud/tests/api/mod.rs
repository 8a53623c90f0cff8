//! The HTTP API (`cloud.md` §18) in process: [`omega_cloud::api::router`] driven with
//! `tower::ServiceExt::oneshot` over a real store (SQLite, and PostgreSQL for the review flow).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use omega_cloud::api::{ApiState, router};
use omega_cloud::ingest::IngestStats;
use omega_cloud::policy::Policy;
use omega_cloud::store::AnyStore;
use serde_json::{Value, json};
use tower::ServiceExt;
use uuid::Uuid;

use crate::support::*;

const TOKEN: &str = "s3cret-token";

fn state(store: AnyStore, token: Option<&str>) -> (ApiState, Arc<IngestStats>) {
    let stats = Arc::new(IngestStats::default());
    let st = ApiState::new(
        store,
        Policy::default(),
        token.map(str::to_string),
        Some(stats.clone()),
    );
    (st, stats)
}

struct Reply {
    status: StatusCode,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {}", self.text))
    }

    fn error_code(&self) -> String {
        let v = self.json();
        assert!(v["error"]["message"].is_string(), "{v}");
        v["error"]["code"].as_str().unwrap_or_default().to_string()
    }
}

async fn call(
    st: &ApiState,
    method: &str,
    uri: &str,
    token: Option<&str>,
    idem: Option<&str>,
    body: Option<Value>,
) -> Reply {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    if let Some(k) = idem {
        b = b.header("Idempotency-Key", k);
    }
    let req = match body {
        Some(v) => b
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(v.to_string()))
            .unwrap(),
        None => b.body(Body::empty()).unwrap(),
    };
    let resp = router(st.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .unwrap();
    Reply {
        status,
        text: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

async fn get(st: &ApiState, uri: &str) -> Reply {
    call(st, "GET", uri, Some(TOKEN), None, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_open_and_everything_else_needs_the_token() {
    let (store, _g) = sqlite_store().await;
    let (st, stats) = state(AnyStore::Sqlite(store), Some(TOKEN));
    let r = call(&st, "GET", "/v1/health", None, None, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let v = r.json();
    assert_eq!(
        (&v["status"], &v["store"], &v["broker"]),
        (&json!("ok"), &json!("ok"), &json!("disconnected"))
    );
    assert!(v["version"].is_string());
    stats.subscribed.fetch_add(1, Ordering::Relaxed);
    assert_eq!(
        call(&st, "GET", "/v1/health", None, None, None)
            .await
            .json()["broker"],
        "connected"
    );

    for uri in [
        "/v1/lineages",
        "/v1/reviews",
        "/v1/metrics",
        "/v1/quarantine",
    ] {
        let r = call(&st, "GET", uri, None, None, None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{uri}");
        assert_eq!(r.error_code(), "unauthorized");
        let r = call(&st, "GET", uri, Some("wrong"), None, None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{uri}");
        assert_eq!(r.error_code(), "unauthorized");
        assert_eq!(get(&st, uri).await.status, StatusCode::OK, "{uri}");
    }
    let req = Request::builder()
        .uri("/v1/lineages")
        .header(header::AUTHORIZATION, format!("bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap();
    let r = router(st.clone()).oneshot(req).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "the scheme is case-insensitive");
    let r = call(&st, "POST", "/v1/reviews/x/reject", None, None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_no_authentication_is_asked() {
    let (store, _g) = sqlite_store().await;
    let (st, _) = state(AnyStore::Sqlite(store), None);
    let r = call(&st, "GET", "/v1/lineages", None, None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({"items": [], "next_cursor": null}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_have_the_one_shape() {
    use StatusCode as S;
    let (store, _g) = sqlite_store().await;
    let (st, _) = state(AnyStore::Sqlite(store), Some(TOKEN));
    let id = Uuid::now_v7();
    // Unknown ids, malformed ids and bad bodies of each route are in
    // `every_route_refuses_a_missing_token_unknown_ids_and_bad_input`.
    #[rustfmt::skip]
    let cases = [
        ("GET", "/v1/nothing-here".to_string(), None, S::NOT_FOUND, "not_found"),
        ("DELETE", "/v1/lineages".into(), None, S::METHOD_NOT_ALLOWED, "method_not_allowed"),
        ("GET", "/v1/lineages?status=sleeping".into(), None, S::BAD_REQUEST, "invalid_request"),
        ("POST", format!("/v1/reviews/{id}/approve"), Some(json!({"all_mirror": "yes"})),
            S::BAD_REQUEST, "invalid_request"),
        // Without a control key, pause, resume and resnapshot are 501.
        ("POST", format!("/v1/lineages/{id}/pause"), None, S::NOT_IMPLEMENTED, "not_implemented"),
        ("POST", format!("/v1/lineages/{id}/resume"), None, S::NOT_IMPLEMENTED, "not_implemented"),
        ("POST", format!("/v1/lineages/{id}/resnapshot"), None, S::NOT_IMPLEMENTED, "not_implemented"),
    ];
    for (method, uri, body, status, code) in cases {
        let r = call(&st, method, &uri, Some(TOKEN), None, body).await;
        expect(&r, status, code, &format!("{method} {uri}"));
    }
    let r = call(&st, "POST", "/v1/jitr", None, None, Some(json!({}))).await;
    expect(&r, StatusCode::NOT_IMPLEMENTED, "not_implemented", "jitr");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_prometheus_text() {
    let (store, _g) = sqlite_store().await;
    let p = Policy::default();
    apply(
        &store,
        &p,
        "d1",
        &batch(&device_state(), epoch(1), vec![upsert(1, 1, "a")]),
    )
    .await;
    let (st, stats) = state(AnyStore::Sqlite(store), Some(TOKEN));
    stats.received.fetch_add(3, Ordering::Relaxed);
    stats.applied.fetch_add(2, Ordering::Relaxed);
    let r = get(&st, "/v1/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    for line in [
        "omega_cloud_messages_received_total 3",
        "omega_cloud_batches_applied_total 2",
        "omega_cloud_batches_quarantined_total 0",
        "omega_cloud_duplicate_deliveries_total 0",
        "omega_cloud_store_up 1",
        "omega_cloud_lineages{status=\"paused\"} 1",
        "omega_cloud_paused_lineages{cause=\"schema_review\"} 1",
        "omega_cloud_staged_rows 1",
        "omega_cloud_lineage_staged_rows{device=\"d1\",table=\"device_state\"} 1",
        "omega_cloud_pending_reviews 1",
        "omega_cloud_controls_pending 0",
        "# TYPE omega_cloud_apply_latency_seconds histogram",
        "omega_cloud_apply_latency_seconds_bucket{le=\"+Inf\"} 0",
        "omega_cloud_apply_latency_seconds_count 0",
    ] {
        assert!(
            r.text.lines().any(|l| l == line),
            "no `{line}` in\n{}",
            r.text
        );
    }
    let bytes = "omega_cloud_lineage_staged_bytes{device=\"d1\",table=\"device_state\"} ";
    let bytes = r.text.lines().find_map(|l| l.strip_prefix(bytes));
    assert!(
        bytes.is_some_and(|b| b.parse::<i64>().unwrap() > 0),
        "{}",
        r.text
    );
    // An operator pause queues a control no device acknowledged yet.
    let st = st.with_control_key(omega_protocol::signing::ControlKey::ed25519_from_secret(
        &[7; 32],
    ));
    let lid = get(&st, "/v1/lineages").await.json()["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let pause = format!("/v1/lineages/{lid}/pause");
    let r = call(&st, "POST", &pause, Some(TOKEN), None, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let text = get(&st, "/v1/metrics").await.text;
    assert!(
        text.lines().any(|l| l == "omega_cloud_controls_pending 1"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_review_flow() {
    let (store, _g) = sqlite_store().await;
    review_flow(AnyStore::Sqlite(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_review_flow() {
    let (store, _g) = postgres_store().await;
    review_flow(AnyStore::Postgres(store)).await;
}

/// A batch applied through the store API; its lineage and review over HTTP; approval errors,
/// idempotent approval, the mirror rows; quarantine.
async fn review_flow(store: AnyStore) {
    let p = Policy::default();
    let b = batch(
        &device_state(),
        epoch(1),
        vec![upsert(1, 1, "a"), upsert(2, 2, "b")],
    );
    omega_cloud::with_store!(&store, s => { apply(s, &p, "d1", &b).await; });
    let (st, _) = state(store, Some(TOKEN));

    let r = get(&st, "/v1/lineages?device=d1&table=device_state").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let v = r.json();
    assert_eq!(v["next_cursor"], Value::Null);
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{v}");
    assert_eq!(items[0]["device_id"], "d1");
    assert_eq!(items[0]["status"], "paused");
    assert_eq!(items[0]["pause_causes"], json!(["schema_review"]));
    let lid = items[0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        get(&st, "/v1/lineages?device=d2").await.json()["items"],
        json!([])
    );
    let r = get(&st, &format!("/v1/lineages/{lid}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["lineage"]["id"], lid.as_str());
    let r = get(&st, &format!("/v1/lineages/{lid}/rows")).await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::NOT_FOUND, "no_mirror".into())
    );

    let v = get(&st, "/v1/reviews?status=pending").await.json();
    let reviews = v["items"].as_array().unwrap();
    assert_eq!(reviews.len(), 1, "{v}");
    let rid = reviews[0]["id"].as_str().unwrap().to_string();
    let r = get(&st, &format!("/v1/reviews/{rid}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["devices"], json!(["d1"]));
    assert_eq!(r.json()["staged_rows"], 2);

    let approve = format!("/v1/reviews/{rid}/approve");
    let r = call(&st, "POST", &approve, Some(TOKEN), None, Some(json!({}))).await;
    assert_eq!(
        (r.status, r.error_code()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            "incomplete_column_actions".into()
        ),
        "{}",
        r.text
    );
    let bad = json!({
        "columns": [{"name": "mode", "action": "mirror", "as": "_omega_x"}],
        "all_mirror": true,
    });
    let r = call(&st, "POST", &approve, Some(TOKEN), None, Some(bad)).await;
    assert_eq!(
        (r.status, r.error_code()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_column_name".into()
        )
    );

    let body = json!({"all_mirror": true});
    let first = call(
        &st,
        "POST",
        &approve,
        Some(TOKEN),
        Some("k-1"),
        Some(body.clone()),
    )
    .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    assert_eq!(first.json()["status"], "approved");
    // Replay: the stored answer, not a 409 from running it again.
    let again = call(
        &st,
        "POST",
        &approve,
        Some(TOKEN),
        Some("k-1"),
        Some(body.clone()),
    )
    .await;
    assert_eq!((again.status, &again.text), (StatusCode::OK, &first.text));
    let reused = call(
        &st,
        "POST",
        &approve,
        Some(TOKEN),
        Some("k-1"),
        Some(json!({"all_mirror": true, "columns": []})),
    )
    .await;
    assert_eq!(
        (reused.status, reused.error_code()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused".into()
        )
    );
    let r = call(&st, "POST", &approve, Some(TOKEN), None, Some(body)).await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::CONFLICT, "review_not_pending".into())
    );
    let r = call(
        &st,
        "POST",
        &format!("/v1/reviews/{rid}/reject"),
        Some(TOKEN),
        None,
        Some(json!({"reason": "late"})),
    )
    .await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::CONFLICT, "review_not_pending".into())
    );

    let v = get(&st, &format!("/v1/lineages/{lid}")).await.json();
    assert_eq!(v["lineage"]["status"], "active", "{v}");
    let r = get(&st, &format!("/v1/lineages/{lid}/rows")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let v = r.json();
    assert_eq!(v["mirror_table"], "edge_mirror_device_state");
    assert_eq!(v["items"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v["items"][0]["row"]["mode"], "a");
    let v = get(&st, &format!("/v1/lineages/{lid}/rows?limit=1"))
        .await
        .json();
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    assert_eq!(v["next_cursor"], "1");
    let v = get(&st, &format!("/v1/lineages/{lid}/rows?limit=1&cursor=1"))
        .await
        .json();
    assert_eq!(v["items"][0]["row"]["mode"], "b");
    assert_eq!(v["next_cursor"], Value::Null);

    let r = get(&st, "/v1/quarantine?device=d1").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["items"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_telemetry_rows() {
    let (store, _g) = sqlite_store().await;
    telemetry_rows(AnyStore::Sqlite(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_telemetry_rows() {
    let (store, _g) = postgres_store().await;
    telemetry_rows(AnyStore::Postgres(store)).await;
}

/// The rows route of a telemetry lineage lists its samples: `row_id`, `event_ts` and the
/// fields in wire encoding, exactly as sent; paged like mirror rows.
async fn telemetry_rows(store: AnyStore) {
    use crate::conformance::telemetry::{sample, sent, telemetry_batch, temps};
    let b = telemetry_batch(&temps(), 1, &[1, 2, 3]);
    omega_cloud::with_store!(&store, s => {
        omega_cloud::telemetry::apply_telemetry_batch(s, &auto(), "d1", "t", &b)
            .await
            .unwrap();
    });
    let (st, _) = state(store, Some(TOKEN));
    let v = get(&st, "/v1/lineages?device=d1&table=temps").await.json();
    let lid = v["items"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(v["items"][0]["ts_table"], "edge_ts_temps");
    let r = get(&st, &format!("/v1/lineages/{lid}/rows")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let v = r.json();
    assert_eq!(v["kind"], "telemetry");
    assert_eq!(v["ts_table"], "edge_ts_temps");
    let items = v["items"].as_array().unwrap();
    let got: std::collections::BTreeMap<String, Value> = items
        .iter()
        .map(|i| {
            (
                i["row_id"].as_str().unwrap().to_string(),
                i["fields"].clone(),
            )
        })
        .collect();
    assert_eq!(got, sent(1..=3));
    assert_eq!(
        items[0]["event_ts"],
        omega_protocol::time::format_rfc3339(sample(1).ts).as_str()
    );
    let v = get(&st, &format!("/v1/lineages/{lid}/rows?limit=2"))
        .await
        .json();
    assert_eq!(v["items"].as_array().unwrap().len(), 2);
    assert_eq!(v["next_cursor"], "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_is_for_loopback_clients_only() {
    use axum::extract::ConnectInfo;
    use std::net::SocketAddr;

    let (store, _g) = sqlite_store().await;
    let p = Policy::default();
    apply(
        &store,
        &p,
        "press<01>",
        &batch(&device_state(), epoch(1), vec![upsert(1, 1, "a")]),
    )
    .await;
    let (st, _) = state(AnyStore::Sqlite(store), Some(TOKEN));
    let page = |from: Option<&str>| {
        let mut b = Request::builder().uri("/");
        if let Some(a) = from {
            b = b.extension(ConnectInfo(a.parse::<SocketAddr>().unwrap()));
        }
        router(st.clone()).oneshot(b.body(Body::empty()).unwrap())
    };
    let r = page(Some("127.0.0.1:5000")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let html = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
    let html = String::from_utf8(html.to_vec()).unwrap();
    assert!(html.contains("press&lt;01&gt;"), "{html}");
    assert!(html.contains("Pending reviews (1)"), "{html}");
    for from in [Some("10.1.2.3:5000"), None] {
        let r = page(from).await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{from:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_http_answers_on_its_listener_until_shutdown() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (store, _g) = sqlite_store().await;
    let (st, _) = state(AnyStore::Sqlite(store), Some(TOKEN));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(omega_cloud::api::serve_http(listener, st, async {
        let _ = stop_rx.await;
    }));
    for (path, want) in [
        ("/v1/health", "200 OK"),
        ("/", "200 OK"),
        ("/v1/lineages", "401"),
    ] {
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        c.write_all(req.as_bytes()).await.unwrap();
        let mut got = String::new();
        c.read_to_string(&mut got).await.unwrap();
        assert!(
            got.starts_with(&format!("HTTP/1.1 {want}")),
            "{path}: {got}"
        );
    }
    stop_tx.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), server)
        .await
        .expect("stops on shutdown")
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_degraded_when_the_store_is_gone() {
    let (store, guard) = postgres_store().await;
    let (st, _) = state(AnyStore::Postgres(store), Some(TOKEN));
    assert_eq!(
        call(&st, "GET", "/v1/health", None, None, None)
            .await
            .status,
        StatusCode::OK
    );
    // Drops the database, closing the pool's connections.
    tokio::task::spawn_blocking(move || drop(guard))
        .await
        .unwrap();
    let r = call(&st, "GET", "/v1/health", None, None, None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    let v = r.json();
    assert_eq!(
        (&v["status"], &v["store"]),
        (&json!("degraded"), &json!("unavailable"))
    );
    // Every other route answers with the error shape and no internals.
    let st = st.with_control_key(omega_protocol::signing::ControlKey::ed25519_from_secret(
        &[7; 32],
    ));
    let (l, rv) = (Uuid::now_v7().to_string(), Uuid::now_v7().to_string());
    for &(method, template) in PROTECTED.iter().filter(|(_, p)| *p != "/v1/metrics") {
        let uri = route(template, &l, &rv);
        let body = (method == "POST").then(|| json!({}));
        let r = call(&st, method, &uri, Some(TOKEN), None, body).await;
        assert!(r.status.is_server_error(), "{uri}: {}", r.text);
        let code = r.error_code();
        assert!(
            code == "store_unavailable" || code == "internal",
            "{uri}: {code}"
        );
        let message = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(message.contains("log reference"), "{uri}: {message}");
        for secret in ["omega_test_", "PostgreSQL", "SQLSTATE", "postgres://"] {
            assert!(
                !r.text.contains(secret),
                "{uri} leaks `{secret}`: {}",
                r.text
            );
        }
    }
    let r = get(&st, "/v1/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.text.lines().any(|l| l == "omega_cloud_store_up 0"),
        "{}",
        r.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uses_of_one_key_run_once() {
    let (store, _g) = sqlite_store().await;
    let p = Policy::default();
    apply(
        &store,
        &p,
        "d1",
        &batch(&device_state(), epoch(1), vec![upsert(1, 1, "a")]),
    )
    .await;
    let (st, _) = state(AnyStore::Sqlite(store), Some(TOKEN));
    let rid = get(&st, "/v1/reviews").await.json()["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let uri = format!("/v1/reviews/{rid}/reject");
    let body = json!({"reason": "not this one"});
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let (st, uri, body) = (st.clone(), uri.clone(), body.clone());
            tokio::spawn(async move {
                call(&st, "POST", &uri, Some(TOKEN), Some("same"), Some(body)).await
            })
        })
        .collect();
    let mut texts = Vec::new();
    for c in calls {
        let r = c.await.unwrap();
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        texts.push(r.text);
    }
    assert!(texts.iter().all(|t| t == &texts[0]), "{texts:?}");
    assert_eq!(
        serde_json::from_str::<Value>(&texts[0]).unwrap()["status"],
        "rejected"
    );
    let r = call(&st, "POST", &uri, Some(TOKEN), None, Some(body)).await;
    assert_eq!(r.error_code(), "review_not_pending");
    let r = call(&st, "POST", &uri, Some(TOKEN), Some(&"k".repeat(256)), None).await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::BAD_REQUEST, "invalid_request".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantine_is_listed_with_its_filters() {
    use omega_cloud::quarantine::{self, RejectedBatch, RejectedMessage};

    let (store, _g) = sqlite_store().await;
    for (device, code) in [("d1", "invalid_value_encoding"), ("d2", "unknown_topic")] {
        let topic = format!("omega/{device}/sync/rows/batch");
        let msg = RejectedMessage {
            device_id: Some(device),
            topic: &topic,
            code,
            message: "bad <payload>",
            payload: b"{\"x\":1}",
            batch_id: None,
            batch: RejectedBatch::default(),
        };
        quarantine::quarantine_message(&store, &msg).await.unwrap();
    }
    let (st, _) = state(AnyStore::Sqlite(store), Some(TOKEN));
    let v = get(&st, "/v1/quarantine").await.json();
    assert_eq!(v["items"].as_array().unwrap().len(), 2, "{v}");
    let v = get(&st, "/v1/quarantine?device=d1").await.json();
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{v}");
    assert_eq!(items[0]["code"], "invalid_value_encoding");
    assert_eq!(items[0]["payload_prefix"], "{\"x\":1}");
    let v = get(&st, "/v1/quarantine?code=unknown_topic").await.json();
    assert_eq!(v["items"][0]["device_id"], "d2");
    let v = get(&st, "/v1/quarantine?since=2000-01-01T00:00:00Z")
        .await
        .json();
    assert_eq!(v["items"].as_array().unwrap().len(), 2);
    let v = get(&st, "/v1/quarantine?since=2999-01-01T00:00:00Z")
        .await
        .json();
    assert_eq!(v["items"], json!([]));
    let v = get(&st, "/v1/quarantine?limit=1").await.json();
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    assert_eq!(v["next_cursor"], "1");
    let r = get(&st, "/v1/quarantine?since=yesterday").await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::BAD_REQUEST, "invalid_request".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_pause_and_resume_queue_controls() {
    let (store, _g) = sqlite_store().await;
    let p = Policy::default();
    apply(
        &store,
        &p,
        "d1",
        &batch(&device_state(), epoch(1), vec![upsert(1, 1, "a")]),
    )
    .await;
    let (st, _) = state(AnyStore::Sqlite(store), Some(TOKEN));
    let st = st.with_control_key(omega_protocol::signing::ControlKey::ed25519_from_secret(
        &[7; 32],
    ));
    let lid = get(&st, "/v1/lineages").await.json()["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = call(
        &st,
        "POST",
        &format!("/v1/lineages/{lid}/pause"),
        Some(TOKEN),
        None,
        Some(json!({"reason": "maintenance"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let v = r.json();
    assert_eq!(v["lineage"]["id"], lid.as_str());
    assert!(
        v["lineage"]["pause_causes"]
            .as_array()
            .unwrap()
            .contains(&json!("operator")),
        "{v}"
    );
    let resume = format!("/v1/lineages/{lid}/resume");
    let r = call(&st, "POST", &resume, Some(TOKEN), None, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(
        !r.json()["lineage"]["pause_causes"]
            .as_array()
            .unwrap()
            .contains(&json!("operator"))
    );
    let r = call(&st, "POST", &resume, Some(TOKEN), None, None).await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::CONFLICT, "not_operator_paused".into())
    );
    let r = call(
        &st,
        "POST",
        &format!("/v1/lineages/{}/pause", Uuid::now_v7()),
        Some(TOKEN),
        None,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

/// Every route behind the token: (method, path), `{l}` standing for a lineage id and `{r}`
/// for a review id.
const PROTECTED: &[(&str, &str)] = &[
    ("GET", "/v1/metrics"),
    ("GET", "/v1/lineages"),
    ("GET", "/v1/lineages/{l}"),
    ("GET", "/v1/lineages/{l}/rows"),
    ("GET", "/v1/lineages/{l}/staged"),
    ("POST", "/v1/lineages/{l}/pause"),
    ("POST", "/v1/lineages/{l}/resume"),
    ("POST", "/v1/lineages/{l}/resnapshot"),
    ("POST", "/v1/lineages/{l}/purge-staged"),
    ("GET", "/v1/reviews"),
    ("GET", "/v1/reviews/{r}"),
    ("POST", "/v1/reviews/{r}/approve"),
    ("POST", "/v1/reviews/{r}/reject"),
    ("GET", "/v1/quarantine"),
];

fn route(template: &str, lineage: &str, review: &str) -> String {
    template.replace("{l}", lineage).replace("{r}", review)
}

/// Asserts status and error code.
#[track_caller]
fn expect(r: &Reply, status: StatusCode, code: &str, what: &str) {
    assert_eq!(
        (r.status, r.error_code()),
        (status, code.into()),
        "{what}: {}",
        r.text
    );
}

/// A store with one staged lineage (`d1`/`device_state`, review pending) behind a token and
/// a control key; its lineage and review ids.
async fn one_lineage(store: AnyStore) -> (ApiState, String, String) {
    let b = batch(
        &device_state(),
        epoch(1),
        vec![upsert(1, 1, "a"), upsert(2, 2, "b"), delete(3, 3)],
    );
    omega_cloud::with_store!(&store, s => { apply(s, &Policy::default(), "d1", &b).await; });
    let (st, _) = state(store, Some(TOKEN));
    let st = st.with_control_key(omega_protocol::signing::ControlKey::ed25519_from_secret(
        &[7; 32],
    ));
    let id = |v: Value| v["items"][0]["id"].as_str().unwrap().to_string();
    let lid = id(get(&st, "/v1/lineages").await.json());
    let rid = id(get(&st, "/v1/reviews").await.json());
    (st, lid, rid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_refuses_a_missing_token_unknown_ids_and_bad_input() {
    let (store, _g) = sqlite_store().await;
    let (st, lid, rid) = one_lineage(AnyStore::Sqlite(store)).await;
    let unknown = Uuid::now_v7().to_string();
    for &(method, template) in PROTECTED {
        let uri = route(template, &lid, &rid);
        for token in [None, Some("wrong")] {
            let r = call(&st, method, &uri, token, None, None).await;
            expect(&r, StatusCode::UNAUTHORIZED, "unauthorized", &uri);
        }
        if template.contains('{') {
            let uri = route(template, &unknown, &unknown);
            let r = call(&st, method, &uri, Some(TOKEN), None, None).await;
            expect(&r, StatusCode::NOT_FOUND, "not_found", &uri);
            let uri = route(template, "not-a-uuid", "not-a-uuid");
            let r = call(&st, method, &uri, Some(TOKEN), None, None).await;
            expect(&r, StatusCode::BAD_REQUEST, "invalid_request", &uri);
        }
    }
    // Bodies that are not the route's JSON object.
    for template in [
        "/v1/lineages/{l}/pause",
        "/v1/lineages/{l}/purge-staged",
        "/v1/reviews/{r}/approve",
        "/v1/reviews/{r}/reject",
    ] {
        let uri = route(template, &lid, &rid);
        for bad in [json!([1]), json!({"no_such_field": 1}), json!("text")] {
            let r = call(&st, "POST", &uri, Some(TOKEN), None, Some(bad.clone())).await;
            expect(
                &r,
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!("{uri} {bad}"),
            );
        }
    }
    // Query parameters out of range.
    for uri in [
        "/v1/lineages?limit=0".to_string(),
        "/v1/reviews?limit=1001".to_string(),
        "/v1/quarantine?cursor=x".to_string(),
        format!("/v1/lineages/{lid}/staged?limit=0"),
        format!("/v1/lineages/{lid}/rows?include_deleted=maybe"),
    ] {
        expect(
            &get(&st, &uri).await,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &uri,
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_staged_rows_are_listed_and_purged() {
    let (store, _g) = sqlite_store().await;
    staged_flow(AnyStore::Sqlite(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_staged_rows_are_listed_and_purged() {
    let (store, _g) = postgres_store().await;
    staged_flow(AnyStore::Postgres(store)).await;
}

/// `GET /v1/lineages/{id}/staged` pages in version order; `purge-staged` refuses a pending
/// hash (409), purges a rejected one once, and replays its answer for the same
/// `Idempotency-Key`.
async fn staged_flow(store: AnyStore) {
    let (st, lid, rid) = one_lineage(store).await;
    let staged = format!("/v1/lineages/{lid}/staged");
    let v = get(&st, &format!("{staged}?limit=2")).await.json();
    assert_eq!(v["lineage_id"], lid.as_str());
    assert_eq!(v["next_cursor"], "2", "{v}");
    let first = &v["items"][0];
    assert_eq!(
        (&first["commit_seq"], &first["op"], &first["reason"]),
        (&json!(1), &json!("update"), &json!("schema_review")),
        "{v}"
    );
    assert_eq!(first["pk"], json!({"id": 1}));
    assert_eq!(first["row"], json!({"id": 1, "mode": "a"}));
    let v = get(&st, &format!("{staged}?limit=2&cursor=2")).await.json();
    assert_eq!(v["next_cursor"], Value::Null);
    assert_eq!(
        (&v["items"][0]["op"], &v["items"][0]["row"]),
        (&json!("delete"), &Value::Null)
    );

    let purge = format!("/v1/lineages/{lid}/purge-staged");
    let r = call(&st, "POST", &purge, Some(TOKEN), None, None).await;
    expect(&r, StatusCode::CONFLICT, "nothing_to_purge", "pending hash");
    let r = call(
        &st,
        "POST",
        &purge,
        Some(TOKEN),
        None,
        Some(json!({"schema_hash": ""})),
    )
    .await;
    expect(&r, StatusCode::BAD_REQUEST, "invalid_request", "empty hash");
    let reject = format!("/v1/reviews/{rid}/reject");
    let r = call(&st, "POST", &reject, Some(TOKEN), None, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    let first = call(
        &st,
        "POST",
        &purge,
        Some(TOKEN),
        Some("p-1"),
        Some(json!({})),
    )
    .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    let v = first.json();
    assert_eq!(v["purged_rows"], 3, "{v}");
    assert!(v["purged_bytes"].as_i64().unwrap() > 0, "{v}");
    assert_eq!(
        (&v["lineage"]["staged_rows"], &v["lineage"]["staged_bytes"]),
        (&json!(0), &json!(0))
    );
    let again = call(
        &st,
        "POST",
        &purge,
        Some(TOKEN),
        Some("p-1"),
        Some(json!({})),
    )
    .await;
    assert_eq!((again.status, &again.text), (StatusCode::OK, &first.text));
    let r = call(&st, "POST", &purge, Some(TOKEN), None, Some(json!({}))).await;
    expect(
        &r,
        StatusCode::CONFLICT,
        "nothing_to_purge",
        "purged already",
    );
    assert_eq!(
        get(&st, &staged).await.json(),
        json!({"lineage_id": lid, "items": [], "next_cursor": null})
    );
}
