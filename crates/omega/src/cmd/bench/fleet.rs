//! `omega bench fleet`: many devices into one and two `omega cloud serve` processes.
//!
//! N simulated devices — lightweight in-process publishers, each its own MQTT connection,
//! client id and root topic, speaking the real protocol (row batches with schema, epoch and
//! the `prev_commit_seq` chain, QoS 1) — publish into a private mosquitto (or `--broker`);
//! 1, then 2 `omega cloud serve` processes share the subscription (`$share/…`) and write one
//! store (a fresh PostgreSQL database per run with `--postgres`, else a SQLite file). Measured
//! per run: rows/s from the first publish until the store holds every row; the lag (how long
//! after the broker acknowledged the k-th row the mirror held k rows, p50/p99 over the run);
//! the drain after the last PUBACK; the cloud processes' peak RSS. The speed-up is the 2-process
//! rate ÷ the 1-process rate of the same run.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use omega_protocol::message::{Op, Record, RowBatch, RowChange};
use omega_protocol::schema::{Affinity, ColumnInfo, SchemaColumns, schema_hash};
use omega_protocol::topic::{Suffix, full_topic};
use omega_protocol::value::SqlValue;
use tokio::sync::Semaphore;

use super::report::{self, Machine, Table};

/// The section of `BENCHMARKS.md`.
pub const SECTION_TITLE: &str = "omega bench fleet";
/// Simulated devices.
pub const DEFAULT_DEVICES: u64 = 1_000;
/// Batches per device.
pub const DEFAULT_BATCHES: u64 = 5;
/// Rows per batch.
pub const DEFAULT_ROWS: u64 = 20;
/// `ingest.workers` of each cloud process.
pub const DEFAULT_WORKERS: u64 = 4;
/// Devices connecting at once (mosquitto's listen backlog is small).
const CONNECTING: usize = 200;
/// How long one run may take before the bench gives up.
const RUN_TIMEOUT: Duration = Duration::from_secs(900);
/// The simulated table; with project coalescing every device lands in one mirror table.
const TABLE: &str = "readings";
const MIRROR: &str = "edge_mirror_readings";

/// What one run needs to know.
struct Plan {
    devices: usize,
    batches: usize,
    rows: usize,
    workers: usize,
    postgres: Option<String>,
    broker: Option<String>,
}

/// One run's figures.
struct Figures {
    processes: usize,
    rows: u64,
    rate: f64,
    lag_p50: Duration,
    lag_p99: Duration,
    drain: Duration,
    connect: Duration,
    rss_kib: Vec<u64>,
}

