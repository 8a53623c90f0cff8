//! What every bench section states besides its figures (the command, the machine, the date),
//! the statistics the figures use, and replacing a section of `BENCHMARKS.md`.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;

/// The heading line that opens a file written by `--write` for the first time.
const FILE_HEADER: &str = "# Benchmarks\n\n\
Figures measured by `omega bench …` on one machine. Each section is written by its bench with \
`--write` (re-running replaces it); sections without a command are notes written by hand.\n";

/// The facts a reader needs to compare figures across machines.
#[derive(Debug, Clone)]
pub struct Machine {
    /// `std::thread::available_parallelism`.
    pub cores: Option<usize>,
    /// `MemTotal` of `/proc/meminfo`, in bytes.
    pub memory: Option<u64>,
    /// The first `model name` of `/proc/cpuinfo`.
    pub cpu: Option<String>,
    /// The SQLite library linked in.
    pub sqlite: &'static str,
    /// The scratch directory and the file system it is on.
    pub scratch: String,
}

impl Machine {
    /// Reads the facts of this machine; `scratch` is where the databases are written.
    pub fn probe(scratch: &Path) -> Machine {
        Machine {
            cores: std::thread::available_parallelism().ok().map(|n| n.get()),
            memory: std::fs::read_to_string("/proc/meminfo")
                .ok()
                .and_then(|t| mem_total(&t)),
            cpu: std::fs::read_to_string("/proc/cpuinfo")
                .ok()
                .and_then(|t| cpu_model(&t)),
            sqlite: rusqlite::version(),
            scratch: match mount_of(scratch) {
                Some((fs, dev)) => format!("{} ({fs} on {dev})", scratch.display()),
                None => scratch.display().to_string(),
            },
        }
    }

    /// One Markdown line.
    pub fn line(&self) -> String {
        let cores = self
            .cores
            .map_or("? cores".to_string(), |n| format!("{n} cores"));
        let mem = self.memory.map_or("? memory".to_string(), |b| {
            format!("{:.1} GiB memory", b as f64 / (1u64 << 30) as f64)
        });
        let cpu = self.cpu.as_deref().unwrap_or("unknown CPU");
        format!(
            "{cores} (`available_parallelism`), {mem}, CPU `{cpu}`; SQLite {}; scratch databases in `{}`",
            self.sqlite, self.scratch
        )
    }
}

fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut parts = line.split_whitespace().skip(1);
    let n: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") => Some(n * 1024),
        None => Some(n),
        Some(_) => None,
    }
}

fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

/// The file system type and device of the mount holding `dir` (from `/proc/mounts`).
fn mount_of(dir: &Path) -> Option<(String, String)> {
    let dir = dir.canonicalize().ok()?;
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (dev, at, fs) = (f.next()?, f.next()?, f.next()?);
            dir.starts_with(at)
                .then(|| (at.len(), fs.to_string(), dev.to_string()))
        })
        .max_by_key(|(len, ..)| *len)
        .map(|(_, fs, dev)| (fs, dev))
}

/// The command as invoked, with the program shown as `omega`.
pub fn command_line() -> String {
    let mut out = String::from("omega");
    for a in std::env::args().skip(1) {
        out.push(' ');
        if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"$`\\".contains(c)) {
            out.push('\'');
            out.push_str(&a.replace('\'', r"'\''"));
            out.push('\'');
        } else {
            out.push_str(&a);
        }
    }
    out
}

/// How the running binary was built, for the reader of the figures.
pub fn build_line() -> &'static str {
    if cfg!(debug_assertions) {
        "debug build (figures are not representative; build with `--release`)"
    } else if cfg!(feature = "cloud") {
        "release build (`cargo build --release -p omega`)"
    } else {
        "release build (`cargo build --release -p omega --no-default-features --features agent`)"
    }
}

/// The head of a bench's section: its title, the command, `what` (sizes and build, as the
/// second bullet), the machine, the date and how long the whole bench took.
pub fn header(title: &str, what: &str, machine: &Machine, took: std::time::Duration) -> String {
    format!(
        "## {title}\n\n- Command: `{}`\n- {what}\n- Machine: {}\n- Date: {}; the whole bench took {:.1} s\n\n",
        command_line(),
        machine.line(),
        now_line(),
        took.as_secs_f64()
    )
}

