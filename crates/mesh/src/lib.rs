//! # mesh — tasks, ladders and confidence-gated escalation
//!
//! Why: most requests a product sends are easy, and a 135M model answers them as well as a
//! 1.5B one at a tenth of the cost; the hard ones need the bigger model. A task names what it
//! wants (a label, JSON for a schema, or text) and a **ladder** of tiers from cheapest to
//! dearest — an embedding classifier, local decoders from the pool, any OpenAI-compatible
//! endpoint. The cascade answers with the first tier whose *post-generation* confidence reaches
//! its threshold (label probability and margin, field-level logprobs of JSON values, token
//! logprobs or sample agreement for text), and escalates on low confidence, errors, timeouts
//! and open circuit breakers. Every run is recorded with its tier path, confidences, latency
//! and cost, so each task has unit economics.
//!
//! The mesh owns no models: it asks [`Models`] (the server's pool) for a lease per tier call.

mod breaker;
mod classifier;
pub mod confidence;
mod error;
pub mod evaluate;
pub mod examples;
mod guarding;
mod judge;
pub mod learned_router;
pub mod metric;
mod models;
mod registry;
pub mod remote;
mod run;
mod task;
mod tier_call;
mod tier_spec;

pub use breaker::Breaker;
pub use error::{MeshError, ModelError, TaskError};
pub use evaluate::{Evaluation, MetricReport};
pub use guard::GuardReport;
pub use learned_router::{RoutePick, RouterSpec};
pub use metric::{EvalSpec, MetricName, Scoring};
pub use models::{EncoderLease, EngineLease, Models};
pub use registry::{Registry, Unavailable};
pub use run::{render, Attempt, RunOptions, TaskAnswer};
pub use task::{EscalationPolicy, OnError, OnExhausted, OutputKind, OutputSpec, Task, TaskSpec, Validator};
pub use tier_spec::{Prices, TierKind, TierSpec};

use encoder::Head;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

/// Runs tasks. Cheap to share behind an `Arc`; no lock is held across an `.await`.
pub struct Mesh {
    pub registry: Registry,
    pub(crate) models: Arc<dyn Models>,
    pub(crate) store: Option<store::Store>,
    pub(crate) prices: Prices,
    pub(crate) http: reqwest::Client,
    breakers: Mutex<HashMap<String, Arc<Breaker>>>,
    heads: Mutex<HashMap<PathBuf, Arc<OnceCell<Arc<Head>>>>>,
    /// Trained heads are saved under `<cache_root>/heads`.
    cache_root: PathBuf,
    /// Pre-generation routers, loaded once per task version (see `learned_router.rs`).
    routers: learned_router::RouterCache,
    /// The guard engine (the server's, shared: its detector, `hash` key and injection head)
    /// and the output guards compiled per task version and policy.
    pub(crate) guards: Arc<guard::Guards>,
    pub(crate) output_guards: Mutex<HashMap<String, Arc<guard::OutputGuard>>>,
}

impl Mesh {
    pub fn new(
        registry: Registry,
        models: Arc<dyn Models>,
        store: Option<store::Store>,
        cache_root: PathBuf,
        prices: Prices,
    ) -> Self {
        let detector = guard::Detector::new(guard::PiiConfig::default()).expect("built-in recognisers compile");
        let guards = Arc::new(guard::Guards::new(
            Arc::new(detector),
            format!("{:032x}", rand::random::<u128>()),
            &cache_root,
        ));
        Self {
            registry,
            models,
            store,
            prices,
            http: reqwest::Client::builder().build().unwrap_or_default(),
            breakers: Mutex::new(HashMap::new()),
            heads: Mutex::new(HashMap::new()),
            cache_root,
            routers: Default::default(),
            guards,
            output_guards: Mutex::new(HashMap::new()),
        }
    }

    /// Share the server's guard engine instead of the mesh's own (built-in recognisers, a
    /// per-process `hash` key): its detector with the config's recognisers, its injection
    /// head (loaded once per process) and its `hash` key, so chat and tasks hash a value alike.
    pub fn with_guards(mut self, guards: Arc<guard::Guards>) -> Self {
        self.guards = guards;
        self
    }

    pub fn task(&self, name: &str, version: Option<i64>) -> Result<Arc<Task>, MeshError> {
        match self.registry.get(name, version) {
            Some(t) => Ok(t),
            None => match self.registry.why_unavailable(name, version) {
                Some(u) => Err(MeshError::Unavailable {
                    task: name.into(),
                    reason: u.reason.clone(),
                }),
                None if self.registry.has(name) => Err(MeshError::UnknownVersion(name.into(), version.unwrap_or(0))),
                None => Err(MeshError::UnknownTask(name.into())),
            },
        }
    }

    pub fn store(&self) -> Option<&store::Store> {
        self.store.as_ref()
    }

    pub fn prices(&self) -> Prices {
        self.prices
    }

    /// The breaker of a remote tier (one per endpoint + model, shared by every task).
    pub fn breaker(&self, tier: &TierSpec) -> Arc<Breaker> {
        let key = format!(
            "{}|{}",
            tier.base_url.as_deref().unwrap_or(""),
            tier.model.as_deref().unwrap_or("")
        );
        let mut map = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(key)
            .or_insert_with(|| {
                Arc::new(Breaker::new(
                    tier.breaker_failures,
                    std::time::Duration::from_millis(tier.breaker_cooldown_ms),
                ))
            })
            .clone()
    }

    /// The task's classifier head: loaded from disk or trained once, however many callers
    /// ask at the same time.
    pub(crate) async fn head(&self, task: &Task, encoder_id: &str, enc: &EncoderLease) -> Result<Arc<Head>, MeshError> {
        let dir = classifier::head_dir(&self.cache_root, task, encoder_id)?;
        let cell = {
            let mut map = self.heads.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(dir.clone()).or_default().clone()
        };
        let head = cell
            .get_or_try_init(|| async {
                let task = task.clone();
                let enc = enc.clone();
                tokio::task::spawn_blocking(move || classifier::load_or_train(&dir, &task, &enc).map(Arc::new))
                    .await
                    .map_err(|e| MeshError::BadInput(format!("training panicked: {e}")))?
            })
            .await?;
        Ok(head.clone())
    }
}
