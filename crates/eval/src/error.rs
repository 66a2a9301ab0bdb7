//! The one error type of this crate.
//!
//! Every variant names what went wrong (a file and line, a tier, an item) so the CLI can
//! print `{err}` and the user knows what to fix.

use std::path::PathBuf;

/// Why loading, scoring or simulating failed.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A line of a data set (JSONL or CSV) is malformed.
    #[error("{file}:{line}: {msg}")]
    Parse {
        /// The file (or source name) being read.
        file: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        msg: String,
    },

    /// The same normalised input occurs in both the dev and the test split.
    #[error("split leak: {count} input(s) occur in both dev and test (e.g. items {examples})")]
    Leak {
        /// How many distinct normalised inputs occur in both splits.
        count: usize,
        /// Up to five `dev-id/test-id` pairs, comma-separated, for the message.
        examples: String,
    },

    /// A cascade or router names a tier that the outcomes do not have.
    #[error("unknown tier `{tier}` (known tiers: {known})")]
    UnknownTier {
        /// The tier asked for.
        tier: String,
        /// Comma-separated known tiers.
        known: String,
    },

    /// An argument or a value is out of range or inconsistent (lengths, thresholds, scores).
    #[error("invalid input: {0}")]
    Invalid(String),

    /// There is nothing to compute over (no items, no configurations).
    #[error("nothing to evaluate: {0}")]
    Empty(String),

    /// A regular expression given as a metric does not compile.
    #[error("invalid regex `{pattern}`: {source}")]
    Regex {
        /// The pattern.
        pattern: String,
        /// The compiler's complaint.
        #[source]
        source: regex::Error,
    },

    /// JSON output could not be produced or read.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

/// Result alias for this crate.
pub type Result<T, E = EvalError> = std::result::Result<T, E>;

impl EvalError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        EvalError::Io {
            path: path.into(),
            source,
        }
    }
}
