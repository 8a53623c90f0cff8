//! Typed reads of wire object members with errors that name the field at fault.
//!
//! A field read that fails because the lenient parser replaced a bad number token there by
//! `null` reports `invalid_number_encoding` (the token's own code, §4.2) instead of a type
//! error: the value cannot be read, and its number encoding is what is wrong.

use std::fmt::{self, Write as _};

use super::{Rejection, RejectionCode};
use crate::json::{BadNumber, Json, member};
use crate::schema::{Affinity, ColumnInfo, SchemaColumns};

/// Where a value sits in a payload, rendered only on error (`rows[3].pk.id`).
#[derive(Clone, Copy)]
pub(crate) enum Loc<'a> {
    /// The payload's top-level object.
    Root,
    /// Member `key` of the object at the parent location.
    Key(&'a Loc<'a>, &'a str),
    /// Element `index` of the array at the parent location.
    Index(&'a Loc<'a>, usize),
}

impl Loc<'_> {
    pub(crate) fn key<'b>(&'b self, key: &'b str) -> Loc<'b> {
        Loc::Key(self, key)
    }

    pub(crate) fn index(&self, index: usize) -> Loc<'_> {
        Loc::Index(self, index)
    }
}

impl fmt::Display for Loc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Loc::Root => f.write_str("payload"),
            Loc::Key(Loc::Root, k) => f.write_str(k),
            Loc::Key(parent, k) => write!(f, "{parent}.{k}"),
            Loc::Index(Loc::Root, i) => write!(f, "[{i}]"),
            Loc::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

/// What a reader needs besides the tree: the bad number tokens of the lenient parse.
#[derive(Clone, Copy)]
pub(crate) struct Ctx<'a> {
    pub(crate) bad: &'a [BadNumber],
}

