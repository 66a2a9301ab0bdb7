//! What the pool holds: a llama.cpp decoder engine or a candle encoder, loaded from the cache.

use crate::config::ModelConfig;
use std::collections::HashMap;
use std::sync::Arc;

/// A resident model.
pub enum Loaded {
    Decoder(engine::Engine),
    Encoder { model: encoder::Encoder, bytes: u64 },
}

impl pool::Resident for Loaded {
    fn bytes(&self) -> u64 {
        match self {
            Loaded::Decoder(e) => e.info().weight_bytes + e.info().copied_weight_bytes + e.kv_cache_bytes(),
            Loaded::Encoder { bytes, .. } => *bytes,
        }
    }
}

/// Loads configured models from the cache.
pub struct CacheLoader {
    pub cache: supply::Cache,
    pub models: HashMap<String, ModelConfig>,
}

impl CacheLoader {
    fn source(&self, id: &str) -> Result<(&ModelConfig, std::path::PathBuf), String> {
        let m = self.models.get(id).ok_or_else(|| format!("unknown model {id}"))?;
        let src = m.source.as_deref().unwrap_or(&m.id);
        let path = supply::resolve_model(&self.cache, src).map_err(|e| e.to_string())?;
        Ok((m, path))
    }
}

fn dir_bytes(p: &std::path::Path) -> u64 {
    if p.is_file() {
        return p.metadata().map(|m| m.len()).unwrap_or(0);
    }
    std::fs::read_dir(p)
        .map(|rd| rd.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "safetensors")).map(|e| e.metadata().map(|m| m.len()).unwrap_or(0)).sum())
        .unwrap_or(0)
}

impl pool::Loader<Loaded> for CacheLoader {
    fn estimate(&self, id: &str) -> Result<u64, String> {
        let (m, path) = self.source(id)?;
        let weights = dir_bytes(&path);
        // KV estimate before the file is opened: ~28 KiB/token covers the 1.5B class;
        // the measured size replaces this once loaded.
        let kv = if path.is_file() { m.ctx as u64 * m.max_sequences as u64 * 28 * 1024 } else { 0 };
        Ok(weights + kv)
    }

    fn load(&self, id: &str) -> Result<Loaded, String> {
        let (m, path) = self.source(id)?;
        if path.is_dir() {
            let model = encoder::Encoder::load(&path, encoder::EncoderOptions::default()).map_err(|e| e.to_string())?;
            return Ok(Loaded::Encoder { model, bytes: dir_bytes(&path) });
        }
        let cfg = engine::EngineConfig {
            n_ctx: m.ctx * m.max_sequences,
            n_seq_max: m.max_sequences,
            n_batch: 512.max(m.max_sequences),
            n_threads: m.threads,
            max_queue: m.max_queue,
            max_queue_batch: m.max_queue_batch,
            repack: m.repack,
            prefix_cache: m.prefix_cache,
            ..Default::default()
        };
        engine::Engine::load(&path, cfg).map(Loaded::Decoder).map_err(|e| e.to_string())
    }
}

pub type ModelPool = pool::Pool<Loaded>;

pub fn build_pool(cache: supply::Cache, models: &[ModelConfig], budget: u64, wait: std::time::Duration) -> ModelPool {
    let policies = models
        .iter()
        .map(|m| {
            let keep_alive = (m.keep_alive_s >= 0).then(|| std::time::Duration::from_secs(m.keep_alive_s as u64));
            (m.id.clone(), pool::Policy { keep_alive, pin: m.pin })
        })
        .collect();
    let loader = CacheLoader { cache, models: models.iter().map(|m| (m.id.clone(), m.clone())).collect() };
    pool::Pool::new(budget, Arc::new(loader), policies, wait)
}
