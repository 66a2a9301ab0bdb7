//! The engine's integration tests on real models, as one binary (`tests/it/*.rs` are its
//! modules, as in ripgrep): every test binary links llama.cpp, so one instead of one per file
//! saves most of the suite's link time. The files' tests now share a process; the two that
//! measure it (`sleep`) run alone (`common::own_process`).

mod common;

mod constrain;
mod generate;
mod models;
mod prefix;
mod scheduling;
mod sleep;
