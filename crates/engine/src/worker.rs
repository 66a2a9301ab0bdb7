//! The continuous-batching loop. One thread owns the llama.cpp context; every step it
//! (1) takes new sequences in between decode steps, (2) builds one `LlamaBatch` holding the
//! next token of every decoding sequence plus a bounded chunk of pending prompt tokens, so a
//! long prompt never stalls running decodes, (3) decodes once, (4) samples each sequence with
//! its own parameters and constraint, and (5) frees the KV cells of finished sequences at once.

use crate::prefix;
use crate::request::{Event, Finish, FinishReason, Priority, TokenEvent, TokenLogprob};
use crate::sampling::{log_sum_exp, top_logprobs, Sampler};
use crate::stop::TextStream;
use crate::stats::EngineStats;
use llama_cpp_2::{context::LlamaContext, llama_batch::LlamaBatch, model::LlamaModel, token::LlamaToken};
use llguidance::Matcher;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Instant;
use tokio::sync::mpsc::UnboundedSender;

/// Lets an interactive arrival cut short a step that carries only batch work.
///
/// On 2 CPU cores one decode step of 16 batch sequences takes ~0.3 s, a step with batch
/// prompt chunks longer: an interactive request arriving just after such a step started used
/// to wait for all of it before its own prefill. llama.cpp checks an abort callback after every
/// graph node (well under a millisecond apart); when it fires, `llama_decode` returns 2, the
/// worker removes the cells that step wrote and builds the step again later.
/// The worker `arm`s the callback only for steps without interactive work; `submit` of an
/// interactive job `request`s the interrupt after queueing it.
#[derive(Debug, Default)]
pub(crate) struct Interrupt {
    requested: AtomicBool,
    armed: AtomicBool,
    /// `false` turns the mechanism off (`RIGHTSIZE_STEP_INTERRUPT=0`, for A/B measurement).
    pub enabled: bool,
}

impl Interrupt {
    pub fn new(enabled: bool) -> Self {
        Self { enabled, ..Default::default() }
    }

    /// An interactive job was queued: stop the current batch-only step, if one is running.
    pub fn request(&self) {
        self.requested.store(true, Ordering::Release);
    }

    fn should_abort(&self) -> bool {
        self.armed.load(Ordering::Relaxed) && self.requested.load(Ordering::Acquire)
    }
}

extern "C" fn abort_step(data: *mut std::ffi::c_void) -> bool {
    // SAFETY: `data` is the `Interrupt` given in `with_interrupt`, kept alive (in the engine's
    // shared state) for longer than the context that calls this.
    let i = unsafe { &*(data as *const Interrupt) };
    i.should_abort()
}

/// `params` with llama.cpp's abort callback pointing at `interrupt`. llama-cpp-2 keeps the raw
/// `llama_context_params` in a private single-field struct without a setter for the callback;
/// the layout is checked at run time (a field round trip) and, should it ever not match, the
/// params are returned unchanged and steps are simply not interruptible.
pub(crate) fn with_interrupt(params: llama_cpp_2::context::params::LlamaContextParams, interrupt: &Interrupt) -> llama_cpp_2::context::params::LlamaContextParams {
    use llama_cpp_2::context::params::LlamaContextParams;
    use llama_cpp_sys_2::llama_context_params as Raw;
    if !interrupt.enabled || std::mem::size_of::<LlamaContextParams>() != std::mem::size_of::<Raw>() || std::mem::align_of::<LlamaContextParams>() != std::mem::align_of::<Raw>() {
        return params;
    }
    let probe = params.clone().with_n_ctx(std::num::NonZeroU32::new(12_345)).with_n_seq_max(7).with_n_threads(3);
    // SAFETY: same size and alignment (checked above); the bytes are only trusted below after
    // the probe's known field values are read back through the raw type.
    let raw_probe: Raw = unsafe { std::mem::transmute_copy(&probe) };
    if raw_probe.n_ctx != 12_345 || raw_probe.n_seq_max != 7 || raw_probe.n_threads != 3 || !raw_probe.abort_callback.is_none() {
        tracing::warn!("llama-cpp-2 context params layout not as expected: batch steps will not be interruptible");
        return params;
    }
    let mut raw: Raw = unsafe { std::mem::transmute_copy(&params) };
    raw.abort_callback = Some(abort_step);
    raw.abort_callback_data = interrupt as *const Interrupt as *mut std::ffi::c_void;
    std::mem::forget(params);
    // SAFETY: as above; `LlamaContextParams` has no Drop glue beyond its plain-data field.
    unsafe { std::mem::transmute::<Raw, LlamaContextParams>(raw) }
}

