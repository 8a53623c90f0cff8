//! One case's stack, in process: the embedded broker, the cloud's ingest over a SQLite store
//! (`omega demo`'s wiring, [`crate::stack`]), a cuttable link between the agent and the broker
//! ([`Proxy`]), the agent on its own thread (crashable), and a test client that records every
//! row batch the agent publishes and can publish any of them again.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use omega_agent::downlink::Verification;
use omega_agent::engine::{Delivery, EngineConfig};
use omega_agent::run::{RunConfig, RunError, RunSummary};
use omega_agent::transport::MqttSettings;
use omega_broker::RunningBroker;
use omega_protocol::signing::{ControlKey, ControlVerifier};
use omega_protocol::topic::Suffix;
use omega_protocol::validate::{DeviceMessage, decode_device_message};
use omega_protocol::value::SqlValue;
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use tokio::sync::oneshot;

use crate::proxy::Proxy;
use crate::stack::{self, Cloud, Paths};

/// Rows by table, then by canonical pk (the shape of `omega_testkit::wire::Tables`).
pub type Tables = omega_testkit::wire::Tables;

/// The agent running `omega_agent::run::run` on its own thread and runtime, as a device
/// process would. [`AgentProc::crash`] drops the run future wherever it is waiting (no
/// shutdown step runs, in-flight batches stay unacknowledged), then the runtime and every
/// socket and file handle it holds: what a `kill -9` leaves, at an await point.
pub struct AgentProc {
    stop: Option<oneshot::Sender<()>>,
    crash: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Option<Result<RunSummary, RunError>>>>,
}

impl AgentProc {
    fn spawn(cfg: RunConfig, log: &Path) -> Result<AgentProc, String> {
        // The agent's log (INFO and up), appended across restarts; shown when a case fails.
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let log = tracing::Dispatch::new(
            tracing_subscriber::fmt()
                .with_writer(Mutex::new(file))
                .with_ansi(false)
                .with_max_level(tracing::Level::INFO)
                .finish(),
        );
        let rt = stack::runtime(
            tokio::runtime::Builder::new_current_thread(),
            "model-agent",
            Some(log.clone()),
        )
        .map_err(|e| format!("the agent's runtime: {e}"))?;
        let (stop, stopped) = oneshot::channel::<()>();
        let (crash, crashed) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("model-agent".into())
            .spawn(move || {
                let _guard = tracing::dispatcher::set_default(&log);
                let out = rt.block_on(async move {
                    let run = omega_agent::run::run(cfg, async {
                        let _ = stopped.await;
                    });
                    tokio::select! {
                        r = run => Some(r),
                        _ = crashed => None,
                    }
                });
                drop(rt);
                out
            })
            .map_err(|e| format!("the agent's thread: {e}"))?;
        Ok(AgentProc {
            stop: Some(stop),
            crash: Some(crash),
            thread: Some(thread),
        })
    }

    /// Whether the agent stopped on its own (an error).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    async fn join(&mut self) -> Result<Option<RunSummary>, String> {
        let Some(thread) = self.thread.take() else {
            return Ok(None);
        };
        match tokio::task::spawn_blocking(move || thread.join()).await {
            Ok(Ok(Some(Ok(summary)))) => Ok(Some(summary)),
            Ok(Ok(Some(Err(e)))) => Err(format!("the agent failed: {e}")),
            Ok(Ok(None)) => Ok(None),
            Ok(Err(_)) => Err("the agent's thread panicked".into()),
            Err(e) => Err(format!("joining the agent: {e}")),
        }
    }

    /// Drops the agent without a graceful shutdown; fails if it had already failed.
    pub async fn crash(mut self) -> Result<(), String> {
        if let Some(c) = self.crash.take() {
            let _ = c.send(());
        }
        self.join().await.map(|_| ())
    }

    /// Stops the agent gracefully.
    pub async fn stop(mut self) -> Result<(), String> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.join().await.map(|_| ())
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        // A case that failed half-way: the thread ends (and is left to finish on its own).
        if let Some(c) = self.crash.take() {
            let _ = c.send(());
        }
    }
}

