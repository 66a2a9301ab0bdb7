//! The continuous-batching loop. One thread owns the llama.cpp context; every step it
//! (1) takes new sequences in between decode steps, (2) builds one `LlamaBatch` holding the
//! next token of every decoding sequence plus a bounded chunk of pending prompt tokens, so a
//! long prompt never stalls running decodes, (3) decodes once, (4) samples each sequence with
//! its own parameters and constraint, and (5) frees the KV cells of finished sequences at once.

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

/// Work for the loop.
pub(crate) enum Job {
    Generate(GenJob),
    Score(ScoreJob),
}

pub(crate) struct GenJob {
    pub tokens: Vec<i32>,
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
}

impl ScoreJob {
    pub fn new(tokens: Vec<i32>, conts: Vec<Vec<i32>>, reply: mpsc::Sender<(Vec<f64>, f64)>) -> Self {
        let scores = vec![0.0; conts.len()];
        Self { tokens, conts, scores, next: None, reply }
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
        }
    }

    fn priority(&self) -> Priority {
        match &self.job {
            Job::Generate(g) => g.priority,
            Job::Score(_) => Priority::Interactive,
        }
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
}

fn reservation(a: &Active, limits: &Limits) -> usize {
    match &a.job {
        Job::Generate(g) => (g.tokens.len() + g.max_tokens - a.generated).min(limits.per_seq_limit),
        Job::Score(s) => s.tokens.len() + s.conts.iter().map(Vec::len).max().unwrap_or(0),
    }
}

pub(crate) fn run(model: &LlamaModel, mut ctx: LlamaContext<'_>, rx: mpsc::Receiver<Cmd>, limits: Limits, stats: Arc<EngineStats>) {
    let mut waiting: VecDeque<Active> = VecDeque::new();
    let mut active: Vec<Active> = Vec::new();
    let mut free_slots: Vec<i32> = (0..limits.n_seq_max as i32).rev().collect();
    let mut batch = LlamaBatch::new(limits.n_batch, 1);
    let mut reserved_total = 0usize;
    let n_vocab = model.n_vocab() as usize;
    let mut raw = vec![0f32; n_vocab];
    let mut work: Vec<f32> = Vec::with_capacity(n_vocab);

    loop {
        // 1. Take commands: block only when there is nothing to do.
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
                        .filter(|(_, a)| a.priority() == Priority::Batch && !a.protected && matches!(a.job, Job::Generate(_)))
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
            a.reserved = need;
            reserved_total += need;
            if a.preempted == 0 {
                a.started = Instant::now();
            }
            // Preempted once, or waited past the aging limit: runs to completion from now on.
            a.protected = a.preempted > 0 || a.queued_at.elapsed() >= limits.batch_aging;
            stats.running.fetch_add(1, Ordering::Relaxed);
            active.push(a);
        }
        if active.is_empty() {
            continue;
        }

        // 4. Build one batch: every decoding sequence's next token, then prompt chunks.
        //    While an interactive prompt is prefilling, the step carries interactive work
        //    only (batch sequences pause for that step), so its first token is not delayed
        //    by a full batch.
        batch.clear();
        let interactive_prefilling = active.iter().any(|a| matches!(a.phase, Phase::Prefill) && a.priority() == Priority::Interactive);
        for a in active.iter_mut() {
            a.outputs.clear();
            a.in_batch = 0;
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
        let mut budget = if decoding > 0 { limits.prefill_chunk } else { limits.n_batch };
        budget = budget.min(limits.n_batch - decoding);
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
            let end = (a.n_past + budget.min(cap)).min(total);
            for pos in a.n_past..end {
                let logits = pos >= want_from && pos <= want_to;
                let idx = batch.n_tokens();
                batch.add(LlamaToken(a.tokens()[pos]), pos as i32, &[a.slot], logits).expect("within n_batch");
                if logits {
                    a.outputs.push((idx, pos));
                }
            }
            budget -= end - a.n_past;
            a.in_batch += end - a.n_past;
            a.n_past = end;
        }
        if batch.n_tokens() == 0 {
            continue;
        }

        // 5. One forward pass for everyone.
        let t = Instant::now();
        if let Err(e) = ctx.decode(&mut batch) {
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
        stats.record_step(batch.n_tokens() as usize, step);
        let core_s_per_token = step.as_secs_f64() * limits.threads as f64 / batch.n_tokens() as f64;
        for a in active.iter_mut() {
            a.compute_s += a.in_batch as f64 * core_s_per_token;
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
                    } else if a.generated >= g.max_tokens || a.n_past + 1 >= limits.per_seq_limit {
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
