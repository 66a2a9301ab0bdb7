//! Resumable, verified HTTP downloads.
//!
//! Bytes go to `<dest>.partial`; only a complete, verified file is renamed to
//! `<dest>`. When a partial file exists the request asks for the rest
//! (`Range: bytes=N-`): a `206` appends, a `200` starts over, a `416` means the
//! server has nothing past N (complete if N is the full size, otherwise start
//! over). A connection that drops mid-body leaves the partial file in place and
//! returns [`PullError::Interrupted`]; the next pull resumes it.

use crate::error::{chain, PullError};
use crate::progress::Progress;
use crate::verify::{self, append_ext, display_name, sha256_prefix, Expect, BUF};
use reqwest::blocking::{Client, Response};
use reqwest::header::{AUTHORIZATION, CONTENT_RANGE, RANGE};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

/// Default connect timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default stall timeout: the longest wait for a response or for the next bytes of a body.
pub const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// Builds the blocking HTTP client used for every request.
///
/// `timeout` bounds each wait (the response headers, then every read of the
/// body), so a large download may take as long as it needs while a stalled one fails.
pub fn build_client(timeout: Duration) -> Result<Client, PullError> {
    Client::builder()
        .connect_timeout(CONNECT_TIMEOUT.min(timeout))
        .timeout(timeout)
        .user_agent(concat!("rightsize-supply/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| PullError::Client(chain(&e)))
}

/// One file to download.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DownloadJob<'a> {
    /// The URL to GET.
    pub url: &'a str,
    /// Final path; bytes go to `<dest>.partial` until verified.
    pub dest: &'a Path,
    /// Expected size and sha256, when known.
    pub expect: Expect<'a>,
    /// Bearer token for the `Authorization` header.
    pub bearer: Option<&'a str>,
    /// What is downloaded, for messages ("wheel x.whl").
    pub what: &'a str,
}

/// Sends a GET, mapping transport failures to [`PullError::Network`].
pub(crate) fn send(client: &Client, url: &str, range_from: u64, bearer: Option<&str>) -> Result<Response, PullError> {
    let mut req = client.get(url);
    if range_from > 0 {
        req = req.header(RANGE, format!("bytes={range_from}-"));
    }
    if let Some(token) = bearer {
        req = req.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    req.send().map_err(|e| PullError::Network {
        url: url.to_string(),
        detail: chain(&e),
    })
}

/// The error for an unexpected status.
pub(crate) fn status_error(url: &str, status: StatusCode) -> PullError {
    let hint = match status.as_u16() {
        404 => ": not found (check the name, version or revision)",
        401 | 403 => ": access denied (gated or private? set HF_TOKEN for Hugging Face)",
        429 => ": rate limited, try again later",
        500..=599 => ": server error, try again later",
        _ => "",
    };
    PullError::HttpStatus {
        url: url.to_string(),
        status: status.as_u16(),
        hint: hint.to_string(),
    }
}

/// `Content-Range: bytes START-END/TOTAL` or `bytes */TOTAL` → (start, total).
pub(crate) fn parse_content_range(v: &str) -> (Option<u64>, Option<u64>) {
    let Some(rest) = v.trim().strip_prefix("bytes") else {
        return (None, None);
    };
    let rest = rest.trim();
    let (range, total) = rest.split_once('/').unwrap_or((rest, "*"));
    let start = range.split_once('-').and_then(|(s, _)| s.trim().parse().ok());
    (start, total.trim().parse().ok())
}

fn header_range(resp: &Response) -> (Option<u64>, Option<u64>) {
    resp.headers()
        .get(CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .map(parse_content_range)
        .unwrap_or((None, None))
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Downloads `job.url` to `job.dest`, resuming a partial file, verifying size and
/// sha256 when given. Returns the sha256 of the complete file.
///
/// On success `<dest>` exists (replacing any older file, whose marker is removed)
/// and `<dest>.partial` does not. On a checksum or size mismatch the partial file
/// is deleted. On an interruption it is kept.
pub(crate) fn download(client: &Client, job: DownloadJob<'_>, progress: &dyn Progress) -> Result<String, PullError> {
    let partial = append_ext(job.dest, "partial");
    if let Some(parent) = job.dest.parent() {
        fs::create_dir_all(parent).map_err(PullError::io("create directory", parent))?;
    }
    let label = format!("downloading {}", display_name(job.dest));
    // One fresh restart is allowed when resumed bytes turn out unusable.
    let mut restarted = false;
    loop {
        let mut have = file_len(&partial);
        if let Some(size) = job.expect.size {
            if have > size {
                verify::remove_if_exists(&partial)?;
                have = 0;
            }
            if have == size && have > 0 {
                // Everything is already here: only verify.
                match finish_complete(&partial, job, have, &mut restarted)? {
                    Some(sha) => return Ok(sha),
                    None => continue,
                }
            }
        }

        let resp = send(client, job.url, have, job.bearer)?;
        let status = resp.status();
        let (mut hasher, mut file, resumed_from) = match status {
            StatusCode::PARTIAL_CONTENT => {
                let (start, _) = header_range(&resp);
                if start != Some(have) {
                    restart(
                        &partial,
                        job.url,
                        &mut restarted,
                        "the server resumed at another offset",
                    )?;
                    continue;
                }
                let hasher = if have > 0 {
                    sha256_prefix(&partial, have)?
                } else {
                    Sha256::new()
                };
                let file = OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(&partial)
                    .map_err(PullError::io("open", &partial))?;
                (hasher, file, have)
            }
            StatusCode::OK => {
                if have > 0 {
                    tracing::info!(url = job.url, "server ignored the range request; starting over");
                }
                let file = File::create(&partial).map_err(PullError::io("create", &partial))?;
                (Sha256::new(), file, 0)
            }
            StatusCode::RANGE_NOT_SATISFIABLE if have > 0 => {
                let (_, total) = header_range(&resp);
                if total == Some(have) {
                    match finish_complete(&partial, job, have, &mut restarted)? {
                        Some(sha) => return Ok(sha),
                        None => continue,
                    }
                }
                restart(
                    &partial,
                    job.url,
                    &mut restarted,
                    "the server cannot continue the partial file",
                )?;
                continue;
            }
            s => return Err(status_error(job.url, s)),
        };

        let total = job
            .expect
            .size
            .or_else(|| resp.content_length().map(|n| n + resumed_from));
        progress.start(total, &label);
        progress.inc(resumed_from);
        let received = match copy_body(resp, &mut file, &mut hasher, progress) {
            Ok(n) => resumed_from + n,
            Err(BodyError::Write(e)) => {
                progress.finish();
                return Err(PullError::io("write", &partial)(e));
            }
            Err(BodyError::Read(reason)) => {
                let _ = file.flush();
                progress.finish();
                let received = file_len(&partial);
                return Err(PullError::Interrupted {
                    url: job.url.to_string(),
                    received,
                    of_total: total.map(|t| format!(" of {t}")).unwrap_or_default(),
                    partial,
                    reason,
                });
            }
        };
        file.flush().map_err(PullError::io("write", &partial))?;
        file.sync_all().map_err(PullError::io("write", &partial))?;
        drop(file);
        progress.finish();

        if let Some(t) = total {
            if received < t {
                return Err(PullError::Interrupted {
                    url: job.url.to_string(),
                    received,
                    of_total: format!(" of {t}"),
                    partial,
                    reason: "the connection closed early".into(),
                });
            }
        }
        match finish(&partial, job, hasher, received) {
            Err(PullError::ChecksumMismatch { .. }) if resumed_from > 0 && !restarted => {
                restart(&partial, job.url, &mut restarted, "the resumed file did not verify")?;
                continue;
            }
            other => return other,
        }
    }
}

/// Deletes the partial file so the next request starts from zero; fails when
/// that already happened once for this download.
/// Verify a partial file that already holds every byte. A checksum mismatch the first time
/// deletes it and asks for a fresh download (`Ok(None)`); anything else is the outcome.
fn finish_complete(
    partial: &Path,
    job: DownloadJob<'_>,
    have: u64,
    restarted: &mut bool,
) -> Result<Option<String>, PullError> {
    match finish(partial, job, sha256_prefix(partial, have)?, have) {
        Err(PullError::ChecksumMismatch { .. }) if !*restarted => {
            restart(partial, job.url, restarted, "the partial file was complete but corrupt")?;
            Ok(None)
        }
        other => other.map(Some),
    }
}

fn restart(partial: &Path, url: &str, restarted: &mut bool, why: &str) -> Result<(), PullError> {
    tracing::info!(url, why, "restarting download from zero");
    verify::remove_if_exists(partial)?;
    if *restarted {
        return Err(PullError::Download {
            url: url.to_string(),
            reason: format!("restarted once already, and again {why}"),
        });
    }
    *restarted = true;
    Ok(())
}

/// Why streaming a body stopped early.
enum BodyError {
    /// The connection broke (resumable); the flattened cause.
    Read(String),
    /// The local file could not be written (disk full...).
    Write(std::io::Error),
}

/// Streams a response body into `file`, hashing it. Returns the bytes copied.
fn copy_body(
    mut resp: Response,
    file: &mut File,
    hasher: &mut Sha256,
    progress: &dyn Progress,
) -> Result<u64, BodyError> {
    let mut buf = vec![0u8; BUF];
    let mut n_total = 0u64;
    loop {
        let n = match resp.read(&mut buf) {
            Ok(0) => return Ok(n_total),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(BodyError::Read(chain(&e))),
        };
        file.write_all(&buf[..n]).map_err(BodyError::Write)?;
        hasher.update(&buf[..n]);
        n_total += n as u64;
        progress.inc(n as u64);
    }
}

/// Checks size and digest of a complete partial file, then renames it into place.
fn finish(partial: &Path, job: DownloadJob<'_>, hasher: Sha256, received: u64) -> Result<String, PullError> {
    if let Some(size) = job.expect.size {
        if received != size {
            verify::remove_if_exists(partial)?;
            return Err(PullError::SizeMismatch {
                what: job.what.to_string(),
                expected: size,
                actual: received,
            });
        }
    }
    let actual = hex::encode(hasher.finalize());
    if let Some(want) = job.expect.sha256 {
        verify::ensure_digest(job.what, want, &actual, partial)?;
    }
    verify::remove_marker(job.dest)?;
    fs::rename(partial, job.dest).map_err(PullError::io("rename into place", job.dest))?;
    Ok(actual)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_forms() {
        assert_eq!(parse_content_range("bytes 100-199/200"), (Some(100), Some(200)));
        assert_eq!(parse_content_range("bytes */200"), (None, Some(200)));
        assert_eq!(parse_content_range("bytes 0-9/*"), (Some(0), None));
        assert_eq!(parse_content_range("items 1-2/3"), (None, None));
    }

    #[test]
    fn status_hints() {
        let e = status_error("http://x/y", StatusCode::NOT_FOUND).to_string();
        assert!(
            e.contains("http://x/y") && e.contains("404") && e.contains("not found"),
            "{e}"
        );
    }
}
