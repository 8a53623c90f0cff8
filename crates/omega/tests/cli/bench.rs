//! `omega bench capture` runs end to end with tiny sizes, prints well-formed Markdown tables
//! and replaces only its own section of the file it writes. The figures are never checked:
//! they depend on the machine.

use crate::support::{omega, stdout};

/// The Markdown tables of `text`: each a list of rows of trimmed cells (header first, the
/// `|---|` line left out). Panics when a table's rows differ in width.
fn tables(text: &str) -> Vec<Vec<Vec<String>>> {
    let mut out: Vec<Vec<Vec<String>>> = Vec::new();
    let mut current: Vec<Vec<String>> = Vec::new();
    for line in text.lines().chain(std::iter::once("")) {
        if let Some(inner) = line.strip_prefix('|') {
            let inner = inner.strip_suffix('|').expect("a table line ends with |");
            let cells: Vec<String> = inner.split('|').map(|c| c.trim().to_string()).collect();
            if cells.iter().all(|c| c == "---") {
                assert_eq!(current.len(), 1, "the separator follows the header: {line}");
            } else {
                current.push(cells);
            }
        } else if !current.is_empty() {
            let width = current[0].len();
            assert!(
                current.iter().all(|r| r.len() == width),
                "ragged table: {current:?}"
            );
            out.push(std::mem::take(&mut current));
        }
    }
    out
}

/// A positive count as the report writes it (`12,345`).
fn is_rate(cell: &str) -> bool {
    cell.replace(',', "").parse::<f64>().is_ok_and(|r| r > 0.0)
}

fn is_ratio(cell: &str) -> bool {
    let cell = cell.trim_matches('*');
    cell.strip_suffix('×')
        .is_some_and(|n| n.parse::<f64>().is_ok_and(|x| x.is_finite() && x > 0.0))
}

#[test]
fn bench_capture_prints_its_tables_and_replaces_only_its_section() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("BENCHMARKS.md");
    std::fs::write(&file, "# Benchmarks\n\n## notes\nkept by hand\n").unwrap();
    let scratch = dir.path().display().to_string();
    let target = file.display().to_string();
    let args = [
        "bench", "capture", "--rows", "200", "--repeat", "1", "--dir", &scratch, "--write", &target,
    ];

    let out = omega(&args, &[]);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("## omega bench capture\n"), "{text}");
    assert!(
        text.contains("- Command: `omega bench capture --rows 200 --repeat 1"),
        "{text}"
    );
    for fact in [
        "- Machine: ",
        "cores",
        "memory",
        "- Date: ",
        "Target (stated, not asserted)",
    ] {
        assert!(text.contains(fact), "no `{fact}` in {text}");
    }

    let t = tables(&text);
    assert_eq!(t.len(), 3, "{text}");
    let (rates, latency, build) = (&t[0], &t[1], &t[2]);
    assert_eq!(rates[0][5], "capture ÷ bare");
    let cells: Vec<(&str, &str)> = rates[1..]
        .iter()
        .map(|r| (r[0].as_str(), r[1].as_str()))
        .collect();
    for mode in [
        "WAL, synchronous=NORMAL",
        "rollback journal, synchronous=FULL (defaults)",
    ] {
        for per_txn in ["1", "100", "10,000"] {
            assert!(
                cells.contains(&(mode, per_txn)),
                "no {mode} × {per_txn}: {cells:?}"
            );
        }
    }
    assert!(rates[1..].iter().all(|r| is_ratio(&r[5])), "{rates:?}");
    assert_eq!(latency.len(), 4, "{latency:?}");
    assert!(
        latency[1..]
            .iter()
            .all(|r| is_ratio(&r[4]) && is_ratio(&r[5])),
        "{latency:?}"
    );
    assert_eq!(build.len(), 3, "{build:?}");
    assert!(build[1..].iter().all(|r| is_ratio(&r[3])), "{build:?}");

    // Written as printed; a second run replaces the section and keeps the notes.
    let written = std::fs::read_to_string(&file).unwrap();
    assert!(written.contains(&text), "{written}");
    assert!(omega(&args, &[]).status.success());
    let again = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        again.matches("## omega bench capture").count(),
        1,
        "{again}"
    );
    assert!(
        again.starts_with("# Benchmarks\n\n## notes\nkept by hand\n\n## omega bench capture\n"),
        "{again}"
    );
}

