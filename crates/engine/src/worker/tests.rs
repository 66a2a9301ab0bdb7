//! The worker's decisions without a model: admission (interactive first, aging, preemption,
//! KV room) and batch planning (prefill budgets, interactive-first steps, prefix splits), on
//! made-up sequences. Each test asserts the exact decisions, in order.

use super::schedule::*;
use crate::request::Priority::{self, Batch, Interactive};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// `ms` milliseconds after a fixed origin.
fn at(ms: u64) -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now) + Duration::from_millis(ms)
}

const AGING: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
struct Fake {
    name: &'static str,
    priority: Priority,
    queued_at: Instant,
    started: Instant,
    need: usize,
    preemptable: bool,
    preempted: u32,
    want: Want,
}

impl Scheduled for Fake {
    fn priority(&self) -> Priority {
        self.priority
    }
    fn queued_at(&self) -> Instant {
        self.queued_at
    }
    fn started(&self) -> Instant {
        self.started
    }
    fn need(&self, per_seq_limit: usize) -> usize {
        self.need.min(per_seq_limit)
    }
    fn preemptable(&self) -> bool {
        self.preemptable
    }
    fn want(&self) -> Want {
        self.want
    }
}

/// A sequence queued at `queued_ms`, needing 100 cells.
fn seq(name: &'static str, priority: Priority, queued_ms: u64) -> Fake {
    let want = Want::Prompt {
        n_past: 0,
        total: 100,
        split_at: None,
    };
    Fake {
        name,
        priority,
        queued_at: at(queued_ms),
        started: at(queued_ms),
        need: 100,
        preemptable: false,
        preempted: 0,
        want,
    }
}

/// A running sequence admitted at `started_ms`, preemptable as the worker would make it.
fn running(name: &'static str, priority: Priority, started_ms: u64, need: usize) -> Fake {
    let mut s = seq(name, priority, started_ms);
    s.need = need;
    s.preemptable = priority == Batch;
    s
}

/// One admission round, applied as `Worker::admit` applies it: "+name" admitted, "-name"
/// preempted, in order.
fn round(waiting: &mut Vec<Fake>, active: &mut Vec<Fake>, slots: usize, n_ctx: usize, now: Instant) -> Vec<String> {
    let mut events = Vec::new();
    let mut target = None;
    loop {
        let reserved = active.iter().map(|s| s.need).sum();
        let room = Room {
            free_slots: slots - active.len(),
            reserved,
            n_ctx,
            per_seq_limit: usize::MAX,
            aging: AGING,
        };
        match next_admission(waiting, active, &room, now, target) {
            Admission::Admit(i) => {
                let mut s = waiting.remove(i);
                s.started = now;
                s.preemptable = s.priority == Batch && !protected(s.preempted, s.queued_at, now, AGING);
                events.push(format!("+{}", s.name));
                active.push(s);
                target = None;
            }
            Admission::Preempt { victim, target: t } => {
                let mut s = active.swap_remove(victim);
                s.preempted += 1;
                events.push(format!("-{}", s.name));
                waiting.push(s);
                target = Some(t);
            }
            Admission::Stop => return events,
        }
    }
}

fn names(seqs: &[Fake]) -> Vec<&'static str> {
    seqs.iter().map(|s| s.name).collect()
}

#[test]
fn interactive_sequences_are_admitted_first_then_the_oldest() {
    let mut waiting = vec![
        seq("b1", Batch, 0),
        seq("b2", Batch, 1),
        seq("i1", Interactive, 2),
        seq("i2", Interactive, 3),
    ];
    let mut active = Vec::new();
    assert_eq!(
        round(&mut waiting, &mut active, 3, 10_000, at(5)),
        ["+i1", "+i2", "+b1"]
    );
    assert_eq!(names(&waiting), ["b2"]);
    // No slot left: the batch sequence waits, nothing is preempted for it.
    assert_eq!(round(&mut waiting, &mut active, 3, 10_000, at(6)), Vec::<String>::new());
}

