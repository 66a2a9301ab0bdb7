//! Prompt-injection detection: all-MiniLM-L6-v2 sentence embeddings (crate `encoder`)
//! concatenated with a few lexical cues ([`lexical_features`]), scored by a small trained
//! head. The labelled set ships in the binary ([`load_dataset`]).
//!
//! Long texts are scored in overlapping windows (an instruction hidden at the end of a
//! document is not cut off by the encoder's 256-token limit); the score is the highest
//! window's. Texts over [`MAX_SCORED_BYTES`] are refused rather than scored partially.

mod dataset;
mod features;

use std::path::Path;
use std::sync::Arc;

use encoder::{Encoder, EncoderRef, Head, TrainConfig};
use serde::{Deserialize, Serialize};

pub use dataset::{
    evaluate_injection, load_dataset, parse_dataset, BinaryReport, Example, Label, Split, INJECTION_JSONL,
};
pub use features::{feature_names, lexical_features, FEATURES_VERSION, N_FEATURES};

use crate::error::{GuardError, Result};

pub const INJECTION_LABEL: &str = "injection";
pub const BENIGN_LABEL: &str = "benign";
/// Window size and stride (characters) for long texts.
pub const WINDOW_CHARS: usize = 800;
pub const WINDOW_STRIDE: usize = 600;
/// Largest text [`InjectionDetector::score`] accepts.
pub const MAX_SCORED_BYTES: usize = 64 * 1024;
/// Value of an active lexical cue next to the unit-length embedding.
pub const FEATURE_SCALE: f32 = 1.0;
/// Metadata file written next to the head by [`InjectionDetector::save`].
pub const INJECTION_META_FILE: &str = "injection.json";

