use proptest::prelude::*;

use super::*;

fn kind_of(input: &str) -> JsonErrorKind {
    parse(input.as_bytes()).expect_err(input).kind
}

fn canonical(input: &str) -> String {
    String::from_utf8(to_canonical_vec(&parse(input.as_bytes()).unwrap())).unwrap()
}

fn real(v: f64) -> String {
    let mut out = Vec::new();
    write_real(v, &mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn integer_tokens_are_exact_over_the_whole_i64_range() {
    assert_eq!(
        parse(b"9223372036854775807").unwrap(),
        Json::Integer(i64::MAX)
    );
    assert_eq!(
        parse(b"-9223372036854775808").unwrap(),
        Json::Integer(i64::MIN)
    );
    assert_eq!(
        parse(b"9007199254740993").unwrap(),
        Json::Integer(9_007_199_254_740_993)
    );
    assert_eq!(parse(b"-0").unwrap(), Json::Integer(0));
}

#[test]
fn integer_tokens_outside_i64_are_number_out_of_range() {
    assert_eq!(
        kind_of("9223372036854775808"),
        JsonErrorKind::NumberOutOfRange
    );
    assert_eq!(
        kind_of("-9223372036854775809"),
        JsonErrorKind::NumberOutOfRange
    );
    assert_eq!(
        kind_of("[123456789012345678901234567890]"),
        JsonErrorKind::NumberOutOfRange
    );
    assert!(
        parse(b"18446744073709551616")
            .unwrap_err()
            .is_number_error()
    );
}

#[test]
fn real_tokens_are_reals_even_when_whole() {
    assert_eq!(parse(b"1.0").unwrap(), Json::Real(1.0));
    assert_eq!(parse(b"1e2").unwrap(), Json::Real(100.0));
    assert_eq!(parse(b"-2.5E-3").unwrap(), Json::Real(-0.0025));
    assert_eq!(parse(b"1e-400").unwrap(), Json::Real(0.0));
}

#[test]
fn real_token_that_overflows_a_double_is_a_number_error() {
    assert_eq!(kind_of("1e309"), JsonErrorKind::RealOverflow);
    assert_eq!(kind_of("-1.8e308"), JsonErrorKind::RealOverflow);
    assert!(parse(b"1e309").unwrap_err().is_number_error());
}

#[test]
fn nan_and_infinity_tokens_are_number_errors() {
    for t in ["NaN", "Infinity", "-Infinity", "[1,NaN]"] {
        assert_eq!(kind_of(t), JsonErrorKind::NonFiniteNumber, "{t}");
    }
    assert_eq!(kind_of("Nope"), JsonErrorKind::UnexpectedChar('N'));
    assert_eq!(kind_of("-Inf"), JsonErrorKind::UnexpectedChar('I'));
}

#[test]
fn number_syntax_outside_rfc_8259_is_rejected() {
    for t in [
        "01", "1.", ".5", "-", "1e", "1e+", "+1", "0x1", "1.e5", "--1",
    ] {
        let e = parse(t.as_bytes()).expect_err(t);
        assert!(!e.is_number_error(), "{t}: {e}");
    }
}

#[test]
fn duplicate_keys_are_rejected_in_small_and_large_objects() {
    assert_eq!(
        kind_of(r#"{"a":1,"b":2,"a":3}"#),
        JsonErrorKind::DuplicateKey("a".into())
    );
    let mut big: String = (0..40).map(|i| format!("\"k{i}\":{i},")).collect();
    big.push_str("\"k7\":0");
    assert_eq!(
        kind_of(&format!("{{{big}}}")),
        JsonErrorKind::DuplicateKey("k7".into())
    );
    // Same key in different objects is fine; escapes are compared after decoding.
    assert!(parse(br#"{"a":{"a":1},"b":{"a":2}}"#).is_ok());
    assert_eq!(
        kind_of(r#"{"a":1,"\u0061":2}"#),
        JsonErrorKind::DuplicateKey("a".into())
    );
}

#[test]
fn nesting_up_to_the_depth_limit_is_accepted_and_deeper_is_rejected() {
    let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
    assert!(parse(ok.as_bytes()).is_ok());
    let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
    assert_eq!(kind_of(&deep), JsonErrorKind::TooDeep);
    let huge = "[".repeat(1_000_000);
    assert_eq!(kind_of(&huge), JsonErrorKind::TooDeep);
}

#[test]
fn invalid_utf8_and_byte_order_mark_are_rejected() {
    let e = parse(b"{\"a\":\"\xff\"}").unwrap_err();
    assert_eq!((e.kind, e.offset), (JsonErrorKind::InvalidUtf8, 6));
    assert_eq!(
        kind_of("\u{feff}{}"),
        JsonErrorKind::UnexpectedChar('\u{feff}')
    );
}

#[test]
fn string_escapes_decode_and_bad_ones_are_rejected() {
    let v = parse(br#""a\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00z""#).unwrap();
    assert_eq!(
        v,
        Json::String("a\"\\/\u{8}\u{c}\n\r\t\u{e9}\u{1f600}z".into())
    );
    for t in [
        r#""\ud800""#,
        r#""\udc00""#,
        r#""\ud800\u0041""#,
        r#""\x""#,
        r#""\u12g4""#,
    ] {
        assert_eq!(kind_of(t), JsonErrorKind::InvalidEscape, "{t}");
    }
    assert_eq!(kind_of("\"a\u{1}\""), JsonErrorKind::ControlCharacter);
    assert_eq!(kind_of("\"abc"), JsonErrorKind::UnexpectedEnd);
}

#[test]
fn structure_errors_are_reported() {
    assert_eq!(kind_of(""), JsonErrorKind::UnexpectedEnd);
    assert_eq!(kind_of("   "), JsonErrorKind::UnexpectedEnd);
    assert_eq!(kind_of("{} x"), JsonErrorKind::TrailingCharacters);
    assert_eq!(kind_of("{\"a\" 1}"), JsonErrorKind::UnexpectedChar('1'));
    assert_eq!(kind_of("[1,]"), JsonErrorKind::UnexpectedChar(']'));
    assert_eq!(kind_of("{\"a\":1,}"), JsonErrorKind::UnexpectedChar('}'));
    assert_eq!(kind_of("{a:1}"), JsonErrorKind::UnexpectedChar('a'));
    assert_eq!(kind_of("tru"), JsonErrorKind::UnexpectedChar('t'));
}

#[test]
fn object_members_keep_document_order() {
    let v = parse(b" { \"z\" : 1 ,\n\"a\":\t[true,false,null] } ").unwrap();
    let keys: Vec<&str> = v
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(keys, ["z", "a"]);
    assert_eq!(v.get("a").unwrap().as_array().unwrap().len(), 3);
}

#[test]
fn lenient_parse_replaces_bad_numbers_by_null_and_records_their_paths() {
    let doc = br#"{"a":1,"rows":[{"x":1e999},{"y":[NaN,-Infinity]}],"n":99999999999999999999}"#;
    let l = parse_lenient(doc).unwrap();
    let paths: Vec<&str> = l.bad_numbers.iter().map(|b| b.path.as_str()).collect();
    assert_eq!(paths, ["rows[0].x", "rows[1].y[0]", "rows[1].y[1]", "n"]);
    assert_eq!(l.bad_numbers[0].kind, JsonErrorKind::RealOverflow);
    assert_eq!(l.bad_numbers[3].kind, JsonErrorKind::NumberOutOfRange);
    assert!(l.value.get("n").unwrap().is_null());
    assert_eq!(l.value.get("a"), Some(&Json::Integer(1)));
}

#[test]
fn lenient_parse_still_rejects_syntax_errors_and_duplicates() {
    assert!(
        !parse_lenient(br#"{"a":1e999,"b":}"#)
            .unwrap_err()
            .is_number_error()
    );
    let e = parse_lenient(br#"{"a":1e999,"a":1}"#).unwrap_err();
    assert_eq!(e.kind, JsonErrorKind::DuplicateKey("a".into()));
    assert!(parse_lenient(b"{\"a\":1}").unwrap().bad_numbers.is_empty());
}

#[test]
fn canonical_writer_sorts_keys_by_utf8_bytes_at_every_level() {
    assert_eq!(
        canonical(r#"{"név":"x","Zed":2}"#),
        r#"{"Zed":2,"név":"x"}"#
    );
    assert_eq!(
        canonical(r#"{"b":[{"d":1,"c":2}],"a":{}}"#),
        r#"{"a":{},"b":[{"c":2,"d":1}]}"#
    );
    // U+10000 sorts after U+FFFF in UTF-8 byte order (not in UTF-16 order).
    assert_eq!(
        canonical("{\"\u{10000}\":1,\"\u{ffff}\":2}"),
        "{\"\u{ffff}\":2,\"\u{10000}\":1}"
    );
}

#[test]
fn canonical_writer_escapes_exactly_as_section_5_3_says() {
    let s: String = (0u8..0x20)
        .map(char::from)
        .chain("\"\\/\u{7f}é😀".chars())
        .collect();
    let mut out = Vec::new();
    write_string(&s, &mut out);
    let expected = concat!(
        r#""\u0000\u0001\u0002\u0003\u0004\u0005\u0006\u0007\b\t\n\u000b\f\r\u000e\u000f"#,
        r#"\u0010\u0011\u0012\u0013\u0014\u0015\u0016\u0017\u0018\u0019\u001a\u001b\u001c"#,
        "\\u001d\\u001e\\u001f\\\"\\\\/\u{7f}é😀\""
    );
    assert_eq!(String::from_utf8(out).unwrap(), expected);
}

#[test]
fn reals_are_written_in_the_form_of_section_5_4() {
    let cases: &[(f64, &str)] = &[
        (21.0, "21.0"),
        (0.1, "0.1"),
        (0.00001, "0.00001"),
        (-0.0, "-0.0"),
        (0.0, "0.0"),
        (1e16, "1e+16"),
        (1.5e-7, "1.5e-7"),
        (1.234e33, "1.234e+33"),
        (5e-324, "5e-324"),
        (9_999_999_999_999_998.0, "9999999999999998.0"),
        (9.999_999_999_999_999e-6, "9.999999999999999e-6"),
        (-123.456, "-123.456"),
        (f64::MAX, "1.7976931348623157e+308"),
        (f64::MIN_POSITIVE, "2.2250738585072014e-308"),
        (1.2345678901234568e17, "1.2345678901234568e+17"),
        (-1e100, "-1e+100"),
    ];
    for &(v, s) in cases {
        assert_eq!(real(v), s, "{v:?}");
        assert_eq!(parse(s.as_bytes()).unwrap(), Json::Real(v));
    }
    assert_eq!(real(f64::INFINITY), "null");
    assert_eq!(real(f64::NAN), "null");
}

#[test]
fn integers_are_written_in_plain_decimal() {
    let v = Json::Array(vec![
        Json::Integer(i64::MIN),
        Json::Integer(0),
        Json::Integer(i64::MAX),
    ]);
    assert_eq!(
        to_canonical_vec(&v),
        b"[-9223372036854775808,0,9223372036854775807]"
    );
}

// ---- property tests ----

fn arb_key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{0,3}",
        any::<String>().prop_map(|s| s.chars().take(6).collect()),
    ]
}

fn arb_real() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |v| v.is_finite()),
        (-1e6f64..1e6).prop_map(|v| (v * 100.0).round() / 100.0),
        Just(-0.0),
        Just(5e-324),
    ]
}

pub(crate) fn arb_json() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        any::<i64>().prop_map(Json::Integer),
        arb_real().prop_map(Json::Real),
        any::<String>().prop_map(Json::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Json::Array),
            prop::collection::vec((arb_key(), inner), 0..6).prop_map(|members| {
                let mut seen = std::collections::HashSet::new();
                Json::Object(
                    members
                        .into_iter()
                        .filter(|(k, _)| seen.insert(k.clone()))
                        .collect(),
                )
            }),
        ]
    })
}

/// Reorders every object's members with a simple seeded shuffle.
fn permute(v: &Json, seed: &mut u64) -> Json {
    match v {
        Json::Array(a) => Json::Array(a.iter().map(|x| permute(x, seed)).collect()),
        Json::Object(m) => {
            let mut m: Vec<(String, Json)> = m
                .iter()
                .map(|(k, x)| (k.clone(), permute(x, seed)))
                .collect();
            for i in (1..m.len()).rev() {
                *seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                m.swap(i, (*seed >> 33) as usize % (i + 1));
            }
            Json::Object(m)
        }
        other => other.clone(),
    }
}

fn to_serde(v: &Json) -> serde_json::Value {
    match v {
        Json::Null => serde_json::Value::Null,
        Json::Bool(b) => (*b).into(),
        Json::Integer(i) => (*i).into(),
        Json::Real(r) => serde_json::Number::from_f64(*r).unwrap().into(),
        Json::String(s) => s.clone().into(),
        Json::Array(a) => a.iter().map(to_serde).collect(),
        Json::Object(m) => m.iter().map(|(k, x)| (k.clone(), to_serde(x))).collect(),
    }
}

fn same_as_serde(ours: &Json, theirs: &serde_json::Value) -> bool {
    use serde_json::Value as V;
    match (ours, theirs) {
        (Json::Null, V::Null) => true,
        (Json::Bool(a), V::Bool(b)) => a == b,
        (Json::Integer(a), V::Number(n)) => n.as_i64() == Some(*a),
        (Json::Real(a), V::Number(n)) => {
            let b = n.as_f64().unwrap_or(f64::NAN);
            a == &b || (a - b).abs() <= a.abs() * 1e-15
        }
        (Json::String(a), V::String(b)) => a == b,
        (Json::Array(a), V::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_as_serde(x, y))
        }
        (Json::Object(a), V::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(k, x)| b.get(k).is_some_and(|y| same_as_serde(x, y)))
        }
        _ => false,
    }
}

