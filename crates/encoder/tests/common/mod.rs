//! Finds the real all-MiniLM-L6-v2 model for integration tests; when it is absent a test
//! skips (printed and counted) or, under CI, fails: `testkit::skip_or_fail`.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use encoder::{Encoder, EncoderOptions};

/// `$RIGHTSIZE_CACHE/models/minilm-l6`, else `~/.cache/rightsize/models/minilm-l6`.
pub fn model_dir() -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(cache) = std::env::var_os("RIGHTSIZE_CACHE") {
        candidates.push(PathBuf::from(cache).join("models/minilm-l6"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(home).join(".cache/rightsize/models/minilm-l6"));
    }
    candidates
        .into_iter()
        .find(|d| d.join("model.safetensors").is_file())
}

/// The shared encoder (loaded once per test binary), or `None` when the model is absent.
pub fn encoder() -> Option<Arc<Encoder>> {
    static ENC: OnceLock<Option<Arc<Encoder>>> = OnceLock::new();
    ENC.get_or_init(|| {
        let dir = model_dir()?;
        Some(Arc::new(
            Encoder::load(&dir, EncoderOptions::default())
                .expect("loading the cached minilm-l6 model"),
        ))
    })
    .clone()
}

/// Returns the shared encoder or skips the calling test.
#[macro_export]
macro_rules! require_model {
    () => {
        match common::encoder() {
            Some(e) => e,
            None => {
                testkit::skip_or_fail(
                    "minilm-l6 not found under $RIGHTSIZE_CACHE/models or ~/.cache/rightsize/models",
                );
                return;
            }
        }
    };
}
