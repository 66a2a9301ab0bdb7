//! Shadow evaluation: a sampled share of live task runs is run again on the task's top tier in
//! the background, and the agreement between the served answer and the top tier's answer is
//! tracked per task. A rolling agreement below `min_agreement` is a **drift alert** (warn log,
//! `rightsize_drift_alert{task,source="shadow"}`, and `drift_alert` in the task's stats).
//!
//! Why: a cascade's thresholds were calibrated on yesterday's data; nobody labels live
//! traffic. When the cheap tiers start answering differently from the best tier (new inputs,
//! a retrained head, a remote model changed behind its name), agreement falls before users
//! complain. The top tier is the reference because it is what escalation trusts.
//!
//! Costs and safety: shadow runs are batch priority (inside an engine, interactive work is
//! admitted first and preempts them), never recorded as task runs, bounded by
//! `max_in_flight` (a sample that finds no room is skipped and counted, never queued), and
//! spawned after the live answer exists, so the live response never waits for them. No lock
//! is held across an `.await`; a shadow run still in flight at shutdown is dropped with the
//! runtime. Logs and rows carry task, tiers and numbers, never inputs or outputs.

use crate::error::ApiError;
use crate::state::AppState;
use mesh::{OutputKind, RunOptions, TaskAnswer};
use prometheus::{GaugeVec, IntCounterVec, Opts, Registry};
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// `[shadow]` in the server config: shadow runs and scheduled re-evaluation.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShadowConfig {
    /// Share of live task runs (answered below the top tier) shadow-run on the top tier.
    /// Default 0 (off): every sample costs a top-tier run, which on a CPU box takes cores
    /// from live work in other models and on a remote top tier is billed per call; turn it
    /// on per deployment (0.02–0.1 is enough to see drift within a day at modest traffic).
    pub rate: f64,
    /// Shadow runs in flight at once; a sample that finds them all busy is skipped (counted
    /// in `rightsize_shadow_skipped_total` and `skipped` in stats).
    pub max_in_flight: usize,
    /// Rolling window: the last this many scored samples of a task.
    pub window: usize,
    /// No alert until the window holds this many samples.
    pub min_samples: usize,
    /// Alert when the window's mean agreement falls below this.
    pub min_agreement: f64,
    /// Re-evaluate every task that has a `dataset` this often (seconds); 0 = off.
    pub reeval_every_s: u64,
    /// Data set items in flight per tier during a re-evaluation (batch priority).
    pub reeval_concurrency: usize,
    /// Alert when re-evaluated quality drops by more than this (absolute) below the last
    /// re-evaluation that raised no alert (as `rightsize eval --gate --tolerance`).
    pub reeval_tolerance: f64,
}

impl Default for ShadowConfig {
    fn default() -> Self {
        Self {
            rate: 0.0,
            max_in_flight: 2,
            window: 100,
            min_samples: 20,
            min_agreement: 0.8,
            reeval_every_s: 0,
            reeval_concurrency: 4,
            reeval_tolerance: 0.02,
        }
    }
}

impl ShadowConfig {
    pub fn check(&self) -> Result<(), String> {
        let bad = |m: &str| Err(format!("[shadow] {m}"));
        if !(0.0..=1.0).contains(&self.rate) {
            return bad("rate must be between 0 and 1");
        }
        if self.max_in_flight == 0 || self.window == 0 || self.reeval_concurrency == 0 {
            return bad("max_in_flight, window and reeval_concurrency must be 1 or more");
        }
        if self.min_samples > self.window {
            return bad("min_samples cannot exceed window (the alert could never fire)");
        }
        // Written so that NaN is refused too.
        #[allow(clippy::neg_cmp_op_on_partial_ord)]
        if !(0.0..=1.0).contains(&self.min_agreement) || !(self.reeval_tolerance >= 0.0) {
            return bad("min_agreement must be between 0 and 1 and reeval_tolerance 0 or more");
        }
        Ok(())
    }

    pub fn rule(&self) -> store::DriftRule {
        store::DriftRule {
            window: self.window,
            min_samples: self.min_samples,
            min_agreement: self.min_agreement,
        }
    }
}

/// Prometheus series of continuous evaluation (registered with the server's other metrics).
pub struct ShadowMetrics {
    runs: IntCounterVec,
    skipped: IntCounterVec,
    agreement: GaugeVec,
    alert: GaugeVec,
    alerts: IntCounterVec,
    pub(crate) reeval_quality: GaugeVec,
}