#[test]
fn bench_capture_refuses_zero_repetitions_as_a_usage_error() {
    let out = omega(&["bench", "capture", "--repeat", "0"], &[]);
    assert_eq!(out.status.code(), Some(2));
}

/// `omega bench fleet` with a handful of devices: two runs (1 and 2 `cloud serve` processes),
/// every row of every device mirrored in each (the bench fails otherwise), one table row per
/// run with the row count, a positive rate and the speed-up as a ratio.
#[cfg(feature = "cloud")]
#[test]
fn bench_fleet_mirrors_every_device_through_one_and_two_cloud_processes() {
    let out = omega(
        &[
            "bench",
            "fleet",
            "--devices",
            "20",
            "--batches",
            "2",
            "--rows",
            "5",
        ],
        &[],
    );
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("## omega bench fleet\n"), "{text}");
    let tables = tables(&text);
    assert_eq!(tables.len(), 1, "{text}");
    let runs = &tables[0][1..];
    assert_eq!(runs.len(), 2, "{text}");
    for (row, processes) in runs.iter().zip(["1", "2"]) {
        assert_eq!(row[0], processes, "{text}");
        assert_eq!(row[1], "200", "20 devices × 2 batches × 5 rows: {text}");
        assert!(is_rate(&row[2]), "{text}");
        assert!(is_ratio(&row[3]), "{text}");
    }
}

/// `omega bench e2e --transport` with a few hundred rows: the transports in the order given
/// (repeated and comma-separated flags, a duplicate dropped), each with a positive live rate, a
/// ratio to the first, latencies and three timed broker restarts; written as its own section.
#[cfg(all(feature = "cloud", feature = "broker"))]
#[test]
fn bench_e2e_compares_transports_side_by_side_in_its_own_section() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("BENCHMARKS.md");
    std::fs::write(&file, "# Benchmarks\n\n## omega bench e2e\nkept\n").unwrap();
    let target = file.display().to_string();
    let out = omega(
        &[
            "bench",
            "e2e",
            "--rows",
            "300",
            "--transport",
            "tcp",
            "--transport",
            "quic,tls,tcp",
            "--write",
            &target,
        ],
        &[],
    );
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.starts_with("## omega bench e2e --transport\n"),
        "{text}"
    );
    let t = tables(&text);
    assert_eq!(t.len(), 2, "{text}");
    let names = ["TCP", "QUIC (mTLS)", "TLS (mTLS)"];
    let (rates, restarts) = (&t[0], &t[1]);
    assert_eq!(rates.len(), 4, "{text}");
    assert_eq!(restarts.len(), 4, "{text}");
    let is_duration = |cell: &str| {
        ["µs", "ms", "s"].iter().any(|unit| {
            cell.strip_suffix(unit)
                .is_some_and(|n| n.trim().parse::<f64>().is_ok_and(|x| x >= 0.0))
        })
    };
    for (row, name) in rates[1..].iter().zip(names) {
        assert_eq!(
            (row[0].as_str(), row[1].as_str()),
            ("SQLite", name),
            "{text}"
        );
        assert!(is_rate(&row[2]), "{text}");
        assert!(is_ratio(&row[3]), "{text}");
        assert!(is_duration(&row[4]) && is_duration(&row[5]), "{text}");
    }
    assert_eq!(
        rates[1][3], "1.00×",
        "the first transport is the reference: {text}"
    );
    for (row, name) in restarts[1..].iter().zip(names) {
        assert_eq!(row[1], name, "{text}");
        for cell in &row[2..] {
            // `median (largest)`
            let (median, largest) = cell.split_once(" (").expect("median (largest)");
            assert!(is_duration(median), "{text}");
            assert!(is_duration(largest.trim_end_matches(')')), "{text}");
        }
    }
    let written = std::fs::read_to_string(&file).unwrap();
    assert!(
        written.starts_with(
            "# Benchmarks\n\n## omega bench e2e\nkept\n\n## omega bench e2e --transport\n"
        ),
        "{written}"
    );
}

#[cfg(all(feature = "cloud", feature = "broker"))]
#[test]
fn bench_e2e_refuses_an_unknown_transport_as_a_usage_error() {
    let out = omega(&["bench", "e2e", "--transport", "tcp,udp"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("udp"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
