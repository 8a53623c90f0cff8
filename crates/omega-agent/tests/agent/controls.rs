//! Downlink controls over a real broker (`spec/agent.md` §13): a test client publishes
//! forged and genuine controls on the device's control topic and watches its ACK topic.
//! Forged ones (unsigned, wrong key, a field changed after signing) change nothing and are
//! never ACKed; a replayed `control_seq` is ACKed again and not applied again.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use omega_agent::downlink::Verification;
use omega_agent::state::StateDb;
use omega_protocol::json::Json;
use omega_protocol::signing::ControlKey;
use omega_testkit::mosquitto::machine_broker;
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};

use crate::support::*;

fn members(id: &str, seq: i64, kind: &str, table: &str) -> Vec<(String, Json)> {
    vec![
        ("format_version".into(), Json::Integer(1)),
        ("control_id".into(), Json::String(id.into())),
        ("control_kind".into(), Json::String(kind.into())),
        ("control_seq".into(), Json::Integer(seq)),
        ("source_table".into(), Json::String(table.into())),
        ("server_watermark".into(), Json::Integer(0)),
        (
            "issued_at".into(),
            Json::String("2026-04-28T09:00:00Z".into()),
        ),
    ]
}

fn signed(key: &ControlKey, device: &str, m: Vec<(String, Json)>) -> Vec<u8> {
    let mut m = m;
    let sig = key.sign_object(&m, device);
    m.push(("signature".into(), sig));
    Json::Object(m).to_canonical_vec()
}

fn paused(state: &std::path::Path, table: &str) -> bool {
    StateDb::open_read_only(state)
        .ok()
        .and_then(|s| s.table(table).ok().flatten())
        .is_some_and(|t| t.paused)
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_controls_change_nothing_and_a_replay_is_acked_but_not_applied() {
    init_logs();
    let broker = machine_broker();
    let dir = tempfile::tempdir().unwrap();
    let source = source_db(dir.path());
    let device = unique_device("ctl");
    let key = ControlKey::ed25519_from_secret(&[7; 32]);
    let wrong = ControlKey::ed25519_from_secret(&[8; 32]);
    let mut cfg = run_config(dir.path(), &source, &device, &format!("mqtt://{broker}"));
    cfg.verification = Verification::Key(Box::new(key.verifier()));
    let state = cfg.engine.state_db_path.clone();

    // The test's client: publishes on the control topic, records ACKs.
    let mut o = MqttOptions::new(
        format!("ctl-test-{device}"),
        broker.ip().to_string(),
        broker.port(),
    );
    o.set_keep_alive(Duration::from_secs(5));
    let (client, mut el) = AsyncClient::new(o, 64);
    let acks: Arc<Mutex<Vec<String>>> = Arc::default();
    let subscribed = Arc::new(tokio::sync::Notify::new());
    {
        let (acks, subscribed, client) = (acks.clone(), subscribed.clone(), client.clone());
        let ack_topic = format!("omega/{device}/sync/ingest/ack");
        tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                        let _ = client.try_subscribe(ack_topic.clone(), QoS::AtLeastOnce);
                    }
                    Ok(Event::Incoming(Incoming::SubAck(_))) => subscribed.notify_one(),
                    Ok(Event::Incoming(Incoming::Publish(p))) => {
                        let v: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
                        acks.lock()
                            .unwrap()
                            .push(v["control_id"].as_str().unwrap().to_string());
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
    }
    tokio::time::timeout(Duration::from_secs(10), subscribed.notified())
        .await
        .expect("SUBACK of the test client");

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(omega_agent::run::run(cfg, async move {
        let _ = stop_rx.await;
    }));
    wait_for_triggers(&source, 12, &agent).await;
    let topic = format!("omega/{device}/sync/ingest/control");
    let send = |payload: Vec<u8>| {
        let (client, topic) = (client.clone(), topic.clone());
        async move {
            client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .unwrap();
        }
    };
    let id = |n: u8| format!("0196b4d0-0000-7000-8000-0000000000{n:02x}");
    // Wait until the agent subscribed: a harmless genuine control, sent again every second
    // until it is ACKed (the triggers are installed before the agent connects, and a control
    // published before its first SUBSCRIBE reaches no one).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !acks.lock().unwrap().contains(&id(1)) {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out: the agent ACKs a genuine control"
        );
        send(signed(
            &key,
            &device,
            members(&id(1), 1, "resume_lineage", "order"),
        ))
        .await;
        let sent = std::time::Instant::now();
        while sent.elapsed() < Duration::from_secs(1) && !acks.lock().unwrap().contains(&id(1)) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // Forged: unsigned, signed with another key, a field changed after signing.
    send(Json::Object(members(&id(2), 2, "pause_lineage", "order")).to_canonical_vec()).await;
    send(signed(
        &wrong,
        &device,
        members(&id(3), 3, "pause_lineage", "order"),
    ))
    .await;
    let mut tampered = members(&id(4), 4, "pause_lineage", "naïve table");
    let sig = key.sign_object(&tampered, &device);
    tampered[4].1 = Json::String("order".into());
    tampered.push(("signature".into(), sig));
    send(Json::Object(tampered).to_canonical_vec()).await;
    // Signed for another device: the signature binds the device id.
    send(signed(
        &key,
        "someone-else",
        members(&id(5), 5, "pause_lineage", "order"),
    ))
    .await;
    // Then a genuine pause: once it is ACKed, every forged one before it has been handled.
    send(signed(
        &key,
        &device,
        members(&id(6), 6, "pause_lineage", "order"),
    ))
    .await;
    until("the genuine pause is ACKed and applied", || {
        acks.lock().unwrap().contains(&id(6)) && paused(&state, "order")
    })
    .await;
    {
        let a = acks.lock().unwrap();
        for n in 2..=5 {
            assert!(!a.contains(&id(n)), "forged control {n} was ACKed: {a:?}");
        }
    }
    assert!(
        !paused(&state, "naïve table"),
        "the tampered control changed nothing"
    );

    // Resume (seq 7), then replay the old pause (seq 6): ACKed again, not applied again.
    send(signed(
        &key,
        &device,
        members(&id(7), 7, "resume_lineage", "order"),
    ))
    .await;
    until("resume applied", || !paused(&state, "order")).await;
    send(signed(
        &key,
        &device,
        members(&id(6), 6, "pause_lineage", "order"),
    ))
    .await;
    until("the replay is ACKed again", || {
        acks.lock().unwrap().iter().filter(|a| **a == id(6)).count() >= 2
    })
    .await;
    assert!(
        !paused(&state, "order"),
        "a replayed control is not applied again"
    );
    let rejected = StateDb::open_read_only(&state)
        .unwrap()
        .counters()
        .unwrap()
        .into_iter()
        .find(|(n, _)| n == "controls_rejected")
        .map(|(_, v)| v);
    assert_eq!(rejected, Some(4), "every forged control counted");

    stop_tx.send(()).unwrap();
    agent.await.unwrap().unwrap();
}

