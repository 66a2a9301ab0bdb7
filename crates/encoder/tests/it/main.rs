//! The encoder's integration tests on the real all-MiniLM-L6-v2, as one binary
//! (`tests/it/*.rs` are its modules, as in ripgrep): every test binary links candle, so one
//! instead of one per file saves link time, and the model is loaded once for all of them
//! (`testkit::minilm`).

mod classify;
mod embeddings;
