//! Training a [`Head`] with candle-nn: AdamW on (optionally class-weighted)
//! cross-entropy, full-batch or shuffled mini-batches, CPU, deterministic for a seed.
//! A few hundred sentence embeddings train in well under a second.

use std::time::Instant;

use candle_core::{Device, Tensor, Var, D};
use candle_nn::Optimizer;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::{EncoderError, Result};
use crate::head::{forward_layers, rows_to_tensor, Head, HeadArch};

/// Hyper-parameters for [`Head::train`]. The defaults train a linear head that fits a few
/// hundred sentence embeddings well in a fraction of a second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    /// `None`: linear head; `Some(h)`: one hidden ReLU layer of `h` units.
    pub hidden: Option<usize>,
    /// Passes over the training set.
    pub epochs: usize,
    /// AdamW learning rate.
    pub lr: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// Examples per optimisation step; `None` for full-batch steps (one per epoch).
    pub batch_size: Option<usize>,
    /// Seeds weight initialisation and shuffling: same data + same config = same head.
    pub seed: u64,
    /// Weight the loss by inverse class frequency, for imbalanced label sets
    /// (e.g. few prompt-injection positives among many benign prompts).
    pub balance_classes: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            hidden: None,
            epochs: 200,
            lr: 1e-2,
            weight_decay: 1e-2,
            batch_size: None,
            seed: 0,
            balance_classes: false,
        }
    }
}

/// What training ended with; stored in `head.json` for later inspection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSummary {
    pub config: TrainConfig,
    pub examples: usize,
    pub final_loss: f32,
    pub train_accuracy: f32,
    pub seconds: f64,
}

fn invalid(msg: impl Into<String>) -> EncoderError {
    EncoderError::InvalidTrainingData(msg.into())
}

/// PyTorch-style `nn.Linear` init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias.
fn init_linear(rng: &mut StdRng, fan_in: usize, fan_out: usize) -> Result<(Var, Var)> {
    let k = 1.0 / (fan_in as f32).sqrt();
    let w: Vec<f32> = (0..fan_in * fan_out).map(|_| rng.gen_range(-k..k)).collect();
    let b: Vec<f32> = (0..fan_out).map(|_| rng.gen_range(-k..k)).collect();
    Ok((
        Var::from_tensor(&Tensor::from_vec(w, (fan_out, fan_in), &Device::Cpu)?)?,
        Var::from_tensor(&Tensor::from_vec(b, fan_out, &Device::Cpu)?)?,
    ))
}

impl Head {
    /// Trains a head on embeddings `x` with class indices `y` into `labels`.
    ///
    /// Errors (never panics) on empty data, mismatched lengths, ragged or non-finite rows,
    /// fewer than two labels, duplicate labels, out-of-range classes or a zero-sized config.
    pub fn train<V: AsRef<[f32]>>(x: &[V], y: &[usize], labels: Vec<String>, cfg: TrainConfig) -> Result<Head> {
        let start = Instant::now();
        if x.is_empty() {
            return Err(invalid("no training examples"));
        }
        if x.len() != y.len() {
            return Err(invalid(format!("{} embeddings but {} targets", x.len(), y.len())));
        }
        if labels.len() < 2 {
            return Err(invalid(format!("need at least 2 labels, got {}", labels.len())));
        }
        {
            let mut seen = std::collections::HashSet::new();
            if let Some(dup) = labels.iter().find(|l| !seen.insert(l.as_str())) {
                return Err(invalid(format!("duplicate label {dup:?}")));
            }
        }
        if let Some((i, &c)) = y.iter().enumerate().find(|(_, &c)| c >= labels.len()) {
            return Err(invalid(format!(
                "target {c} at example {i} is out of range for {} labels",
                labels.len()
            )));
        }
        if cfg.epochs == 0 || cfg.lr.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
            return Err(invalid("epochs and lr must be positive"));
        }
        if cfg.hidden == Some(0) || cfg.batch_size == Some(0) {
            return Err(invalid("hidden and batch_size must be positive when set"));
        }
        let dim = x[0].as_ref().len();
        if dim == 0 {
            return Err(invalid("embeddings have dimension 0"));
        }
        if x.iter().any(|r| r.as_ref().iter().any(|v| !v.is_finite())) {
            return Err(invalid("embeddings contain NaN or infinite values"));
        }
        let n = x.len();
        let n_classes = labels.len();
        let xs = rows_to_tensor(x, dim, "training embeddings")?;
        let ys = Tensor::from_vec(y.iter().map(|&c| c as u32).collect::<Vec<_>>(), n, &Device::Cpu)?;

