//! The learned, pre-generation router: a small classifier on the input's embedding that predicts the
//! cheapest tier likely to answer right, so a hard input starts the cascade where it would
//! have ended instead of paying for every tier below.
//!
//! Why a router besides the cascade: the cascade learns only after paying — every escalation
//! costs the tiers that were tried first. The router decides before any generation, from the
//! input alone, for the price of one embedding (milliseconds on a CPU). It is trained from an
//! evaluation's outcome table (what each tier did alone on each dev item): an item's target is
//! the cheapest tier whose answer scored as well as the best tier's (the top tier when no tier
//! got it right). It is opt-in per task (`[router]`) and never replaces the cascade's
//! confidence checks: a routed run starts at the routed tier and may still escalate.
//!
//! Trained routers live under `<cache>/heads/<task>/router-v<version>-<hash>` (the head plus
//! `router.json`), the hash covering the training inputs, targets, ladder and encoder; a run
//! uses the newest router saved for its task version. Without one the task runs the plain
//! cascade.
//!
//! Named `learned_router` (not `router`) so it is not taken for an HTTP router such as the
//! server's `routes::app` (the axum router): this one is a trained model that picks a ladder's first tier.

use crate::error::MeshError;
use crate::examples;
use crate::task::Task;
use crate::{EncoderLease, Mesh};
use encoder::{EncoderRef, Head, TrainConfig};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::OnceCell;

/// The router's own metadata file, next to the head's files.
pub const ROUTER_META_FILE: &str = "router.json";

fn yes() -> bool {
    true
}
fn default_encoder() -> String {
    "minilm-l6".into()
}

/// `[router]` in a task file: route runs before generation (`rightsize eval` trains it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterSpec {
    /// Route this task's runs (the default once the table is present).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The encoder whose embeddings the router reads.
    #[serde(default = "default_encoder")]
    pub encoder: String,
    /// When the router's probability for its pick is below this, start at the first tier.
    #[serde(default)]
    pub min_confidence: f64,
}

impl Default for RouterSpec {
    fn default() -> Self {
        RouterSpec {
            enabled: true,
            encoder: default_encoder(),
            min_confidence: 0.0,
        }
    }
}

impl RouterSpec {
    /// (field, message) of the first problem.
    pub(crate) fn check(&self, n_tiers: usize) -> Result<(), (String, String)> {
        if self.encoder.trim().is_empty() {
            return Err((
                "encoder".into(),
                "must name an encoder model, e.g. \"minilm-l6\"".into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.min_confidence) {
            return Err(("min_confidence".into(), "must be between 0 and 1".into()));
        }
        if self.enabled && n_tiers < 2 {
            return Err((
                "enabled".into(),
                "a router picks the starting tier: the ladder needs at least two tiers".into(),
            ));
        }
        Ok(())
    }
}

/// What the router decided for one run (part of the answer's trace).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoutePick {
    /// The tier the cascade started at, and its index in the task's ladder.
    pub tier: String,
    pub start: usize,
    /// The tier the router predicted, and its probability.
    pub predicted: String,
    pub confidence: f64,
    /// The prediction was below `min_confidence`: the cascade started at the first tier.
    pub fell_back: bool,
    pub latency_ms: f64,
    pub cost_usd: f64,
}

/// How a router was trained (`router.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouterMeta {
    pub task: String,
    /// The task version whose ladder and outcomes it was trained on.
    pub trained_for_version: i64,
    /// The ladder it routes over (the head's classes), cheapest first.
    pub tiers: Vec<String>,
    pub encoder: String,
    pub examples: usize,
    /// [`data_hash`] of the training set.
    pub data_hash: String,
    pub trained_ms: i64,
    /// Out-of-fold accuracy on its training items, when cross-validated.
    #[serde(default)]
    pub cv_accuracy: Option<f64>,
}

/// A trained router: a head over embeddings whose classes are the ladder's tiers.
#[derive(Debug)]
pub struct Router {
    pub head: Head,
    pub meta: RouterMeta,
}

/// The router's decision for one input's probabilities.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pick {
    /// Most probable tier (index into the router's tiers) and its probability.
    pub predicted: usize,
    pub confidence: f64,
    /// Where to start: `predicted`, or 0 when `confidence < min_confidence`.
    pub start: usize,
}

/// Most probable tier; tier 0 (the plain cascade) when it is less likely than `min_confidence`.
pub fn pick(probs: &[f32], min_confidence: f64) -> Pick {
    let predicted = probs
        .iter()
        .enumerate()
        .fold(0, |b, (i, p)| if *p > probs[b] { i } else { b });
    let confidence = probs.get(predicted).copied().unwrap_or(0.0) as f64;
    Pick {
        predicted,
        confidence,
        start: if confidence < min_confidence { 0 } else { predicted },
    }
}

