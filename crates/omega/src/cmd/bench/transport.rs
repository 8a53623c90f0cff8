//! `omega bench e2e --transport tcp,tls,quic`: the same agent → embedded broker → cloud →
//! store path over each MQTT transport, side by side in one run, against one generated PKI.
//!
//! For each store (SQLite; PostgreSQL with `--postgres`) and each transport, a fresh stack: the
//! embedded broker with the transport's listener (plain TCP; TLS with client certificates
//! required; or QUIC with client certificates required, beside a plain TCP listener nobody
//! uses), sessions kept in files so that they survive its restarts, the cloud and the agent
//! both dialling that listener (`mqtt://`, `mqtts://`, `quic://`). Measured on it, in order:
//! - **live rows**: `N` rows inserted 100 per transaction as fast as the application can,
//!   from the first commit until the mirror holds them (the e2e bench's live flow);
//! - **paced latency**: the e2e bench's commit → mirror p50/p99 at 1,000 rows/s;
//! - **reconnect**, [`RESTARTS`] times: the broker is stopped (its clients see the connection
//!   close) and bound again on the same ports; from that moment (`up`) the bench times the
//!   agent's `connected to broker` (its CONNACK and both downlink SUBACKs, read from its log
//!   events), the cloud's next SUBACK, and one row committed at `up` reaching the mirror.
//!
//! A child module of `e2e` so that it runs the e2e bench's helpers as they are.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use omega_agent::config::TableStrategies;
use omega_agent::engine::Delivery;
use omega_agent::transport::TlsFiles;
use omega_broker::{Broker, BrokerConfig, RunningBroker};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::{Layer as _, filter::LevelFilter};

use super::{Counter, FLOW_TIMEOUT, Goal, PACED_RATE, SCHEMA, Store, insert_readings, wait_for};
use crate::cmd::bench::report::{self, Machine, Table};
use crate::cmd::demo::stack::{self, ClientTls, Paths};

/// The section of `BENCHMARKS.md`.
pub const SECTION_TITLE: &str = "omega bench e2e --transport";
/// Broker restarts per run; the table gives their median.
const RESTARTS: usize = 3;
/// The agent's log message once it is connected and subscribed (`omega_agent::run`).
const AGENT_CONNECTED: &str = "connected to broker";
/// Ids of the rows committed at each restart.
const RESTART_ID: i64 = 5 << 40;

/// An MQTT transport the bench compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// Plain TCP (`mqtt://`).
    Tcp,
    /// TLS with client certificates (`mqtts://`).
    Tls,
    /// QUIC with client certificates (`quic://`).
    Quic,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS (mTLS)",
            Transport::Quic => "QUIC (mTLS)",
        }
    }
}

/// One transport's figures on one store.
#[derive(Debug, Clone)]
struct Figures {
    store: &'static str,
    transport: Transport,
    live: f64,
    paced_p50: Duration,
    paced_p99: Duration,
    restarts: Vec<Restart>,
}

/// One broker restart, timed from the moment it accepts again.
#[derive(Debug, Clone, Copy)]
struct Restart {
    /// From the stop request until it accepts again.
    down: Duration,
    agent: Duration,
    cloud: Duration,
    row: Duration,
}

/// Runs the transports given in `args.transport` and returns the Markdown section.
pub fn run(args: &crate::cmd::bench::E2eArgs) -> anyhow::Result<String> {
    let n = usize::try_from(args.rows).context("--rows")?;
    let mut transports: Vec<Transport> = Vec::new();
    for t in &args.transport {
        if !transports.contains(t) {
            transports.push(*t);
        }
    }
    let mut stores = vec![Store::Sqlite];
    if let Some(url) = &args.postgres {
        stores.push(Store::Postgres(url.clone()));
    }
    let rt = stack::runtime(
        tokio::runtime::Builder::new_multi_thread(),
        "omega-bench",
        None,
    )
    .context("starting the bench runtime")?;
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let pki = scratch.path().join("pki");
    generate_pki(&pki)?;
    let started = Instant::now();
    let mut all = Vec::new();
    for (i, store) in stores.iter().enumerate() {
        for (j, transport) in transports.iter().enumerate() {
            eprintln!(
                "bench e2e --transport: {} over {} ({n} rows)…",
                store.name(),
                transport.name()
            );
            let dir = scratch.path().join(format!("run-{i}-{j}"));
            std::fs::create_dir_all(&dir)?;
            all.push(rt.block_on(measure(&dir, store, *transport, n, &pki))?);
        }
    }
    let machine = Machine::probe(scratch.path());
    Ok(render(&all, n, &machine, started.elapsed()))
}

