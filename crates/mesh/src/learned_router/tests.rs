//! Router training and prediction: targets from an outcome table, and (with the real
//! all-MiniLM-L6-v2 from the cache) a router that learns which inputs the cheap tier gets
//! wrong, out of fold and on unseen inputs; save/load keeps its predictions.

use super::*;
use eval::{Outcomes, TierOutcome};

fn minilm() -> Option<encoder::Encoder> {
    let mut dirs = Vec::new();
    if let Some(c) = std::env::var_os("RIGHTSIZE_CACHE") {
        dirs.push(PathBuf::from(c).join("models/minilm-l6"));
    }
    if let Some(h) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(h).join(".cache/rightsize/models/minilm-l6"));
    }
    let dir = dirs.into_iter().find(|d| d.join("model.safetensors").is_file())?;
    Some(encoder::Encoder::load(&dir, encoder::EncoderOptions::default()).expect("loading minilm-l6"))
}

fn tiers() -> Vec<String> {
    vec![
        "classifier:minilm-l6".into(),
        "local:smollm2-135m".into(),
        "local:qwen2.5-0.5b".into(),
    ]
}

#[test]
fn targets_are_the_cheapest_tier_matching_the_best_score() {
    let ok = |s: f64| TierOutcome::scored(s, Some(0.9), 0.0, 1.0);
    let mut o = Outcomes::new(tiers());
    o.push("cheap", vec![ok(1.0), ok(1.0), ok(1.0)]).unwrap();
    o.push("middle", vec![ok(0.0), ok(1.0), ok(1.0)]).unwrap();
    o.push(
        "error-then-right",
        vec![TierOutcome::failed(0.0, 1.0), ok(0.0), ok(1.0)],
    )
    .unwrap();
    o.push("nobody", vec![ok(0.0), ok(0.0), ok(0.0)]).unwrap();
    o.push("partial", vec![ok(0.5), ok(0.8), ok(0.8)]).unwrap();
    assert_eq!(targets(&o), [0, 1, 2, 2, 1]);
}

#[test]
fn picks_fall_back_and_map_onto_a_shorter_ladder() {
    assert_eq!(
        pick(&[0.2, 0.7, 0.1], 0.5),
        Pick {
            predicted: 1,
            confidence: 0.7f32 as f64,
            start: 1
        }
    );
    assert_eq!(
        pick(&[0.2, 0.45, 0.35], 0.5).start,
        0,
        "below min_confidence: the plain cascade"
    );
    // A router over 3 tiers, tried on ladders an `--apply` might write.
    let x: Vec<Vec<f32>> = (0..6).map(|i| vec![i as f32, 1.0]).collect();
    let meta = RouterMeta {
        task: "t".into(),
        trained_for_version: 1,
        tiers: tiers(),
        encoder: "e".into(),
        examples: 6,
        data_hash: "ab".repeat(32),
        trained_ms: 0,
        cv_accuracy: None,
    };
    let r = Router::train(&x, &[0, 0, 1, 1, 2, 2], meta, None).unwrap();
    let t = tiers();
    assert_eq!(r.start_in(&t, 1), 1);
    let shorter = vec![t[0].clone(), t[2].clone()];
    assert_eq!(
        r.start_in(&shorter, 1),
        1,
        "routed to a dropped tier: the next one kept"
    );
    assert_eq!(r.start_in(&shorter, 0), 0);
    assert_eq!(r.start_in(&[t[1].clone()], 2), 0, "nothing at or above: the last tier");
}

/// Tickets a cheap tier answers right (plain billing questions) and ones it gets wrong
/// (technical failure reports that need the bigger model).
const EASY: &[&str] = &[
    "I was charged twice for my subscription this month.",
    "Please send me the invoice for my last payment.",
    "How do I get a refund for the duplicate charge?",
    "My credit card was billed the wrong amount.",
    "Can I change the card you charge every month?",
    "Why did the price of my plan go up on this invoice?",
    "I need a receipt for the payment I made yesterday.",
    "Cancel the extra charge on my bank statement please.",
    "The annual fee was taken from my account twice.",
    "Can I pay the invoice by bank transfer instead of card?",
];
const HARD: &[&str] = &[
    "The app crashes with a segmentation fault when I open settings.",
    "Your API returns HTTP 500 errors on every POST since the upgrade.",
    "The sync service times out and the logs show a null pointer exception.",
    "After the firmware update the device reboots in a loop.",
    "The webhook integration drops events under heavy load.",
    "Query performance degraded badly; the dashboard takes a minute to render.",
    "The desktop client freezes when exporting large CSV files.",
    "SSL handshake fails between your SDK and our proxy server.",
    "Memory usage keeps growing until the worker process is killed.",
    "The mobile app shows a blank screen after login on Android 14.",
];

