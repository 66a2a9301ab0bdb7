//! Training a task's router from an evaluation, with honest numbers: the dev items get
//! out-of-fold routes (each predicted by a router that never saw it), the other items routes
//! from the router trained on all of dev — the one that is saved and deployed. Every route
//! carries the measured price of its embedding, so a simulated router pays what a run pays.

use super::{cross_val, data_hash, pick, Router, RouterMeta};
use crate::error::MeshError;
use crate::examples;
use crate::task::Task;
use crate::Mesh;
use encoder::EncoderRef;
use std::collections::BTreeMap;
use std::time::Instant;

/// A router trained from an evaluation, and its routes for every evaluated item.
#[derive(Debug)]
pub struct Trained {
    /// Trained on every dev item.
    pub router: Router,
    /// Per item (outcome order): out of fold for dev items, from `router` for the rest.
    pub routes: Vec<eval::Route>,
    /// Per item: the cheapest right tier (what the router learns to predict).
    pub targets: Vec<usize>,
    pub folds: usize,
    /// How often the routed start was the target, on dev (out of fold) and on the rest.
    pub cv_accuracy: f64,
    pub test_accuracy: Option<f64>,
}

impl Mesh {
    /// Train `task`'s router (its `[router]` settings, or the defaults) from `outcomes`, the
    /// per-tier results on the items whose inputs are `inputs`; `is_dev[i]` marks the items
    /// it may learn from. Needs at least two dev items and two tiers.
    pub async fn train_router(
        &self,
        task: &Task,
        inputs: Vec<BTreeMap<String, String>>,
        outcomes: &eval::Outcomes,
        is_dev: &[bool],
        folds: usize,
    ) -> Result<Trained, MeshError> {
        let spec = task.spec.router.clone().unwrap_or_default();
        let n = outcomes.items.len();
        if inputs.len() != n || is_dev.len() != n {
            return Err(MeshError::BadInput(format!(
                "{} inputs and {} split marks for {n} outcomes",
                inputs.len(),
                is_dev.len()
            )));
        }
        if outcomes.tiers.len() < 2 {
            return Err(MeshError::BadInput(
                "a router needs a ladder of at least two tiers".into(),
            ));
        }
        let enc = self
            .models
            .encoder(&spec.encoder)
            .await
            .map_err(|e| MeshError::BadInput(format!("router encoder `{}`: {e}", spec.encoder)))?;
        let names = task.spec.inputs.clone();
        let texts: Vec<String> = inputs.iter().map(|v| examples::encoder_text(&names, v)).collect();
        // One input at a time, as a run embeds it: the latency and core-seconds of each.
        let (emb, enc_hash) = {
            let (enc, texts) = (enc.clone(), texts.clone());
            tokio::task::spawn_blocking(move || -> Result<_, MeshError> {
                let mut out = Vec::with_capacity(texts.len());
                for t in &texts {
                    let t0 = Instant::now();
                    let v = enc
                        .embed(&[t.as_str()])
                        .map_err(|e| MeshError::BadInput(format!("embedding: {e}")))?;
                    out.push((v.into_iter().next().unwrap_or_default(), t0.elapsed().as_secs_f64()));
                }
                Ok((out, enc.model_hash().ok()))
            })
            .await
            .map_err(|e| MeshError::BadInput(format!("embedding panicked: {e}")))??
        };
        let targets = super::targets(outcomes);
        let dev: Vec<usize> = (0..n).filter(|&i| is_dev[i]).collect();
        if dev.len() < 2 {
            return Err(MeshError::BadInput(format!(
                "training a router needs at least 2 dev items, got {}",
                dev.len()
            )));
        }
        let xd: Vec<Vec<f32>> = dev.iter().map(|&i| emb[i].0.clone()).collect();
        let yd: Vec<usize> = dev.iter().map(|&i| targets[i]).collect();
        let tiers = outcomes.tiers.clone();
        let (xs, ys, t2) = (xd.clone(), yd.clone(), tiers.clone());
        let folds = folds.clamp(2, dev.len());
        let oof = tokio::task::spawn_blocking(move || cross_val(&xs, &ys, &t2, folds))
            .await
            .map_err(|e| MeshError::BadInput(format!("training panicked: {e}")))??;
        let texts_dev: Vec<String> = dev.iter().map(|&i| texts[i].clone()).collect();
        let meta = RouterMeta {
            task: task.spec.name.clone(),
            trained_for_version: task.spec.version,
            data_hash: data_hash(&texts_dev, &yd, &tiers, &spec.encoder),
            tiers,
            encoder: spec.encoder.clone(),
            examples: dev.len(),
            trained_ms: store::now_ms(),
            cv_accuracy: None,
        };
        let encoder_ref = Some(EncoderRef {
            id: spec.encoder.clone(),
            hash: enc_hash,
        });
        let (mut router, all_probs, emb) = tokio::task::spawn_blocking(move || -> Result<_, MeshError> {
            let r = Router::train(&xd, &yd, meta, encoder_ref)?;
            let p = r.probs(&emb.iter().map(|e| e.0.clone()).collect::<Vec<_>>())?;
            Ok((r, p, emb))
        })
        .await
        .map_err(|e| MeshError::BadInput(format!("training panicked: {e}")))??;
        let mut oof = oof.into_iter();
        let mut routes = Vec::with_capacity(n);
        for i in 0..n {
            let p = if is_dev[i] {
                oof.next().unwrap_or_default()
            } else {
                all_probs[i].clone()
            };
            let secs = emb[i].1;
            routes.push(eval::Route {
                start: pick(&p, spec.min_confidence).start,
                cost_usd: self.prices.all_cores(secs),
                latency_ms: secs * 1e3,
            });
        }
        let accuracy = |dev_side: bool| {
            let idx: Vec<usize> = (0..n).filter(|&i| is_dev[i] == dev_side).collect();
            (!idx.is_empty())
                .then(|| idx.iter().filter(|&&i| routes[i].start == targets[i]).count() as f64 / idx.len() as f64)
        };
        let cv_accuracy = accuracy(true).unwrap_or(0.0);
        let test_accuracy = accuracy(false);
        router.meta.cv_accuracy = Some(cv_accuracy);
        Ok(Trained {
            router,
            routes,
            targets,
            folds,
            cv_accuracy,
            test_accuracy,
        })
    }
}
