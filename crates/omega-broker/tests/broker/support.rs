//! Real brokers on port 0 and real rumqttc clients whose event loops run on tasks and report
//! what they see on a channel; tests wait for events with a deadline, never for a fixed time.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use omega_broker::{Broker, BrokerConfig, RunningBroker};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How long any single expected event may take.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// Payloads up to this size pass in tests (the batch limit is 512 KiB, single rows can be
/// larger).
pub const CLIENT_MAX_PACKET: usize = 16 * 1024 * 1024;

/// A broker on 127.0.0.1 with an OS-picked port and in-memory sessions.
pub async fn start_broker() -> RunningBroker {
    start_with(BrokerConfig::new(any_port())).await
}

/// A broker with the given configuration, running on a task.
pub async fn start_with(config: BrokerConfig) -> RunningBroker {
    Broker::bind(config).await.expect("broker binds").spawn()
}

/// 127.0.0.1 port 0.
pub fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// What a client's event loop saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// CONNACK with its session-present flag.
    ConnAck { session_present: bool },
    /// SUBACK.
    SubAck,
    /// An application message.
    Message {
        topic: String,
        payload: Vec<u8>,
        qos: u8,
        dup: bool,
        pkid: u16,
    },
    /// PUBACK for one of our publishes.
    PubAck(u16),
    /// We sent PUBACK for a delivery.
    AckSent(u16),
    /// The event loop sent DISCONNECT.
    Disconnected,
    /// A connection error (the loop retries when the client is set to reconnect).
    Error(String),
}

/// A test client: its `AsyncClient` plus the stream of what its event loop saw.
pub struct Client {
    /// The rumqttc handle for publish/subscribe/disconnect.
    pub mqtt: Client3Or5,
    seen: mpsc::UnboundedReceiver<Seen>,
    task: JoinHandle<()>,
}

/// The MQTT 3.1.1 or MQTT 5 handle.
pub enum Client3Or5 {
    /// rumqttc's 3.1.1 client.
    V4(AsyncClient),
    /// rumqttc's MQTT 5 client.
    V5(rumqttc::v5::AsyncClient),
}

/// How a test client connects.
#[derive(Clone)]
pub struct Opts {
    /// Client id (persistent sessions are keyed by it).
    pub id: String,
    /// `clean_session` (3.1.1) or `clean_start` (5).
    pub clean: bool,
    /// Keep polling after errors, so the client reconnects by itself.
    pub reconnect: bool,
    /// Acknowledge deliveries only through [`Client::ack`].
    pub manual_acks: bool,
    /// TLS client configuration.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// MQTT 5 session expiry interval in seconds (ignored by 3.1.1).
    pub session_expiry: Option<u32>,
}

impl Opts {
    /// A clean-session client that does not reconnect.
    pub fn new(id: &str) -> Self {
        Opts {
            id: id.into(),
            clean: true,
            reconnect: false,
            manual_acks: false,
            tls: None,
            session_expiry: None,
        }
    }

    /// A `clean_session = false` client.
    pub fn persistent(mut self) -> Self {
        self.clean = false;
        self
    }

    /// A client whose loop keeps polling after errors.
    pub fn reconnecting(mut self) -> Self {
        self.reconnect = true;
        self
    }

    /// A client that acknowledges deliveries only when told to.
    pub fn manual_acks(mut self) -> Self {
        self.manual_acks = true;
        self
    }

    /// A client over TLS.
    pub fn tls(mut self, config: rustls::ClientConfig) -> Self {
        self.tls = Some(Arc::new(config));
        self
    }
}

impl Client {
    /// Connects an MQTT 3.1.1 client to `addr`; waits for its CONNACK and returns session-present.
    pub async fn v4(addr: SocketAddr, opts: Opts) -> (Client, bool) {
        let mut client = Client::start_v4(addr, opts);
        let present = client.connack().await;
        (client, present)
    }

    /// Starts an MQTT 3.1.1 client's event loop without waiting for anything.
    pub fn start_v4(addr: SocketAddr, opts: Opts) -> Client {
        let mut o = MqttOptions::new(opts.id.clone(), addr.ip().to_string(), addr.port());
        o.set_clean_session(opts.clean)
            .set_keep_alive(Duration::from_secs(5))
            .set_manual_acks(opts.manual_acks)
            .set_max_packet_size(CLIENT_MAX_PACKET, CLIENT_MAX_PACKET);
        if let Some(tls) = &opts.tls {
            o.set_transport(rumqttc::Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(Arc::clone(tls)),
            ));
        }
        let (client, mut eventloop) = AsyncClient::new(o, 64);
        let (tx, seen) = mpsc::unbounded_channel();
        let reconnect = opts.reconnect;
        let task = tokio::spawn(async move {
            loop {
                let event = match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(c))) => Seen::ConnAck {
                        session_present: c.session_present,
                    },
                    Ok(Event::Incoming(Packet::SubAck(_))) => Seen::SubAck,
                    Ok(Event::Incoming(Packet::Publish(p))) => Seen::Message {
                        topic: p.topic.clone(),
                        payload: p.payload.to_vec(),
                        qos: p.qos as u8,
                        dup: p.dup,
                        pkid: p.pkid,
                    },
                    Ok(Event::Incoming(Packet::PubAck(a))) => Seen::PubAck(a.pkid),
                    Ok(Event::Outgoing(rumqttc::Outgoing::PubAck(id))) => Seen::AckSent(id),
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => Seen::Disconnected,
                    Ok(_) => continue,
                    Err(e) => Seen::Error(e.to_string()),
                };
                let error = matches!(event, Seen::Error(_));
                let done = event == Seen::Disconnected;
                if tx.send(event).is_err() || done || (error && !reconnect) {
                    return;
                }
                if error {
                    // Pace reconnect attempts against a stopped broker; not a wait for a state.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        });
        Client {
            mqtt: Client3Or5::V4(client),
            seen,
            task,
        }
    }

