//! Typed engine errors. Every variant names the problem so a user can act on it.

use std::path::PathBuf;

/// Everything that can go wrong in the decoder engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("model file not found: {0}")]
    ModelNotFound(PathBuf),
    #[error("not a valid GGUF file ({path}): {reason}")]
    InvalidGguf { path: PathBuf, reason: String },
    #[error("unsupported model architecture `{arch}` in {path}")]
    UnsupportedArchitecture { path: PathBuf, arch: String },
    #[error("llama.cpp could not load {0} (corrupted, truncated or unsupported file; see logs)")]
    LoadFailed(PathBuf),
    #[error("could not create a llama.cpp context: {0}")]
    Context(String),
    #[error("the model has no chat template; pass a raw prompt instead")]
    NoChatTemplate,
    #[error("chat template error: {0}")]
    Template(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("prompt is {prompt_tokens} tokens but the context allows at most {limit} per sequence")]
    PromptTooLong { prompt_tokens: usize, limit: usize },
    #[error("invalid constraint: {0}")]
    InvalidConstraint(String),
    #[error("engine queue is full ({0} waiting); retry later")]
    QueueFull(usize),
    #[error("engine has shut down")]
    ShutDown,
    #[error("decode failed: {0}")]
    Decode(String),
}