/// A short description of a value for messages: `a string`, `null`, …
fn described(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Integer(_) => "an integer",
        Json::Real(_) => "a real",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

impl<'a> Ctx<'a> {
    /// The bad number token at `loc`, if any.
    pub(crate) fn bad_at(&self, loc: &Loc<'_>) -> Option<&'a BadNumber> {
        if self.bad.is_empty() {
            return None;
        }
        let path = loc.to_string();
        self.bad.iter().find(|b| b.path == path)
    }

    /// The rejection for the first bad number token of the payload (§14, code 14).
    pub(crate) fn first_bad_number(&self) -> Option<Rejection> {
        self.bad.first().map(number_rejection)
    }

    /// `code` for a value at `loc` that is not what was `expected`, unless a bad number
    /// token sits there.
    pub(crate) fn wrong(
        &self,
        code: RejectionCode,
        loc: &Loc<'_>,
        expected: &str,
        got: &Json,
    ) -> Rejection {
        if got.is_null()
            && let Some(b) = self.bad_at(loc)
        {
            return number_rejection(b);
        }
        Rejection::new(
            code,
            format!("{loc}: expected {expected}, got {}", described(got)),
        )
    }

    fn malformed(&self, loc: &Loc<'_>, expected: &str, got: &Json) -> Rejection {
        self.wrong(RejectionCode::MalformedJson, loc, expected, got)
    }

    /// A required member.
    pub(crate) fn req<'j>(
        &self,
        obj: &'j [(String, Json)],
        at: &Loc<'_>,
        key: &str,
    ) -> Result<&'j Json, Rejection> {
        member(obj, key).ok_or_else(|| malformed(&at.key(key), "missing"))
    }

    /// A required string member.
    pub(crate) fn str<'j>(
        &self,
        obj: &'j [(String, Json)],
        at: &Loc<'_>,
        key: &str,
    ) -> Result<&'j str, Rejection> {
        let v = self.req(obj, at, key)?;
        v.as_str()
            .ok_or_else(|| self.malformed(&at.key(key), "a string", v))
    }

    /// A required non-empty string member.
    pub(crate) fn name<'j>(
        &self,
        obj: &'j [(String, Json)],
        at: &Loc<'_>,
        key: &str,
    ) -> Result<&'j str, Rejection> {
        let s = self.str(obj, at, key)?;
        if s.is_empty() {
            return Err(malformed(&at.key(key), "must not be empty"));
        }
        Ok(s)
    }

    /// An optional string member (absent → `None`; present but not a string → error).
    pub(crate) fn opt_str<'j>(
        &self,
        obj: &'j [(String, Json)],
        at: &Loc<'_>,
        key: &str,
    ) -> Result<Option<&'j str>, Rejection> {
        match member(obj, key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| self.malformed(&at.key(key), "a string", v)),
        }
    }

    /// A required integer member in `min..=i64::MAX`.
    pub(crate) fn int(
        &self,
        obj: &[(String, Json)],
        at: &Loc<'_>,
        key: &str,
        min: i64,
    ) -> Result<i64, Rejection> {
        let v = self.req(obj, at, key)?;
        self.int_value(v, &at.key(key), min)
    }

    /// An optional integer member in `min..=i64::MAX`.
    pub(crate) fn opt_int(
        &self,
        obj: &[(String, Json)],
        at: &Loc<'_>,
        key: &str,
        min: i64,
    ) -> Result<Option<i64>, Rejection> {
        match member(obj, key) {
            None => Ok(None),
            Some(v) => self.int_value(v, &at.key(key), min).map(Some),
        }
    }

    fn int_value(&self, v: &Json, loc: &Loc<'_>, min: i64) -> Result<i64, Rejection> {
        match v.as_i64() {
            Some(i) if i >= min => Ok(i),
            Some(i) => Err(malformed(loc, &format!("must be ≥ {min}, got {i}"))),
            None => Err(self.malformed(loc, &format!("an integer ≥ {min}"), v)),
        }
    }

    /// A required boolean member.
    pub(crate) fn bool(
        &self,
        obj: &[(String, Json)],
        at: &Loc<'_>,
        key: &str,
    ) -> Result<bool, Rejection> {
        let v = self.req(obj, at, key)?;
        v.as_bool()
            .ok_or_else(|| self.malformed(&at.key(key), "a boolean", v))
    }

    /// A required object member.
    pub(crate) fn obj<'j>(
        &self,
        obj: &'j [(String, Json)],
        at: &Loc<'_>,
        key: &str,
    ) -> Result<&'j [(String, Json)], Rejection> {
        let v = self.req(obj, at, key)?;
        self.obj_value(v, &at.key(key))
    }

    /// `v` as an object.
    pub(crate) fn obj_value<'j>(
        &self,
        v: &'j Json,
        loc: &Loc<'_>,
    ) -> Result<&'j [(String, Json)], Rejection> {
        v.as_object()
            .ok_or_else(|| self.malformed(loc, "an object", v))
    }

    /// A required array member.
    pub(crate) fn array<'j>(
        &self,
        obj: &'j [(String, Json)],
        at: &Loc<'_>,
        key: &str,
    ) -> Result<&'j [Json], Rejection> {
        let v = self.req(obj, at, key)?;
        v.as_array()
            .ok_or_else(|| self.malformed(&at.key(key), "an array", v))
    }

    /// A required member holding a 64-character lowercase hex hash (§3.4).
    pub(crate) fn hash<'j>(
        &self,
        obj: &'j [(String, Json)],
        at: &Loc<'_>,
        key: &str,
    ) -> Result<&'j str, Rejection> {
        let s = self.str(obj, at, key)?;
        if !crate::ids::is_hash(s) {
            return Err(malformed(&at.key(key), "not 64 lowercase hex characters"));
        }
        Ok(s)
    }

    /// A required RFC 3339 member, in UTC.
    pub(crate) fn time(
        &self,
        obj: &[(String, Json)],
        at: &Loc<'_>,
        key: &str,
    ) -> Result<::time::OffsetDateTime, Rejection> {
        let s = self.str(obj, at, key)?;
        crate::time::parse_rfc3339(s)
            .map_err(|_| malformed(&at.key(key), &format!("{s:?} is not RFC 3339")))
    }

    /// The optional `schema_columns` member (§6.7).
    pub(crate) fn schema_columns(
        &self,
        obj: &[(String, Json)],
    ) -> Result<Option<SchemaColumns>, Rejection> {
        let Some(v) = member(obj, "schema_columns") else {
            return Ok(None);
        };
        let at = Loc::Root.key("schema_columns");
        let sc = self.obj_value(v, &at)?;
        let table_name = self.str(sc, &at, "table_name")?.to_owned();
        let cols_at = at.key("columns");
        let mut columns = Vec::new();
        for (i, c) in self.array(sc, &at, "columns")?.iter().enumerate() {
            let c_at = cols_at.index(i);
            let c = self.obj_value(c, &c_at)?;
            let aff = self.str(c, &c_at, "decl_type_affinity")?;
            let decl_type_affinity = Affinity::parse(aff).ok_or_else(|| {
                malformed(
                    &c_at.key("decl_type_affinity"),
                    &format!("unknown affinity {aff:?}"),
                )
            })?;
            let ordinal = self.int(c, &c_at, "pk_ordinal", 0)?;
            let pk_ordinal = u32::try_from(ordinal)
                .map_err(|_| malformed(&c_at.key("pk_ordinal"), "out of range"))?;
            columns.push(ColumnInfo {
                name: self.str(c, &c_at, "name")?.to_owned(),
                decl_type_affinity,
                pk_ordinal,
                not_null: self.bool(c, &c_at, "not_null")?,
            });
        }
        Ok(Some(SchemaColumns {
            table_name,
            columns,
        }))
    }
}

/// `malformed_json` naming `loc`.
pub(crate) fn malformed(loc: &Loc<'_>, why: &str) -> Rejection {
    let mut m = loc.to_string();
    let _ = write!(m, ": {why}");
    Rejection::new(RejectionCode::MalformedJson, m)
}

fn number_rejection(b: &BadNumber) -> Rejection {
    let path = if b.path.is_empty() {
        "payload"
    } else {
        b.path.as_str()
    };
    Rejection::new(
        RejectionCode::InvalidNumberEncoding,
        format!("{path}: {}", b.kind),
    )
}
