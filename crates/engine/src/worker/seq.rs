//! What the worker runs: the jobs callers queue, and each one's state between steps.

use super::schedule::{Scheduled, Want};
use crate::request::{Event, Finish, FinishReason, Priority};
use crate::sampling::Sampler;
use crate::stop::TextStream;
use llguidance::Matcher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// Work for the loop.
// A generation's sampler state is large (its RNG); jobs move only when queued, admitted or
// preempted, so boxing it would buy an allocation per request and nothing per step.
#[allow(clippy::large_enum_variant)]
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
    pub fn new(
        tokens: Vec<i32>,
        conts: Vec<Vec<i32>>,
        priority: Priority,
        reply: mpsc::Sender<(Vec<f64>, f64)>,
    ) -> Self {
        let scores = vec![0.0; conts.len()];
        Self {
            tokens,
            conts,
            scores,
            next: None,
            reply,
            priority,
            prefix: 0,
        }
    }

    /// The first continuation at or after `from` that needs tokens fed.
    pub(super) fn next_multi(&self, from: usize) -> usize {
        (from..self.conts.len())
            .find(|&i| self.conts[i].len() > 1)
            .unwrap_or(self.conts.len())
    }

    pub(super) fn finished(&self) -> bool {
        self.next.is_some_and(|i| i >= self.conts.len())
    }

    /// The continuation to feed on top of the cached prompt next, if any.
    pub(super) fn next_cont(&self) -> Option<&[i32]> {
        self.next.and_then(|k| self.conts.get(k)).map(Vec::as_slice)
    }

    /// Longest continuation: the cells it needs beyond the prompt.
    fn longest_cont(&self) -> usize {
        self.conts.iter().map(Vec::len).max().unwrap_or(0)
    }
}

pub(super) enum Phase {
    Prefill,
    Decode { last: i32 },
}

/// A job in the worker, waiting or running.
pub(super) struct Active {
    pub job: Job,
    pub slot: i32,
    pub n_past: usize,
    pub phase: Phase,
    pub reserved: usize,
    /// Batch indices with logits this step: (batch index, position of the token).
    pub outputs: Vec<(i32, usize)>,
    // generation bookkeeping
    pub generated: usize,
    pub stream: TextStream,
    pub started: Instant,
    pub first_token: Option<Instant>,
    /// Tokens generated so far (kept so a preempted sequence can be re-prefilled).
    pub out: Vec<i32>,
    pub preempted: u32,
    /// Not preemptable (already preempted once, or admitted after aging).
    pub protected: bool,
    pub queued_at: Instant,
    pub prompt_len: usize,
    /// Tokens this sequence put in the current batch.
    pub in_batch: usize,
    /// Core-seconds attributed so far: each step's cost is split by tokens in the batch.
    pub compute_s: f64,
    /// `n_past` before this step's tokens were added (restored when the step is interrupted).
    pub n_past_before: usize,
    /// The prompt's prefix boundary: a prefill step always ends there, whether the prefix is
    /// new, captured or restored, because llama.cpp's numbers depend on how a prompt is cut
    /// into steps (label log-likelihoods moved by 0.24 nats between 256- and 80-token steps).
    pub split_at: Option<usize>,
    /// Capture the cells once the prefill reaches `split_at`.
    pub capture: bool,
}

impl Active {
    pub fn new(job: Job) -> Self {
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

    pub fn priority(&self) -> Priority {
        self.job.priority()
    }

    pub fn cancelled(&self) -> bool {
        matches!(&self.job, Job::Generate(g) if g.cancel.load(Ordering::Relaxed))
    }

    pub fn tokens(&self) -> &[i32] {
        match &self.job {
            Job::Generate(g) => &g.tokens,
            Job::Score(s) => &s.tokens,
        }
    }

    pub fn prefix(&self) -> usize {
        match &self.job {
            Job::Generate(g) => g.prefix,
            Job::Score(s) => s.prefix,
        }
    }

    /// Cells this sequence needs to take its next step.
    pub fn cells_needed(&self) -> usize {
        match (&self.job, &self.phase) {
            (Job::Score(s), _) => s.tokens.len() + s.longest_cont(),
            (_, Phase::Prefill) => self.tokens().len(),
            (_, Phase::Decode { .. }) => self.n_past + 1,
        }
    }

    /// Start over from its tokens, with no cells: after a preemption, or in a grown KV cache.
    /// A generation's prompt becomes prompt + what it generated (including the token sampled
    /// but not yet fed); a scoring job scores all its continuations again.
    pub fn restart(&mut self) {
        match &mut self.job {
            Job::Generate(g) => g.tokens.extend_from_slice(&self.out),
            Job::Score(s) => {
                s.next = None;
                s.scores.iter_mut().for_each(|x| *x = 0.0);
            }
        }
        self.out.clear();
        self.n_past = 0;
        self.phase = Phase::Prefill;
    }

    /// Tell a generation's caller it ended (a scoring job has replied with its scores).
    /// A sequence cancelled while still waiting reports its time in the queue and no first
    /// token; a running one its queue time before it started.
    pub fn send_finish(&mut self, reason: FinishReason, waiting: bool) {
        let Job::Generate(g) = &self.job else { return };
        let now = Instant::now();
        let tail = if reason == FinishReason::Cancelled {
            String::new()
        } else {
            self.stream.finish()
        };
        let (queue_time, time_to_first_token) = match waiting {
            true => (now - self.queued_at, Duration::ZERO),
            false => (
                self.started - g.submitted,
                self.first_token.unwrap_or(now) - g.submitted,
            ),
        };
        let _ = g.tx.send(Event::Done(Finish {
            reason,
            prompt_tokens: self.prompt_len,
            completion_tokens: self.generated,
            tail,
            queue_time,
            time_to_first_token,
            total_time: now - g.submitted,
            compute_s: self.compute_s,
        }));
    }
}

impl Scheduled for Active {
    fn priority(&self) -> Priority {
        self.job.priority()
    }

    fn queued_at(&self) -> Instant {
        self.queued_at
    }

    fn started(&self) -> Instant {
        self.started
    }

    fn need(&self, per_seq_limit: usize) -> usize {
        match &self.job {
            Job::Generate(g) => (g.tokens.len() + g.max_tokens - self.generated).min(per_seq_limit),
            Job::Score(s) => s.tokens.len() + s.longest_cont(),
        }
    }

    fn preemptable(&self) -> bool {
        self.priority() == Priority::Batch && !self.protected && matches!(self.job, Job::Generate(_))
    }

    fn want(&self) -> Want {
        match (&self.job, &self.phase) {
            (_, Phase::Decode { .. }) => Want::Decode,
            // A scoring job whose prompt is cached feeds one continuation on top of it.
            (Job::Score(s), Phase::Prefill) if self.n_past >= s.tokens.len() => {
                Want::Continuation(s.next_cont().map(|c| c.len() - 1))
            }
            (_, Phase::Prefill) => Want::Prompt {
                n_past: self.n_past,
                total: self.tokens().len(),
                split_at: self.split_at,
            },
        }
    }
}