/// The head configuration used by [`InjectionDetector::train`]: one hidden layer of 64,
/// class-balanced loss, fixed seed. Chosen together with [`FEATURE_SCALE`] by 5-fold
/// cross-validation on the train split only (`examples/injection_tune.rs`).
pub fn default_train_config() -> TrainConfig {
    TrainConfig {
        hidden: Some(64),
        epochs: 400,
        lr: 1e-2,
        weight_decay: 1e-1,
        batch_size: None,
        seed: 7,
        balance_classes: true,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Meta {
    features_version: u32,
    n_features: usize,
    feature_scale: f32,
}

/// The trained head alone, scored with an encoder the caller holds (the server's pool
/// owns MiniLM; this borrows it per call instead of loading a second copy).
#[derive(Debug, Clone)]
pub struct InjectionHead {
    head: Head,
    injection: usize,
}

/// A trained prompt-injection classifier with its own encoder. `Send + Sync`; cheap to clone.
#[derive(Debug, Clone)]
pub struct InjectionDetector {
    encoder: Arc<Encoder>,
    inner: InjectionHead,
}

/// Embedding followed by the lexical cues, per text.
pub fn injection_features(encoder: &Encoder, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
    let emb = encoder.embed(texts)?;
    Ok(emb
        .into_iter()
        .zip(texts)
        .map(|(mut e, t)| {
            e.extend(lexical_features(t, FEATURE_SCALE));
            e
        })
        .collect())
}

impl InjectionHead {
    /// Trains on every example given (filter the split first) with `cfg`.
    pub fn train_with(encoder: &Encoder, examples: &[Example], cfg: TrainConfig) -> Result<InjectionHead> {
        let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
        let x = injection_features(encoder, &texts)?;
        let y: Vec<usize> = examples
            .iter()
            .map(|e| usize::from(e.label == Label::Injection))
            .collect();
        let labels = vec![BENIGN_LABEL.to_string(), INJECTION_LABEL.to_string()];
        let mut head = Head::train(&x, &y, labels, cfg)?;
        head.set_encoder(Some(EncoderRef {
            id: encoder.model_id().to_string(),
            hash: Some(encoder.model_hash()?),
        }));
        InjectionHead::new(head, encoder)
    }

    /// Checks a head against an encoder: labels (`benign`, `injection`), input size
    /// (embedding + [`N_FEATURES`]) and, when recorded, the encoder's hash.
    pub fn new(head: Head, encoder: &Encoder) -> Result<InjectionHead> {
        let labels = head.labels();
        let injection = labels.iter().position(|l| l == INJECTION_LABEL);
        let Some(injection) = injection.filter(|_| labels.len() == 2 && labels.iter().any(|l| l == BENIGN_LABEL))
        else {
            return Err(GuardError::Config(format!(
                "an injection head needs labels [{BENIGN_LABEL}, {INJECTION_LABEL}], got {labels:?}"
            )));
        };
        let expected = encoder.dim() + N_FEATURES;
        if head.input_dim() != expected {
            return Err(GuardError::Config(format!(
                "injection head takes {}-d input, this encoder and feature set give {expected}",
                head.input_dim()
            )));
        }
        if let Some(EncoderRef { id, hash: Some(hash) }) = head.encoder() {
            if *hash != encoder.model_hash()? {
                return Err(GuardError::Config(format!(
                    "injection head was trained with encoder {id}, not {}",
                    encoder.model_id()
                )));
            }
        }
        Ok(InjectionHead { head, injection })
    }

    /// Probability of injection per text (highest over its windows), embedded in shared
    /// batches by `encoder` (the one the head was trained with).
    pub fn score_batch(&self, encoder: &Encoder, texts: &[&str]) -> Result<Vec<f32>> {
        let mut windows: Vec<&str> = Vec::new();
        let mut owner: Vec<usize> = Vec::new();
        for (i, t) in texts.iter().enumerate() {
            if t.len() > MAX_SCORED_BYTES {
                return Err(GuardError::InputTooLarge {
                    len: t.len(),
                    max: MAX_SCORED_BYTES,
                });
            }
            for w in windows_of(t) {
                windows.push(w);
                owner.push(i);
            }
        }
        let mut scores = vec![0.0f32; texts.len()];
        if windows.is_empty() {
            return Ok(scores);
        }
        let x = injection_features(encoder, &windows)?;
        for (p, i) in self.head.predict_proba(&x)?.into_iter().zip(owner) {
            let s = p.get(self.injection).copied().unwrap_or(0.0);
            scores[i] = scores[i].max(s);
        }
        Ok(scores)
    }

    /// Saves the head (`head.safetensors`, `head.json`) and [`INJECTION_META_FILE`].
    pub fn save(&self, dir: &Path) -> Result<()> {
        self.head.save(dir)?;
        let meta = current_meta();
        let path = dir.join(INJECTION_META_FILE);
        let json = serde_json::to_vec_pretty(&meta).map_err(|e| GuardError::Config(e.to_string()))?;
        std::fs::write(&path, json).map_err(|source| GuardError::Io { path, source })
    }

    /// Loads a head saved by [`InjectionHead::save`] for `encoder`; refuses heads trained
    /// with another feature set or encoder.
    pub fn load(dir: &Path, encoder: &Encoder) -> Result<InjectionHead> {
        let path = dir.join(INJECTION_META_FILE);
        let bytes = std::fs::read(&path).map_err(|source| GuardError::Io {
            path: path.clone(),
            source,
        })?;
        let meta: Meta =
            serde_json::from_slice(&bytes).map_err(|e| GuardError::Config(format!("{}: {e}", path.display())))?;
        let current = current_meta();
        if meta != current {
            return Err(GuardError::Config(format!(
                "{} was saved with feature set {meta:?}, this build uses {current:?}",
                path.display()
            )));
        }
        InjectionHead::new(Head::load(dir)?, encoder)
    }

    pub fn head(&self) -> &Head {
        &self.head
    }
}

fn current_meta() -> Meta {
    Meta {
        features_version: FEATURES_VERSION,
        n_features: N_FEATURES,
        feature_scale: FEATURE_SCALE,
    }
}

impl InjectionDetector {
    /// Trains on every example given (filter the split first) with [`default_train_config`].
    pub fn train(encoder: Arc<Encoder>, examples: &[Example]) -> Result<InjectionDetector> {
        InjectionDetector::train_with(encoder, examples, default_train_config())
    }

    pub fn train_with(encoder: Arc<Encoder>, examples: &[Example], cfg: TrainConfig) -> Result<InjectionDetector> {
        let inner = InjectionHead::train_with(&encoder, examples, cfg)?;
        Ok(InjectionDetector { encoder, inner })
    }

    /// Pairs a head with an encoder (checked as [`InjectionHead::new`] does).
    pub fn new(encoder: Arc<Encoder>, head: Head) -> Result<InjectionDetector> {
        let inner = InjectionHead::new(head, &encoder)?;
        Ok(InjectionDetector { encoder, inner })
    }

    /// Probability that `text` is a prompt injection (highest over its windows).
    pub fn score(&self, text: &str) -> Result<f32> {
        Ok(self.score_batch(&[text])?.first().copied().unwrap_or(0.0))
    }

    /// [`InjectionDetector::score`] for many texts, embedded in shared batches.
    pub fn score_batch(&self, texts: &[&str]) -> Result<Vec<f32>> {
        self.inner.score_batch(&self.encoder, texts)
    }

    /// `score(text) >= threshold`.
    pub fn detect(&self, text: &str, threshold: f32) -> Result<bool> {
        Ok(self.score(text)? >= threshold)
    }

    /// Saves the head and its feature-set metadata.
    pub fn save(&self, dir: &Path) -> Result<()> {
        self.inner.save(dir)
    }

    /// Loads a detector saved by [`InjectionDetector::save`] for `encoder`.
    pub fn load(dir: &Path, encoder: Arc<Encoder>) -> Result<InjectionDetector> {
        let inner = InjectionHead::load(dir, &encoder)?;
        Ok(InjectionDetector { encoder, inner })
    }

    pub fn head(&self) -> &Head {
        self.inner.head()
    }

    pub fn encoder(&self) -> &Arc<Encoder> {
        &self.encoder
    }
}

/// Overlapping windows of at most [`WINDOW_CHARS`] characters (the whole text when short).
fn windows_of(text: &str) -> Vec<&str> {
    let idx: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(text.len()))
        .collect();
    let n = idx.len() - 1;
    if n <= WINDOW_CHARS {
        return vec![text];
    }
    let mut out = Vec::new();
    let mut start = 0;
    loop {
        let end = (start + WINDOW_CHARS).min(n);
        out.push(&text[idx[start]..idx[end]]);
        if end == n {
            return out;
        }
        start += WINDOW_STRIDE;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_long_texts_on_char_boundaries() {
        assert_eq!(windows_of("short"), vec!["short"]);
        let t = "é".repeat(2000);
        let w = windows_of(&t);
        assert_eq!(w.len(), 3); // 0..800, 600..1400, 1200..2000
        assert!(w.iter().all(|x| x.chars().count() <= WINDOW_CHARS));
        assert!(t.ends_with(w[2]));
    }
}
