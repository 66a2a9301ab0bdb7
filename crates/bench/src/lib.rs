//! Measurement tools for rightsize.
//!
//! # Why this crate exists
//!
//! A tokens-per-second figure on its own says little: it moves with the CPU, its
//! frequency governor, the other processes on the box, the thread count and the
//! model file. So every rightsize performance number is reported **as a ratio
//! against llama.cpp's own tools (`llama-bench`, `llama-server`), measured in the
//! same run on the same machine with the same model file**. A ratio of 1.0 means
//! "as fast as llama.cpp"; it stays meaningful across machines where absolute
//! numbers do not.
//!
//! The peer binaries are built from the llama.cpp tree that the `llama-cpp-python`
//! source distribution vendors, by `bench/build-peer.sh`, into
//! `${RIGHTSIZE_CACHE:-~/.cache/rightsize}/peer/bin` (or `$RIGHTSIZE_PEER_DIR`).
//!
//! # Pieces
//!
//! - [`peer`]: find the peer binaries and run `llama-bench` (prefill/decode t/s).
//! - [`server`]: start `llama-server` on a free loopback port and stop it on drop.
//! - [`load`]: an OpenAI-compatible streaming load generator usable against any
//!   server (llama-server, rightsize's own), loopback targets only, bounded in
//!   requests and time.
//! - [`rss`]: peak and current resident memory of this process or a child.
//! - [`stats`]: percentiles and a markdown table with a ratio column.

pub mod error;
pub mod load;
pub mod peer;
pub mod rss;
pub mod server;
mod sse;
pub mod stats;

pub use error::BenchError;
pub use load::{run_load, run_load_blocking, LoadResult, LoadSpec};
pub use peer::{run_llama_bench, LlamaBenchResult, PeerBins};
pub use rss::{current_rss, current_rss_of, peak_rss, peak_rss_of};
pub use server::{PeerServer, PeerServerConfig};
pub use stats::{markdown_table, percentile, ratio, Percentiles, Row};
