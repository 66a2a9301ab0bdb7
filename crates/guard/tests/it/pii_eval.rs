//! The labelled PII set: coverage requirements on the data, then precision / recall of
//! the built-in detector (printed as a markdown table; run with `--nocapture`).

use std::collections::BTreeMap;

use guard::{evaluate, load_pii_eval, Detector, PiiConfig, PiiKind};

#[test]
fn dataset_covers_every_kind_and_has_near_misses() {
    let lines = load_pii_eval().expect("bundled set parses");
    let mut per_kind: BTreeMap<PiiKind, usize> = BTreeMap::new();
    for l in &lines {
        for s in &l.spans {
            *per_kind.entry(s.kind.clone()).or_insert(0) += 1;
        }
    }
    let total: usize = per_kind.values().sum();
    assert!(total >= 200, "only {total} gold spans");
    for k in PiiKind::BUILTIN {
        let n = per_kind.get(&k).copied().unwrap_or(0);
        assert!(n >= 15, "only {n} spans of {k}");
    }
    let near: Vec<_> = lines.iter().filter_map(|l| l.near_miss.clone()).collect();
    assert!(near.len() >= 60, "only {} near-miss lines", near.len());
    for k in [
        PiiKind::CreditCard,
        PiiKind::Phone,
        PiiKind::IpAddress,
        PiiKind::Iban,
        PiiKind::Ssn,
        PiiKind::Secret,
        PiiKind::DateOfBirth,
    ] {
        assert!(near.iter().filter(|n| **n == k).count() >= 5, "few near misses for {k}");
    }
}

#[test]
fn detector_meets_precision_and_recall_bars() {
    let lines = load_pii_eval().expect("bundled set parses");
    let d = Detector::new(PiiConfig::default()).expect("default detector");
    let r = evaluate(&d, &lines);
    eprintln!("\n{}", r.to_markdown());
    for m in &r.mismatches {
        eprintln!(
            "  line {}: {} {} {:?}",
            m.line,
            if m.spurious { "FP" } else { "FN" },
            m.kind,
            m.text
        );
    }
    assert!(r.overall.precision() >= 0.95, "precision {:.3}", r.overall.precision());
    assert!(r.overall.recall() >= 0.95, "recall {:.3}", r.overall.recall());
    for (k, s) in &r.per_kind {
        assert!(s.recall() >= 0.9, "{k} recall {:.3}", s.recall());
    }
    assert_eq!(
        r.near_miss_failures, 0,
        "near-miss lines reported their near-missed kind"
    );
}