fn receipt(key: Option<&ControlKey>, device: &str, epoch: &str, through: i64) -> Vec<u8> {
    let mut m: Vec<(String, Json)> = vec![
        ("format_version".into(), Json::Integer(1)),
        (
            "issued_at".into(),
            Json::String("2026-04-28T09:00:01Z".into()),
        ),
        (
            "lineages".into(),
            Json::Array(vec![Json::Object(vec![
                ("source_table".into(), Json::String("order".into())),
                ("journal_epoch".into(), Json::String(epoch.into())),
                ("confirmed_through".into(), Json::Integer(through)),
            ])]),
        ),
    ];
    if let Some(k) = key {
        let sig = k.sign_object(&m, device);
        m.push(("signature".into(), sig));
    }
    Json::Object(m).to_canonical_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_receipts_move_nothing_and_the_journal_is_not_pruned() {
    init_logs();
    let broker = machine_broker();
    let dir = tempfile::tempdir().unwrap();
    let source = source_db(dir.path());
    let device = unique_device("rcpt");
    let key = ControlKey::ed25519_from_secret(&[9; 32]);
    let wrong = ControlKey::ed25519_from_secret(&[10; 32]);
    let mut cfg = run_config(dir.path(), &source, &device, &format!("mqtt://{broker}"));
    cfg.engine.delivery = omega_agent::engine::Delivery::Receipts;
    cfg.verification = Verification::Key(Box::new(key.verifier()));
    let state = cfg.engine.state_db_path.clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(omega_agent::run::run(cfg, async move {
        let _ = stop_rx.await;
    }));
    wait_for_triggers(&source, 12, &agent).await;
    let app = app_conn(&source);
    for i in 0..20 {
        app.execute(r#"INSERT INTO "order" (id, item) VALUES (?1, 'x')"#, [i])
            .unwrap();
    }
    let table = || {
        StateDb::open_read_only(&state)
            .ok()
            .and_then(|s| s.table("order").ok().flatten())
            .unwrap_or_default()
    };
    until("the broker acknowledged the changes", || {
        table().published_seq >= 20
    })
    .await;
    let published = table().published_seq;
    let epoch = StateDb::open_read_only(&state)
        .unwrap()
        .meta("journal_epoch")
        .unwrap()
        .unwrap();

    let mut o = MqttOptions::new(
        format!("rcpt-test-{device}"),
        broker.ip().to_string(),
        broker.port(),
    );
    o.set_keep_alive(Duration::from_secs(5));
    let (client, mut el) = AsyncClient::new(o, 16);
    tokio::spawn(async move { while el.poll().await.is_ok() {} });
    let topic = format!("omega/{device}/sync/ingest/receipt");
    for forged in [
        receipt(None, &device, &epoch, published),
        receipt(Some(&wrong), &device, &epoch, published),
        receipt(Some(&key), "another-device", &epoch, published),
    ] {
        client
            .publish(topic.clone(), QoS::AtLeastOnce, false, forged)
            .await
            .unwrap();
    }
    // A genuine receipt for a lower point: had a forged one counted, the cursor (which only
    // moves forward) would be past it.
    client
        .publish(
            topic.clone(),
            QoS::AtLeastOnce,
            false,
            receipt(Some(&key), &device, &epoch, 3),
        )
        .await
        .unwrap();
    until("the genuine receipt is applied", || {
        table().confirmed_seq > 0
    })
    .await;
    assert_eq!(
        table().confirmed_seq,
        3,
        "only the genuine receipt moved the cursor"
    );
    let rejected = StateDb::open_read_only(&state)
        .unwrap()
        .counters()
        .unwrap()
        .into_iter()
        .find(|(n, _)| n == "receipts_rejected")
        .map(|(_, v)| v);
    assert_eq!(rejected, Some(3));
    let kept: i64 = app
        .query_row(
            "SELECT count(*) FROM __omega_journal WHERE seq > 3 AND tid <> 0",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        kept >= 17,
        "entries above the confirmed point are kept ({kept})"
    );
    stop_tx.send(()).unwrap();
    agent.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_observations_are_published_at_enrollment_and_after_a_schema_change() {
    use omega_protocol::topic::Suffix;
    use omega_protocol::validate::{DeviceMessage, decode_device_message};
    init_logs();
    let broker = machine_broker();
    let dir = tempfile::tempdir().unwrap();
    let source = source_db(dir.path());
    let device = unique_device("obs");
    let cfg = run_config(dir.path(), &source, &device, &format!("mqtt://{broker}"));

    let mut o = MqttOptions::new(
        format!("obs-test-{device}"),
        broker.ip().to_string(),
        broker.port(),
    );
    o.set_keep_alive(Duration::from_secs(5));
    let (client, mut el) = AsyncClient::new(o, 64);
    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let subscribed = Arc::new(tokio::sync::Notify::new());
    {
        let (seen, subscribed, client) = (seen.clone(), subscribed.clone(), client.clone());
        let topic = format!("omega/{device}/sync/schema/observe");
        tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                        let _ = client.try_subscribe(topic.clone(), QoS::AtLeastOnce);
                    }
                    Ok(Event::Incoming(Incoming::SubAck(_))) => subscribed.notify_one(),
                    Ok(Event::Incoming(Incoming::Publish(p))) => {
                        match decode_device_message(Suffix::SchemaObserve, &p.payload) {
                            Ok(DeviceMessage::SchemaObservation(o)) => {
                                seen.lock().unwrap().push((o.source_table, o.schema_hash))
                            }
                            other => panic!("invalid observation: {other:?}"),
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
    }
    tokio::time::timeout(Duration::from_secs(10), subscribed.notified())
        .await
        .expect("SUBACK");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(omega_agent::run::run(cfg, async move {
        let _ = stop_rx.await;
    }));
    wait_for_triggers(&source, 12, &agent).await;
    until("an observation per enrolled table", || {
        let s = seen.lock().unwrap();
        ["order", "a\"b", "naïve table"]
            .iter()
            .all(|t| s.iter().any(|(n, _)| n == t))
    })
    .await;
    let before = seen.lock().unwrap().clone();
    app_conn(&source)
        .execute_batch(r#"ALTER TABLE "order" ADD COLUMN note TEXT"#)
        .unwrap();
    let conn = app_conn(&source);
    let new_hash = omega_agent::capture::TableSpec::read(&conn, "order")
        .unwrap()
        .schema_hash;
    assert!(!before.iter().any(|(_, h)| *h == new_hash));
    until("the new hash observed", || {
        seen.lock()
            .unwrap()
            .iter()
            .any(|(t, h)| t == "order" && *h == new_hash)
    })
    .await;
    stop_tx.send(()).unwrap();
    agent.await.unwrap().unwrap();
}
