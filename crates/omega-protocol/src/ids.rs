//! Identifiers (`protocol.md` §3.4, §3.5): UUIDv7 (`batch_id`, `journal_epoch`, `snapshot.id`,
//! `control_id`) and SHA-256 hex hashes (`schema_hash`, `source_pk_hash`).

use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::{NoContext, Timestamp, Uuid};

/// Whether `s` is a UUIDv7 in the 36-character hyphenated form: version nibble `7`, RFC 9562
/// variant (`10xx`), hex digits of either case.
pub fn is_uuid_v7(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 36 {
        return false;
    }
    for (i, &c) in b.iter().enumerate() {
        let ok = match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        };
        if !ok {
            return false;
        }
    }
    b[14] == b'7' && matches!(b[19], b'8' | b'9' | b'a' | b'b' | b'A' | b'B')
}

/// `s` lowercased, when it is a UUIDv7 ([`is_uuid_v7`]). Receivers compare UUIDs lowercase.
pub fn normalize_uuid_v7(s: &str) -> Option<String> {
    is_uuid_v7(s).then(|| s.to_ascii_lowercase())
}

/// A new UUIDv7 from the current time, lowercase.
pub fn new_v7() -> String {
    Uuid::now_v7().to_string()
}

/// The milliseconds since the Unix epoch embedded in a UUIDv7 (its first 48 bits).
pub fn v7_unix_millis(uuid: &str) -> Option<u64> {
    if !is_uuid_v7(uuid) {
        return None;
    }
    let hex: String = uuid[..13].chars().filter(|c| *c != '-').collect();
    u64::from_str_radix(&hex, 16).ok()
}

/// A new epoch (UUIDv7) that compares greater than `prev` (§3.5), even when the clock went
/// back: its time is max(`now`, time of `prev` + 1 ms), the rest random. A `prev` that is not
/// a UUIDv7 is ignored. Times before 1970 count as 0.
pub fn next_epoch_after(prev: Option<&str>, now: OffsetDateTime) -> String {
    let clock = u64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    let floor = prev
        .and_then(v7_unix_millis)
        .map_or(0, |ms| ms.saturating_add(1));
    let ms = clock.max(floor).min((1 << 48) - 1);
    let ts = Timestamp::from_unix(NoContext, ms / 1000, ((ms % 1000) * 1_000_000) as u32);
    Uuid::new_v7(ts).to_string()
}

/// Whether `s` is a hash of §3.4: 64 lowercase hex characters.
pub fn is_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_v7_needs_version_7_and_rfc_variant_in_hyphenated_form() {
        assert!(is_uuid_v7("019dd351-1a68-7a21-b3c4-5d6e7f809a1b"));
        assert!(is_uuid_v7("019DD351-1A68-7A21-B3C4-5D6E7F809A1B"));
        assert!(!is_uuid_v7("019dd351-1a68-4a21-b3c4-5d6e7f809a1b")); // v4
        assert!(!is_uuid_v7("019dd351-1a68-7a21-c3c4-5d6e7f809a1b")); // variant 110x
        assert!(!is_uuid_v7("019dd3511a687a21b3c45d6e7f809a1b"));
        assert!(!is_uuid_v7("{019dd351-1a68-7a21-b3c4-5d6e7f809a1}"));
        assert!(!is_uuid_v7("019dd351-1a68-7a21-b3c4-5d6e7f809a1g"));
        assert!(!is_uuid_v7("019dd351-1a68-7a21-b3c4-5d6e7f809a1bé"));
        assert_eq!(
            normalize_uuid_v7("019DD351-1A68-7A21-B3C4-5D6E7F809A1B").unwrap(),
            "019dd351-1a68-7a21-b3c4-5d6e7f809a1b"
        );
    }

    #[test]
    fn new_v7_is_a_lowercase_uuid_v7() {
        let id = new_v7();
        assert!(is_uuid_v7(&id));
        assert_eq!(id, id.to_ascii_lowercase());
    }

    #[test]
    fn next_epoch_is_greater_than_prev_even_when_the_clock_went_back() {
        let now = OffsetDateTime::now_utc();
        let first = next_epoch_after(None, now);
        let future = next_epoch_after(Some(&first), now + time::Duration::days(365));
        let after = next_epoch_after(Some(&future), now);
        assert!(is_uuid_v7(&after));
        assert!(after > future && future > first);
        assert_eq!(
            v7_unix_millis(&after),
            v7_unix_millis(&future).map(|m| m + 1)
        );
        for _ in 0..100 {
            let next = next_epoch_after(Some(&first), now);
            assert!(next > first);
        }
    }

    #[test]
    fn next_epoch_uses_the_clock_when_it_is_ahead() {
        let now = OffsetDateTime::from_unix_timestamp(1_777_366_800).unwrap();
        let e = next_epoch_after(Some("019dd31a-2800-7000-8000-000000000001"), now);
        assert_eq!(v7_unix_millis(&e), Some(1_777_366_800_000));
        let bogus = next_epoch_after(Some("not-a-uuid"), now);
        assert_eq!(v7_unix_millis(&bogus), Some(1_777_366_800_000));
    }

    #[test]
    fn hashes_are_64_lowercase_hex_characters() {
        let h = sha256_hex(b"");
        assert_eq!(
            h,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(is_hash(&h));
        assert!(!is_hash(&h.to_ascii_uppercase()));
        assert!(!is_hash(&h[1..]));
    }
}