impl ShadowMetrics {
    pub fn new(registry: &Registry) -> Self {
        let runs = IntCounterVec::new(
            Opts::new(
                "rightsize_shadow_runs_total",
                "Shadow runs on the top tier, by whether the served answer agreed (true, false, error)",
            ),
            &["task", "agree"],
        )
        .unwrap();
        let skipped = IntCounterVec::new(
            Opts::new(
                "rightsize_shadow_skipped_total",
                "Sampled runs not shadowed because max_in_flight shadow runs were busy",
            ),
            &["task"],
        )
        .unwrap();
        let agreement = GaugeVec::new(
            Opts::new(
                "rightsize_shadow_agreement",
                "Mean agreement of the task's last `window` shadow samples",
            ),
            &["task"],
        )
        .unwrap();
        let alert = GaugeVec::new(
            Opts::new(
                "rightsize_drift_alert",
                "1 while a drift alert is raised (source: shadow or reeval)",
            ),
            &["task", "source"],
        )
        .unwrap();
        let alerts = IntCounterVec::new(
            Opts::new(
                "rightsize_drift_alerts_total",
                "Drift alerts raised (source: shadow or reeval)",
            ),
            &["task", "source"],
        )
        .unwrap();
        let reeval_quality = GaugeVec::new(
            Opts::new(
                "rightsize_reeval_quality",
                "Quality of the served cascade at the last scheduled re-evaluation",
            ),
            &["task"],
        )
        .unwrap();
        registry.register(Box::new(runs.clone())).unwrap();
        registry.register(Box::new(skipped.clone())).unwrap();
        for g in [&agreement, &alert, &reeval_quality] {
            registry.register(Box::new(g.clone())).unwrap();
        }
        registry.register(Box::new(alerts.clone())).unwrap();
        Self {
            runs,
            skipped,
            agreement,
            alert,
            alerts,
            reeval_quality,
        }
    }
}

/// Per-process shadow state: the in-flight bound, skip counts, which alerts are raised.
#[derive(Default)]
pub struct Shadow {
    in_flight: AtomicUsize,
    skipped: Mutex<HashMap<String, u64>>,
    raised: Mutex<HashMap<(String, &'static str), bool>>,
}

/// A taken in-flight slot; given back when the shadow run ends or is dropped.
struct Slot(Arc<Shadow>);
impl Drop for Slot {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Shadow {
    fn try_slot(self: &Arc<Self>, max: usize) -> Option<Slot> {
        self.in_flight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < max).then_some(n + 1))
            .ok()
            .map(|_| Slot(self.clone()))
    }

    /// Record whether `task`'s `source` signal is in alert; log and count only changes.
    pub(crate) fn set_alert(&self, m: &ShadowMetrics, task: &str, source: &'static str, reason: Option<&str>) {
        let was = {
            let mut raised = self.raised.lock().unwrap_or_else(|p| p.into_inner());
            raised
                .insert((task.to_owned(), source), reason.is_some())
                .unwrap_or(false)
        };
        m.alert
            .with_label_values(&[task, source])
            .set(if reason.is_some() { 1.0 } else { 0.0 });
        match (was, reason) {
            (false, Some(r)) => {
                m.alerts.with_label_values(&[task, source]).inc();
                tracing::warn!(task, source, reason = r, "drift alert raised");
            }
            (true, None) => tracing::info!(task, source, "drift alert cleared"),
            _ => {}
        }
    }
}

/// Called after every successful live run: maybe start a shadow run of the same inputs on
/// the top tier. Returns at once; the shadow run happens on its own task.
pub fn after_run(state: &AppState, inputs: &BTreeMap<String, String>, opts: &RunOptions, a: &TaskAnswer) {
    let cfg = &state.cfg.shadow;
    if cfg.rate <= 0.0 || opts.only_tier.is_some() {
        return;
    }
    let Some(mesh) = state.mesh.clone() else { return };
    if mesh.store().is_none() {
        return;
    }
    let Ok(task) = mesh.task(&a.task, Some(a.version)) else {
        return;
    };
    let top = task.spec.ladder.len() - 1;
    let top_id = task.spec.ladder[top].get_ref().id();
    if a.tier == top_id || rand::random::<f64>() >= cfg.rate {
        return;
    }
    let Some(slot) = state.shadow.try_slot(cfg.max_in_flight) else {
        state.metrics.shadow.skipped.with_label_values(&[&a.task]).inc();
        *state
            .shadow
            .skipped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(a.task.clone())
            .or_default() += 1;
        return;
    };
    let opts = RunOptions {
        version: Some(a.version),
        priority: engine::Priority::Batch,
        only_tier: Some(top),
        no_record: true,
        guard: opts.guard.clone(),
        ..Default::default()
    };
    let (state, inputs, served) = (state.clone(), inputs.clone(), a.clone());
    let kind = task.spec.output.kind;
    tokio::spawn(async move {
        let _slot = slot;
        let res = mesh.run(&served.task, &inputs, opts).await;
        let (agreement, error, latency_ms, cost_usd) = match &res {
            Ok(s) => match s
                .tiers
                .first()
                .and_then(|t| t.output.as_ref().filter(|_| t.error.is_none()))
            {
                Some(out) => (
                    Some(agreement(kind, &served.output, out)),
                    None,
                    s.latency_ms,
                    s.cost_usd,
                ),
                None => (
                    None,
                    Some(
                        s.tiers
                            .first()
                            .and_then(|t| t.error.clone())
                            .unwrap_or_else(|| "no output".into()),
                    ),
                    s.latency_ms,
                    s.cost_usd,
                ),
            },
            Err(e) => (None, Some(e.to_string()), 0.0, 0.0),
        };
        let rec = store::ShadowRecord {
            run_id: served.run_id.clone(),
            ts_ms: store::now_ms(),
            task: served.task.clone(),
            version: served.version,
            served_tier: served.tier.clone(),
            shadow_tier: top_id,
            agreement,
            latency_ms,
            cost_usd,
            error: error.map(|e| e.chars().take(200).collect()),
        };
        record(&state, rec).await;
    });
}

