//! SQL text helpers shared by every module that writes statements.

/// Quotes an identifier for SQLite: wrapped in `"` with inner `"` doubled. Safe for every
/// name SQLite can store (keywords, spaces, quotes, non-ASCII).
pub fn quote_ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for ch in name.chars() {
        if ch == '"' {
            out.push('"');
        }
        out.push(ch);
    }
    out.push('"');
    out
}

/// Quotes a string literal for SQLite: wrapped in `'` with inner `'` doubled.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_with_quotes_are_doubled() {
        assert_eq!(quote_ident(r#"a"b"#), r#""a""b""#);
        assert_eq!(quote_ident("order"), r#""order""#);
        assert_eq!(quote_ident("naïve table"), "\"naïve table\"");
    }

    #[test]
    fn literals_with_apostrophes_are_doubled() {
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
