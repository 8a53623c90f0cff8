//! Clients reconnecting after the broker dropped them: a broker restart on the same address, a
//! session taken over by a new connection, and sessions kept on disk across a restart.

use omega_broker::{BrokerConfig, SessionStore};

use crate::support::{Client, Opts, start_broker, start_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_reconnect_after_a_broker_restart_on_the_same_address() {
    let broker = start_broker().await;
    let addr = broker.local_addr();
    let (mut sub, _) = Client::v4(addr, Opts::new("sub").reconnecting()).await;
    sub.subscribe("t").await;
    let (mut publisher, _) = Client::v4(addr, Opts::new("pub").reconnecting()).await;
    publisher.publish("t", "before").await;
    assert_eq!(sub.message().await.text(), "before");

    broker.stop().await.unwrap();
    sub.error().await;
    publisher.error().await;

    // Same port: the stopped broker released it.
    let broker = start_with(BrokerConfig::new(addr)).await;
    assert_eq!(broker.local_addr(), addr);
    let present = sub.connack().await;
    assert!(!present, "in-memory sessions end with the broker");
    publisher.connack().await;
    sub.subscribe("t").await;
    publisher.publish("t", "after").await;
    assert_eq!(sub.message().await.text(), "after");
    broker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_connection_takes_over_the_session_and_its_queue() {
    let broker = start_broker().await;
    let addr = broker.local_addr();
    let (mut old, _) = Client::v4(addr, Opts::new("cloud").persistent()).await;
    old.subscribe("t").await;

    // The same client id connects again (a restarted process whose old socket is half-dead).
    let (mut new, present) = Client::v4(addr, Opts::new("cloud").persistent()).await;
    assert!(present, "the new connection resumes the session");
    old.error().await; // the broker closed the old connection

    let (mut device, _) = Client::v4(addr, Opts::new("dev")).await;
    device.publish("t", "to the new one").await;
    assert_eq!(new.message().await.text(), "to the new one");
    broker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_in_a_directory_survive_a_broker_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = || {
        BrokerConfig::new(crate::support::any_port())
            .with_sessions(SessionStore::Dir(dir.path().join("sessions")))
    };
    let broker = start_with(config()).await;
    let addr = broker.local_addr();
    let (mut sub, _) = Client::v4(addr, Opts::new("cloud").persistent()).await;
    sub.subscribe("t").await;
    sub.disconnect().await;
    let (mut device, _) = Client::v4(addr, Opts::new("dev")).await;
    for i in 0..3 {
        device.publish("t", format!("m{i}")).await;
    }
    device.disconnect().await;
    broker.stop().await.unwrap();

    let broker = start_with(config()).await;
    let (mut sub, present) = Client::v4(broker.local_addr(), Opts::new("cloud").persistent()).await;
    assert!(present, "the session was read back from disk");
    for i in 0..3 {
        assert_eq!(sub.message().await.text(), format!("m{i}"));
    }
    broker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_returns_when_shutdown_resolves_at_once_and_releases_the_port() {
    let broker = omega_broker::Broker::bind(BrokerConfig::new(crate::support::any_port()))
        .await
        .unwrap();
    let addr = broker.local_addr();
    // A shutdown future that is ready before the broker serves must not be lost.
    tokio::time::timeout(crate::support::DEADLINE, broker.run(async {}))
        .await
        .expect("run returns")
        .unwrap();
    std::net::TcpListener::bind(addr).expect("the port is free again");
}
