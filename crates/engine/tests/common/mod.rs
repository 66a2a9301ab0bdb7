//! Finding the real models the README's set-up pulls into the cache.
#![allow(dead_code)]

use engine::{Engine, EngineConfig};
use std::path::PathBuf;

pub fn cache_root() -> PathBuf {
    std::env::var_os("RIGHTSIZE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/rightsize"))
}

/// Path of a cached catalog model; fails loudly when the set-up has not pulled it.
pub fn model_path(id: &str) -> PathBuf {
    let p = cache_root().join("models").join(id).join("model.gguf");
    assert!(p.is_file(), "{} is missing: run `rightsize pull {id}` (the README's test command does)", p.display());
    p
}

pub fn load(id: &str, cfg: EngineConfig) -> Engine {
    Engine::load(&model_path(id), cfg).unwrap_or_else(|e| panic!("loading {id}: {e}"))
}

pub fn small_cfg() -> EngineConfig {
    EngineConfig { n_ctx: 16 * 1024, n_seq_max: 16, ..Default::default() }
}