        let mut counts = vec![0usize; n_classes];
        for &c in y {
            counts[c] += 1;
        }
        for (l, _) in labels.iter().zip(&counts).filter(|(_, &c)| c == 0) {
            tracing::warn!(label = %l, "label has no training examples");
        }
        let present = counts.iter().filter(|&&c| c > 0).count();
        let example_w: Vec<f32> = y
            .iter()
            .map(|&c| {
                if cfg.balance_classes {
                    n as f32 / (present * counts[c]) as f32
                } else {
                    1.0
                }
            })
            .collect();
        let ws = Tensor::from_vec(example_w, n, &Device::Cpu)?;

        let arch = match cfg.hidden {
            None => HeadArch::Linear,
            Some(hidden) => HeadArch::Mlp { hidden },
        };
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        let vars: Vec<(Var, Var)> = match arch {
            HeadArch::Linear => vec![init_linear(&mut rng, dim, n_classes)?],
            HeadArch::Mlp { hidden } => vec![
                init_linear(&mut rng, dim, hidden)?,
                init_linear(&mut rng, hidden, n_classes)?,
            ],
        };
        let mut opt = candle_nn::AdamW::new(
            vars.iter().flat_map(|(w, b)| [w.clone(), b.clone()]).collect(),
            candle_nn::ParamsAdamW {
                lr: cfg.lr,
                weight_decay: cfg.weight_decay,
                ..Default::default()
            },
        )?;
        let layers_of = |vars: &[(Var, Var)]| -> Vec<(Tensor, Tensor)> {
            vars.iter()
                .map(|(w, b)| (w.as_tensor().clone(), b.as_tensor().clone()))
                .collect()
        };
        // Weighted mean cross-entropy; with unit weights it equals candle_nn's cross_entropy.
        let loss_fn = |layers: &[(Tensor, Tensor)], xb: &Tensor, yb: &Tensor, wb: &Tensor| -> Result<Tensor> {
            let logits = forward_layers(layers, xb)?;
            let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
            let picked = logp.gather(&yb.unsqueeze(1)?, 1)?.squeeze(1)?;
            Ok((picked.mul(wb)?.sum_all()?.neg()? / wb.sum_all()?.to_scalar::<f32>()? as f64)?)
        };

        let batch = cfg.batch_size.unwrap_or(n).min(n);
        let mut idx: Vec<u32> = (0..n as u32).collect();
        for _epoch in 0..cfg.epochs {
            if batch == n {
                let loss = loss_fn(&layers_of(&vars), &xs, &ys, &ws)?;
                opt.backward_step(&loss)?;
            } else {
                idx.shuffle(&mut rng);
                for chunk in idx.chunks(batch) {
                    let sel = Tensor::from_slice(chunk, chunk.len(), &Device::Cpu)?;
                    let loss = loss_fn(
                        &layers_of(&vars),
                        &xs.index_select(&sel, 0)?,
                        &ys.index_select(&sel, 0)?,
                        &ws.index_select(&sel, 0)?,
                    )?;
                    opt.backward_step(&loss)?;
                }
            }
        }

        // Freeze: copy the weights out of the Vars so the head holds plain tensors.
        let layers: Vec<(Tensor, Tensor)> = vars
            .iter()
            .map(|(w, b)| Ok((w.as_tensor().detach().copy()?, b.as_tensor().detach().copy()?)))
            .collect::<Result<_>>()?;
        let final_loss = loss_fn(&layers, &xs, &ys, &ws)?.to_scalar::<f32>()?;
        if !final_loss.is_finite() {
            return Err(invalid(format!("training diverged (loss {final_loss}); lower lr")));
        }
        let pred = forward_layers(&layers, &xs)?.argmax(D::Minus1)?.to_vec1::<u32>()?;
        let correct = pred.iter().zip(y).filter(|(p, &t)| **p as usize == t).count();
        let seconds = start.elapsed().as_secs_f64();
        let summary = TrainSummary {
            config: cfg,
            examples: n,
            final_loss,
            train_accuracy: correct as f32 / n as f32,
            seconds,
        };
        tracing::debug!(?summary, "head trained");
        Ok(Head {
            labels,
            arch,
            input_dim: dim,
            layers,
            encoder: None,
            training: Some(summary),
        })
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// Three Gaussian blobs in 16-d, labelled by blob.
    pub(crate) fn blobs(n_per: usize, seed: u64) -> (Vec<Vec<f32>>, Vec<usize>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let centers: Vec<Vec<f32>> = (0..3)
            .map(|c| (0..16).map(|j| if j % 3 == c { 1.0 } else { 0.0 }).collect())
            .collect();
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for (c, center) in centers.iter().enumerate() {
            for _ in 0..n_per {
                x.push(center.iter().map(|v| v + rng.gen_range(-0.4..0.4)).collect());
                y.push(c);
            }
        }
        (x, y)
    }

