//! The worker's two decisions, as pure functions of plain data: which waiting sequence starts
//! next (or which running one is preempted for it), and what one step's batch carries.
//!
//! Why apart from the worker: these rules decide latency and fairness — interactive first,
//! batch work aging past its limit, preemption of the newest batch sequence, bounded prefill
//! chunks — and llama.cpp's results depend on where a prompt is cut into steps, so a change
//! here can move answers and calibrated thresholds. Kept free of llama.cpp, they are tested
//! deterministically (`worker/tests.rs`) with sequences made up on the spot.

use crate::request::Priority;
use std::time::{Duration, Instant};

/// What the scheduler reads of a sequence, waiting or running.
pub(crate) trait Scheduled {
    fn priority(&self) -> Priority;
    /// When the worker received it (kept across preemptions: it resumes ahead of later work).
    fn queued_at(&self) -> Instant;
    /// When it was (last) admitted.
    fn started(&self) -> Instant;
    /// KV cells it reserves while running.
    fn need(&self, per_seq_limit: usize) -> usize;
    /// Running, and an interactive arrival may take its place.
    fn preemptable(&self) -> bool;
    /// What it would put in the next step.
    fn want(&self) -> Want;
}

/// What a running sequence would put in the next step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Want {
    /// Its next token.
    Decode,
    /// Prompt tokens from `n_past`; a step ends at `split_at` (the prompt's cached prefix).
    Prompt {
        n_past: usize,
        total: usize,
        split_at: Option<usize>,
    },
    /// A scoring job with its prompt cached: the tokens of its next continuation to feed
    /// (`None`: none this step).
    Continuation(Option<usize>),
}

/// The room admission works in, as it is at the moment of the decision.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Room {
    pub free_slots: usize,
    /// KV cells the running sequences reserve together.
    pub reserved: usize,
    pub n_ctx: usize,
    pub per_seq_limit: usize,
    /// A batch sequence waiting this long is admitted like an interactive one.
    pub aging: Duration,
}

/// What admission does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Start `waiting[i]` in a free slot (removing it from the queue, keeping the order).
    Admit(usize),
    /// Drop `running[victim]`'s cells (`swap_remove`) and queue it at the back, to make room
    /// for `waiting[target]`; ask again with `target`.
    Preempt { victim: usize, target: usize },
    /// Nothing more starts this round.
    Stop,
}

/// Interactive, or batch that has waited past the aging limit.
pub(crate) fn urgent<S: Scheduled>(s: &S, now: Instant, aging: Duration) -> bool {
    s.priority() == Priority::Interactive || aged(s.queued_at(), now, aging)
}

/// Waited past the aging limit: admitted ahead of interactive arrivals.
pub(crate) fn aged(queued_at: Instant, now: Instant, aging: Duration) -> bool {
    now.saturating_duration_since(queued_at) >= aging
}

/// Whether a sequence admitted `now` runs to completion (is never preempted): it was
/// preempted once already, or it waited past the aging limit.
pub(crate) fn protected(preempted: u32, queued_at: Instant, now: Instant, aging: Duration) -> bool {
    preempted > 0 || aged(queued_at, now, aging)
}

/// The next admission decision. Interactive (and aged batch) sequences start first, the
/// oldest first; otherwise the oldest. When that one does not fit (no slot, or its cells on
/// top of the reserved ones exceed `n_ctx` while others run), the oldest interactive arrival
/// may take the place of the newest preemptable batch sequences — `target` is that arrival
/// while preemption goes on. An interactive arrival that fits while an aged batch sequence
/// does not waits behind it (aging only orders free slots).
pub(crate) fn next_admission<S: Scheduled>(
    waiting: &[S],
    running: &[S],
    room: &Room,
    now: Instant,
    target: Option<usize>,
) -> Admission {
    if waiting.is_empty() {
        return Admission::Stop;
    }
    let fits =
        |s: &S| room.free_slots > 0 && (room.reserved + s.need(room.per_seq_limit) <= room.n_ctx || running.is_empty());
    let victim = || {
        running
            .iter()
            .enumerate()
            .filter(|(_, s)| s.preemptable())
            .max_by_key(|(_, s)| s.started())
            .map(|(i, _)| i)
    };
    if let Some(target) = target {
        if fits(&waiting[target]) {
            return Admission::Admit(target);
        }
        return victim().map_or(Admission::Stop, |victim| Admission::Preempt { victim, target });
    }
    // Oldest urgent job first (an aged or preempted batch job keeps its place in time);
    // otherwise the oldest job.
    let pick = waiting
        .iter()
        .enumerate()
        .filter(|(_, s)| urgent(*s, now, room.aging))
        .min_by_key(|(_, s)| s.queued_at())
        .map(|(i, _)| i)
        .unwrap_or(0);
    if fits(&waiting[pick]) {
        return Admission::Admit(pick);
    }
    let interactive = waiting
        .iter()
        .enumerate()
        .filter(|(_, s)| s.priority() == Priority::Interactive)
        .min_by_key(|(_, s)| s.queued_at());
    let Some((target, first)) = interactive else {
        return Admission::Stop;
    };
    if fits(first) {
        return Admission::Stop;
    }
    victim().map_or(Admission::Stop, |victim| Admission::Preempt { victim, target })
}

