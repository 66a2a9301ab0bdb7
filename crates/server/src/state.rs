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
}
