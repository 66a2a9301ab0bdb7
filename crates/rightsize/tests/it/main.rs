//! The `rightsize` binary's integration tests, as one test binary (`tests/it/*.rs` are its
//! modules, as in ripgrep): every test binary links llama.cpp and candle, so one instead of
//! one per file saves most of the suite's link time. The tests run the real `rightsize`
//! binary in child processes (`common`), each in its own temporary directory, so sharing
//! this process changes nothing for them.

mod common;

mod admin_cli;
mod audit_cli;
mod audit_kill;
mod bbc_topic;
mod cli;
mod eval_cli;
mod eval_metrics;
mod eval_router;
mod keys_cli;
mod readme;
mod stats_cli;
