//! Steps 4–6 of a round: fill the batch from the plan, decode it (or roll an interrupted
//! step back), then sample every generation and score every label set that got logits.

use super::schedule::{Budgets, Chunk, Scheduled};
use super::seq::{Active, Job, Phase};
use super::Worker;
use crate::prefix;
use crate::request::{Event, FinishReason, Priority, TokenEvent, TokenLogprob};
use crate::sampling::{log_sum_exp, top_logprobs};
use llama_cpp_2::{llama_batch::LlamaBatch, model::LlamaModel, token::LlamaToken};
use llguidance::Matcher;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

impl Worker<'_> {
    /// 4. Build one batch as `schedule::Plan` decides. `false`: nothing to compute.
    pub(super) fn build_batch(&mut self) -> bool {
        let budgets = Budgets {
            n_batch: self.limits.n_batch,
            prefill_chunk: self.limits.prefill_chunk,
            interruptible: self.interrupt.enabled,
        };
        self.plan.make(&self.active, &budgets);
        self.batch.clear();
        for a in self.active.iter_mut() {
            a.outputs.clear();
            a.in_batch = 0;
            a.n_past_before = a.n_past;
        }
        for &(i, chunk) in &self.plan.chunks {
            add_chunk(&mut self.batch, &mut self.active[i], chunk);
        }
        self.batch.n_tokens() > 0
    }

    /// 5. One forward pass for everyone. A step without interactive work may be cut short by
    ///    an interactive arrival that could then start (a free slot or a batch sequence to
    ///    preempt). `false`: no logits this round (interrupted, or failed).
    pub(super) fn decode(&mut self) -> bool {
        if !self.active.iter().any(|a| a.priority() == Priority::Batch) {
            self.last_batch_step = Instant::now(); // no batch work is waiting for a step
        }
        let armable = self.interrupt.enabled
            && self.last_batch_step.elapsed() < self.limits.batch_aging
            && !self
                .active
                .iter()
                .any(|a| a.in_batch > 0 && a.priority() == Priority::Interactive)
            && (!self.slots.free.is_empty() || self.active.iter().any(Scheduled::preemptable));
        self.interrupt.arm(armable);
        let t = Instant::now();
        let result = self.slots.ctx.decode(&mut self.batch);
        self.interrupt.arm(false);
        match result {
            Err(llama_cpp_2::DecodeError::Unknown(2)) if armable => {
                self.roll_back(t);
                false
            }
            Err(e) => {
                tracing::error!(error = %e, "decode failed; failing the sequences in this batch");
                for a in self.active.drain(..) {
                    if let Job::Generate(g) = &a.job {
                        let _ = g.tx.send(Event::Error(format!("decode failed: {e}")));
                    }
                    self.slots.release(&a, &self.stats);
                }
                false
            }
            Ok(()) => {
                self.account(t, t.elapsed());
                true
            }
        }
    }

    /// Interrupted: undo the step and take the interactive arrival in the next round.
    /// llama.cpp's own rollback of an aborted ubatch removed the cells of only one of its
    /// sequences here (the next step then failed with "inconsistent sequence positions"), so
    /// every sequence in the step is cut back to where it was.
    fn roll_back(&mut self, t: Instant) {
        let mut rolled_back = Vec::new();
        for a in self.active.iter_mut() {
            if a.in_batch > 0 {
                let _ = self
                    .slots
                    .ctx
                    .clear_kv_cache_seq(Some(a.slot as u32), Some(a.n_past_before as u32), None);
                rolled_back.push((a.slot, a.n_past_before));
            }
            a.n_past = a.n_past_before;
            a.outputs.clear();
            a.in_batch = 0;
        }
        tracing::debug!(?rolled_back, "rolled back (slot, position)");
        self.stats.interrupted_steps.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            tokens = self.batch.n_tokens(),
            after_ms = t.elapsed().as_secs_f64() * 1e3,
            "step interrupted for an interactive arrival"
        );
        self.last_step_end = Instant::now();
    }

    /// A step that started at `t` and took `step`: counters, each sequence's share of its
    /// core-seconds, and prefixes to capture now that their prefill reached them.
    fn account(&mut self, t: Instant, step: Duration) {
        if !self
            .active
            .iter()
            .any(|a| a.in_batch > 0 && a.priority() == Priority::Interactive)
        {
            self.last_batch_step = Instant::now();
        }
        self.stats.record_step(self.batch.n_tokens() as usize, step);
        if tracing::enabled!(tracing::Level::DEBUG) {
            let interactive: usize = self
                .active
                .iter()
                .filter(|a| a.priority() == Priority::Interactive)
                .map(|a| a.in_batch)
                .sum();
            tracing::debug!(
                tokens = self.batch.n_tokens(),
                decoding = self.plan.decoding,
                interactive,
                interactive_prefilling = self.plan.interactive_prefilling,
                running = self.active.len(),
                waiting = self.waiting.len(),
                step_ms = step.as_secs_f64() * 1e3,
                between_ms = (t - self.last_step_end).as_secs_f64() * 1e3,
                "step"
            );
        }
        self.last_step_end = Instant::now();
        let core_s_per_token = step.as_secs_f64() * self.limits.threads as f64 / self.batch.n_tokens() as f64;
        for a in self.active.iter_mut() {
            a.compute_s += a.in_batch as f64 * core_s_per_token;
            if a.capture && a.in_batch > 0 && a.split_at == Some(a.n_past) {
                a.capture = false;
                if let (Some(scope), Ok(state)) = (
                    &self.limits.prefix,
                    self.slots
                        .ctx
                        .state_seq_get(a.slot, llama_cpp_2::context::session::LlamaStateSeqFlags::empty()),
                ) {
                    prefix::insert(scope, &a.tokens()[..a.n_past], state);
                }
            }
        }
    }

    /// 6. Sample / score every sequence that produced logits; release those that ended.
    pub(super) fn sample_and_score(&mut self, per_seq_cells: usize) {
        self.done.clear();
        for i in 0..self.active.len() {
            if self.active[i].outputs.is_empty() {
                continue;
            }
            let ended = match self.active[i].job {
                Job::Score(_) => self.score(i),
                Job::Generate(_) => self.sample(i, per_seq_cells),
            };
            if let Some(reason) = ended {
                self.done.push((i, reason));
            }
        }
        for (i, reason) in self.done.drain(..).rev() {
            let mut a = self.active.swap_remove(i);
            self.slots.finish(&mut a, reason, &self.stats);
        }
    }

    /// 6a. A scoring job's logits: the prompt's last ones (every continuation's first token),
    ///     or one fed continuation's. `Some`: all are scored and the reply sent.
    fn score(&mut self, i: usize) -> Option<FinishReason> {
        let a = &mut self.active[i];
        let Job::Score(s) = &mut a.job else { return None };
        let ctx = &mut self.slots.ctx;
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
            // One continuation fed on the cached prompt: its later tokens; then drop its
            // cells so the next one sees the prompt alone.
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
        if !s.finished() {
            return None;
        }
        let _ = s.reply.send((std::mem::take(&mut s.scores), a.compute_s));
        Some(FinishReason::Stop)
    }

    /// 6b. A generation's logits: sample its next token and send it. `Some`: it ended.
    fn sample(&mut self, i: usize, per_seq_cells: usize) -> Option<FinishReason> {
        let model = self.model;
        let a = &mut self.active[i];
        let Job::Generate(g) = &mut a.job else { return None };
        let (idx, _) = a.outputs[0];
        if matches!(a.phase, Phase::Decode { .. }) {
            a.n_past += 1;
        }
        let view = match constrained(self.slots.ctx.get_logits_ith(idx), g.matcher.as_mut(), &mut self.raw) {
            Ok(view) => view,
            Err(e) => {
                let _ = g.tx.send(Event::Error(format!("constraint failed: {e}")));
                return Some(FinishReason::Stop);
            }
        };
        let tok = g.sampler.sample(view, &mut self.work);
        g.sampler.accept(tok);
        a.out.push(tok);
        if let Some(m) = g.matcher.as_mut() {
            let _ = m.consume_token(tok as u32);
        }
        if a.first_token.is_none() {
            let now = Instant::now();
            a.first_token = Some(now);
            tracing::debug!(
                priority = ?g.priority,
                ttft_ms = (now - g.submitted).as_secs_f64() * 1e3,
                queue_ms = (a.started - g.submitted).as_secs_f64() * 1e3,
                "first token"
            );
        }
        a.generated += 1;
        if model.vocab().is_eog(LlamaToken(tok)) && !g.ignore_eos {
            return Some(FinishReason::Stop);
        }
        let piece = model.vocab().token_to_piece(LlamaToken(tok), false, None);
        let logprob = g.logprobs.map(|n| token_logprob(model, view, tok, &piece, n));
        let fed = a.stream.feed(&piece);
        if g.tx
            .send(Event::Token(TokenEvent {
                id: tok,
                text: fed.delta,
                logprob,
            }))
            .is_err()
        {
            return Some(FinishReason::Cancelled);
        }
        let grammar_done = g.matcher.as_ref().is_some_and(|m| m.is_stopped());
        if fed.stopped || grammar_done {
            Some(FinishReason::Stop)
        } else if a.generated >= g.max_tokens || a.n_past + 1 >= self.limits.per_seq_limit.min(per_seq_cells) {
            Some(FinishReason::Length)
        } else {
            a.phase = Phase::Decode { last: tok };
            None
        }
    }
}

