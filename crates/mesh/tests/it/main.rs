//! The mesh crate's integration tests, as one binary (`tests/it/*.rs` are its modules, as in
//! ripgrep): every test binary links llama.cpp and candle, so one instead of one per file
//! saves link time.

mod router_run;
mod task_files;
