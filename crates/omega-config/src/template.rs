//! `{{ NAME }}` templating over the whole text (`agent.md` §2.1 rule 2).

use crate::env::EnvLookup;
use crate::error::{ConfigError, ConfigErrors, ErrorKind};

/// A variable used by a `{{ NAME }}` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateVar {
    /// The variable name.
    pub name: String,
    /// The 1-based line of its first use.
    pub line: usize,
}

/// The text after templating and the variables it used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The text with every `{{ NAME }}` replaced by the variable's value.
    pub text: String,
    /// Each variable used, once, in order of first use. Values are not kept (they may be secret).
    pub vars: Vec<TemplateVar>,
}

/// Replaces every `{{ NAME }}` (NAME = `[A-Za-z_][A-Za-z0-9_]*`, spaces inside the braces
/// optional) by the value of variable NAME, verbatim, everywhere in `text` (comments included).
/// Anything else, such as `{device_id}` or `{{ not a name }}`, is left untouched.
///
/// A variable that is unset is an error naming it and the line of its first use; every unset
/// variable is reported once.
/// A variable set to the empty string is inserted as the empty string.
pub fn render(text: &str, file: &str, env: EnvLookup<'_>) -> Result<Rendered, ConfigErrors> {
    let mut out = String::with_capacity(text.len());
    let mut vars: Vec<TemplateVar> = Vec::new();
    let mut errors = Vec::new();
    let mut rest = text;
    let mut line = 1;
    while let Some(start) = rest.find("{{") {
        let (before, from) = rest.split_at(start);
        line += before.matches('\n').count();
        out.push_str(before);
        match parse_placeholder(from) {
            Some((name, len)) => {
                let first_use = !vars.iter().any(|v| v.name == name);
                match env(name) {
                    Some(value) => out.push_str(&value),
                    None if !first_use => {}
                    None => errors.push(
                        ConfigError::new(
                            file,
                            "",
                            ErrorKind::UnsetVariable {
                                name: name.to_owned(),
                            },
                        )
                        .at_line(line),
                    ),
                }
                if first_use {
                    vars.push(TemplateVar {
                        name: name.to_owned(),
                        line,
                    });
                }
                rest = &from[len..];
            }
            None => {
                out.push('{');
                rest = &from[1..];
            }
        }
    }
    out.push_str(rest);
    match ConfigErrors::from_vec(errors) {
        Some(errors) => Err(errors),
        None => Ok(Rendered { text: out, vars }),
    }
}

/// Parses `{{ NAME }}` at the start of `s`: the name and the length of the whole placeholder.
fn parse_placeholder(s: &str) -> Option<(&str, usize)> {
    let inner = s.strip_prefix("{{")?;
    let trimmed = inner.trim_start_matches(' ');
    let lead = inner.len() - trimmed.len();
    let name_len = trimmed
        .char_indices()
        .find(|&(i, c)| !(c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map_or(trimmed.len(), |(i, _)| i);
    if name_len == 0 {
        return None;
    }
    let name = &trimmed[..name_len];
    let after = &trimmed[name_len..];
    let after_trim = after.trim_start_matches(' ');
    let trail = after.len() - after_trim.len();
    after_trim.strip_prefix("}}")?;
    Some((name, 2 + lead + name_len + trail + 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "DEV" => Some("press-01".into()),
            "EMPTY" => Some(String::new()),
            "A1" => Some("x".into()),
            _ => None,
        }
    }

    #[test]
    fn placeholders_with_and_without_spaces_are_replaced() {
        let r = render("a: {{DEV}}\nb: {{ DEV }}\nc: {{   A1}}\n", "c.yaml", &env).unwrap();
        assert_eq!(r.text, "a: press-01\nb: press-01\nc: x\n");
        assert_eq!(
            r.vars,
            vec![
                TemplateVar {
                    name: "DEV".into(),
                    line: 1
                },
                TemplateVar {
                    name: "A1".into(),
                    line: 3
                }
            ]
        );
    }

    #[test]
    fn comments_are_templated_too() {
        let r = render("# {{ DEV }}\n", "c.yaml", &env).unwrap();
        assert_eq!(r.text, "# press-01\n");
    }

    #[test]
    fn other_braces_are_left_untouched() {
        let t = "root: omega/{device_id}\nx: {{ not a name }}\ny: {{9X}}\nz: {{ DEV\n{{{DEV}}}";
        let r = render(t, "c.yaml", &env).unwrap();
        assert_eq!(
            r.text,
            "root: omega/{device_id}\nx: {{ not a name }}\ny: {{9X}}\nz: {{ DEV\n{press-01}"
        );
    }

    #[test]
    fn an_unset_variable_is_an_error_naming_it_and_its_line() {
        let err = render(
            "a: 1\n\nb: {{ NOPE }}\nc: {{ NOPE2 }} {{NOPE}}\n",
            "c.yaml",
            &env,
        )
        .unwrap_err();
        assert_eq!(err.errors().len(), 2);
        assert_eq!(
            err.first().to_string(),
            "c.yaml: line 3: variable `NOPE` is not set (used as `{{ NOPE }}`)"
        );
        assert_eq!(err.errors()[1].line(), Some(4));
    }

    #[test]
    fn an_empty_variable_inserts_nothing() {
        assert_eq!(render("a: '{{EMPTY}}'", "c", &env).unwrap().text, "a: ''");
    }

    #[test]
    fn values_are_inserted_verbatim_and_not_rescanned() {
        let env = |n: &str| (n == "V").then(|| "{{ V }}: \"q\"".to_owned());
        assert_eq!(render("{{V}}", "c", &env).unwrap().text, "{{ V }}: \"q\"");
    }

    #[test]
    fn non_ascii_text_around_placeholders_survives() {
        let r = render("naïve: {{DEV}} é", "c", &env).unwrap();
        assert_eq!(r.text, "naïve: press-01 é");
    }
}
