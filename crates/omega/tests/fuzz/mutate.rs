//! Structural mutations of a JSON document (`serde_json::Value`) and raw-token splices that
//! a `Value` cannot hold (out-of-range integers, NaN, leading zeros, duplicate keys).

use proptest::prelude::*;
use serde_json::Value;

/// Tokens a JSON tree cannot represent, spliced in through a placeholder string.
const RAW: &[&str] = &[
    "18446744073709551616",
    "-9223372036854775809",
    "1e999",
    "-1e999",
    "NaN",
    "Infinity",
    "01",
    "1.",
    "-0",
    "1e-400",
    "9223372036854775807",
    "\"\\ud800\"",
];

/// One change to a document.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Removes the node at path index `at` (mod the number of paths).
    Remove(usize),
    /// Replaces the node at `at`.
    Replace(usize, Replacement),
    /// Renames the key at `at` (drops its last character).
    Rename(usize),
    /// Adds `key: value` to the object at or around `at`.
    Add(usize, String, Replacement),
    /// Appends a copy of an array's first element (rows repeated, seqs out of order).
    Duplicate(usize),
}

/// A new value.
#[derive(Debug, Clone)]
pub enum Replacement {
    /// `null`.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// `[]`.
    EmptyArray,
    /// `{}`.
    EmptyObject,
    /// A raw token from [`RAW`].
    Raw(usize),
}

impl Replacement {
    fn value(&self) -> Value {
        match self {
            Replacement::Null => Value::Null,
            Replacement::Bool(b) => Value::Bool(*b),
            Replacement::Int(i) => Value::from(*i),
            Replacement::Float(f) => serde_json::Number::from_f64(*f)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            Replacement::Str(s) => Value::String(s.clone()),
            Replacement::EmptyArray => Value::Array(vec![]),
            Replacement::EmptyObject => Value::Object(Default::default()),
            Replacement::Raw(i) => Value::String(format!("@@RAW{}@@", i % RAW.len())),
        }
    }
}

fn replacement() -> impl Strategy<Value = Replacement> {
    prop_oneof![
        Just(Replacement::Null),
        any::<bool>().prop_map(Replacement::Bool),
        prop_oneof![
            Just(0i64),
            Just(-1),
            Just(1),
            Just(4096),
            Just(4097),
            Just(i64::MAX),
            Just(i64::MIN),
            any::<i64>()
        ]
        .prop_map(Replacement::Int),
        prop_oneof![Just(0.5f64), Just(-0.0), Just(1e300), any::<f64>()]
            .prop_map(Replacement::Float),
        prop_oneof![
            Just(String::new()),
            Just("x".to_string()),
            Just("0196b4d0-0000-7000-8000-000000000001".to_string()),
            Just("0196b4d0-0000-4000-8000-000000000001".to_string()),
            Just("2026-01-01T00:00:00Z".to_string()),
            Just("a".repeat(2000)),
            "\\PC{0,12}",
        ]
        .prop_map(Replacement::Str),
        Just(Replacement::EmptyArray),
        Just(Replacement::EmptyObject),
        (0..RAW.len()).prop_map(Replacement::Raw),
    ]
}

/// One mutation.
pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => any::<usize>().prop_map(Mutation::Remove),
        5 => (any::<usize>(), replacement()).prop_map(|(a, r)| Mutation::Replace(a, r)),
        1 => any::<usize>().prop_map(Mutation::Rename),
        2 => (
            any::<usize>(),
            prop_oneof![
                Just("tenant_id".to_string()),
                Just("format_version".to_string()),
                Just("extra".to_string()),
                "[a-z_]{1,12}"
            ],
            replacement()
        )
            .prop_map(|(a, k, r)| Mutation::Add(a, k, r)),
        1 => any::<usize>().prop_map(Mutation::Duplicate),
    ]
}

/// A change to the encoded text.
#[derive(Debug, Clone)]
pub enum TextMutation {
    /// None.
    Keep,
    /// Cuts the text at a fraction (per mille) of its length.
    Truncate(u16),
    /// Repeats the first member of the top-level object (a duplicate key).
    DuplicateFirstKey,
}

