//! Persistent sessions: `clean_session = false` subscribers get what was published while they
//! were away, unacknowledged deliveries are sent again, clean sessions start empty.

use crate::support::{Client, Opts, start_broker};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_subscriber_gets_messages_published_while_it_was_offline() {
    let broker = start_broker().await;
    let addr = broker.local_addr();
    let (mut sub, present) = Client::v4(addr, Opts::new("cloud-1").persistent()).await;
    assert!(!present, "first connection has no session");
    sub.subscribe("omega/+/sync/rows/batch").await;
    sub.disconnect().await;

    let (mut device, _) = Client::v4(addr, Opts::new("dev-1")).await;
    for i in 0..10 {
        // Each PUBACK means the broker took the message for the offline session.
        device
            .publish("omega/dev-1/sync/rows/batch", format!("b{i}"))
            .await;
    }

    // A fresh client (no client-side state) with the same id: the broker kept the session.
    let (mut sub, present) = Client::v4(addr, Opts::new("cloud-1").persistent()).await;
    assert!(present, "CONNACK says the session was kept");
    for i in 0..10 {
        let m = sub.message().await;
        assert_eq!(m.text(), format!("b{i}"), "queued messages arrive in order");
        assert_eq!(m.qos, 1);
    }
    // The subscription itself survived too: new messages arrive without re-subscribing.
    device.publish("omega/dev-1/sync/rows/batch", "live").await;
    assert_eq!(sub.message().await.text(), "live");
    broker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_session_survives_a_dropped_connection_without_disconnect() {
    let broker = start_broker().await;
    let addr = broker.local_addr();
    let (mut sub, _) = Client::v4(addr, Opts::new("cloud-2").persistent()).await;
    sub.subscribe("t").await;
    sub.kill().await; // no DISCONNECT: a crash or a cut cable

    let (mut device, _) = Client::v4(addr, Opts::new("dev-2")).await;
    device.publish("t", "while away").await;

    let (mut sub, present) = Client::v4(addr, Opts::new("cloud-2").persistent()).await;
    assert!(present);
    assert_eq!(sub.message().await.text(), "while away");
    broker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_delivery_is_sent_again_after_reconnect() {
    let broker = start_broker().await;
    let addr = broker.local_addr();
    let (mut sub, _) = Client::v4(addr, Opts::new("cloud-3").persistent().manual_acks()).await;
    sub.subscribe("t").await;
    let (mut device, _) = Client::v4(addr, Opts::new("dev-3")).await;
    device.publish("t", "must not be lost").await;

    let first = sub.message().await;
    assert_eq!(first.text(), "must not be lost");
    sub.kill().await; // received, never PUBACKed

    let (mut sub, present) =
        Client::v4(addr, Opts::new("cloud-3").persistent().manual_acks()).await;
    assert!(present);
    let again = sub.message().await;
    assert_eq!(
        again.text(),
        "must not be lost",
        "the broker re-sends until PUBACK"
    );
    assert!(again.dup, "the re-send carries DUP");
    sub.ack(&again).await;

    // Once acknowledged it is gone: the next delivery is the next message, not a third copy.
    // (Across a reconnect within milliseconds of the PUBACK the broker may still re-send it:
    // docs/broker.md, "Limitations".)
    device.publish("t", "marker").await;
    assert_eq!(
        sub.message().await.text(),
        "marker",
        "no re-send after PUBACK"
    );
    broker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_session_subscriber_starts_empty() {
    let broker = start_broker().await;
    let addr = broker.local_addr();
    let (mut sub, _) = Client::v4(addr, Opts::new("cloud-4")).await;
    sub.subscribe("t").await;
    sub.disconnect().await;
    let (mut device, _) = Client::v4(addr, Opts::new("dev-4")).await;
    device.publish("t", "lost").await;

    let (mut sub, present) = Client::v4(addr, Opts::new("cloud-4")).await;
    assert!(!present);
    sub.subscribe("t").await;
    device.publish("t", "marker").await;
    assert_eq!(
        sub.message().await.text(),
        "marker",
        "nothing was queued for a clean session"
    );
    broker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_5_session_with_expiry_keeps_messages_for_an_offline_subscriber() {
    let broker = start_broker().await;
    let addr = broker.local_addr();
    let opts = || {
        let mut o = Opts::new("cloud-5").persistent();
        o.session_expiry = Some(3600);
        o
    };
    let (mut sub, _) = Client::v5(addr, opts()).await;
    sub.subscribe("t").await;
    sub.disconnect().await;
    let (mut device, _) = Client::v4(addr, Opts::new("dev-5")).await;
    device.publish("t", "queued for v5").await;

    let (mut sub, present) = Client::v5(addr, opts()).await;
    assert!(present);
    assert_eq!(sub.message().await.text(), "queued for v5");
    broker.stop().await.unwrap();
}
