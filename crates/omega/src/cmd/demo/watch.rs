//! Watching the mirror land: each poll reads every table's mirror (tombstones included) and
//! finds the versions it has not seen. A few of them are printed per second (the rest are
//! counted), a counter line follows every second, and each new live version gives a lag
//! sample: the cloud's write time minus the row's own write time at the source.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use omega_cloud::store::AnyStore;
use uuid::Uuid;

use super::app::{TABLES, TableDef};
use super::rows::{MirrorEntry, mirror_table};

/// Row lines printed per second at most.
const LINES_PER_SECOND: usize = 5;

/// What the watcher knows about the mirror.
pub struct Watch {
    started: Instant,
    /// (table, key) → last version seen and whether it was a tombstone.
    seen: BTreeMap<(&'static str, String), Seen>,
    /// Mirror versions seen land (inserts, updates and tombstones).
    pub versions_seen: u64,
    /// Commit → mirror lag samples, milliseconds.
    pub lags_ms: Vec<i64>,
    /// The last read, per table (tombstones included).
    pub last: BTreeMap<&'static str, BTreeMap<String, MirrorEntry>>,
    window_start: Instant,
    window_lines: usize,
    window_hidden: usize,
    window_versions: u64,
}

/// A version (epoch, commit_seq) and whether it is a tombstone.
type Seen = ((Uuid, i64), bool);

/// Counts shown in the per-second line.
#[derive(Debug, Clone, Copy)]
pub struct Counts {
    /// Row changes the application committed.
    pub written: u64,
    /// Changes in the capture journal.
    pub captured: i64,
}

impl Watch {
    /// A watcher that counts time from `started`.
    pub fn new(started: Instant) -> Watch {
        let now = Instant::now();
        Watch {
            started,
            seen: BTreeMap::new(),
            versions_seen: 0,
            lags_ms: Vec::new(),
            last: BTreeMap::new(),
            window_start: now,
            window_lines: 0,
            window_hidden: 0,
            window_versions: 0,
        }
    }

    /// Reads the mirror, prints what is new (within the line budget) and the per-second line
    /// when a second has passed.
    pub async fn poll(
        &mut self,
        store: &AnyStore,
        device: &str,
        counts: Counts,
        out: &mut impl Write,
    ) -> anyhow::Result<()> {
        let mut fresh: Vec<(&'static TableDef, String, MirrorEntry, bool)> = Vec::new();
        for def in &TABLES {
            let rows = mirror_table(store, device, def, true).await?;
            for (key, entry) in &rows {
                let id = (def.name, key.clone());
                let before = self.seen.insert(id, (entry.version, entry.deleted));
                if before.map(|b| b.0) != Some(entry.version) {
                    let live_before = before.is_some_and(|(_, deleted)| !deleted);
                    fresh.push((def, key.clone(), entry.clone(), live_before));
                }
            }
            self.last.insert(def.name, rows);
        }
        // Oldest first, taking the tables in turn, so each shows within the line budget.
        fresh.sort_by_key(|(def, _, e, _)| (e.updated_at, def.name));
        let mut turn: BTreeMap<&str, usize> = BTreeMap::new();
        let mut ranked: Vec<(usize, usize, _)> = fresh
            .into_iter()
            .enumerate()
            .map(|(i, f)| {
                let n = turn.entry(f.0.name).or_default();
                *n += 1;
                (*n, i, f)
            })
            .collect();
        ranked.sort_by_key(|(rank, i, _)| (*rank, *i));
        for (_, _, (def, key, entry, existed)) in ranked {
            self.versions_seen += 1;
            self.window_versions += 1;
            let lag = (!entry.deleted).then(|| lag_ms(def, &entry)).flatten();
            if let Some(ms) = lag {
                self.lags_ms.push(ms);
            }
            if self.window_lines < LINES_PER_SECOND {
                self.window_lines += 1;
                writeln!(
                    out,
                    "{}",
                    row_line(self.at(), def, &key, &entry, existed, lag)
                )?;
            } else {
                self.window_hidden += 1;
            }
        }
        if self.window_start.elapsed() >= Duration::from_secs(1) {
            self.second_line(counts, out)?;
        }
        out.flush()?;
        Ok(())
    }

    /// Prints the last per-second line (the counts once everything landed).
    pub fn finish(&mut self, counts: Counts, out: &mut impl Write) -> std::io::Result<()> {
        self.second_line(counts, out)?;
        out.flush()
    }

    /// Seconds since the start.
    fn at(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    fn second_line(&mut self, counts: Counts, out: &mut impl Write) -> std::io::Result<()> {
        let secs = self.window_start.elapsed().as_secs_f64();
        let rate = self.window_versions as f64 / secs;
        let hidden = match self.window_hidden {
            0 => String::new(),
            n => format!("  ({n} more not shown)"),
        };
        writeln!(
            out,
            "{:>6.1}s  ── written {}  captured {}  mirrored {} ({rate:.0}/s){hidden}",
            self.at(),
            counts.written,
            counts.captured,
            self.versions_seen,
        )?;
        self.window_start = Instant::now();
        self.window_lines = 0;
        self.window_hidden = 0;
        self.window_versions = 0;
        Ok(())
    }
}

/// The cloud's write time minus the row's own write time (its `written_at` column), in ms.
fn lag_ms(def: &TableDef, entry: &MirrorEntry) -> Option<i64> {
    let written: i64 = entry.values.get(def.written_at)?.parse().ok()?;
    let mirrored = i64::try_from(entry.updated_at.unix_timestamp_nanos() / 1_000_000).ok()?;
    Some((mirrored - written).max(0))
}

/// `  2.4s  + orders        id=17  customer="Ada" …   (lag 112 ms)`.
fn row_line(
    at: f64,
    def: &TableDef,
    key: &str,
    entry: &MirrorEntry,
    existed: bool,
    lag: Option<i64>,
) -> String {
    let (mark, rest) = if entry.deleted {
        ("-", "(deleted)".to_string())
    } else {
        let cols: Vec<String> = def
            .shown
            .iter()
            .map(|c| format!("{c}={}", entry.values.get(*c).map_or("?", String::as_str)))
            .collect();
        (if existed { "~" } else { "+" }, cols.join(" "))
    };
    let lag = lag.map_or(String::new(), |ms| format!("  (lag {ms} ms)"));
    format!("{at:>6.1}s  {mark} {:<13}{key}  {rest}{lag}", def.name)
}

/// The `p`-th percentile (0–100) of sorted samples, by nearest rank.
pub fn percentile(sorted: &[i64], p: usize) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<i64> = (1..=10).collect();
        assert_eq!(percentile(&v, 50), Some(5));
        assert_eq!(percentile(&v, 100), Some(10));
        assert_eq!(percentile(&v, 0), Some(1));
        assert_eq!(percentile(&[], 50), None);
    }
}
