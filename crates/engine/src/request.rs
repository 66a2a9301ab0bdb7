//! What callers send to the engine and what comes back, token by token.

use crate::{ChatMessage, Constraint, EngineError, SamplingParams};
use serde::Serialize;
use std::sync::{atomic::AtomicBool, atomic::Ordering, Arc};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;

/// The input of a sequence.
#[derive(Debug, Clone)]
pub enum Prompt {
    /// Raw text; special-token markup in it is parsed.
    Text(String),
    /// Messages formatted with the model's chat template.
    Chat(Vec<ChatMessage>),
    /// Already tokenized.
    Tokens(Vec<i32>),
}

/// Scheduling class: interactive sequences are admitted before batch ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    #[default]
    Interactive,
    Batch,
}

/// One generation request.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    pub prompt: Prompt,
    pub params: SamplingParams,
    pub constraint: Option<Constraint>,
    /// `Some(n)`: report the chosen token's logprob and the `n` best alternatives per step.
    pub logprobs: Option<usize>,
    pub priority: Priority,
}

impl GenerateRequest {
    pub fn new(prompt: Prompt, params: SamplingParams) -> Self {
        Self {
            prompt,
            params,
            constraint: None,
            logprobs: None,
            priority: Priority::Interactive,
        }
    }
}

/// Log-probability of the chosen token, and the best alternatives at that step.
///
/// Values are from the model's distribution restricted to what the constraint allows (forced
/// tokens have logprob 0), before temperature and penalties.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenLogprob {
    pub token: String,
    pub logprob: f32,
    pub top: Vec<(String, f32)>,
}

/// One generated token.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenEvent {
    pub id: i32,
    /// Text now safe to show (may be empty while a multi-byte character or a possible stop
    /// string is held back).
    pub text: String,
    pub logprob: Option<TokenLogprob>,
}

/// Why a sequence ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// End-of-generation token, stop string, or the constraint is complete.
    Stop,
    /// `max_tokens` or the context limit.
    Length,
    Cancelled,
}

/// Summary sent when a sequence ends.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finish {
    pub reason: FinishReason,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Text released at the end (held back for stop-string matching).
    pub tail: String,
    pub queue_time: Duration,
    pub time_to_first_token: Duration,
    pub total_time: Duration,
    /// Core-seconds of compute attributed to this sequence: each forward pass's wall time ×
    /// threads, split over the sequences in that batch by their token count. The unit cost
    /// reports build on.
    pub compute_s: f64,
}

/// A message from a running sequence.
#[derive(Debug, Clone)]
pub enum Event {
    Token(TokenEvent),
    Done(Finish),
    Error(String),
}

/// Handle to a running sequence. Dropping it cancels the sequence and frees its KV cells.
#[derive(Debug)]
pub struct Sequence {
    pub(crate) rx: UnboundedReceiver<Event>,
    pub(crate) cancel: Arc<AtomicBool>,
    pub prompt_tokens: usize,
}

/// A finished generation, collected.
#[derive(Debug, Clone)]
pub struct Completion {
    pub text: String,
    pub tokens: Vec<TokenEvent>,
    pub finish: Finish,
}

impl Completion {
    /// Mean and minimum logprob of the chosen tokens (when logprobs were requested).
    pub fn logprob_stats(&self) -> Option<(f32, f32)> {
        let lps: Vec<f32> = self
            .tokens
            .iter()
            .filter_map(|t| t.logprob.as_ref().map(|l| l.logprob))
            .collect();
        if lps.is_empty() {
            return None;
        }
        let mean = lps.iter().sum::<f32>() / lps.len() as f32;
        Some((mean, lps.iter().copied().fold(f32::INFINITY, f32::min)))
    }
}

impl Sequence {
    /// Next event; `None` once the sequence is over.
    pub async fn next(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// Whether the engine is done with this sequence (finished, failed or cancelled); some
    /// events may still be unread.
    pub fn is_finished(&self) -> bool {
        self.rx.is_closed()
    }

    /// An event if one is ready now.
    pub fn try_next(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }

    /// Blocking variant of [`Sequence::next`] (not for async contexts).
    pub fn next_blocking(&mut self) -> Option<Event> {
        self.rx.blocking_recv()
    }

    /// Ask the engine to stop this sequence; it ends with `FinishReason::Cancelled`.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    /// A cloneable cancel switch (e.g. for a client-disconnect watcher).
    pub fn cancel_handle(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }

    /// Wait for the whole completion, calling `on_token` for each token as it arrives.
    pub fn collect_blocking(mut self, mut on_token: impl FnMut(&TokenEvent)) -> Result<Completion, EngineError> {
        let mut acc = Accumulator::default();
        while let Some(ev) = self.next_blocking() {
            if let Event::Token(t) = &ev {
                on_token(t);
            }
            if let Some(done) = acc.push(ev) {
                return done;
            }
        }
        Err(EngineError::ShutDown)
    }

    /// Async variant of [`Sequence::collect_blocking`].
    pub async fn collect(mut self) -> Result<Completion, EngineError> {
        let mut acc = Accumulator::default();
        while let Some(ev) = self.next().await {
            if let Some(done) = acc.push(ev) {
                return done;
            }
        }
        Err(EngineError::ShutDown)
    }
}

/// Folds a sequence's events into a [`Completion`].
#[derive(Default)]
struct Accumulator {
    text: String,
    tokens: Vec<TokenEvent>,
}

impl Accumulator {
    /// Take one event; the outcome once the sequence is over.
    fn push(&mut self, ev: Event) -> Option<Result<Completion, EngineError>> {
        match ev {
            Event::Token(t) => {
                self.text.push_str(&t.text);
                self.tokens.push(t);
                None
            }
            Event::Done(f) => {
                self.text.push_str(&f.tail);
                let text = std::mem::take(&mut self.text);
                Some(Ok(Completion {
                    text,
                    tokens: std::mem::take(&mut self.tokens),
                    finish: f,
                }))
            }
            Event::Error(e) => Some(Err(EngineError::Decode(e))),
        }
    }
}

impl Drop for Sequence {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}
