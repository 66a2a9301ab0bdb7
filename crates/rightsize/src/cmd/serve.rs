//! `rightsize serve`: the OpenAI-compatible server over the default (or configured) mesh.

use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// TOML config (default: the built-in mesh of SmolLM2-135M, Qwen2.5-0.5B/1.5B and MiniLM).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override the bind address, e.g. 127.0.0.1:8080.
    #[arg(long)]
    pub bind: Option<String>,
}

pub fn serve(args: ServeArgs) -> Result<()> {
    let mut cfg = server::ServerConfig::load(args.config.as_deref())?;
    if let Some(b) = args.bind {
        cfg.bind = b;
    }
    let cache = supply::Cache::from_env();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let bind = cfg.bind.clone();
        let models: Vec<String> = cfg.models.iter().map(|m| m.id.clone()).collect();
        let store_at = cfg
            .store
            .clone()
            .unwrap_or_else(|| cache.root().join("rightsize.db").display().to_string());
        let store = store::Store::open(&store_at).await?;
        let keys = server::keys::StoreKeys::start(store.clone(), std::time::Duration::from_secs(2)).await?;
        let tasks_dir = cfg.tasks_dir();
        let mut builder = server::Builder::new(cfg, cache)
            .keys(Some(keys))
            .audit(store.clone())
            .quotas(store.clone());
        if let Some(dir) = &tasks_dir {
            builder = builder.tasks(dir.clone(), Some(store));
        }
        let state = builder.build().map_err(|e| match e {
            server::ServeError::Tasks { ref dir, .. } => {
                let context = format!("loading tasks from {}", dir.display());
                anyhow::Error::new(e).context(context)
            }
            e => e.into(),
        })?;
        if let (Some(dir), Some(mesh)) = (&tasks_dir, &state.mesh) {
            eprintln!(
                "rightsize tasks: {} from {}",
                mesh.registry.latest().count(),
                dir.display()
            );
            for u in mesh.registry.unavailable() {
                eprintln!("rightsize tasks: {} unavailable ({})", u.name, u.reason);
            }
        }
        let listener = tokio::net::TcpListener::bind(&bind)
            .await
            .with_context(|| format!("binding {bind}"))?;
        let addr = listener.local_addr()?;
        eprintln!("rightsize serving {} on http://{addr}", models.join(", "));
        eprintln!("try: curl http://{addr}/v1/chat/completions -H 'content-type: application/json' \\");
        eprintln!(
            "       -d '{{\"model\":\"qwen2.5-0.5b\",\"messages\":[{{\"role\":\"user\",\"content\":\"Hello\"}}]}}'"
        );
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        server::serve_on(listener, state, shutdown).await?;
        anyhow::Ok(())
    })
}