#[test]
fn a_batch_sequence_past_the_aging_limit_goes_ahead_of_interactive_ones_and_is_protected() {
    let mut waiting = vec![seq("i", Interactive, 5_000), seq("b", Batch, 0)];
    let mut active = Vec::new();
    let now = at(10_000);
    assert!(urgent(&waiting[1], now, AGING));
    assert!(!urgent(&waiting[1], at(9_999), AGING));
    assert_eq!(round(&mut waiting, &mut active, 1, 10_000, now), ["+b"]);
    // Admitted after aging: the interactive arrival cannot take its place.
    assert!(!active[0].preemptable);
    assert_eq!(
        round(&mut waiting, &mut active, 1, 10_000, at(10_001)),
        Vec::<String>::new()
    );
    // Before the limit, the same batch sequence waits behind the interactive one.
    let mut waiting = vec![seq("i", Interactive, 5_000), seq("b", Batch, 0)];
    assert_eq!(round(&mut waiting, &mut Vec::new(), 1, 10_000, at(9_999)), ["+i"]);
}

#[test]
fn an_interactive_arrival_preempts_the_newest_batch_sequence() {
    let mut active = vec![
        running("old", Batch, 1, 100),
        running("new", Batch, 3, 100),
        running("chat", Interactive, 4, 100),
        running("mid", Batch, 2, 100),
    ];
    let mut waiting = vec![seq("i", Interactive, 10)];
    assert_eq!(round(&mut waiting, &mut active, 4, 10_000, at(11)), ["-new", "+i"]);
    // `swap_remove`: the last running sequence took the victim's place.
    assert_eq!(names(&active), ["old", "mid", "chat", "i"]);
    // The victim waits at the back, keeps its queue time, and is not preempted again.
    assert_eq!(names(&waiting), ["new"]);
    assert_eq!((waiting[0].queued_at, waiting[0].preempted), (at(3), 1));
    assert!(protected(1, at(3), at(11), AGING));
    // A batch sequence never preempts.
    assert_eq!(
        round(&mut waiting, &mut active, 4, 10_000, at(12)),
        Vec::<String>::new()
    );
}

#[test]
fn preemption_goes_on_until_the_arrival_fits_its_cells() {
    let mut active = vec![running("b1", Batch, 1, 400), running("b2", Batch, 2, 400)];
    let mut waiting = vec![seq("i", Interactive, 5)];
    waiting[0].need = 500;
    assert_eq!(round(&mut waiting, &mut active, 4, 1_000, at(6)), ["-b2", "+i"]);
    let mut active = vec![running("b1", Batch, 1, 400), running("b2", Batch, 2, 400)];
    let mut waiting = vec![seq("i", Interactive, 5)];
    waiting[0].need = 700;
    assert_eq!(round(&mut waiting, &mut active, 4, 1_000, at(6)), ["-b2", "-b1", "+i"]);
    assert_eq!(names(&waiting), ["b2", "b1"]);
}

#[test]
fn without_a_preemptable_sequence_an_arrival_waits() {
    let mut active = vec![running("chat", Interactive, 1, 100), running("b", Batch, 2, 100)];
    active[1].preemptable = false; // protected, or a scoring job
    let mut waiting = vec![seq("i", Interactive, 5)];
    assert_eq!(
        next_admission(&waiting, &active, &room(0, 200, 10_000), at(6), None),
        Admission::Stop
    );
    assert_eq!(round(&mut waiting, &mut active, 2, 10_000, at(6)), Vec::<String>::new());
    assert_eq!(names(&waiting), ["i"]);
}

#[test]
fn an_aged_batch_sequence_that_does_not_fit_holds_its_place() {
    // One slot free, but the aged batch sequence's cells do not fit; the interactive one's
    // would, yet it waits (and preempts nothing): aging only orders free slots.
    let mut active = vec![running("run", Batch, 1, 200), running("chat", Interactive, 2, 400)];
    let mut waiting = vec![seq("b", Batch, 0), seq("i", Interactive, 5)];
    waiting[0].need = 500;
    waiting[1].need = 300;
    assert_eq!(
        round(&mut waiting, &mut active, 3, 1_000, at(10_000)),
        Vec::<String>::new()
    );
    // Not aged yet: the interactive one goes first and fits.
    assert_eq!(round(&mut waiting, &mut active, 3, 1_000, at(9_000)), ["+i"]);
    assert_eq!(names(&waiting), ["b"]);
}

