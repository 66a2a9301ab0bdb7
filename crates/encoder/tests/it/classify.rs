//! Training, saving and using classification heads over real all-MiniLM-L6-v2 embeddings.

use std::time::Instant;

use encoder::{Classifier, EncoderError, Head, HeadArch, TrainConfig};

const TRAIN: &[(&str, &str)] = &[
    // sport
    ("The striker scored twice in the second half.", "sport"),
    ("Our team lost the championship final on penalties.", "sport"),
    ("She ran the marathon in under three hours.", "sport"),
    ("The tennis match went to a fifth set.", "sport"),
    ("He signed a two-year contract with the football club.", "sport"),
    ("The referee showed him a red card.", "sport"),
    ("The sprinter broke the world record in the 100 metres.", "sport"),
    ("The basketball season starts next week.", "sport"),
    ("The goalkeeper made an incredible save.", "sport"),
    ("Cyclists climbed the mountain stage of the Tour.", "sport"),
    ("The coach praised the players' defence.", "sport"),
    ("The swimmer won gold in the relay.", "sport"),
    ("Fans cheered as the home side equalised.", "sport"),
    ("The boxer knocked out his opponent in round three.", "sport"),
    ("They train at the stadium every morning.", "sport"),
    // cooking
    ("Simmer the sauce for twenty minutes.", "cooking"),
    ("Add a pinch of salt and stir the soup.", "cooking"),
    ("Preheat the oven to 200 degrees.", "cooking"),
    ("Chop the onions and fry them in butter.", "cooking"),
    ("Knead the dough until it is smooth.", "cooking"),
    ("This pasta recipe uses fresh basil and garlic.", "cooking"),
    ("Whisk the eggs with sugar until fluffy.", "cooking"),
    ("Marinate the chicken overnight.", "cooking"),
    ("Grill the vegetables and drizzle with olive oil.", "cooking"),
    ("Let the cake cool before adding the frosting.", "cooking"),
    ("Season the steak with pepper before searing it.", "cooking"),
    ("The risotto needs constant stirring.", "cooking"),
    ("Bake the bread until the crust is golden.", "cooking"),
    ("Peel and dice the potatoes for the stew.", "cooking"),
    ("Serve the curry with steamed rice.", "cooking"),
    // computers
    ("My laptop keeps crashing when I open the browser.", "computers"),
    ("Install the latest graphics card driver.", "computers"),
    ("The program failed with a segmentation fault.", "computers"),
    ("Upgrade the RAM to sixteen gigabytes.", "computers"),
    ("The compiler reports a type error on line ten.", "computers"),
    ("Back up your files to an external hard drive.", "computers"),
    ("The server's CPU usage is at 100 percent.", "computers"),
    ("Reboot the router to fix the network connection.", "computers"),
    ("This keyboard shortcut copies the selected text.", "computers"),
    ("The operating system update broke my printer driver.", "computers"),
    ("Write a Python script to parse the log files.", "computers"),
    ("The database query is too slow.", "computers"),
    ("My monitor flickers when I plug in the HDMI cable.", "computers"),
    ("Run the antivirus scan on the USB stick.", "computers"),
    ("The SSD is much faster than the old disk.", "computers"),
];

const HELD_OUT: &[(&str, &str)] = &[
    ("The midfielder was injured during the warm-up.", "sport"),
    ("They won the league by five points.", "sport"),
    ("The golfer sank a long putt on the final hole.", "sport"),
    ("Both teams played extra time before the shootout.", "sport"),
    ("The Olympic rowing crew finished second.", "sport"),
    ("Sprinkle parmesan over the lasagna before baking.", "cooking"),
    ("Boil the noodles for eight minutes, then drain.", "cooking"),
    ("Caramelise the onions slowly over low heat.", "cooking"),
    ("Fold the whipped cream gently into the batter.", "cooking"),
    ("Roast the garlic until soft and sweet.", "cooking"),
    ("The app freezes every time I save a document.", "computers"),
    ("Configure the firewall to block incoming ports.", "computers"),
    ("The motherboard does not detect the new drive.", "computers"),
    ("Clear the browser cache and reload the page.", "computers"),
    ("The kernel panicked after the BIOS update.", "computers"),
];

fn accuracy(clf: &Classifier) -> f32 {
    let texts: Vec<&str> = HELD_OUT.iter().map(|(t, _)| *t).collect();
    let preds = clf.classify(&texts).unwrap();
    let mut correct = 0;
    for (p, (t, want)) in preds.iter().zip(HELD_OUT) {
        if p.label == *want {
            correct += 1;
        } else {
            println!("miss: {t:?} -> {} ({:.2}), want {want}", p.label, p.prob);
        }
    }
    correct as f32 / HELD_OUT.len() as f32
}