/// The KV cache's size: a fresh engine's context holds `INITIAL_KV_CELLS_PER_SEQ` cells per
/// sequence; `full` makes the configured size. Growing swaps the context and re-prefills the
/// running sequences from their tokens (as after a preemption), once per engine.
pub(crate) struct Kv {
    pub full: llama_cpp_2::context::params::LlamaContextParams,
    pub grown: bool,
}

/// Cells one sequence needs to take its next step.
fn cells_needed(a: &Active) -> usize {
    match (&a.job, &a.phase) {
        (Job::Score(s), _) => s.tokens.len() + s.conts.iter().map(Vec::len).max().unwrap_or(0),
        (_, Phase::Prefill) => a.tokens().len(),
        (_, Phase::Decode { .. }) => a.n_past + 1,
    }
}

/// Work for the loop.
pub(crate) enum Job {
    Generate(GenJob),
    Score(ScoreJob),
}

impl Job {
    pub fn priority(&self) -> Priority {
        match self {
            Job::Generate(g) => g.priority,
            Job::Score(s) => s.priority,
        }
    }
}

pub(crate) struct GenJob {
    pub tokens: Vec<i32>,
    /// Leading tokens that are the chat's fixed beginning (see `prefix`); 0: none.
    pub prefix: usize,
    pub sampler: Sampler,
    pub matcher: Option<Matcher>,
    pub stops: Vec<String>,
    pub logprobs: Option<usize>,
    pub max_tokens: usize,
    pub ignore_eos: bool,
    pub priority: Priority,
    pub tx: UnboundedSender<Event>,
    pub cancel: Arc<AtomicBool>,
    pub submitted: Instant,
}

/// Log-likelihood of each continuation given the prompt, with the prompt prefilled ONCE:
/// every continuation's first token is read from the prompt's last logits; a longer one is
/// then fed (all but its last token) on top of the cached prompt, scored, and its cells
/// removed again before the next — so a label set costs one prompt, not one per label.
pub(crate) struct ScoreJob {
    /// The prompt.
    pub tokens: Vec<i32>,
    pub conts: Vec<Vec<i32>>,
    pub scores: Vec<f64>,
    /// `None` while the prompt prefills; then the next continuation with more than one token
    /// to feed (`conts.len()` when all are scored).
    pub next: Option<usize>,
    /// (log-likelihood per continuation, core-seconds of the whole job)
    pub reply: mpsc::Sender<(Vec<f64>, f64)>,
    /// Scheduled like a generation of this class (an eval's or a shadow run's label scoring
    /// is batch work).
    pub priority: Priority,
    /// Leading tokens that are the chat's fixed beginning (see `prefix`); 0: none.
    pub prefix: usize,
}

impl ScoreJob {
    pub fn new(tokens: Vec<i32>, conts: Vec<Vec<i32>>, priority: Priority, reply: mpsc::Sender<(Vec<f64>, f64)>) -> Self {
        let scores = vec![0.0; conts.len()];
        Self { tokens, conts, scores, next: None, reply, priority, prefix: 0 }
    }

    /// The first continuation at or after `from` that needs tokens fed.
    fn next_multi(&self, from: usize) -> usize {
        (from..self.conts.len()).find(|&i| self.conts[i].len() > 1).unwrap_or(self.conts.len())
    }

    fn finished(&self) -> bool {
        self.next.is_some_and(|i| i >= self.conts.len())
    }
}

pub(crate) enum Cmd {
    Job(Box<Job>),
    Shutdown,
}

pub(crate) struct Limits {
    pub n_ctx: usize,
    pub n_seq_max: usize,
    pub n_batch: usize,
    pub prefill_chunk: usize,
    pub per_seq_limit: usize,
    /// A batch sequence waiting this long is admitted like an interactive one (no starvation).
    pub batch_aging: std::time::Duration,
    /// Threads llama.cpp computes with: a step's wall time × threads = its core-seconds.
    pub threads: usize,
    /// Where prompt prefixes are cached (`None`: off).
    pub prefix: Option<prefix::Scope>,
    pub kv_bytes_per_token: usize,
}

enum Phase {
    Prefill,
    Decode { last: i32 },
}

