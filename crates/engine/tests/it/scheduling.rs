//! Priority classes: interactive work preempts batch work, and preempted work resumes and
//! finishes exactly as it would have.

use crate::common::*;
use engine::*;

fn req(user: &str, max_tokens: usize, priority: Priority) -> GenerateRequest {
    let mut r = GenerateRequest::new(
        Prompt::Chat(vec![ChatMessage::new("user", user)]),
        SamplingParams {
            temperature: 0.0,
            max_tokens,
            ignore_eos: true,
            ..Default::default()
        },
    );
    r.priority = priority;
    r
}

#[test]
fn interactive_preempts_batch_and_batch_resumes_correctly() {
    let _process = share_process();
    let e = load(
        "smollm2-135m",
        EngineConfig {
            n_ctx: 2048,
            n_seq_max: 2,
            ..Default::default()
        },
    );
    let batch_prompts = [
        "Write a long story about a lighthouse keeper.",
        "Explain how rivers form, in detail.",
    ];
    let alone: Vec<String> = batch_prompts
        .iter()
        .map(|p| e.generate(req(p, 48, Priority::Batch)).unwrap().text)
        .collect();

    let mut seqs: Vec<Sequence> = batch_prompts
        .iter()
        .map(|p| e.submit(req(p, 48, Priority::Batch)).unwrap())
        .collect();
    // Both batch sequences are decoding (both slots taken) before the interactive one arrives.
    for s in seqs.iter_mut() {
        assert!(matches!(s.next_blocking(), Some(Event::Token(_))));
    }
    let interactive = e
        .submit(req("What is the capital of France?", 8, Priority::Interactive))
        .unwrap();
    let quick = interactive.collect_blocking(|_| {}).unwrap();
    assert_eq!(quick.finish.completion_tokens, 8);
    assert!(
        e.stats().preemptions >= 1,
        "no slot was free: the interactive request had to preempt"
    );

    // The preempted batch sequence resumes from prompt + its tokens and ends identically.
    // (The first token of each was read above; compare the rest.)
    for (full, s) in alone.iter().zip(seqs) {
        let rest = s.collect_blocking(|_| {}).unwrap();
        assert_eq!(rest.finish.completion_tokens, 48);
        assert!(
            full.ends_with(rest.text.as_str()),
            "resumed output diverged:\n alone: {full:?}\n after preemption: {:?}",
            rest.text
        );
        assert!(rest.text.len() * 2 > full.len(), "{:?} vs {full:?}", rest.text);
    }
}

#[test]
fn batch_is_not_starved() {
    let _process = share_process();
    // One slot; a stream of interactive work must not keep a waiting batch request out forever.
    let e = load(
        "smollm2-135m",
        EngineConfig {
            n_ctx: 1024,
            n_seq_max: 1,
            batch_aging_ms: 300,
            ..Default::default()
        },
    );
    let batch = e.submit(req("Name a colour.", 4, Priority::Batch)).unwrap();
    let mut interactive = Vec::new();
    for _ in 0..6 {
        interactive.push(e.submit(req("Count to twenty.", 24, Priority::Interactive)).unwrap());
    }
    let b = batch.collect_blocking(|_| {}).unwrap();
    // The batch request finished before all interactive work drained.
    let still_running = interactive.iter().filter(|s| !s.is_finished()).count();
    assert_eq!(b.finish.completion_tokens, 4);
    assert!(
        still_running >= 1,
        "batch waited for every interactive request: starved"
    );
}

