//! # server — the HTTP edge
//!
//! Why: users already speak OpenAI's API; rightsize must be a drop-in endpoint for the
//! official clients while sharing one machine between many small models. This crate is a thin
//! edge over the core (like TEI's router): it parses and authorises requests, maps errors to
//! OpenAI's JSON shape and status codes, and hands work to the `pool` (which model is
//! resident) and the `engine` (batching and decoding). No lock is held across an `.await`.

pub mod access;
pub mod audit;
pub mod config;
mod embeddings;
pub mod error;
pub mod exchange;
mod generate;
pub mod guardrails;
pub mod keys;
pub mod metrics;
pub mod models;
pub mod openai;
pub mod quota;
mod reeval;
mod routes;
pub mod secret;
pub mod shadow;
pub mod state;
pub mod tasks;

pub use config::ServerConfig;
pub use generate::ENGINE_MS_HEADER;
pub use routes::app;
pub use state::{AppState, Caller, KeyCheck, KeyLookup};

use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Config(String),
    /// Task files that do not load (each named by file, line and field).
    #[error("{errors}")]
    Tasks { dir: PathBuf, errors: String },
    #[error("cannot bind {0}: {1}")]
    Bind(String, std::io::Error),
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

/// Build the state from a config: the pool over the cache, metrics, keys.
pub fn state(cfg: ServerConfig, cache: supply::Cache, keys: Option<Arc<dyn KeyCheck>>) -> Result<AppState, ServeError> {
    if !cfg.is_loopback() && cfg.open_local {
        return Err(ServeError::Config(format!(
            "refusing to serve without API keys on {} (not loopback): set `open_local = false` and create keys with `rightsize keys create`",
            cfg.bind
        )));
    }
    if !cfg.is_loopback() && cfg.allowed_hosts.is_empty() {
        return Err(ServeError::Config(format!(
            "{} is not loopback: list the names clients use to reach it in `allowed_hosts` (other Host headers are refused)",
            cfg.bind
        )));
    }
    if !cfg.open_local && keys.is_none() {
        return Err(ServeError::Config("`open_local = false` needs a key store".into()));
    }
    let budget = config::parse_budget(&cfg.memory_budget, config::total_ram()).map_err(ServeError::Config)?;
    let model_hashes = Arc::new(audit::model_hashes(&cache, &cfg.models));
    let pii = Arc::new(guard::Detector::new(cfg.pii.clone()).map_err(|e| ServeError::Config(format!("[pii]: {e}")))?);
    let secret = Arc::new(
        secret::ServerSecret::load_or_create(&secret::key_path(&cfg, cache.root()))
            .map_err(|e| ServeError::Config(e.to_string()))?,
    );
    let guards = Arc::new(guard::Guards::new(pii, secret.pii_salt(), cache.root()));
    let admin_token = Arc::new(access::AdminToken::new(cache.root()));
    let pool = models::build_pool(
        cache,
        &cfg.models,
        budget,
        std::time::Duration::from_secs(cfg.load_wait_s),
    );
    Ok(AppState {
        pool,
        cfg: Arc::new(cfg),
        metrics: Arc::new(metrics::Metrics::new()),
        keys,
        mesh: None,
        audit: None,
        model_hashes,
        guards,
        shadow: Default::default(),
        embedding_slots: Default::default(),
        secret,
        admin_token,
        quota: None,
    })
}

/// Builds a server's state — the pool, metrics and keys ([`state`]), then the audit log,
/// per-key quotas and the tasks — in the one order `rightsize serve`, the tasks and eval
/// CLIs and the tests share, each taking the parts it needs.
pub struct Builder {
    cfg: ServerConfig,
    cache: supply::Cache,
    keys: Option<Arc<dyn KeyCheck>>,
    audit: Option<store::Store>,
    quotas: Option<store::Store>,
    tasks: Option<(PathBuf, Option<store::Store>)>,
}

impl Builder {
    pub fn new(cfg: ServerConfig, cache: supply::Cache) -> Self {
        Self {
            cfg,
            cache,
            keys: None,
            audit: None,
            quotas: None,
            tasks: None,
        }
    }

    /// API keys (without a key store only open local mode can serve).
    pub fn keys(mut self, keys: Option<Arc<dyn KeyCheck>>) -> Self {
        self.keys = keys;
        self
    }

    /// Record every request and task run in `store` (unless `audit.enabled = false`).
    pub fn audit(mut self, store: store::Store) -> Self {
        self.audit = Some(store);
        self
    }

    /// Enforce per-key quotas, counted in `store`.
    pub fn quotas(mut self, store: store::Store) -> Self {
        self.quotas = Some(store);
        self
    }

    /// Serve the tasks in `dir`, recording their runs in `store`; trained heads go under the
    /// cache.
    pub fn tasks(mut self, dir: PathBuf, store: Option<store::Store>) -> Self {
        self.tasks = Some((dir, store));
        self
    }

