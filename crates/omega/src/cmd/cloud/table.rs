//! Human output: aligned text tables and readable values.

use omega_protocol::value::SqlValue;

/// Renders `rows` under `headers`, columns left-aligned and two spaces apart; the last
/// column is not padded.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let cells: Vec<&str> = cells.collect();
        let last = cells.len().saturating_sub(1);
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            text.push_str(cell);
            if i < last {
                let pad = widths[i].saturating_sub(cell.chars().count()) + 2;
                text.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// Writes `text` to stdout. A closed pipe (`omega cloud rows | head`) is not an error.
pub fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// Pretty JSON and a newline, through [`emit`].
pub fn emit_json(v: &serde_json::Value) -> anyhow::Result<()> {
    emit(&format!("{}\n", serde_json::to_string_pretty(v)?))
}

/// `-` for none.
pub fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// A value for people: NULL, numbers, `inf`, text (control characters escaped), and BLOBs
/// as `x'00ff'`.
pub fn value(v: &SqlValue) -> String {
    match v {
        SqlValue::Null => "NULL".into(),
        SqlValue::Integer(i) => i.to_string(),
        SqlValue::Real(r) if r.is_infinite() => r.to_string(),
        SqlValue::Real(r) => {
            let mut out = Vec::new();
            omega_protocol::json::write_real(*r, &mut out);
            String::from_utf8_lossy(&out).into_owned()
        }
        SqlValue::Text(t) if t.chars().any(char::is_control) => format!("{:?}", t),
        SqlValue::Text(t) => t.clone(),
        SqlValue::Blob(b) => {
            let mut s = String::with_capacity(3 + 2 * b.len());
            s.push_str("x'");
            for byte in b {
                s.push_str(&format!("{byte:02x}"));
            }
            s.push('\'');
            s
        }
    }
}

/// At most `max` characters, with `…` when cut.
pub fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let t = render(
            &["A", "LONG"],
            &[vec!["xyz".into(), "1".into()], vec!["q".into(), "".into()]],
        );
        assert_eq!(t, "A    LONG\nxyz  1\nq\n");
    }

    #[test]
    fn values_read_well() {
        assert_eq!(value(&SqlValue::Blob(vec![0, 255])), "x'00ff'");
        assert_eq!(value(&SqlValue::Real(f64::NEG_INFINITY)), "-inf");
        assert_eq!(value(&SqlValue::Real(-1e300)), "-1e+300");
        assert_eq!(value(&SqlValue::Text("a\nb".into())), "\"a\\nb\"");
        assert_eq!(cut("abcdef", 4), "abc…");
    }
}