fn render(all: &[Figures], n: usize, machine: &Machine, took: Duration) -> String {
    let mut out = report::header(
        SECTION_TITLE,
        &format!(
            "Sizes: {} live rows per run, {RESTARTS} broker restarts per run; {}",
            report::count(n as f64),
            report::build_line()
        ),
        machine,
        took,
    );
    out.push_str(
        "The `omega bench e2e` path (agent → embedded broker → cloud ingest with 4 workers and signed receipts → store, one process, `delivery: receipts`, `flush_interval: 100ms`) over each transport in turn, both the agent and the cloud on it: plain TCP (`mqtt://`), TLS 1.3 with client certificates (`mqtts://`), MQTT 5 over QUIC with client certificates (`quic://`, the `mqtt5` client on both sides). \
         A fresh stack per row, one generated CA, loopback only. **live rows** is the rate of rows inserted 100 per transaction as fast as possible, until the mirror holds them all; **÷ first** compares with the first transport of the same store, measured in the same run. \
         Each row is one run: at tens of thousands of rows the live flow lasts a few seconds, and its rate varies by tens of percent from run to run on this shared machine, so read small differences as noise. \
         The paced latency is the e2e bench's: ",
    );
    let _ = write!(
        out,
        "{PACED_RATE} rows/s for 10 s, commit of the k-th row → the mirror holding k of them (polled every 5 ms).\n\n"
    );
    let mut t = Table::new(&[
        "store",
        "transport",
        "live rows/s",
        "÷ first",
        "paced p50",
        "paced p99",
    ]);
    for f in all {
        let first = all
            .iter()
            .find(|g| g.store == f.store)
            .map_or(f.live, |g| g.live);
        t.row(vec![
            f.store.to_string(),
            f.transport.name().to_string(),
            report::count(f.live),
            report::ratio(f.live / first),
            report::dur(f.paced_p50),
            report::dur(f.paced_p99),
        ]);
    }
    out.push_str(&t.render());
    let _ = write!(
        out,
        "\nReconnect after a broker restart (median of {RESTARTS}, the largest in brackets). The broker is stopped (it closes its clients' connections) and bound again on the same ports with its sessions on disk; **down** is from the stop request until it accepts again (`up`). From `up`: **agent** until the agent logs `connected to broker` (CONNACK and both downlink SUBACKs), **cloud** until the cloud's next SUBACK, **row** until a row committed at `up` is in the mirror. \
         The agent's reconnect backoff dominates: after a lost connection it waits 1 s ± 25 % before its first attempt (then 2 s, 4 s … up to 60 s, reset by a connection); the cloud waits 100 ms (doubling up to 10 s). So **agent** ≈ that first pause minus **down**, on every transport; the transports differ by their handshake (TCP: CONNECT; TLS: + a TLS 1.3 handshake; QUIC: a QUIC handshake that carries TLS 1.3), a few ms on loopback.\n\n"
    );
    let mut t = Table::new(&["store", "transport", "down", "agent", "cloud", "row"]);
    for f in all {
        let cell = |pick: fn(&Restart) -> Duration| {
            let xs: Vec<Duration> = f.restarts.iter().map(pick).collect();
            format!(
                "{} ({})",
                report::dur(report::percentile(&xs, 50.0)),
                report::dur(xs.iter().copied().max().unwrap_or_default())
            )
        };
        t.row(vec![
            f.store.to_string(),
            f.transport.name().to_string(),
            cell(|r| r.down),
            cell(|r| r.agent),
            cell(|r| r.cloud),
            cell(|r| r.row),
        ]);
    }
    out.push_str(&t.render());
    out
}

