//! Generation, batching, sampling, stop strings and cancellation on real models.

use crate::common::*;
use engine::*;
use std::sync::OnceLock;
use std::time::Duration;

fn smol() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| load("smollm2-135m", small_cfg()))
}

fn chat(user: &str) -> Prompt {
    Prompt::Chat(vec![ChatMessage::new("user", user)])
}

fn greedy(max_tokens: usize) -> SamplingParams {
    SamplingParams {
        temperature: 0.0,
        max_tokens,
        ..Default::default()
    }
}

#[test]
fn reads_metadata_from_the_gguf() {
    let _process = share_process();
    let info = smol().info();
    assert_eq!(info.architecture, "llama");
    assert_eq!(info.n_layer, 30);
    assert!(info.context_length >= 2048, "{}", info.context_length);
    assert!(info.chat_template.as_deref().unwrap_or("").contains("<|im_start|>"));
    assert_eq!(info.eos_token.as_deref(), Some("<|im_end|>"));
    let prompt = smol()
        .apply_chat_template(&[ChatMessage::new("system", "S"), ChatMessage::new("user", "U")])
        .unwrap();
    assert!(
        prompt.starts_with("<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"),
        "{prompt:?}"
    );
    // The KV cache is sized from the configured context, not the trained one.
    assert_eq!(smol().kv_cache_bytes(), 16 * 1024 * info.kv_bytes_per_token());
    assert_eq!(smol().context_cells(), (16 * 1024, 1024));
}

#[test]
fn answers_a_simple_question() {
    let _process = share_process();
    // (135M parameters: it lists colours; it does not reliably know capitals — Qwen does.)
    let out = smol()
        .generate(GenerateRequest::new(chat("Name three colours."), greedy(24)))
        .unwrap();
    assert!(out.text.contains("Red"), "{:?}", out.text);
    assert_eq!(
        out.finish.completion_tokens,
        out.tokens.len() + usize::from(out.finish.reason == FinishReason::Stop)
    );
}

#[test]
fn max_tokens_ends_with_length() {
    let _process = share_process();
    let out = smol()
        .generate(GenerateRequest::new(
            chat("Write a long story about a dragon."),
            greedy(7),
        ))
        .unwrap();
    assert_eq!(out.finish.reason, FinishReason::Length);
    assert_eq!(out.finish.completion_tokens, 7);
    assert_eq!(out.tokens.len(), 7);
}

#[test]
fn stop_string_cuts_the_output() {
    let _process = share_process();
    let p = SamplingParams {
        stop: vec!["5".into()],
        ..greedy(60)
    };
    let out = smol()
        .generate(GenerateRequest::new(
            chat("Count from 1 to 10, separated by commas."),
            p,
        ))
        .unwrap();
    assert_eq!(out.finish.reason, FinishReason::Stop, "{:?}", out.text);
    assert!(out.text.contains('4') && !out.text.contains('5'), "{:?}", out.text);
}

#[test]
fn seeded_sampling_is_reproducible() {
    let _process = share_process();
    let run = |seed| {
        let p = SamplingParams {
            temperature: 1.0,
            top_p: 0.95,
            seed: Some(seed),
            max_tokens: 24,
            ..Default::default()
        };
        smol()
            .generate(GenerateRequest::new(chat("Tell me something about cats."), p))
            .unwrap()
            .text
    };
    let a = run(42);
    assert_eq!(a, run(42));
    assert!(
        [run(1), run(2), run(3)].iter().any(|t| *t != a),
        "different seeds never changed the text"
    );
}

