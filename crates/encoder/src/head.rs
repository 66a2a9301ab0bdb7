//! [`Head`]: a small classifier (linear, or one hidden layer) over sentence embeddings:
//! prediction, and persistence as `head.safetensors` + `head.json`. Training lives in
//! `train.rs`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::Module;
use serde::{Deserialize, Serialize};

use crate::error::{candle_reason, EncoderError, Result};
use crate::model::Encoder;
use crate::train::TrainSummary;

/// File names inside a saved head directory.
pub const HEAD_WEIGHTS_FILE: &str = "head.safetensors";
pub const HEAD_META_FILE: &str = "head.json";
/// Version written to `head.json`; loading rejects other versions.
pub const HEAD_FORMAT_VERSION: u32 = 1;

/// Shape of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum HeadArch {
    /// `softmax(W x + b)`: logistic regression over the embedding.
    Linear,
    /// `softmax(W2 relu(W1 x + b1) + b2)` with `hidden` units.
    Mlp { hidden: usize },
}

/// The encoder a head was trained on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncoderRef {
    pub id: String,
    /// [`Encoder::model_hash`] at training time.
    pub hash: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct HeadMeta {
    format_version: u32,
    labels: Vec<String>,
    arch: HeadArch,
    input_dim: usize,
    encoder: Option<EncoderRef>,
    training: Option<TrainSummary>,
}

/// A trained classification head. Immutable, `Send + Sync`.
#[derive(Debug, Clone)]
pub struct Head {
    pub(crate) labels: Vec<String>,
    pub(crate) arch: HeadArch,
    pub(crate) input_dim: usize,
    /// `(weight [out, in], bias [out])` per layer, on CPU.
    pub(crate) layers: Vec<(Tensor, Tensor)>,
    pub(crate) encoder: Option<EncoderRef>,
    pub(crate) training: Option<TrainSummary>,
}

/// `[n, dim]` f32 tensor from rows, checking every row has `dim` finite values.
pub(crate) fn rows_to_tensor<V: AsRef<[f32]>>(rows: &[V], dim: usize, context: &str) -> Result<Tensor> {
    let mut flat = Vec::with_capacity(rows.len() * dim);
    for (i, r) in rows.iter().enumerate() {
        let r = r.as_ref();
        if r.len() != dim {
            return Err(EncoderError::DimMismatch {
                expected: dim,
                got: r.len(),
                context: format!("{context}, row {i}"),
            });
        }
        flat.extend_from_slice(r);
    }
    Ok(Tensor::from_vec(flat, (rows.len(), dim), &Device::Cpu)?)
}

pub(crate) fn forward_layers(layers: &[(Tensor, Tensor)], x: &Tensor) -> Result<Tensor> {
    let mut h = x.clone();
    for (i, (w, b)) in layers.iter().enumerate() {
        h = candle_nn::Linear::new(w.clone(), Some(b.clone())).forward(&h)?;
        if i + 1 < layers.len() {
            h = h.relu()?;
        }
    }
    Ok(h)
}