struct Active {
    job: Job,
    slot: i32,
    n_past: usize,
    phase: Phase,
    reserved: usize,
    /// Batch indices with logits this step: (batch index, position of the token).
    outputs: Vec<(i32, usize)>,
    // generation bookkeeping
    generated: usize,
    stream: TextStream,
    started: Instant,
    first_token: Option<Instant>,
    /// Tokens generated so far (kept so a preempted sequence can be re-prefilled).
    out: Vec<i32>,
    preempted: u32,
    /// Not preemptable (already preempted once, or admitted after aging).
    protected: bool,
    queued_at: Instant,
    prompt_len: usize,
    /// Tokens this sequence put in the current batch.
    in_batch: usize,
    /// Core-seconds attributed so far: each step's cost is split by tokens in the batch.
    compute_s: f64,
    /// `n_past` before this step's tokens were added (restored when the step is interrupted).
    n_past_before: usize,
    /// The prompt's prefix boundary: a prefill step always ends there, whether the prefix is
    /// new, captured or restored, because llama.cpp's numbers depend on how a prompt is cut
    /// into steps (label log-likelihoods moved by 0.24 nats between 256- and 80-token steps).
    split_at: Option<usize>,
    /// Capture the cells once the prefill reaches `split_at`.
    capture: bool,
}

impl Active {
    fn new(job: Job) -> Self {
        let (job_len, stops) = match &job {
            Job::Generate(g) => (g.tokens.len(), g.stops.clone()),
            Job::Score(s) => (s.tokens.len(), Vec::new()),
        };
        Self {
            job,
            slot: -1,
            n_past: 0,
            phase: Phase::Prefill,
            reserved: 0,
            outputs: Vec::new(),
            generated: 0,
            stream: TextStream::new(&stops),
            started: Instant::now(),
            first_token: None,
            out: Vec::new(),
            preempted: 0,
            protected: false,
            queued_at: Instant::now(),
            prompt_len: job_len,
            in_batch: 0,
            compute_s: 0.0,
            n_past_before: 0,
            split_at: None,
            capture: false,
        }
    }

    fn priority(&self) -> Priority {
        self.job.priority()
    }

    /// Interactive, or batch that has waited past the aging limit.
    fn urgent(&self, aging: std::time::Duration) -> bool {
        self.priority() == Priority::Interactive || self.queued_at.elapsed() >= aging
    }

    fn cancelled(&self) -> bool {
        matches!(&self.job, Job::Generate(g) if g.cancel.load(Ordering::Relaxed))
    }

    fn tokens(&self) -> &[i32] {
        match &self.job {
            Job::Generate(g) => &g.tokens,
            Job::Score(s) => &s.tokens,
        }
    }

    fn prefix(&self) -> usize {
        match &self.job {
            Job::Generate(g) => g.prefix,
            Job::Score(s) => s.prefix,
        }
    }
}

/// A sequence just given a clean slot: restore its prompt's cached prefix, or plan to capture
/// it (see `prefix`).
fn start_from_prefix(ctx: &mut LlamaContext<'_>, a: &mut Active, limits: &Limits, stats: &EngineStats) {
    // Planned afresh: a preempted sequence may have been admitted mid-capture before.
    (a.split_at, a.capture) = (None, false);
    let (Some(scope), n) = (&limits.prefix, a.prefix()) else { return };
    if n == 0 || n >= a.tokens().len() {
        return;
    }
    a.split_at = Some(n);
    let head = &a.tokens()[..n];
    match prefix::plan(scope, head, n * limits.kv_bytes_per_token) {
        prefix::Plan::Restore(state) => match ctx.state_seq_set(&state, a.slot) {
            Ok(()) => {
                a.n_past = n;
                stats.prefix_hits.fetch_add(1, Ordering::Relaxed);
                stats.prefix_tokens.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::debug!(error = %e, "cached prefix did not fit this context; prefilling");
                prefix::forget(scope, head);
                let _ = ctx.clear_kv_cache_seq(Some(a.slot as u32), None, None);
            }
        },
        prefix::Plan::Capture => a.capture = true,
        prefix::Plan::Nothing => {}
    }
}

/// A batch sequence an interactive arrival may take the place of.
fn preemptable(a: &Active) -> bool {
    a.priority() == Priority::Batch && !a.protected && matches!(a.job, Job::Generate(_))
}

