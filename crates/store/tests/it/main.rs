//! The store's integration tests, as one binary (`tests/it/*.rs` are its modules, as in
//! ripgrep): one link instead of one per file. Tests of different files now run at the same
//! time: each works in its own SQLite file or Postgres schema, except those on the Postgres
//! scratch database's shared public schema, which take turns (`common::postgres_public`).

mod common;

mod audit;
mod evals;
mod keys;
mod migrate;
mod quota;
mod shadow;
