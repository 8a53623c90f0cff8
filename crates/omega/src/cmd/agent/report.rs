//! The `omega agent validate` report: findings in check order, the table list, and the two
//! renderings (human lines, `--json` in the shape of `agent.md` §19).

use serde::Serialize;
use serde_json::json;

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// The agent could not start.
    Error,
    /// Worth knowing; the agent can start.
    Warning,
    /// What was checked and found fine (human output only).
    Info,
}

/// One finding: its YAML path (when it concerns a key) and a message.
#[derive(Debug, Clone)]
pub struct Finding {
    /// Severity.
    pub level: Level,
    /// Dotted YAML path, if the finding concerns a key.
    pub path: Option<String>,
    /// The message without the file and path prefix.
    pub message: String,
}

/// One table of the source and its fate.
#[derive(Debug, Clone, Serialize)]
pub struct TableRow {
    /// Table name.
    pub name: String,
    /// `rows`, `telemetry`, `ignore`, `internal` or `skipped`.
    pub action: &'static str,
    /// Schema hash of a captured table.
    pub schema_hash: Option<String>,
    /// Why a table is skipped.
    pub reason: Option<String>,
    /// How to change that.
    pub fix: Option<String>,
}

/// Everything `validate` found.
#[derive(Debug, Clone)]
pub struct Report {
    /// The config file as named on the command line.
    pub file: String,
    /// Findings in check order.
    pub findings: Vec<Finding>,
    /// The source's tables, when the source could be read.
    pub tables: Vec<TableRow>,
}

impl Report {
    /// An empty report about `file`.
    pub fn new(file: String) -> Self {
        Report {
            file,
            findings: Vec::new(),
            tables: Vec::new(),
        }
    }

    fn push(&mut self, level: Level, path: Option<&str>, message: impl Into<String>) {
        self.findings.push(Finding {
            level,
            path: path.filter(|p| !p.is_empty()).map(str::to_owned),
            message: message.into(),
        });
    }

    /// Records an error.
    pub fn error(&mut self, path: Option<&str>, message: impl Into<String>) {
        self.push(Level::Error, path, message);
    }

    /// Records a warning.
    pub fn warn(&mut self, path: Option<&str>, message: impl Into<String>) {
        self.push(Level::Warning, path, message);
    }

    /// Records what was checked and found fine.
    pub fn info(&mut self, path: Option<&str>, message: impl Into<String>) {
        self.push(Level::Info, path, message);
    }

    /// Whether the agent could start: no error.
    pub fn ok(&self) -> bool {
        !self.findings.iter().any(|f| f.level == Level::Error)
    }

    /// One line per finding (`error: FILE: PATH: MESSAGE`), the table list, then `ok` or
    /// `not ok`.
    pub fn human(&self) -> String {
        let mut out = String::new();
        for f in &self.findings {
            let word = match f.level {
                Level::Error => "error",
                Level::Warning => "warning",
                Level::Info => "info",
            };
            match &f.path {
                Some(p) => out.push_str(&format!("{word}: {}: {p}: {}\n", self.file, f.message)),
                None => out.push_str(&format!("{word}: {}: {}\n", self.file, f.message)),
            }
        }
        if !self.tables.is_empty() {
            out.push_str("tables:\n");
            let width = self
                .tables
                .iter()
                .map(|t| t.name.chars().count())
                .max()
                .unwrap_or(0);
            for t in &self.tables {
                let pad = " ".repeat(width - t.name.chars().count());
                let mut line = format!("  {}{pad}  {:<9}", t.name, t.action);
                if let Some(h) = &t.schema_hash {
                    line.push_str(&format!("  {h}"));
                }
                if let Some(r) = &t.reason {
                    line.push_str(&format!("  {r}"));
                }
                if let Some(fix) = &t.fix {
                    line.push_str(&format!(" (fix: {fix})"));
                }
                out.push_str(line.trim_end());
                out.push('\n');
            }
        }
        out.push_str(if self.ok() { "ok\n" } else { "not ok\n" });
        out
    }

    /// The `--json` document: `{ok, errors, warnings, tables}` (`agent.md` §19).
    pub fn json(&self) -> serde_json::Value {
        let items = |level: Level| -> Vec<serde_json::Value> {
            self.findings
                .iter()
                .filter(|f| f.level == level)
                .map(|f| json!({"path": f.path, "message": f.message}))
                .collect()
        };
        json!({
            "ok": self.ok(),
            "errors": items(Level::Error),
            "warnings": items(Level::Warning),
            "tables": self.tables,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_lines_name_file_and_path_and_end_with_the_verdict() {
        let mut r = Report::new("c.yaml".into());
        r.warn(Some("security.rpc"), "accepted for compatibility; ignored");
        assert!(r.ok());
        r.error(
            Some("connection.mqtt.clean_session"),
            "`true`: must be false",
        );
        r.tables.push(TableRow {
            name: "events".into(),
            action: "skipped",
            schema_hash: None,
            reason: Some("no PRIMARY KEY".into()),
            fix: Some("add a PRIMARY KEY or set strategy: ignore".into()),
        });
        let text = r.human();
        assert!(
            text.contains("warning: c.yaml: security.rpc: accepted for compatibility; ignored\n")
        );
        assert!(
            text.contains("error: c.yaml: connection.mqtt.clean_session: `true`: must be false\n")
        );
        assert!(text.contains(
            "  events  skipped    no PRIMARY KEY (fix: add a PRIMARY KEY or set strategy: ignore)\n"
        ));
        assert!(text.ends_with("not ok\n"));
    }

    #[test]
    fn json_has_exactly_the_four_keys() {
        let mut r = Report::new("c.yaml".into());
        r.info(None, "hidden");
        r.warn(Some("a"), "b");
        let v = r.json();
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["errors", "ok", "tables", "warnings"]);
        assert_eq!(v["warnings"][0], json!({"path": "a", "message": "b"}));
        assert_eq!(v["errors"], json!([]));
    }
}
