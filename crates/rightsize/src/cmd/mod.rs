//! One module per subcommand.
pub mod admin;
pub mod audit;
pub mod bench;
pub mod bench_serve;
pub mod data;
pub mod eval;
pub mod guard;
pub mod pull;
pub mod run;
pub mod serve;
pub mod tasks;
