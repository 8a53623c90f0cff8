//! The three components of the demo, in process: the embedded broker on a free loopback port,
//! a cloud (ingest with signed receipts, `auto_approve`) over a store, and an agent on the
//! sample database. The agent gets its own thread and a current-thread runtime, as a separate
//! device process would have (and `omega_agent::run::run` keeps its span entered across
//! awaits, which only a runtime of its own keeps from leaking into other tasks).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use omega_agent::config::TableStrategies;
use omega_agent::downlink::Verification;
use omega_agent::engine::{Delivery, EngineConfig};
use omega_agent::run::{RunConfig, RunError, RunSummary};
use omega_agent::transport::MqttSettings;
use omega_broker::{Broker, BrokerConfig, RunningBroker};
use omega_cloud::config::CloudConfig;
use omega_cloud::ingest::{IngestError, IngestOptions, IngestStats, serve_with_stats};
use omega_cloud::receipts::ReceiptOptions;
use omega_cloud::store::AnyStore;
use omega_cloud::with_store;
use omega_protocol::signing::{ControlVerifier, generate_ed25519};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The agent's flush interval (the smallest the configuration allows).
const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// How long to wait for the cloud's subscription and the agent's enrollment.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// The variable a PostgreSQL URL is passed through, so that it is never written to disk.
const STORE_URL_ENV: &str = "OMEGA_DEMO_STORE_URL";

thread_local! {
    /// The demo's log dispatcher on a runtime thread, set by [`runtime`].
    static LOG_GUARD: RefCell<Option<tracing::dispatcher::DefaultGuard>> =
        const { RefCell::new(None) };
}

/// A runtime builder whose threads log through `log` when given (the global subscriber
/// otherwise).
pub fn runtime(
    mut builder: tokio::runtime::Builder,
    name: &str,
    log: Option<tracing::Dispatch>,
) -> std::io::Result<tokio::runtime::Runtime> {
    builder.enable_all().thread_name(name);
    if let Some(d) = log {
        builder
            .on_thread_start(move || {
                LOG_GUARD.with(|g| *g.borrow_mut() = Some(tracing::dispatcher::set_default(&d)));
            })
            .on_thread_stop(|| {
                LOG_GUARD.with(|g| drop(g.borrow_mut().take()));
            });
    }
    builder.build()
}

/// Files of the demo directory.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The directory.
    pub dir: PathBuf,
    /// The application's database.
    pub source: PathBuf,
    /// The agent's `state.db`.
    pub state: PathBuf,
    /// The cloud's configuration (written for reference and for `omega cloud` commands).
    pub cloud_yaml: PathBuf,
    /// The control-signing key (receipts are signed with it).
    pub control_key: PathBuf,
    /// Its public half, which the agent verifies receipts with.
    pub control_pub: PathBuf,
    /// The SQLite store, when no PostgreSQL URL was given.
    pub store: Option<PathBuf>,
}

impl Paths {
    /// The layout under `dir`; `sqlite_store` when the store is a file there.
    pub fn new(dir: &Path, sqlite_store: bool) -> Paths {
        Paths {
            dir: dir.to_path_buf(),
            source: dir.join("source.db"),
            state: dir.join("state").join("state.db"),
            cloud_yaml: dir.join("cloud.yaml"),
            control_key: dir.join("keys").join("control.key"),
            control_pub: dir.join("keys").join("control.pub"),
            store: sqlite_store.then(|| dir.join("cloud.db")),
        }
    }
}

/// Writes a new Ed25519 control key pair (private key mode 0600) and returns the verifier.
pub fn write_keys(paths: &Paths) -> anyhow::Result<ControlVerifier> {
    let pair = generate_ed25519().context("generating the control key pair")?;
    if let Some(parent) = paths.control_key.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    use std::io::Write;
    options
        .open(&paths.control_key)
        .and_then(|mut f| f.write_all(pair.private_pem.as_bytes()))
        .with_context(|| format!("writing {}", paths.control_key.display()))?;
    std::fs::write(&paths.control_pub, &pair.public_pem)
        .with_context(|| format!("writing {}", paths.control_pub.display()))?;
    ControlVerifier::ed25519_from_public_pem(&pair.public_pem)
        .context("reading back the control public key")
}

/// Starts the embedded broker on a free loopback port.
pub async fn start_broker() -> anyhow::Result<RunningBroker> {
    let listen: SocketAddr = "127.0.0.1:0".parse().expect("a socket address");
    let broker = Broker::bind(BrokerConfig::new(listen))
        .await
        .context("starting the embedded broker")?;
    Ok(broker.spawn())
}