    pub(crate) fn labels() -> Vec<String> {
        vec!["a".into(), "b".into(), "c".into()]
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::{blobs, labels};
    use super::*;
    use crate::head::argmax;

    fn accuracy(head: &Head, x: &[Vec<f32>], y: &[usize]) -> f32 {
        let p = head.predict_proba(x).unwrap();
        p.iter().zip(y).filter(|(p, &t)| argmax(p) == t).count() as f32 / y.len() as f32
    }

    #[test]
    fn linear_and_mlp_learn_blobs() {
        let (x, y) = blobs(30, 1);
        let (xt, yt) = blobs(20, 2);
        for hidden in [None, Some(32)] {
            let head = Head::train(
                &x,
                &y,
                labels(),
                TrainConfig {
                    hidden,
                    ..Default::default()
                },
            )
            .unwrap();
            let acc = accuracy(&head, &xt, &yt);
            assert!(acc >= 0.95, "hidden {hidden:?}: held-out accuracy {acc}");
            let p = head.predict_proba(&xt).unwrap();
            for row in &p {
                assert_eq!(row.len(), 3);
                assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            }
            assert!(head.training().unwrap().final_loss < 0.5);
        }
    }

    #[test]
    fn minibatch_and_balanced_training_work() {
        let (x, y) = blobs(30, 3);
        let cfg = TrainConfig {
            batch_size: Some(16),
            epochs: 30,
            balance_classes: true,
            ..Default::default()
        };
        let head = Head::train(&x, &y, labels(), cfg).unwrap();
        assert!(accuracy(&head, &x, &y) >= 0.95);
    }

    #[test]
    fn training_is_deterministic_per_seed() {
        let (x, y) = blobs(20, 4);
        let cfg = TrainConfig {
            hidden: Some(16),
            batch_size: Some(8),
            epochs: 20,
            seed: 7,
            ..Default::default()
        };
        let a = Head::train(&x, &y, labels(), cfg.clone())
            .unwrap()
            .predict_proba(&x)
            .unwrap();
        let b = Head::train(&x, &y, labels(), cfg.clone())
            .unwrap()
            .predict_proba(&x)
            .unwrap();
        assert_eq!(a, b);
        let c = Head::train(&x, &y, labels(), TrainConfig { seed: 8, ..cfg })
            .unwrap()
            .predict_proba(&x)
            .unwrap();
        assert_ne!(a, c);
    }

    #[test]
    fn invalid_training_input_is_an_error() {
        let (x, y) = blobs(5, 5);
        let cfg = TrainConfig::default;
        let empty: Vec<Vec<f32>> = vec![];
        assert!(matches!(
            Head::train(&empty, &[], labels(), cfg()),
            Err(EncoderError::InvalidTrainingData(_))
        ));
        assert!(matches!(
            Head::train(&x, &y[1..], labels(), cfg()),
            Err(EncoderError::InvalidTrainingData(_))
        ));
        assert!(matches!(
            Head::train(&x, &y, vec!["a".into()], cfg()),
            Err(EncoderError::InvalidTrainingData(_))
        ));
        assert!(matches!(
            Head::train(&x, &y, vec!["a".into(), "a".into(), "b".into()], cfg()),
            Err(EncoderError::InvalidTrainingData(_))
        ));
        let mut bad_y = y.clone();
        bad_y[0] = 9;
        assert!(matches!(
            Head::train(&x, &bad_y, labels(), cfg()),
            Err(EncoderError::InvalidTrainingData(_))
        ));
        let mut ragged = x.clone();
        ragged[3].pop();
        assert!(matches!(
            Head::train(&ragged, &y, labels(), cfg()),
            Err(EncoderError::DimMismatch { .. })
        ));
        let mut nan = x.clone();
        nan[2][0] = f32::NAN;
        assert!(matches!(
            Head::train(&nan, &y, labels(), cfg()),
            Err(EncoderError::InvalidTrainingData(_))
        ));
        assert!(matches!(
            Head::train(
                &x,
                &y,
                labels(),
                TrainConfig {
                    hidden: Some(0),
                    ..cfg()
                }
            ),
            Err(EncoderError::InvalidTrainingData(_))
        ));
        assert!(matches!(
            Head::train(&x, &y, labels(), TrainConfig { epochs: 0, ..cfg() }),
            Err(EncoderError::InvalidTrainingData(_))
        ));
    }
}