/// A CA, a server certificate for `localhost` and 127.0.0.1, and a client certificate, as
/// `ca.pem`, `server.pem`/`.key`, `client.pem`/`.key` in `dir`.
fn generate_pki(dir: &Path) -> anyhow::Result<()> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
    std::fs::create_dir_all(dir)?;
    let ca_key = KeyPair::generate().context("generating the CA key")?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, "omega bench CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).context("signing the CA")?;
    std::fs::write(dir.join("ca.pem"), ca_cert.pem())?;
    let issuer = Issuer::new(ca, ca_key);
    for (name, cn) in [("server", "localhost"), ("client", "omega-bench")] {
        let key = KeyPair::generate().context("generating a key")?;
        let mut params = CertificateParams::new(vec![cn.to_string()])?;
        if name == "server" {
            params
                .subject_alt_names
                .push(SanType::IpAddress([127, 0, 0, 1].into()));
        }
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params
            .signed_by(&key, &issuer)
            .with_context(|| format!("signing the {name} certificate"))?;
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem())?;
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem())?;
    }
    Ok(())
}

/// The broker for `transport` on free loopback ports, client certificates of the PKI's CA
/// required on TLS and QUIC, sessions in `sessions`.
fn broker_config(transport: Transport, pki: &Path, sessions: PathBuf) -> BrokerConfig {
    let any: SocketAddr = "127.0.0.1:0".parse().expect("a socket address");
    let files = omega_broker::config::TlsFiles {
        cert: pki.join("server.pem"),
        key: pki.join("server.key"),
        client_ca: Some(pki.join("ca.pem")),
    };
    let config =
        BrokerConfig::new(any).with_sessions(omega_broker::config::SessionStore::Dir(sessions));
    match transport {
        Transport::Tcp => config,
        Transport::Tls => config.with_tls(files),
        Transport::Quic => config.with_quic(omega_broker::config::QuicListener {
            listen: any,
            tls: files,
        }),
    }
}

/// Binds and serves `config`; returns the running broker and `config` with the bound ports
/// (to bind the same ones again).
async fn start_broker(mut config: BrokerConfig) -> anyhow::Result<(RunningBroker, BrokerConfig)> {
    let broker = Broker::bind(config.clone())
        .await
        .context("starting the embedded broker")?;
    config.listen = broker.local_addr();
    if let (Some(q), Some(addr)) = (config.quic.as_mut(), broker.quic_addr()) {
        q.listen = addr;
    }
    Ok((broker.spawn(), config))
}

/// The URL clients of `transport` dial.
fn client_url(transport: Transport, config: &BrokerConfig) -> String {
    match (transport, &config.quic) {
        (Transport::Quic, Some(q)) => format!("quic://{}", q.listen),
        (Transport::Tls, _) => format!("mqtts://{}", config.listen),
        _ => format!("mqtt://{}", config.listen),
    }
}

/// Records when the agent's log says it is connected (a tracing layer on the agent's thread).
#[derive(Clone, Default)]
struct ConnectedProbe(Arc<Mutex<Vec<Instant>>>);

impl ConnectedProbe {
    /// The first connection after the `after`-th one.
    fn nth(&self, after: usize) -> Option<Instant> {
        self.0.lock().ok()?.get(after).copied()
    }

    fn len(&self) -> usize {
        self.0.lock().map_or(0, |v| v.len())
    }

    /// A dispatcher with this probe (INFO) and warnings to stderr.
    fn dispatch(&self) -> tracing::Dispatch {
        let subscriber = tracing_subscriber::registry()
            .with(self.clone().with_filter(LevelFilter::INFO))
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_filter(LevelFilter::WARN),
            );
        tracing::Dispatch::new(subscriber)
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for ConnectedProbe {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Message(bool);
        impl tracing::field::Visit for Message {
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                self.0 |= field.name() == "message" && value == AGENT_CONNECTED;
            }
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0 |= field.name() == "message" && format!("{value:?}") == AGENT_CONNECTED;
            }
        }
        let mut m = Message(false);
        event.record(&mut m);
        if m.0
            && let Ok(mut v) = self.0.lock()
        {
            v.push(Instant::now());
        }
    }
}

