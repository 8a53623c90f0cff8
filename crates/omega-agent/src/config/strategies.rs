//! `sqlite-replication.table_strategies` (`agent.md` §2.7): validated per-table strategies.
//!
//! Keys match table names the way SQLite does: ASCII case-insensitively. Two keys for one
//! table are an error; keys naming internal tables (`sqlite_*`, `__omega_*`) are dropped with
//! a warning.

use std::collections::BTreeMap;

use omega_config::{Context, ErrorKind};

use super::raw::{RawStrategy, RawTableStrategy, RawTsUnit};

/// YAML path of the `table_strategies` map.
pub const STRATEGIES_PATH: &str = "sqlite-replication.table_strategies";

/// How a table is replicated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Strategy {
    /// Triggers and the journal: every insert, update and delete (`agent.md` §6).
    Rows,
    /// A cursor over a timestamp column: inserts only (`agent.md` §12).
    Telemetry(Telemetry),
    /// Not captured.
    Ignore,
}

impl Strategy {
    /// `rows`, `telemetry` or `ignore`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Strategy::Rows => "rows",
            Strategy::Telemetry(_) => "telemetry",
            Strategy::Ignore => "ignore",
        }
    }
}

/// The telemetry settings of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Telemetry {
    /// The column holding each sample's time (as written in the config).
    pub ts_column: String,
    /// The columns sent as fields; `None` means every column except `ts_column`.
    pub include_columns: Option<Vec<String>>,
    /// The unit of INTEGER/REAL timestamps.
    pub ts_unit: TsUnit,
}

/// Unit of numeric timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TsUnit {
    /// Seconds since the Unix epoch (the default).
    #[default]
    Seconds,
    /// Milliseconds since the Unix epoch.
    Millis,
}

/// One configured entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableStrategy {
    /// The key as written in the file.
    pub key: String,
    /// The strategy.
    pub strategy: Strategy,
}

impl TableStrategy {
    /// The YAML path of this entry, e.g. `sqlite-replication.table_strategies.temps`.
    pub fn yaml_path(&self) -> String {
        format!("{STRATEGIES_PATH}.{}", self.key)
    }
}

/// Every configured entry; tables without one get [`Strategy::Rows`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableStrategies {
    entries: Vec<TableStrategy>,
}

impl TableStrategies {
    /// Builds the set from entries. Returns the first key that collides (ASCII
    /// case-insensitively) with an earlier one, if any.
    pub fn new(entries: Vec<TableStrategy>) -> Result<Self, String> {
        let mut seen = BTreeMap::new();
        for e in &entries {
            if let Some(prev) = seen.insert(e.key.to_ascii_lowercase(), &e.key) {
                return Err(format!("`{prev}` and `{}` name the same table", e.key));
            }
        }
        Ok(TableStrategies { entries })
    }

    /// The entry for `table`, matched ASCII case-insensitively, if one is configured.
    pub fn get(&self, table: &str) -> Option<&TableStrategy> {
        self.entries
            .iter()
            .find(|e| e.key.eq_ignore_ascii_case(table))
    }

    /// The strategy for `table`: its entry's, or [`Strategy::Rows`].
    pub fn strategy_for(&self, table: &str) -> Strategy {
        self.get(table)
            .map_or(Strategy::Rows, |e| e.strategy.clone())
    }

