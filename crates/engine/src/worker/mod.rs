//! The continuous-batching loop. One thread owns the llama.cpp context; every step it
//! (1) takes new sequences in between decode steps, (2) builds one `LlamaBatch` holding the
//! next token of every decoding sequence plus a bounded chunk of pending prompt tokens, so a
//! long prompt never stalls running decodes, (3) decodes once, (4) samples each sequence with
//! its own parameters and constraint, and (5) frees the KV cells of finished sequences at once.
//!
//! [`Worker::run`] is that loop; each numbered step is one method. What to admit and what a
//! step carries are decided by pure functions in `schedule` (tested without a model); the
//! methods here only carry the decisions out on llama.cpp. `seq` holds the jobs and their
//! state, `step` the decode and what follows it, `interrupt` the abort of batch-only steps.

mod interrupt;
mod schedule;
mod seq;
mod step;
#[cfg(test)]
mod tests;

pub(crate) use interrupt::{with_interrupt, Interrupt};
pub(crate) use seq::{GenJob, Job, ScoreJob};

use crate::prefix;
use crate::request::FinishReason;
use crate::stats::EngineStats;
use llama_cpp_2::{context::LlamaContext, llama_batch::LlamaBatch, model::LlamaModel};
use schedule::{Admission, Plan, Room, Scheduled};
use seq::Active;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::Instant;

/// The KV cache's size: a fresh engine's context holds `INITIAL_KV_CELLS_PER_SEQ` cells per
/// sequence; `full` makes the configured size. Growing swaps the context and re-prefills the
/// running sequences from their tokens (as after a preemption), once per engine.
pub(crate) struct Kv {
    pub full: llama_cpp_2::context::params::LlamaContextParams,
    pub grown: bool,
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

/// The llama.cpp context and how its sequence slots are used.
struct Slots<'m> {
    ctx: LlamaContext<'m>,
    /// Sequence ids no running sequence holds.
    free: Vec<i32>,
    /// KV cells the running sequences reserve together.
    reserved: usize,
}

impl Slots<'_> {
    /// Give back `a`'s slot, cells and reservation.
    fn release(&mut self, a: &Active, stats: &EngineStats) {
        stats.running.fetch_sub(1, Ordering::Relaxed);
        let _ = self.ctx.clear_kv_cache_seq(Some(a.slot as u32), None, None);
        self.free.push(a.slot);
        self.reserved -= a.reserved;
    }

    /// Release a running sequence that ended, and tell its caller.
    fn finish(&mut self, a: &mut Active, reason: FinishReason, stats: &EngineStats) {
        self.release(a, stats);
        if let Job::Generate(_) = &a.job {
            stats.completed.fetch_add(1, Ordering::Relaxed);
            stats.tokens_out.fetch_add(a.generated as u64, Ordering::Relaxed);
        }
        a.send_finish(reason, false);
    }
}

/// The loop's state between rounds. Buffers (`batch`, `plan`, `done`, `raw`, `work`) are
/// allocated once and reused every step.
pub(crate) struct Worker<'m> {
    model: &'m LlamaModel,
    slots: Slots<'m>,
    rx: mpsc::Receiver<Cmd>,
    limits: Limits,
    stats: Arc<EngineStats>,
    interrupt: &'m Interrupt,
    kv: Kv,
    /// Received, not admitted, in arrival order (a preempted sequence goes to the back).
    waiting: Vec<Active>,
    /// Holding a slot.
    active: Vec<Active>,
    batch: LlamaBatch<'m>,
    plan: Plan,
    /// Sequences that ended this step: (index in `active`, why).
    done: Vec<(usize, FinishReason)>,
    /// Logits masked by a constraint.
    raw: Vec<f32>,
    /// The sampler's scratch.
    work: Vec<f32>,
    last_step_end: Instant,
    /// When a batch-only step last completed. Past the aging limit (`batch_aging`) the next
    /// one is not interruptible, so a steady stream of interactive arrivals cannot keep batch
    /// work from ever finishing a step (as aging keeps it from never being admitted).
    last_batch_step: Instant,
}