#[test]
fn interactive_preempts_even_behind_aged_batch_work() {
    let _process = share_process();
    // Two slots busy with batch work, two more batch requests waiting long enough to age.
    // The aging limit leaves the worker ample time to admit the first two before they would
    // count as aged themselves (an aged admission is protected from preemption); on a loaded
    // machine 200 ms was not always enough.
    let e = load(
        "smollm2-135m",
        EngineConfig {
            n_ctx: 2048,
            n_seq_max: 2,
            batch_aging_ms: 1000,
            ..Default::default()
        },
    );
    let mut batch: Vec<Sequence> = (0..4)
        .map(|i| {
            e.submit(req(
                &format!("Write story number {i} about a dragon."),
                200,
                Priority::Batch,
            ))
            .unwrap()
        })
        .collect();
    for s in batch.iter_mut().take(2) {
        assert!(
            matches!(s.next_blocking(), Some(Event::Token(_))),
            "the first two are running"
        );
    }
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let t0 = std::time::Instant::now();
    let quick = e
        .submit(req("Say hi.", 2, Priority::Interactive))
        .unwrap()
        .collect_blocking(|_| {})
        .unwrap();
    let waited = t0.elapsed();
    assert_eq!(quick.finish.completion_tokens, 2);
    assert!(
        e.stats().preemptions >= 1,
        "the interactive request preempted a batch sequence"
    );
    // It did not wait for the aged batch requests: all four are still unfinished.
    let unfinished = batch.iter().filter(|s| !s.is_finished()).count();
    assert!(
        unfinished >= 3,
        "{unfinished} batch sequences unfinished after the interactive one ({waited:?})"
    );
    for s in batch {
        assert_eq!(s.collect_blocking(|_| {}).unwrap().finish.completion_tokens, 200);
    }
}

/// Per-class queue bounds: batch requests are refused at `max_queue_batch` waiting, while
/// interactive ones may still take the places kept for them up to `max_queue`.
#[test]
fn batch_requests_cannot_take_the_places_kept_for_interactive_ones() {
    let _process = share_process();
    let e = load(
        "smollm2-135m",
        EngineConfig {
            n_ctx: 1024,
            n_seq_max: 1,
            max_queue: 2,
            max_queue_batch: Some(1),
            ..Default::default()
        },
    );
    let mut running = e
        .submit(req(
            "Write a long story about a lighthouse keeper.",
            400,
            Priority::Interactive,
        ))
        .unwrap();
    assert!(
        matches!(running.next_blocking(), Some(Event::Token(_))),
        "the only slot is busy"
    );
    let _b1 = e
        .submit(req("Summarise the story.", 8, Priority::Batch))
        .expect("one batch request may wait");
    assert!(
        matches!(
            e.submit(req("Another summary.", 8, Priority::Batch)),
            Err(EngineError::QueueFull(_))
        ),
        "the batch share is full"
    );
    let labels = ["yes".to_string(), "no".to_string()];
    let scoring = e.score_continuations(&Prompt::Text("Is it raining?".into()), &labels, Priority::Batch);
    assert!(
        matches!(scoring, Err(EngineError::QueueFull(_))),
        "batch label scoring takes the batch share too"
    );
    let _i1 = e
        .submit(req("What is 2 + 2?", 8, Priority::Interactive))
        .expect("interactive still has room");
    assert!(
        matches!(
            e.submit(req("What is 3 + 3?", 8, Priority::Interactive)),
            Err(EngineError::QueueFull(_))
        ),
        "max_queue bounds everyone"
    );
}