    /// Connects an MQTT 5 client to `addr`; waits for its CONNACK and returns session-present.
    pub async fn v5(addr: SocketAddr, opts: Opts) -> (Client, bool) {
        let mut client = Client::start_v5(addr, opts);
        let present = client.connack().await;
        (client, present)
    }

    /// Starts an MQTT 5 client's event loop without waiting for anything.
    pub fn start_v5(addr: SocketAddr, opts: Opts) -> Client {
        use rumqttc::v5::mqttbytes::v5::Packet as P5;
        use rumqttc::v5::{Event as E5, MqttOptions as O5};
        let mut o = O5::new(opts.id.clone(), addr.ip().to_string(), addr.port());
        o.set_clean_start(opts.clean)
            .set_keep_alive(Duration::from_secs(5))
            .set_manual_acks(opts.manual_acks)
            .set_session_expiry_interval(opts.session_expiry)
            .set_max_packet_size(Some(CLIENT_MAX_PACKET as u32));
        let (client, mut eventloop) = rumqttc::v5::AsyncClient::new(o, 64);
        let (tx, seen) = mpsc::unbounded_channel();
        let reconnect = opts.reconnect;
        let task = tokio::spawn(async move {
            loop {
                let event = match eventloop.poll().await {
                    Ok(E5::Incoming(P5::ConnAck(c))) => Seen::ConnAck {
                        session_present: c.session_present,
                    },
                    Ok(E5::Incoming(P5::SubAck(_))) => Seen::SubAck,
                    Ok(E5::Incoming(P5::Publish(p))) => Seen::Message {
                        topic: String::from_utf8_lossy(&p.topic).into_owned(),
                        payload: p.payload.to_vec(),
                        qos: p.qos as u8,
                        dup: p.dup,
                        pkid: p.pkid,
                    },
                    Ok(E5::Incoming(P5::PubAck(a))) => Seen::PubAck(a.pkid),
                    Ok(E5::Outgoing(rumqttc::Outgoing::PubAck(id))) => Seen::AckSent(id),
                    Ok(E5::Outgoing(rumqttc::Outgoing::Disconnect)) => Seen::Disconnected,
                    Ok(_) => continue,
                    Err(e) => Seen::Error(e.to_string()),
                };
                let error = matches!(event, Seen::Error(_));
                let done = event == Seen::Disconnected;
                if tx.send(event).is_err() || done || (error && !reconnect) {
                    return;
                }
                if error {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        });
        Client {
            mqtt: Client3Or5::V5(client),
            seen,
            task,
        }
    }

    /// The next event that `pick` accepts, skipping others; panics after [`DEADLINE`].
    pub async fn next<T>(&mut self, what: &str, mut pick: impl FnMut(&Seen) -> Option<T>) -> T {
        let wait = async {
            loop {
                match self.seen.recv().await {
                    Some(seen) => {
                        if let Some(found) = pick(&seen) {
                            return found;
                        }
                    }
                    None => panic!("client event loop ended while waiting for {what}"),
                }
            }
        };
        tokio::time::timeout(DEADLINE, wait)
            .await
            .unwrap_or_else(|_| panic!("timed out after {DEADLINE:?} waiting for {what}"))
    }

    /// Waits for a CONNACK; returns session-present.
    pub async fn connack(&mut self) -> bool {
        self.next("CONNACK", |s| match s {
            Seen::ConnAck { session_present } => Some(*session_present),
            _ => None,
        })
        .await
    }

    /// The very next event, whatever it is.
    pub async fn first(&mut self) -> Seen {
        self.next("any event", |s| Some(s.clone())).await
    }

    /// Waits for the event loop to report a connection error.
    pub async fn error(&mut self) -> String {
        self.next("a connection error", |s| match s {
            Seen::Error(e) => Some(e.clone()),
            _ => None,
        })
        .await
    }

    /// Subscribes at QoS 1 and waits for the SUBACK.
    pub async fn subscribe(&mut self, filter: &str) {
        match &self.mqtt {
            Client3Or5::V4(c) => c.subscribe(filter, QoS::AtLeastOnce).await.unwrap(),
            Client3Or5::V5(c) => c
                .subscribe(filter, rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
                .await
                .unwrap(),
        }
        self.next("SUBACK", |s| (*s == Seen::SubAck).then_some(()))
            .await;
    }

    /// Publishes at QoS 1 and waits for the broker's PUBACK.
    pub async fn publish(&mut self, topic: &str, payload: impl Into<Vec<u8>>) {
        let payload = payload.into();
        match &self.mqtt {
            Client3Or5::V4(c) => c
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .unwrap(),
            Client3Or5::V5(c) => c
                .publish(
                    topic,
                    rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                    false,
                    payload,
                )
                .await
                .unwrap(),
        }
        self.next(&format!("PUBACK for {topic}"), |s| {
            matches!(s, Seen::PubAck(_)).then_some(())
        })
        .await;
    }

    /// The next application message: `(topic, payload, qos, dup, pkid)`.
    pub async fn message(&mut self) -> Message {
        self.next("a message", |s| match s {
            Seen::Message {
                topic,
                payload,
                qos,
                dup,
                pkid,
            } => Some(Message {
                topic: topic.clone(),
                payload: payload.clone(),
                qos: *qos,
                dup: *dup,
                pkid: *pkid,
            }),
            _ => None,
        })
        .await
    }

    /// Acknowledges a delivery (manual-ack clients) and waits until the PUBACK is sent.
    pub async fn ack(&mut self, m: &Message) {
        match &self.mqtt {
            Client3Or5::V4(c) => {
                let mut p = rumqttc::Publish::new(&m.topic, QoS::AtLeastOnce, m.payload.clone());
                p.pkid = m.pkid;
                c.ack(&p).await.unwrap();
            }
            Client3Or5::V5(c) => {
                let mut p = rumqttc::v5::mqttbytes::v5::Publish::new(
                    &m.topic,
                    rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                    m.payload.clone(),
                    None,
                );
                p.pkid = m.pkid;
                c.ack(&p).await.unwrap();
            }
        }
        let pkid = m.pkid;
        self.next("PUBACK sent", |s| (*s == Seen::AckSent(pkid)).then_some(()))
            .await;
    }

    /// Sends DISCONNECT and waits until the event loop has sent it, then drops the connection.
    pub async fn disconnect(mut self) {
        match &self.mqtt {
            Client3Or5::V4(c) => c.disconnect().await.unwrap(),
            Client3Or5::V5(c) => c.disconnect().await.unwrap(),
        }
        self.next("DISCONNECT sent", |s| {
            (*s == Seen::Disconnected).then_some(())
        })
        .await;
        self.task.abort();
        let _ = (&mut self.task).await;
    }

    /// Drops the connection without DISCONNECT, as a crashed device would.
    pub async fn kill(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A received application message.
#[derive(Debug, Clone)]
pub struct Message {
    /// Topic.
    pub topic: String,
    /// Payload bytes.
    pub payload: Vec<u8>,
    /// QoS as delivered.
    pub qos: u8,
    /// The DUP flag (a redelivery).
    pub dup: bool,
    /// Packet id (for manual acks).
    pub pkid: u16,
}

impl Message {
    /// The payload as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// A test PKI written to a temporary directory: a CA, a server certificate for 127.0.0.1 and
/// localhost, and a client certificate, all signed by the CA.
pub struct Pki {
    /// Keeps the files alive.
    pub dir: tempfile::TempDir,
}

impl Pki {
    /// Generates the PKI with rcgen.
    pub fn generate() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name
            .push(DnType::CommonName, "omega-broker test CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        for (name, sans) in [
            (
                "server",
                vec!["127.0.0.1".to_string(), "localhost".to_string()],
            ),
            ("client", vec!["device-1".to_string()]),
        ] {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(sans).unwrap();
            params.distinguished_name.push(DnType::CommonName, name);
            let cert = params.signed_by(&key, &issuer).unwrap();
            std::fs::write(dir.path().join(format!("{name}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.path().join(format!("{name}.key")), key.serialize_pem()).unwrap();
        }
        Pki { dir }
    }

    /// A file of the PKI: `ca.pem`, `server.pem`, `server.key`, `client.pem`, `client.key`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A client configuration (ring provider, as rumqttc is built without one) that trusts the
    /// CA and, with `with_cert`, presents the client certificate.
    pub fn client_config(&self, with_cert: bool) -> rustls::ClientConfig {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(self.path("ca.pem")).unwrap())
            .unwrap();
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        if with_cert {
            let chain = vec![CertificateDer::from_pem_file(self.path("client.pem")).unwrap()];
            let key = PrivateKeyDer::from_pem_file(self.path("client.key")).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        } else {
            builder.with_no_client_auth()
        }
    }
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}