impl<'m> Worker<'m> {
    pub fn new(
        model: &'m LlamaModel,
        ctx: LlamaContext<'m>,
        rx: mpsc::Receiver<Cmd>,
        limits: Limits,
        stats: Arc<EngineStats>,
        interrupt: &'m Interrupt,
        kv: Kv,
    ) -> Self {
        let n_vocab = model.n_vocab() as usize;
        Self {
            model,
            slots: Slots {
                ctx,
                free: (0..limits.n_seq_max as i32).rev().collect(),
                reserved: 0,
            },
            rx,
            batch: LlamaBatch::new(limits.n_batch, 1),
            limits,
            stats,
            interrupt,
            kv,
            waiting: Vec::new(),
            active: Vec::new(),
            plan: Plan::default(),
            done: Vec::new(),
            raw: vec![0f32; n_vocab],
            work: Vec::with_capacity(n_vocab),
            last_step_end: Instant::now(),
            last_batch_step: Instant::now(),
        }
    }

    /// Run until shut down (or every `Engine` handle is gone).
    pub fn run(mut self) {
        while self.take_jobs() {
            self.drop_cancelled();
            self.admit();
            if self.active.is_empty() {
                continue;
            }
            let per_seq_cells = self.grow_kv();
            if self.build_batch() && self.decode() {
                self.sample_and_score(per_seq_cells);
            }
        }
    }