#[test]
fn linear_head_learns_topics_in_seconds() {
    let enc = testkit::require_minilm!();
    let t = Instant::now();
    let clf = Classifier::train_from_examples(enc.clone(), TRAIN, TrainConfig::default()).unwrap();
    let total = t.elapsed();
    let summary = clf.head().training().unwrap().clone();
    println!(
        "linear head: {} examples, head training {:.3}s (embedding + training {:.3}s), train loss {:.4}, train acc {:.2}",
        summary.examples,
        summary.seconds,
        total.as_secs_f64(),
        summary.final_loss,
        summary.train_accuracy
    );
    assert!(summary.seconds < 30.0, "training took {}s", summary.seconds);
    assert_eq!(clf.labels(), ["computers", "cooking", "sport"]);
    assert_eq!(clf.head().arch(), HeadArch::Linear);
    assert!(summary.train_accuracy >= 0.99);
    let acc = accuracy(&clf);
    println!("linear head held-out accuracy {acc:.3}");
    assert!(acc >= 0.85, "held-out accuracy {acc}");

    let preds = clf
        .classify(&["Whisk the flour into the melted butter.", "My computer won't boot."])
        .unwrap();
    assert_eq!(preds[0].label, "cooking");
    assert_eq!(preds[1].label, "computers");
    for p in &preds {
        assert_eq!(p.probs.len(), 3);
        assert!((p.probs.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert_eq!(p.prob, p.probs[p.index]);
        assert!(p.prob > 0.5, "low confidence {p:?}");
    }
    assert!(clf.classify(&[]).unwrap().is_empty());
}

#[test]
fn mlp_head_learns_topics() {
    let enc = testkit::require_minilm!();
    let cfg = TrainConfig {
        hidden: Some(64),
        epochs: 100,
        batch_size: Some(16),
        ..Default::default()
    };
    let clf = Classifier::train_from_examples(enc, TRAIN, cfg).unwrap();
    let s = clf.head().training().unwrap();
    println!("mlp head: training {:.3}s, train loss {:.4}", s.seconds, s.final_loss);
    assert_eq!(clf.head().arch(), HeadArch::Mlp { hidden: 64 });
    assert!(s.seconds < 30.0);
    let acc = accuracy(&clf);
    println!("mlp head held-out accuracy {acc:.3}");
    assert!(acc >= 0.85, "held-out accuracy {acc}");
}

#[test]
fn save_load_gives_same_probabilities() {
    let enc = testkit::require_minilm!();
    let clf = Classifier::train_from_examples(
        enc.clone(),
        TRAIN,
        TrainConfig {
            hidden: Some(32),
            ..Default::default()
        },
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topics");
    clf.save(&path).unwrap();
    assert!(path.join("head.safetensors").is_file() && path.join("head.json").is_file());
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path.join("head.json")).unwrap()).unwrap();
    assert_eq!(meta["input_dim"], 384);
    assert_eq!(meta["encoder"]["id"], "minilm-l6");
    assert_eq!(meta["labels"], serde_json::json!(["computers", "cooking", "sport"]));

    let loaded = Classifier::load(enc.clone(), &path).unwrap();
    let texts: Vec<&str> = HELD_OUT.iter().map(|(t, _)| *t).collect();
    let a = clf.classify(&texts).unwrap();
    let b = loaded.classify(&texts).unwrap();
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.label, y.label);
        for (p, q) in x.probs.iter().zip(&y.probs) {
            assert!((p - q).abs() < 1e-6, "{p} vs {q}");
        }
    }

    // A head saved for another encoder (same dim, different files) is refused.
    let json = std::fs::read_to_string(path.join("head.json")).unwrap();
    let hash = enc.model_hash().unwrap();
    std::fs::write(path.join("head.json"), json.replace(&hash, &"0".repeat(64))).unwrap();
    let err = Classifier::load(enc, &path).unwrap_err();
    assert!(matches!(err, EncoderError::EncoderMismatch { .. }), "{err}");
    println!("{err}");
}

#[test]
fn head_with_wrong_dim_is_rejected() {
    let enc = testkit::require_minilm!();
    // A head trained on 8-d vectors cannot sit on a 384-d encoder.
    let x: Vec<Vec<f32>> = (0..20)
        .map(|i| (0..8).map(|j| ((i * 8 + j) % 5) as f32).collect())
        .collect();
    let y: Vec<usize> = (0..20).map(|i| i % 2).collect();
    let head = Head::train(
        &x,
        &y,
        vec!["no".into(), "yes".into()],
        TrainConfig {
            epochs: 5,
            ..Default::default()
        },
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    head.save(dir.path()).unwrap();
    let err = Classifier::load(enc.clone(), dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            EncoderError::DimMismatch {
                expected: 8,
                got: 384,
                ..
            }
        ),
        "{err}"
    );
    println!("{err}");
    let err = Head::load_for(dir.path(), &enc).unwrap_err();
    assert!(matches!(err, EncoderError::DimMismatch { .. }));
    let err = Classifier::new(enc, head).unwrap_err();
    assert!(matches!(err, EncoderError::DimMismatch { .. }));
}

#[test]
fn training_is_deterministic_for_a_seed() {
    let enc = testkit::require_minilm!();
    let texts: Vec<&str> = TRAIN.iter().map(|(t, _)| *t).collect();
    let labels = vec!["computers".to_string(), "cooking".into(), "sport".into()];
    let y: Vec<usize> = TRAIN
        .iter()
        .map(|(_, l)| labels.iter().position(|x| x == l).unwrap())
        .collect();
    let x = enc.embed(&texts).unwrap();
    let probe = enc
        .embed(&HELD_OUT.iter().map(|(t, _)| *t).collect::<Vec<_>>())
        .unwrap();
    let cfg = TrainConfig {
        hidden: Some(32),
        batch_size: Some(8),
        epochs: 30,
        seed: 42,
        ..Default::default()
    };
    let a = Head::train(&x, &y, labels.clone(), cfg.clone())
        .unwrap()
        .predict_proba(&probe)
        .unwrap();
    let b = Head::train(&x, &y, labels.clone(), cfg.clone())
        .unwrap()
        .predict_proba(&probe)
        .unwrap();
    assert_eq!(a, b, "same seed, same data: identical heads");
    let c = Head::train(&x, &y, labels, TrainConfig { seed: 43, ..cfg })
        .unwrap()
        .predict_proba(&probe)
        .unwrap();
    assert_ne!(a, c, "another seed gives another initialisation");
}
