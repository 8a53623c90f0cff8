//! End to end over the machine's mosquitto (127.0.0.1:1883): `serve` runs in process, a
//! test publisher sends hand-built valid and hostile messages under a root topic unique to the
//! test, and the assertions read the store.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use omega_cloud::ingest::{IngestOptions, IngestStats, serve_with_stats};
use omega_cloud::policy::Policy;
use omega_cloud::quarantine::{self, QuarantineFilter};
use omega_cloud::receipts::ReceiptOptions;
use omega_cloud::store::{Store, StoreTx};
use omega_protocol::message::{Op, RowChange};
use omega_protocol::schema::Affinity;
use omega_protocol::topic::DeviceTopicTemplate;
use omega_protocol::value::SqlValue;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::support::*;

macro_rules! on_both_stores {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (store, _guard) = crate::support::sqlite_store().await;
                    super::$case(store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (store, _guard) = crate::support::postgres_store().await;
                    super::$case(store).await;
                }
            )*
        }
    };
}

on_both_stores!(
    valid_and_hostile_messages_over_mqtt_reach_mirror_and_quarantine,
    many_batches_of_one_lineage_through_four_workers_converge,
    messages_published_while_the_cloud_is_down_arrive_after_restart,
);

const WAIT: Duration = Duration::from_secs(30);