/// Agreement of two answers of a task (0..1): `mesh::evaluate::score` both ways, the better
/// of the two, so that for text "Rome" and "The capital is Rome." agree.
pub fn agreement(kind: OutputKind, served: &Value, shadow: &Value) -> f64 {
    let as_expected = |v: &Value| {
        serde_json::from_value::<eval::Expected>(v.clone()).unwrap_or_else(|_| eval::Expected::Text(v.to_string()))
    };
    let one = mesh::evaluate::score(kind, served, &as_expected(shadow));
    if one >= 1.0 {
        return one;
    }
    one.max(mesh::evaluate::score(kind, shadow, &as_expected(served)))
}

/// Store a shadow sample, update the metrics, and raise or clear the task's shadow alert.
async fn record(state: &AppState, rec: store::ShadowRecord) {
    let Some(store) = state.mesh.as_ref().and_then(|m| m.store()) else {
        return;
    };
    let m = &state.metrics.shadow;
    let agree = match rec.agreement {
        None => "error",
        Some(a) if a >= 1.0 - 1e-9 => "true",
        Some(_) => "false",
    };
    m.runs.with_label_values(&[&rec.task, agree]).inc();
    if let Err(e) = store.record_shadow(&rec).await {
        tracing::warn!(task = %rec.task, error = %e, "could not store a shadow run");
        return;
    }
    let rule = state.cfg.shadow.rule();
    match store.shadow_rolling(&rec.task, rule.window).await {
        Ok((n, mean)) => {
            if let Some(a) = mean {
                m.agreement.with_label_values(&[&rec.task]).set(a);
            }
            state
                .shadow
                .set_alert(m, &rec.task, "shadow", rule.judge(&rec.task, n, mean).as_deref());
        }
        Err(e) => tracing::warn!(task = %rec.task, error = %e, "could not read shadow agreement"),
    }
}

/// The `shadow` block of `GET /v1/tasks/{name}/stats`: the stored drift summary (what
/// `rightsize stats` shows too) plus this process's sampling counters.
pub async fn stats(state: &AppState, store: &store::Store, task: &str, since_ms: i64) -> Result<Value, ApiError> {
    let cfg = &state.cfg.shadow;
    let d = store
        .drift(task, since_ms, &cfg.rule())
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let mut v = serde_json::to_value(d).map_err(|e| ApiError::internal(e.to_string()))?;
    v["rate"] = cfg.rate.into();
    v["skipped"] = state
        .shadow
        .skipped
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(task)
        .copied()
        .unwrap_or(0)
        .into();
    v["in_flight"] = state.shadow.in_flight.load(Ordering::SeqCst).into();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn agreement_per_output_kind() {
        assert_eq!(agreement(OutputKind::Label, &json!("billing"), &json!("Billing")), 1.0);
        assert_eq!(agreement(OutputKind::Label, &json!("billing"), &json!("shipping")), 0.0);
        assert_eq!(
            agreement(
                OutputKind::Text,
                &json!("Rome"),
                &json!("The capital of Italy is Rome.")
            ),
            1.0
        );
        assert_eq!(agreement(OutputKind::Text, &json!("Paris"), &json!("Rome")), 0.0);
        let half = agreement(
            OutputKind::Json,
            &json!({"name": "Jo", "email": "a@b.c"}),
            &json!({"name": "Jo", "email": "x@y.z"}),
        );
        assert!(half > 0.0 && half < 1.0, "{half}");
    }

    #[test]
    fn config_defaults_are_off_and_bad_values_are_named() {
        let c = ShadowConfig::default();
        assert_eq!((c.rate, c.reeval_every_s), (0.0, 0));
        assert!(c.check().is_ok());
        assert!(ShadowConfig { rate: 1.5, ..c.clone() }
            .check()
            .unwrap_err()
            .contains("rate"));
        assert!(ShadowConfig {
            min_samples: 200,
            ..c.clone()
        }
        .check()
        .unwrap_err()
        .contains("min_samples"));
        assert!(ShadowConfig { max_in_flight: 0, ..c }.check().is_err());
    }

    #[test]
    fn the_example_config_documents_the_defaults() {
        let c = crate::ServerConfig::from_toml(include_str!("../../../config/rightsize.example.toml")).unwrap();
        let d = ShadowConfig::default();
        assert_eq!(format!("{:?}", c.shadow), format!("{d:?}"));
    }

    #[test]
    fn slots_are_bounded_and_given_back() {
        let s = Arc::new(Shadow::default());
        let a = s.try_slot(2).unwrap();
        let _b = s.try_slot(2).unwrap();
        assert!(s.try_slot(2).is_none());
        drop(a);
        assert!(s.try_slot(2).is_some());
    }
}
