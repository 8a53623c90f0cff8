//! Metrics primitives (`cloud.md` §19): a lock-free latency [`Histogram`] the ingest loop
//! observes into, and [`Exposition`], a small writer of the Prometheus text format (0.0.4)
//! that `GET /v1/metrics` fills from tables of counters and gauges.

use std::fmt::{Display, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the apply-latency buckets: 1 ms to 10 s.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A histogram of durations over [`LATENCY_BUCKETS`] (plus `+Inf`), updated with relaxed
/// atomics: a scrape may see one observation's count before its sum, never a torn value.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last is `+Inf`.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    /// Sum of observations in microseconds.
    sum_micros: AtomicU64,
    /// Number of observations.
    count: AtomicU64,
}

/// A histogram read at one moment: cumulative bucket counts, sum (seconds) and count.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// (upper bound in seconds, observations ≤ it); the last bound is infinity.
    pub buckets: Vec<(f64, u64)>,
    /// Sum of observations, seconds.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The cumulative form Prometheus wants.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut acc = 0u64;
        let bounds = LATENCY_BUCKETS.iter().copied().chain([f64::INFINITY]);
        let buckets = bounds
            .zip(&self.buckets)
            .map(|(b, n)| {
                acc += n.load(Ordering::Relaxed);
                (b, acc)
            })
            .collect();
        HistogramSnapshot {
            buckets,
            sum: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
            count: self.count.load(Ordering::Relaxed),
        }
    }
}

/// A Prometheus text exposition being written. Every family gets its `# HELP` and `# TYPE`
/// lines; label values are escaped.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// The text written so far.
    pub fn finish(self) -> String {
        self.out
    }

    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A counter without labels.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.header(name, "counter", help);
        self.sample(name, &[], value);
    }

    /// A gauge without labels.
    pub fn gauge(&mut self, name: &str, help: &str, value: impl Display) {
        self.header(name, "gauge", help);
        self.sample(name, &[], value);
    }

    /// A gauge with one sample per label set.
    pub fn gauge_family<'a, V: Display>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Vec<(&'a str, &'a str)>, V)>,
    ) {
        self.header(name, "gauge", help);
        for (labels, v) in samples {
            self.sample(name, &labels, v);
        }
    }

    /// A histogram: `_bucket{le=…}`, `_sum` and `_count`.
    pub fn histogram(&mut self, name: &str, help: &str, h: &HistogramSnapshot) {
        self.header(name, "histogram", help);
        let bucket = format!("{name}_bucket");
        for (le, n) in &h.buckets {
            let le = if le.is_infinite() {
                "+Inf".to_string()
            } else {
                le.to_string()
            };
            self.sample(&bucket, &[("le", &le)], n);
        }
        self.sample(&format!("{name}_sum"), &[], h.sum);
        self.sample(&format!("{name}_count"), &[], h.count);
    }
}

/// A label value as the text format wants it: `\`, `"` and newline escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_with_an_infinite_last_bound() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.buckets[0], (0.001, 1));
        assert_eq!(s.buckets[2], (0.005, 2));
        assert_eq!(s.buckets[LATENCY_BUCKETS.len() - 1].1, 2);
        assert_eq!(*s.buckets.last().unwrap(), (f64::INFINITY, 3));
        assert!((s.sum - 60.0035).abs() < 1e-9, "{}", s.sum);
    }

    #[test]
    fn exposition_writes_help_type_and_escaped_labels() {
        let mut e = Exposition::default();
        e.counter("x_total", "Things.", 4);
        e.gauge_family("g", "By device.", [(vec![("device", "a\"b\\c\nd")], 2)]);
        let h = Histogram::default();
        h.observe(Duration::from_millis(2));
        e.histogram("lat_seconds", "Latency.", &h.snapshot());
        let text = e.finish();
        for line in [
            "# HELP x_total Things.",
            "# TYPE x_total counter",
            "x_total 4",
            "# TYPE g gauge",
            r#"g{device="a\"b\\c\nd"} 2"#,
            "# TYPE lat_seconds histogram",
            r#"lat_seconds_bucket{le="0.001"} 0"#,
            r#"lat_seconds_bucket{le="0.0025"} 1"#,
            r#"lat_seconds_bucket{le="+Inf"} 1"#,
            "lat_seconds_sum 0.002",
            "lat_seconds_count 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
    }
}
