//! One module per subcommand.
pub mod bench;
pub mod pull;
pub mod run;