#[test]
fn batched_greedy_equals_one_at_a_time() {
    let _process = share_process();
    // A dedicated engine so nothing else shares its batch.
    let e = load("smollm2-135m", small_cfg());
    let prompts: Vec<String> = [
        "What is the capital of France?",
        "Name three colours.",
        "Write a haiku about the sea.",
        "What is 12 plus 30?",
        "Give me a synonym for happy.",
        "Describe a cat in one sentence.",
        "What language is spoken in Brazil?",
        "List two planets.",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let alone: Vec<String> = prompts
        .iter()
        .map(|p| e.generate(GenerateRequest::new(chat(p), greedy(32))).unwrap().text)
        .collect();
    let seqs: Vec<Sequence> = prompts
        .iter()
        .map(|p| e.submit(GenerateRequest::new(chat(p), greedy(32))).unwrap())
        .collect();
    let together: Vec<String> = seqs
        .into_iter()
        .map(|s| s.collect_blocking(|_| {}).unwrap().text)
        .collect();
    assert_eq!(alone, together);
    let st = e.stats();
    assert_eq!(st.running, 0);
    assert!(
        st.batch_tokens > st.steps,
        "sequences were decoded together in shared steps"
    );
}

#[test]
fn logprobs_and_alternatives() {
    let _process = share_process();
    let mut req = GenerateRequest::new(chat("What is the capital of France?"), greedy(8));
    req.logprobs = Some(5);
    let out = smol().generate(req).unwrap();
    for t in &out.tokens {
        let lp = t.logprob.as_ref().expect("requested");
        assert!(lp.logprob <= 0.0);
        assert_eq!(lp.top.len(), 5);
        assert!(
            lp.top.windows(2).all(|w| w[0].1 >= w[1].1),
            "alternatives sorted best first"
        );
        // Greedy: the chosen token is the best alternative.
        assert!((lp.top[0].1 - lp.logprob).abs() < 1e-4, "{lp:?}");
        assert!(lp.top.iter().map(|(_, l)| l.exp()).sum::<f32>() <= 1.0001);
    }
    let (mean, min) = out.logprob_stats().unwrap();
    assert!(min <= mean && mean <= 0.0);
}

#[test]
fn scores_a_label_set() {
    let _process = share_process();
    let prompt = Prompt::Text("The capital city of France is".into());
    let labels: Vec<String> = [" Paris", " London", " banana"].iter().map(|s| s.to_string()).collect();
    let scores = smol()
        .score_continuations(&prompt, &labels, Priority::Interactive)
        .unwrap();
    assert!(
        scores[0].logprob > scores[1].logprob && scores[1].logprob > scores[2].logprob,
        "{scores:?}"
    );
    let probs = normalise_scores(&scores);
    assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    assert!(probs[0] > 0.5, "{probs:?}");
}

/// The prompt is prefilled once for a whole label set: a multi-token continuation is fed on
/// the cached prompt and removed again. Its score must equal the log-likelihood greedy
/// generation gave the same tokens, and feeding it twice (with another continuation in
/// between) must give the same score — stale cells would change it.
#[test]
fn multi_token_continuations_share_the_prompt_and_match_generation() {
    let _process = share_process();
    let prompt = Prompt::Text("The capital city of France is".into());
    let mut req = GenerateRequest::new(prompt.clone(), greedy(2));
    req.logprobs = Some(0);
    let out = smol().generate(req).unwrap();
    let generated: f64 = out
        .tokens
        .iter()
        .map(|t| t.logprob.as_ref().unwrap().logprob as f64)
        .sum();
    let cont = out.text.clone();
    let labels = vec![cont.clone(), " a banana split with cream".to_string(), cont.clone()];
    let scores = smol()
        .score_continuations(&prompt, &labels, Priority::Interactive)
        .unwrap();
    assert_eq!(
        scores[0].n_tokens,
        out.tokens.len(),
        "{cont:?} re-tokenizes to the generated tokens"
    );
    assert!(scores[0].n_tokens > 1, "{scores:?}");
    assert!(
        (scores[0].logprob - generated).abs() < 0.05,
        "scored {} vs generated {generated} for {cont:?}",
        scores[0].logprob
    );
    assert!((scores[0].logprob - scores[2].logprob).abs() < 1e-3, "{scores:?}");
    assert!(scores[1].logprob < scores[0].logprob - 1.0, "{scores:?}");
    assert!(scores.iter().all(|s| s.compute_s > 0.0));
    // On an engine of its own: the tokens decoded are the prompt once plus each label's
    // tokens after its first — not the prompt once per label.
    let e = load("smollm2-135m", small_cfg());
    let prompt_len = e.tokenize("The capital city of France is", true).len();
    let label_tokens: usize = labels.iter().map(|l| e.tokenize(l, false).len() - 1).sum();
    let before = e.stats().batch_tokens;
    e.score_continuations(&prompt, &labels, Priority::Interactive).unwrap();
    let used = (e.stats().batch_tokens - before) as usize;
    assert_eq!(
        used,
        prompt_len + label_tokens,
        "prompt {prompt_len} tokens, labels {label_tokens}"
    );
}

#[test]
fn cancel_stops_and_frees_the_sequence() {
    let _process = share_process();
    let e = load("smollm2-135m", small_cfg());
    let mut s = e
        .submit(GenerateRequest::new(
            chat("Write a very long essay about the history of Rome."),
            greedy(400),
        ))
        .unwrap();
    let mut got = 0;
    while got < 3 {
        if let Some(Event::Token(_)) = s.next_blocking() {
            got += 1;
        }
    }
    s.cancel();
    let mut finish = None;
    while let Some(ev) = s.next_blocking() {
        if let Event::Done(f) = ev {
            finish = Some(f);
        }
    }
    let f = finish.expect("a Done event after cancel");
    assert_eq!(f.reason, FinishReason::Cancelled);
    assert!(f.completion_tokens < 400);
    // Dropping sequences mid-flight (client went away) frees their slots too.
    for _ in 0..20 {
        let s = e
            .submit(GenerateRequest::new(chat("Write a long poem."), greedy(400)))
            .unwrap();
        drop(s);
    }
    let out = e
        .generate(GenerateRequest::new(chat("Name three colours."), greedy(12)))
        .unwrap();
    assert!(out.text.contains("Red"), "{:?}", out.text);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(e.stats().running, 0);
}

#[test]
fn long_prompt_prefill_does_not_stall_running_decodes() {
    let _process = share_process();
    let e = load(
        "smollm2-135m",
        EngineConfig {
            n_ctx: 8192,
            n_seq_max: 4,
            prefill_chunk: 64,
            ..Default::default()
        },
    );
    let mut short = e
        .submit(GenerateRequest::new(chat("Count from 1 to 100."), greedy(200)))
        .unwrap();
    // Wait until the short one is decoding.
    assert!(matches!(short.next_blocking(), Some(Event::Token(_))));
    let long_text = "The quick brown fox jumps over the lazy dog. ".repeat(120);
    let mut long = e
        .submit(GenerateRequest::new(
            chat(&format!("Summarise: {long_text}")),
            greedy(4),
        ))
        .unwrap();
    assert!(long.prompt_tokens > 1000, "{}", long.prompt_tokens);
    // While the long prompt is prefilled in 64-token chunks (~16 steps), the short sequence
    // keeps getting a token every step.
    let first_long = loop {
        match long.next_blocking() {
            Some(Event::Token(_)) => break true,
            Some(Event::Done(_)) | None => break false,
            _ => {}
        }
    };
    assert!(first_long);
    let mut short_tokens_so_far = 1;
    while let Some(ev) = short.try_next() {
        if matches!(ev, Event::Token(_)) {
            short_tokens_so_far += 1;
        }
    }
    assert!(
        short_tokens_so_far >= 10,
        "short sequence got only {short_tokens_so_far} tokens during a long prefill"
    );
}
