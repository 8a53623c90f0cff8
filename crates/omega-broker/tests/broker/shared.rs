//! MQTT 5 shared subscriptions (`$share/group/filter`), as the cloud's ingest workers use them.

use std::collections::BTreeSet;

use crate::support::{Client, Opts, start_broker};

const FILTER: &str = "$share/ingest/omega/+/sync/rows/batch";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_subscription_splits_messages_between_two_mqtt_5_subscribers() {
    let broker = start_broker().await;
    let addr = broker.local_addr();
    let (mut w1, _) = Client::v5(addr, Opts::new("ingest-1")).await;
    w1.subscribe(FILTER).await;
    let (mut w2, _) = Client::v5(addr, Opts::new("ingest-2")).await;
    w2.subscribe(FILTER).await;
    // A plain subscriber on the same topics still gets everything.
    let (mut audit, _) = Client::v4(addr, Opts::new("audit")).await;
    audit.subscribe("omega/+/sync/rows/batch").await;
    let (mut device, _) = Client::v4(addr, Opts::new("dev-1")).await;

    const N: usize = 20;
    for i in 0..N {
        device
            .publish("omega/dev-1/sync/rows/batch", format!("{i}"))
            .await;
    }

    let (mut got1, mut got2) = (Vec::new(), Vec::new());
    while got1.len() + got2.len() < N {
        tokio::select! {
            m = w1.message() => got1.push(m.text()),
            m = w2.message() => got2.push(m.text()),
        }
    }
    assert!(
        !got1.is_empty() && !got2.is_empty(),
        "both workers got a share: {got1:?} {got2:?}"
    );
    let all: BTreeSet<String> = got1.iter().chain(&got2).cloned().collect();
    assert_eq!(
        all.len(),
        N,
        "each message went to exactly one worker: {got1:?} {got2:?}"
    );
    assert_eq!(all, (0..N).map(|i| i.to_string()).collect());

    for i in 0..N {
        assert_eq!(audit.message().await.text(), i.to_string());
    }
    broker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_subscription_falls_back_to_the_remaining_worker() {
    let broker = start_broker().await;
    let addr = broker.local_addr();
    let (mut w1, _) = Client::v5(addr, Opts::new("ingest-1")).await;
    w1.subscribe(FILTER).await;
    let (mut w2, _) = Client::v5(addr, Opts::new("ingest-2")).await;
    w2.subscribe(FILTER).await;
    w2.disconnect().await;
    let (mut device, _) = Client::v4(addr, Opts::new("dev-1")).await;

    for i in 0..5 {
        device
            .publish("omega/dev-1/sync/rows/batch", format!("{i}"))
            .await;
    }
    for i in 0..5 {
        assert_eq!(
            w1.message().await.text(),
            i.to_string(),
            "all go to the worker left"
        );
    }
    broker.stop().await.unwrap();
}