/// Every row batch payload the agent published, recorded by an independent client on the
/// broker (not through the proxy); the same client publishes them again on request.
pub struct Recorder {
    client: AsyncClient,
    topic: String,
    payloads: Arc<Mutex<Vec<Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    async fn start(broker: std::net::SocketAddr, device: &str) -> Result<Recorder, String> {
        let topic = omega_protocol::topic::full_topic(
            &omega_protocol::topic::default_root_topic(device),
            Suffix::RowsBatch,
        );
        let mut o = MqttOptions::new(
            format!("model-rec-{device}"),
            broker.ip().to_string(),
            broker.port(),
        );
        o.set_max_packet_size(64 << 20, 64 << 20);
        o.set_keep_alive(Duration::from_secs(5));
        let (client, mut el) = AsyncClient::new(o, 64);
        let payloads: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let (tx, rx) = oneshot::channel();
        let mut tx = Some(tx);
        let task = {
            let (client, topic, payloads) = (client.clone(), topic.clone(), payloads.clone());
            tokio::spawn(async move {
                loop {
                    match el.poll().await {
                        Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                            let _ = client.try_subscribe(topic.clone(), QoS::AtLeastOnce);
                        }
                        Ok(Event::Incoming(Incoming::SubAck(_))) => {
                            if let Some(tx) = tx.take() {
                                let _ = tx.send(());
                            }
                        }
                        Ok(Event::Incoming(Incoming::Publish(p))) => {
                            payloads.lock().unwrap().push(p.payload.to_vec());
                        }
                        Ok(_) => {}
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
            })
        };
        tokio::time::timeout(Duration::from_secs(10), rx)
            .await
            .map_err(|_| "the recorder's SUBACK did not come within 10 s".to_string())?
            .map_err(|_| "the recorder stopped".to_string())?;
        Ok(Recorder {
            client,
            topic,
            payloads,
            task,
        })
    }

    /// How many batches were recorded.
    pub fn len(&self) -> usize {
        self.payloads.lock().unwrap().len()
    }

    /// Publishes recorded batch `i` again (QoS 1, as the agent sent it); returns its batch id.
    pub async fn republish(&self, i: usize) -> Result<String, String> {
        let payload = self.payloads.lock().unwrap()[i].clone();
        let id = match decode_device_message(Suffix::RowsBatch, &payload) {
            Ok(DeviceMessage::RowBatch(b)) => b.batch_id,
            other => return Err(format!("the agent published an invalid batch: {other:?}")),
        };
        self.client
            .publish(self.topic.clone(), QoS::AtLeastOnce, false, payload)
            .await
            .map_err(|e| format!("republishing: {e}"))?;
        Ok(id)
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The running stack of one case.
pub struct Stack {
    /// Files of the case (source, state, cloud store, keys).
    pub paths: Paths,
    /// The device id (and MQTT client id).
    pub device: String,
    /// The delivery rule the agent runs with.
    pub delivery: Delivery,
    /// The agent/broker link.
    pub proxy: Proxy,
    /// The batch recorder and re-publisher.
    pub recorder: Recorder,
    key: ControlKey,
    verifier: ControlVerifier,
    agent: Option<AgentProc>,
    cloud: Option<Cloud>,
    _broker: RunningBroker,
}

impl Stack {
    /// Starts broker, cloud, proxy and recorder (not the agent) for a source in `dir`.
    pub async fn start(dir: &Path, delivery: Delivery) -> Result<Stack, String> {
        let paths = Paths::new(dir, true);
        let device = format!(
            "model-{}",
            &omega_protocol::ids::new_v7().replace('-', "")[16..]
        );
        let verifier = stack::write_keys(&paths).map_err(|e| format!("{e:#}"))?;
        let pem = std::fs::read_to_string(&paths.control_key).map_err(|e| e.to_string())?;
        let key = ControlKey::ed25519_from_pkcs8_pem(&pem).map_err(|e| e.to_string())?;
        let broker = stack::start_broker().await.map_err(|e| format!("{e:#}"))?;
        let cloud = stack::start_cloud(&paths, &broker.url(), None)
            .await
            .map_err(|e| format!("{e:#}"))?;
        let proxy = Proxy::start(broker.local_addr())
            .await
            .map_err(|e| format!("the proxy: {e}"))?;
        let recorder = Recorder::start(broker.local_addr(), &device).await?;
        Ok(Stack {
            paths,
            device,
            delivery,
            proxy,
            recorder,
            key,
            verifier,
            agent: None,
            cloud: Some(cloud),
            _broker: broker,
        })
    }

    fn run_config(&self) -> RunConfig {
        RunConfig {
            engine: EngineConfig {
                device_id: self.device.clone(),
                root_topic: omega_protocol::topic::default_root_topic(&self.device),
                source_db_path: self.paths.source.clone(),
                state_db_path: self.paths.state.clone(),
                strategies: Default::default(),
                delivery: self.delivery,
                snapshot_on_first_run: true,
                local_retention_bytes: 64 << 20,
            },
            mqtt: MqttSettings {
                url: self.proxy.url(),
                client_id: self.device.clone(),
                keep_alive: Duration::from_secs(5),
                credentials: None,
                tls: None,
                fallback_url: None,
                session_expiry: Duration::from_secs(3600),
            },
            flush_interval: Duration::from_millis(100),
            receipt_timeout: Duration::from_secs(10),
            verification: Verification::Key(Box::new(self.verifier.clone())),
            max_control_bytes: 64 * 1024,
        }
    }

    /// Starts the agent (again, after a crash: same files).
    pub fn start_agent(&mut self) -> Result<(), String> {
        self.agent = Some(AgentProc::spawn(
            self.run_config(),
            &self.paths.dir.join("agent.log"),
        )?);
        Ok(())
    }

    /// The last `n` lines of the agent's log.
    pub fn agent_log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(self.paths.dir.join("agent.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Crashes the agent and starts it again from the same files.
    pub async fn crash_and_restart(&mut self) -> Result<(), String> {
        if let Some(a) = self.agent.take() {
            a.crash().await?;
        }
        self.start_agent()
    }

    /// Fails if the agent or the cloud stopped on its own (with the agent's error).
    pub fn alive(&mut self) -> Result<(), String> {
        if self.agent.as_ref().is_none_or(AgentProc::is_finished) {
            let why = match self.agent.as_mut().and_then(|a| a.thread.take()) {
                Some(t) => match t.join() {
                    Ok(Some(Err(e))) => format!("{e}"),
                    Ok(Some(Ok(_))) => "it returned".into(),
                    Ok(None) => "crashed".into(),
                    Err(_) => "its thread panicked".into(),
                },
                None => "not running".into(),
            };
            return Err(format!("the agent stopped: {why}"));
        }
        if self.cloud.as_ref().is_none_or(Cloud::is_finished) {
            return Err("the cloud's ingest stopped".into());
        }
        Ok(())
    }

    /// An operator pause of `table` (signed `pause_lineage`); `Ok(false)` when the cloud has
    /// no lineage of it yet.
    pub async fn pause(&self, table: &str) -> Result<bool, String> {
        let cloud = self.cloud.as_ref().ok_or("no cloud")?;
        let r = omega_cloud::with_store!(&cloud.store, s => {
            omega_cloud::controls::operator_pause(s, &self.key, &self.device, table, Some("model")).await
        });
        match r {
            Ok(_) => Ok(true),
            Err(omega_cloud::controls::ControlError::NotFound { .. }) => Ok(false),
            Err(e) => Err(format!("pausing {table}: {e}")),
        }
    }

    /// An operator resume of `table`.
    pub async fn resume(&self, table: &str) -> Result<(), String> {
        let cloud = self.cloud.as_ref().ok_or("no cloud")?;
        omega_cloud::with_store!(&cloud.store, s => {
            omega_cloud::controls::operator_resume(s, &self.key, &self.device, table).await
        })
        .map(|_| ())
        .map_err(|e| format!("resuming {table}: {e}"))
    }

    /// Opens the cloud's SQLite store for reading.
    pub fn store_conn(&self) -> Result<rusqlite::Connection, String> {
        let path = self.paths.store.as_ref().ok_or("no SQLite store")?;
        let c = rusqlite::Connection::open(path).map_err(|e| e.to_string())?;
        c.busy_timeout(Duration::from_secs(10))
            .map_err(|e| e.to_string())?;
        Ok(c)
    }

    /// Stops agent and cloud gracefully.
    pub async fn stop(mut self) -> Result<(), String> {
        if let Some(a) = self.agent.take() {
            a.stop().await?;
        }
        if let Some(c) = self.cloud.take() {
            c.stop().await.map_err(|e| format!("{e:#}"))?;
        }
        Ok(())
    }
}

/// A mirror row's version `(_omega_epoch, _omega_seq)`.
pub type Version = (String, i64);

/// One mirror as read: its name, its live rows, and every row's version (tombstones too).
pub type MirrorRead = (String, Tables, BTreeMap<String, Version>);

/// The live rows of every mirror of `table` for `device`, read with plain SQL from the store
/// file (independently of the cloud's own read path): mirror name → canonical pk → the
/// model's columns in order (a column the mirror lacks reads as NULL).
/// Tombstoned rows are left out of the rows but their versions are returned too.
pub fn read_mirrors(
    store: &rusqlite::Connection,
    device: &str,
    table: &str,
    columns: &[String],
    key: &[String],
) -> Result<Vec<MirrorRead>, String> {
    let e = |e: rusqlite::Error| format!("reading the mirror of {table}: {e}");
    let mut names = Vec::new();
    {
        let mut st = store
            .prepare("SELECT mirror_name FROM omega_mirrors WHERE source_table = ?1 ORDER BY 1")
            .map_err(e)?;
        let rows = st
            .query_map([table], |r| r.get::<_, String>(0))
            .map_err(e)?;
        for r in rows {
            names.push(r.map_err(e)?);
        }
    }
    let mut out = Vec::new();
    for name in names {
        let sql = format!(
            "SELECT * FROM \"{}\" WHERE device_id = ?1",
            name.replace('"', "\"\"")
        );
        let mut st = store.prepare(&sql).map_err(e)?;
        let cols: Vec<String> = st.column_names().iter().map(|c| c.to_string()).collect();
        let idx = |c: &str| cols.iter().position(|x| x == c);
        let (Some(ie), Some(is), Some(id)) = (
            idx("_omega_epoch"),
            idx("_omega_seq"),
            idx("_omega_deleted"),
        ) else {
            return Err(format!("mirror {name} lacks its version columns: {cols:?}"));
        };
        let mut rows = st.query([device]).map_err(e)?;
        let mut live = BTreeMap::new();
        let mut versions = BTreeMap::new();
        while let Some(r) = rows.next().map_err(e)? {
            let value = |i: usize| -> Result<SqlValue, String> {
                use rusqlite::types::ValueRef;
                Ok(match r.get_ref(i).map_err(e)? {
                    ValueRef::Null => SqlValue::Null,
                    ValueRef::Integer(v) => SqlValue::Integer(v),
                    ValueRef::Real(v) => SqlValue::Real(v),
                    ValueRef::Text(t) => {
                        SqlValue::Text(String::from_utf8(t.to_vec()).map_err(|e| e.to_string())?)
                    }
                    ValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
                })
            };
            let mut row = Vec::with_capacity(columns.len());
            for c in columns {
                // A column added to the source reaches the mirror with the first batch under
                // the new schema hash (a schema observation "starts nothing", `cloud.md` §4):
                // until a row of the table changes, the mirror lacks it, and every source
                // value of it is NULL. A non-NULL value the mirror lacks still differs.
                let v = match idx(c) {
                    Some(i) => value(i)?,
                    None => SqlValue::Null,
                };
                row.push((c.clone(), v));
            }
            let pk: Vec<(String, SqlValue)> = key
                .iter()
                .map(|k| row.iter().find(|(c, _)| c == k).cloned().unwrap())
                .collect();
            let pk = omega_protocol::pk::canonical_pk(&pk);
            let version: Version = (r.get(ie).map_err(e)?, r.get(is).map_err(e)?);
            let deleted: i64 = r.get(id).map_err(e)?;
            versions.insert(pk.clone(), version);
            if deleted == 0 {
                live.insert(pk, row);
            }
        }
        let mut t = Tables::new();
        t.insert(table.to_string(), live);
        out.push((name, t, versions));
    }
    Ok(out)
}