/// Runs the bench and returns its Markdown section.
pub fn run(args: &super::FleetArgs) -> anyhow::Result<String> {
    let plan = Plan {
        devices: usize::try_from(args.devices).context("--devices")?,
        batches: usize::try_from(args.batches).context("--batches")?,
        rows: usize::try_from(args.rows).context("--rows")?,
        workers: usize::try_from(args.workers).context("--workers")?,
        postgres: args.postgres.clone(),
        broker: args.broker.clone(),
    };
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the bench runtime")?;
    let started = Instant::now();
    let mut runs = Vec::new();
    for processes in [1, 2] {
        eprintln!(
            "bench fleet: {} devices × {} batches × {} rows into {processes} cloud process(es)…",
            plan.devices, plan.batches, plan.rows
        );
        let dir = scratch.path().join(format!("run-{processes}"));
        std::fs::create_dir_all(&dir)?;
        runs.push(rt.block_on(measure(&dir, &plan, processes))?);
    }
    let machine = Machine::probe(scratch.path());
    let store = if plan.postgres.is_some() {
        "PostgreSQL (a fresh database per run)"
    } else {
        "SQLite"
    };
    let broker = match &plan.broker {
        Some(url) => format!("the broker at {url}"),
        None => "a private mosquitto (`max_queued_messages 0`)".into(),
    };
    let mut out = report::header(
        SECTION_TITLE,
        &format!(
            "Sizes: {} devices × {} batches × {} rows = {} rows per run; {}",
            report::count(plan.devices as f64),
            plan.batches,
            plan.rows,
            report::count((plan.devices * plan.batches * plan.rows) as f64),
            report::build_line()
        ),
        &machine,
        started.elapsed(),
    );
    let _ = write!(
        out,
        "Simulated devices (one MQTT connection, client id and root topic each; real row batches, QoS 1, all publishing at once) → {broker} → 1 or 2 `omega cloud serve` processes sharing the subscription ({} workers each, `auto_approve`, project coalescing) → {store}. \
         rows/s = rows ÷ time from the first publish until the store holds them all; lag = how long after the broker acknowledged the k-th row the mirror held k rows (sampled every 100 ms); drain = from the last PUBACK until the mirror held everything. \
         Everything shares this machine's cores.\n\n",
        plan.workers
    );
    let mut t = Table::new(&[
        "cloud processes",
        "rows",
        "rows/s",
        "speed-up",
        "lag p50",
        "lag p99",
        "drain after last PUBACK",
        "devices connected in",
        "cloud peak RSS",
    ]);
    let base = runs.first().map_or(1.0, |r| r.rate);
    for r in &runs {
        t.row(vec![
            r.processes.to_string(),
            report::count(r.rows as f64),
            report::count(r.rate),
            report::ratio(r.rate / base),
            report::dur(r.lag_p50),
            report::dur(r.lag_p99),
            report::dur(r.drain),
            report::dur(r.connect),
            r.rss_kib
                .iter()
                .map(|k| format!("{:.1} MiB", *k as f64 / 1024.0))
                .collect::<Vec<_>>()
                .join(" + "),
        ]);
    }
    out.push_str(&t.render());
    out.push_str(
        "\nGoal (stated, not asserted; `issues` #10): 10k simulated devices with bounded lag, and a speed-up from the second process. \
         On 2 cores the second process competes with the first, the broker, the store and the publishers for the same CPU.\n",
    );
    Ok(out)
}

/// `readings(id INTEGER PRIMARY KEY, sensor TEXT, value REAL)`.
fn columns() -> SchemaColumns {
    let col = |name: &str, a: Affinity, pk: u32| ColumnInfo {
        name: name.into(),
        decl_type_affinity: a,
        pk_ordinal: pk,
        not_null: pk > 0,
    };
    SchemaColumns {
        table_name: TABLE.into(),
        columns: vec![
            col("id", Affinity::Integer, 1),
            col("sensor", Affinity::Text, 0),
            col("value", Affinity::Real, 0),
        ],
    }
}

/// Batch `k` (0-based) of a device: `rows` inserts with commit_seq `k*rows+1 ..= (k+1)*rows`,
/// chained to the previous batch.
fn batch(cols: &SchemaColumns, hash: &str, epoch: &str, k: usize, rows: usize) -> RowBatch {
    let first = (k * rows + 1) as i64;
    let changes = (0..rows as i64)
        .map(|i| {
            let seq = first + i;
            let pk: Record = vec![("id".to_string(), SqlValue::Integer(seq))];
            let mut row = pk.clone();
            row.push(("sensor".into(), SqlValue::Text(format!("s{}", seq % 7))));
            row.push(("value".into(), SqlValue::Real(seq as f64 * 0.5)));
            RowChange {
                commit_seq: seq,
                op: Op::Insert,
                pk,
                row: Some(row),
            }
        })
        .collect();
    RowBatch {
        batch_id: omega_protocol::ids::new_v7(),
        journal_epoch: epoch.to_string(),
        source_table: TABLE.into(),
        schema_hash: hash.to_string(),
        schema_columns: Some(cols.clone()),
        first_commit_seq: first,
        last_commit_seq: first + rows as i64 - 1,
        prev_commit_seq: Some(if k == 0 { 0 } else { first - 1 }),
        rows: changes,
        snapshot: None,
    }
}