proptest! {
    #[test]
    fn parsing_compact_output_gives_back_the_same_tree(v in arb_json()) {
        let bytes = to_compact_vec(&v);
        prop_assert_eq!(parse(&bytes).unwrap(), v.clone());
        let canon = to_canonical_vec(&v);
        prop_assert_eq!(to_canonical_vec(&parse(&canon).unwrap()), canon);
    }

    #[test]
    fn canonical_output_is_stable_under_permutation_of_object_keys(
        v in arb_json(), seed in any::<u64>()
    ) {
        let mut s = seed;
        prop_assert_eq!(to_canonical_vec(&permute(&v, &mut s)), to_canonical_vec(&v));
    }

    #[test]
    fn serde_json_reads_our_output_as_the_same_document(v in arb_json()) {
        let theirs: serde_json::Value = serde_json::from_slice(&to_compact_vec(&v)).unwrap();
        prop_assert!(same_as_serde(&v, &theirs), "{:?} vs {:?}", v, theirs);
    }

    #[test]
    fn we_read_serde_json_output_as_the_same_document(v in arb_json()) {
        let text = serde_json::to_vec_pretty(&to_serde(&v)).unwrap();
        let ours = parse(&text).unwrap();
        prop_assert_eq!(to_canonical_vec(&ours), to_canonical_vec(&v));
    }

    #[test]
    fn random_bytes_never_panic_the_parser(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse(&bytes);
        let _ = parse_lenient(&bytes);
    }

    #[test]
    fn random_json_like_text_never_panics_and_agrees_with_lenient(
        text in r#"[\[\]{}":,0-9eE.+\- a-zNIfIty\\u]{0,64}"#
    ) {
        let strict = parse(text.as_bytes());
        let lenient = parse_lenient(text.as_bytes());
        match (strict, lenient) {
            (Ok(a), Ok(b)) => prop_assert!(b.bad_numbers.is_empty() && a == b.value),
            (Ok(_), Err(e)) => prop_assert!(false, "lenient rejected what strict accepted: {}", e),
            (Err(a), Ok(b)) => prop_assert!(a.is_number_error() && !b.bad_numbers.is_empty()),
            (Err(a), Err(b)) => prop_assert!(a == b || (a.is_number_error() && !b.is_number_error())),
        }
    }
}
