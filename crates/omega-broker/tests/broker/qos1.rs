//! QoS 1 publish/subscribe on MQTT 3.1.1 and 5, and payloads beyond the batch limit.

use crate::support::{Client, Opts, start_broker};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_round_trip_on_mqtt_3_1_1() {
    let broker = start_broker().await;
    let addr = broker.local_addr();
    let (mut sub, present) = Client::v4(addr, Opts::new("sub")).await;
    assert!(!present, "a clean session is never present");
    sub.subscribe("omega/dev-1/sync/rows/batch").await;
    let (mut publisher, _) = Client::v4(addr, Opts::new("pub")).await;

    for i in 0..5 {
        // Returns once the broker's PUBACK arrived.
        publisher
            .publish("omega/dev-1/sync/rows/batch", format!("batch {i}"))
            .await;
    }
    for i in 0..5 {
        let m = sub.message().await;
        assert_eq!(m.topic, "omega/dev-1/sync/rows/batch");
        assert_eq!(m.text(), format!("batch {i}"), "in publish order");
        assert_eq!(m.qos, 1, "delivered at QoS 1");
    }
    broker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_1_and_mqtt_5_clients_share_one_listener() {
    let broker = start_broker().await;
    let addr = broker.local_addr();
    let (mut sub5, _) = Client::v5(addr, Opts::new("cloud")).await;
    sub5.subscribe("omega/+/sync/rows/batch").await;
    let (mut sub4, _) = Client::v4(addr, Opts::new("watcher")).await;
    sub4.subscribe("omega/#").await;
    let (mut device, _) = Client::v4(addr, Opts::new("device")).await;

    device.publish("omega/dev-2/sync/rows/batch", "rows").await;
    assert_eq!(sub5.message().await.text(), "rows");
    assert_eq!(sub4.message().await.text(), "rows");

    // And the other way round: an MQTT 5 publisher, a 3.1.1 subscriber.
    sub5.publish("omega/dev-2/sync/ingest/control", "pause")
        .await;
    let m = sub4.message().await;
    assert_eq!(
        (m.topic.as_str(), m.text().as_str()),
        ("omega/dev-2/sync/ingest/control", "pause")
    );
    broker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_larger_than_a_batch_pass_through() {
    let broker = start_broker().await;
    let addr = broker.local_addr();
    let (mut sub, _) = Client::v4(addr, Opts::new("sub")).await;
    sub.subscribe("big").await;
    let (mut sub5, _) = Client::v5(addr, Opts::new("sub5")).await;
    sub5.subscribe("big").await;
    let (mut publisher, _) = Client::v4(addr, Opts::new("pub")).await;

    // 3 MiB: six times the 512 KiB batch limit, as a single oversized row may be.
    let payload: Vec<u8> = (0..3 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    publisher.publish("big", payload.clone()).await;
    assert!(
        sub.message().await.payload == payload,
        "3.1.1 subscriber gets the exact bytes"
    );
    assert!(
        sub5.message().await.payload == payload,
        "MQTT 5 subscriber gets the exact bytes"
    );
    broker.stop().await.unwrap();
}
