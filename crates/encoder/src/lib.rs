//! # encoder — sentence embeddings and small trainable classifiers on candle
//!
//! Many of the requests rightsize serves are *label tasks*: pick a route, a topic, a
//! sentiment, flag a prompt injection. A generative model can do them, but the cheapest
//! tier that does them well is a small sentence encoder (all-MiniLM-L6-v2: 6 layers,
//! 384 dimensions, 90 MB, runs on any CPU) followed by a tiny
//! classification head trained on a few hundred examples in seconds. This crate is that
//! tier, and also serves OpenAI-style `/v1/embeddings`.
//!
//! * [`Encoder`] loads a BERT-family sentence-transformers directory (`config.json`,
//!   `tokenizer.json`, `model.safetensors`, optional `1_Pooling/config.json`) and turns
//!   texts into L2-normalised, mean- or CLS-pooled embeddings, in length-sorted batches
//!   padded to the longest member with an attention mask (padding never changes a
//!   result), with per-input token counts for `usage`.
//! * [`Head`] is a linear or one-hidden-layer classifier over embeddings, trained with
//!   candle-nn (AdamW, cross-entropy), deterministic for a seed, saved as
//!   `head.safetensors` + `head.json` (labels, architecture, dimension, encoder id/hash).
//! * [`Classifier`] pairs a shared `Arc<Encoder>` with a head: `classify(&[&str])`.
//!
//! ## Why candle (and not llama.cpp) for encoders
//! Generation runs on llama.cpp (crate `engine`). Encoders run on candle because it
//! loads the original safetensors checkpoints directly (no GGUF conversion step for
//! every encoder we ship), implements BERT with attention masks and batching, is pure
//! Rust (builds anywhere the workspace builds, `cuda` feature for GPUs), and has autograd
//! and optimisers — so the same library that runs the encoder also trains the heads,
//! with no Python in the loop.
//!
//! All public types are `Send + Sync`; the server shares them across threads.

mod classifier;
mod error;
mod head;
mod model;
mod pooling;
mod train;

pub use classifier::{Classifier, Prediction};
pub use error::{EncoderError, Result};
pub use head::{EncoderRef, Head, HeadArch, HEAD_FORMAT_VERSION, HEAD_META_FILE, HEAD_WEIGHTS_FILE};
pub use model::{
    cosine, EmbedOutput, Encoder, EncoderOptions, CONFIG_FILE, DEFAULT_BATCH_SIZE, POOLING_CONFIG_FILE,
    SBERT_CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE,
};
pub use pooling::{l2_normalize, Pooling};
pub use train::{TrainConfig, TrainSummary};

/// The tensor library, re-exported so callers can name a [`candle_core::Device`] without
/// depending on candle themselves.
pub use candle_core;
pub use candle_core::Device;

#[cfg(test)]
mod tests {
    #[test]
    fn public_types_are_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<crate::Encoder>();
        check::<crate::Head>();
        check::<crate::Classifier>();
        check::<crate::EncoderError>();
    }
}
