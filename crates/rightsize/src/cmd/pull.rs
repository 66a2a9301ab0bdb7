//! `rightsize pull` and `rightsize models`: the verified model cache.

use anyhow::{bail, Result};
use clap::Args;
use supply::{BarProgress, Cache, CacheStatus, Catalog, Puller};

#[derive(Args, Debug)]
pub struct PullArgs {
    /// Catalog ids, `hf:owner/repo/path/file.gguf[@revision]`, or local .gguf paths.
    pub specs: Vec<String>,
    /// Pull the default set (the models `rightsize serve` uses by default).
    #[arg(long)]
    pub default: bool,
    /// Cache id for an hf: or local pull (default: from the file name).
    #[arg(long)]
    pub id: Option<String>,
    /// Expected sha256 of an hf: or local file.
    #[arg(long)]
    pub sha256: Option<String>,
}

pub fn pull(args: PullArgs) -> Result<()> {
    let mut specs = args.specs.clone();
    if args.default {
        specs.extend(supply::default_set().iter().map(|s| s.to_string()));
    }
    if specs.is_empty() {
        bail!("nothing to pull: name a model (see `rightsize models`) or pass --default");
    }
    if specs.len() > 1 && (args.id.is_some() || args.sha256.is_some()) {
        bail!("--id and --sha256 apply to a single model");
    }
    let puller = Puller::new(Cache::from_env())?;
    for spec in &specs {
        let progress = BarProgress::new();
        let path = puller.pull_spec(spec, args.id.as_deref(), args.sha256.as_deref(), &progress)?;
        println!("{spec}: {}", path.display());
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct ModelsArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn models(args: ModelsArgs) -> Result<()> {
    let cache = Cache::from_env();
    let catalog = Catalog::builtin();
    let mut rows = Vec::new();
    for e in catalog.entries() {
        let (state, bytes) = match cache.status(e) {
            CacheStatus::Missing => ("not pulled", None),
            CacheStatus::Present { bytes, verified: true } => ("verified", Some(bytes)),
            CacheStatus::Present { bytes, verified: false } => ("cached (unverified)", Some(bytes)),
        };
        rows.push(
            serde_json::json!({"id": e.id, "kind": e.kind.to_string(), "size": e.size, "state": state, "bytes": bytes,
                                      "license": e.license, "description": e.description}),
        );
    }
    for m in cache.list_models() {
        if catalog.get(&m.id).is_none() {
            rows.push(serde_json::json!({"id": m.id, "kind": "gguf", "size": m.bytes, "state": if m.verified { "verified" } else { "cached (unverified)" },
                                          "bytes": m.bytes, "license": "", "description": m.path.display().to_string()}));
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!("cache: {}", cache.root().display());
    println!("{:<14} {:<8} {:>9}  {:<20} DESCRIPTION", "ID", "KIND", "SIZE", "STATE");
    for r in rows {
        let size = r["size"]
            .as_u64()
            .map(|b| format!("{:.0} MB", b as f64 / 1e6))
            .unwrap_or_else(|| "—".into());
        println!(
            "{:<14} {:<8} {:>9}  {:<20} {}",
            r["id"].as_str().unwrap_or(""),
            r["kind"].as_str().unwrap_or(""),
            size,
            r["state"].as_str().unwrap_or(""),
            r["description"].as_str().unwrap_or("")
        );
    }
    Ok(())
}