/// Per item, the training target: the cheapest tier (no error) whose score matched the best
/// score any tier reached, or the top tier when no tier scored above 0.
pub fn targets(outcomes: &eval::Outcomes) -> Vec<usize> {
    let top = outcomes.tiers.len().saturating_sub(1);
    outcomes
        .items
        .iter()
        .map(|item| {
            let best = item
                .tiers
                .iter()
                .filter(|o| !o.error)
                .map(|o| o.score)
                .fold(0.0, f64::max);
            if best <= 0.0 {
                return top;
            }
            item.tiers
                .iter()
                .position(|o| !o.error && o.score >= best - 1e-9)
                .unwrap_or(top)
        })
        .collect()
}

/// sha256 over the training texts, targets, ladder and encoder id.
pub fn data_hash(texts: &[String], y: &[usize], tiers: &[String], encoder_id: &str) -> String {
    let mut h = Sha256::new();
    for (t, c) in texts.iter().zip(y) {
        h.update(t.as_bytes());
        h.update(format!("\u{1f}{c}\u{1e}").as_bytes());
    }
    h.update(tiers.join("\u{1f}").as_bytes());
    h.update(encoder_id.as_bytes());
    hex::encode(h.finalize())
}

/// Where a router for `task` version `version` trained on data `hash` is saved.
pub fn router_dir(root: &Path, task: &str, version: i64, hash: &str) -> PathBuf {
    root.join("heads")
        .join(task)
        .join(format!("router-v{version}-{}", &hash[..hash.len().min(12)]))
}

/// The newest router saved for `task` version `version` under `root`, if any.
pub fn find(root: &Path, task: &str, version: i64) -> Option<PathBuf> {
    let prefix = format!("router-v{version}-");
    std::fs::read_dir(root.join("heads").join(task))
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .filter_map(|e| {
            let meta: RouterMeta =
                serde_json::from_str(&std::fs::read_to_string(e.path().join(ROUTER_META_FILE)).ok()?).ok()?;
            Some((meta.trained_ms, e.path()))
        })
        .max()
        .map(|(_, p)| p)
}

fn train_cfg() -> TrainConfig {
    TrainConfig {
        seed: 7,
        ..TrainConfig::default()
    }
}

/// Train a head over the tiers. A tier that is never the cheapest right one has no examples:
/// normal for a router (not the warning it is for a classifier), so training runs unlogged;
/// its failures come back as errors.
fn train_head(x: &[Vec<f32>], y: &[usize], tiers: &[String]) -> Result<Head, MeshError> {
    let quiet = tracing::subscriber::NoSubscriber::default();
    tracing::subscriber::with_default(quiet, || Head::train(x, y, tiers.to_vec(), train_cfg()))
        .map_err(|e| bad("training the router", e))
}

fn bad(what: &str, e: impl std::fmt::Display) -> MeshError {
    MeshError::BadInput(format!("{what}: {e}"))
}

impl Router {
    /// Train on embeddings `x` with targets `y` (indices into `meta.tiers`).
    pub fn train(
        x: &[Vec<f32>],
        y: &[usize],
        meta: RouterMeta,
        encoder: Option<EncoderRef>,
    ) -> Result<Router, MeshError> {
        let mut head = train_head(x, y, &meta.tiers)?;
        head.set_encoder(encoder);
        Ok(Router { head, meta })
    }

    /// Per input: the probability of each tier being the cheapest right one.
    pub fn probs(&self, x: &[Vec<f32>]) -> Result<Vec<Vec<f32>>, MeshError> {
        self.head.predict_proba(x).map_err(|e| bad("routing", e))
    }

    pub fn save(&self, dir: &Path) -> Result<(), MeshError> {
        self.head.save(dir).map_err(|e| bad("saving the router", e))?;
        let json = serde_json::to_string_pretty(&self.meta).map_err(|e| bad("saving the router", e))?;
        std::fs::write(dir.join(ROUTER_META_FILE), json).map_err(|e| bad(&dir.display().to_string(), e))
    }

    pub fn load(dir: &Path) -> Result<Router, MeshError> {
        let head = Head::load(dir).map_err(|e| bad("loading the router", e))?;
        let path = dir.join(ROUTER_META_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| bad(&path.display().to_string(), e))?;
        let meta: RouterMeta = serde_json::from_str(&text).map_err(|e| bad(&path.display().to_string(), e))?;
        if meta.tiers != head.labels() {
            return Err(bad(
                &path.display().to_string(),
                "the tiers do not match the head's classes",
            ));
        }
        Ok(Router { head, meta })
    }

    /// The index in `ladder` where a run starts when the router says `routed` (an index into
    /// its own tiers): the first ladder tier at or above it in the router's ladder (a ladder
    /// written by `eval --apply` may keep only some tiers), else the last tier. This is how
    /// `eval` simulates a router-started cascade.
    pub fn start_in(&self, ladder: &[String], routed: usize) -> usize {
        ladder
            .iter()
            .position(|t| self.meta.tiers.iter().position(|x| x == t).is_some_and(|i| i >= routed))
            .unwrap_or(ladder.len().saturating_sub(1))
    }
}

