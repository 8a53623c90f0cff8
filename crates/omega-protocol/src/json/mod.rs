//! Our own JSON tree, strict parser and writers (`protocol.md` §3.1, §4.2–§4.3, §5).
//!
//! `serde_json` cannot tell an integer token beyond `u64` from a real, nor report duplicate
//! keys, and both decide a rejection code. So payloads are parsed here:
//!
//! - [`parse`]: RFC 8259, UTF-8 only, no BOM, duplicate keys rejected, depth ≤ [`MAX_DEPTH`].
//!   Integer tokens (no `.`, `e`, `E`) become exact [`Json::Integer`]; one outside `i64` is
//!   [`JsonErrorKind::NumberOutOfRange`]. Real tokens go through `str::parse::<f64>`; one that
//!   overflows is [`JsonErrorKind::RealOverflow`]. `NaN`/`Infinity` tokens are
//!   [`JsonErrorKind::NonFiniteNumber`]. All three are number errors
//!   ([`JsonError::is_number_error`], `invalid_number_encoding`); every other error is
//!   `malformed_json`.
//! - [`parse_lenient`]: the same grammar, but number errors do not stop the parse: the token
//!   becomes `null` and its path is recorded, so that a validator can report the earlier
//!   rejection codes of `protocol.md` §14.1 first.
//! - [`write_canonical`]: the canonical form of §5 (sorted keys, §5.3 escaping, §5.4 numbers).
//! - [`write_compact`]: the same bytes without sorting, for whole payloads.

mod parse;
mod write;

#[cfg(test)]
mod tests;

pub use parse::{BadNumber, Lenient, MAX_DEPTH, parse, parse_lenient};
pub(crate) use write::write_integer;
pub use write::{
    to_canonical_vec, to_compact_vec, write_canonical, write_compact, write_real, write_string,
};

/// A parsed JSON value. Objects keep their members in document order.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer token (no `.`, `e` or `E`), exact.
    Integer(i64),
    /// A real token (with `.` or an exponent). Always finite when parsed.
    Real(f64),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Json>),
    /// An object, members in document order. The parser guarantees unique keys.
    Object(Vec<(String, Json)>),
}

impl Json {
    /// The members of an object.
    pub fn as_object(&self) -> Option<&[(String, Json)]> {
        match self {
            Json::Object(m) => Some(m),
            _ => None,
        }
    }

    /// The elements of an array.
    pub fn as_array(&self) -> Option<&[Json]> {
        match self {
            Json::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The text of a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value of an integer token. A real such as `1.0` is not an integer.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Json::Integer(i) => Some(*i),
            _ => None,
        }
    }

    /// The value of a boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// Whether this is `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Json::Null)
    }

    /// The member `key` of an object (first match; parsed objects have unique keys).
    pub fn get(&self, key: &str) -> Option<&Json> {
        self.as_object().and_then(|m| member(m, key))
    }

    /// A short name of the value's kind, for error messages: `null`, `boolean`, `integer`,
    /// `real`, `string`, `array` or `object`.
    pub fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "boolean",
            Json::Integer(_) => "integer",
            Json::Real(_) => "real",
            Json::String(_) => "string",
            Json::Array(_) => "array",
            Json::Object(_) => "object",
        }
    }

    /// Canonical JSON (§5) of this value.
    pub fn to_canonical_vec(&self) -> Vec<u8> {
        to_canonical_vec(self)
    }

    /// Compact JSON of this value, member order kept.
    pub fn to_compact_vec(&self) -> Vec<u8> {
        to_compact_vec(self)
    }
}

/// The value of `key` among `members` (first match).
pub fn member<'a>(members: &'a [(String, Json)], key: &str) -> Option<&'a Json> {
    members.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

impl From<&str> for Json {
    fn from(s: &str) -> Self {
        Json::String(s.to_owned())
    }
}

impl From<String> for Json {
    fn from(s: String) -> Self {
        Json::String(s)
    }
}

impl From<i64> for Json {
    fn from(i: i64) -> Self {
        Json::Integer(i)
    }
}

impl From<bool> for Json {
    fn from(b: bool) -> Self {
        Json::Bool(b)
    }
}

/// Why a byte string is not a JSON document we accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} at byte {offset}")]
pub struct JsonError {
    /// What went wrong.
    pub kind: JsonErrorKind,
    /// Byte offset into the input where it was found.
    pub offset: usize,
}

impl JsonError {
    /// True for the errors that map to `invalid_number_encoding` (§4.2, §4.3); every other
    /// error maps to `malformed_json`.
    pub fn is_number_error(&self) -> bool {
        self.kind.is_number_error()
    }
}

/// The kinds of [`JsonError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonErrorKind {
    /// The input is not valid UTF-8.
    #[error("invalid UTF-8")]
    InvalidUtf8,
    /// The input ended inside a value, or was empty.
    #[error("unexpected end of input")]
    UnexpectedEnd,
    /// A byte that cannot start or continue the current token.
    #[error("unexpected character {0:?}")]
    UnexpectedChar(char),
    /// Something other than whitespace follows the document.
    #[error("trailing characters after the document")]
    TrailingCharacters,
    /// A number token that breaks the RFC 8259 grammar (`01`, `1.`, `-`, `.5`, `1e`).
    #[error("invalid number syntax")]
    InvalidNumber,
    /// An integer token outside the i64 range (§4.2).
    #[error("number out of range: integer token outside i64")]
    NumberOutOfRange,
    /// A real token that overflows a double (§4.3).
    #[error("number out of range: real token overflows a double")]
    RealOverflow,
    /// A `NaN`, `Infinity` or `-Infinity` token (§4.3).
    #[error("NaN and Infinity are not valid numbers")]
    NonFiniteNumber,
    /// A bad escape sequence, or a `\u` escape naming a lone surrogate.
    #[error("invalid escape in string")]
    InvalidEscape,
    /// A raw control character (U+0000–U+001F) inside a string.
    #[error("unescaped control character in string")]
    ControlCharacter,
    /// The same key twice in one object (§3.1).
    #[error("duplicate key {0:?}")]
    DuplicateKey(String),
    /// Nesting deeper than [`MAX_DEPTH`].
    #[error("nesting deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

impl JsonErrorKind {
    /// True for the kinds that map to `invalid_number_encoding`.
    pub fn is_number_error(&self) -> bool {
        matches!(
            self,
            JsonErrorKind::NumberOutOfRange
                | JsonErrorKind::RealOverflow
                | JsonErrorKind::NonFiniteNumber
        )
    }
}