    /// The state, ready for [`serve_on`]. A bad task file is [`ServeError::Tasks`] naming
    /// every bad file, not just the first.
    pub fn build(self) -> Result<AppState, ServeError> {
        let cache_root = self.cache.root().to_owned();
        let mut state = state(self.cfg, self.cache, self.keys)?;
        if let Some(s) = self.audit {
            state.set_audit(s);
        }
        if let Some(s) = self.quotas {
            state.set_quotas(s);
        }
        if let Some((dir, store)) = self.tasks {
            attach_tasks(&mut state, &dir, store, cache_root)?;
        }
        Ok(state)
    }
}

/// Load the tasks directory and attach a mesh over the state's pool, sharing its guard
/// engine. A valid task whose data file is missing is not an error: it is logged and listed
/// as unavailable.
fn attach_tasks(
    state: &mut AppState,
    dir: &std::path::Path,
    store: Option<store::Store>,
    cache_root: PathBuf,
) -> Result<(), ServeError> {
    let registry = mesh::Registry::load_dir(dir).map_err(|errs| ServeError::Tasks {
        dir: dir.to_owned(),
        errors: errs.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"),
    })?;
    // A task whose data file is missing (the BBC set before `rightsize data bbc-topic`) is
    // listed as unavailable in `GET /v1/tasks`; the others serve.
    for u in registry.unavailable() {
        tracing::warn!(task = %u.name, version = u.version, reason = %u.reason, "task unavailable");
    }
    let models = Arc::new(tasks::PoolModels(state.pool.clone()));
    let prices = mesh::Prices {
        cpu_core_hour_usd: state.cfg.cpu_core_hour_usd,
    };
    state.mesh = Some(Arc::new(
        mesh::Mesh::new(registry, models, store, cache_root, prices).with_guards(state.guards.clone()),
    ));
    Ok(())
}

/// Bind and serve until `shutdown` resolves. Pinned models are loaded first.
pub async fn serve(
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let listener = tokio::net::TcpListener::bind(&state.cfg.bind)
        .await
        .map_err(|e| ServeError::Bind(state.cfg.bind.clone(), e))?;
    serve_on(listener, state, shutdown).await
}

/// Serve on an already-bound listener (tests bind port 0). The admin token file
/// (`crate::access`) exists while this runs.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let port = listener.local_addr()?.port();
    let _token_file = state
        .admin_token
        .write(port)
        .inspect_err(|e| tracing::warn!(error = %e, path = %state.admin_token.path(port).display(), "could not write the admin token file; `rightsize ps/load/unload` will need an admin key"))
        .ok();
    state.pool.spawn_reaper(std::time::Duration::from_secs(1));
    audit::spawn_retention(&state);
    quota::spawn_prune(&state);
    reeval::spawn(&state);
    for m in state.cfg.models.iter().filter(|m| m.pin) {
        let pool = state.pool.clone();
        let id = m.id.clone();
        tokio::spawn(async move {
            if let Err(e) = pool.preload(&id).await {
                tracing::error!(model = %id, error = %e, "could not load a pinned model");
            }
        });
    }
    let prepare: Vec<String> = state
        .cfg
        .models
        .iter()
        .filter(|m| m.prepare && !m.pin)
        .map(|m| m.id.clone())
        .collect();
    if !prepare.is_empty() {
        let pool = state.pool.clone();
        tokio::spawn(async move {
            // One after another: parsing is CPU work, and requests come first.
            for id in prepare {
                match pool.prepare(&id).await {
                    Ok(true) => tracing::info!(model = %id, "prepared: parsed and asleep"),
                    Ok(false) => {
                        tracing::info!(model = %id, "not prepared (already in the pool, no room, or nothing to keep)")
                    }
                    Err(e) => tracing::error!(model = %id, error = %e, "could not prepare a model"),
                }
            }
        });
    }
    // Every request gets an id (echoed as `x-request-id`) that its log lines carry. A
    // client's own id is kept when it is short and plain (`audit::valid_request_id`), else
    // replaced by a generated one.
    let app = app(state).layer(
        tower::ServiceBuilder::new()
            .layer(axum::middleware::map_request(drop_bad_request_id))
            .layer(tower_http::request_id::SetRequestIdLayer::x_request_id(
                tower_http::request_id::MakeRequestUuid,
            ))
            .layer(
                tower_http::trace::TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                    let id = req
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    tracing::info_span!("request", id = %id, method = %req.method(), path = %req.uri().path())
                }),
            )
            .layer(tower_http::request_id::PropagateRequestIdLayer::x_request_id()),
    );
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await?;
    Ok(())
}

/// Removes an `x-request-id` that is too long or holds other characters than
/// `[A-Za-z0-9._:-]`, so that `SetRequestIdLayer` generates one in its place.
async fn drop_bad_request_id(mut req: axum::extract::Request) -> axum::extract::Request {
    let ok = req.headers().get_all("x-request-id").iter().count() <= 1
        && req
            .headers()
            .get("x-request-id")
            .is_none_or(|v| v.to_str().is_ok_and(audit::valid_request_id));
    if !ok {
        req.headers_mut().remove("x-request-id");
    }
    req
}
