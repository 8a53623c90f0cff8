//! What the benches read from `/proc` (Linux): resident memory and CPU time of a process, and
//! CPU time per thread grouped by thread name (the bench runs the agent, the broker and the
//! cloud on runtimes with distinct thread names, so their CPU can be told apart inside one
//! process).

#[cfg(feature = "cloud")]
use std::collections::HashMap;
use std::time::Duration;

/// `USER_HZ`: the unit of the CPU times in `/proc/*/stat`. It is part of Linux's user-space ABI
/// (100 on every architecture Omega builds for), unlike the kernel's internal `HZ`.
const USER_HZ: u64 = 100;

/// Resident memory of a process, from `/proc/PID/status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// `VmRSS`, bytes.
    pub rss: u64,
    /// `VmHWM`, the peak of `VmRSS`, bytes (since start or the last [`reset_peak`]).
    pub peak: u64,
}

/// `pid` as a `/proc` path component: `self` for `None`.
fn proc_dir(pid: Option<u32>) -> String {
    match pid {
        Some(p) => format!("/proc/{p}"),
        None => "/proc/self".to_string(),
    }
}

/// Reads `VmRSS` and `VmHWM` of `pid` (this process for `None`); `None` when the process is gone.
pub fn memory(pid: Option<u32>) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("{}/status", proc_dir(pid))).ok()?;
    Some(parse_status(&status))
}

fn parse_status(status: &str) -> Memory {
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    Memory {
        rss: kib("VmRSS:"),
        peak: kib("VmHWM:"),
    }
}

#[cfg(feature = "cloud")] // `omega bench e2e` only
/// Resets `VmHWM` of `pid` to its current `VmRSS` (`clear_refs` value 5). Returns whether the
/// kernel accepted it.
pub fn reset_peak(pid: Option<u32>) -> bool {
    std::fs::write(format!("{}/clear_refs", proc_dir(pid)), "5").is_ok()
}

/// User + system CPU time of a whole process (all its threads, live and exited).
pub fn process_cpu(pid: Option<u32>) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("{}/stat", proc_dir(pid))).ok()?;
    parse_stat(&stat).map(|(_, cpu)| cpu)
}

/// User + system CPU time of the calling thread (`/proc/thread-self/stat`).
pub fn thread_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    parse_stat(&stat).map(|(_, cpu)| cpu)
}

/// Parses a `stat` line into the thread's name and its user + system CPU time. The name is
/// in parentheses and may itself hold spaces and parentheses: the fields after it start
/// after the *last* `)`.
fn parse_stat(stat: &str) -> Option<(String, Duration)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_string();
    // After the name: state (field 3) … utime (14), stime (15).
    let mut fields = stat.get(close + 1..)?.split_whitespace();
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = utime + stime;
    Some((name, Duration::from_millis(ticks * 1000 / USER_HZ)))
}

#[cfg(feature = "cloud")] // `omega bench e2e` only
/// CPU time of this process's threads, accumulated by thread name across samples.
///
/// `/proc/self/task` lists live threads only, so a thread that exits between two samples
/// loses what it used since the last one; sampling every few hundred milliseconds bounds that
/// loss (tokio's blocking threads live 10 s after their last task).
#[derive(Debug, Default)]
pub struct ThreadCpu {
    /// The last CPU time read per thread id, with its name.
    last: HashMap<u32, (String, Duration)>,
    /// The first reading per thread id (zero for threads born after [`ThreadCpu::start`]).
    first: HashMap<u32, Duration>,
}

#[cfg(feature = "cloud")]
impl ThreadCpu {
    /// Takes the first sample: CPU used before now is not counted.
    pub fn start() -> ThreadCpu {
        let mut t = ThreadCpu::default();
        for (tid, name, cpu) in threads() {
            t.first.insert(tid, cpu);
            t.last.insert(tid, (name, cpu));
        }
        t
    }

    /// Takes a sample.
    pub fn sample(&mut self) {
        for (tid, name, cpu) in threads() {
            self.first.entry(tid).or_insert(Duration::ZERO);
            self.last.insert(tid, (name, cpu));
        }
    }

    /// CPU used since [`ThreadCpu::start`] by threads whose name starts with `prefix`.
    pub fn used_by(&self, prefix: &str) -> Duration {
        self.last
            .iter()
            .filter(|(_, (name, _))| name.starts_with(prefix))
            .map(|(tid, (_, cpu))| {
                cpu.saturating_sub(self.first.get(tid).copied().unwrap_or_default())
            })
            .sum()
    }
}

#[cfg(feature = "cloud")] // `omega bench e2e` only
/// Every live thread of this process: id, name, CPU time.
fn threads() -> Vec<(u32, String, Duration)> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let tid: u32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        let (name, cpu) = parse_stat(&stat)?;
        Some((tid, name, cpu))
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_with_parentheses_in_the_name_parses_after_the_last_one() {
        let line = "4242 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0";
        let (name, cpu) = parse_stat(line).unwrap();
        assert_eq!(name, "a (b) c");
        assert_eq!(cpu, Duration::from_secs(3));
    }

    #[test]
    fn a_truncated_stat_line_is_none() {
        assert!(parse_stat("4242 (x) S 1 2").is_none());
    }

    #[test]
    fn status_gives_rss_and_peak_in_bytes() {
        let m = parse_status("Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n");
        assert_eq!(
            m,
            Memory {
                rss: 1024 * 1024,
                peak: 2048 * 1024
            }
        );
    }

    #[test]
    #[cfg(feature = "cloud")]
    fn this_process_has_memory_and_cpu() {
        let m = memory(None).unwrap();
        assert!(m.rss > 0 && m.peak >= m.rss);
        let mut t = ThreadCpu::start();
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(50) {
            std::hint::black_box(0u64);
        }
        t.sample();
        assert!(process_cpu(None).unwrap() > Duration::ZERO);
        assert!(t.last.values().any(|(n, _)| !n.is_empty()));
    }
}