/// Out-of-fold probabilities: item `i` is in fold `i % k`, and each fold is predicted by a
/// router trained on the other folds, so a score on the training items is honest.
pub fn cross_val(x: &[Vec<f32>], y: &[usize], tiers: &[String], k: usize) -> Result<Vec<Vec<f32>>, MeshError> {
    let k = k.min(x.len());
    if k < 2 {
        return Err(MeshError::BadInput(format!(
            "cross-validating the router needs at least 2 items, got {}",
            x.len()
        )));
    }
    let mut out = vec![Vec::new(); x.len()];
    for fold in 0..k {
        let (train, held): (Vec<usize>, Vec<usize>) = (0..x.len()).partition(|i| i % k != fold);
        let xs: Vec<Vec<f32>> = train.iter().map(|&i| x[i].clone()).collect();
        let ys: Vec<usize> = train.iter().map(|&i| y[i]).collect();
        let head = train_head(&xs, &ys, tiers)?;
        let probs = head
            .predict_proba(&held.iter().map(|&i| x[i].clone()).collect::<Vec<_>>())
            .map_err(|e| bad("routing", e))?;
        for (i, p) in held.into_iter().zip(probs) {
            out[i] = p;
        }
    }
    Ok(out)
}

/// A task version's router, loaded at most once (`None`: missing or unusable).
type RouterSlot = Arc<OnceCell<Option<Arc<Router>>>>;

/// Loaded routers per (task, version).
#[derive(Default)]
pub(crate) struct RouterCache(Mutex<HashMap<(String, i64), RouterSlot>>);

impl Mesh {
    /// Where a run of `task` starts: the router's pick when the task has `[router] enabled`
    /// and a trained router exists; `None` runs the plain cascade.
    pub(crate) async fn route(&self, task: &Task, inputs: &BTreeMap<String, String>) -> Option<RoutePick> {
        let spec = task.spec.router.as_ref().filter(|r| r.enabled)?;
        let name = &task.spec.name;
        let enc = match self.models.encoder(&spec.encoder).await {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(task = %name, error = %e, "router encoder unavailable: plain cascade");
                return None;
            }
        };
        let Some(router) = self.router(task, &enc).await else {
            tracing::debug!(task = %name, version = task.spec.version, "no trained router (run `rightsize eval`): plain cascade");
            return None;
        };
        let text = examples::encoder_text(&task.spec.inputs, inputs);
        let t = Instant::now();
        let r = router.clone();
        let probs = tokio::task::spawn_blocking(move || {
            r.probs(&enc.embed(&[text.as_str()]).map_err(|e| bad("embedding", e))?)
        })
        .await;
        let secs = t.elapsed().as_secs_f64();
        let probs = match probs {
            Ok(Ok(p)) => p.into_iter().next()?,
            Ok(Err(e)) => {
                tracing::warn!(task = %name, error = %e, "routing failed: plain cascade");
                return None;
            }
            Err(e) => {
                tracing::warn!(task = %name, error = %e, "routing panicked: plain cascade");
                return None;
            }
        };
        let p = pick(&probs, spec.min_confidence);
        let ladder: Vec<String> = task.tiers().map(|t| t.id()).collect();
        let start = router.start_in(&ladder, p.start);
        Some(RoutePick {
            tier: ladder[start].clone(),
            start,
            predicted: router.meta.tiers[p.predicted].clone(),
            confidence: p.confidence,
            fell_back: p.start != p.predicted,
            latency_ms: secs * 1e3,
            cost_usd: self.prices.all_cores(secs),
        })
    }

    /// The task version's router, loaded once (and checked against the encoder).
    async fn router(&self, task: &Task, enc: &EncoderLease) -> Option<Arc<Router>> {
        let key = (task.spec.name.clone(), task.spec.version);
        let cell = {
            let mut map = self.routers.0.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(key.clone()).or_default().clone()
        };
        let root = self.cache_root.clone();
        let enc = enc.clone();
        cell.get_or_init(|| async move {
            let loaded = tokio::task::spawn_blocking(move || {
                let dir = find(&root, &key.0, key.1)?;
                let r = Router::load(&dir)
                    .and_then(|r| r.head.check_compatible(&enc).map(|_| r).map_err(|e| bad("router", e)));
                r.map_err(|e| tracing::warn!(dir = %dir.display(), error = %e, "unusable router: plain cascade"))
                    .ok()
            });
            loaded.await.ok().flatten().map(Arc::new)
        })
        .await
        .clone()
    }
}

mod training;
pub use training::Trained;

#[cfg(test)]
mod tests;
