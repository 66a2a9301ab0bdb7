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
    /// The class of the caller's requests when they name none, and the highest they may name
    /// (a `batch` key cannot ask for `interactive`: 403).
    pub default_priority: engine::Priority,
    /// The key's guardrail policy, if it has one (`rightsize keys create --pii ...`).
    pub guard: Option<Arc<guard::Guardrails>>,
    /// The key's quotas (`rightsize keys create --rpm ..`), enforced by `crate::quota`.
    pub limits: store::KeyLimits,
}

impl Caller {
    /// A caller without a key (open local mode; an unknown bearer there too): the `inference`
    /// scope, interactive, the server's guardrails.
    pub fn anonymous() -> Self {
        Self {
            key_id: None,
            admin: false,
            default_priority: engine::Priority::Interactive,
            guard: None,
            limits: store::KeyLimits::default(),
        }
    }

    /// The bearer of this process's admin token (`crate::access`): the local CLI.
    pub fn local_admin() -> Self {
        Self {
            admin: true,
            ..Self::anonymous()
        }
    }
}

/// What a presented secret is to the key store.
#[derive(Debug, Clone)]
pub enum KeyLookup {
    /// An active key.
    Active(Caller),
    /// A key that was revoked: 401 even where unknown bearers pass (open local mode).
    Revoked,
    /// An active key the server will not serve as it stands (its guardrail policy does not
    /// parse, it has no scope): 403 with `reason`, never served without its policy.
    Refused { key_id: String, reason: String },
    /// Not a key the store knows.
    Unknown,
}

/// Checks API keys (implemented over the store).
pub trait KeyCheck: Send + Sync + 'static {
    fn check(&self, secret: &str) -> KeyLookup;
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
    /// The guard engine: the PII detector (built-in recognisers plus the config's `[pii]`
    /// ones), the `hash` key (the server key's PII salt) and the prompt-injection head under
    /// the cache's `heads/`; shared with the mesh.
    pub guards: Arc<guard::Guards>,
    /// Shadow runs in flight, skip counts and raised drift alerts (see `crate::shadow`).
    pub shadow: Arc<crate::shadow::Shadow>,
    /// Embedding requests computing now, per model (`max_embedding_in_flight` permits each).
    pub embedding_slots: Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Semaphore>>>>,
    /// The key of every keyed hash the server writes (audit content, PII `hash` mode).
    pub secret: Arc<crate::secret::ServerSecret>,
    /// Counts per-key quotas (see `crate::quota`): set by [`AppState::set_quotas`].
    pub quota: Option<Arc<crate::quota::Quotas>>,
    /// This start's admin token (`crate::access`): `serve_on` writes it for the local CLI.
    pub admin_token: Arc<crate::access::AdminToken>,
}

impl AppState {
    /// Record every request and task run in `store`'s audit log, unless the config turns the
    /// audit off (`audit.enabled = false`).
    pub fn set_audit(&mut self, store: store::Store) {
        self.audit = self.cfg.audit.enabled.then_some(store);
    }

    /// Enforce per-key quotas, counted in `store` (audit on or off).
    pub fn set_quotas(&mut self, store: store::Store) {
        self.quota = Some(Arc::new(crate::quota::Quotas::new(store)));
    }

    /// The admin bearer of this server (what `<cache>/admin-token-<port>` holds once serving).
    pub fn admin_token(&self) -> &str {
        self.admin_token.secret()
    }
}