    /// Every entry, in key order.
    pub fn iter(&self) -> impl Iterator<Item = &TableStrategy> {
        self.entries.iter()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Whether SQLite or the agent owns a table of this name (`sqlite_*`, `__omega_*`, ASCII
/// case-insensitively).
pub fn is_internal_table(name: &str) -> bool {
    let starts = |p: &str| {
        name.len() >= p.len() && name.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes())
    };
    starts("sqlite_") || starts("__omega_")
}

/// Validates the raw map, recording errors and warnings in `cx`.
pub(crate) fn build(
    cx: &mut Context<'_>,
    raw: Option<BTreeMap<String, RawTableStrategy>>,
) -> TableStrategies {
    let mut entries = Vec::new();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for (key, entry) in raw.unwrap_or_default() {
        let path = format!("{STRATEGIES_PATH}.{key}");
        if is_internal_table(&key) {
            cx.warn(
                &path,
                "ignored: internal tables (sqlite_*, __omega_*) are never replicated",
            );
            continue;
        }
        if let Some(prev) = seen.insert(key.to_ascii_lowercase(), key.clone()) {
            cx.invalid(
                &path,
                None,
                format!(
                    "`{prev}` and `{key}` name the same table (SQLite compares table names \
                     ASCII case-insensitively): keep one entry"
                ),
            );
            continue;
        }
        if let Some(strategy) = build_entry(cx, &path, entry) {
            entries.push(TableStrategy { key, strategy });
        }
    }
    TableStrategies { entries }
}

fn build_entry(cx: &mut Context<'_>, path: &str, raw: RawTableStrategy) -> Option<Strategy> {
    let kind = raw.strategy.unwrap_or(RawStrategy::Rows);
    if kind != RawStrategy::Telemetry {
        let word = if kind == RawStrategy::Rows {
            "rows"
        } else {
            "ignore"
        };
        let mut ok = true;
        for (key, set) in [
            ("ts_column", raw.ts_column.is_some()),
            ("include_columns", raw.include_columns.is_some()),
            ("ts_unit", raw.ts_unit.is_some()),
        ] {
            if set {
                cx.invalid(
                    &format!("{path}.{key}"),
                    None,
                    format!(
                        "`{key}` is for `strategy: telemetry` only (this entry is `{word}`): \
                         remove it or set `strategy: telemetry`"
                    ),
                );
                ok = false;
            }
        }
        return ok.then_some(if kind == RawStrategy::Rows {
            Strategy::Rows
        } else {
            Strategy::Ignore
        });
    }
    let ts_path = format!("{path}.ts_column");
    let ts_column = match raw.ts_column {
        Some(c) if !c.trim().is_empty() => Some(c),
        Some(_) => {
            cx.invalid(&ts_path, Some(""), "a column name cannot be empty");
            None
        }
        None => {
            cx.error(
                &ts_path,
                ErrorKind::Invalid {
                    value: None,
                    reason: "ts_column is required with `strategy: telemetry`: name the column \
                             holding each sample's time"
                        .into(),
                },
            );
            None
        }
    };
    let inc_path = format!("{path}.include_columns");
    let mut ok = ts_column.is_some();
    if let Some(cols) = &raw.include_columns {
        if cols.is_empty() {
            cx.invalid(
                &inc_path,
                None,
                "an empty list sends nothing: list columns or remove the key",
            );
            ok = false;
        }
        let mut seen = BTreeMap::new();
        for (i, c) in cols.iter().enumerate() {
            if let Some(ts) = &ts_column
                && c.eq_ignore_ascii_case(ts)
            {
                cx.invalid(
                    &format!("{inc_path}[{i}]"),
                    Some(c),
                    "the ts_column is sent as the sample time and cannot be listed",
                );
                ok = false;
            }
            if seen.insert(c.to_ascii_lowercase(), ()).is_some() {
                cx.invalid(&format!("{inc_path}[{i}]"), Some(c), "listed twice");
                ok = false;
            }
        }
    }
    let ts_unit = match raw.ts_unit {
        None | Some(RawTsUnit::Seconds) => TsUnit::Seconds,
        Some(RawTsUnit::Millis) => TsUnit::Millis,
    };
    if !ok {
        return None;
    }
    Some(Strategy::Telemetry(Telemetry {
        ts_column: ts_column?,
        include_columns: raw.include_columns,
        ts_unit,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, strategy: Strategy) -> TableStrategy {
        TableStrategy {
            key: key.into(),
            strategy,
        }
    }

    #[test]
    fn lookups_are_ascii_case_insensitive() {
        let s = TableStrategies::new(vec![entry("Temps", Strategy::Ignore)]).unwrap();
        assert_eq!(s.strategy_for("temps"), Strategy::Ignore);
        assert_eq!(s.strategy_for("TEMPS"), Strategy::Ignore);
        assert_eq!(s.strategy_for("other"), Strategy::Rows);
        // Non-ASCII letters are not folded, as in SQLite.
        let u = TableStrategies::new(vec![entry("Ä", Strategy::Ignore)]).unwrap();
        assert!(u.get("ä").is_none());
    }

    #[test]
    fn keys_naming_one_table_twice_are_refused() {
        let e = TableStrategies::new(vec![
            entry("a", Strategy::Rows),
            entry("A", Strategy::Ignore),
        ]);
        assert!(e.unwrap_err().contains("name the same table"));
    }

    #[test]
    fn internal_names_are_recognised() {
        assert!(is_internal_table("sqlite_sequence"));
        assert!(is_internal_table("SQLITE_stat1"));
        assert!(is_internal_table("__omega_journal"));
        assert!(!is_internal_table("sqlite"));
        assert!(!is_internal_table("_omega_x"));
        assert!(!is_internal_table("é"));
    }
}
