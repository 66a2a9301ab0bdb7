//! The cascade: try tiers from cheapest to dearest, accept the first answer whose confidence
//! reaches the tier's threshold, and record the run.

use crate::error::{Failure, MeshError, TierError};
use crate::guarding;
use crate::task::{OnError, OnExhausted, Task};
use crate::tier_call::{self, Rendered, TierOutput};
use crate::tier_spec::{TierKind, TierSpec};
use crate::Mesh;
use engine::{ChatMessage, Priority};
use guard::GuardReport;
use guard::{Guardrails, OnViolation};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Instant;

/// How to run a task.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// A version other than the newest.
    pub version: Option<i64>,
    pub priority: Priority,
    /// Start the cascade at this tier (the router's pick); tiers before it are skipped.
    pub start_tier: Option<usize>,
    /// Run only this tier (evaluation runs each tier alone).
    pub only_tier: Option<usize>,
    /// Record the run in the store (on by default through `Mesh::run`).
    pub no_record: bool,
    /// The caller's guardrails (an API key's policy): the task's `[guardrails]` win field by
    /// field, these fill the rest.
    pub guard: Option<guard::Guardrails>,
}

/// One tier tried.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    pub tier: String,
    pub kind: TierKind,
    pub output: Option<Value>,
    pub confidence: Option<f64>,
    pub margin: Option<f64>,
    pub threshold: f64,
    pub accepted: bool,
    pub error: Option<String>,
    pub signals: Value,
    pub latency_ms: f64,
    pub cost_usd: f64,
    pub tokens_in: u64,
    pub tokens_out: u64,
}

/// A task's answer with its full trace.
#[derive(Debug, Clone, Serialize)]
pub struct TaskAnswer {
    pub run_id: String,
    pub task: String,
    pub version: i64,
    pub output: Value,
    /// The tier that produced `output`.
    pub tier: String,
    pub confidence: Option<f64>,
    /// False when no tier reached its threshold and the most confident answer was returned.
    pub accepted: bool,
    pub escalated: bool,
    pub tiers: Vec<Attempt>,
    pub latency_ms: f64,
    pub cost_usd: f64,
    /// What the guardrails did (absent when nothing was checked).
    #[serde(skip_serializing_if = "GuardReport::is_empty")]
    pub guard: GuardReport,
    /// The router's pick, when a router chose the first tier (its cost is in `cost_usd`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routed: Option<crate::RoutePick>,
    /// The inputs as the tiers saw them, when a guardrail rewrote them: the audit stores
    /// these, never the originals.
    #[serde(skip)]
    pub seen_inputs: Option<BTreeMap<String, String>>,
    /// The output before pseudonymisation placeholders were restored (for the audit).
    #[serde(skip)]
    pub seen_output: Option<Value>,
}

