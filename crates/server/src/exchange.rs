//! [`Exchange`]: one request (or task run) from its handler to its audit record — who asked,
//! what went in as the audit keeps it, what the guards did, its metrics class and where the
//! time went — and the endings that write the record and the metrics, once:
//!
//! * [`Exchange::ok`]: the answer's metrics, then its record, durable before the answer
//!   leaves (a record that cannot be written fails the request with 503, see `crate::audit`);
//! * [`Exchange::fail`] / [`Exchange::finish`]: a failed request, recorded best effort with
//!   `error:<http status>` and no output;
//! * [`Exchange::stream_failed`]: a stream that broke off, with the text sent so far;
//! * `cancelled`: a stream dropped before it ended (the client went away) is counted and
//!   recorded when the value is dropped — nobody is waiting, so the record is written on a
//!   spawned task.
//!
//! Handlers build one at their start, fill in the input once it is known (and say whether
//! the guards have rewritten it: until they have, a failure record keeps it PII-redacted),
//! and end it; nothing else in the crate builds a `store::AuditRecord`.

use crate::audit;
use crate::error::ApiError;
use crate::openai::GuardSummary;
use crate::state::{AppState, Caller};
use axum::http::HeaderMap;
use axum::response::Response;
use std::time::{Duration, Instant};
use store::AuditRecord;

/// Where a generation's time went (the `server-timing` header, the latency metric).
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    /// When the work began (generation or embedding), after parsing and guards.
    pub started: Instant,
    pub lease: Duration,
    /// The hop onto the blocking pool and back, beside the engine's own submit time.
    pub hop: Duration,
    pub submit: Duration,
    pub audit: Duration,
}

/// What an answer adds to its record.
pub struct Done<'a> {
    pub output: Output,
    pub tokens_in: usize,
    pub tokens_out: usize,
    pub cost_usd: f64,
    pub work: Work<'a>,
}

/// The answer as the record keeps it.
pub enum Output {
    /// Text: kept under the content policy (`hashes` or `full`).
    Text(String),
    /// Already a keyed hash (embeddings: vectors are not text).
    Hash(String),
}

/// What the metrics count an answer as.
pub enum Work<'a> {
    Generation(&'a engine::Finish),
    Embedding,
    /// A task run (counted with its tiers by `crate::tasks`); `accepted: false` is recorded
    /// as `below_threshold`.
    Task {
        accepted: bool,
    },
}

/// One request from handler to audit record. See the module docs.
pub struct Exchange {
    pub state: AppState,
    pub caller: Caller,
    pub headers: HeaderMap,
    /// The `x-request-id` the client gets back (set by the middleware in `serve_on`).
    request_id: String,
    started: Instant,
    /// `request` or `task`.
    kind: &'static str,
    /// The model (for a task: the answering tier) as the record names it.
    pub model: Option<String>,
    pub task: Option<String>,
    pub task_version: Option<i64>,
    pub tier_path: Vec<String>,
    /// The input as the record keeps it (see `crate::audit` for each shape).
    input: String,
    /// Whether `input` is what the model saw; until then a failure record redacts it.
    screened: bool,
    /// What the input guards did, and what the answer needs on its way out.
    pub guard: Option<guard::Screened>,
    /// The metrics class (`interactive` or `batch`).
    pub class: &'static str,
    pub timings: Timings,
    /// Streaming: the text sent so far (recorded if the stream ends early).
    pub partial: String,
    /// Set once a stream has started: dropping the value before an ending is a cancellation.
    streaming: bool,
    audited: bool,
    counted: bool,
}

impl Exchange {
    /// A request for `model` (the name as the client sent it; kept as `unknown:<hash>` when
    /// it is not configured).
    pub fn request(state: &AppState, caller: &Caller, headers: &HeaderMap, model: &str) -> Self {
        let mut ex = Self::new(state, caller, headers, "request");
        ex.model = Some(audit::requested_model(state, model));
        ex
    }

    /// A task run (its task, version and tier are named in the record once it has run or
    /// failed).
    pub fn task(state: &AppState, caller: &Caller, headers: &HeaderMap) -> Self {
        Self::new(state, caller, headers, "task")
    }

