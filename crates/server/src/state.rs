//! Shared server state: the pool, the config, metrics and the key store.

use crate::config::ServerConfig;
use crate::metrics::Metrics;
use crate::models::ModelPool;
use std::sync::Arc;

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key_id: Option<String>,
    pub admin: bool,
    pub default_priority: engine::Priority,
    /// The key's guardrail policy, if it has one (`rightsize keys create --pii ...`).
    pub guard: Option<Arc<guard::Guardrails>>,
}

/// Checks API keys (implemented over the store).
pub trait KeyCheck: Send + Sync + 'static {
    /// The caller for a presented secret, or `None` when unknown or revoked.
    fn check(&self, secret: &str) -> Option<Caller>;
}

#[derive(Clone)]
pub struct AppState {
    pub pool: ModelPool,
    pub cfg: Arc<ServerConfig>,
    pub metrics: Arc<Metrics>,
    pub keys: Option<Arc<dyn KeyCheck>>,
    /// Tasks (`/v1/tasks`, `model: "task:NAME"`), when a tasks directory is configured.
    pub mesh: Option<Arc<mesh::Mesh>>,
    /// The audit log (see `crate::audit`): set by [`AppState::set_audit`]; `None` records nothing.
    pub audit: Option<store::Store>,
    /// sha256 of each configured model's file, where the cache has a verified marker for it.
    pub model_hashes: Arc<std::collections::HashMap<String, String>>,
    /// The PII detector: built-in recognisers plus the config's `[pii]` ones.
    pub pii: Arc<guard::Detector>,
    /// The prompt-injection head (trained or loaded on first use), shared with the mesh.
    pub injection: mesh::guarding::InjectionCell,
    /// Shadow runs in flight, skip counts and raised drift alerts (see `crate::shadow`).
    pub shadow: Arc<crate::shadow::Shadow>,
}

impl AppState {
    /// Record every request and task run in `store`'s audit log, unless the config turns the
    /// audit off (`audit.enabled = false`).
    pub fn set_audit(&mut self, store: store::Store) {
        self.audit = self.cfg.audit.enabled.then_some(store);
    }
}