impl Mesh {
    /// Run a task on its inputs through its ladder.
    pub async fn run(
        &self,
        name: &str,
        inputs: &BTreeMap<String, String>,
        opts: RunOptions,
    ) -> Result<TaskAnswer, MeshError> {
        let task = self.task(name, opts.version)?;
        render(&task, inputs)?; // names missing/unknown inputs before any guard runs
        let started = Instant::now();
        let run_id = format!("run_{:016x}", rand::random::<u64>());
        let rails = task
            .spec
            .guardrails
            .or(opts.guard.as_ref().unwrap_or(&Guardrails::default()));
        let guarded = match self.guard_inputs(&rails, inputs).await {
            Ok(g) => g,
            Err(e) => {
                let events = match &e {
                    MeshError::Blocked { events, .. } => events.clone(),
                    _ => BTreeMap::new(),
                };
                if !opts.no_record {
                    self.record(&task, &run_id, &[], None, started, Some(e.to_string()), &events)
                        .await;
                }
                return Err(e);
            }
        };
        let messages = render(&task, &guarded.inputs)?;
        let inputs = &guarded.inputs;
        let mut report = guarded.report.clone();
        let out_guard = self.output_guard(&task, &rails)?;
        // Router hook: tasks with `[router]` and a trained router start where it predicts,
        // unless the caller chose the tier.
        let routed = match (opts.only_tier, opts.start_tier) {
            (None, None) => self.route(&task, inputs).await,
            _ => None,
        };
        let n = task.spec.ladder.len();
        let (first, last) = match opts.only_tier {
            Some(i) if i < n => (i, i),
            Some(i) => {
                return Err(MeshError::BadInput(format!(
                    "task `{name}` has {n} tiers; tier {i} does not exist"
                )))
            }
            None => (
                opts.start_tier
                    .or(routed.as_ref().map(|r| r.start))
                    .unwrap_or(0)
                    .min(n - 1),
                n - 1,
            ),
        };
        let r = Rendered {
            messages,
            inputs,
            priority: opts.priority,
        };
        let policy = &task.spec.escalation;
        let mut attempts: Vec<Attempt> = Vec::new();
        // The kind of each failed attempt (none for an answer), beside `attempts`.
        let mut failures: Vec<Option<Failure>> = Vec::new();
        let mut chosen: Option<usize> = None;
        for tier in task.tiers().skip(first).take(last + 1 - first) {
            let t = Instant::now();
            let res = tier_call::run_timed(self, &task, tier, &r).await;
            let latency_ms = t.elapsed().as_secs_f64() * 1e3;
            failures.push(res.as_ref().err().map(TierError::failure));
            let mut a = attempt(tier, res, latency_ms, policy.min_logprob);
            let violations = match (&out_guard, &a.output) {
                (Some(og), Some(out)) => guarding::output_violations(og, out),
                _ => Vec::new(),
            };
            if !violations.is_empty() {
                let rules: Vec<String> = violations.iter().map(rule_name).collect();
                report
                    .output_violations
                    .extend(rules.iter().map(|r| format!("{}: {r}", a.tier)));
                a.accepted = false;
                a.output = None; // never returned, never chosen as "best"
                a.error = Some(format!(
                    "output guardrails: {}",
                    violations.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("; ")
                ));
                if rails.on_violation() == OnViolation::Fail {
                    attempts.push(a);
                    let err = MeshError::OutputRejected {
                        task: name.into(),
                        tier: tier.id(),
                        rules: rules.join(", "),
                    };
                    self.record(
                        &task,
                        &run_id,
                        &attempts,
                        None,
                        started,
                        Some(err.to_string()),
                        &report.events(),
                    )
                    .await;
                    return Err(err);
                }
            }
            tracing::debug!(task = name, tier = %a.tier, confidence = ?a.confidence, accepted = a.accepted, error = ?a.error, "tier tried");
            let failed = a.error.clone();
            let accepted = a.accepted;
            attempts.push(a);
            if let (Some(message), OnError::Fail) = (failed, policy.on_error) {
                let err = classify(name, &failures, &attempts).unwrap_or(MeshError::TierFailed {
                    task: name.into(),
                    tier: tier.id(),
                    message,
                });
                self.record(
                    &task,
                    &run_id,
                    &attempts,
                    None,
                    started,
                    Some(err.to_string()),
                    &report.events(),
                )
                .await;
                return Err(err);
            }
            if accepted {
                chosen = Some(attempts.len() - 1);
                break;
            }
        }
        let below = chosen.is_none();
        if below && policy.on_exhausted == OnExhausted::Best {
            chosen = attempts
                .iter()
                .enumerate()
                .filter(|(_, a)| a.output.is_some())
                .max_by(|x, y| x.1.confidence.unwrap_or(0.0).total_cmp(&y.1.confidence.unwrap_or(0.0)))
                .map(|(i, _)| i);
        }
        let Some(i) = chosen else {
            let err = classify(name, &failures, &attempts).unwrap_or_else(|| MeshError::Exhausted {
                task: name.into(),
                attempts: attempts.clone(),
            });
            self.record(
                &task,
                &run_id,
                &attempts,
                None,
                started,
                Some(err.to_string()),
                &report.events(),
            )
            .await;
            return Err(err);
        };
        let seen = attempts[i].output.clone().unwrap_or(Value::Null);
        let output = match &guarded.vault {
            Some(v) => guard::restore_json(&seen, v),
            None => seen.clone(),
        };
        let answer = TaskAnswer {
            run_id: run_id.clone(),
            task: task.spec.name.clone(),
            version: task.spec.version,
            seen_output: (output != seen).then_some(seen),
            output,
            tier: attempts[i].tier.clone(),
            confidence: attempts[i].confidence,
            accepted: !below,
            escalated: attempts.len() > 1,
            latency_ms: started.elapsed().as_secs_f64() * 1e3,
            cost_usd: attempts.iter().map(|a| a.cost_usd).sum::<f64>() + routed.as_ref().map_or(0.0, |r| r.cost_usd),
            routed,
            tiers: attempts,
            seen_inputs: guarded.rewritten.then(|| guarded.inputs.clone()),
            guard: report,
        };
        if !opts.no_record {
            self.record(
                &task,
                &run_id,
                &answer.tiers,
                Some(&answer),
                started,
                None,
                &answer.guard.events(),
            )
            .await;
        }
        Ok(answer)
    }

