//! The supply crate's integration tests, as one binary (`tests/it/*.rs` are its modules, as
//! in ripgrep): one link instead of one per file. Every test pulls into its own temporary
//! cache from its own loopback server (`common::Server`), so sharing a process changes
//! nothing for them.

mod common;

mod folders;
mod hf_pull;
mod local_pull;
mod pypi_pull;
mod real_pypi;
mod resolve;
mod resume;
