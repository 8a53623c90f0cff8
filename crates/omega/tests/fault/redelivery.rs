//! Duplicate and reordered delivery: an observer captures the agent's real batches on the
//! device's uplink topic while no cloud runs; the agent is killed; a test publisher then
//! re-publishes every captured batch two or three times, all shuffled, to a fresh `omega cloud
//! serve`. From those alone the mirror must equal the source, and the ledger must show one
//! accepted entry per batch id whose deliveries equal the copies sent (each duplicate counted,
//! never applied again). The agent then comes back and every change is confirmed by receipt.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use omega_protocol::message::RowBatch;
use omega_protocol::topic::Suffix;
use omega_protocol::validate::{DeviceMessage, decode_device_message};
use omega_testkit::mosquitto::machine_broker;
use omega_testkit::postgres::PostgresDb;
use omega_testkit::wait::until_true;
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};

use crate::cloud_e2e::{CONVERGE, Setup, TABLES, app_writes, diff, source_rows};
use crate::{Rng, cycles, ledger, rows_compared};

fn options(id: &str) -> MqttOptions {
    let broker = machine_broker();
    let mut o = MqttOptions::new(id, broker.ip().to_string(), broker.port());
    o.set_max_packet_size(64 << 20, 64 << 20);
    o.set_keep_alive(Duration::from_secs(5));
    o
}

/// Every payload published on `topic` from the SUBACK on, raw.
struct Capture {
    client: Client,
    payloads: Arc<Mutex<Vec<Vec<u8>>>>,
    thread: std::thread::JoinHandle<()>,
}

impl Capture {
    fn start(topic: &str, id: &str) -> Capture {
        let (client, mut connection) = Client::new(options(id), 64);
        client.subscribe(topic, QoS::AtLeastOnce).unwrap();
        let payloads = Arc::new(Mutex::new(Vec::new()));
        let seen = payloads.clone();
        let (ready, subscribed) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ready.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        seen.lock().unwrap().push(p.payload.to_vec());
                    }
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
                    Ok(_) => {}
                    Err(e) => panic!("the capture lost the broker: {e}"),
                }
            }
        });
        subscribed
            .recv_timeout(Duration::from_secs(10))
            .expect("the capture's SUBACK within 10 s (is mosquitto on 127.0.0.1:1883?)");
        Capture {
            client,
            payloads,
            thread,
        }
    }

    /// The batches captured so far, decoded by the protocol's validator.
    fn batches(&self) -> Vec<(RowBatch, Vec<u8>)> {
        self.payloads
            .lock()
            .unwrap()
            .iter()
            .map(|p| match decode_device_message(Suffix::RowsBatch, p) {
                Ok(DeviceMessage::RowBatch(b)) => (b, p.clone()),
                other => panic!("the agent published an invalid batch: {other:?}"),
            })
            .collect()
    }

    fn stop(self) {
        self.client.disconnect().unwrap();
        self.thread.join().unwrap();
    }
}

/// Publishes `payloads` in order at QoS 1 and waits for every PUBACK.
fn publish_all(topic: &str, id: &str, payloads: &[Vec<u8>]) {
    let (client, mut connection) = Client::new(options(id), 64);
    let want = payloads.len();
    let acks = std::thread::spawn(move || {
        let mut acked = 0;
        for event in connection.iter() {
            match event {
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    acked += 1;
                    if acked == want {
                        return acked;
                    }
                }
                Ok(_) => {}
                Err(e) => panic!("the publisher lost the broker: {e}"),
            }
        }
        acked
    });
    for p in payloads {
        client
            .publish(topic, QoS::AtLeastOnce, false, p.clone())
            .unwrap();
    }
    assert_eq!(
        acks.join().unwrap(),
        want,
        "every re-publication acknowledged"
    );
    let _ = client.disconnect();
}

#[test]
fn duplicated_and_shuffled_batches_converge_exactly_and_apply_once() {
    let started = Instant::now();
    let db = PostgresDb::fresh();
    let setup = Setup::new("redeliver", Some(db.url()));
    let topic = format!("{}/{}/sync/rows/batch", setup.root, setup.device);
    let capture = Capture::start(&topic, &format!("obs-{}", setup.device));
    let agent = setup.start_agent();
    // One transaction per flush, so every table's chain has many links to reorder.
    let rounds = i64::try_from(cycles(6)).unwrap();
    for round in 0..rounds {
        let before = capture.payloads.lock().unwrap().len();
        app_writes(&setup.source(), round, 1);
        until_true("a batch of every table on the wire", CONVERGE, || {
            capture.payloads.lock().unwrap().len() >= before + TABLES.len()
        });
    }
    // Everything the source holds crossed the wire (the mirror the captured batches imply).
    let want = omega_testkit::wire::source_rows(&setup.source(), &TABLES);
    until_true("the agent published every change", CONVERGE, || {
        let batches: Vec<RowBatch> = capture.batches().into_iter().map(|(b, _)| b).collect();
        omega_testkit::wire::mirror_of(&batches) == want
    });
    agent.kill9();
    let captured = capture.batches();
    capture.stop();

    // One payload per batch id, sent two or three times, all shuffled.
    let mut by_id: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (b, p) in captured {
        by_id.entry(b.batch_id.clone()).or_insert(p);
    }
    let mut rng = Rng::new("redelivery");
    let mut copies: BTreeMap<String, i64> = BTreeMap::new();
    let mut sends: Vec<Vec<u8>> = Vec::new();
    for (id, p) in &by_id {
        let n = 2 + rng.range(0, 2);
        copies.insert(id.clone(), i64::try_from(n).unwrap());
        for _ in 0..n {
            sends.push(p.clone());
        }
    }
    for i in (1..sends.len()).rev() {
        let j = usize::try_from(rng.range(0, u64::try_from(i + 1).unwrap())).unwrap();
        sends.swap(i, j);
    }
    let cloud = setup.start_cloud();
    publish_all(&topic, &format!("pub-{}", setup.device), &sends);

    // The mirror from the re-published batches alone (the agent is down).
    let want = source_rows(&setup.source());
    let deadline = Instant::now() + CONVERGE;
    loop {
        let got = setup.mirror_rows();
        if got == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the mirror differs from the source after shuffled re-delivery:\n{}\nquarantine: {:#}",
            diff(&got, &want),
            setup
                .cloud_json(&["quarantine", "--device", &setup.device])
                .unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // One accepted ledger entry per batch id, each duplicate counted as a delivery only.
    until_true("every delivery counted in the ledger", CONVERGE, || {
        let l = ledger::of(db.url(), &setup.device);
        l.values().map(|(_, d)| d).sum::<i64>() == copies.values().sum::<i64>()
    });
    let l = ledger::of(db.url(), &setup.device);
    let got: BTreeMap<String, i64> = l.iter().map(|(id, (_, d))| (id.clone(), *d)).collect();
    assert_eq!(got, copies, "ledger deliveries per batch id");
    ledger::assert_clean(db.url(), &setup.device);

    // The agent comes back: receipts confirm every change it published.
    let agent = setup.start_agent();
    setup.converge();
    eprintln!(
        "fault redelivery: {} batches, {} deliveries shuffled, {} rows compared, {:.1} s",
        copies.len(),
        sends.len(),
        rows_compared(&setup),
        started.elapsed().as_secs_f64()
    );
    agent.sigterm();
    cloud.sigterm();
}
