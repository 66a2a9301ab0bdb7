//! Live counters of one engine, read by `bench`, the pool and `/metrics` without locking.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

#[derive(Debug, Default)]
pub struct EngineStats {
    pub queued: AtomicUsize,
    pub running: AtomicUsize,
    pub completed: AtomicU64,
    pub tokens_out: AtomicU64,
    pub steps: AtomicU64,
    pub batch_tokens: AtomicU64,
    pub decode_micros: AtomicU64,
    pub preemptions: AtomicU64,
    /// Batch-only steps abandoned mid-computation so an interactive arrival could start.
    pub interrupted_steps: AtomicU64,
    /// Sequences that started from cached prefix cells, and the prompt tokens that saved.
    pub prefix_hits: AtomicU64,
    pub prefix_tokens: AtomicU64,
}

impl EngineStats {
    pub(crate) fn record_step(&self, n_tokens: usize, took: Duration) {
        self.steps.fetch_add(1, Ordering::Relaxed);
        self.batch_tokens.fetch_add(n_tokens as u64, Ordering::Relaxed);
        self.decode_micros.fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// A plain-value copy.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            queued: self.queued.load(Ordering::Relaxed),
            running: self.running.load(Ordering::Relaxed),
            completed: self.completed.load(Ordering::Relaxed),
            tokens_out: self.tokens_out.load(Ordering::Relaxed),
            steps: self.steps.load(Ordering::Relaxed),
            batch_tokens: self.batch_tokens.load(Ordering::Relaxed),
            decode_time: Duration::from_micros(self.decode_micros.load(Ordering::Relaxed)),
            preemptions: self.preemptions.load(Ordering::Relaxed),
            interrupted_steps: self.interrupted_steps.load(Ordering::Relaxed),
            prefix_hits: self.prefix_hits.load(Ordering::Relaxed),
            prefix_tokens: self.prefix_tokens.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct StatsSnapshot {
    pub queued: usize,
    pub running: usize,
    pub completed: u64,
    pub tokens_out: u64,
    pub steps: u64,
    pub batch_tokens: u64,
    pub decode_time: Duration,
    pub preemptions: u64,
    pub interrupted_steps: u64,
    pub prefix_hits: u64,
    pub prefix_tokens: u64,
}
