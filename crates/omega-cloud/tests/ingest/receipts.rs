//! Delivery receipts over the machine's mosquitto (`receipts.md` §3–§4): after batches are
//! committed, a signed receipt arrives on `{root}/{device}/sync/ingest/receipt`, names the
//! confirmed point, completed snapshots and rejected batches, verifies with the public key
//! for that device only, and receipts of one device are paced by `receipts.interval`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use omega_cloud::receipts::ReceiptOptions;
use omega_cloud::store::Store;
use omega_protocol::message::{Receipt, ReceiptLineage};
use omega_protocol::signing::{ControlKey, ControlVerifier};
use omega_protocol::validate::decode_receipt;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use uuid::Uuid;

use super::{Cloud, Publisher, unique_root, wait_for};
use crate::support::*;

on_both_stores!(receipts_confirm_batches_snapshots_and_rejections_signed_and_paced);

const INTERVAL: Duration = Duration::from_millis(400);

/// Payloads with their arrival times.
type Arrivals = Arc<Mutex<Vec<(Instant, Vec<u8>)>>>;

/// Records every receipt published on one topic, with its arrival time.
struct Receipts {
    got: Arrivals,
    task: tokio::task::JoinHandle<()>,
}

impl Receipts {
    async fn subscribe(client_id: &str, topic: &str) -> Receipts {
        let opts = MqttOptions::new(client_id, "127.0.0.1", 1883);
        let (client, mut eventloop) = AsyncClient::new(opts, 64);
        let got: Arrivals = Arc::default();
        let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
        let mut subscribed_tx = Some(subscribed_tx);
        let sink = got.clone();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        sink.lock()
                            .unwrap()
                            .push((Instant::now(), p.payload.to_vec()));
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(tx) = subscribed_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        client.subscribe(topic, QoS::AtLeastOnce).await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), subscribed_rx)
            .await
            .expect("receipt subscription confirmed")
            .unwrap();
        Receipts { got, task }
    }

    fn decoded(&self) -> Vec<(Instant, Receipt)> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|(t, p)| (*t, decode_receipt(p).expect("a valid receipt")))
            .collect()
    }
}

impl Drop for Receipts {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn confirmed(receipts: &[(Instant, Receipt)], table: &str) -> Option<i64> {
    receipts
        .iter()
        .flat_map(|(_, r)| &r.lineages)
        .filter_map(|l| match l {
            ReceiptLineage::Rows {
                source_table,
                confirmed_through,
                ..
            } if source_table == table => Some(*confirmed_through),
            _ => None,
        })
        .max()
}

async fn receipts_confirm_batches_snapshots_and_rejections_signed_and_paced<S: Store>(s: S) {
    let root = unique_root();
    let key = ControlKey::ed25519_from_secret(&rand::random::<[u8; 32]>());
    let public = ControlVerifier::ed25519_from_public_pem(&key.public_key_pem().unwrap()).unwrap();
    let dev = "press-01";
    let receipts = Receipts::subscribe(
        &format!("rcpt-{root}"),
        &format!("{root}/{dev}/sync/ingest/receipt"),
    )
    .await;
    let opts = ReceiptOptions::new(key, INTERVAL);
    let cloud = Cloud::start_with(
        s.clone(),
        &root,
        &format!("cloud-{root}"),
        auto(),
        Some(opts),
    )
    .await;
    let publisher = Publisher::connect(&format!("pub-{root}"));
    let topic = format!("{root}/{dev}/sync/rows/batch");
    let cols = device_state();

    // A chain of 12 batches of 5 changes each: prev_commit_seq links them (receipts.md §2).
    // Batch 7 carries a tenant field: rejected, yet it still moves the point (§3.6).
    let mut seq = 0;
    let mut rejected_id = None;
    for b in 0..12 {
        let prev = seq;
        let changes: Vec<_> = (0..5)
            .map(|i| {
                seq += 1;
                upsert(seq, b * 5 + i, &format!("v{seq}"))
            })
            .collect();
        let mut batch = batch(&cols, epoch(1), changes);
        batch.prev_commit_seq = Some(prev);
        let mut payload = batch.to_json_bytes();
        if b == 7 {
            let text = String::from_utf8(payload).unwrap();
            payload = text
                .replacen('{', "{\"device_id\":\"spoof\",", 1)
                .into_bytes();
            rejected_id = Some(batch.batch_id.clone());
        }
        publisher.send(&topic, payload).await;
    }
    // A snapshot in two parts, the last first.
    let snap = Uuid::now_v7();
    for (part, last) in [(2, true), (1, false)] {
        let b = snapshot_part(
            &cols,
            epoch(1),
            snap,
            part,
            last,
            seq,
            vec![(1000 + i64::from(part), "s")],
        );
        publisher.send(&topic, b.to_json_bytes()).await;
    }

    let last = seq;
    let snap_id = snap.to_string();
    wait_for("receipts naming the whole chain and the snapshot", || {
        let r = receipts.decoded();
        confirmed(&r, "device_state") == Some(last)
            && r.iter().any(|(_, r)| {
                r.snapshots_complete
                    .iter()
                    .any(|s| s.snapshot_id == snap_id)
            })
    })
    .await;
    let stats = cloud.stop().await;
    let got = receipts.decoded();
    assert!(stats.receipts.load(std::sync::atomic::Ordering::Relaxed) >= got.len() as u64);

    for (_, r) in &got {
        let raw = r.raw.as_ref().unwrap();
        public.verify(raw, dev).expect("verifies for its device");
        assert!(
            public.verify(raw, "press-02").is_err(),
            "bound to the device id"
        );
    }
    // Points only move forward across receipts.
    let points: Vec<i64> = got
        .iter()
        .filter_map(|(_, r)| confirmed(&[(Instant::now(), r.clone())], "device_state"))
        .collect();
    assert!(points.windows(2).all(|w| w[0] <= w[1]), "{points:?}");
    // The rejection is named once, with its code and table.
    let rejected: Vec<_> = got.iter().flat_map(|(_, r)| r.rejected.clone()).collect();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(Some(&rejected[0].batch_id), rejected_id.as_ref());
    assert_eq!(rejected[0].code, "envelope_unstripped_tenant_fields");
    assert_eq!(rejected[0].source_table.as_deref(), Some("device_state"));
    // Coalesced: receipts of one device are at least an interval apart (minus delivery
    // jitter), and far fewer than the 14 batches.
    for w in got.windows(2) {
        let gap = w[1].0 - w[0].0;
        assert!(gap >= INTERVAL / 2, "two receipts {gap:?} apart");
    }
    assert!(got.len() < 14, "{} receipts for 14 batches", got.len());
    let l = lineage(&s, dev, "device_state").await;
    assert_eq!(l.confirmed_through, last);
}
