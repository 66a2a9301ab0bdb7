//! Typed errors. Messages name rules, kinds, counts and positions — never the matched
//! values — so an error can be logged or returned to a client as it is.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::pii::PiiKind;

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// A regular expression from configuration (a custom recogniser or a banned output
    /// pattern) does not compile, or compiles beyond the size limit.
    #[error("invalid pattern for {name}: {reason}")]
    InvalidPattern { name: String, reason: String },

    /// A custom recogniser name is not a snake_case identifier, or collides with a
    /// built-in kind or another recogniser.
    #[error("invalid recogniser name {0:?}: use a snake_case identifier that is not a built-in kind")]
    InvalidName(String),

    /// A JSON Schema in an output policy is not a valid schema.
    #[error("invalid JSON schema: {0}")]
    InvalidSchema(String),

    /// Configuration that cannot work (for example hash mode with an empty salt).
    #[error("invalid guard configuration: {0}")]
    Config(String),

    /// The policy blocks input containing these kinds of PII. Carries kinds and counts
    /// only, never the values.
    #[error("blocked: input contains {}", describe_counts(.counts))]
    Blocked { counts: BTreeMap<PiiKind, usize> },

    /// A bundled or supplied dataset line is malformed.
    #[error("dataset line {line}: {reason}")]
    Dataset { line: usize, reason: String },

    /// The input is larger than the guard is configured to score.
    #[error("input too large: {len} bytes, at most {max} accepted")]
    InputTooLarge { len: usize, max: usize },

    /// The encoder (embedding or head training / loading) failed.
    #[error(transparent)]
    Encoder(#[from] encoder::EncoderError),

    /// Guard work moved to a blocking thread did not come back (it panicked).
    #[error("guard worker failed: {0}")]
    Worker(String),

    /// Reading or writing a file failed.
    #[error("i/o error on {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// `email×2, phone×1`: kinds and counts in a stable order.
pub(crate) fn describe_counts(counts: &BTreeMap<PiiKind, usize>) -> String {
    let mut s = String::new();
    for (i, (kind, n)) in counts.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "{kind}×{n}");
    }
    s
}

/// Result alias used across the crate.
pub type Result<T, E = GuardError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocked_message_names_kinds_and_counts() {
        let mut counts = BTreeMap::new();
        counts.insert(PiiKind::Email, 2);
        counts.insert(PiiKind::CreditCard, 1);
        let msg = GuardError::Blocked { counts }.to_string();
        assert_eq!(msg, "blocked: input contains email×2, credit_card×1");
    }
}
