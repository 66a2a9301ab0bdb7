//! The one error type of this crate.
//!
//! Every variant names the thing that went wrong (a URL, a path, a model id) so
//! that the CLI can print `{err}` and the user knows what to do next.

use std::io;
use std::path::{Path, PathBuf};

/// Why a pull, a verification or a model lookup failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The id is neither in the catalog, nor a cached model, nor an existing file.
    #[error("unknown model `{id}`: not a catalog id, a cached model or an existing file (catalog ids: {known})")]
    UnknownModel {
        /// The id that was asked for.
        id: String,
        /// Comma-separated catalog ids, for the message.
        known: String,
    },

    /// The id names a catalog model that has not been pulled yet.
    #[error("model `{id}` is not in the cache; run `rightsize pull {id}`")]
    NotCached {
        /// The catalog id.
        id: String,
    },

    /// The cached copy of a model is damaged (wrong size), so it must be pulled again.
    #[error("cached model `{id}` at {path} has {actual} bytes but {expected} are expected; run `rightsize pull {id}` to repair it")]
    CorruptCache {
        /// The catalog id.
        id: String,
        /// The cached file.
        path: PathBuf,
        /// Expected size in bytes.
        expected: u64,
        /// Size found on disk.
        actual: u64,
    },

    /// A verified file no longer has the digest its marker records: it was changed in place
    /// after it was pulled. It must not be loaded; pulling the model again replaces it.
    #[error("{path} changed since it was verified: its sha256 is now {actual}, but {expected} was verified when it was pulled; run `rightsize pull` for this model to fetch it again")]
    ChangedSinceVerified {
        /// The file.
        path: PathBuf,
        /// The digest recorded in its marker.
        expected: String,
        /// The digest of the file as it is now.
        actual: String,
    },

    /// A local path given to `pull` (or to `resolve_model`) does not exist or is not a file.
    #[error("local model file {path} does not exist or is not a regular file")]
    LocalNotFound {
        /// The path as given.
        path: PathBuf,
    },

    /// A file pulled as a decoder model is not GGUF.
    #[error("{path} is not a GGUF model file (it does not start with the GGUF magic bytes)")]
    NotGguf {
        /// The file.
        path: PathBuf,
    },

    /// A pull spec, an id or a checksum given by the user is malformed.
    #[error("invalid model spec `{spec}`: {reason}")]
    InvalidSpec {
        /// The spec (or id) as given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The host could not be reached, or the connection failed before a response.
    #[error("could not reach {url}: {detail}")]
    Network {
        /// The URL that was requested.
        url: String,
        /// The underlying error chain, flattened.
        detail: String,
    },

    /// The server answered with an unexpected HTTP status.
    #[error("{url} answered HTTP {status}{hint}")]
    HttpStatus {
        /// The URL that was requested.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// Extra explanation (may be empty), starting with a separator.
        hint: String,
    },

    /// A download stopped before the whole file arrived. The bytes received are
    /// kept in `partial` and the next pull resumes from there.
    #[error("download of {url} was interrupted after {received} bytes{of_total} ({reason}); the partial file {partial} is kept: run the same pull again to resume")]
    Interrupted {
        /// The URL that was being downloaded.
        url: String,
        /// Bytes now in the partial file.
        received: u64,
        /// " of N" when the total is known, else empty.
        of_total: String,
        /// The partial file kept for resuming.
        partial: PathBuf,
        /// The underlying cause.
        reason: String,
    },

    /// A download could not be completed for a reason other than the above.
    #[error("download of {url} failed: {reason}")]
    Download {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },

    /// Downloaded or assembled bytes do not have the expected sha256.
    /// The offending file has been deleted.
    #[error("checksum mismatch for {what}: expected sha256 {expected}, got {actual}")]
    ChecksumMismatch {
        /// What was checked (a wheel, an assembled model...).
        what: String,
        /// The expected hex digest.
        expected: String,
        /// The digest actually computed.
        actual: String,
    },

    /// Downloaded or assembled bytes do not have the expected size.
    #[error("size mismatch for {what}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// What was checked.
        what: String,
        /// Expected size in bytes.
        expected: u64,
        /// Size actually found.
        actual: u64,
    },

    /// The package index answered, but not with what we need.
    #[error("package index {url}: {reason}")]
    Index {
        /// The index URL that was queried.
        url: String,
        /// What was missing or malformed.
        reason: String,
    },

    /// A wheel lacks a member (or a folder) that the catalog names.
    #[error("wheel {wheel} has no member `{member}`")]
    MissingMember {
        /// The wheel file.
        wheel: PathBuf,
        /// The member or folder prefix.
        member: String,
    },

    /// A wheel could not be read as a zip archive.
    #[error("cannot read wheel {path}: {source}")]
    Zip {
        /// The wheel file.
        path: PathBuf,
        /// The zip error.
        #[source]
        source: zip::result::ZipError,
    },

    /// A filesystem operation failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What we were doing ("create directory", "write"...).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// The HTTP client could not be built (TLS initialisation).
    #[error("cannot create the HTTP client: {0}")]
    Client(String),
}

impl PullError {
    /// Builds a closure that wraps an `io::Error` with an action and a path,
    /// for use with `map_err`.
    pub(crate) fn io(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> PullError {
        let path = path.to_path_buf();
        move |source| PullError::Io { action, path, source }
    }

    /// True when running the same pull again may succeed by resuming.
    pub fn is_resumable(&self) -> bool {
        matches!(self, PullError::Interrupted { .. })
    }
}

/// Flattens an error and its sources into one line (`a: b: c`).
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_send_sync_static() {
        fn check<T: std::error::Error + Send + Sync + 'static>() {}
        check::<PullError>();
    }

    #[test]
    fn interrupted_says_how_to_resume() {
        let e = PullError::Interrupted {
            url: "http://h/f".into(),
            received: 10,
            of_total: " of 20".into(),
            partial: PathBuf::from("/c/f.partial"),
            reason: "reset".into(),
        };
        assert!(e.is_resumable());
        assert_eq!(
            e.to_string(),
            "download of http://h/f was interrupted after 10 bytes of 20 (reset); the partial file /c/f.partial is kept: run the same pull again to resume"
        );
    }
}
