//! The server's integration tests, as one binary (`tests/it/*.rs` are its modules, as in
//! ripgrep): each test binary links llama.cpp and candle, so one binary instead of one per
//! file saves most of the suite's link time. The files' tests now share a process: what
//! would leak between them is kept apart in `common` (log captures by server, see
//! `common::logs`).

mod common;

mod api;
mod audit;
mod auth;
mod guard;
mod guardrails;
mod hardening;
mod model_verify;
mod pool_real;
mod quota;
mod shadow;
mod tasks;
