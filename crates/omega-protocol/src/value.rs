//! SQLite values and their wire encoding (`protocol.md` §4).

/// One SQLite value, by storage class. This is what the agent reads from the source and what
/// the cloud writes into a mirror; [`SqlValue`] ⇄ JSON is lossless.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    /// NULL → `null`.
    Null,
    /// INTEGER → a JSON integer, exact over the whole i64 range.
    Integer(i64),
    /// REAL → a JSON number with `.` or exponent; ±∞ → `{"$real":"inf"|"-inf"}`. Never NaN.
    Real(f64),
    /// TEXT → a JSON string.
    Text(String),
    /// BLOB → `{"$blob":"<base64>"}`.
    Blob(Vec<u8>),
}
