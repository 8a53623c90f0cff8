//! The strict single-pass parser. The whole input is checked as UTF-8 once up front; after
//! that the parser walks bytes and slices the `&str` only at ASCII boundaries, so it never
//! decodes characters one by one and allocates once per string, array and object.

use std::collections::HashSet;

use super::{Json, JsonError, JsonErrorKind};

/// Deepest nesting of arrays and objects accepted. Payloads of the protocol use 4 levels.
pub const MAX_DEPTH: usize = 64;

/// Objects with more members than this are checked for duplicate keys with a hash set;
/// smaller ones by comparing pairs, which is faster at that size.
const LINEAR_DUP_CHECK_MAX: usize = 16;

/// Parses one JSON document strictly (see the [module docs](super)).
pub fn parse(input: &[u8]) -> Result<Json, JsonError> {
    Parser::new(input, false)?.document()
}

/// A number token that [`parse_lenient`] replaced by `null`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadNumber {
    /// Where the token sits, such as `rows[3].row.x` (empty for the root value).
    pub path: String,
    /// [`JsonErrorKind::NumberOutOfRange`], [`JsonErrorKind::RealOverflow`] or
    /// [`JsonErrorKind::NonFiniteNumber`].
    pub kind: JsonErrorKind,
    /// Byte offset of the token.
    pub offset: usize,
}

/// The result of [`parse_lenient`].
#[derive(Debug, Clone, PartialEq)]
pub struct Lenient {
    /// The document, with every bad number token replaced by `null`.
    pub value: Json,
    /// The bad number tokens, in document order. Empty for a document [`parse`] accepts.
    pub bad_numbers: Vec<BadNumber>,
}

/// Parses like [`parse`], except that number errors (§4.2, §4.3) do not stop the parse: each
/// such token becomes `null` and is listed with its path. Any other error is returned.
///
/// Clean documents take the fast strict path; the path-tracking pass runs only when the strict
/// parse stopped on a number error.
pub fn parse_lenient(input: &[u8]) -> Result<Lenient, JsonError> {
    match parse(input) {
        Ok(value) => Ok(Lenient {
            value,
            bad_numbers: Vec::new(),
        }),
        Err(e) if e.is_number_error() => {
            let mut parser = Parser::new(input, true)?;
            let value = parser.document()?;
            Ok(Lenient {
                value,
                bad_numbers: parser.bad,
            })
        }
        Err(e) => Err(e),
    }
}

/// One step of the path to a value, tracked only in lenient mode.
enum Seg {
    Key(String),
    Index(usize),
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    lenient: bool,
    path: Vec<Seg>,
    bad: Vec<BadNumber>,
}

impl<'a> Parser<'a> {
    fn new(input: &'a [u8], lenient: bool) -> Result<Self, JsonError> {
        let text = std::str::from_utf8(input).map_err(|e| JsonError {
            kind: JsonErrorKind::InvalidUtf8,
            offset: e.valid_up_to(),
        })?;
        Ok(Parser {
            text,
            bytes: input,
            pos: 0,
            lenient,
            path: Vec::new(),
            bad: Vec::new(),
        })
    }

    fn document(&mut self) -> Result<Json, JsonError> {
        let value = self.value(0)?;
        self.skip_ws();
        if self.pos < self.bytes.len() {
            return Err(self.err(JsonErrorKind::TrailingCharacters));
        }
        Ok(value)
    }

    fn err(&self, kind: JsonErrorKind) -> JsonError {
        JsonError {
            kind,
            offset: self.pos,
        }
    }

