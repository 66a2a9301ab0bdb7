//! A parsed model kept asleep between engines (real models): the weight pages leave the
//! process when its last engine stops, a new engine on it computes exactly what the first one
//! did, and `overhead_bytes` covers what parsing allocates.

use crate::common::*;
use engine::*;
use std::sync::Arc;

fn cfg() -> EngineConfig {
    EngineConfig {
        n_ctx: 1024,
        n_seq_max: 2,
        ..Default::default()
    }
}

fn ask(e: &Engine, question: &str) -> String {
    let req = GenerateRequest::new(
        Prompt::Chat(vec![ChatMessage::new("user", question)]),
        SamplingParams {
            max_tokens: 16,
            ..Default::default()
        },
    );
    e.generate(req).unwrap().text
}

fn scores(e: &Engine) -> Vec<f64> {
    let prompt = Prompt::Chat(vec![ChatMessage::new(
        "user",
        "Is this review positive or negative? \"It broke on the first day.\"",
    )]);
    let labels = ["positive".to_string(), "negative".to_string()];
    e.score_continuations(&prompt, &labels, Priority::Interactive)
        .unwrap()
        .iter()
        .map(|s| s.logprob)
        .collect()
}

#[test]
fn a_new_engine_on_an_asleep_model_answers_the_same_and_its_weights_left_meanwhile() {
    // The allocator and the address space are process-wide: no other test may run meanwhile.
    let _alone = own_process();
    let model = Arc::new(Model::load(&model_path("smollm2-135m"), 0, false).unwrap());
    assert!(model.can_sleep(), "a CPU model in its file mapping can sleep");
    let weights = model.info().weight_bytes;

    let first = Engine::start(model.clone(), cfg()).unwrap();
    let (text, labels) = (ask(&first, "Name a fruit."), scores(&first));
    assert!(!text.is_empty());
    let touched = model.resident_weight_bytes();
    assert!(
        touched > weights / 2,
        "running touched {touched} of {weights} weight bytes"
    );

    // The last engine stops while the model is kept: its weight pages leave the process.
    drop(first);
    let asleep = model.resident_weight_bytes();
    assert!(
        asleep < weights / 50,
        "{asleep} of {weights} weight bytes still resident while asleep"
    );

    // Woken: same tensors, same kernels, same numbers.
    let second = Engine::start(model.clone(), cfg()).unwrap();
    assert_eq!(ask(&second, "Name a fruit."), text);
    assert_eq!(
        scores(&second),
        labels,
        "label log-likelihoods must be identical, not just close"
    );
    assert!(
        model.resident_weight_bytes() > weights / 2,
        "pages come back from the file"
    );

    // An engine that asks for other weight settings cannot start on it.
    let err = Engine::start(model.clone(), EngineConfig { repack: true, ..cfg() })
        .err()
        .unwrap();
    assert!(err.to_string().contains("repack"), "{err}");
    drop(second);

    // While another engine runs on the model, stopping one keeps the pages.
    let a = Engine::start(model.clone(), cfg()).unwrap();
    let b = Engine::start(model.clone(), cfg()).unwrap();
    ask(&a, "Say hi.");
    drop(a);
    assert!(model.resident_weight_bytes() > weights / 2, "b still runs on them");
    assert_eq!(ask(&b, "Name a fruit."), text);
}

#[cfg(target_env = "gnu")]
#[test]
fn overhead_bytes_cover_what_parsing_a_model_allocates() {
    // The allocator and the address space are process-wide: no other test may run meanwhile.
    let _alone = own_process();
    let heap = || {
        // SAFETY: glibc's allocator statistics, no arguments.
        let m = unsafe { libc::mallinfo2() };
        (m.uordblks + m.hblkhd) as i64
    };
    for id in ["smollm2-135m", "qwen2.5-0.5b"] {
        let before = heap();
        let model = Model::load(&model_path(id), 0, false).unwrap();
        let parsed = heap() - before;
        let counted = model.overhead_bytes() as i64;
        println!(
            "{id}: parsing allocated {:.1} MiB, counted {:.1} MiB",
            parsed as f64 / 1048576.0,
            counted as f64 / 1048576.0
        );
        assert!(
            parsed <= counted,
            "{id}: parsing allocated {parsed} bytes, overhead_bytes says {counted}"
        );
        assert!(
            parsed >= counted / 2,
            "{id}: {counted} bytes counted for {parsed} allocated: the estimate is too loose"
        );
    }
}