/// How many tokens a step may carry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budgets {
    /// Most tokens in one step.
    pub n_batch: usize,
    /// Most prompt tokens in a step that is not all interactive prefill.
    pub prefill_chunk: usize,
    /// Steps can be interrupted (see `Interrupt`): batch prefill goes in smaller chunks.
    pub interruptible: bool,
}

/// What one sequence puts in the step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chunk {
    /// Its next token.
    Decode,
    /// Prompt tokens `from..to`.
    Prompt { from: usize, to: usize },
    /// The first `n` tokens of the scoring job's next continuation.
    Continuation { n: usize },
}

/// One step's batch: which sequences (by index) put what in it, in batch order. The buffers
/// are kept from step to step.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub chunks: Vec<(usize, Chunk)>,
    /// Sequences decoding a token this step.
    pub decoding: usize,
    /// An interactive prompt is prefilling: the step carries interactive work only.
    pub interactive_prefilling: bool,
    order: Vec<usize>,
}

impl Plan {
    /// Plan the next step for `running`: every decoding sequence's next token, then prompt
    /// chunks. While an interactive prompt is prefilling, the step carries interactive work
    /// only (batch sequences pause for that step), so its first token is not delayed by a
    /// full batch.
    pub fn make<S: Scheduled>(&mut self, running: &[S], b: &Budgets) {
        self.chunks.clear();
        self.interactive_prefilling = running
            .iter()
            .any(|s| s.want() != Want::Decode && s.priority() == Priority::Interactive);
        for (i, s) in running.iter().enumerate() {
            if !(self.interactive_prefilling && s.priority() == Priority::Batch) && s.want() == Want::Decode {
                self.chunks.push((i, Chunk::Decode));
            }
        }
        self.decoding = self.chunks.len();
        self.prefill(running, b);
    }

    /// Prompt chunks: interactive prompts first; batch prompts wait while one is prefilling.
    fn prefill<S: Scheduled>(&mut self, running: &[S], b: &Budgets) {
        let (decoding, interactive_prefilling) = (self.decoding, self.interactive_prefilling);
        // Prompt tokens this step may carry: a full batch when nothing decodes and an
        // interactive prompt is waiting; `prefill_chunk` for batch prompts even when nothing
        // decodes, so that a step's length — the most an interactive arrival can wait when
        // steps are not interruptible, and the work an interrupt throws away — stays bounded.
        let mut budget = if decoding > 0 || (b.interruptible && !interactive_prefilling) {
            b.prefill_chunk
        } else {
            b.n_batch
        };
        budget = budget.min(b.n_batch - decoding);
        // Batch prompt tokens in one step, all batch sequences together: small while others
        // decode, half a chunk when nothing does. Steps stay short, so an interrupt throws
        // little work away and batch prefill still progresses between interactive arrivals.
        let mut batch_budget = if !b.interruptible {
            usize::MAX
        } else if decoding > 0 {
            (b.prefill_chunk / 8).max(16)
        } else {
            (b.prefill_chunk / 2).max(16)
        };
        self.order.clear();
        self.order
            .extend((0..running.len()).filter(|&i| running[i].want() != Want::Decode));
        self.order
            .sort_by_key(|&i| (running[i].priority(), running[i].started()));
        for &i in &self.order {
            let s = &running[i];
            let batch = s.priority() == Priority::Batch;
            if budget == 0 || (interactive_prefilling && batch) {
                break;
            }
            match s.want() {
                Want::Decode | Want::Continuation(None) => {}
                Want::Continuation(Some(n)) => {
                    if n <= budget {
                        self.chunks.push((i, Chunk::Continuation { n }));
                        budget -= n;
                    }
                }
                Want::Prompt {
                    n_past,
                    total,
                    split_at,
                } => {
                    // Batch prompts go in small chunks while others decode: a step's length
                    // bounds how long a newly arrived interactive request waits.
                    let cap = if decoding > 0 && batch {
                        (b.prefill_chunk / 8).max(16)
                    } else {
                        budget
                    };
                    let cap = if batch { cap.min(batch_budget) } else { cap };
                    if cap == 0 {
                        continue;
                    }
                    let mut to = (n_past + budget.min(cap)).min(total);
                    if let Some(at) = split_at.filter(|&at| at > n_past) {
                        to = to.min(at); // the prefix ends a step (see `Active::split_at`)
                    }
                    self.chunks.push((i, Chunk::Prompt { from: n_past, to }));
                    budget -= to - n_past;
                    if batch {
                        batch_budget = batch_budget.saturating_sub(to - n_past);
                    }
                }
            }
        }
    }
}
