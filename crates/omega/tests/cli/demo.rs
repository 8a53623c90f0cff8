//! `omega demo`: broker, cloud and agent in one process on a sample database. The run must
//! end with the mirror equal to the source; `--keep` must leave the files it names. Nothing
//! here depends on how fast the machine is: only the outcome is checked.

use std::path::PathBuf;
use std::process::{Command, Output};

/// `omega demo ARGS`, with the default log level (no `RUST_LOG`, no `-v`).
fn demo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_omega"))
        .arg("demo")
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run omega demo")
}

/// Standard output and error, for assertions and their messages.
fn texts(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The number that follows `label` at the start of a summary line.
fn summary_number(stdout: &str, label: &str) -> u64 {
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no `{label}` line in:\n{stdout}"));
    line.trim_start()[label.len()..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after `{label}`: {line}"))
}

/// The source database path from the header line `agent … source PATH (tables …)`.
fn source_path(stdout: &str) -> PathBuf {
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("agent "))
        .unwrap_or_else(|| panic!("no agent line in:\n{stdout}"));
    let rest = line
        .split_once(", source ")
        .expect("source in the agent line")
        .1;
    PathBuf::from(
        rest.split_once(" (tables")
            .expect("tables after the source")
            .0,
    )
}

#[test]
fn demo_mirrors_the_sample_database_and_cleans_up() {
    let out = demo(&["--duration", "3s"]);
    let (stdout, stderr) = texts(&out);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(
        summary_number(&stdout, "rows mirrored") > 0,
        "nothing mirrored:\n{stdout}"
    );
    assert!(summary_number(&stdout, "rows written") > 0, "{stdout}");
    assert!(
        stdout.contains("verify: mirror equals source"),
        "stdout:\n{stdout}"
    );
    assert!(
        !stderr.contains(" INFO "),
        "components log at WARN by default:\n{stderr}"
    );
    let source = source_path(&stdout);
    assert!(
        !source.exists(),
        "without --keep the demo removes its files: {} still exists",
        source.display()
    );
}

#[test]
fn keep_leaves_the_files_it_prints() {
    let out = demo(&["--duration", "3s", "--keep"]);
    let (stdout, stderr) = texts(&out);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(stdout.contains("verify: mirror equals source"), "{stdout}");
    let kept: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("files kept in "))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect();
    let paths: Vec<PathBuf> = kept
        .iter()
        .map(|l| PathBuf::from(l.split_once(": ").expect("`label: path`").1.trim()))
        .collect();
    assert!(paths.len() >= 6, "kept files not listed:\n{stdout}");
    for p in &paths {
        assert!(
            p.exists(),
            "{} is listed as kept but does not exist",
            p.display()
        );
    }
    assert!(paths.iter().any(|p| p.ends_with("source.db")), "{kept:?}");
    assert!(paths.iter().any(|p| p.ends_with("cloud.db")), "{kept:?}");
    // The directory is the parent of the source database: remove it.
    let dir = source_path(&stdout).parent().unwrap().to_path_buf();
    assert!(dir.join("source.db").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_flags_exit_2_before_starting_anything() {
    for args in [
        &["--duration", "0s"][..],
        &["--duration", "15"][..],
        &["--postgres", "mysql://localhost/omega"][..],
    ] {
        let out = demo(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {:?}", texts(&out));
        assert!(out.stdout.is_empty(), "{args:?}: nothing started");
    }
}
