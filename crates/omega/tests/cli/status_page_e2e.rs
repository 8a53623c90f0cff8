//! The operator's view of a running replication (`omega agent run` → mosquitto → `omega cloud
//! serve` on SQLite, [`Setup`]): the status page `/` rendered by a real headless browser
//! (Debian `chromium --headless --dump-dom`), and `GET /v1/metrics` scraped after the work.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::cloud_e2e::{Setup, TABLES, app_writes};

const INSTALL_HINT: &str = "the status page test needs Debian's chromium: \
    `DEBIAN_FRONTEND=noninteractive apt-get install -y chromium`";

/// The browser binary, or a failure naming how to install it.
fn chromium() -> PathBuf {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{INSTALL_HINT}"))
}

/// The DOM of `url` after the browser loaded and ran it.
fn dump_dom(browser: &PathBuf, url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}; {INSTALL_HINT}", browser.display()));
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).map(|_| s)
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish loading {url} within 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "chromium --dump-dom {url}: {status}");
    reader.join().unwrap().unwrap()
}

/// A plain HTTP/1.1 GET; (status line, body).
fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut c = TcpStream::connect(addr).unwrap();
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut got = String::new();
    c.read_to_string(&mut got).unwrap();
    let (head, body) = got.split_once("\r\n\r\n").unwrap_or((&got, ""));
    (head.lines().next().unwrap_or("").to_string(), body.into())
}

/// The value of the sample line `name` (labels included) of a Prometheus text body.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no `{name}` sample in\n{text}"))
        .parse()
        .unwrap()
}

/// How text reads in a serialized DOM (`&`, `<`, `>` escaped, quotes not).
fn dom_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[test]
fn status_page_in_a_headless_browser_shows_the_running_replication_and_metrics_count_it() {
    let browser = chromium();
    let setup = Setup::new("page", None);
    let (cloud, http) = setup.start_cloud_with(&["--http", "127.0.0.1:0"]);
    let http = http.expect("serve prints `http: listening on ADDR`");
    let agent = setup.start_agent();
    app_writes(&setup.source(), 0, 3);
    setup.converge();

    let dom = dump_dom(&browser, &format!("http://{http}/"));
    assert!(
        dom.contains(r#"<meta http-equiv="refresh" content="5">"#),
        "the page reloads itself:\n{dom}"
    );
    for t in TABLES {
        let row = format!(
            "<td>{}</td><td>{}</td><td>active</td>",
            dom_text(&setup.device),
            dom_text(t)
        );
        assert!(dom.contains(&row), "no lineage row `{row}` in\n{dom}");
    }
    assert!(
        dom.contains(&format!("Lineages ({})", TABLES.len())),
        "{dom}"
    );
    assert!(dom.contains("Quarantined messages and rows: 0"), "{dom}");

    let (status, text) = http_get(http, "/v1/metrics");
    assert!(status.contains(" 200 "), "{status}\n{text}");
    let applied = sample(&text, "omega_cloud_batches_applied_total");
    assert!(applied > 0.0, "{text}");
    assert_eq!(
        sample(&text, "omega_cloud_apply_latency_seconds_count"),
        applied,
        "one latency observation per applied batch"
    );
    assert_eq!(
        sample(
            &text,
            r#"omega_cloud_apply_latency_seconds_bucket{le="+Inf"}"#
        ),
        applied
    );
    assert!(sample(&text, "omega_cloud_apply_latency_seconds_sum") > 0.0);
    assert!(
        sample(&text, "omega_cloud_rows_materialized_total") > 0.0,
        "{text}"
    );
    assert_eq!(sample(&text, "omega_cloud_rows_failed_total"), 0.0);
    for t in ["readings", "order"] {
        let labels = format!("{{device=\"{}\",table=\"{t}\"}}", setup.device);
        assert_eq!(
            sample(&text, &format!("omega_cloud_lineage_staged_rows{labels}")),
            0.0,
            "auto_approve: nothing staged"
        );
        assert_eq!(
            sample(&text, &format!("omega_cloud_lineage_staged_bytes{labels}")),
            0.0
        );
    }
    assert!(sample(&text, "omega_cloud_controls_pending") >= 0.0);
    agent.sigterm();
    cloud.sigterm();
}
