//! Turning per-token hidden states into one vector per input: mean or CLS pooling,
//! then optional L2 normalisation.

use std::path::Path;

use candle_core::{DType, Tensor, D};
use serde::{Deserialize, Serialize};

use crate::error::{EncoderError, Result};

/// How token vectors are reduced to a sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Average of the token vectors, padding excluded through the attention mask
    /// (sentence-transformers' `pooling_mode_mean_tokens`).
    #[default]
    Mean,
    /// The first token's (`[CLS]`) vector (`pooling_mode_cls_token`).
    Cls,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
}

impl Pooling {
    /// Reads a sentence-transformers `1_Pooling/config.json`. Exactly one of the mean or
    /// CLS modes must be on; any other mode is reported as unsupported.
    pub fn from_config_file(path: &Path) -> Result<Pooling> {
        let text = std::fs::read_to_string(path).map_err(|e| EncoderError::io(path, e))?;
        let cfg: PoolingConfig = serde_json::from_str(&text).map_err(|source| EncoderError::InvalidJson {
            path: path.to_path_buf(),
            source,
        })?;
        let unsupported = |reason: &str| EncoderError::UnsupportedConfig {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        if cfg.pooling_mode_max_tokens
            || cfg.pooling_mode_mean_sqrt_len_tokens
            || cfg.pooling_mode_weightedmean_tokens
            || cfg.pooling_mode_lasttoken
        {
            return Err(unsupported(
                "only mean or cls pooling is supported (max / mean_sqrt_len / weightedmean / lasttoken are not)",
            ));
        }
        match (cfg.pooling_mode_mean_tokens, cfg.pooling_mode_cls_token) {
            (true, false) => Ok(Pooling::Mean),
            (false, true) => Ok(Pooling::Cls),
            (true, true) => Err(unsupported(
                "both mean and cls pooling are on; concatenated pooling is not supported",
            )),
            (false, false) => Err(unsupported("no pooling mode is on")),
        }
    }

    /// Pools `hidden` (`[batch, seq, dim]`) with `mask` (`[batch, seq]`, 1 for real tokens,
    /// 0 for padding, any integer or float dtype) into `[batch, dim]`.
    pub fn pool(self, hidden: &Tensor, mask: &Tensor) -> Result<Tensor> {
        match self {
            Pooling::Cls => Ok(hidden.narrow(1, 0, 1)?.squeeze(1)?),
            Pooling::Mean => {
                let mask = mask.to_dtype(hidden.dtype())?.unsqueeze(D::Minus1)?; // [b, s, 1]
                let summed = hidden.broadcast_mul(&mask)?.sum(1)?; // [b, d]
                                                                   // At least one real token per row ([CLS]); clamp anyway so an all-padding
                                                                   // row yields zeros instead of NaN.
                let counts = mask.sum(1)?.clamp(1e-9f32, f32::MAX)?; // [b, 1]
                Ok(summed.broadcast_div(&counts)?)
            }
        }
    }
}

/// L2-normalises each row of a `[batch, dim]` tensor (zero rows stay zero).
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let x = x.to_dtype(DType::F32)?;
    let norm = x.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12f32, f32::MAX)?;
    Ok(x.broadcast_div(&norm)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn mean_pooling_ignores_padding() {
        let dev = Device::Cpu;
        // batch 1, seq 3, dim 2; the last position is padding with huge values.
        let hidden = Tensor::new(&[[[1f32, 2.], [3., 4.], [100., 100.]]], &dev).unwrap();
        let mask = Tensor::new(&[[1u32, 1, 0]], &dev).unwrap();
        let pooled = Pooling::Mean.pool(&hidden, &mask).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(pooled, vec![vec![2.0, 3.0]]);
        let cls = Pooling::Cls.pool(&hidden, &mask).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(cls, vec![vec![1.0, 2.0]]);
    }

    #[test]
    fn normalize_gives_unit_rows() {
        let dev = Device::Cpu;
        let x = Tensor::new(&[[3f32, 4.], [0., 0.]], &dev).unwrap();
        let n = l2_normalize(&x).unwrap().to_vec2::<f32>().unwrap();
        assert!((n[0][0] - 0.6).abs() < 1e-6 && (n[0][1] - 0.8).abs() < 1e-6);
        assert_eq!(n[1], vec![0.0, 0.0]);
    }

    #[test]
    fn pooling_config_parsing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        std::fs::write(
            &p,
            r#"{"word_embedding_dimension": 8, "pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}"#,
        )
        .unwrap();
        assert_eq!(Pooling::from_config_file(&p).unwrap(), Pooling::Cls);
        std::fs::write(&p, r#"{"pooling_mode_max_tokens": true}"#).unwrap();
        assert!(matches!(
            Pooling::from_config_file(&p),
            Err(EncoderError::UnsupportedConfig { .. })
        ));
        std::fs::write(&p, "not json").unwrap();
        assert!(matches!(
            Pooling::from_config_file(&p),
            Err(EncoderError::InvalidJson { .. })
        ));
    }
}
