//! `omega cloud broker-acl` against a real mosquitto: the test starts a private mosquitto whose
//! whole listener section is the generated `omega-listener.conf` (with `omega.acl`), and a
//! throwaway PKI (rcgen). Clients authenticate with certificates whose CN is their identity.
//!
//! - A device cannot publish on another device's topics nor on its own downlink topics, and
//!   never receives another device's controls or receipts; its own publishes go through.
//!   Mosquitto drops an unauthorized publish silently (and, in 2.0, grants the subscription
//!   but never delivers), so each assertion is bounded by a marker message sent after the
//!   forged ones on the same connection: the marker arriving first proves the forged message
//!   was dropped, without sleeping.
//! - Clients without a certificate, with an expired one or with one from another CA are
//!   refused.
//! - `omega agent run` → mosquitto (ACL, mTLS both ways) → `omega cloud serve` (mqtts with
//!   `broker.tls`): the mirror equals the source, receipts flow back through the ACL, a
//!   batch replayed by the device's identity on another device's topic creates nothing, and
//!   one naming a tenant (`org_id`) is quarantined with `envelope_unstripped_tenant_fields`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use omega_testkit::mosquitto::Mosquitto;
use omega_testkit::pki::Pki;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use tokio::sync::mpsc;

use crate::cloud_e2e::{Setup, app_writes};

/// The cloud's identity in these tests (the generator's default).
const CLOUD: &str = "omega-cloud";

const WAIT: Duration = Duration::from_secs(30);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &omega_protocol::ids::new_v7().replace('-', "")[20..]
    )
}

/// A private mosquitto configured only by `omega cloud broker-acl`, and the PKI it trusts.
struct AclBroker {
    broker: Mosquitto,
    pki: Arc<Pki>,
}

