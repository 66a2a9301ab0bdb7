//! Typed errors for loading encoders, embedding text and training / loading heads.

use std::path::PathBuf;

/// Everything that can go wrong in this crate. Variants carry the offending path or the
/// mismatching numbers so that a CLI or server can print them as they are.
#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    /// The model (or head) directory does not exist or is not a directory.
    #[error("model directory not found: {0}")]
    MissingDir(PathBuf),

    /// A file the encoder or head needs is missing from its directory.
    #[error("required file missing: {0}")]
    MissingFile(PathBuf),

    /// Reading or writing a file failed.
    #[error("i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A JSON file (config.json, 1_Pooling/config.json, head.json) could not be parsed.
    #[error("invalid JSON in {path}: {source}")]
    InvalidJson {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    /// The model's config describes something this crate cannot run
    /// (another architecture, an unknown activation, an unknown pooling mode...).
    #[error("unsupported model config in {path}: {reason}")]
    UnsupportedConfig { path: PathBuf, reason: String },

    /// The weights file is unreadable as safetensors, or lacks / mis-shapes tensors the
    /// architecture needs.
    #[error("corrupt or incompatible weights in {path}: {reason}")]
    CorruptWeights { path: PathBuf, reason: String },

    /// tokenizer.json could not be loaded, or tokenization failed.
    #[error("tokenizer error: {0}")]
    Tokenizer(String),

    /// A vector's dimension does not match what a head or encoder expects.
    #[error("dimension mismatch: expected {expected}, got {got} ({context})")]
    DimMismatch {
        expected: usize,
        got: usize,
        context: String,
    },

    /// A head was trained on the embeddings of another encoder.
    #[error("head was trained for encoder {head_encoder}, but is being used with {encoder}")]
    EncoderMismatch { head_encoder: String, encoder: String },

    /// Training data or training configuration is unusable.
    #[error("invalid training input: {0}")]
    InvalidTrainingData(String),

    /// A saved head is malformed (bad metadata, missing tensors, inconsistent shapes).
    #[error("invalid head in {path}: {reason}")]
    InvalidHead { path: PathBuf, reason: String },

    /// [`crate::Encoder::embed_until`] was told to stop (a deadline passed, the caller left)
    /// before every batch was embedded.
    #[error("embedding stopped after {done} of {total} inputs")]
    Stopped { done: usize, total: usize },

    /// An error from the tensor library during a forward or backward pass.
    #[error("tensor error: {}", candle_reason(.0))]
    Candle(#[from] candle_core::Error),
}

/// Result alias used across the crate.
pub type Result<T, E = EncoderError> = std::result::Result<T, E>;

impl EncoderError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        EncoderError::Io {
            path: path.into(),
            source,
        }
    }
}

/// A candle error's message without the backtrace candle attaches when `RUST_BACKTRACE`
/// is set (it would otherwise flood a one-line error report).
pub(crate) fn candle_reason(e: &candle_core::Error) -> String {
    match e {
        candle_core::Error::WithBacktrace { inner, .. } => candle_reason(inner),
        other => other.to_string(),
    }
}
