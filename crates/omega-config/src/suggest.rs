//! "Did you mean …?" for unknown keys and values.

/// The candidate closest to `input`, if it is close enough to be a likely typo.
///
/// Uses the optimal-string-alignment distance (a transposition counts as one edit), compared
/// ASCII case-insensitively; a candidate is offered when at most a third of the longer word
/// (and at least one character) differs, or when one word is a prefix of the other.
pub fn closest<'a, I>(input: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let lower = input.to_ascii_lowercase();
    let mut best: Option<(usize, &'a str)> = None;
    for cand in candidates {
        let c = cand.to_ascii_lowercase();
        let dist = strsim::osa_distance(&lower, &c);
        let longest = lower.chars().count().max(c.chars().count());
        let close = dist <= (longest / 3).max(1)
            || (lower.len() >= 3 && (c.starts_with(&lower) || lower.starts_with(&c)));
        if close && best.is_none_or(|(d, _)| dist < d) {
            best = Some((dist, cand));
        }
    }
    best.map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::closest;

    #[test]
    fn a_doubled_letter_suggests_the_key() {
        let keys = ["source_db_path", "flush_interval", "table_strategies"];
        assert_eq!(closest("flush_intervall", keys), Some("flush_interval"));
    }

    #[test]
    fn a_transposition_suggests_the_key() {
        assert_eq!(
            closest("stratgey", ["strategy", "ts_column"]),
            Some("strategy")
        );
    }

    #[test]
    fn case_differences_suggest_the_value() {
        assert_eq!(closest("Rows", ["rows", "telemetry"]), Some("rows"));
    }

    #[test]
    fn something_unrelated_suggests_nothing() {
        assert_eq!(closest("banana", ["strategy", "ts_column"]), None);
    }
}