/// Today's date and time, UTC.
pub fn now_line() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!("{} {:02}:{:02} UTC", now.date(), now.hour(), now.minute())
}

/// The median of `xs` (mean of the middle two when even); NaN when empty.
pub fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// The `p`-th percentile (0–100) by nearest rank; zero when empty.
pub fn percentile(xs: &[Duration], p: f64) -> Duration {
    if xs.is_empty() {
        return Duration::ZERO;
    }
    let mut v = xs.to_vec();
    v.sort();
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// `12,345` style thousands for rates.
pub fn count(x: f64) -> String {
    if !x.is_finite() {
        return "–".into();
    }
    let n = x.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// A duration in the unit that suits it.
pub fn dur(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1_000.0 {
        format!("{us:.0} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

/// A ratio as `0.83×`.
pub fn ratio(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.2}×")
    } else {
        "–".into()
    }
}

/// A Markdown table.
#[derive(Debug, Default)]
pub struct Table {
    head: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headings.
    pub fn new(head: &[&str]) -> Table {
        Table {
            head: head.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (as many cells as headings).
    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.head.len());
        self.rows.push(cells);
    }

    /// The table's Markdown text, ending with a newline.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        out.push_str(&line(&self.head));
        let _ = writeln!(out, "|{}", "---|".repeat(self.head.len()));
        for r in &self.rows {
            out.push_str(&line(r));
        }
        out
    }
}

/// Replaces the section that starts with the line `## {title}` (up to the next `## ` heading)
/// by `section`, or appends it; creates the file with a short header when missing.
pub fn write_section(path: &Path, title: &str, section: &str) -> anyhow::Result<()> {
    let old = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => FILE_HEADER.to_string(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let new = replace_section(&old, title, section);
    std::fs::write(path, new).with_context(|| format!("writing {}", path.display()))
}

fn replace_section(text: &str, title: &str, section: &str) -> String {
    let heading = format!("## {title}");
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let start = lines.iter().position(|l| l.trim_end() == heading);
    let mut section = section.to_string();
    if !section.ends_with('\n') {
        section.push('\n');
    }
    match start {
        Some(s) => {
            let end = lines[s + 1..]
                .iter()
                .position(|l| l.starts_with("## "))
                .map_or(lines.len(), |i| s + 1 + i);
            let mut out: String = lines[..s].concat();
            out.push_str(&section);
            if end < lines.len() {
                out.push('\n');
                out.push_str(&lines[end..].concat());
            }
            out
        }
        None => {
            let mut out = text.trim_end().to_string();
            out.push_str("\n\n");
            out.push_str(&section);
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_section_is_replaced_in_place_and_others_are_kept() {
        let text = "# B\n\n## a\nold\n\n## notes\nkeep\n";
        let out = replace_section(text, "a", "## a\nnew\n");
        assert_eq!(out, "# B\n\n## a\nnew\n\n## notes\nkeep\n");
        let again = replace_section(&out, "a", "## a\nnewer\n");
        assert_eq!(again, "# B\n\n## a\nnewer\n\n## notes\nkeep\n");
    }

    #[test]
    fn a_missing_section_is_appended_after_one_blank_line() {
        let out = replace_section("# B\n\ntext\n\n\n", "a", "## a\nx\n");
        assert_eq!(out, "# B\n\ntext\n\n## a\nx\n");
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let xs: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&xs, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&xs, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&xs[..1], 99.0), Duration::from_millis(1));
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn machine_facts_parse_proc_files() {
        assert_eq!(
            mem_total("MemTotal:       24684232 kB\nMemFree: 1 kB\n"),
            Some(24684232 * 1024)
        );
        assert_eq!(
            cpu_model("processor\t: 0\nmodel name\t: AMD EPYC 7B13\n").as_deref(),
            Some("AMD EPYC 7B13")
        );
    }
}