fn reservation(a: &Active, limits: &Limits) -> usize {
    match &a.job {
        Job::Generate(g) => (g.tokens.len() + g.max_tokens - a.generated).min(limits.per_seq_limit),
        Job::Score(s) => s.tokens.len() + s.conts.iter().map(Vec::len).max().unwrap_or(0),
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn run<'m>(model: &'m LlamaModel, mut ctx: LlamaContext<'m>, rx: mpsc::Receiver<Cmd>, limits: Limits, stats: Arc<EngineStats>, interrupt: &Interrupt, mut kv: Kv) {
    let mut waiting: VecDeque<Active> = VecDeque::new();
    let mut active: Vec<Active> = Vec::new();
    let mut free_slots: Vec<i32> = (0..limits.n_seq_max as i32).rev().collect();
    let mut batch = LlamaBatch::new(limits.n_batch, 1);
    let mut reserved_total = 0usize;
    let n_vocab = model.n_vocab() as usize;
    let mut raw = vec![0f32; n_vocab];
    let mut work: Vec<f32> = Vec::with_capacity(n_vocab);

    let mut last_step_end = Instant::now();
    // When a batch-only step last completed. Past the aging limit (`batch_aging`) the next one
    // is not interruptible, so a steady stream of interactive arrivals cannot keep batch work
    // from ever finishing a step (as aging keeps it from never being admitted).
    let mut last_batch_step = Instant::now();
    loop {
        // 1. Take commands: block only when there is nothing to do. An interrupt requested
        //    before this point is for a job the drain below receives (jobs are queued first).
        interrupt.requested.store(false, Ordering::Release);
        let mut shutdown = false;
        if active.is_empty() && waiting.is_empty() {
            match rx.recv() {
                Ok(Cmd::Job(j)) => waiting.push_back(Active::new(*j)),
                Ok(Cmd::Shutdown) | Err(_) => return,
            }
        }
        loop {
            match rx.try_recv() {
                Ok(Cmd::Job(j)) => waiting.push_back(Active::new(*j)),
                Ok(Cmd::Shutdown) => shutdown = true,
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    shutdown = true;
                    break;
                }
            }
        }
        if shutdown {
            return;
        }

        // 2. Drop cancelled sequences, freeing their cells.
        active.retain_mut(|a| {
            let Job::Generate(g) = &a.job else { return true };
            if !g.cancel.load(Ordering::Relaxed) {
                return true;
            }
            finish(&mut ctx, a, FinishReason::Cancelled, &mut free_slots, &mut reserved_total, &stats);
            false
        });
        waiting.retain(|a| {
            if a.cancelled() {
                stats.queued.fetch_sub(1, Ordering::Relaxed);
                if let Job::Generate(g) = &a.job {
                    let _ = g.tx.send(Event::Done(Finish {
                        reason: FinishReason::Cancelled,
                        prompt_tokens: a.prompt_len,
                        completion_tokens: a.generated,
                        tail: String::new(),
                        queue_time: a.queued_at.elapsed(),
                        time_to_first_token: Default::default(),
                        total_time: g.submitted.elapsed(),
                        compute_s: a.compute_s,
                    }));
                }
                false
            } else {
                true
            }
        });

        // 3. Admit waiting sequences while slots and KV cells allow: interactive (and aged
        //    batch) first. An urgent arrival that does not fit preempts the newest batch
        //    sequence: its cells are dropped and it is re-prefilled when readmitted.
        while !waiting.is_empty() {
            // Oldest urgent job first (an aged or preempted batch job keeps its place in
            // time); otherwise the oldest job.
            let mut pick = waiting
                .iter()
                .enumerate()
                .filter(|(_, a)| a.urgent(limits.batch_aging))
                .min_by_key(|(_, a)| a.queued_at)
                .map(|(i, _)| i)
                .unwrap_or(0);
            let fits = |a: &Active, reserved_total: usize, free: usize, active_empty: bool| {
                free > 0 && (reserved_total + reservation(a, &limits) <= limits.n_ctx || active_empty)
            };
            if !fits(&waiting[pick], reserved_total, free_slots.len(), active.is_empty()) {
                // No room. Aging only orders free slots; an interactive arrival may still take
                // the place of a preemptable batch sequence, and then it gets that place.
                let Some(ii) = waiting.iter().enumerate().filter(|(_, a)| a.priority() == Priority::Interactive).min_by_key(|(_, a)| a.queued_at).map(|(i, _)| i) else {
                    break;
                };
                let mut preempted_any = false;
                while !fits(&waiting[ii], reserved_total, free_slots.len(), active.is_empty()) {
                    let victim = active
                        .iter()
                        .enumerate()
                        .filter(|(_, a)| preemptable(a))
                        .max_by_key(|(_, a)| a.started)
                        .map(|(i, _)| i);
                    let Some(v) = victim else { break };
                    let mut a = active.swap_remove(v);
                    release(&mut ctx, &mut a, &mut free_slots, &mut reserved_total, &stats);
                    if let Job::Generate(g) = &mut a.job {
                        // Re-prefill later from prompt + what was generated (including the
                        // token sampled but not yet fed).
                        g.tokens.extend_from_slice(&a.out);
                    }
                    a.out.clear();
                    a.slot = -1;
                    a.n_past = 0;
                    a.phase = Phase::Prefill;
                    a.preempted += 1;
                    // Keeps its original queue time: it resumes ahead of later work.
                    stats.preemptions.fetch_add(1, Ordering::Relaxed);
                    stats.queued.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(generated = a.generated, "preempted a batch sequence");
                    waiting.push_back(a); // appended: `ii` still points at the interactive job
                    preempted_any = true;
                }
                if !preempted_any || !fits(&waiting[ii], reserved_total, free_slots.len(), active.is_empty()) {
                    break;
                }
                pick = ii;
            }
            let need = reservation(&waiting[pick], &limits);
            let mut a = waiting.remove(pick).expect("index from position");
            stats.queued.fetch_sub(1, Ordering::Relaxed);
            a.slot = free_slots.pop().expect("checked non-empty");
            // A slot starts empty (its previous sequence's cells were removed when it ended;
            // this also covers cells a failed or interrupted step may have left).
            let _ = ctx.clear_kv_cache_seq(Some(a.slot as u32), None, None);
            start_from_prefix(&mut ctx, &mut a, &limits, &stats);
            a.reserved = need;
            reserved_total += need;
            if a.preempted == 0 {
                a.started = Instant::now();
            }
            // Preempted once, or waited past the aging limit: runs to completion from now on.
            a.protected = a.preempted > 0 || a.queued_at.elapsed() >= limits.batch_aging;
            tracing::debug!(
                priority = ?a.priority(),
                slot = a.slot,
                waited_ms = a.queued_at.elapsed().as_secs_f64() * 1e3,
                prompt = a.tokens().len(),
                preempted = a.preempted,
                protected = a.protected,
                running = active.len() + 1,
                waiting = waiting.len(),
                "admitted"
            );
            stats.running.fetch_add(1, Ordering::Relaxed);
            active.push(a);
        }
        if active.is_empty() {
            continue;
        }

        // 3b. A sequence needs more cells than the first, small KV cache holds: allocate the
        //     configured size once. Every running sequence keeps its slot and restarts from its
        //     tokens (prompt + generated, as after a preemption).
        let per_seq_cells = ctx.n_ctx() as usize / limits.n_seq_max;
        if !kv.grown && active.iter().any(|a| cells_needed(a) > per_seq_cells) {
            kv.grown = true;
            let t = Instant::now();
            match model.new_context(crate::model::backend(), kv.full.clone()) {
                Ok(bigger) => {
                    ctx = bigger;
                    for a in active.iter_mut() {
                        match &mut a.job {
                            Job::Generate(g) => g.tokens.extend_from_slice(&a.out),
                            Job::Score(s) => {
                                s.next = None;
                                s.scores.iter_mut().for_each(|x| *x = 0.0);
                            }
                        }
                        a.out.clear();
                        a.n_past = 0;
                        a.phase = Phase::Prefill;
                    }
                    tracing::debug!(cells = ctx.n_ctx(), took_ms = t.elapsed().as_secs_f64() * 1e3, "KV cache grown to its configured size");
                }
                Err(e) => tracing::error!(error = %e, "could not grow the KV cache; sequences are limited to {per_seq_cells} cells"),
            }
        }
        // Until the cache has grown, a sequence at the small size grows it next round; after a
        // failed growth it ends there.
        let per_seq_cells = if kv.grown { ctx.n_ctx() as usize / limits.n_seq_max } else { usize::MAX };

        // 4. Build one batch: every decoding sequence's next token, then prompt chunks.
        //    While an interactive prompt is prefilling, the step carries interactive work
        //    only (batch sequences pause for that step), so its first token is not delayed
        //    by a full batch.
        batch.clear();
        let interactive_prefilling = active.iter().any(|a| matches!(a.phase, Phase::Prefill) && a.priority() == Priority::Interactive);
        for a in active.iter_mut() {
            a.outputs.clear();
            a.in_batch = 0;
            a.n_past_before = a.n_past;
            if interactive_prefilling && a.priority() == Priority::Batch {
                continue;
            }
            if let Phase::Decode { last } = a.phase {
                let idx = batch.n_tokens();
                batch.add(LlamaToken(last), a.n_past as i32, &[a.slot], true).expect("batch sized for n_seq_max");
                a.outputs.push((idx, a.n_past));
                a.in_batch = 1;
            }
        }
        let decoding = batch.n_tokens() as usize;
        // Prompt tokens this step may carry: a full batch when nothing decodes and an
        // interactive prompt is waiting; `prefill_chunk` for batch prompts even when nothing
        // decodes, so that a step's length — the most an interactive arrival can wait when
        // steps are not interruptible, and the work an interrupt throws away — stays bounded.
        let mut budget = if decoding > 0 || (interrupt.enabled && !interactive_prefilling) { limits.prefill_chunk } else { limits.n_batch };
        budget = budget.min(limits.n_batch - decoding);
        // Batch prompt tokens in one step, all batch sequences together: small while others
        // decode, half a chunk when nothing does. Steps stay short, so an interrupt throws
        // little work away and batch prefill still progresses between interactive arrivals.
        let mut batch_budget = if !interrupt.enabled {
            usize::MAX
        } else if decoding > 0 {
            (limits.prefill_chunk / 8).max(16)
        } else {
            (limits.prefill_chunk / 2).max(16)
        };
        // Interactive prompts first; batch prompts wait while one is prefilling.
        let mut order: Vec<usize> = (0..active.len()).filter(|&i| matches!(active[i].phase, Phase::Prefill)).collect();
        order.sort_by_key(|&i| (active[i].priority(), active[i].started));
        for i in order {
            let a = &mut active[i];
            if budget == 0 || (interactive_prefilling && a.priority() == Priority::Batch) {
                break;
            }
            // A scoring job whose prompt is cached feeds one continuation on top of it.
            if let Job::Score(s) = &a.job {
                if a.n_past >= s.tokens.len() {
                    if let Some(c) = s.next.and_then(|k| s.conts.get(k)) {
                        let n = c.len() - 1;
                        if n <= budget {
                            for (j, &t) in c[..n].iter().enumerate() {
                                let idx = batch.n_tokens();
                                batch.add(LlamaToken(t), (a.n_past + j) as i32, &[a.slot], true).expect("within n_batch");
                                a.outputs.push((idx, j));
                            }
                            budget -= n;
                            a.in_batch += n;
                        }
                    }
                    continue;
                }
            }
            let total = a.tokens().len();
            let (want_from, want_to) = (total - 1, total - 1);
            // Batch prompts go in small chunks while others decode: a step's length bounds how
            // long a newly arrived interactive request waits.
            let cap = if decoding > 0 && a.priority() == Priority::Batch { (limits.prefill_chunk / 8).max(16) } else { budget };
            let cap = if a.priority() == Priority::Batch { cap.min(batch_budget) } else { cap };
            if cap == 0 {
                continue;
            }
            let mut end = (a.n_past + budget.min(cap)).min(total);
            if let Some(at) = a.split_at.filter(|&at| at > a.n_past) {
                end = end.min(at); // the prefix ends a step (see `Active::split_at`)
            }
            for pos in a.n_past..end {
                let logits = pos >= want_from && pos <= want_to;
                let idx = batch.n_tokens();
                batch.add(LlamaToken(a.tokens()[pos]), pos as i32, &[a.slot], logits).expect("within n_batch");
                if logits {
                    a.outputs.push((idx, pos));
                }
            }
            budget -= end - a.n_past;
            if a.priority() == Priority::Batch {
                batch_budget = batch_budget.saturating_sub(end - a.n_past);
            }
            a.in_batch += end - a.n_past;
            a.n_past = end;
        }
        if batch.n_tokens() == 0 {
            continue;
        }

        // 5. One forward pass for everyone. A step without interactive work may be cut short
        //    by an interactive arrival that could then start (a free slot or a batch sequence
        //    to preempt).
        if !active.iter().any(|a| a.priority() == Priority::Batch) {
            last_batch_step = Instant::now(); // no batch work is waiting for a step
        }
        let armable = interrupt.enabled
            && last_batch_step.elapsed() < limits.batch_aging
            && !active.iter().any(|a| a.in_batch > 0 && a.priority() == Priority::Interactive)
            && (!free_slots.is_empty() || active.iter().any(preemptable));
        interrupt.armed.store(armable, Ordering::Relaxed);
        let t = Instant::now();
        let result = ctx.decode(&mut batch);
        interrupt.armed.store(false, Ordering::Relaxed);
        if armable && matches!(result, Err(llama_cpp_2::DecodeError::Unknown(2))) {
            // Interrupted: undo the step and take the interactive arrival in the next round.
            // llama.cpp's own rollback of an aborted ubatch removed the cells of only one of
            // its sequences here (the next step then failed with "inconsistent sequence
            // positions"), so every sequence in the step is cut back to where it was.
            let mut rolled_back = Vec::new();
            for a in active.iter_mut() {
                if a.in_batch > 0 {
                    let _ = ctx.clear_kv_cache_seq(Some(a.slot as u32), Some(a.n_past_before as u32), None);
                    rolled_back.push((a.slot, a.n_past_before));
                }
                a.n_past = a.n_past_before;
                a.outputs.clear();
                a.in_batch = 0;
            }
            tracing::debug!(?rolled_back, "rolled back (slot, position)");
            stats.interrupted_steps.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(tokens = batch.n_tokens(), after_ms = t.elapsed().as_secs_f64() * 1e3, "step interrupted for an interactive arrival");
            last_step_end = Instant::now();
            continue;
        }
        if let Err(e) = result {
            tracing::error!(error = %e, "decode failed; failing the sequences in this batch");
            for mut a in active.drain(..) {
                if let Job::Generate(g) = &a.job {
                    let _ = g.tx.send(Event::Error(format!("decode failed: {e}")));
                }
                release(&mut ctx, &mut a, &mut free_slots, &mut reserved_total, &stats);
            }
            continue;
        }
        let step = t.elapsed();
        if !active.iter().any(|a| a.in_batch > 0 && a.priority() == Priority::Interactive) {
            last_batch_step = Instant::now();
        }
        stats.record_step(batch.n_tokens() as usize, step);
        if tracing::enabled!(tracing::Level::DEBUG) {
            let interactive: usize = active.iter().filter(|a| a.priority() == Priority::Interactive).map(|a| a.in_batch).sum();
            tracing::debug!(
                tokens = batch.n_tokens(),
                decoding,
                interactive,
                interactive_prefilling,
                running = active.len(),
                waiting = waiting.len(),
                step_ms = step.as_secs_f64() * 1e3,
                between_ms = (t - last_step_end).as_secs_f64() * 1e3,
                "step"
            );
        }
        last_step_end = Instant::now();
        let core_s_per_token = step.as_secs_f64() * limits.threads as f64 / batch.n_tokens() as f64;
        for a in active.iter_mut() {
            a.compute_s += a.in_batch as f64 * core_s_per_token;
            if a.capture && a.in_batch > 0 && a.split_at == Some(a.n_past) {
                a.capture = false;
                if let (Some(scope), Ok(state)) = (&limits.prefix, ctx.state_seq_get(a.slot, llama_cpp_2::context::session::LlamaStateSeqFlags::empty())) {
                    prefix::insert(scope, &a.tokens()[..a.n_past], state);
                }
            }
        }

        // 6. Sample / score every sequence that produced logits.
        let mut done: Vec<(usize, FinishReason)> = Vec::new();
        for (i, a) in active.iter_mut().enumerate() {
            if a.outputs.is_empty() {
                continue;
            }
            match &mut a.job {
                Job::Score(s) => {
                    match s.next {
                        // The prompt's last logits: every continuation's first token.
                        None => {
                            if a.n_past == s.tokens.len() {
                                let (idx, _) = a.outputs[a.outputs.len() - 1];
                                let logits = ctx.get_logits_ith(idx);
                                let lse = log_sum_exp(logits);
                                for (k, c) in s.conts.iter().enumerate() {
                                    s.scores[k] = (logits[c[0] as usize] - lse) as f64;
                                }
                                s.next = Some(s.next_multi(0));
                            }
                        }
                        // One continuation fed on the cached prompt: its later tokens; then
                        // drop its cells so the next one sees the prompt alone.
                        Some(k) => {
                            for &(idx, j) in &a.outputs {
                                let logits = ctx.get_logits_ith(idx);
                                let lse = log_sum_exp(logits);
                                s.scores[k] += (logits[s.conts[k][j + 1] as usize] - lse) as f64;
                            }
                            let _ = ctx.clear_kv_cache_seq(Some(a.slot as u32), Some(a.n_past as u32), None);
                            s.next = Some(s.next_multi(k + 1));
                        }
                    }
                    if s.finished() {
                        let _ = s.reply.send((std::mem::take(&mut s.scores), a.compute_s));
                        done.push((i, FinishReason::Stop));
                    }
                }
                Job::Generate(g) => {
                    let (idx, _) = a.outputs[0];
                    if matches!(a.phase, Phase::Decode { .. }) {
                        a.n_past += 1;
                    }
                    let logits = ctx.get_logits_ith(idx);
                    // Copy only when a constraint must mask; otherwise sample in place.
                    let view: &[f32] = match g.matcher.as_mut() {
                        None => logits,
                        Some(m) => match m.compute_mask_or_eos() {
                            Ok(mask) => {
                                raw.copy_from_slice(logits);
                                for (t, l) in raw.iter_mut().enumerate() {
                                    if !mask.is_allowed(t as u32) {
                                        *l = f32::NEG_INFINITY;
                                    }
                                }
                                &raw
                            }
                            Err(e) => {
                                let _ = g.tx.send(Event::Error(format!("constraint failed: {e}")));
                                done.push((i, FinishReason::Stop));
                                continue;
                            }
                        },
                    };
                    let tok = g.sampler.sample(view, &mut work);
                    g.sampler.accept(tok);
                    a.out.push(tok);
                    if let Some(m) = g.matcher.as_mut() {
                        let _ = m.consume_token(tok as u32);
                    }
                    let now = Instant::now();
                    if a.first_token.is_none() {
                        a.first_token = Some(now);
                        tracing::debug!(
                            priority = ?g.priority,
                            ttft_ms = (now - g.submitted).as_secs_f64() * 1e3,
                            queue_ms = (a.started - g.submitted).as_secs_f64() * 1e3,
                            "first token"
                        );
                    }
                    a.generated += 1;
                    let is_eog = model.vocab().is_eog(LlamaToken(tok)) && !g.ignore_eos;
                    if is_eog {
                        done.push((i, FinishReason::Stop));
                        continue;
                    }
                    let piece = model.vocab().token_to_piece(LlamaToken(tok), false, None);
                    let logprob = g.logprobs.map(|n| {
                        let lse = log_sum_exp(view);
                        let text = |t: i32| String::from_utf8_lossy(&model.vocab().token_to_piece(LlamaToken(t), false, None)).into_owned();
                        TokenLogprob {
                            token: String::from_utf8_lossy(&piece).into_owned(),
                            logprob: view[tok as usize] - lse,
                            top: top_logprobs(view, lse, n).into_iter().map(|(t, lp)| (text(t), lp)).collect(),
                        }
                    });
                    let fed = a.stream.feed(&piece);
                    if g.tx.send(Event::Token(TokenEvent { id: tok, text: fed.delta, logprob })).is_err() {
                        done.push((i, FinishReason::Cancelled));
                        continue;
                    }
                    let grammar_done = g.matcher.as_ref().is_some_and(|m| m.is_stopped());
                    if fed.stopped || grammar_done {
                        done.push((i, FinishReason::Stop));
                    } else if a.generated >= g.max_tokens || a.n_past + 1 >= limits.per_seq_limit.min(per_seq_cells) {
                        done.push((i, FinishReason::Length));
                    } else {
                        a.phase = Phase::Decode { last: tok };
                    }
                }
            }
        }
        for (i, reason) in done.into_iter().rev() {
            let mut a = active.swap_remove(i);
            finish(&mut ctx, &mut a, reason, &mut free_slots, &mut reserved_total, &stats);
        }
    }
}

