//! Prometheus metrics, per model and priority class.

use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};
use std::time::Duration;

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    rejected: IntCounterVec,
    tokens_in: IntCounterVec,
    tokens_out: IntCounterVec,
    ttft: HistogramVec,
    latency: HistogramVec,
    pub queue_depth: IntGaugeVec,
    pub running: IntGaugeVec,
    pub resident_bytes: IntGaugeVec,
    pub pool_events: IntGaugeVec,
    pub preemptions: IntGaugeVec,
    /// Prompt tokens restored from the prefix cache instead of computed.
    pub prefix_tokens: IntGaugeVec,
    task_runs: IntCounterVec,
    guard_events: IntCounterVec,
    /// Shadow runs, agreement and drift alerts (see `crate::shadow`).
    pub shadow: crate::shadow::ShadowMetrics,
}

const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let mc = &["model", "class"];
        let requests = IntCounterVec::new(
            Opts::new("rightsize_requests_total", "Finished generation requests"),
            &["model", "class", "finish"],
        )
        .unwrap();
        let rejected = IntCounterVec::new(
            Opts::new("rightsize_rejected_total", "Requests refused before running"),
            &["model", "class", "reason"],
        )
        .unwrap();
        let tokens_in = IntCounterVec::new(Opts::new("rightsize_prompt_tokens_total", "Prompt tokens"), mc).unwrap();
        let tokens_out =
            IntCounterVec::new(Opts::new("rightsize_completion_tokens_total", "Completion tokens"), mc).unwrap();
        let ttft = HistogramVec::new(
            HistogramOpts::new("rightsize_time_to_first_token_seconds", "Time to first token")
                .buckets(BUCKETS.to_vec()),
            mc,
        )
        .unwrap();
        let latency = HistogramVec::new(
            HistogramOpts::new("rightsize_request_duration_seconds", "Request latency").buckets(BUCKETS.to_vec()),
            mc,
        )
        .unwrap();
        let queue_depth = IntGaugeVec::new(
            Opts::new("rightsize_queue_depth", "Sequences waiting for a slot"),
            &["model"],
        )
        .unwrap();
        let running = IntGaugeVec::new(
            Opts::new("rightsize_running_sequences", "Sequences decoding"),
            &["model"],
        )
        .unwrap();
        let resident_bytes = IntGaugeVec::new(
            Opts::new("rightsize_resident_bytes", "Bytes of resident models"),
            &["model"],
        )
        .unwrap();
        let pool_events = IntGaugeVec::new(
            Opts::new(
                "rightsize_pool_events_total",
                "Model loads (wakes of asleep models among them), evictions and keep-alive expirations",
            ),
            &["event"],
        )
        .unwrap();
        let preemptions = IntGaugeVec::new(
            Opts::new(
                "rightsize_preemptions_total",
                "Batch sequences preempted by interactive ones (since the model was loaded)",
            ),
            &["model"],
        )
        .unwrap();
        let prefix_tokens = IntGaugeVec::new(
            Opts::new(
                "rightsize_prefix_cached_tokens_total",
                "Prompt tokens restored from cached prefix cells instead of computed (since the model was loaded)",
            ),
            &["model"],
        )
        .unwrap();
        let task_runs = IntCounterVec::new(
            Opts::new(
                "rightsize_task_runs_total",
                "Task runs by answering tier and whether they escalated",
            ),
            &["task", "tier", "escalated"],
        )
        .unwrap();
        let guard_events = IntCounterVec::new(
            Opts::new(
                "rightsize_guard_events_total",
                "Guardrail outcomes: redacted/blocked PII per kind, injections flagged/blocked, output rules failed",
            ),
            &["scope", "event"],
        )
        .unwrap();
        for c in [&requests, &rejected, &tokens_in, &tokens_out, &task_runs, &guard_events] {
            registry.register(Box::new(c.clone())).unwrap();
        }
        for h in [&ttft, &latency] {
            registry.register(Box::new(h.clone())).unwrap();
        }
        for g in [
            &queue_depth,
            &running,
            &resident_bytes,
            &pool_events,
            &preemptions,
            &prefix_tokens,
        ] {
            registry.register(Box::new(g.clone())).unwrap();
        }
        let shadow = crate::shadow::ShadowMetrics::new(&registry);
        Self {
            registry,
            requests,
            rejected,
            tokens_in,
            tokens_out,
            ttft,
            latency,
            queue_depth,
            running,
            resident_bytes,
            pool_events,
            preemptions,
            prefix_tokens,
            task_runs,
            guard_events,
            shadow,
        }
    }

    pub fn finished(&self, model: &str, class: &str, f: &engine::Finish, latency: Duration) {
        // One structured line per request: ids, sizes and timings, never prompt text.
        tracing::info!(model, class, finish = ?f.reason, prompt_tokens = f.prompt_tokens, completion_tokens = f.completion_tokens,
            ttft_ms = f.time_to_first_token.as_millis() as u64, latency_ms = latency.as_millis() as u64, "request finished");
        let reason = match f.reason {
            engine::FinishReason::Stop => "stop",
            engine::FinishReason::Length => "length",
            engine::FinishReason::Cancelled => "cancelled",
        };
        self.requests.with_label_values(&[model, class, reason]).inc();
        self.tokens_in
            .with_label_values(&[model, class])
            .inc_by(f.prompt_tokens as u64);
        self.tokens_out
            .with_label_values(&[model, class])
            .inc_by(f.completion_tokens as u64);
        self.ttft
            .with_label_values(&[model, class])
            .observe(f.time_to_first_token.as_secs_f64());
        self.latency
            .with_label_values(&[model, class])
            .observe(latency.as_secs_f64());
    }

    pub fn task_run(&self, task: &str, tier: &str, escalated: bool) {
        self.task_runs
            .with_label_values(&[task, tier, if escalated { "true" } else { "false" }])
            .inc();
    }

    /// Guardrail counters (`redacted.email`, `injection.blocked`, ...) of a task run or a
    /// request; `scope` is the task name or `request`.
    pub fn guard_events(&self, scope: &str, events: &std::collections::BTreeMap<String, u64>) {
        for (event, n) in events {
            self.guard_events.with_label_values(&[scope, event]).inc_by(*n);
        }
    }

    /// A request whose client went away before it finished.
    pub fn cancelled(&self, model: &str, class: &str) {
        self.requests.with_label_values(&[model, class, "cancelled"]).inc();
    }

    pub fn rejected(&self, model: &str, class: &str, e: &engine::EngineError) {
        let reason = match e {
            engine::EngineError::QueueFull(_) => "queue_full",
            _ => "invalid",
        };
        self.rejected.with_label_values(&[model, class, reason]).inc();
    }

    pub fn embedded(&self, model: &str, tokens: usize, latency: Duration) {
        self.requests.with_label_values(&[model, "interactive", "stop"]).inc();
        self.tokens_in
            .with_label_values(&[model, "interactive"])
            .inc_by(tokens as u64);
        self.latency
            .with_label_values(&[model, "interactive"])
            .observe(latency.as_secs_f64());
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding to a Vec does not fail; a request path never panics on it either way.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::warn!(error = %e, "could not encode the metrics");
        }
        String::from_utf8_lossy(&buf).into_owned()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