/// A text mutation (mostly none).
pub fn text_mutation() -> impl Strategy<Value = TextMutation> {
    prop_oneof![
        8 => Just(TextMutation::Keep),
        1 => (0u16..1000).prop_map(TextMutation::Truncate),
        1 => Just(TextMutation::DuplicateFirstKey),
    ]
}

type Path = Vec<Seg>;

#[derive(Debug, Clone)]
enum Seg {
    Key(String),
    Index(usize),
}

fn paths(v: &Value, here: &mut Path, out: &mut Vec<Path>) {
    out.push(here.clone());
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                here.push(Seg::Key(k.clone()));
                paths(c, here, out);
                here.pop();
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                here.push(Seg::Index(i));
                paths(c, here, out);
                here.pop();
            }
        }
        _ => {}
    }
}

fn at<'a>(v: &'a mut Value, path: &[Seg]) -> Option<&'a mut Value> {
    let mut cur = v;
    for s in path {
        cur = match (s, cur) {
            (Seg::Key(k), Value::Object(m)) => m.get_mut(k)?,
            (Seg::Index(i), Value::Array(a)) => a.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn pick(v: &Value, i: usize) -> Path {
    let mut out = Vec::new();
    paths(v, &mut Vec::new(), &mut out);
    out.swap_remove(i % out.len())
}

/// Applies `m` to `doc`.
pub fn apply(doc: &mut Value, m: &Mutation) {
    match m {
        Mutation::Remove(i) => {
            let p = pick(doc, *i);
            if let Some((last, parent)) = p.split_last()
                && let Some(parent) = at(doc, parent)
            {
                match (last, parent) {
                    (Seg::Key(k), Value::Object(m)) => {
                        m.remove(k);
                    }
                    (Seg::Index(i), Value::Array(a)) => {
                        a.remove(*i);
                    }
                    _ => {}
                }
            }
        }
        Mutation::Replace(i, r) => {
            let p = pick(doc, *i);
            if let Some(node) = at(doc, &p) {
                *node = r.value();
            }
        }
        Mutation::Rename(i) => {
            let p = pick(doc, *i);
            if let Some((Seg::Key(k), parent)) = p.split_last()
                && let Some(Value::Object(m)) = at(doc, parent)
                && let Some(v) = m.remove(k)
            {
                let mut k = k.clone();
                k.pop();
                m.insert(k, v);
            }
        }
        Mutation::Add(i, key, r) => {
            let mut p = pick(doc, *i);
            loop {
                if let Some(Value::Object(m)) = at(doc, &p) {
                    m.insert(key.clone(), r.value());
                    return;
                }
                if p.pop().is_none() {
                    return;
                }
            }
        }
        Mutation::Duplicate(i) => {
            let p = pick(doc, *i);
            if let Some(Value::Array(a)) = at(doc, &p)
                && let Some(first) = a.first().cloned()
            {
                a.push(first);
            }
        }
    }
}

/// The document's text with the raw tokens spliced in and `t` applied.
pub fn render(doc: &Value, t: &TextMutation) -> Vec<u8> {
    let mut s = serde_json::to_string(doc).expect("a JSON value serialises");
    for (i, raw) in RAW.iter().enumerate() {
        s = s.replace(&format!("\"@@RAW{i}@@\""), raw);
    }
    match t {
        TextMutation::Keep => s.into_bytes(),
        TextMutation::Truncate(pm) => {
            let mut b = s.into_bytes();
            b.truncate(b.len() * usize::from(*pm) / 1000);
            b
        }
        TextMutation::DuplicateFirstKey => {
            // `{"k":v,…}` → `{"k":v,"k":v,…}` for a scalar first member.
            if let Some(end) = s[1..].find(',').map(|e| e + 1)
                && s.starts_with('{')
                && !s[1..end].contains(['{', '['])
            {
                let member = s[1..end].to_string();
                s.insert_str(end + 1, &format!("{member},"));
            }
            s.into_bytes()
        }
    }
}
