//! Embedding behaviour and load errors of the real all-MiniLM-L6-v2 encoder.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use encoder::{cosine, Encoder, EncoderError, EncoderOptions};

fn norm(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Sentences of very different token lengths.
const MIXED: [&str; 7] = [
    "Hi.",
    "The quick brown fox jumps over the lazy dog.",
    "Stock markets fell sharply on Monday after the central bank unexpectedly raised interest rates by half a percentage point, citing persistent inflation in services.",
    "",
    "Rust's borrow checker prevents data races at compile time.",
    "ok",
    "She sells sea shells by the sea shore, and the shells she sells are surely sea shells, so if she sells shells on the sea shore I'm sure she sells sea shore shells.",
];

#[test]
fn embeddings_are_384_dim_and_unit_norm() {
    let enc = testkit::require_minilm!();
    assert_eq!(enc.dim(), 384);
    assert_eq!(enc.model_id(), "minilm-l6");
    let out = enc.embed(&MIXED).unwrap();
    assert_eq!(out.len(), MIXED.len());
    for (v, s) in out.iter().zip(MIXED) {
        assert_eq!(v.len(), 384);
        assert!((norm(v) - 1.0).abs() < 1e-4, "norm {} for {s:?}", norm(v));
        assert!(v.iter().all(|x| x.is_finite()));
    }
    // Distinct inputs give distinct vectors.
    assert!(max_abs_diff(&out[0], &out[1]) > 1e-2);
}

#[test]
fn paraphrases_are_closer_than_unrelated_sentences() {
    let enc = testkit::require_minilm!();
    let v = enc
        .embed(&[
            "A man is playing a guitar.",
            "Someone is playing an instrument, a guitar.",
            "The stock market crashed today.",
            "How do I bake sourdough bread?",
            "What is the recipe for sourdough bread?",
        ])
        .unwrap();
    let para = cosine(&v[0], &v[1]);
    let unrelated = cosine(&v[0], &v[2]);
    let para2 = cosine(&v[3], &v[4]);
    let unrelated2 = cosine(&v[3], &v[2]);
    println!("cos(paraphrase)={para:.4} cos(unrelated)={unrelated:.4} cos(paraphrase2)={para2:.4} cos(unrelated2)={unrelated2:.4}");
    assert!(para > 0.7, "paraphrase cosine {para}");
    assert!(para2 > 0.7, "paraphrase cosine {para2}");
    assert!(unrelated < 0.3, "unrelated cosine {unrelated}");
    assert!(unrelated2 < 0.3, "unrelated cosine {unrelated2}");
}

#[test]
fn batched_equals_one_at_a_time() {
    let enc = testkit::require_minilm!();
    let batched = enc.embed(&MIXED).unwrap();
    // Small batches mix lengths differently than one big batch.
    let small = Encoder::load(
        enc.dir(),
        EncoderOptions {
            batch_size: 3,
            ..Default::default()
        },
    )
    .unwrap();
    let small_batched = small.embed(&MIXED).unwrap();
    let mut worst = 0f32;
    for (i, s) in MIXED.iter().enumerate() {
        let single = enc.embed(&[s]).unwrap().remove(0);
        worst = worst.max(max_abs_diff(&single, &batched[i]));
        worst = worst.max(max_abs_diff(&single, &small_batched[i]));
    }
    println!("max |batched - single| = {worst:e}");
    assert!(worst < 1e-4, "padding changed results: max diff {worst}");
    // Same text twice in one call: identical vectors, and order preserved.
    let twice = enc.embed(&[MIXED[2], MIXED[0], MIXED[2]]).unwrap();
    assert!(max_abs_diff(&twice[0], &twice[2]) < 1e-5);
    assert!(max_abs_diff(&twice[1], &batched[0]) < 1e-4);
}

#[test]
fn long_inputs_go_past_the_tokenizer_json_128_limit() {
    let enc = testkit::require_minilm!();
    let words: Vec<String> = (0..400).map(|i| format!("word{}", i % 37)).collect();
    let mut long = String::from("The first part of this document talks about gardening and tomatoes. ");
    long.push_str(&words.join(" "));
    // sentence_bert_config.json says 256.
    assert_eq!(enc.max_len(), 256);
    let counts = enc.count_tokens(&[&long]).unwrap();
    assert_eq!(
        counts,
        vec![256],
        "truncated at max_seq_length, not at tokenizer.json's 128"
    );

    // Tokens past position 128 must influence the embedding.
    let ids_128 = {
        // Find a prefix that tokenises to <= 128 tokens.
        let mut prefix = long.clone();
        while enc.count_tokens(&[&prefix]).unwrap()[0] > 128 {
            let cut = prefix.rfind(' ').unwrap();
            prefix.truncate(cut);
        }
        prefix
    };
    let out = enc.embed_with_usage(&[&long, &ids_128]).unwrap();
    assert_eq!(out.token_counts[0], 256);
    assert!(out.token_counts[1] <= 128 && out.token_counts[1] > 120);
    let c = cosine(&out.embeddings[0], &out.embeddings[1]);
    println!("cos(256-token, 128-token prefix) = {c:.4}");
    assert!(c < 0.999, "tokens beyond 128 had no effect (cos {c})");

    // A configured max of 512 (the model's max positions) is honoured; more is capped.
    let wide = Encoder::load(
        enc.dir(),
        EncoderOptions {
            max_len: Some(4096),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(wide.max_len(), 512);
    let very_long = format!("{long} {long} {long}");
    let out = wide.embed_with_usage(&[&very_long]).unwrap();
    assert_eq!(out.token_counts, vec![512]);
    assert!((norm(&out.embeddings[0]) - 1.0).abs() < 1e-4);
}

#[test]
fn empty_inputs_and_usage_counts() {
    let enc = testkit::require_minilm!();
    assert!(enc.embed(&[]).unwrap().is_empty());
    let out = enc.embed_with_usage(&["", "hello world"]).unwrap();
    assert_eq!(out.embeddings.len(), 2);
    assert!((norm(&out.embeddings[0]) - 1.0).abs() < 1e-4);
    // [CLS] [SEP] and [CLS] hello world [SEP]
    assert_eq!(out.token_counts, vec![2, 4]);
    assert_eq!(out.total_tokens(), 6);
}

#[test]
fn model_hash_is_stable_sha256() {
    let enc = testkit::require_minilm!();
    let t = Instant::now();
    let h = enc.model_hash().unwrap();
    println!("model_hash {h} in {:?}", t.elapsed());
    assert_eq!(h.len(), 64);
    assert!(h.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(enc.model_hash().unwrap(), h);
    let cls = Encoder::load(
        enc.dir(),
        EncoderOptions {
            pooling: Some(encoder::Pooling::Cls),
            ..Default::default()
        },
    )
    .unwrap();
    assert_ne!(
        cls.model_hash().unwrap(),
        h,
        "pooling changes the embedding space, so the hash"
    );
}

#[test]
fn shared_across_threads() {
    let enc = testkit::require_minilm!();
    let expected = enc.embed(&MIXED).unwrap();
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let enc = Arc::clone(&enc);
            std::thread::spawn(move || enc.embed(&MIXED).unwrap())
        })
        .collect();
    for h in handles {
        let got = h.join().unwrap();
        for (a, b) in got.iter().zip(&expected) {
            assert!(max_abs_diff(a, b) < 1e-5);
        }
    }
}

#[test]
fn throughput_batch_of_64_short_sentences() {
    let enc = testkit::require_minilm!();
    let subjects = [
        "The cat",
        "A developer",
        "My neighbour",
        "The committee",
        "An old man",
        "The team",
        "Our server",
        "The chef",
    ];
    let verbs = [
        "reads the report",
        "fixes a bug",
        "walks to the park",
        "approves the budget",
        "cooks dinner",
        "wins the match",
        "crashes again",
        "tastes the soup",
    ];
    let sentences: Vec<String> = (0..64)
        .map(|i| format!("{} {} today.", subjects[i % 8], verbs[(i / 8) % 8]))
        .collect();
    let refs: Vec<&str> = sentences.iter().map(|s| s.as_str()).collect();
    enc.embed(&refs).unwrap(); // warm-up
    let runs = 3;
    let t = Instant::now();
    for _ in 0..runs {
        let out = enc.embed(&refs).unwrap();
        assert_eq!(out.len(), 64);
    }
    let secs = t.elapsed().as_secs_f64() / runs as f64;
    println!(
        "embed throughput: {:.0} sentences/s (64 short sentences in {:.1} ms, batch size {})",
        64.0 / secs,
        secs * 1e3,
        enc.batch_size()
    );
    assert!(secs < 30.0, "64 short sentences took {secs:.1}s");
}

// ---- load errors -------------------------------------------------------------------

/// Copies the small files of the model into a temp dir (the weights are written by the test).
fn partial_copy(src: &Path, dst: &Path, files: &[&str]) {
    for f in files {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }
}

#[test]
fn missing_dir_is_a_typed_error() {
    let err = Encoder::load(Path::new("/nonexistent/rightsize/model"), EncoderOptions::default()).unwrap_err();
    assert!(matches!(err, EncoderError::MissingDir(_)), "{err}");
}

#[test]
fn missing_files_are_typed_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let err = Encoder::load(tmp.path(), EncoderOptions::default()).unwrap_err();
    assert!(
        matches!(&err, EncoderError::MissingFile(p) if p.ends_with("config.json")),
        "{err}"
    );
    let Some(src) = testkit::minilm_dir() else {
        testkit::skip_or_fail("minilm-l6 not found (the rest of this test)");
        return;
    };
    partial_copy(&src, tmp.path(), &["config.json", "tokenizer.json"]);
    let err = Encoder::load(tmp.path(), EncoderOptions::default()).unwrap_err();
    assert!(
        matches!(&err, EncoderError::MissingFile(p) if p.ends_with("model.safetensors")),
        "{err}"
    );
}

#[test]
fn corrupt_safetensors_is_a_typed_error() {
    let Some(src) = testkit::minilm_dir() else {
        testkit::skip_or_fail("minilm-l6 not found");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    partial_copy(&src, tmp.path(), &["config.json", "tokenizer.json"]);
    let weights = tmp.path().join("model.safetensors");

    // Pure garbage.
    std::fs::write(
        &weights,
        b"this is definitely not a safetensors file, just garbage bytes",
    )
    .unwrap();
    let err = Encoder::load(tmp.path(), EncoderOptions::default()).unwrap_err();
    assert!(matches!(err, EncoderError::CorruptWeights { .. }), "{err}");
    println!("garbage: {err}");

    // A truncated copy: valid header, missing data.
    let real = std::fs::read(src.join("model.safetensors")).unwrap();
    std::fs::write(&weights, &real[..1 << 20]).unwrap();
    let err = Encoder::load(tmp.path(), EncoderOptions::default()).unwrap_err();
    assert!(matches!(err, EncoderError::CorruptWeights { .. }), "{err}");
    println!("truncated: {err}");

    // Weights that don't fit the config (config claims more layers than stored).
    std::fs::write(&weights, &real).unwrap();
    let cfg = std::fs::read_to_string(src.join("config.json")).unwrap();
    std::fs::write(
        tmp.path().join("config.json"),
        cfg.replace("\"num_hidden_layers\": 6", "\"num_hidden_layers\": 12"),
    )
    .unwrap();
    let err = Encoder::load(tmp.path(), EncoderOptions::default()).unwrap_err();
    assert!(matches!(err, EncoderError::CorruptWeights { .. }), "{err}");
    println!("mismatched: {err}");
    assert!(!err.to_string().contains('\n'), "one-line message, no backtrace: {err}");
}

#[test]
fn unsupported_config_and_bad_tokenizer_are_typed_errors() {
    let Some(src) = testkit::minilm_dir() else {
        testkit::skip_or_fail("minilm-l6 not found");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    partial_copy(&src, tmp.path(), &["config.json", "tokenizer.json"]);
    std::fs::write(tmp.path().join("model.safetensors"), b"unused").unwrap();
    let cfg = std::fs::read_to_string(src.join("config.json")).unwrap();

    std::fs::write(
        tmp.path().join("config.json"),
        cfg.replace("\"model_type\": \"bert\"", "\"model_type\": \"llama\""),
    )
    .unwrap();
    let err = Encoder::load(tmp.path(), EncoderOptions::default()).unwrap_err();
    assert!(matches!(err, EncoderError::UnsupportedConfig { .. }), "{err}");

    std::fs::write(tmp.path().join("config.json"), cfg.replace("\"gelu\"", "\"swish\"")).unwrap();
    let err = Encoder::load(tmp.path(), EncoderOptions::default()).unwrap_err();
    assert!(matches!(err, EncoderError::UnsupportedConfig { .. }), "{err}");

    std::fs::write(tmp.path().join("config.json"), "{ not json").unwrap();
    let err = Encoder::load(tmp.path(), EncoderOptions::default()).unwrap_err();
    assert!(matches!(err, EncoderError::InvalidJson { .. }), "{err}");

    std::fs::write(tmp.path().join("config.json"), &cfg).unwrap();
    std::fs::write(tmp.path().join("tokenizer.json"), "{\"broken\": true}").unwrap();
    let err = Encoder::load(tmp.path(), EncoderOptions::default()).unwrap_err();
    assert!(matches!(err, EncoderError::Tokenizer(_)), "{err}");
}

#[test]
fn embed_until_stops_between_batches_and_otherwise_matches_embed() {
    let enc = testkit::require_minilm!();
    let texts: Vec<String> = (0..3 * enc.batch_size())
        .map(|i| format!("sentence number {i} about nothing much"))
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let asked = std::sync::atomic::AtomicUsize::new(0);
    let err = enc
        .embed_until(&refs, &|| asked.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 1)
        .unwrap_err();
    assert!(
        matches!(err, EncoderError::Stopped { done, total } if done == enc.batch_size() && total == refs.len()),
        "{err}"
    );
    assert_eq!(
        asked.load(std::sync::atomic::Ordering::Relaxed),
        2,
        "asked before each batch, stopped at the second"
    );
    let all = enc.embed_until(&refs, &|| true).unwrap();
    assert_eq!(all.embeddings, enc.embed(&refs).unwrap(), "the same batches as embed");
}