    /// 1. Take commands: block only when there is nothing to do. An interrupt requested
    ///    before this point is for a job the drain below receives (jobs are queued first).
    ///    `false`: shut down.
    fn take_jobs(&mut self) -> bool {
        self.interrupt.clear_request();
        if self.active.is_empty() && self.waiting.is_empty() {
            match self.rx.recv() {
                Ok(Cmd::Job(j)) => self.waiting.push(Active::new(*j)),
                Ok(Cmd::Shutdown) | Err(_) => return false,
            }
        }
        let mut shutdown = false;
        loop {
            match self.rx.try_recv() {
                Ok(Cmd::Job(j)) => self.waiting.push(Active::new(*j)),
                Ok(Cmd::Shutdown) => shutdown = true,
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    shutdown = true;
                    break;
                }
            }
        }
        !shutdown
    }

    /// 2. Drop cancelled sequences, freeing their cells.
    fn drop_cancelled(&mut self) {
        let (slots, stats) = (&mut self.slots, &*self.stats);
        self.active.retain_mut(|a| {
            if !a.cancelled() {
                return true;
            }
            slots.finish(a, FinishReason::Cancelled, stats);
            false
        });
        self.waiting.retain_mut(|a| {
            if !a.cancelled() {
                return true;
            }
            stats.queued.fetch_sub(1, Ordering::Relaxed);
            a.send_finish(FinishReason::Cancelled, true);
            false
        });
    }

    /// 3. Admit waiting sequences while slots and KV cells allow: interactive (and aged
    ///    batch) first. An urgent arrival that does not fit preempts the newest batch
    ///    sequence: its cells are dropped and it is re-prefilled when readmitted (see
    ///    `schedule::next_admission`).
    fn admit(&mut self) {
        let mut target = None;
        loop {
            let room = Room {
                free_slots: self.slots.free.len(),
                reserved: self.slots.reserved,
                n_ctx: self.limits.n_ctx,
                per_seq_limit: self.limits.per_seq_limit,
                aging: self.limits.batch_aging,
            };
            match schedule::next_admission(&self.waiting, &self.active, &room, Instant::now(), target) {
                Admission::Admit(i) => {
                    self.start(i);
                    target = None;
                }
                Admission::Preempt { victim, target: t } => {
                    self.preempt(victim);
                    target = Some(t);
                }
                Admission::Stop => return,
            }
        }
    }

    /// Start `waiting[i]` in a free slot.
    fn start(&mut self, i: usize) {
        let need = self.waiting[i].need(self.limits.per_seq_limit);
        let mut a = self.waiting.remove(i);
        self.stats.queued.fetch_sub(1, Ordering::Relaxed);
        a.slot = self.slots.free.pop().expect("admission checked a slot is free");
        // A slot starts empty (its previous sequence's cells were removed when it ended;
        // this also covers cells a failed or interrupted step may have left).
        let _ = self.slots.ctx.clear_kv_cache_seq(Some(a.slot as u32), None, None);
        start_from_prefix(&mut self.slots.ctx, &mut a, &self.limits, &self.stats);
        a.reserved = need;
        self.slots.reserved += need;
        if a.preempted == 0 {
            a.started = Instant::now();
        }
        a.protected = schedule::protected(a.preempted, a.queued_at, Instant::now(), self.limits.batch_aging);
        tracing::debug!(
            priority = ?a.priority(),
            slot = a.slot,
            waited_ms = a.queued_at.elapsed().as_secs_f64() * 1e3,
            prompt = a.tokens().len(),
            preempted = a.preempted,
            protected = a.protected,
            running = self.active.len() + 1,
            waiting = self.waiting.len(),
            "admitted"
        );
        self.stats.running.fetch_add(1, Ordering::Relaxed);
        self.active.push(a);
    }

    /// Drop `active[v]`'s cells and queue it again; it keeps its original queue time, so it
    /// resumes ahead of later work.
    fn preempt(&mut self, v: usize) {
        let mut a = self.active.swap_remove(v);
        self.slots.release(&a, &self.stats);
        a.restart();
        a.slot = -1;
        a.preempted += 1;
        self.stats.preemptions.fetch_add(1, Ordering::Relaxed);
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(generated = a.generated, "preempted a batch sequence");
        self.waiting.push(a);
    }

    /// 3b. A sequence needs more cells than the first, small KV cache holds: allocate the
    ///     configured size once. Every running sequence keeps its slot and restarts from its
    ///     tokens (prompt + generated, as after a preemption). Returns the cells a sequence
    ///     may use: until the cache has grown, a sequence at the small size grows it next
    ///     round; after a failed growth it ends there.
    fn grow_kv(&mut self) -> usize {
        let per_seq_cells = self.slots.ctx.n_ctx() as usize / self.limits.n_seq_max;
        if !self.kv.grown && self.active.iter().any(|a| a.cells_needed() > per_seq_cells) {
            self.kv.grown = true;
            let t = Instant::now();
            match self.model.new_context(crate::model::backend(), self.kv.full.clone()) {
                Ok(bigger) => {
                    self.slots.ctx = bigger;
                    self.active.iter_mut().for_each(Active::restart);
                    tracing::debug!(
                        cells = self.slots.ctx.n_ctx(),
                        took_ms = t.elapsed().as_secs_f64() * 1e3,
                        "KV cache grown to its configured size"
                    );
                }
                Err(e) => {
                    tracing::error!(error = %e, "could not grow the KV cache; sequences are limited to {per_seq_cells} cells")
                }
            }
        }
        if self.kv.grown {
            self.slots.ctx.n_ctx() as usize / self.limits.n_seq_max
        } else {
            usize::MAX
        }
    }
}

/// A sequence just given a clean slot: restore its prompt's cached prefix, or plan to capture
/// it (see `prefix`).
fn start_from_prefix(ctx: &mut LlamaContext<'_>, a: &mut Active, limits: &Limits, stats: &EngineStats) {
    // Planned afresh: a preempted sequence may have been admitted mid-capture before.
    (a.split_at, a.capture) = (None, false);
    let (Some(scope), n) = (&limits.prefix, a.prefix()) else {
        return;
    };
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