#[test]
fn a_sequence_alone_is_admitted_whatever_its_cells() {
    let mut waiting = vec![seq("huge", Batch, 0)];
    waiting[0].need = 5_000;
    assert_eq!(round(&mut waiting, &mut Vec::new(), 2, 1_000, at(1)), ["+huge"]);
    assert_eq!(
        next_admission::<Fake>(&[], &[], &room(2, 0, 1_000), at(1), None),
        Admission::Stop
    );
}

fn room(free_slots: usize, reserved: usize, n_ctx: usize) -> Room {
    Room {
        free_slots,
        reserved,
        n_ctx,
        per_seq_limit: usize::MAX,
        aging: AGING,
    }
}

/// A running sequence for planning, started at `started_ms`.
fn planned(priority: Priority, started_ms: u64, want: Want) -> Fake {
    let mut s = seq("", priority, started_ms);
    s.want = want;
    s
}

fn prompt(n_past: usize, total: usize) -> Want {
    Want::Prompt {
        n_past,
        total,
        split_at: None,
    }
}

fn plan(seqs: &[Fake], n_batch: usize, prefill_chunk: usize, interruptible: bool) -> Plan {
    let mut p = Plan::default();
    p.make(
        seqs,
        &Budgets {
            n_batch,
            prefill_chunk,
            interruptible,
        },
    );
    p
}

#[test]
fn an_interactive_prompt_alone_gets_a_full_batch() {
    let seqs = [planned(Interactive, 0, prompt(0, 1000))];
    for interruptible in [true, false] {
        let p = plan(&seqs, 512, 256, interruptible);
        assert_eq!(p.chunks, [(0, Chunk::Prompt { from: 0, to: 512 })]);
        assert!(p.interactive_prefilling);
    }
}

#[test]
fn a_batch_prompt_alone_gets_half_a_chunk_when_steps_are_interruptible() {
    let seqs = [planned(Batch, 0, prompt(0, 1000))];
    assert_eq!(
        plan(&seqs, 512, 256, true).chunks,
        [(0, Chunk::Prompt { from: 0, to: 128 })]
    );
    assert_eq!(
        plan(&seqs, 512, 256, false).chunks,
        [(0, Chunk::Prompt { from: 0, to: 512 })]
    );
    // Never below 16 tokens.
    assert_eq!(
        plan(&seqs, 512, 8, true).chunks,
        [(0, Chunk::Prompt { from: 0, to: 8 })]
    );
    assert_eq!(
        plan(&seqs, 512, 20, true).chunks,
        [(0, Chunk::Prompt { from: 0, to: 16 })]
    );
}

#[test]
fn batch_prompts_take_small_chunks_while_others_decode() {
    let seqs = [
        planned(Batch, 0, Want::Decode),
        planned(Interactive, 1, Want::Decode),
        planned(Batch, 2, prompt(0, 1000)),
        planned(Batch, 3, prompt(40, 1000)),
    ];
    // An eighth of a chunk, for all batch prompts together.
    let p = plan(&seqs, 512, 256, true);
    assert_eq!(
        p.chunks,
        [
            (0, Chunk::Decode),
            (1, Chunk::Decode),
            (2, Chunk::Prompt { from: 0, to: 32 })
        ]
    );
    assert_eq!((p.decoding, p.interactive_prefilling), (2, false));
    // Without interrupts: an eighth each, within `prefill_chunk`.
    let p = plan(&seqs, 512, 256, false);
    assert_eq!(
        p.chunks[2..],
        [
            (2, Chunk::Prompt { from: 0, to: 32 }),
            (3, Chunk::Prompt { from: 40, to: 72 })
        ]
    );
}