fn release(ctx: &mut LlamaContext<'_>, a: &mut Active, free: &mut Vec<i32>, reserved_total: &mut usize, stats: &EngineStats) {
    stats.running.fetch_sub(1, Ordering::Relaxed);
    let _ = ctx.clear_kv_cache_seq(Some(a.slot as u32), None, None);
    free.push(a.slot);
    *reserved_total -= a.reserved;
}

fn finish(ctx: &mut LlamaContext<'_>, a: &mut Active, reason: FinishReason, free: &mut Vec<i32>, reserved_total: &mut usize, stats: &EngineStats) {
    release(ctx, a, free, reserved_total, stats);
    let Job::Generate(g) = &a.job else { return };
    stats.completed.fetch_add(1, Ordering::Relaxed);
    stats.tokens_out.fetch_add(a.generated as u64, Ordering::Relaxed);
    let now = Instant::now();
    let tail = if reason == FinishReason::Cancelled { String::new() } else { a.stream.finish() };
    let _ = g.tx.send(Event::Done(Finish {
        reason,
        prompt_tokens: a.prompt_len,
        completion_tokens: a.generated,
        tail,
        queue_time: a.started - g.submitted,
        time_to_first_token: a.first_token.unwrap_or(now) - g.submitted,
        total_time: now - g.submitted,
        compute_s: a.compute_s,
    }));
}