    #[allow(clippy::too_many_arguments)]
    async fn record(
        &self,
        task: &Task,
        run_id: &str,
        attempts: &[Attempt],
        answer: Option<&TaskAnswer>,
        started: Instant,
        error: Option<String>,
        guard: &BTreeMap<String, u64>,
    ) {
        let Some(store) = &self.store else { return };
        let rec = store::RunRecord {
            id: run_id.to_owned(),
            ts_ms: store::now_ms(),
            task: task.spec.name.clone(),
            version: task.spec.version,
            tier: answer.map(|a| a.tier.clone()),
            tier_path: attempts.iter().map(|a| a.tier.clone()).collect(),
            confidences: attempts.iter().map(|a| a.confidence).collect(),
            escalated: attempts.len() > 1,
            outcome: match answer {
                Some(a) if a.accepted => "ok",
                Some(_) => "below_threshold",
                None if guard
                    .keys()
                    .any(|k| k.starts_with("blocked.") || k == "injection.blocked") =>
                {
                    "blocked"
                }
                None => "error",
            }
            .into(),
            latency_ms: started.elapsed().as_secs_f64() * 1e3,
            cost_usd: answer.map_or_else(|| attempts.iter().map(|a| a.cost_usd).sum(), |a| a.cost_usd),
            tokens: attempts.iter().map(|a| (a.tokens_in + a.tokens_out) as i64).sum(),
            error,
            guard: guard.clone(),
        };
        if let Err(e) = store.record_run(&rec).await {
            tracing::warn!(task = %rec.task, error = %e, "could not record a task run");
        }
    }
}

/// The error of a run that produced no answer when every attempt failed for a reason the
/// caller must hear: each prompt was too long for its model (a 400: retrying cannot help),
/// or some queue was full and the rest were too long (a 429: retry later). `None` otherwise.
fn classify(task: &str, failures: &[Option<Failure>], attempts: &[Attempt]) -> Option<MeshError> {
    if failures.is_empty()
        || failures
            .iter()
            .any(|f| !matches!(f, Some(Failure::TooLong | Failure::Overloaded)))
    {
        return None;
    }
    let message = attempts
        .iter()
        .filter_map(|a| a.error.as_ref().map(|e| format!("{}: {e}", a.tier)))
        .collect::<Vec<_>>()
        .join("; ");
    let task = task.to_owned();
    Some(if failures.iter().all(|f| *f == Some(Failure::TooLong)) {
        MeshError::InputTooLong { task, message }
    } else {
        MeshError::Overloaded { task, message }
    })
}

/// A violation's rule name (`too_long`, `pii`, ...), as serialised.
fn rule_name(v: &guard::Violation) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|j| j.get("rule").and_then(|r| r.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

fn attempt(tier: &TierSpec, res: Result<TierOutput, TierError>, latency_ms: f64, min_logprob: Option<f32>) -> Attempt {
    let mut a = Attempt {
        tier: tier.id(),
        kind: tier.kind,
        output: None,
        confidence: None,
        margin: None,
        threshold: tier.threshold,
        accepted: false,
        error: None,
        signals: Value::Null,
        latency_ms,
        cost_usd: 0.0,
        tokens_in: 0,
        tokens_out: 0,
    };
    match res {
        Err(e) => a.error = Some(e.to_string()),
        Ok(o) => {
            let conf_ok = match o.confidence {
                Some(c) => c >= tier.threshold,
                None => tier.threshold <= 0.0,
            };
            let margin_ok = tier.min_margin.is_none_or(|m| o.margin.is_some_and(|x| x >= m));
            let lp_ok = min_logprob.is_none_or(|floor| o.min_logprob.is_none_or(|x| x >= floor as f64));
            a.accepted = conf_ok && margin_ok && lp_ok;
            a.output = Some(o.output);
            a.confidence = o.confidence;
            a.margin = o.margin;
            a.signals = o.signals;
            a.cost_usd = o.cost_usd;
            a.tokens_in = o.tokens_in;
            a.tokens_out = o.tokens_out;
        }
    }
    a
}

/// Check the inputs and render the messages.
pub fn render(task: &Task, inputs: &BTreeMap<String, String>) -> Result<Vec<ChatMessage>, MeshError> {
    let spec = &task.spec;
    if let Some(missing) = spec.inputs.iter().find(|k| !inputs.contains_key(*k)) {
        return Err(MeshError::BadInput(format!(
            "missing input `{missing}` (task `{}` takes: {})",
            spec.name,
            spec.inputs.join(", ")
        )));
    }
    if let Some(extra) = inputs.keys().find(|k| !spec.inputs.contains(k)) {
        return Err(MeshError::BadInput(format!(
            "unknown input `{extra}` (task `{}` takes: {})",
            spec.name,
            spec.inputs.join(", ")
        )));
    }
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    let render = |t: &str| {
        env.render_str(t, inputs)
            .map_err(|e| MeshError::BadInput(format!("rendering the prompt: {e}")))
    };
    let mut messages = Vec::new();
    if let Some(sys) = &spec.system {
        messages.push(ChatMessage::new("system", render(sys)?));
    }
    messages.push(ChatMessage::new("user", render(&spec.prompt)?));
    Ok(messages)
}