#[test]
fn an_interactive_prefill_step_carries_interactive_work_only() {
    let seqs = [
        planned(Batch, 0, Want::Decode),
        planned(Interactive, 1, Want::Decode),
        planned(Batch, 2, prompt(0, 100)),
        planned(Interactive, 3, prompt(0, 300)),
    ];
    let p = plan(&seqs, 512, 256, true);
    assert_eq!(p.chunks, [(1, Chunk::Decode), (3, Chunk::Prompt { from: 0, to: 256 })]);
    assert_eq!((p.decoding, p.interactive_prefilling), (1, true));
}

#[test]
fn interactive_prompts_go_first_then_the_earliest_started() {
    let seqs = [
        planned(Interactive, 5, prompt(0, 400)),
        planned(Interactive, 3, prompt(0, 400)),
        planned(Batch, 0, prompt(0, 400)),
    ];
    // Nothing decodes and an interactive prompt waits: a full batch, shared in order.
    assert_eq!(
        plan(&seqs, 512, 256, true).chunks,
        [
            (1, Chunk::Prompt { from: 0, to: 400 }),
            (0, Chunk::Prompt { from: 0, to: 112 })
        ]
    );
}

#[test]
fn the_budget_leaves_room_for_decoding_tokens() {
    let mut seqs: Vec<Fake> = (0..4).map(|i| planned(Batch, i, Want::Decode)).collect();
    seqs.push(planned(Interactive, 9, prompt(0, 100)));
    // Interactive prefill pauses the batch decoders: the prompt gets the whole batch.
    assert_eq!(
        plan(&seqs, 16, 256, true).chunks,
        [(4, Chunk::Prompt { from: 0, to: 16 })]
    );
    for s in &mut seqs[..4] {
        s.priority = Interactive;
    }
    let p = plan(&seqs, 16, 256, true);
    assert_eq!(p.chunks[4..], [(4, Chunk::Prompt { from: 0, to: 12 })]);
}

#[test]
fn a_prefill_step_ends_at_the_prompt_prefix() {
    let mut seqs = [planned(
        Interactive,
        0,
        Want::Prompt {
            n_past: 0,
            total: 100,
            split_at: Some(40),
        },
    )];
    assert_eq!(
        plan(&seqs, 512, 256, true).chunks,
        [(0, Chunk::Prompt { from: 0, to: 40 })]
    );
    seqs[0].want = Want::Prompt {
        n_past: 40,
        total: 100,
        split_at: Some(40),
    };
    assert_eq!(
        plan(&seqs, 512, 256, true).chunks,
        [(0, Chunk::Prompt { from: 40, to: 100 })]
    );
    // A chunk shorter than the prefix is cut by the budget first.
    seqs[0].want = Want::Prompt {
        n_past: 0,
        total: 100,
        split_at: Some(40),
    };
    seqs[0].priority = Batch;
    assert_eq!(
        plan(&seqs, 512, 40, true).chunks,
        [(0, Chunk::Prompt { from: 0, to: 20 })]
    );
}

#[test]
fn a_continuation_is_fed_only_whole() {
    let seqs = [
        planned(Interactive, 0, Want::Decode),
        planned(Interactive, 1, Want::Continuation(Some(5))),
        planned(Interactive, 2, Want::Continuation(Some(3))),
    ];
    // Budget 4 after the decoding token: the 5-token continuation waits, the 3-token one goes.
    assert_eq!(
        plan(&seqs, 16, 4, true).chunks,
        [(0, Chunk::Decode), (2, Chunk::Continuation { n: 3 })]
    );
    assert_eq!(
        plan(&seqs, 16, 8, true).chunks,
        [
            (0, Chunk::Decode),
            (1, Chunk::Continuation { n: 5 }),
            (2, Chunk::Continuation { n: 3 })
        ]
    );
    let idle = [planned(Interactive, 1, Want::Continuation(None))];
    assert!(plan(&idle, 16, 8, true).chunks.is_empty());
}
