//! A small writer of compact JSON objects, used by the payload encoders so that they write
//! bytes directly instead of building a tree.

use crate::json::{Json, write_compact, write_integer, write_string};

/// Writes `{"k":v,...}` member by member.
pub(crate) struct ObjectWriter<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> ObjectWriter<'a> {
    pub(crate) fn new(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        ObjectWriter { out, first: true }
    }

    /// Writes the separator and `"key":`, and hands out the buffer for the value.
    pub(crate) fn key(&mut self, key: &str) -> &mut Vec<u8> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        write_string(key, self.out);
        self.out.push(b':');
        self.out
    }

    pub(crate) fn str(&mut self, key: &str, value: &str) {
        write_string(value, self.key(key));
    }

    pub(crate) fn opt_str(&mut self, key: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.str(key, v);
        }
    }

    pub(crate) fn int(&mut self, key: &str, value: i64) {
        write_integer(value, self.key(key));
    }

    pub(crate) fn opt_int(&mut self, key: &str, value: Option<i64>) {
        if let Some(v) = value {
            self.int(key, v);
        }
    }

    pub(crate) fn bool(&mut self, key: &str, value: bool) {
        self.key(key)
            .extend_from_slice(if value { b"true" } else { b"false" });
    }

    pub(crate) fn json(&mut self, key: &str, value: &Json) {
        write_compact(value, self.key(key));
    }

    pub(crate) fn finish(self) {
        self.out.push(b'}');
    }
}

/// Appends `members` to `out` as a compact object.
pub(crate) fn write_members(members: &[(String, Json)], out: &mut Vec<u8>) {
    let mut w = ObjectWriter::new(out);
    for (k, v) in members {
        w.json(k, v);
    }
    w.finish();
}
