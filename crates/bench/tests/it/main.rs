//! The bench crate's integration tests, as one binary (`tests/it/*.rs` are its modules, as
//! in ripgrep): one link instead of one per file. Captured peer output lives in
//! `tests/fixtures`.

mod load_fake_server;
mod peer;
