//! The router step of `rightsize eval`: train the task's pre-generation router on the dev
//! split (out-of-fold routes on dev, the all-dev router's routes on test), attach the routes
//! to the outcome table so router-only and router + cascade are simulated like any cascade,
//! and save the router where runs of the evaluated version (and an `--apply`ed one) find it.

use anyhow::Result;
use mesh::learned_router::{router_dir, Router, Trained};
use serde_json::json;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Folds of the dev split's cross-validation.
const FOLDS: usize = 5;

pub struct Routed {
    pub trained: Trained,
    pub min_confidence: f64,
    /// Where the router for the evaluated version was saved.
    pub saved: PathBuf,
}

pub async fn attach(
    mesh: &mesh::Mesh,
    task: &mesh::Task,
    data: &eval::Dataset,
    dev_ids: &HashSet<&str>,
    outcomes: &mut eval::Outcomes,
    root: &Path,
) -> Result<Routed> {
    anyhow::ensure!(
        outcomes.items.iter().zip(&data.items).all(|(o, d)| o.id == d.id),
        "outcomes and data set items are not in the same order"
    );
    let inputs = data.items.iter().map(|i| i.input.clone()).collect();
    let is_dev: Vec<bool> = outcomes.items.iter().map(|i| dev_ids.contains(i.id.as_str())).collect();
    let trained = mesh.train_router(task, inputs, outcomes, &is_dev, FOLDS).await?;
    for (item, r) in outcomes.items.iter_mut().zip(&trained.routes) {
        item.route = Some(*r);
    }
    let saved = save_for(&trained.router, root, &task.spec.name, task.spec.version)?;
    let min_confidence = task.spec.router.as_ref().map_or(0.0, |r| r.min_confidence);
    Ok(Routed {
        trained,
        min_confidence,
        saved,
    })
}

/// Save `router` for runs of `task` version `version`.
pub fn save_for(router: &Router, root: &Path, task: &str, version: i64) -> Result<PathBuf> {
    let dir = router_dir(root, task, version, &router.meta.data_hash);
    router.save(&dir)?;
    Ok(dir)
}

/// What the report says about the router.
pub fn summary(r: &Routed) -> serde_json::Value {
    let t = &r.trained;
    let m = &t.router.meta;
    let share: serde_json::Map<String, serde_json::Value> = m
        .tiers
        .iter()
        .enumerate()
        .map(|(i, tier)| (tier.clone(), json!(t.targets.iter().filter(|&&x| x == i).count())))
        .collect();
    json!({
        "encoder": m.encoder,
        "trained_on": m.examples,
        "folds": t.folds,
        "min_confidence": r.min_confidence,
        "cv_accuracy": t.cv_accuracy,
        "test_accuracy": t.test_accuracy,
        "cheapest_right_tier_all_items": share,
        "data_hash": m.data_hash,
        "saved": r.saved.display().to_string(),
    })
}

/// One line for the terminal and the HTML page.
pub fn note(r: &Routed) -> String {
    let t = &r.trained;
    format!(
        "Router: a {} head trained on {} dev items predicts the cheapest tier that answers right; on dev ({}-fold, out of fold) it starts at that tier for {:.0}% of items{}.",
        t.router.meta.encoder,
        t.router.meta.examples,
        t.folds,
        t.cv_accuracy * 100.0,
        t.test_accuracy.map(|a| format!(", on test for {:.0}%", a * 100.0)).unwrap_or_default()
    )
}
