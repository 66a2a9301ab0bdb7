//! Inputs built to blow up time, memory or the stack stay bounded. Time limits are
//! generous (5 s on a slow CI core) and only catch runaway behaviour.

use std::time::{Duration, Instant};

use guard::{
    check_output, CustomRecognizer, Detector, GuardError, Mode, OutputGuard, OutputPolicy, PiiConfig, Policy,
    Violation, MAX_JSON_DEPTH,
};
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(5);
const MB: usize = 1 << 20;

fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let out = f();
    let took = t.elapsed();
    eprintln!("{what}: {took:?}");
    assert!(took < LIMIT, "{what} took {took:?}");
    out
}

fn repeat_to(unit: &str, bytes: usize) -> String {
    unit.repeat(bytes / unit.len() + 1)[..bytes].to_string()
}

#[test]
fn one_megabyte_inputs_are_scanned_in_bounded_time() {
    let d = Detector::new(PiiConfig::default()).unwrap();
    let cases = [
        ("letters", repeat_to("a", MB)),
        ("digits", repeat_to("4", MB)),
        ("digit groups", repeat_to("4242 ", MB)),
        ("dotted", repeat_to("1.", MB)),
        ("colons", repeat_to("a:", MB)),
        ("at signs", repeat_to("a@", MB)),
        ("dashes", repeat_to("1-", MB)),
        ("token-ish", repeat_to("aB3-", MB)),
        ("emails", repeat_to("x@y.io ", MB)),
        ("dob words", repeat_to("born 12/03/1985 ", MB)),
    ];
    for (name, text) in cases {
        let spans = timed(name, || d.detect(&text));
        for w in spans.windows(2) {
            assert!(w[0].end <= w[1].start, "{name}: overlapping spans");
        }
        if name == "emails" {
            let n = spans.len();
            assert!(n + 1 >= MB / 7 && n <= MB / 7 + 1, "every complete email found: {n}");
        }
    }
    let text = repeat_to("call +44 20 7946 0958 or mail ann@x.org; ", MB);
    let r = timed("redact 1 MB", || {
        d.apply(&text, &Policy::new(Mode::Pseudonymize)).unwrap()
    });
    assert_eq!(r.vault.map(|v| v.len()), Some(2));
}

#[test]
fn deeply_nested_json_is_rejected_before_parsing() {
    let g = OutputGuard::new(OutputPolicy {
        json_schema: Some(json!({"type": "array"})),
        ..Default::default()
    })
    .unwrap();
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let v = timed("100k-deep JSON", || g.check(&deep, None));
    assert_eq!(
        v,
        vec![Violation::TooDeep {
            max_depth: MAX_JSON_DEPTH
        }]
    );
    let objects = "{\"a\":".repeat(100_000);
    assert_eq!(
        g.check(&objects, None),
        vec![Violation::TooDeep {
            max_depth: MAX_JSON_DEPTH
        }]
    );
    let ok = format!("{}{}", "[".repeat(MAX_JSON_DEPTH), "]".repeat(MAX_JSON_DEPTH));
    assert!(g.check(&ok, None).is_empty());
}

#[test]
fn regex_bomb_strings_against_custom_and_banned_patterns() {
    // Classic catastrophic-backtracking shapes; the `regex` crate runs them in linear time.
    let d = Detector::new(PiiConfig {
        custom: vec![CustomRecognizer {
            name: "bomb".into(),
            pattern: r"(a+)+$".into(),
        }],
        ..Default::default()
    })
    .unwrap();
    let text = format!("{}!", "a".repeat(100_000));
    let spans = timed("(a+)+$ on 100k", || d.detect(&text));
    assert!(spans.is_empty());
    let policy = OutputPolicy {
        banned_patterns: vec![r"(x+x+)+y".into(), r"(\w+\s?)+$".into()],
        ..Default::default()
    };
    let out = format!("{} #", "x".repeat(MB / 2));
    let v = timed("banned patterns on 512 KB", || {
        check_output(&out, &policy, None).unwrap()
    });
    assert!(v.is_empty(), "{v:?}");
}

#[test]
fn broken_or_huge_custom_patterns_are_clear_errors() {
    let e = Detector::new(PiiConfig {
        custom: vec![CustomRecognizer {
            name: "order_ref".into(),
            pattern: r"ORD-(\d{4}".into(),
        }],
        ..Default::default()
    })
    .unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with("invalid pattern for order_ref:"), "{msg}");
    assert!(msg.contains("unclosed group"), "{msg}");
    let e = Detector::new(PiiConfig {
        custom: vec![CustomRecognizer {
            name: "huge".into(),
            pattern: r"\w{1000}\w{1000}\w{1000}".into(),
        }],
        ..Default::default()
    })
    .unwrap_err();
    assert!(matches!(e, GuardError::InvalidPattern { .. }), "{e}");
}

#[test]
fn huge_output_checks_are_bounded() {
    let policy = OutputPolicy {
        max_chars: Some(1000),
        banned_patterns: vec!["(?i)password".into()],
        json_schema: Some(json!({"type": "object"})),
        pii: true,
        ..Default::default()
    };
    let out = repeat_to("{\"k\": \"4242 4242 4242 4242\"} ", MB);
    let v = timed("1 MB output", || check_output(&out, &policy, None).unwrap());
    assert!(matches!(v[0], Violation::TooLong { max: 1000, .. }));
    assert!(v.iter().any(|x| matches!(x, Violation::InvalidJson { .. })));
    assert!(v.iter().any(|x| matches!(x, Violation::Pii { .. })));
}