/// Put `a`'s part of the step in the batch, noting which batch indices give it logits.
fn add_chunk(batch: &mut LlamaBatch<'_>, a: &mut Active, chunk: Chunk) {
    match chunk {
        Chunk::Decode => {
            if let Phase::Decode { last } = a.phase {
                let idx = batch.n_tokens();
                batch
                    .add(LlamaToken(last), a.n_past as i32, &[a.slot], true)
                    .expect("batch sized for n_seq_max");
                a.outputs.push((idx, a.n_past));
                a.in_batch = 1;
            }
        }
        // The cached prompt's next continuation, all but its last token, each with logits.
        Chunk::Continuation { n } => {
            let Job::Score(s) = &a.job else { return };
            let Some(c) = s.next_cont() else { return };
            for (j, &t) in c[..n].iter().enumerate() {
                let idx = batch.n_tokens();
                batch
                    .add(LlamaToken(t), (a.n_past + j) as i32, &[a.slot], true)
                    .expect("within n_batch");
                a.outputs.push((idx, j));
            }
            a.in_batch += n;
        }
        // Prompt tokens; logits only for the prompt's last one.
        Chunk::Prompt { from, to } => {
            let last = a.tokens().len() - 1;
            for pos in from..to {
                let idx = batch.n_tokens();
                batch
                    .add(LlamaToken(a.tokens()[pos]), pos as i32, &[a.slot], pos == last)
                    .expect("within n_batch");
                if pos == last {
                    a.outputs.push((idx, pos));
                }
            }
            a.in_batch += to - from;
            a.n_past = to;
        }
    }
}