impl AclBroker {
    /// Generates the listener and ACL for `device_topic` with the binary, per port.
    fn start(device_topic: &str) -> AclBroker {
        let pki = Arc::new(Pki::generate("unused"));
        let (p, topic) = (pki.clone(), device_topic.to_owned());
        let broker = Mosquitto::start_config(move |port| {
            let out = p.dir().join(format!("acl-{port}"));
            let conf = out.join("omega-listener.conf");
            if !conf.exists() {
                let path = |n: &str| p.path(n).display().to_string();
                let o = crate::cloud_e2e::omega(&[
                    "cloud",
                    "broker-acl",
                    "--device-topic",
                    &topic,
                    "--cloud-identity",
                    CLOUD,
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--cafile",
                    &path("ca.pem"),
                    "--certfile",
                    &path("server.pem"),
                    "--keyfile",
                    &path("server.key"),
                    "--out",
                    out.to_str().unwrap(),
                ]);
                assert!(
                    o.status.success(),
                    "broker-acl: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
            }
            // Denied publishes and refused handshakes in the log, for failure messages;
            // `user root` keeps a broker started by root able to write it (ignored otherwise).
            std::fs::read_to_string(conf).unwrap() + "log_type all\nuser root\n"
        });
        AclBroker { broker, pki }
    }

    /// The next message of `peer`, or a panic with the broker's log.
    async fn next(&self, peer: &mut Peer) -> (String, String) {
        match peer.try_next().await {
            Some(m) => m,
            None => panic!("no message within 30 s; broker log:\n{}", self.broker.log()),
        }
    }

    /// `cn` publishes `body` on `forged`, then `marker` on `own`, such that the marker reaches
    /// subscribers after anything the forgery could have produced: on the same connection
    /// (the broker handles a connection's packets in order), or — mosquitto 2.0.11 closes the
    /// connection of a client whose publish it denied — on a new connection opened after the
    /// broker closed the first.
    async fn forge_then_mark(&self, cn: &str, forged: &str, body: &str, own: &str, marker: &str) {
        let mut p = self.peer(cn, &unique("forger")).await;
        p.forge(forged, body).await;
        if !p.publish_acked(own, marker).await {
            drop(p);
            let mut again = self.peer(cn, &unique("forger")).await;
            assert!(
                again.publish_acked(own, marker).await,
                "{cn}: own publish refused"
            );
        }
    }

    /// Messages of `peer` until `want`; panics on any message with body `forbidden`.
    async fn until(&self, peer: &mut Peer, want: &(String, String), forbidden: &str) {
        loop {
            let m = self.next(peer).await;
            assert_ne!(m.1, forbidden, "a forged message got through: {m:?}");
            if &m == want {
                return;
            }
        }
    }

    fn port(&self) -> u16 {
        self.broker.addr().port()
    }

    /// A certificate from the broker's CA for `cn`.
    fn cert(&self, cn: &str, expired: bool) -> (PathBuf, PathBuf) {
        self.pki
            .issue_client(&format!("{cn}-{expired}"), cn, expired)
    }

    /// A connected client with a fresh certificate for `cn`.
    async fn peer(&self, cn: &str, client_id: &str) -> Peer {
        let (cert, key) = self.cert(cn, false);
        Peer::connect(
            self.port(),
            client_id,
            &self.pki.path("ca.pem"),
            Some((&cert, &key)),
        )
        .await
        .unwrap_or_else(|e| panic!("{cn} refused: {e}\nbroker log:\n{}", self.broker.log()))
    }
}

/// An MQTT 3.1.1 client over TLS whose incoming publishes land in a channel.
struct Peer {
    client: AsyncClient,
    messages: mpsc::UnboundedReceiver<(String, String)>,
    subacks: mpsc::UnboundedReceiver<()>,
    /// `Ok` per PUBACK, `Err` per connection error (the broker closed the connection).
    status: mpsc::UnboundedReceiver<Result<(), String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Peer {
    /// Connects (verifying the broker against `ca`); `Err` when the broker refuses.
    async fn connect(
        port: u16,
        client_id: &str,
        ca: &Path,
        pair: Option<(&Path, &Path)>,
    ) -> Result<Peer, String> {
        let tls = omega_tls::client_config(&omega_tls::ClientFiles {
            ca: Some(ca),
            ca_field: "ca",
            client: pair.map(|(cert, key)| omega_tls::ClientPair {
                cert,
                cert_field: "cert",
                key,
                key_field: "key",
            }),
        })
        .unwrap();
        let mut o = MqttOptions::new(client_id, "127.0.0.1", port);
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(tls),
        )));
        o.set_keep_alive(Duration::from_secs(5));
        // Row batches are up to 512 KiB (the default limit is 10 KiB).
        o.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut eventloop) = AsyncClient::new(o, 64);
        let connack = tokio::time::timeout(WAIT, async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        return if ack.code == rumqttc::ConnectReturnCode::Success {
                            Ok(())
                        } else {
                            Err(format!("CONNACK {:?}", ack.code))
                        };
                    }
                    Ok(_) => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
        })
        .await
        .map_err(|_| "no CONNACK and no error within 30 s".to_string())?;
        connack?;
        let (msg_tx, messages) = mpsc::unbounded_channel();
        let (ack_tx, subacks) = mpsc::unbounded_channel();
        let (status_tx, status) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let body = String::from_utf8_lossy(&p.payload).into_owned();
                        let _ = msg_tx.send((p.topic, body));
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ack_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        let _ = status_tx.send(Ok(()));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = status_tx.send(Err(e.to_string()));
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        Ok(Peer {
            client,
            messages,
            subacks,
            status,
            task,
        })
    }

    /// Subscribes at QoS 1 and waits for the SUBACK.
    async fn subscribe(&mut self, filter: &str) {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .unwrap();
        tokio::time::timeout(WAIT, self.subacks.recv())
            .await
            .unwrap_or_else(|_| panic!("no SUBACK for {filter}"));
    }

    async fn publish(&self, topic: &str, body: &str) {
        self.publish_qos(topic, body, QoS::AtLeastOnce).await;
    }

    /// A publish the ACL must drop, at QoS 0 (mosquitto 2.0.11 answers a denied QoS 1
    /// publish of an MQTT 3.1.1 client with a PUBACK carrying an MQTT 5 reason code).
    async fn forge(&self, topic: &str, body: &str) {
        self.publish_qos(topic, body, QoS::AtMostOnce).await;
    }

    /// Publishes at QoS 1 and waits for its PUBACK (`true`) or the connection's end (`false`).
    async fn publish_acked(&mut self, topic: &str, body: &str) -> bool {
        self.publish(topic, body).await;
        match tokio::time::timeout(WAIT, self.status.recv()).await {
            Ok(Some(Ok(()))) => true,
            Ok(Some(Err(_))) => false,
            _ => panic!("no PUBACK and no connection error within 30 s"),
        }
    }

    async fn publish_qos(&self, topic: &str, body: &str, qos: QoS) {
        self.client
            .publish(topic, qos, false, body.as_bytes().to_vec())
            .await
            .unwrap();
    }

    /// The next message received, or `None` after 30 s.
    async fn try_next(&mut self) -> Option<(String, String)> {
        tokio::time::timeout(WAIT, self.messages.recv())
            .await
            .ok()
            .flatten()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn owned(topic: &str, body: &str) -> (String, String) {
    (topic.to_owned(), body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_is_confined_to_its_own_topics() {
    let root = unique("acl");
    let b = AclBroker::start(&format!("{root}/{{device}}"));
    let t = |dev: &str, suffix: &str| format!("{root}/{dev}/sync/{suffix}");
    let mut cloud = b.peer(CLOUD, &unique("watch")).await;
    cloud.subscribe(&format!("{root}/+/sync/#")).await;
    let mut a = b.peer("dev-a", "dev-a").await;
    let mut dev_b = b.peer("dev-b", "dev-b").await;
    for dev in ["dev-b", "dev-a"] {
        for s in ["ingest/control", "ingest/receipt"] {
            a.subscribe(&t(dev, s)).await;
        }
    }
    dev_b.subscribe(&t("dev-b", "ingest/control")).await;

    // Downlink: the cloud reaches each device on its own topics; A never gets B's, although
    // mosquitto 2.0 granted A's subscriptions to them.
    for dev in ["dev-b", "dev-a"] {
        for s in ["ingest/control", "ingest/receipt"] {
            cloud.publish(&t(dev, s), &format!("for {dev}")).await;
        }
    }
    assert_eq!(
        b.next(&mut a).await,
        owned(&t("dev-a", "ingest/control"), "for dev-a")
    );
    assert_eq!(
        b.next(&mut a).await,
        owned(&t("dev-a", "ingest/receipt"), "for dev-a")
    );
    assert_eq!(
        b.next(&mut dev_b).await,
        owned(&t("dev-b", "ingest/control"), "for dev-b")
    );
    for _ in 0..4 {
        let m = b.next(&mut cloud).await;
        assert!(m.1.starts_with("for dev-"), "{m:?}");
    }

    // Uplink: A's identity forges on B's uplink and on both devices' downlink; each time its
    // own batch, published after, is the next thing the cloud identity sees.
    let own = t("dev-a", "rows/batch");
    for (i, forged) in [
        t("dev-b", "rows/batch"),
        t("dev-b", "ingest/ack"),
        t("dev-b", "ingest/control"),
        t("dev-a", "ingest/control"),
        t("dev-a", "ingest/receipt"),
    ]
    .iter()
    .enumerate()
    {
        let marker = format!("own {i}");
        b.forge_then_mark("dev-a", forged, "forged", &own, &marker)
            .await;
        b.until(&mut cloud, &owned(&own, &marker), "forged").await;
    }
    // Neither device got the forged downlink: their next message is the cloud's.
    cloud.publish(&t("dev-a", "ingest/control"), "again").await;
    cloud.publish(&t("dev-b", "ingest/control"), "again").await;
    assert_eq!(
        b.next(&mut a).await,
        owned(&t("dev-a", "ingest/control"), "again")
    );
    assert_eq!(
        b.next(&mut dev_b).await,
        owned(&t("dev-b", "ingest/control"), "again")
    );
    // B's own uplink goes through.
    dev_b.publish(&t("dev-b", "schema/observe"), "b own").await;
    b.until(
        &mut cloud,
        &owned(&t("dev-b", "schema/observe"), "b own"),
        "forged",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_a_good_certificate_are_refused() {
    let b = AclBroker::start("omega/{device}");
    let ca = b.pki.path("ca.pem");
    let (old_cert, old_key) = b.cert("dev-x", true);
    let other_ca = Pki::generate("dev-x");
    let cases: [(&str, Option<(&Path, &Path)>); 3] = [
        ("no certificate", None),
        ("an expired certificate", Some((&old_cert, &old_key))),
        (
            "a certificate from another CA",
            Some((&other_ca.path("client.pem"), &other_ca.path("client.key"))),
        ),
    ];
    for (what, pair) in cases {
        match Peer::connect(b.port(), "dev-x", &ca, pair).await {
            Ok(_) => panic!("a client with {what} was let in"),
            Err(e) => assert!(!e.contains("no CONNACK"), "{what}: {e}"),
        }
    }
    // The same identity with a good certificate is let in and may publish.
    let mut cloud = b.peer(CLOUD, "watch").await;
    cloud.subscribe("omega/+/sync/#").await;
    let x = b.peer("dev-x", "dev-x").await;
    x.publish("omega/dev-x/sync/rows/batch", "ok").await;
    assert_eq!(
        b.next(&mut cloud).await,
        owned("omega/dev-x/sync/rows/batch", "ok")
    );
}

/// Rewrites one line-anchored piece of a Setup file.
fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} lacks {from:?}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn agent_to_cloud_over_mtls_and_the_acl_applies_only_the_devices_own_rows() {
    // The processes are driven synchronously; the MQTT clients run on this runtime.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let placeholder: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
    let setup = Setup::on_broker("acl", None, placeholder);
    let b = AclBroker::start(&format!("{}/{{device}}", setup.root));
    let ca = b.pki.path("ca.pem");
    let (cloud_cert, cloud_key) = b.cert(CLOUD, false);
    let (dev_cert, dev_key) = b.cert(&setup.device, false);
    let url = format!("mqtts://127.0.0.1:{}", b.port());
    edit(
        &setup.path("cloud.yaml"),
        "url: mqtt://127.0.0.1:1\n",
        &format!(
            "url: {url}\n  tls:\n    ca: {}\n    cert: {}\n    key: {}\n",
            ca.display(),
            cloud_cert.display(),
            cloud_key.display()
        ),
    );
    let device_yaml = setup.path("device.yaml");
    edit(
        &device_yaml,
        "server_url: mqtt://127.0.0.1:1\n",
        &format!("server_url: {url}\n"),
    );
    edit(
        &device_yaml,
        "    keep_alive: 5s\n",
        &format!(
            "    keep_alive: 5s\n    tls:\n      ca_cert_path: {}\n      client_cert_path: {}\n      client_key_path: {}\n",
            ca.display(),
            dev_cert.display(),
            dev_key.display()
        ),
    );
    let rows_of = |dev: &str| format!("{}/{dev}/sync/rows/batch", setup.root);
    let victim = unique("victim");
    let mut watch = rt.block_on(async {
        let mut w = b.peer(CLOUD, &unique("watch")).await;
        w.subscribe(&format!("{}/+/sync/rows/batch", setup.root))
            .await;
        w
    });

    let cloud = setup.start_cloud();
    let agent = setup.start_agent();
    app_writes(&setup.source(), 0, 4);
    let (topic, batch) = rt.block_on(b.next(&mut watch));
    assert_eq!(topic, rows_of(&setup.device));

    // The device's identity replays its own batch on another device's topic, then (as a
    // marker) on its own: the broker drops the first.
    rt.block_on(async {
        b.forge_then_mark(
            &setup.device,
            &rows_of(&victim),
            &batch,
            &rows_of(&setup.device),
            &batch,
        )
        .await;
        loop {
            let (t, body) = b.next(&mut watch).await;
            assert_ne!(
                t,
                rows_of(&victim),
                "the replay on another device's topic got through"
            );
            if t == rows_of(&setup.device) && body == batch {
                break;
            }
        }
    });
    app_writes(&setup.source(), 2, 2);
    setup.converge();
    let victims = setup
        .cloud_json(&["lineages", "--device", &victim])
        .unwrap();
    assert_eq!(victims["items"], serde_json::json!([]), "{victims:#}");
    let all = setup.cloud_json(&["lineages"]).unwrap();
    for l in all["items"].as_array().unwrap() {
        assert_eq!(l["device_id"], setup.device.as_str(), "{l:#}");
    }

    // A copy of the batch naming a tenant at the top level, on the device's own topic: the ACL
    // lets it through, the cloud quarantines it (`protocol.md` §3.2).
    let mut tampered: serde_json::Value = serde_json::from_str(&batch).unwrap();
    tampered["org_id"] = serde_json::json!("someone-else");
    // A new batch id: a known one only counts a delivery (`cloud.md` §4 step 2).
    tampered["batch_id"] = serde_json::json!(omega_protocol::ids::new_v7());
    rt.block_on(async {
        let mut p = b.peer(&setup.device, &unique("tamper")).await;
        assert!(
            p.publish_acked(&rows_of(&setup.device), &tampered.to_string())
                .await
        );
    });
    let code = "envelope_unstripped_tenant_fields";
    omega_testkit::wait::until_true("the tenant field quarantined", WAIT, || {
        setup
            .cloud_json(&["quarantine", "--device", &setup.device, "--code", code])
            .is_ok_and(|q| q["items"].as_array().is_some_and(|i| !i.is_empty()))
    });
    agent.sigterm();
    cloud.sigterm();
}

#[test]
fn broker_acl_prints_both_files_and_refuses_bad_input() {
    let run = crate::cloud_e2e::omega;
    let out = run(&["cloud", "broker-acl", "--cloud-user", "cloud-1"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for line in [
        "listener 8883",
        "require_certificate true",
        "use_identity_as_username true",
        "acl_file /etc/mosquitto/omega.acl",
        "pattern write omega/%u/sync/rows/batch",
        "pattern read omega/%u/sync/ingest/receipt",
        "user cloud-1",
        "topic write omega/+/sync/ingest/control",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    for (args, needle) in [
        (
            &["--device-topic", "omega/+"][..],
            "--device-topic `omega/+`",
        ),
        (&["--cloud-identity", "a b"][..], "cloud identity `a b`"),
        (&["--device-topic", "t%u/{device}"][..], "`t%u`"),
    ] {
        let mut all = vec!["cloud", "broker-acl"];
        all.extend_from_slice(args);
        let out = run(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("gen");
    let args = ["cloud", "broker-acl", "--out", out_dir.to_str().unwrap()];
    assert!(run(&args).status.success());
    let conf = std::fs::read_to_string(out_dir.join("omega-listener.conf")).unwrap();
    let acl_line = format!("acl_file {}", out_dir.join("omega.acl").display());
    assert!(conf.lines().any(|l| l == acl_line), "{conf}");
    let again = run(&args);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
}

/// The cloud refuses to start with an expired client certificate (exit 2, naming the key)
/// instead of having the broker refuse its handshake forever.
#[test]
fn cloud_serve_with_an_expired_certificate_exits_2_naming_the_key() {
    let placeholder: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
    let setup = Setup::on_broker("acl-old", None, placeholder);
    let pki = Pki::generate("unused");
    let (cert, key) = pki.issue_client("old-cloud", CLOUD, true);
    edit(
        &setup.path("cloud.yaml"),
        "url: mqtt://127.0.0.1:1\n",
        &format!(
            "url: mqtts://127.0.0.1:1\n  tls:\n    ca: {}\n    cert: {}\n    key: {}\n",
            pki.path("ca.pem").display(),
            cert.display(),
            key.display()
        ),
    );
    let out = crate::cloud_e2e::omega(&[
        "cloud",
        "serve",
        "--config",
        setup.path("cloud.yaml").to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("broker.tls.cert: ") && stderr.contains("certificate expired on"),
        "{stderr}"
    );
}