impl Head {
    /// Class names, in the order of [`Head::predict_proba`]'s columns.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    pub fn arch(&self) -> HeadArch {
        self.arch
    }

    /// Embedding dimension the head expects.
    pub fn input_dim(&self) -> usize {
        self.input_dim
    }

    /// The encoder this head was trained on, if recorded.
    pub fn encoder(&self) -> Option<&EncoderRef> {
        self.encoder.as_ref()
    }

    /// Records the encoder the head's embeddings come from (saved in `head.json`).
    pub fn set_encoder(&mut self, encoder: Option<EncoderRef>) {
        self.encoder = encoder;
    }

    /// Loss, accuracy and timing of the training run, when the head was trained (or
    /// loaded from a head that was).
    pub fn training(&self) -> Option<&TrainSummary> {
        self.training.as_ref()
    }

    /// Checks that `encoder` produces embeddings this head understands: same dimension,
    /// and, when the head recorded an encoder hash, the same model files.
    pub fn check_compatible(&self, encoder: &Encoder) -> Result<()> {
        if encoder.dim() != self.input_dim {
            return Err(EncoderError::DimMismatch {
                expected: self.input_dim,
                got: encoder.dim(),
                context: format!(
                    "head expects {}-d embeddings, encoder {} produces {}",
                    self.input_dim,
                    encoder.model_id(),
                    encoder.dim()
                ),
            });
        }
        if let Some(EncoderRef { id, hash: Some(hash) }) = &self.encoder {
            let actual = encoder.model_hash()?;
            if &actual != hash {
                return Err(EncoderError::EncoderMismatch {
                    head_encoder: format!("{id} ({})", &hash[..hash.len().min(12)]),
                    encoder: format!("{} ({})", encoder.model_id(), &actual[..12]),
                });
            }
        }
        Ok(())
    }

    /// Raw scores before softmax, `[n, labels]`.
    pub fn logits<V: AsRef<[f32]>>(&self, x: &[V]) -> Result<Vec<Vec<f32>>> {
        if x.is_empty() {
            return Ok(Vec::new());
        }
        let xs = rows_to_tensor(x, self.input_dim, "head input")?;
        Ok(forward_layers(&self.layers, &xs)?.to_vec2::<f32>()?)
    }

    /// Class probabilities (softmax), one row per input, columns in [`Head::labels`] order.
    pub fn predict_proba<V: AsRef<[f32]>>(&self, x: &[V]) -> Result<Vec<Vec<f32>>> {
        if x.is_empty() {
            return Ok(Vec::new());
        }
        let xs = rows_to_tensor(x, self.input_dim, "head input")?;
        let logits = forward_layers(&self.layers, &xs)?;
        Ok(candle_nn::ops::softmax_last_dim(&logits)?.to_vec2::<f32>()?)
    }

    /// Most probable label and its probability, per input.
    pub fn predict<V: AsRef<[f32]>>(&self, x: &[V]) -> Result<Vec<(String, f32)>> {
        Ok(self
            .predict_proba(x)?
            .iter()
            .map(|p| {
                let i = argmax(p);
                (self.labels[i].clone(), p[i])
            })
            .collect())
    }

    /// Writes `dir/head.safetensors` (weights) and `dir/head.json` (labels, architecture,
    /// input dimension, encoder, training summary), creating `dir` if needed.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| EncoderError::io(dir, e))?;
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        for (i, (w, b)) in self.layers.iter().enumerate() {
            tensors.insert(format!("layers.{i}.weight"), w.clone());
            tensors.insert(format!("layers.{i}.bias"), b.clone());
        }
        let weights = dir.join(HEAD_WEIGHTS_FILE);
        candle_core::safetensors::save(&tensors, &weights)?;
        let meta = HeadMeta {
            format_version: HEAD_FORMAT_VERSION,
            labels: self.labels.clone(),
            arch: self.arch,
            input_dim: self.input_dim,
            encoder: self.encoder.clone(),
            training: self.training.clone(),
        };
        let meta_path = dir.join(HEAD_META_FILE);
        let json = serde_json::to_string_pretty(&meta).expect("head metadata serialises");
        std::fs::write(&meta_path, json).map_err(|e| EncoderError::io(&meta_path, e))?;
        Ok(())
    }

    /// Loads a head written by [`Head::save`], validating its metadata against its weights.
    pub fn load(dir: &Path) -> Result<Head> {
        if !dir.is_dir() {
            return Err(EncoderError::MissingDir(dir.to_path_buf()));
        }
        let meta_path = dir.join(HEAD_META_FILE);
        let weights_path = dir.join(HEAD_WEIGHTS_FILE);
        for p in [&meta_path, &weights_path] {
            if !p.is_file() {
                return Err(EncoderError::MissingFile(p.clone()));
            }
        }
        let text = std::fs::read_to_string(&meta_path).map_err(|e| EncoderError::io(&meta_path, e))?;
        let meta: HeadMeta = serde_json::from_str(&text).map_err(|source| EncoderError::InvalidJson {
            path: meta_path.clone(),
            source,
        })?;
        let bad = |path: &PathBuf, reason: String| EncoderError::InvalidHead {
            path: path.clone(),
            reason,
        };
        if meta.format_version != HEAD_FORMAT_VERSION {
            return Err(bad(
                &meta_path,
                format!(
                    "format_version {} (expected {HEAD_FORMAT_VERSION})",
                    meta.format_version
                ),
            ));
        }
        if meta.labels.len() < 2 || meta.input_dim == 0 {
            return Err(bad(
                &meta_path,
                "needs at least 2 labels and a positive input_dim".into(),
            ));
        }
        let mut tensors = candle_core::safetensors::load(&weights_path, &Device::Cpu)
            .map_err(|e| bad(&weights_path, candle_reason(&e)))?;
        let shapes: Vec<(usize, usize)> = match meta.arch {
            HeadArch::Linear => vec![(meta.labels.len(), meta.input_dim)],
            HeadArch::Mlp { hidden } => vec![(hidden, meta.input_dim), (meta.labels.len(), hidden)],
        };
        let mut layers = Vec::new();
        for (i, &(out, inp)) in shapes.iter().enumerate() {
            let mut take = |name: String, dims: &[usize]| -> Result<Tensor> {
                let t = tensors
                    .remove(&name)
                    .ok_or_else(|| bad(&weights_path, format!("missing tensor {name}")))?;
                if t.dims() != dims {
                    return Err(bad(
                        &weights_path,
                        format!("tensor {name} has shape {:?}, metadata implies {dims:?}", t.dims()),
                    ));
                }
                Ok(t.to_dtype(DType::F32)?)
            };
            let w = take(format!("layers.{i}.weight"), &[out, inp])?;
            let b = take(format!("layers.{i}.bias"), &[out])?;
            layers.push((w, b));
        }
        if let Some(extra) = tensors.keys().next() {
            return Err(bad(&weights_path, format!("unexpected tensor {extra}")));
        }
        Ok(Head {
            labels: meta.labels,
            arch: meta.arch,
            input_dim: meta.input_dim,
            layers,
            encoder: meta.encoder,
            training: meta.training,
        })
    }

    /// [`Head::load`] followed by [`Head::check_compatible`] against `encoder`.
    pub fn load_for(dir: &Path, encoder: &Encoder) -> Result<Head> {
        let head = Head::load(dir)?;
        head.check_compatible(encoder)?;
        Ok(head)
    }
}

