//! The guard crate's integration tests, as one binary (`tests/it/*.rs` are its modules, as
//! in ripgrep): every test binary links candle, so one instead of one per file saves link
//! time; the real MiniLM is loaded once (`testkit::minilm`).

mod injection;
mod pathological;
mod pii_eval;
mod redaction;
