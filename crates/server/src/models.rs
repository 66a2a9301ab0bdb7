//! What the pool holds: a llama.cpp decoder engine or a candle encoder, loaded from the cache.

use crate::config::ModelConfig;
use pool::{LoadError, LoadErrorKind};
use std::collections::HashMap;
use std::sync::Arc;

/// A resident model.
// One value per resident model (a handful at most): boxing the engine would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Loaded {
    Decoder(engine::Engine),
    Encoder { model: encoder::Encoder, bytes: u64 },
}

/// Bytes of a decoder on `model` with `kv` bytes of KV cache: the weights (mapped, and any
/// repacked copy), the KV cache and the parsed vocabulary.
fn decoder_bytes(model: &engine::Model, kv: u64) -> u64 {
    model.info().weight_bytes + model.info().copied_weight_bytes + kv + model.overhead_bytes()
}

impl pool::Resident for Loaded {
    /// A decoder leaves its parsed model (weight pages released, see `engine::Model`).
    type Asleep = Arc<engine::Model>;

    fn bytes(&self) -> u64 {
        match self {
            Loaded::Decoder(e) => decoder_bytes(e.model(), e.kv_cache_bytes()),
            Loaded::Encoder { bytes, .. } => *bytes,
        }
    }

    fn asleep(&self) -> Option<(Arc<engine::Model>, u64)> {
        match self {
            Loaded::Decoder(e) if e.model().can_sleep() => Some((e.model().clone(), e.model().overhead_bytes())),
            _ => None,
        }
    }
}

/// Parsed-vocabulary bytes assumed before a GGUF file is opened: a 152k-token vocabulary
/// (Qwen2.5's) at `engine::model::ASLEEP_BYTES_PER_TOKEN`. The measured size replaces it.
const VOCAB_ESTIMATE: u64 = 152_000 * engine::model::ASLEEP_BYTES_PER_TOKEN;

/// Loads configured models from the cache.
pub struct CacheLoader {
    pub cache: supply::Cache,
    pub models: HashMap<String, ModelConfig>,
}

impl CacheLoader {
    fn source(&self, id: &str) -> Result<(&ModelConfig, std::path::PathBuf), LoadError> {
        let unknown = || LoadError::new(LoadErrorKind::Unknown, format!("unknown model {id}"));
        let m = self.models.get(id).ok_or_else(unknown)?;
        let src = m.source.as_deref().unwrap_or(&m.id);
        let missing = |e: supply::PullError| LoadError::new(LoadErrorKind::Missing, e.to_string());
        let path = supply::resolve_model(&self.cache, src).map_err(missing)?;
        Ok((m, path))
    }
}

/// Refuses a model whose file changed since its sha256 was verified: the marker's stamp (size,
/// mtime) matches, or the file hashes to the marker's digest (`supply::verified_model_digest`).
/// One `stat` for an untouched file; never under the pool's lock (loads run on their own).
fn check_verified(id: &str, path: &std::path::Path) -> Result<(), LoadError> {
    let refused = |e: supply::PullError| LoadError::new(LoadErrorKind::Refused, format!("model `{id}` refused: {e}"));
    supply::verified_model_digest(path, &supply::NoProgress)
        .map(|_| ())
        .map_err(refused)
}

fn dir_bytes(p: &std::path::Path) -> u64 {
    if p.is_file() {
        return p.metadata().map(|m| m.len()).unwrap_or(0);
    }
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "safetensors"))
                .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

/// An asleep model an engine for `path` with `cfg` may start on: the same file, unchanged on
/// disk, loaded with the same weight settings.
fn usable(asleep: &engine::Model, path: &std::path::Path, cfg: &engine::EngineConfig) -> bool {
    asleep.info().path == path && asleep.loaded_with(cfg.n_gpu_layers, cfg.repack) && asleep.is_current()
}

impl pool::Loader<Loaded> for CacheLoader {
    fn estimate(&self, id: &str, asleep: Option<&Arc<engine::Model>>) -> Result<u64, LoadError> {
        let (m, path) = self.source(id)?;
        // Sized from the asleep model even if `load` finds it stale and parses the file
        // again (same size unless the file was replaced); no disk check under the pool's lock.
        if let Some(model) = asleep {
            return Ok(decoder_bytes(
                model,
                engine_config(m).n_ctx as u64 * model.info().kv_bytes_per_token(),
            ));
        }
        let weights = dir_bytes(&path);
        if !path.is_file() {
            return Ok(weights);
        }
        // KV estimate before the file is opened: ~28 KiB/token covers the 1.5B class;
        // the measured size replaces this once loaded.
        Ok(weights + m.ctx as u64 * m.max_sequences as u64 * 28 * 1024 + VOCAB_ESTIMATE)
    }

    fn load(&self, id: &str, asleep: Option<Arc<engine::Model>>) -> Result<Loaded, LoadError> {
        let (m, path) = self.source(id)?;
        check_verified(id, &path)?;
        if path.is_dir() {
            let model = encoder::Encoder::load(&path, encoder::EncoderOptions::default()).map_err(LoadError::failed)?;
            return Ok(Loaded::Encoder {
                model,
                bytes: dir_bytes(&path),
            });
        }
        let cfg = engine_config(m);
        let engine = match asleep.filter(|a| usable(a, &path, &cfg)) {
            Some(model) => engine::Engine::start(model, cfg),
            None => engine::Engine::load(&path, cfg),
        };
        engine.map(Loaded::Decoder).map_err(LoadError::failed)
    }

    fn prepare(&self, id: &str) -> Result<Option<(Arc<engine::Model>, u64)>, LoadError> {
        let (m, path) = self.source(id)?;
        if !path.is_file() {
            return Ok(None); // encoders load in ~100 ms; nothing to keep
        }
        check_verified(id, &path)?;
        let cfg = engine_config(m);
        let model = engine::Model::load(&path, cfg.n_gpu_layers, cfg.repack).map_err(LoadError::failed)?;
        if !model.can_sleep() {
            return Ok(None);
        }
        model.release_pages();
        let bytes = model.overhead_bytes();
        Ok(Some((Arc::new(model), bytes)))
    }
}

fn engine_config(m: &ModelConfig) -> engine::EngineConfig {
    engine::EngineConfig {
        n_ctx: m.ctx * m.max_sequences,
        n_seq_max: m.max_sequences,
        n_batch: 512.max(m.max_sequences),
        n_threads: m.threads,
        max_queue: m.max_queue,
        max_queue_batch: m.max_queue_batch,
        repack: m.repack,
        prefix_cache: m.prefix_cache,
        ..Default::default()
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
    let loader = CacheLoader {
        cache,
        models: models.iter().map(|m| (m.id.clone(), m.clone())).collect(),
    };
    pool::Pool::new(budget, Arc::new(loader), policies, wait)
}