/// The running cloud: ingest with receipts over the store.
pub struct Cloud {
    /// The store (also read by the demo).
    pub store: AnyStore,
    /// Ingest counters.
    pub stats: Arc<IngestStats>,
    /// The store URL to show (a PostgreSQL URL without its password).
    pub store_shown: String,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), IngestError>>,
}

/// The TLS files a client presents to a TLS or QUIC broker (`omega bench e2e --transport`).
#[derive(Debug, Clone)]
pub struct ClientTls {
    /// The CA that signed the broker's certificate.
    pub ca: PathBuf,
    /// The client certificate (mutual TLS).
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
}

/// The cloud configuration, `cloud.yaml`: SQLite inline, PostgreSQL through a variable.
fn cloud_yaml(broker_url: &str, tls: Option<&ClientTls>, postgres: bool) -> String {
    let store = if postgres {
        format!("url_env: {STORE_URL_ENV}")
    } else {
        "url: sqlite://cloud.db".to_string()
    };
    let tls = tls.map_or(String::new(), |t| {
        format!(
            "  tls:\n    ca: {}\n    cert: {}\n    key: {}\n",
            t.ca.display(),
            t.cert.display(),
            t.key.display()
        )
    });
    format!(
        "# Written by `omega demo`: the cloud it ran, for `omega cloud … --config` on kept files.\n\
         broker:\n  url: {broker_url}\n  client_id: omega-demo-cloud\n{tls}\
         ingest:\n  device_topic: \"omega/{{device}}\"\n  workers: 4\n\
         store:\n  {store}\n\
         policy:\n  auto_approve: true\n\
         control:\n  signing_key_path: keys/control.key\n\
         receipts:\n  interval: 200ms\n"
    )
}

/// Starts ingest and waits until the broker confirmed its subscription (so nothing the
/// agent publishes goes to a topic without a subscriber).
pub async fn start_cloud(
    paths: &Paths,
    broker_url: &str,
    postgres: Option<&str>,
) -> anyhow::Result<Cloud> {
    start_cloud_tls(paths, broker_url, None, postgres).await
}