async fn measure(
    dir: &Path,
    store: &Store,
    transport: Transport,
    n: usize,
    pki: &Path,
) -> anyhow::Result<Figures> {
    let paths = Paths::new(dir, matches!(store, Store::Sqlite));
    let device = format!("bench-{}", &omega_protocol::ids::new_v7()[24..]);
    rusqlite::Connection::open(&paths.source)?.execute_batch(SCHEMA)?;
    let verifier = stack::write_keys(&paths)?;
    let (mut broker, config) =
        start_broker(broker_config(transport, pki, dir.join("broker-sessions"))).await?;
    let url = client_url(transport, &config);
    let tls = (transport != Transport::Tcp).then(|| ClientTls {
        ca: pki.join("ca.pem"),
        cert: pki.join("client.pem"),
        key: pki.join("client.key"),
    });
    let postgres = match store {
        Store::Postgres(u) => Some(u.as_str()),
        Store::Sqlite => None,
    };
    let cloud = stack::start_cloud_tls(&paths, &url, tls.as_ref(), postgres).await?;
    let mut cfg = stack::agent_config(
        &paths,
        &device,
        &url,
        verifier,
        TableStrategies::default(),
        Delivery::Receipts,
    );
    cfg.mqtt.tls = tls.map(|t| TlsFiles {
        ca: Some(t.ca),
        client: Some((t.cert, t.key)),
    });
    let probe = ConnectedProbe::default();
    let agent = stack::spawn_agent(cfg, Some(probe.dispatch()))?;
    stack::wait_enrolled(&agent, &paths.source, &["readings"]).await?;
    let counter = Counter::open(store, &paths).await?;
    let alive = || !agent.is_finished() && !cloud.is_finished();

    let source = paths.source.clone();
    let t0 = Instant::now();
    let want = i64::try_from(n)?;
    let goal = Goal {
        table: "edge_mirror_readings",
        device: &device,
        mirror: true,
        want,
        committed: cloud.stats.rows_materialized.load(Ordering::Relaxed) + n as u64,
    };
    let writer = tokio::task::spawn_blocking(move || insert_readings(&source, 1 << 40, n, 100));
    let live = wait_for(&counter, &cloud.stats, goal, t0, alive).await?;
    writer.await??;
    let (paced_p50, paced_p99) =
        super::paced_latency(&counter, &paths.source, &device, alive).await?;

    let live_sql = match counter {
        Counter::Sqlite(_) => " AND \"_omega_deleted\" = 0",
        Counter::Postgres(_) => " AND NOT \"_omega_deleted\"",
    };
    let restart_rows = format!(
        "SELECT count(*) FROM \"edge_mirror_readings\" WHERE device_id = $1 AND id >= {RESTART_ID}{live_sql}"
    );
    let mut restarts = Vec::with_capacity(RESTARTS);
    for k in 0..RESTARTS {
        let (agent_before, cloud_before) =
            (probe.len(), cloud.stats.subscribed.load(Ordering::Relaxed));
        let stopped = Instant::now();
        broker.stop().await.context("stopping the broker")?;
        let (again, _) = start_broker(config.clone()).await?;
        broker = again;
        let up = Instant::now();
        let source = paths.source.clone();
        let id = RESTART_ID + i64::try_from(k)?;
        tokio::task::spawn_blocking(move || insert_readings(&source, id, 1, 1)).await??;
        let (mut cloud_at, mut row_at) = (None, None);
        loop {
            if cloud_at.is_none() && cloud.stats.subscribed.load(Ordering::Relaxed) > cloud_before {
                cloud_at = Some(Instant::now());
            }
            if row_at.is_none()
                && counter.count_sql(&restart_rows, &device).await > i64::try_from(k)?
            {
                row_at = Some(Instant::now());
            }
            if let (Some(c), Some(r), Some(a)) = (cloud_at, row_at, probe.nth(agent_before)) {
                restarts.push(Restart {
                    down: up - stopped,
                    agent: a.saturating_duration_since(up),
                    cloud: c - up,
                    row: r - up,
                });
                break;
            }
            if !alive() || up.elapsed() > FLOW_TIMEOUT {
                bail!("restart {k}: the agent, the cloud or the row did not come back");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    agent.stop().await?;
    cloud.stop().await?;
    broker.stop().await.context("stopping the broker")?;
    Ok(Figures {
        store: store.name(),
        transport,
        live: n as f64 / live.as_secs_f64(),
        paced_p50,
        paced_p99,
        restarts,
    })
}