/// An interactive arrival cuts short a step that carries only batch work (llama.cpp's abort
/// callback); the abandoned step is redone and batch output is exactly what it is alone.
#[test]
fn interactive_arrival_interrupts_a_batch_step_and_batch_output_is_unchanged() {
    let _process = share_process();
    let e = load(
        "smollm2-135m",
        EngineConfig {
            n_ctx: 2048,
            n_seq_max: 2,
            ..Default::default()
        },
    );
    let prompt = "Write a long story about a lighthouse keeper and the storms of the northern sea.";
    let alone = e.generate(req(prompt, 64, Priority::Batch)).unwrap().text;
    let mut batch = e.submit(req(prompt, 64, Priority::Batch)).unwrap();
    assert!(matches!(batch.next_blocking(), Some(Event::Token(_))));
    // While the batch sequence decodes, the worker is inside a step nearly all the time; a few
    // arrivals make sure at least one lands in one.
    for _ in 0..20 {
        let q = e
            .submit(req("Say hi.", 1, Priority::Interactive))
            .unwrap()
            .collect_blocking(|_| {})
            .unwrap();
        assert_eq!(q.finish.completion_tokens, 1);
        if e.stats().interrupted_steps > 0 {
            break;
        }
    }
    assert!(e.stats().interrupted_steps > 0, "no batch step was interrupted");
    let rest = batch.collect_blocking(|_| {}).unwrap();
    assert_eq!(rest.finish.completion_tokens, 64);
    assert!(
        alone.ends_with(rest.text.as_str()) && rest.text.len() * 2 > alone.len(),
        "batch output changed:\n alone: {alone:?}\n interrupted: {:?}",
        rest.text
    );
}

/// A fresh engine allocates a small KV cache (`INITIAL_KV_CELLS_PER_SEQ` per sequence) and
/// grows it to the configured size the first time a sequence needs more; the sequence that
/// crossed the small size restarts from its tokens and ends exactly as with the full cache.
#[test]
fn kv_cache_grows_on_demand_and_output_is_unchanged() {
    let _process = share_process();
    let e = load(
        "smollm2-135m",
        EngineConfig {
            n_ctx: 2048,
            n_seq_max: 2,
            ..Default::default()
        },
    );
    assert!(
        2048 / 2 > INITIAL_KV_CELLS_PER_SEQ as usize,
        "the test needs a configured size above the initial one"
    );
    let r = || {
        req(
            "Write a long story about a lighthouse keeper.",
            320,
            Priority::Interactive,
        )
    };
    let grown_midway = e.generate(r()).unwrap();
    assert_eq!(grown_midway.finish.completion_tokens, 320);
    let full_from_start = e.generate(r()).unwrap();
    assert_eq!(grown_midway.text, full_from_start.text);
}

/// Label scoring at batch priority (an eval, a shadow run, a judge) is batch work: an
/// interactive arrival interrupts its steps, and the scores are those it gets alone.
#[test]
fn batch_label_scoring_yields_to_interactive_work_with_unchanged_scores() {
    let _process = share_process();
    let e = load(
        "smollm2-135m",
        EngineConfig {
            n_ctx: 2048,
            n_seq_max: 2,
            ..Default::default()
        },
    );
    let text =
        "The harbour town woke slowly under a grey sky while fishing boats returned with their catch. ".repeat(24);
    let prompt = Prompt::Chat(vec![ChatMessage::new(
        "user",
        format!("{text}\nIs this story happy or sad? Answer with one word."),
    )]);
    let labels = [
        "happy".to_string(),
        "sad".to_string(),
        "bittersweet and calm".to_string(),
    ];
    let alone = e.score_continuations(&prompt, &labels, Priority::Batch).unwrap();
    let before = e.stats().interrupted_steps;
    let mixed = std::thread::scope(|s| {
        let scoring = s.spawn(|| e.score_continuations(&prompt, &labels, Priority::Batch).unwrap());
        while !scoring.is_finished() {
            let q = e
                .submit(req("Say hi.", 1, Priority::Interactive))
                .unwrap()
                .collect_blocking(|_| {})
                .unwrap();
            assert_eq!(q.finish.completion_tokens, 1);
        }
        scoring.join().unwrap()
    });
    assert!(
        e.stats().interrupted_steps > before,
        "interactive arrivals never interrupted the scoring: it was not scheduled as batch work"
    );
    for ((a, b), l) in alone.iter().zip(&mixed).zip(&labels) {
        assert!(
            (a.logprob - b.logprob).abs() < 1e-3,
            "{l}: {} alone, {} with interruptions",
            a.logprob,
            b.logprob
        );
    }
}
