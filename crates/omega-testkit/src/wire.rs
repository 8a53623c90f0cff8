//! An independent MQTT recorder of one device's row batches, and the mirror they imply.
//!
//! Tests assert on what actually crossed the broker, decoded by the protocol's own validator.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use omega_protocol::message::{Op, RowBatch};
use omega_protocol::topic::Suffix;
use omega_protocol::validate::{DeviceMessage, decode_device_message};
use omega_protocol::value::SqlValue;
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};

/// Rows by table, then by canonical pk.
pub type Tables = BTreeMap<String, BTreeMap<String, Vec<(String, SqlValue)>>>;
type Best = BTreeMap<(String, String), ((String, i64), Option<Vec<(String, SqlValue)>>)>;

/// Every row batch seen on the wire for one device, decoded by the protocol's validator.
#[derive(Clone, Default)]
pub struct Wire {
    /// Batches in arrival order.
    pub batches: Arc<Mutex<Vec<RowBatch>>>,
    /// Payloads the protocol's validator refused, with the reason (must stay empty).
    pub invalid: Arc<Mutex<Vec<String>>>,
    /// How many times the recorder's subscription was acknowledged (grows after reconnects).
    pub subscriptions: Arc<std::sync::atomic::AtomicUsize>,
}

impl Wire {
    /// Subscribes to `omega/{device}/sync/rows/batch` on `addr` and records what arrives.
    /// Returns once the subscription is acknowledged.
    pub async fn record(addr: std::net::SocketAddr, device: &str) -> Wire {
        Self::record_topic(addr, &format!("omega/{device}/sync/rows/batch"), device).await
    }

    /// Like [`Wire::record`] for any topic. The recorder subscribes again after every
    /// reconnect (a restarted broker forgets subscriptions).
    pub async fn record_topic(addr: std::net::SocketAddr, topic: &str, device: &str) -> Wire {
        let wire = Wire::default();
        let mut o = MqttOptions::new(format!("rec-{device}"), addr.ip().to_string(), addr.port());
        o.set_max_packet_size(64 << 20, 64 << 20);
        o.set_keep_alive(Duration::from_secs(5));
        let (client, mut el) = AsyncClient::new(o, 64);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut tx = Some(tx);
        let batches = wire.batches.clone();
        let subacks = wire.subscriptions.clone();
        let invalid = wire.invalid.clone();
        let topic = topic.to_string();
        tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                        let _ = client.try_subscribe(topic.clone(), QoS::AtLeastOnce);
                    }
                    Ok(Event::Incoming(Incoming::SubAck(_))) => {
                        subacks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Incoming::Publish(p))) => {
                        match decode_device_message(Suffix::RowsBatch, &p.payload) {
                            Ok(DeviceMessage::RowBatch(b)) => batches.lock().unwrap().push(b),
                            other => invalid.lock().unwrap().push(format!("{other:?}")),
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), rx)
            .await
            .expect("SUBACK within 10 s")
            .unwrap();
        wire
    }

    /// The mirror the wire implies ([`mirror_of`] of every batch recorded).
    pub fn mirror(&self) -> Tables {
        let invalid = self.invalid.lock().unwrap();
        assert!(
            invalid.is_empty(),
            "the agent published invalid batches: {:?}",
            &invalid[..invalid.len().min(3)]
        );
        drop(invalid);
        mirror_of(&self.batches.lock().unwrap())
    }
}

