//! End-to-end policy application on realistic text: every mode, per-kind overrides,
//! and pseudonymise → model → restore.

use guard::{CustomRecognizer, Detector, GuardError, Mode, PiiConfig, PiiKind, Policy, Vault};

const TICKET: &str = "Hi, I'm jane.doe@example.com (phone +44 20 7946 0958). \
Card 4242 4242 4242 4242 was charged twice; refund to DE89 3704 0044 0532 0130 00. \
Write to jane.doe@example.com, not jd@work.example.";

fn detector() -> Detector {
    Detector::new(PiiConfig::default()).unwrap()
}

#[test]
fn redact_replaces_every_span_with_its_type() {
    let r = detector().apply(TICKET, &Policy::new(Mode::Redact)).unwrap();
    assert_eq!(
        r.text,
        "Hi, I'm [EMAIL] (phone [PHONE]). Card [CREDIT_CARD] was charged twice; \
refund to [IBAN]. Write to [EMAIL], not [EMAIL]."
    );
    assert_eq!(r.counts[&PiiKind::Email], 3);
    assert_eq!(r.counts[&PiiKind::CreditCard], 1);
    assert!(r.vault.is_none());
}

#[test]
fn mask_and_hash_per_kind() {
    let p = Policy::new(Mode::Mask)
        .with_mode(PiiKind::Iban, Mode::Hash)
        .with_salt("tenant-42");
    let r = detector().apply(TICKET, &p).unwrap();
    assert!(r.text.contains("j***@example.com"), "{}", r.text);
    assert!(r.text.contains("**** **** **** 4242"));
    assert!(r.text.contains("+** ** **** **58"));
    assert!(r.text.contains("[IBAN:") && !r.text.contains("DE89"));
    let again = detector().apply(TICKET, &p).unwrap();
    assert_eq!(r.text, again.text, "hashing is deterministic for a salt");
}

#[test]
fn block_reports_kinds_and_counts_only() {
    let p = Policy::new(Mode::Redact)
        .with_mode(PiiKind::CreditCard, Mode::Block)
        .with_mode(PiiKind::Email, Mode::Block);
    let e = detector().apply(TICKET, &p).unwrap_err();
    match &e {
        GuardError::Blocked { counts } => {
            assert_eq!(counts.get(&PiiKind::Email), Some(&3));
            assert_eq!(counts.get(&PiiKind::CreditCard), Some(&1));
            assert_eq!(counts.len(), 2);
        }
        other => panic!("expected Blocked, got {other}"),
    }
    let msg = e.to_string();
    assert!(!msg.contains("jane") && !msg.contains("4242"), "{msg}");
    // Kinds that are not enabled never block.
    let p = p.only([PiiKind::Phone]);
    assert!(detector().apply(TICKET, &p).is_ok());
}

#[test]
fn pseudonymise_then_restore_model_output() {
    let r = detector().apply(TICKET, &Policy::new(Mode::Pseudonymize)).unwrap();
    assert!(r.text.starts_with("Hi, I'm <EMAIL_1> (phone <PHONE_1>)"), "{}", r.text);
    assert!(
        r.text.contains("Write to <EMAIL_1>, not <EMAIL_2>."),
        "same value, same placeholder"
    );
    let vault = r.vault.expect("vault");
    assert_eq!(vault.len(), 5);
    let model_output = "I've refunded <CREDIT_CARD_1> to <IBAN_1> and will email <EMAIL_1>.";
    assert_eq!(
        vault.restore(model_output),
        "I've refunded 4242 4242 4242 4242 to DE89 3704 0044 0532 0130 00 and will email jane.doe@example.com."
    );
    let dbg = format!("{vault:?}");
    assert!(!dbg.contains("jane") && !dbg.contains("4242"), "{dbg}");
}

#[test]
fn one_vault_across_the_messages_of_a_request() {
    let d = detector();
    let p = Policy::new(Mode::Pseudonymize);
    let mut vault = Vault::new();
    let a = d.apply_in("I am ann@x.org", &p, &mut vault).unwrap();
    let b = d.apply_in("cc bob@y.org and ann@x.org", &p, &mut vault).unwrap();
    assert_eq!(a.text, "I am <EMAIL_1>");
    assert_eq!(b.text, "cc <EMAIL_2> and <EMAIL_1>");
    assert!(b.vault.is_none());
    assert_eq!(vault.restore("<EMAIL_2>"), "bob@y.org");
}

#[test]
fn custom_recogniser_takes_part_in_policies() {
    let d = Detector::new(PiiConfig {
        custom: vec![CustomRecognizer {
            name: "employee_id".into(),
            pattern: r"\bEMP-\d{6}\b".into(),
        }],
        ..Default::default()
    })
    .unwrap();
    let r = d
        .apply("badge EMP-004211 and mail a@b.io", &Policy::new(Mode::Redact))
        .unwrap();
    assert_eq!(r.text, "badge [EMPLOYEE_ID] and mail [EMAIL]");
    let r = d.apply("badge EMP-004211", &Policy::new(Mode::Pseudonymize)).unwrap();
    assert_eq!(r.text, "badge <EMPLOYEE_ID_1>");
}

#[test]
fn spans_are_sorted_disjoint_byte_offsets() {
    let text = "Ünïcödé first: ann@x.org, then 10.0.0.1 and ☎ +1-202-555-0143";
    let spans = detector().detect(text);
    assert_eq!(spans.len(), 3);
    for w in spans.windows(2) {
        assert!(w[0].end <= w[1].start);
    }
    assert_eq!(spans[0].text(text), "ann@x.org");
    assert_eq!(spans[2].text(text), "+1-202-555-0143");
}