    fn new(state: &AppState, caller: &Caller, headers: &HeaderMap, kind: &'static str) -> Self {
        let request_id = headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|s| audit::valid_request_id(s))
            .map(str::to_owned)
            // Only when the router runs without `serve_on`'s middleware (embedded use).
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let now = Instant::now();
        Self {
            state: state.clone(),
            caller: caller.clone(),
            headers: headers.clone(),
            request_id,
            started: now,
            kind,
            model: None,
            task: None,
            task_version: None,
            tier_path: Vec::new(),
            input: String::new(),
            screened: false,
            guard: None,
            class: "interactive",
            timings: Timings {
                started: now,
                lease: Duration::ZERO,
                hop: Duration::ZERO,
                submit: Duration::ZERO,
                audit: Duration::ZERO,
            },
            partial: String::new(),
            streaming: false,
            audited: false,
            counted: false,
        }
    }

    /// The input as the record keeps it; `screened`: what the model saw (the guards ran or
    /// had nothing to do), else a failure record keeps it PII-redacted.
    pub fn set_input(&mut self, input: String, screened: bool) {
        self.input = input;
        self.screened = screened;
    }

    /// The model's name for the metrics (a configured model once generation started).
    pub fn model(&self) -> &str {
        self.model.as_deref().unwrap_or_default()
    }

    /// The answer is ready: count it, then record it. `Err` (503) when the record cannot be
    /// written; the answer must not leave then.
    pub async fn ok(&mut self, done: Done<'_>) -> Result<(), ApiError> {
        let elapsed = self.timings.started.elapsed();
        let m = &self.state.metrics;
        match done.work {
            Work::Generation(f) => m.finished(self.model(), self.class, f, elapsed),
            Work::Embedding => m.embedded(self.model(), done.tokens_in, elapsed),
            Work::Task { .. } => {}
        }
        if let (Some(g), false) = (&self.guard, matches!(done.work, Work::Task { .. })) {
            m.guard_events("request", &g.report.events());
        }
        let status = match done.work {
            Work::Task { accepted: false } => "below_threshold",
            _ => "ok",
        };
        let output = match &done.output {
            Output::Text(t) => audit::content(&self.state, t),
            Output::Hash(h) => h.clone(),
        };
        let rec = self.record(status.into(), &self.input, output, Some(&done));
        (self.counted, self.audited) = (true, true);
        let t = Instant::now();
        let res = audit::record(&self.state, rec).await;
        self.timings.audit = t.elapsed();
        res
    }

    /// The request failed with `e`: recorded best effort (`error:<http status>`, no output),
    /// once, and not when the failure was the audit itself.
    pub async fn failed(&mut self, e: &ApiError) {
        if self.audited || self.state.audit.is_none() || e.code == Some("audit_unavailable") {
            return;
        }
        self.audited = true;
        let input = self.input_for_failure().await;
        let rec = self.record(audit::error_status(e), &input, String::new(), None);
        audit::record_failure(&self.state, rec).await;
    }

    /// [`Exchange::failed`], then `Err(e)`.
    pub async fn fail<T>(mut self, e: ApiError) -> Result<T, ApiError> {
        self.failed(&e).await;
        Err(e)
    }

    /// `res` as it is, recorded first when it failed.
    pub async fn finish(mut self, res: Result<Response, ApiError>) -> Result<Response, ApiError> {
        if let Err(e) = &res {
            self.failed(e).await;
        }
        res
    }

    /// A stream is under way: from now on, dropping this value before an ending counts and
    /// records the request as `cancelled`.
    pub fn stream_started(&mut self) {
        self.streaming = true;
    }

    /// The stream broke off with HTTP `status` (deadline 504, engine gone 503, engine error
    /// 500): recorded best effort with the text sent so far. Unless `counted`, the metrics
    /// count it as cancelled when the stream ends.
    pub async fn stream_failed(&mut self, status: u16, counted: bool) {
        self.counted |= counted;
        if self.audited || self.state.audit.is_none() {
            return;
        }
        self.audited = true;
        let rec = self.record(
            format!("error:{status}"),
            &self.input,
            audit::content(&self.state, &self.partial),
            None,
        );
        audit::record_failure(&self.state, rec).await;
    }

    /// The input a failure record keeps: PII-redacted (under `audit.content = "full"`) unless
    /// the guards already rewrote it.
    async fn input_for_failure(&self) -> String {
        match (self.screened, self.state.cfg.audit.content) {
            (false, crate::config::AuditContent::Full) => self.state.guards.redact(&self.input).await,
            _ => self.input.clone(),
        }
    }

    /// What the record's `guard` holds: for a request the counters and the injection score,
    /// for a task its report; `{}` when no guard ran or the request failed.
    fn guard_json(&self, done: Option<&Done>) -> serde_json::Value {
        let empty = || serde_json::json!({});
        match (&self.guard, done) {
            (Some(g), Some(_)) if self.kind == "task" => serde_json::to_value(&g.report).unwrap_or_default(),
            (Some(g), Some(_)) => serde_json::to_value(GuardSummary::from(g)).unwrap_or_else(|_| empty()),
            _ => empty(),
        }
    }

    /// The record of this request. `input` is raw (the content policy is applied here);
    /// `output` is as it will be stored.
    fn record(&self, status: String, input: &str, output: String, done: Option<&Done>) -> AuditRecord {
        let model = self.model.clone();
        AuditRecord {
            ts_ms: store::now_ms(),
            kind: self.kind.into(),
            request_id: self.request_id.clone(),
            key_id: self.caller.key_id.clone(),
            task: self.task.clone(),
            task_version: self.task_version,
            model_hash: model.as_deref().and_then(|m| audit::model_hash(&self.state, m)),
            model,
            tier_path: self.tier_path.clone(),
            guard: self.guard_json(done),
            input: audit::content(&self.state, input),
            output,
            tokens_in: done.map_or(0, |d| d.tokens_in as i64),
            tokens_out: done.map_or(0, |d| d.tokens_out as i64),
            latency_ms: self.started.elapsed().as_secs_f64() * 1e3,
            cost_usd: done.map_or(0.0, |d| d.cost_usd),
            status,
        }
    }
}

impl Drop for Exchange {
    /// A stream dropped before its ending: the client went away. Counted as cancelled and
    /// recorded with the text sent so far (best effort, on a spawned task).
    fn drop(&mut self) {
        if !self.streaming {
            return;
        }
        if !self.counted {
            self.state.metrics.cancelled(self.model(), self.class);
        }
        if self.audited || self.state.audit.is_none() {
            return;
        }
        let rec = self.record(
            "cancelled".into(),
            &self.input,
            audit::content(&self.state, &self.partial),
            None,
        );
        let state = self.state.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { audit::record_failure(&state, rec).await });
        }
    }
}
