//! Writers: canonical (§5) and compact. Both write the same bytes for strings and numbers and
//! no whitespace; only the canonical writer sorts object members.

use std::io::Write as _;

use super::Json;

/// Writes the canonical JSON (§5) of `value` to `out`: members sorted by key as UTF-8 bytes,
/// no whitespace, §5.3 escaping, §5.4 numbers.
///
/// A tree built by hand may hold duplicate keys or non-finite reals, which the wire never
/// carries: duplicates are written in their original relative order, and a non-finite
/// [`Json::Real`] is written as `null`.
pub fn write_canonical(value: &Json, out: &mut Vec<u8>) {
    write(value, out, true);
}

/// Writes `value` compactly, keeping member order. Same escaping and numbers as
/// [`write_canonical`]; meant for whole payloads, where order does not matter.
pub fn write_compact(value: &Json, out: &mut Vec<u8>) {
    write(value, out, false);
}

/// The canonical JSON of `value` as a new buffer.
pub fn to_canonical_vec(value: &Json) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    write_canonical(value, &mut out);
    out
}

/// The compact JSON of `value` as a new buffer.
pub fn to_compact_vec(value: &Json) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    write_compact(value, &mut out);
    out
}

fn write(value: &Json, out: &mut Vec<u8>, canonical: bool) {
    match value {
        Json::Null => out.extend_from_slice(b"null"),
        Json::Bool(true) => out.extend_from_slice(b"true"),
        Json::Bool(false) => out.extend_from_slice(b"false"),
        Json::Integer(i) => write_integer(*i, out),
        Json::Real(r) => write_real(*r, out),
        Json::String(s) => write_string(s, out),
        Json::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out, canonical);
            }
            out.push(b']');
        }
        Json::Object(members) => {
            out.push(b'{');
            if canonical && !is_sorted(members) {
                let mut sorted: Vec<&(String, Json)> = members.iter().collect();
                sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                write_members(sorted.into_iter(), out, canonical);
            } else {
                write_members(members.iter(), out, canonical);
            }
            out.push(b'}');
        }
    }
}

fn is_sorted(members: &[(String, Json)]) -> bool {
    members
        .windows(2)
        .all(|w| w[0].0.as_bytes() <= w[1].0.as_bytes())
}

fn write_members<'a>(
    members: impl Iterator<Item = &'a (String, Json)>,
    out: &mut Vec<u8>,
    canonical: bool,
) {
    for (i, (k, v)) in members.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(k, out);
        out.push(b':');
        write(v, out, canonical);
    }
}

/// Writes an integer in decimal (§5.4).
pub(crate) fn write_integer(i: i64, out: &mut Vec<u8>) {
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{i}");
}

/// Writes a REAL in the form of §5.4: the shortest digits that read back to the same double;
/// plain decimal (with `.0` when whole) for 1e-5 ≤ |v| < 1e16 and for ±0, otherwise
/// `d[.ddd]e±x`. A non-finite value, which has no JSON form, is written as `null`.
pub fn write_real(v: f64, out: &mut Vec<u8>) {
    if !v.is_finite() {
        out.extend_from_slice(b"null");
        return;
    }
    let start = out.len();
    let abs = v.abs();
    if v == 0.0 || (1e-5..1e16).contains(&abs) {
        // `{}` gives the shortest round-trip digits without an exponent.
        let _ = write!(out, "{v}");
        if !out[start..].contains(&b'.') {
            out.extend_from_slice(b".0");
        }
    } else {
        // `{:e}` gives the shortest round-trip digits as `d[.ddd]e[-]x`.
        let _ = write!(out, "{v:e}");
        if let Some(e) = out[start..].iter().position(|&b| b == b'e') {
            let sign_at = start + e + 1;
            if out.get(sign_at) != Some(&b'-') {
                out.insert(sign_at, b'+');
            }
        }
    }
}

/// Writes `s` as a JSON string with the escaping of §5.3: `"` and `\` escaped, the five short
/// escapes `\b \t \n \f \r`, other C0 controls as `\u00xx` (lowercase hex), everything else
/// (including `/`, U+007F and non-ASCII) as itself.
pub fn write_string(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            0x0c => b"\\f",
            b'\r' => b"\\r",
            0..0x20 => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[run..i]);
        if short.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(short);
        }
        run = i + 1;
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}