/// The logits to sample from: `logits` itself, or — under a constraint — a copy in `raw` with
/// every token it forbids at -inf (copied only when a constraint must mask).
fn constrained<'a>(logits: &'a [f32], matcher: Option<&mut Matcher>, raw: &'a mut [f32]) -> Result<&'a [f32], String> {
    let Some(m) = matcher else { return Ok(logits) };
    let mask = m.compute_mask_or_eos().map_err(|e| e.to_string())?;
    raw.copy_from_slice(logits);
    for (t, l) in raw.iter_mut().enumerate() {
        if !mask.is_allowed(t as u32) {
            *l = f32::NEG_INFINITY;
        }
    }
    Ok(raw)
}

/// The chosen token's logprob and the `n` best alternatives, from the logits it was sampled
/// from.
fn token_logprob(model: &LlamaModel, view: &[f32], tok: i32, piece: &[u8], n: usize) -> TokenLogprob {
    let lse = log_sum_exp(view);
    let text = |t: i32| String::from_utf8_lossy(&model.vocab().token_to_piece(LlamaToken(t), false, None)).into_owned();
    TokenLogprob {
        token: String::from_utf8_lossy(piece).into_owned(),
        logprob: view[tok as usize] - lse,
        top: top_logprobs(view, lse, n)
            .into_iter()
            .map(|(t, lp)| (text(t), lp))
            .collect(),
    }
}
