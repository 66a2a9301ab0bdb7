//! Hugging Face: the URL of one file of one repository at one revision.
//!
//! `GET {endpoint}/{owner}/{repo}/resolve/{revision}/{path}`, with an optional
//! `Authorization: Bearer $HF_TOKEN`. The endpoint is configurable (`HF_ENDPOINT`)
//! for mirrors and for tests.

use crate::error::PullError;

/// Environment variable overriding the endpoint.
pub const HF_ENDPOINT_ENV: &str = "HF_ENDPOINT";
/// Environment variable holding an access token.
pub const HF_TOKEN_ENV: &str = "HF_TOKEN";
/// The default endpoint.
pub const DEFAULT_HF_ENDPOINT: &str = "https://huggingface.co";

/// The download URL of `path` in `repo` (`owner/name`) at `revision`.
///
/// Each piece is percent-encoded as a path segment, so a revision such as
/// `refs/pr/1` becomes `refs%2Fpr%2F1`, as the Hub expects.
pub fn resolve_url(endpoint: &str, repo: &str, revision: &str, path: &str) -> Result<String, PullError> {
    let bad = |reason: String| PullError::InvalidSpec {
        spec: format!("hf:{repo}/{path}@{revision}"),
        reason,
    };
    let mut url =
        reqwest::Url::parse(endpoint).map_err(|e| bad(format!("bad Hugging Face endpoint `{endpoint}`: {e}")))?;
    {
        let mut segs = url
            .path_segments_mut()
            .map_err(|_| bad(format!("bad Hugging Face endpoint `{endpoint}`")))?;
        segs.pop_if_empty();
        segs.extend(repo.split('/'));
        segs.push("resolve");
        segs.push(revision);
        segs.extend(path.split('/'));
    }
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_resolve_urls() {
        assert_eq!(
            resolve_url("https://huggingface.co", "o/r", "main", "a/b.gguf").unwrap(),
            "https://huggingface.co/o/r/resolve/main/a/b.gguf"
        );
        assert_eq!(
            resolve_url("http://127.0.0.1:8080/mirror/", "o/r", "refs/pr/1", "b c.gguf").unwrap(),
            "http://127.0.0.1:8080/mirror/o/r/resolve/refs%2Fpr%2F1/b%20c.gguf"
        );
        assert!(resolve_url("not a url", "o/r", "main", "x").is_err());
    }
}
