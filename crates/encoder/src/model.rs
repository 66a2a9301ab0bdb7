//! [`Encoder`]: a BERT-family sentence encoder (e.g. all-MiniLM-L6-v2) loaded from a
//! sentence-transformers style directory and run on candle.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use sha2::{Digest, Sha256};
use tokenizers::{Encoding, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::error::{candle_reason, EncoderError, Result};
use crate::pooling::{l2_normalize, Pooling};

/// Files an encoder directory must contain.
pub const CONFIG_FILE: &str = "config.json";
pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// Optional sentence-transformers files.
pub const POOLING_CONFIG_FILE: &str = "1_Pooling/config.json";
pub const SBERT_CONFIG_FILE: &str = "sentence_bert_config.json";

/// Default number of texts run through the model at once.
pub const DEFAULT_BATCH_SIZE: usize = 32;

/// How to load and run an [`Encoder`].
#[derive(Debug, Clone)]
pub struct EncoderOptions {
    /// Where the model runs. `Device::Cpu` by default; with the `cuda` feature
    /// `Device::new_cuda(0)?` works too.
    pub device: Device,
    /// Truncate inputs at this many tokens (special tokens included). `None`: the
    /// `max_seq_length` of `sentence_bert_config.json` when present (256 for
    /// all-MiniLM-L6-v2), else the model's `max_position_embeddings`. Always capped at
    /// `max_position_embeddings`.
    pub max_len: Option<usize>,
    /// Texts per forward pass. Inputs are sorted by length before batching, so padding
    /// stays small; results come back in input order.
    pub batch_size: usize,
    /// Override the pooling read from `1_Pooling/config.json` (mean when absent).
    pub pooling: Option<Pooling>,
    /// L2-normalise embeddings (default true, as sentence-transformers' `Normalize`).
    pub normalize: bool,
    /// Identifier reported by [`Encoder::model_id`]; the directory name when `None`.
    pub model_id: Option<String>,
}

impl Default for EncoderOptions {
    fn default() -> Self {
        EncoderOptions {
            device: Device::Cpu,
            max_len: None,
            batch_size: DEFAULT_BATCH_SIZE,
            pooling: None,
            normalize: true,
            model_id: None,
        }
    }
}

/// Embeddings plus the number of tokens each input used (after truncation, special
/// tokens included), for OpenAI-style `usage` accounting.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EmbedOutput {
    pub embeddings: Vec<Vec<f32>>,
    pub token_counts: Vec<usize>,
}

impl EmbedOutput {
    /// Sum of [`EmbedOutput::token_counts`].
    pub fn total_tokens(&self) -> usize {
        self.token_counts.iter().sum()
    }
}

/// A loaded sentence encoder. Immutable after loading, `Send + Sync`: share it behind an
/// `Arc` between request handlers.
pub struct Encoder {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    dim: usize,
    max_len: usize,
    batch_size: usize,
    pad_id: u32,
    pooling: Pooling,
    normalize: bool,
    model_id: String,
    dir: PathBuf,
    hash: OnceLock<String>,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("model_id", &self.model_id)
            .field("dir", &self.dir)
            .field("dim", &self.dim)
            .field("max_len", &self.max_len)
            .field("pooling", &self.pooling)
            .field("normalize", &self.normalize)
            .field("device", &self.device)
            .finish()
    }
}

fn require_file(dir: &Path, name: &str) -> Result<PathBuf> {
    let p = dir.join(name);
    if p.is_file() {
        Ok(p)
    } else {
        Err(EncoderError::MissingFile(p))
    }
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| EncoderError::io(path, e))?;
    serde_json::from_str(&text).map_err(|source| EncoderError::InvalidJson {
        path: path.to_path_buf(),
        source,
    })
}

/// Parses config.json into candle's BERT config, rejecting other architectures with a
/// readable reason.
fn parse_bert_config(path: &Path) -> Result<BertConfig> {
    let mut value = read_json(path)?;
    let unsupported = |reason: String| EncoderError::UnsupportedConfig {
        path: path.to_path_buf(),
        reason,
    };
    let obj = value
        .as_object_mut()
        .ok_or_else(|| unsupported("config is not a JSON object".into()))?;
    match obj.get("model_type").and_then(|v| v.as_str()) {
        Some("bert") | None => {}
        Some(other) => {
            return Err(unsupported(format!(
                "model_type {other:?} is not supported (only \"bert\")"
            )))
        }
    }
    // HF spells the tanh GELU several ways; candle's enum knows it as "geluapproximate".
    if let Some(act) = obj.get_mut("hidden_act") {
        if matches!(act.as_str(), Some("gelu_new" | "gelu_pytorch_tanh" | "gelu_fast")) {
            *act = serde_json::Value::String("geluapproximate".into());
        }
    }
    let cfg: BertConfig =
        serde_json::from_value(value).map_err(|e| unsupported(format!("not a usable BERT config: {e}")))?;
    if cfg.hidden_size == 0 || cfg.num_attention_heads == 0 || cfg.hidden_size % cfg.num_attention_heads != 0 {
        return Err(unsupported(format!(
            "hidden_size {} is not divisible by num_attention_heads {}",
            cfg.hidden_size, cfg.num_attention_heads
        )));
    }
    Ok(cfg)
}