/// A running `serve` with its own root topic and client id.
struct Cloud {
    stats: Arc<IngestStats>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Cloud {
    async fn start<S: Store>(store: S, root: &str, client_id: &str, policy: Policy) -> Cloud {
        Cloud::start_with(store, root, client_id, policy, None).await
    }

    /// [`Cloud::start`] with delivery receipts.
    async fn start_with<S: Store>(
        store: S,
        root: &str,
        client_id: &str,
        policy: Policy,
        receipts: Option<ReceiptOptions>,
    ) -> Cloud {
        omega_testkit::mosquitto::machine_broker();
        let mut mqtt = MqttOptions::new(client_id, "127.0.0.1", 1883);
        mqtt.set_keep_alive(Duration::from_secs(5));
        let template = DeviceTopicTemplate::parse(&format!("{root}/{{device}}")).unwrap();
        let mut opts = IngestOptions::new(mqtt, template, policy);
        opts.shared_group = format!("g{}", Uuid::now_v7().simple());
        opts.session_expiry = Duration::from_secs(300);
        opts.receipts = receipts;
        let stats = Arc::new(IngestStats::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let s2 = stats.clone();
        let task = tokio::spawn(async move {
            serve_with_stats(opts, store, s2, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        let cloud = Cloud {
            stats,
            stop: Some(stop),
            task,
        };
        let subscribed = cloud.stats.clone();
        wait_for("the cloud's subscription", move || {
            subscribed.subscribed.load(Ordering::Relaxed) > 0
        })
        .await;
        cloud
    }

    async fn stop(mut self) -> Arc<IngestStats> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.unwrap();
        self.stats
    }
}

async fn wait_for(what: &str, mut probe: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !probe() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_for_async<F, Fut>(what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !probe().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

/// A device-side publisher (QoS 1), driven by its own event loop task.
struct Publisher {
    client: AsyncClient,
    task: tokio::task::JoinHandle<()>,
    /// PUBACKs received so far.
    acked: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Publisher {
    fn connect(client_id: &str) -> Publisher {
        let mut opts = MqttOptions::new(client_id, "127.0.0.1", 1883);
        opts.set_max_packet_size(Some(1 << 24));
        let (client, mut eventloop) = AsyncClient::new(opts, 64);
        let acked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = acked.clone();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(rumqttc::v5::mqttbytes::v5::Packet::PubAck(_))) => {
                        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    Ok(Event::Outgoing(_)) | Ok(Event::Incoming(_)) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        Publisher {
            client,
            task,
            acked,
        }
    }

    /// Waits until the broker acknowledged `n` publishes in all.
    async fn wait_acked(&self, n: usize) {
        let acked = self.acked.clone();
        wait_for("the broker's PUBACKs", move || {
            acked.load(std::sync::atomic::Ordering::SeqCst) >= n
        })
        .await;
    }

    async fn send(&self, topic: &str, payload: Vec<u8>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn unique_root() -> String {
    format!("omega-test-{}", Uuid::now_v7().simple())
}

async fn valid_and_hostile_messages_over_mqtt_reach_mirror_and_quarantine<S: Store>(s: S) {
    let root = unique_root();
    let cloud = Cloud::start(s.clone(), &root, &format!("cloud-{root}"), auto()).await;
    let dev = "press-01";
    let publisher = Publisher::connect(&format!("pub-{root}"));
    let rows_topic = format!("{root}/{dev}/sync/rows/batch");

    let cols = schema(
        "order",
        vec![
            col("id", Affinity::Integer, 1),
            col("a\"b", Affinity::Text, 0),
            col("raw", Affinity::Blob, 0),
            col("peak", Affinity::Real, 0),
        ],
    );
    let change = |seq: i64, id: i64, t: &str, raw: Vec<u8>, peak: f64| RowChange {
        commit_seq: seq,
        op: Op::Insert,
        pk: rec(&[("id", int(id))]),
        row: Some(rec(&[
            ("id", int(id)),
            ("a\"b", text(t)),
            ("raw", SqlValue::Blob(raw)),
            ("peak", SqlValue::Real(peak)),
        ])),
    };
    let good = batch(
        &cols,
        epoch(1),
        vec![
            change(1, i64::MAX, "naïve ✓", vec![0, 255], f64::INFINITY),
            change(2, i64::MIN, "", vec![], f64::NEG_INFINITY),
        ],
    );
    let good_bytes = good.to_json_bytes();
    publisher.send(&rows_topic, good_bytes.clone()).await;
    publisher.send(&rows_topic, good_bytes).await; // duplicate delivery
    // Hostile: not JSON; a tenant key; a value that does not fit its column; unknown topic;
    // the cloud's own control topic (skipped).
    publisher
        .send(&rows_topic, b"{\"format_version\":1,".to_vec())
        .await;
    let mut tenant = String::from_utf8(
        batch(&cols, epoch(1), vec![change(3, 3, "x", vec![], 1.0)]).to_json_bytes(),
    )
    .unwrap();
    tenant.insert_str(1, "\"device_id\":\"spoof\",");
    publisher.send(&rows_topic, tenant.into_bytes()).await;
    let misfit = RowChange {
        commit_seq: 4,
        op: Op::Update,
        pk: rec(&[("id", int(4))]),
        row: Some(rec(&[
            ("id", int(4)),
            ("a\"b", int(5)),
            ("raw", SqlValue::Null),
            ("peak", SqlValue::Null),
        ])),
    };
    publisher
        .send(
            &rows_topic,
            batch(&cols, epoch(1), vec![misfit]).to_json_bytes(),
        )
        .await;
    publisher
        .send(&format!("{root}/{dev}/sync/bogus"), b"{}".to_vec())
        .await;
    publisher
        .send(&format!("{root}/{dev}/sync/ingest/control"), b"{}".to_vec())
        .await;
    let observe = format!(
        r#"{{"format_version":1,"source_table":"order","schema_hash":"{}","observed_at":"2026-04-28T09:00:00Z"}}"#,
        schema_hash(&cols)
    );
    publisher
        .send(
            &format!("{root}/{dev}/sync/schema/observe"),
            observe.into_bytes(),
        )
        .await;

    let stats = cloud.stats.clone();
    wait_for("8 messages acknowledged", move || {
        stats.acked.load(Ordering::Relaxed) >= 8
    })
    .await;
    let stats = cloud.stop().await;
    assert_eq!(stats.received.load(Ordering::Relaxed), 8);
    assert_eq!(stats.acked.load(Ordering::Relaxed), 8);
    assert_eq!(
        stats.applied.load(Ordering::Relaxed),
        2,
        "good + misfit batches"
    );
    assert_eq!(stats.duplicates.load(Ordering::Relaxed), 1);
    assert_eq!(stats.quarantined.load(Ordering::Relaxed), 3);
    assert_eq!(stats.skipped.load(Ordering::Relaxed), 1);
    assert_eq!(stats.observations.load(Ordering::Relaxed), 1);

    let got = rows(&s, "edge_mirror_order", false).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].key, vec![int(i64::MIN)]);
    assert_eq!(
        got[0].values,
        vec![
            text(""),
            SqlValue::Blob(vec![]),
            SqlValue::Real(f64::NEG_INFINITY)
        ]
    );
    assert_eq!(got[1].key, vec![int(i64::MAX)]);
    assert_eq!(
        got[1].values,
        vec![
            text("naïve ✓"),
            SqlValue::Blob(vec![0, 255]),
            SqlValue::Real(f64::INFINITY)
        ]
    );
    assert_eq!(got[1].device_id, dev);

    let q = quarantine::list(&s, &QuarantineFilter::default())
        .await
        .unwrap();
    let mut codes: Vec<&str> = q.iter().map(|e| e.code.as_str()).collect();
    codes.sort();
    assert_eq!(
        codes,
        vec![
            "envelope_unstripped_tenant_fields",
            "malformed_json",
            "materialization_failed",
            "unknown_topic"
        ]
    );
    let unknown = q.iter().find(|e| e.code == "unknown_topic").unwrap();
    assert_eq!(unknown.device_id, None);
    assert!(unknown.topic.ends_with("/sync/bogus"));
    let tenant = q
        .iter()
        .find(|e| e.code == "envelope_unstripped_tenant_fields")
        .unwrap();
    assert_eq!(tenant.device_id.as_deref(), Some(dev));
    assert!(
        tenant.batch_id.is_some(),
        "the batch id of a rejected batch is kept"
    );
}

async fn many_batches_of_one_lineage_through_four_workers_converge<S: Store>(s: S) {
    let root = unique_root();
    let cloud = Cloud::start(s.clone(), &root, &format!("cloud-{root}"), auto()).await;
    let publisher = Publisher::connect(&format!("pub-{root}"));
    let topic = format!("{root}/d1/sync/rows/batch");
    let cols = device_state();
    let mut seq = 0;
    let mut want = std::collections::BTreeMap::new();
    let n_batches = 60;
    for b in 0..n_batches {
        let mut changes = Vec::new();
        for i in 0..20 {
            seq += 1;
            let id = (b * 7 + i) % 50;
            if seq % 9 == 0 {
                want.remove(&id);
                changes.push(delete(seq, id));
            } else {
                want.insert(id, format!("v{seq}"));
                changes.push(upsert(seq, id, &format!("v{seq}")));
            }
        }
        publisher
            .send(&topic, batch(&cols, epoch(1), changes).to_json_bytes())
            .await;
    }
    let stats = cloud.stats.clone();
    wait_for("every batch acknowledged", move || {
        stats.acked.load(Ordering::Relaxed) >= n_batches as u64
    })
    .await;
    let stats = cloud.stop().await;
    assert_eq!(stats.applied.load(Ordering::Relaxed), n_batches as u64);
    let want: Vec<(i64, Option<String>)> = want.into_iter().map(|(k, v)| (k, Some(v))).collect();
    assert_eq!(live_modes(&s, "edge_mirror_device_state").await, want);
    assert_eq!(
        lineage(&s, "d1", "device_state").await.last_commit_seq,
        Some(seq)
    );
}

async fn messages_published_while_the_cloud_is_down_arrive_after_restart<S: Store>(s: S) {
    let root = unique_root();
    let client_id = format!("cloud-{root}");
    // First run: creates the persistent session and its shared subscription.
    let cloud = Cloud::start(s.clone(), &root, &client_id, auto()).await;
    cloud.stop().await;
    let publisher = Publisher::connect(&format!("pub-{root}"));
    let topic = format!("{root}/d1/sync/rows/batch");
    publisher
        .send(
            &topic,
            batch(&device_state(), epoch(1), vec![upsert(1, 1, "while down")]).to_json_bytes(),
        )
        .await;
    // The broker holds the publish (PUBACK) before the cloud comes back.
    publisher.wait_acked(1).await;
    let cloud = Cloud::start(s.clone(), &root, &client_id, auto()).await;
    let s2 = s.clone();
    wait_for_async("the queued batch in the mirror", move || {
        let s = s2.clone();
        async move {
            let mut tx = s.begin().await.unwrap();
            let m = tx
                .mirror_get("edge_mirror_device_state", false)
                .await
                .unwrap();
            tx.rollback().await.unwrap();
            m.is_some()
        }
    })
    .await;
    cloud.stop().await;
    assert_eq!(
        live_modes(&s, "edge_mirror_device_state").await,
        vec![(1, Some("while down".into()))]
    );
}

// After the helpers and `on_both_stores!`, which it uses.
mod receipts;