/// A cloud process; SIGTERM on drop.
struct Serve(Child);

impl Serve {
    fn peak_rss_kib(&self) -> u64 {
        super::procfs::memory(Some(self.0.id())).map_or(0, |m| m.peak / 1024)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_serve(config: &Path) -> anyhow::Result<Serve> {
    let exe = std::env::current_exe().context("finding the omega binary")?;
    let mut child = Command::new(exe)
        .args(["cloud", "serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting omega cloud serve")?;
    let stdout = child.stdout.take().context("serve's stdout")?;
    let serve = Serve(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("ready:") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .context("omega cloud serve printed no ready line within 60 s")?;
    Ok(serve)
}

/// A fresh PostgreSQL database next to `url`'s (dropped by [`PgDb::drop_now`]).
struct PgDb {
    admin: tokio_postgres::Client,
    name: String,
    url: String,
}

impl PgDb {
    async fn fresh(url: &str) -> anyhow::Result<PgDb> {
        let (admin, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .context("connecting to PostgreSQL (--postgres)")?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let name = format!("omega_fleet_{}", &omega_protocol::ids::new_v7()[24..]);
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .context("creating the bench's database")?;
        let cfg: tokio_postgres::Config = url.parse().context("--postgres")?;
        let mut out = String::from("postgres://");
        if let Some(user) = cfg.get_user() {
            out.push_str(user);
            if let Some(pw) = cfg.get_password() {
                let _ = write!(out, ":{}", String::from_utf8_lossy(pw));
            }
            out.push('@');
        }
        let host = match cfg.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => "127.0.0.1".into(),
        };
        let port = cfg.get_ports().first().copied().unwrap_or(5432);
        let _ = write!(out, "{host}:{port}/{name}");
        Ok(PgDb {
            admin,
            name,
            url: out,
        })
    }

    async fn drop_now(self) {
        let _ = self
            .admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await;
    }
}

/// Counts the mirror's rows.
enum Counter {
    Sqlite(rusqlite::Connection),
    Postgres(tokio_postgres::Client),
}

impl Counter {
    async fn count(&self) -> u64 {
        let sql = format!("SELECT count(*) FROM \"{MIRROR}\"");
        let n: i64 = match self {
            Counter::Sqlite(c) => c.query_row(&sql, [], |r| r.get(0)).unwrap_or(0),
            Counter::Postgres(c) => c.query_one(&sql, &[]).await.map(|r| r.get(0)).unwrap_or(0),
        };
        u64::try_from(n).unwrap_or(0)
    }
}

async fn measure(dir: &Path, plan: &Plan, processes: usize) -> anyhow::Result<Figures> {
    let (_mosquitto, broker) = match &plan.broker {
        Some(url) => (None, url.clone()),
        None => {
            let (m, url) = super::mosquitto::start(dir)?;
            (Some(m), url)
        }
    };
    let root = format!("fleet-{}", &omega_protocol::ids::new_v7()[24..]);
    let keys = dir.join("keys");
    let keygen = Command::new(std::env::current_exe()?)
        .args(["cloud", "keygen", "--out"])
        .arg(&keys)
        .output()
        .context("running omega cloud keygen")?;
    if !keygen.status.success() {
        bail!(
            "omega cloud keygen: {}",
            String::from_utf8_lossy(&keygen.stderr)
        );
    }
    let pg = match &plan.postgres {
        Some(url) => Some(PgDb::fresh(url).await?),
        None => None,
    };
    let store_url = match &pg {
        Some(db) => db.url.clone(),
        None => format!("sqlite://{}", dir.join("cloud.db").display()),
    };
    let mut serves = Vec::new();
    for i in 0..processes {
        let config = dir.join(format!("cloud-{i}.yaml"));
        std::fs::write(
            &config,
            format!(
                "broker:\n  url: {broker}\n  client_id: {root}-cloud-{i}\n\
                 ingest:\n  device_topic: {root}/{{device}}\n  shared_group: g-{root}\n  workers: {workers}\n\
                 store:\n  url: {store_url}\n\
                 policy:\n  auto_approve: true\n\
                 control:\n  signing_key_path: keys/control.key\n\
                 api:\n  listen: 127.0.0.1:0\n",
                workers = plan.workers
            ),
        )?;
        serves.push(start_serve(&config)?);
    }
    let counter = match &pg {
        Some(db) => {
            let (c, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Counter::Postgres(c)
        }
        None => {
            let c = rusqlite::Connection::open(dir.join("cloud.db"))?;
            c.busy_timeout(Duration::from_secs(10))?;
            Counter::Sqlite(c)
        }
    };

    let acked = Arc::new(AtomicU64::new(0));
    let total = (plan.devices * plan.batches * plan.rows) as u64;
    let (host, port) = {
        let u = omega_config::BrokerUrl::parse(&broker)
            .map_err(|e| anyhow::anyhow!("--broker {broker}: {e}"))?;
        (u.host.clone(), u.port)
    };
    let cols = Arc::new(columns());
    let hash: Arc<str> = schema_hash(&cols).into();
    let connecting = Arc::new(Semaphore::new(CONNECTING));
    let connected = Arc::new(AtomicU64::new(0));
    let go = Arc::new(tokio::sync::Notify::new());
    let t_connect = Instant::now();
    let mut devices = tokio::task::JoinSet::new();
    for d in 0..plan.devices {
        let device = format!("dev{d:05}");
        let (host, acked, cols, hash) = (host.clone(), acked.clone(), cols.clone(), hash.clone());
        let (connecting, connected, go) = (connecting.clone(), connected.clone(), go.clone());
        let topic = full_topic(&format!("{root}/{device}"), Suffix::RowsBatch);
        let (batches, rows) = (plan.batches, plan.rows);
        devices.spawn(async move {
            simulate(
                device, host, port, topic, batches, rows, cols, hash, acked, connecting, connected,
                go,
            )
            .await
        });
    }
    // Everyone connects first, then all publish at once.
    let deadline = Instant::now() + RUN_TIMEOUT;
    while connected.load(Ordering::Relaxed) < plan.devices as u64 {
        if Instant::now() > deadline {
            bail!(
                "only {} devices connected",
                connected.load(Ordering::Relaxed)
            );
        }
        if let Some(Ok(Err(e))) = devices.try_join_next() {
            return Err(e);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connect = t_connect.elapsed();
    let t0 = Instant::now();
    go.notify_waiters();
    // Samples: (time, rows acknowledged by the broker, rows in the mirror).
    let mut samples: Vec<(Duration, u64, u64)> = Vec::new();
    let mut last_puback = None;
    loop {
        let a = acked.load(Ordering::Relaxed);
        let m = counter.count().await;
        let now = t0.elapsed();
        samples.push((now, a, m));
        if a == total && last_puback.is_none() {
            last_puback = Some(now);
        }
        if m >= total {
            break;
        }
        if t0.elapsed() > RUN_TIMEOUT {
            bail!("{m} of {total} rows mirrored after {RUN_TIMEOUT:?} ({a} acknowledged)");
        }
        while let Some(r) = devices.try_join_next() {
            r.context("a simulated device")??;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = t0.elapsed();
    while let Some(r) = devices.join_next().await {
        r.context("a simulated device")??;
    }
    let rss_kib = serves.iter().map(Serve::peak_rss_kib).collect();
    drop(serves);
    if let Some(db) = pg {
        drop(counter);
        db.drop_now().await;
    }
    let lags = lags(&samples);
    Ok(Figures {
        processes,
        rows: total,
        rate: total as f64 / elapsed.as_secs_f64(),
        lag_p50: report::percentile(&lags, 50.0),
        lag_p99: report::percentile(&lags, 99.0),
        drain: elapsed.saturating_sub(last_puback.unwrap_or(elapsed)),
        connect,
        rss_kib,
    })
}

/// For each sample where the mirror held `m` rows: its time minus the first time the broker
/// had acknowledged `m` rows.
fn lags(samples: &[(Duration, u64, u64)]) -> Vec<Duration> {
    samples
        .iter()
        .filter(|(_, _, m)| *m > 0)
        .filter_map(|(t, _, m)| {
            samples
                .iter()
                .find(|(_, a, _)| a >= m)
                .map(|(ta, _, _)| t.saturating_sub(*ta))
        })
        .collect()
}

/// One device: connect, wait for the start, publish its batches at QoS 1 one after the other
/// (each after the previous PUBACK, as the agent's in-flight window of one table would).
#[allow(clippy::too_many_arguments)]
async fn simulate(
    device: String,
    host: String,
    port: u16,
    topic: String,
    batches: usize,
    rows: usize,
    cols: Arc<SchemaColumns>,
    hash: Arc<str>,
    acked: Arc<AtomicU64>,
    connecting: Arc<Semaphore>,
    connected: Arc<AtomicU64>,
    go: Arc<tokio::sync::Notify>,
) -> anyhow::Result<()> {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let mut opts = MqttOptions::new(device.clone(), host, port);
    opts.set_keep_alive(Duration::from_secs(120));
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut eventloop) = AsyncClient::new(opts, 4);
    let started = go.notified();
    tokio::pin!(started);
    started.as_mut().enable();
    {
        let _permit = connecting.acquire().await?;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => break,
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(%device, error = %e, "connect failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
    connected.fetch_add(1, Ordering::Relaxed);
    // Keep the connection alive while the others connect.
    loop {
        tokio::select! {
            () = &mut started => break,
            e = eventloop.poll() => { e.with_context(|| format!("{device}: connection lost before the start"))?; }
        }
    }
    let epoch = omega_protocol::ids::new_v7();
    for k in 0..batches {
        let payload = batch(&cols, &hash, &epoch, k, rows).to_json_bytes();
        client
            .publish(&topic, QoS::AtLeastOnce, false, payload)
            .await?;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => break,
                Ok(_) => {}
                Err(e) => bail!("{device}: connection lost while publishing: {e}"),
            }
        }
        acked.fetch_add(rows as u64, Ordering::Relaxed);
    }
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), eventloop.poll()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_chain_and_validate() {
        let cols = columns();
        let hash = schema_hash(&cols);
        let epoch = omega_protocol::ids::new_v7();
        let b0 = batch(&cols, &hash, &epoch, 0, 3);
        let b1 = batch(&cols, &hash, &epoch, 1, 3);
        assert_eq!((b0.first_commit_seq, b0.last_commit_seq), (1, 3));
        assert_eq!(b0.prev_commit_seq, Some(0));
        assert_eq!(b1.prev_commit_seq, Some(b0.last_commit_seq));
        for b in [b0, b1] {
            let bytes = b.to_json_bytes();
            let decoded =
                omega_protocol::validate::decode_device_message(Suffix::RowsBatch, &bytes);
            match decoded {
                Ok(omega_protocol::validate::DeviceMessage::RowBatch(got)) => {
                    assert_eq!(got.rows.len(), 3);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn lag_is_mirror_time_minus_ack_time_of_the_same_row_count() {
        let s = |ms: u64, a: u64, m: u64| (Duration::from_millis(ms), a, m);
        let samples = [s(0, 0, 0), s(100, 50, 0), s(200, 100, 50), s(300, 100, 100)];
        assert_eq!(
            lags(&samples),
            vec![Duration::from_millis(100), Duration::from_millis(100)]
        );
    }
}