/// [`start_cloud`] with TLS files for a `mqtts://` or `quic://` broker URL.
pub async fn start_cloud_tls(
    paths: &Paths,
    broker_url: &str,
    tls: Option<&ClientTls>,
    postgres: Option<&str>,
) -> anyhow::Result<Cloud> {
    let yaml = cloud_yaml(broker_url, tls, postgres.is_some());
    std::fs::write(&paths.cloud_yaml, &yaml)
        .with_context(|| format!("writing {}", paths.cloud_yaml.display()))?;
    let pg = postgres.map(str::to_string);
    let env = move |name: &str| {
        if name == STORE_URL_ENV {
            pg.clone()
        } else {
            None
        }
    };
    let cfg = CloudConfig::from_yaml_str(&yaml, &paths.cloud_yaml, &env)
        .context("the demo's cloud configuration")?;
    let key = cfg
        .control
        .read_key(&cfg.file)
        .context("reading the control key")?;
    let mut opts = IngestOptions::from_config(&cfg, "demo").context("the demo's ingest options")?;
    opts.receipts = Some(ReceiptOptions::new(key, cfg.receipts_interval));
    let store = omega_cloud::store::open_config(&cfg.store, opts.workers + 2)
        .await
        .context("opening the cloud store")?;
    let stats = Arc::new(IngestStats::default());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = {
        let (store, stats) = (store.clone(), stats.clone());
        tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            with_store!(store, s => serve_with_stats(opts, s, stats, shutdown).await)
        })
    };
    let deadline = Instant::now() + START_TIMEOUT;
    while stats.subscribed.load(Ordering::Relaxed) == 0 {
        if task.is_finished() {
            task.await.context("the cloud's task")??;
            bail!("the cloud stopped before it subscribed");
        }
        if Instant::now() > deadline {
            bail!("the cloud did not subscribe within {START_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let store_shown = match (postgres, &paths.store) {
        (Some(url), _) => redact(url),
        (None, Some(p)) => format!("sqlite://{}", p.display()),
        (None, None) => "sqlite".into(),
    };
    Ok(Cloud {
        store,
        stats,
        store_shown,
        stop,
        task,
    })
}

impl Cloud {
    /// Whether ingest stopped on its own (an error).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops ingest: in-flight messages commit and are acknowledged, pending receipts go.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task
            .await
            .context("the cloud's task")?
            .context("the cloud's ingest")
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (auth, host) = match rest.rsplit_once('@') {
        Some(parts) => parts,
        None => return url.to_string(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

/// The running agent, on its own thread.
pub struct Agent {
    stop: oneshot::Sender<()>,
    thread: std::thread::JoinHandle<Result<RunSummary, RunError>>,
}

/// Starts the agent (`delivery: receipts`, receipts verified with `verifier`).
pub fn start_agent(
    paths: &Paths,
    device: &str,
    broker_url: &str,
    verifier: ControlVerifier,
    log: Option<tracing::Dispatch>,
) -> anyhow::Result<Agent> {
    start_agent_with(
        paths,
        device,
        broker_url,
        verifier,
        log,
        TableStrategies::default(),
        Delivery::Receipts,
    )
}

/// [`start_agent`] with table strategies and a delivery rule (`omega bench e2e` reads a
/// telemetry table and compares `receipts` with `puback`).
pub fn start_agent_with(
    paths: &Paths,
    device: &str,
    broker_url: &str,
    verifier: ControlVerifier,
    log: Option<tracing::Dispatch>,
    strategies: TableStrategies,
    delivery: Delivery,
) -> anyhow::Result<Agent> {
    let cfg = agent_config(paths, device, broker_url, verifier, strategies, delivery);
    spawn_agent(cfg, log)
}

/// The agent's configuration as [`start_agent_with`] runs it (no TLS); callers may change it
/// and start it with [`spawn_agent`].
pub fn agent_config(
    paths: &Paths,
    device: &str,
    broker_url: &str,
    verifier: ControlVerifier,
    strategies: TableStrategies,
    delivery: Delivery,
) -> RunConfig {
    RunConfig {
        engine: EngineConfig {
            device_id: device.to_string(),
            root_topic: omega_protocol::topic::default_root_topic(device),
            source_db_path: paths.source.clone(),
            state_db_path: paths.state.clone(),
            strategies,
            // The cloud sends signed receipts: the journal is pruned only once the cloud has
            // stored the changes, not on the broker's PUBACK.
            delivery,
            snapshot_on_first_run: true,
            local_retention_bytes: 256 << 20,
        },
        mqtt: MqttSettings {
            url: broker_url.to_string(),
            fallback_url: None,
            session_expiry: Duration::from_secs(3600),
            client_id: device.to_string(),
            keep_alive: Duration::from_secs(5),
            credentials: None,
            tls: None,
        },
        flush_interval: FLUSH_INTERVAL,
        receipt_timeout: Duration::from_secs(10),
        verification: Verification::Key(Box::new(verifier)),
        max_control_bytes: 64 * 1024,
    }
}

/// Runs the agent configured by `cfg` on its own thread (logging through `log` when given).
pub fn spawn_agent(cfg: RunConfig, log: Option<tracing::Dispatch>) -> anyhow::Result<Agent> {
    let rt = runtime(
        tokio::runtime::Builder::new_current_thread(),
        "demo-agent",
        log.clone(),
    )
    .context("starting the agent's runtime")?;
    let (stop, stopped) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("demo-agent".into())
        .spawn(move || {
            let _guard = log.as_ref().map(tracing::dispatcher::set_default);
            rt.block_on(omega_agent::run::run(cfg, async {
                let _ = stopped.await;
            }))
        })
        .context("starting the agent's thread")?;
    Ok(Agent { stop, thread })
}

impl Agent {
    /// Whether the agent stopped on its own (an error).
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Stops the agent: it waits for in-flight batches, records its position and returns.
    pub async fn stop(self) -> anyhow::Result<RunSummary> {
        let _ = self.stop.send(());
        let thread = self.thread;
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .context("waiting for the agent")?
            .map_err(|_| anyhow::anyhow!("the agent's thread panicked"))?
            .context("the agent failed")
    }
}

/// Waits until the agent has installed its capture triggers on every table (it enrolls the
/// tables at startup), or fails if the agent stopped.
pub async fn wait_enrolled(agent: &Agent, source: &Path, tables: &[&str]) -> anyhow::Result<()> {
    let conn = super::app::open(source).context("opening the sample database")?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let mut all = true;
        for t in tables {
            let n: i64 = conn.query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?1",
                [t],
                |r| r.get(0),
            )?;
            all &= n > 0;
        }
        if all {
            return Ok(());
        }
        if agent.is_finished() {
            bail!("the agent stopped before it enrolled the sample tables");
        }
        if Instant::now() > deadline {
            bail!("the agent did not install its capture triggers within {START_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            redact("postgres://omega:s3cret@db:5432/omega"),
            "postgres://omega:***@db:5432/omega"
        );
        assert_eq!(redact("postgres://db/omega"), "postgres://db/omega");
        assert_eq!(redact("postgresql://u@db/omega"), "postgresql://u@db/omega");
    }
}