/// The mirror a set of row batches implies, as the cloud builds it: per table, per canonical
/// pk, the change with the greatest (epoch, commit_seq), deleted rows removed; and for every
/// snapshot whose parts 1..n all arrived, rows of that table below its (epoch, H) are
/// tombstoned (`cloud.md` §10.7).
pub fn mirror_of(batches: &[RowBatch]) -> Tables {
    let mut best: Best = BTreeMap::new();
    // (table, snapshot id) → (epoch, H, parts seen, last part number)
    type Parts = (String, i64, std::collections::BTreeSet<u32>, Option<u32>);
    let mut snapshots: BTreeMap<(String, String), Parts> = BTreeMap::new();
    for b in batches {
        if let Some(s) = &b.snapshot {
            let e = snapshots
                .entry((b.source_table.clone(), s.id.clone()))
                .or_insert_with(|| {
                    (
                        b.journal_epoch.clone(),
                        b.last_commit_seq,
                        Default::default(),
                        None,
                    )
                });
            e.2.insert(s.part);
            if s.last {
                e.3 = Some(s.part);
            }
        }
        for r in &b.rows {
            let key = (
                b.source_table.clone(),
                omega_protocol::pk::canonical_pk(&r.pk),
            );
            let version = (b.journal_epoch.clone(), r.commit_seq);
            let row = if r.op == Op::Delete {
                None
            } else {
                r.row.clone()
            };
            match best.get(&key) {
                Some((v, _)) if *v >= version => {}
                _ => {
                    best.insert(key, (version, row));
                }
            }
        }
    }
    // Complete snapshots: the greatest (epoch, H) per table.
    let mut floor: BTreeMap<String, (String, i64)> = BTreeMap::new();
    for ((table, _), (epoch, h, parts, last)) in snapshots {
        if last.is_some_and(|n| (1..=n).all(|p| parts.contains(&p))) {
            let v = (epoch, h);
            let f = floor.entry(table).or_insert_with(|| v.clone());
            if v > *f {
                *f = v;
            }
        }
    }
    let mut out: Tables = BTreeMap::new();
    for ((table, pk), (version, row)) in best {
        if floor.get(&table).is_some_and(|f| version < *f) {
            continue;
        }
        if let Some(row) = row {
            out.entry(table).or_default().insert(pk, row);
        }
    }
    out
}

/// A short description of how two table sets differ (for assertion messages).
pub fn diff(got: &Tables, want: &Tables) -> String {
    let mut out = Vec::new();
    for (t, rows) in want {
        let g = got.get(t).cloned().unwrap_or_default();
        let missing: Vec<_> = rows
            .keys()
            .filter(|k| !g.contains_key(*k))
            .take(3)
            .collect();
        let extra: Vec<_> = g
            .keys()
            .filter(|k| !rows.contains_key(*k))
            .take(3)
            .collect();
        let changed: Vec<_> = rows
            .iter()
            .filter(|(k, v)| g.get(*k).is_some_and(|gv| gv != *v))
            .map(|(k, v)| (k, v, &g[k]))
            .take(2)
            .collect();
        if !missing.is_empty() || !extra.is_empty() || !changed.is_empty() {
            out.push(format!(
                "{t}: want {} got {}; missing {missing:?}; extra {extra:?}; changed {changed:?}",
                rows.len(),
                g.len()
            ));
        }
    }
    out.join("\n")
}

/// The source's current rows in the shape of [`Wire::mirror`]: per table, per canonical pk,
/// every column (declaration order) in wire values. Read with plain SQL, independently of the
/// agent's own code.
pub fn source_rows(path: &std::path::Path, tables: &[&str]) -> Tables {
    use rusqlite::types::ValueRef;
    let conn = rusqlite::Connection::open(path).expect("open source");
    let mut out = Tables::new();
    for t in tables {
        let mut cols: Vec<(String, i64)> = Vec::new();
        let mut info = conn
            .prepare("SELECT name, pk FROM pragma_table_info(?1)")
            .expect("table_info");
        let rows = info
            .query_map([t], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("table_info rows");
        for r in rows {
            cols.push(r.expect("column"));
        }
        let mut keys: Vec<&(String, i64)> = cols.iter().filter(|(_, pk)| *pk > 0).collect();
        keys.sort_by_key(|(_, pk)| *pk);
        let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        let list: Vec<String> = cols.iter().map(|(c, _)| quote(c)).collect();
        let sql = format!("SELECT {} FROM {}", list.join(", "), quote(t));
        let mut stmt = conn.prepare(&sql).expect("select");
        let mut rows = stmt.query([]).expect("query");
        while let Some(r) = rows.next().expect("row") {
            let row: Vec<(String, SqlValue)> = cols
                .iter()
                .enumerate()
                .map(|(i, (c, _))| {
                    let v = match r.get_ref(i).expect("value") {
                        ValueRef::Null => SqlValue::Null,
                        ValueRef::Integer(i) => SqlValue::Integer(i),
                        ValueRef::Real(f) => SqlValue::Real(f),
                        ValueRef::Text(b) => {
                            SqlValue::Text(String::from_utf8_lossy(b).into_owned())
                        }
                        ValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
                    };
                    (c.clone(), v)
                })
                .collect();
            let pk: Vec<(String, SqlValue)> = keys
                .iter()
                .map(|(k, _)| {
                    row.iter()
                        .find(|(c, _)| c == k)
                        .expect("key column")
                        .clone()
                })
                .collect();
            out.entry(t.to_string())
                .or_default()
                .insert(omega_protocol::pk::canonical_pk(&pk), row);
        }
    }
    out
}
