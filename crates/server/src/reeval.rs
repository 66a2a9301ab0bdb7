//! Scheduled re-evaluation (`[shadow] reeval_every_s`): every period, each task that names a
//! `dataset` is evaluated again on its newest version, i.e. the ladder users are served, and
//! the quality of that cascade is stored (`reevals`) and compared with the last re-evaluation
//! that raised no alert on the same data set content. A drop beyond `reeval_tolerance` is a
//! drift alert (warn log, `rightsize_drift_alert{task,source="reeval"}`, `drift_alert` in
//! stats) that lasts while the drop does.
//!
//! Why: shadow agreement needs traffic and only compares tiers with each other; a labelled
//! data set measures correctness, and catches a new version (or a changed remote model, or a
//! retrained head) that got worse while nobody was looking.
//!
//! The measurement is `rightsize eval`'s: `Mesh::evaluate` runs each tier alone over the data
//! set at batch priority, and `eval::simulate_cascade` with the task's own thresholds gives
//! the served cascade's quality; `eval::gate` compares it with the baseline.

use crate::state::AppState;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Start the re-evaluation loop when `reeval_every_s > 0` and tasks with a store are served.
/// The first round runs one period after start (not while the server is warming up).
pub fn spawn(state: &AppState) {
    let every = state.cfg.shadow.reeval_every_s;
    let Some(mesh) = state.mesh.clone().filter(|_| every > 0) else {
        return;
    };
    if mesh.store().is_none() {
        tracing::warn!("[shadow] reeval_every_s is set but no store is configured: re-evaluation is off");
        return;
    }
    // `Mesh::evaluate`'s future is not provably `Send` (higher-ranked lifetimes in its
    // stream), so the loop runs on its own thread, driven by this runtime's handle. A task
    // parked on this runtime holds `alive`: when the runtime shuts down it is dropped, the
    // loop sees that and drops any re-evaluation in flight.
    let (alive, gone) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _alive = alive;
        std::future::pending::<()>().await
    });
    let (state, handle) = (state.clone(), tokio::runtime::Handle::current());
    let spawned = std::thread::Builder::new()
        .name("rightsize-reeval".into())
        .spawn(move || {
            handle.block_on(async move {
                tokio::select! {
                    biased; // shutdown first: nothing polls the runtime's timers after it
                    _ = gone => {}
                    _ = rounds(&state, &mesh, Duration::from_secs(every)) => {}
                }
            })
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "could not start the re-evaluation thread");
    }
}

async fn rounds(state: &AppState, mesh: &mesh::Mesh, period: Duration) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let tasks: Vec<Arc<mesh::Task>> = mesh.registry.latest().filter(|t| t.dataset_path().is_some()).collect();
        for task in tasks {
            match run(state, mesh, &task).await {
                Ok(r) => {
                    tracing::info!(task = %r.task, version = r.version, quality = r.quality, n = r.n, alert = r.alert, seconds = r.seconds, "re-evaluated")
                }
                Err(e) => tracing::warn!(task = %task.spec.name, error = %e, "re-evaluation failed"),
            }
        }
    }
}

/// Re-evaluate one task version on its data set, store the result, raise or clear its alert.
pub async fn run(state: &AppState, mesh: &mesh::Mesh, task: &mesh::Task) -> Result<store::ReevalRecord, String> {
    let store = mesh.store().ok_or("no store configured")?;
    let cfg = &state.cfg.shadow;
    let name = &task.spec.name;
    let path = task.dataset_path().ok_or("the task has no `dataset`")?;
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let dataset_hash = hex::encode(Sha256::digest(&bytes));
    let text = String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8", path.display()))?;
    let data = eval::Dataset::parse(&text, &path.display().to_string()).map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let outcomes = mesh
        .evaluate(task, &data, cfg.reeval_concurrency, &|_, _| {})
        .await
        .map_err(|e| e.to_string())?;
    let tiers: Vec<String> = task.tiers().map(|t| t.id()).collect();
    let thresholds: Vec<f64> = task.tiers().take(tiers.len() - 1).map(|t| t.threshold).collect();
    let ci = eval::CiOptions::default();
    let cascade = eval::Cascade::new(tiers.clone(), thresholds).map_err(|e| e.to_string())?;
    let served = eval::simulate_cascade(&outcomes, &cascade, &ci).map_err(|e| e.to_string())?;
    let mut per_tier = BTreeMap::new();
    for t in &tiers {
        let alone =
            eval::simulate_cascade(&outcomes, &eval::Cascade::single(t.clone()), &ci).map_err(|e| e.to_string())?;
        per_tier.insert(t.clone(), alone.quality.mean);
    }
    let summary = eval::RunSummary::from_result(name, "all", &served);
    let baseline = store
        .reeval_baseline(name, &dataset_hash)
        .await
        .map_err(|e| e.to_string())?;
    let verdict = baseline
        .as_ref()
        .and_then(|b| serde_json::from_value::<eval::RunSummary>(b.summary.clone()).ok())
        .map(|b| eval::gate(&b, &summary, cfg.reeval_tolerance));
    let reason = verdict.filter(|v| !v.passed).map(|v| {
        let base = baseline.as_ref().map(|b| b.version).unwrap_or_default();
        format!(
            "{name}: re-evaluation of v{} against v{base}: {}",
            task.spec.version,
            v.reasons.join("; ")
        )
    });
    let rec = store::ReevalRecord {
        id: format!("reeval_{:016x}", rand::random::<u64>()),
        ts_ms: store::now_ms(),
        task: name.clone(),
        version: task.spec.version,
        dataset: path.display().to_string(),
        dataset_hash,
        config: served.label.clone(),
        n: served.n as i64,
        quality: served.quality.mean,
        summary: serde_json::to_value(&summary).map_err(|e| e.to_string())?,
        tiers: per_tier,
        baseline_quality: baseline.as_ref().map(|b| b.quality),
        baseline_version: baseline.as_ref().map(|b| b.version),
        alert: reason.is_some(),
        reason: reason.clone(),
        seconds: t0.elapsed().as_secs_f64(),
    };
    store.record_reeval(&rec).await.map_err(|e| e.to_string())?;
    let m = &state.metrics.shadow;
    m.reeval_quality.with_label_values(&[name]).set(rec.quality);
    state.shadow.set_alert(m, name, "reeval", reason.as_deref());
    Ok(rec)
}