#[test]
fn minilm_router_learns_which_inputs_the_cheap_tier_gets_wrong() {
    let Some(enc) = minilm() else {
        testkit::skip_or_fail("minilm-l6 not found under $RIGHTSIZE_CACHE/models or ~/.cache/rightsize/models");
        return;
    };
    // An outcome table as an eval would record it: the classifier is right on the easy
    // tickets only, SmolLM2 on every ticket, Qwen on every ticket.
    let two = tiers()[..2].to_vec();
    let mut o = Outcomes::new(two.clone());
    let mut texts = Vec::new();
    for (i, (easy, hard)) in EASY.iter().zip(HARD).enumerate() {
        for (t, cheap_right) in [(easy, true), (hard, false)] {
            o.push(
                format!("{i}-{cheap_right}"),
                vec![
                    TierOutcome::new(cheap_right, Some(0.9), 0.0, 5.0),
                    TierOutcome::new(true, Some(0.9), 0.001, 300.0),
                ],
            )
            .unwrap();
            texts.push(t.to_string());
        }
    }
    let y = targets(&o);
    assert_eq!(y.iter().filter(|&&t| t == 1).count(), HARD.len());
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let x = enc.embed(&refs).unwrap();

    // Out of fold (5 folds), the router already separates them.
    let oof = cross_val(&x, &y, &two, 5).unwrap();
    let right = oof.iter().zip(&y).filter(|(p, &t)| pick(p, 0.0).predicted == t).count();
    assert!(right >= 17, "out-of-fold: {right}/20 right");

    let meta = RouterMeta {
        task: "triage".into(),
        trained_for_version: 1,
        tiers: two.clone(),
        encoder: "minilm-l6".into(),
        examples: x.len(),
        data_hash: data_hash(&texts, &y, &two, "minilm-l6"),
        trained_ms: 1,
        cv_accuracy: Some(right as f64 / 20.0),
    };
    let r = Router::train(
        &x,
        &y,
        meta,
        Some(EncoderRef {
            id: "minilm-l6".into(),
            hash: enc.model_hash().ok(),
        }),
    )
    .unwrap();
    let unseen = [
        "I think I was overcharged on my last bill.",
        "The server throws a stack overflow error when uploading files.",
    ];
    let probs = r.probs(&enc.embed(&unseen).unwrap()).unwrap();
    assert_eq!(
        pick(&probs[0], 0.0).start,
        0,
        "a billing question starts at the classifier: {:?}",
        probs[0]
    );
    assert_eq!(
        pick(&probs[1], 0.0).start,
        1,
        "a crash report skips the classifier: {:?}",
        probs[1]
    );

    // Saved where runs look for it, loaded with the same predictions; the newest wins.
    let root = tempfile::tempdir().unwrap();
    let dir = router_dir(root.path(), "triage", 1, &r.meta.data_hash);
    r.save(&dir).unwrap();
    let older = router_dir(root.path(), "triage", 1, &"cd".repeat(32));
    Router {
        head: Router::load(&dir).unwrap().head,
        meta: RouterMeta {
            trained_ms: 0,
            data_hash: "cd".repeat(32),
            ..r.meta.clone()
        },
    }
    .save(&older)
    .unwrap();
    assert_eq!(find(root.path(), "triage", 1), Some(dir.clone()));
    assert_eq!(find(root.path(), "triage", 2), None);
    let back = Router::load(&dir).unwrap();
    back.head.check_compatible(&enc).unwrap();
    assert_eq!(back.meta, r.meta);
    assert_eq!(back.probs(&enc.embed(&unseen).unwrap()).unwrap(), probs);
}
