//! Loading a GGUF model (memory-mapped: no copy of the weights) and reading what the file says
//! about itself: architecture, context length, chat template, special tokens.

use crate::EngineError;
use llama_cpp_2::{llama_backend::LlamaBackend, model::params::LlamaModelParams, model::LlamaModel, token::LlamaToken};
use serde::Serialize;
use std::{io::Read, path::Path, path::PathBuf, sync::OnceLock};

/// Architectures this build has been tested with on real models. Others may load (llama.cpp
/// knows many more); when one fails to load we say it is unsupported rather than "corrupt".
pub const TESTED_ARCHITECTURES: [&str; 6] = ["llama", "qwen2", "qwen3", "gemma3", "phi3", "mistral"];

/// The process-wide llama.cpp backend (initialised once; its logs go to `tracing`).
pub fn backend() -> &'static LlamaBackend {
    static BACKEND: OnceLock<LlamaBackend> = OnceLock::new();
    BACKEND.get_or_init(|| {
        llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
        LlamaBackend::init().expect("llama.cpp backend initialises once")
    })
}

/// What a GGUF file says about its model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub path: PathBuf,
    pub name: Option<String>,
    pub architecture: String,
    /// Context length the model was trained with.
    pub context_length: u32,
    pub n_params: u64,
    /// Bytes of weights (mapped from the file, not copied).
    pub weight_bytes: u64,
    pub n_layer: u32,
    pub n_head: u32,
    pub n_head_kv: u32,
    pub n_embd: u32,
    pub n_vocab: u32,
    pub chat_template: Option<String>,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
}

impl ModelInfo {
    /// Bytes of f16 KV cache per token of context (K and V, every layer).
    pub fn kv_bytes_per_token(&self) -> u64 {
        let head_dim = (self.n_embd / self.n_head.max(1)) as u64;
        2 * self.n_layer as u64 * self.n_head_kv as u64 * head_dim * 2
    }
}

/// Check the header before llama.cpp sees the file, so a bad file gets a precise error.
fn check_header(path: &Path) -> Result<String, EngineError> {
    let invalid = |reason: String| EngineError::InvalidGguf { path: path.to_owned(), reason };
    if !path.is_file() {
        return Err(EngineError::ModelNotFound(path.to_owned()));
    }
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .map_err(|e| invalid(format!("cannot read header: {e}")))?;
    if &magic != b"GGUF" {
        return Err(invalid(format!("bad magic {magic:?}, expected \"GGUF\"")));
    }
    let gguf = llama_cpp_2::gguf::GgufContext::from_file(path)
        .ok_or_else(|| invalid("header or metadata is truncated or corrupted".into()))?;
    let idx = gguf.find_key("general.architecture");
    if idx < 0 {
        return Err(invalid("no `general.architecture` key".into()));
    }
    gguf.val_str(idx).map(str::to_owned).ok_or_else(|| invalid("`general.architecture` is not a string".into()))
}

/// Load a model file, memory-mapped, with `n_gpu_layers` offloaded when built with `cuda`.
pub fn load(path: &Path, n_gpu_layers: u32) -> Result<(LlamaModel, ModelInfo), EngineError> {
    let arch = check_header(path)?;
    let params = LlamaModelParams::default().with_use_mmap(true).with_n_gpu_layers(n_gpu_layers);
    let model = LlamaModel::load_from_file(backend(), path, &params).map_err(|_| {
        if TESTED_ARCHITECTURES.contains(&arch.as_str()) {
            EngineError::LoadFailed(path.to_owned())
        } else {
            EngineError::UnsupportedArchitecture { path: path.to_owned(), arch: arch.clone() }
        }
    })?;
    let piece = |t: LlamaToken| -> Option<String> {
        (t.0 >= 0).then(|| String::from_utf8_lossy(&model.vocab().token_to_piece(t, true, None)).into_owned())
    };
    let info = ModelInfo {
        path: path.to_owned(),
        name: model.meta_val_str("general.name").ok(),
        architecture: arch,
        context_length: model.n_ctx_train(),
        n_params: model.n_params(),
        weight_bytes: model.size(),
        n_layer: model.n_layer(),
        n_head: model.n_head(),
        n_head_kv: model.n_head_kv(),
        n_embd: model.n_embd() as u32,
        n_vocab: model.n_vocab() as u32,
        chat_template: model.chat_template(None).ok().and_then(|t| t.to_string().ok()),
        bos_token: piece(model.vocab().bos()),
        eos_token: piece(model.vocab().eos()),
    };
    Ok((model, info))
}
