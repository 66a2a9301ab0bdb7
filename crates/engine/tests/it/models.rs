//! The Qwen models of the catalog, and bad files giving clear errors.

use crate::common::*;
use engine::*;
use std::io::Write;

fn capital(e: &Engine) -> String {
    let req = GenerateRequest::new(
        Prompt::Chat(vec![ChatMessage::new(
            "user",
            "What is the capital of France? Answer in one word.",
        )]),
        SamplingParams {
            max_tokens: 8,
            ..Default::default()
        },
    );
    e.generate(req).unwrap().text
}

#[test]
fn qwen_models_load_and_answer() {
    let _process = share_process();
    for id in ["qwen2.5-0.5b", "qwen2.5-1.5b"] {
        let e = load(
            id,
            EngineConfig {
                n_ctx: 4096,
                n_seq_max: 4,
                ..Default::default()
            },
        );
        assert_eq!(e.info().architecture, "qwen2", "{id}");
        assert!(e.info().chat_template.as_deref().unwrap().contains("<|im_start|>"));
        let text = capital(&e);
        assert!(text.contains("Paris"), "{id}: {text:?}");
    }
}

/// With `repack` llama.cpp copies Qwen2.5-1.5B's Q4_K tensors into anonymous memory; the
/// engine counts those bytes (the pool budgets them). By default every weight stays in the
/// file mapping, and the model answers the same.
#[test]
fn repacked_weights_are_counted_and_off_by_default() {
    let _process = share_process();
    let cfg = EngineConfig {
        n_ctx: 1024,
        n_seq_max: 2,
        ..Default::default()
    };
    assert!(!cfg.repack);
    let on = load(
        "qwen2.5-1.5b",
        EngineConfig {
            repack: true,
            ..cfg.clone()
        },
    );
    let copied = on.info().copied_weight_bytes;
    // 169 Q4_K tensors of 198: most of the 1.1 GB file.
    assert!(
        copied > on.info().weight_bytes / 3 && copied < on.info().weight_bytes,
        "copied {copied} of {}",
        on.info().weight_bytes
    );
    let with_repack = capital(&on);
    drop(on);
    let off = load("qwen2.5-1.5b", cfg);
    assert_eq!(off.info().copied_weight_bytes, 0);
    let without = capital(&off);
    assert!(without.contains("Paris"), "{without:?}");
    assert_eq!(without, with_repack);
}

fn load_err(path: &std::path::Path) -> EngineError {
    match Engine::load(
        path,
        EngineConfig {
            n_ctx: 256,
            ..Default::default()
        },
    ) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(e) => e,
    }
}

#[test]
fn missing_truncated_and_corrupt_files_are_clear_errors() {
    let _process = share_process();
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        load_err(&dir.path().join("nope.gguf")),
        EngineError::ModelNotFound(_)
    ));

    let real = std::fs::read(model_path("smollm2-135m")).unwrap();
    let truncated = dir.path().join("truncated.gguf");
    std::fs::write(&truncated, &real[..real.len() / 2]).unwrap();
    let e = load_err(&truncated);
    assert!(
        matches!(e, EngineError::LoadFailed(_) | EngineError::InvalidGguf { .. }),
        "{e}"
    );

    let header_only = dir.path().join("header.gguf");
    std::fs::write(&header_only, &real[..4096]).unwrap();
    assert!(matches!(
        load_err(&header_only),
        EngineError::InvalidGguf { .. } | EngineError::LoadFailed(_)
    ));

    let garbage = dir.path().join("garbage.gguf");
    std::fs::write(&garbage, b"this is not a model at all").unwrap();
    let e = load_err(&garbage);
    assert!(matches!(e, EngineError::InvalidGguf { .. }), "{e}");
    assert!(e.to_string().contains("GGUF"), "{e}");
}

/// A minimal GGUF v3 file: only metadata, no tensors.
fn tiny_gguf(arch: &str) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"GGUF");
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes()); // tensors
    b.extend_from_slice(&1u64.to_le_bytes()); // kv pairs
    let key = b"general.architecture";
    b.extend_from_slice(&(key.len() as u64).to_le_bytes());
    b.extend_from_slice(key);
    b.extend_from_slice(&8u32.to_le_bytes()); // GGUF_TYPE_STRING
    b.extend_from_slice(&(arch.len() as u64).to_le_bytes());
    b.extend_from_slice(arch.as_bytes());
    b
}

#[test]
fn unknown_architecture_is_named() {
    let _process = share_process();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("alien.gguf");
    std::fs::File::create(&p)
        .unwrap()
        .write_all(&tiny_gguf("alienformer"))
        .unwrap();
    let e = load_err(&p);
    assert!(
        matches!(&e, EngineError::UnsupportedArchitecture { arch, .. } if arch == "alienformer"),
        "{e}"
    );
}

#[test]
fn prompt_longer_than_context_is_rejected() {
    let _process = share_process();
    let e = load(
        "smollm2-135m",
        EngineConfig {
            n_ctx: 512,
            n_seq_max: 2,
            ..Default::default()
        },
    );
    let long = "word ".repeat(400);
    match e.submit(GenerateRequest::new(Prompt::Text(long), SamplingParams::default())) {
        Err(EngineError::PromptTooLong { prompt_tokens, limit }) => assert!(prompt_tokens > limit && limit == 256),
        other => panic!("{other:?}"),
    }
    // Output is cut at the context limit with `length`, never an overflow.
    let prompt = "word ".repeat(200);
    let out = e
        .generate(GenerateRequest::new(
            Prompt::Text(prompt),
            SamplingParams {
                max_tokens: 1000,
                ignore_eos: true,
                ..Default::default()
            },
        ))
        .unwrap();
    assert_eq!(out.finish.reason, FinishReason::Length);
    assert!(out.finish.prompt_tokens + out.finish.completion_tokens <= 256);
    // Bad parameters and bad token ids are rejected too.
    let bad = SamplingParams {
        temperature: -1.0,
        ..Default::default()
    };
    assert!(matches!(
        e.submit(GenerateRequest::new(Prompt::Text("x".into()), bad)),
        Err(EngineError::InvalidRequest(_))
    ));
    let bad_tokens = Prompt::Tokens(vec![1, -5]);
    assert!(matches!(
        e.submit(GenerateRequest::new(bad_tokens, SamplingParams::default())),
        Err(EngineError::InvalidRequest(_))
    ));
    assert!(matches!(
        e.submit(GenerateRequest::new(Prompt::Chat(vec![]), SamplingParams::default())),
        Err(EngineError::InvalidRequest(_))
    ));
}
