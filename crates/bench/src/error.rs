//! The one error type of the crate.

use std::path::PathBuf;

/// Everything that can go wrong while measuring.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The llama.cpp peer binaries are not installed.
    #[error(
        "llama.cpp peer binaries not found in {dir}: missing {missing}. \
         Build them with `bench/build-peer.sh` (or point $RIGHTSIZE_PEER_DIR at a folder \
         holding llama-server and llama-bench)"
    )]
    PeerMissing { dir: PathBuf, missing: String },

    /// A peer process could not be started or exited badly.
    #[error("{tool} failed: {message}")]
    PeerFailed { tool: String, message: String },

    /// Output of a peer tool could not be understood.
    #[error("could not parse {what}: {message}")]
    Parse { what: String, message: String },

    /// `llama-server` did not become healthy in time.
    #[error("llama-server on port {port} not healthy after {waited_s:.0} s{detail}")]
    ServerTimeout { port: u16, waited_s: f64, detail: String },

    /// The load generator refused a target that is not on this machine.
    #[error("refusing non-loopback target {0}: load tests only go to 127.0.0.0/8, localhost or [::1]")]
    NotLoopback(String),

    /// A load spec that cannot run.
    #[error("invalid load spec: {0}")]
    InvalidSpec(String),

    #[error("http: {0}")]
    Http(#[from] reqwest::Error),

    #[error("io: {0}")]
    Io(#[from] std::io::Error),

    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}