    /// The error for the byte at the current position (or the end of input).
    fn unexpected(&self) -> JsonError {
        match self.text.get(self.pos..).and_then(|s| s.chars().next()) {
            Some(c) => self.err(JsonErrorKind::UnexpectedChar(c)),
            None => self.err(JsonErrorKind::UnexpectedEnd),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, JsonError> {
        self.skip_ws();
        match self.peek() {
            None => Err(self.err(JsonErrorKind::UnexpectedEnd)),
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => self.string().map(Json::String),
            Some(b't') => self.literal("true", Json::Bool(true)),
            Some(b'f') => self.literal("false", Json::Bool(false)),
            Some(b'n') => self.literal("null", Json::Null),
            Some(b'N') => self.non_finite("NaN", self.pos),
            Some(b'I') => self.non_finite("Infinity", self.pos),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.unexpected()),
        }
    }

    fn literal(&mut self, word: &str, value: Json) -> Result<Json, JsonError> {
        if self.bytes[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(value)
        } else {
            Err(self.unexpected())
        }
    }

    /// `NaN`, `Infinity` (or `-Infinity`, with `start` at the `-`).
    fn non_finite(&mut self, word: &str, start: usize) -> Result<Json, JsonError> {
        if self.bytes[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            self.bad_number(JsonErrorKind::NonFiniteNumber, start)
        } else {
            Err(self.unexpected())
        }
    }

    fn bad_number(&mut self, kind: JsonErrorKind, offset: usize) -> Result<Json, JsonError> {
        if !self.lenient {
            return Err(JsonError { kind, offset });
        }
        self.bad.push(BadNumber {
            path: render_path(&self.path),
            kind,
            offset,
        });
        Ok(Json::Null)
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Result<Json, JsonError> {
        let start = self.pos;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
            if self.peek() == Some(b'I') {
                return self.non_finite("Infinity", start);
            }
        }
        let int_start = self.pos;
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.err(JsonErrorKind::InvalidNumber)),
        }
        let int_end = self.pos;
        let mut real = false;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(self.err(JsonErrorKind::InvalidNumber));
            }
            real = true;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.err(JsonErrorKind::InvalidNumber));
            }
            real = true;
        }
        if real {
            // The token is ASCII, so these are char boundaries.
            match self.text[start..self.pos].parse::<f64>() {
                Ok(v) if v.is_finite() => Ok(Json::Real(v)),
                _ => self.bad_number(JsonErrorKind::RealOverflow, start),
            }
        } else {
            match integer(&self.bytes[int_start..int_end], negative) {
                Some(i) => Ok(Json::Integer(i)),
                None => self.bad_number(JsonErrorKind::NumberOutOfRange, start),
            }
        }
    }

    /// A string, with the position at its opening quote.
    fn string(&mut self) -> Result<String, JsonError> {
        self.pos += 1;
        let start = self.pos;
        // Fast path: no escapes, one allocation.
        loop {
            match self.peek() {
                None => return Err(self.err(JsonErrorKind::UnexpectedEnd)),
                Some(b'"') => {
                    let s = self.text[start..self.pos].to_owned();
                    self.pos += 1;
                    return Ok(s);
                }
                Some(b'\\') => break,
                Some(0..0x20) => return Err(self.err(JsonErrorKind::ControlCharacter)),
                Some(_) => self.pos += 1,
            }
        }
        let mut out = String::with_capacity(self.pos - start + 16);
        out.push_str(&self.text[start..self.pos]);
        let mut run = self.pos;
        loop {
            match self.peek() {
                None => return Err(self.err(JsonErrorKind::UnexpectedEnd)),
                Some(b'"') => {
                    out.push_str(&self.text[run..self.pos]);
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    out.push_str(&self.text[run..self.pos]);
                    self.pos += 1;
                    self.escape(&mut out)?;
                    run = self.pos;
                }
                Some(0..0x20) => return Err(self.err(JsonErrorKind::ControlCharacter)),
                Some(_) => self.pos += 1,
            }
        }
    }

    /// One escape, with the position just after the backslash.
    fn escape(&mut self, out: &mut String) -> Result<(), JsonError> {
        let c = match self.peek() {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                self.pos += 1;
                let hi = self.hex4()?;
                let code = if (0xD800..0xDC00).contains(&hi) {
                    if !self.bytes[self.pos..].starts_with(b"\\u") {
                        return Err(self.err(JsonErrorKind::InvalidEscape));
                    }
                    self.pos += 2;
                    let lo = self.hex4()?;
                    if !(0xDC00..0xE000).contains(&lo) {
                        return Err(self.err(JsonErrorKind::InvalidEscape));
                    }
                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                } else {
                    hi
                };
                let c =
                    char::from_u32(code).ok_or_else(|| self.err(JsonErrorKind::InvalidEscape))?;
                out.push(c);
                return Ok(());
            }
            None => return Err(self.err(JsonErrorKind::UnexpectedEnd)),
            Some(_) => return Err(self.err(JsonErrorKind::InvalidEscape)),
        };
        self.pos += 1;
        out.push(c);
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let Some(digits) = self.bytes.get(self.pos..self.pos + 4) else {
            return Err(self.err(JsonErrorKind::UnexpectedEnd));
        };
        let mut v = 0u32;
        for &b in digits {
            let d = match b {
                b'0'..=b'9' => b - b'0',
                b'a'..=b'f' => b - b'a' + 10,
                b'A'..=b'F' => b - b'A' + 10,
                _ => return Err(self.err(JsonErrorKind::InvalidEscape)),
            };
            v = v * 16 + u32::from(d);
        }
        self.pos += 4;
        Ok(v)
    }

    fn array(&mut self, depth: usize) -> Result<Json, JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.err(JsonErrorKind::TooDeep));
        }
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Json::Array(items));
        }
        loop {
            if self.lenient {
                self.path.push(Seg::Index(items.len()));
            }
            let v = self.value(depth)?;
            if self.lenient {
                self.path.pop();
            }
            items.push(v);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Json::Array(items));
                }
                _ => return Err(self.unexpected()),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Json, JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.err(JsonErrorKind::TooDeep));
        }
        let open = self.pos;
        self.pos += 1;
        let mut members: Vec<(String, Json)> = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Json::Object(members));
        }
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return Err(self.unexpected());
            }
            let key = self.string()?;
            self.skip_ws();
            if self.peek() != Some(b':') {
                return Err(self.unexpected());
            }
            self.pos += 1;
            if self.lenient {
                self.path.push(Seg::Key(key.clone()));
            }
            let v = self.value(depth)?;
            if self.lenient {
                self.path.pop();
            }
            members.push((key, v));
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(self.unexpected()),
            }
        }
        if let Some(dup) = duplicate_key(&members) {
            return Err(JsonError {
                kind: JsonErrorKind::DuplicateKey(dup.to_owned()),
                offset: open,
            });
        }
        Ok(Json::Object(members))
    }
}

/// The exact value of an integer token's digits, or `None` outside i64.
fn integer(digits: &[u8], negative: bool) -> Option<i64> {
    // 18 digits always fit; longer tokens take the checked path.
    let mut mag: u64 = 0;
    if digits.len() <= 18 {
        for &d in digits {
            mag = mag * 10 + u64::from(d - b'0');
        }
    } else {
        for &d in digits {
            mag = mag.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        }
    }
    if negative {
        0i64.checked_sub_unsigned(mag)
    } else {
        i64::try_from(mag).ok()
    }
}

fn duplicate_key(members: &[(String, Json)]) -> Option<&str> {
    if members.len() <= LINEAR_DUP_CHECK_MAX {
        for (i, (k, _)) in members.iter().enumerate() {
            if members[..i].iter().any(|(prev, _)| prev == k) {
                return Some(k);
            }
        }
        return None;
    }
    let mut seen = HashSet::with_capacity(members.len());
    members
        .iter()
        .find(|(k, _)| !seen.insert(k.as_str()))
        .map(|(k, _)| k.as_str())
}

/// Renders a path as `a.b[3].c`.
fn render_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
        }
    }
    out
}