/// Index of the largest value (first on ties; 0 for an empty slice).
pub(crate) fn argmax(p: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in p.iter().enumerate() {
        if *v > p[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::test_util::{blobs, labels};
    use crate::TrainConfig;

    #[test]
    fn head_is_send_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Head>();
    }

    #[test]
    fn save_load_roundtrip_and_validation() {
        let (x, y) = blobs(10, 6);
        let mut head = Head::train(
            &x,
            &y,
            labels(),
            TrainConfig {
                hidden: Some(8),
                epochs: 20,
                ..Default::default()
            },
        )
        .unwrap();
        head.set_encoder(Some(EncoderRef {
            id: "toy".into(),
            hash: None,
        }));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("head");
        head.save(&path).unwrap();
        let loaded = Head::load(&path).unwrap();
        assert_eq!(loaded.labels(), head.labels());
        assert_eq!(loaded.arch(), HeadArch::Mlp { hidden: 8 });
        assert_eq!(loaded.input_dim(), 16);
        assert_eq!(loaded.encoder().unwrap().id, "toy");
        assert_eq!(loaded.predict_proba(&x).unwrap(), head.predict_proba(&x).unwrap());
        // Wrong input dimension at prediction time.
        assert!(matches!(
            loaded.predict_proba(&[vec![0.0f32; 15]]),
            Err(EncoderError::DimMismatch {
                expected: 16,
                got: 15,
                ..
            })
        ));
        assert!(loaded.predict_proba(&Vec::<Vec<f32>>::new()).unwrap().is_empty());

        // Metadata that disagrees with the weights.
        let meta_path = path.join(HEAD_META_FILE);
        let text = std::fs::read_to_string(&meta_path).unwrap();
        std::fs::write(&meta_path, text.replace("\"input_dim\": 16", "\"input_dim\": 17")).unwrap();
        assert!(matches!(Head::load(&path), Err(EncoderError::InvalidHead { .. })));
        std::fs::write(&meta_path, text).unwrap();
        // Garbage weights.
        std::fs::write(path.join(HEAD_WEIGHTS_FILE), b"garbage").unwrap();
        assert!(matches!(Head::load(&path), Err(EncoderError::InvalidHead { .. })));
        // Missing directory / file.
        assert!(matches!(
            Head::load(&dir.path().join("nope")),
            Err(EncoderError::MissingDir(_))
        ));
        std::fs::remove_file(path.join(HEAD_WEIGHTS_FILE)).unwrap();
        assert!(matches!(Head::load(&path), Err(EncoderError::MissingFile(_))));
    }
}