impl Encoder {
    /// Loads an encoder from a sentence-transformers style directory: `config.json`
    /// (BERT), `tokenizer.json`, `model.safetensors` (memory-mapped) and, if present,
    /// `1_Pooling/config.json` and `sentence_bert_config.json`.
    ///
    /// The padding and truncation baked into `tokenizer.json` (fixed 128 tokens for
    /// all-MiniLM-L6-v2) are replaced: each batch is padded to its longest member with an
    /// attention mask, and inputs are truncated at the configured maximum length.
    pub fn load(dir: &Path, opts: EncoderOptions) -> Result<Encoder> {
        if !dir.is_dir() {
            return Err(EncoderError::MissingDir(dir.to_path_buf()));
        }
        let config_path = require_file(dir, CONFIG_FILE)?;
        let tokenizer_path = require_file(dir, TOKENIZER_FILE)?;
        let weights_path = require_file(dir, WEIGHTS_FILE)?;
        let config = parse_bert_config(&config_path)?;

        let pooling = match opts.pooling {
            Some(p) => p,
            None => {
                let p = dir.join(POOLING_CONFIG_FILE);
                if p.is_file() {
                    Pooling::from_config_file(&p)?
                } else {
                    Pooling::Mean
                }
            }
        };

        let sbert_max = {
            let p = dir.join(SBERT_CONFIG_FILE);
            if p.is_file() {
                read_json(&p)?
                    .get("max_seq_length")
                    .and_then(|v| v.as_u64())
                    .map(|v| v as usize)
            } else {
                None
            }
        };
        let max_len = opts
            .max_len
            .or(sbert_max)
            .unwrap_or(config.max_position_embeddings)
            .min(config.max_position_embeddings);
        if max_len < 2 {
            return Err(EncoderError::UnsupportedConfig {
                path: config_path,
                reason: format!("max_len {max_len} leaves no room for text between [CLS] and [SEP]"),
            });
        }

        let mut tokenizer = Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| EncoderError::Tokenizer(format!("{}: {e}", tokenizer_path.display())))?;
        let pad_id = tokenizer
            .get_padding()
            .map(|p| p.pad_id)
            .or_else(|| tokenizer.token_to_id("[PAD]"))
            .unwrap_or(config.pad_token_id as u32);
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length: max_len,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| EncoderError::Tokenizer(e.to_string()))?;

        let corrupt = |e: candle_core::Error| EncoderError::CorruptWeights {
            path: weights_path.clone(),
            reason: candle_reason(&e),
        };
        // SAFETY: the weights file is memory-mapped; it must not be modified while the
        // encoder is alive. Model files in the cache are written once and never edited in
        // place.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights_path], DType::F32, &opts.device) }
            .map_err(corrupt)?;
        let model = BertModel::load(vb, &config).map_err(corrupt)?;

        let model_id = opts.model_id.clone().unwrap_or_else(|| {
            dir.file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| dir.display().to_string())
        });
        tracing::debug!(model_id, dim = config.hidden_size, max_len, ?pooling, "encoder loaded");
        Ok(Encoder {
            model,
            tokenizer,
            device: opts.device,
            dim: config.hidden_size,
            max_len,
            batch_size: opts.batch_size.max(1),
            pad_id,
            pooling,
            normalize: opts.normalize,
            model_id,
            dir: dir.to_path_buf(),
            hash: OnceLock::new(),
        })
    }

    /// Embedding dimension (384 for all-MiniLM-L6-v2).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Identifier given at load time (the directory name by default).
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// Directory the encoder was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Maximum tokens per input (special tokens included); longer inputs are truncated.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    pub fn normalizes(&self) -> bool {
        self.normalize
    }

    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Hex SHA-256 over `config.json`, `tokenizer.json` and `model.safetensors`, plus the
    /// pooling and normalisation settings: two encoders with the same hash produce the
    /// same embeddings. Computed on first call (reads the weights once, ~0.1-0.3 s for a
    /// 90 MB model), then cached.
    pub fn model_hash(&self) -> Result<String> {
        if let Some(h) = self.hash.get() {
            return Ok(h.clone());
        }
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        for name in [CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE] {
            let path = self.dir.join(name);
            let mut f = std::fs::File::open(&path).map_err(|e| EncoderError::io(&path, e))?;
            hasher.update(name.as_bytes());
            loop {
                let n = f.read(&mut buf).map_err(|e| EncoderError::io(&path, e))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
        }
        hasher.update(format!("pooling={:?};normalize={}", self.pooling, self.normalize).as_bytes());
        let h = hex::encode(hasher.finalize());
        let _ = self.hash.set(h.clone());
        Ok(h)
    }

    fn tokenize(&self, texts: &[&str]) -> Result<Vec<Encoding>> {
        self.tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| EncoderError::Tokenizer(e.to_string()))
    }

    /// Number of tokens each text occupies (after truncation, special tokens included),
    /// without running the model.
    pub fn count_tokens(&self, texts: &[&str]) -> Result<Vec<usize>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.tokenize(texts)?.iter().map(|e| e.len()).collect())
    }

    /// Embeds `texts`: one vector of [`Encoder::dim`] floats per text, in input order,
    /// L2-normalised unless disabled. An empty slice gives an empty result.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        Ok(self.embed_with_usage(texts)?.embeddings)
    }

    /// [`Encoder::embed`] plus per-input token counts.
    pub fn embed_with_usage(&self, texts: &[&str]) -> Result<EmbedOutput> {
        self.embed_until(texts, &|| true)
    }

    /// [`Encoder::embed_with_usage`] that asks `keep_going` before each batch and stops with
    /// [`EncoderError::Stopped`] once it says no (a request's deadline, a client gone): the
    /// work of a large request ends within one batch of being abandoned. The batches and
    /// results are those of `embed_with_usage`.
    pub fn embed_until(&self, texts: &[&str], keep_going: &dyn Fn() -> bool) -> Result<EmbedOutput> {
        if texts.is_empty() {
            return Ok(EmbedOutput::default());
        }
        let encodings = self.tokenize(texts)?;
        let token_counts: Vec<usize> = encodings.iter().map(|e| e.len()).collect();
        // Batch similar lengths together (stable sort keeps ties in input order).
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| token_counts[i]);
        let mut embeddings = vec![Vec::new(); texts.len()];
        for (n, chunk) in order.chunks(self.batch_size).enumerate() {
            if !keep_going() {
                return Err(EncoderError::Stopped {
                    done: n * self.batch_size,
                    total: texts.len(),
                });
            }
            let batch: Vec<&Encoding> = chunk.iter().map(|&i| &encodings[i]).collect();
            let vectors = self.forward_batch(&batch)?;
            for (&i, v) in chunk.iter().zip(vectors) {
                embeddings[i] = v;
            }
        }
        Ok(EmbedOutput {
            embeddings,
            token_counts,
        })
    }

    /// Runs one padded batch through the model and pools it.
    fn forward_batch(&self, batch: &[&Encoding]) -> Result<Vec<Vec<f32>>> {
        let b = batch.len();
        let len = batch.iter().map(|e| e.len()).max().unwrap_or(0).max(1);
        let mut ids = vec![self.pad_id; b * len];
        let mut type_ids = vec![0u32; b * len];
        let mut mask = vec![0u32; b * len];
        for (row, enc) in batch.iter().enumerate() {
            let off = row * len;
            let n = enc.len();
            ids[off..off + n].copy_from_slice(enc.get_ids());
            type_ids[off..off + n].copy_from_slice(enc.get_type_ids());
            mask[off..off + n].fill(1);
        }
        let ids = Tensor::from_vec(ids, (b, len), &self.device)?;
        let type_ids = Tensor::from_vec(type_ids, (b, len), &self.device)?;
        let mask = Tensor::from_vec(mask, (b, len), &self.device)?;
        let hidden = self.model.forward(&ids, &type_ids, Some(&mask))?;
        let mut pooled = self.pooling.pool(&hidden, &mask)?;
        if self.normalize {
            pooled = l2_normalize(&pooled)?;
        }
        Ok(pooled.to_dtype(DType::F32)?.to_vec2::<f32>()?)
    }
}

/// Cosine similarity of two vectors (0 when either is all zeros).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0f32, 0f32, 0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na.sqrt() * nb.sqrt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoder_is_send_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Encoder>();
    }

    #[test]
    fn cosine_basics() {
        assert!((cosine(&[1.0, 0.0], &[1.0, 0.0]) - 1.0).abs() < 1e-6);
        assert!(cosine(&[1.0, 0.0], &[0.0, 1.0]).abs() < 1e-6);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
    }

    #[test]
    fn config_rejects_other_architectures() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        std::fs::write(&p, r#"{"model_type": "llama", "hidden_size": 8}"#).unwrap();
        let err = parse_bert_config(&p).unwrap_err();
        assert!(matches!(err, EncoderError::UnsupportedConfig { .. }), "{err}");
        std::fs::write(&p, r#"{"model_type": "bert", "hidden_size": 8}"#).unwrap();
        let err = parse_bert_config(&p).unwrap_err();
        assert!(matches!(err, EncoderError::UnsupportedConfig { .. }), "{err}");
    }
}
