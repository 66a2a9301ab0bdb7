//! Checksums and the verified marker.
//!
//! After a file's sha256 has been checked, `<file>.sha256` is written next to it
//! holding the hex digest. A file whose marker matches the expected digest (and
//! whose size matches) is trusted without hashing it again: hashing a 1 GB model
//! on every start would cost seconds.

use crate::error::PullError;
use crate::progress::Progress;
use sha2::{Digest, Sha256};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Read/write buffer size for hashing and copying.
pub(crate) const BUF: usize = 256 * 1024;

/// The marker path for a file or directory: `<path>.sha256`.
pub fn marker_path(path: &Path) -> PathBuf {
    append_ext(path, "sha256")
}

/// `<path>.<ext>` (appending, not replacing, the extension).
pub(crate) fn append_ext(path: &Path, ext: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

/// The digest recorded in `path`'s marker, if there is a well-formed one.
pub fn read_marker(path: &Path) -> Option<String> {
    let text = fs::read_to_string(marker_path(path)).ok()?;
    let digest = text.trim().to_ascii_lowercase();
    is_sha256_hex(&digest).then_some(digest)
}

/// Records `digest` as the verified sha256 of `path` (atomically).
pub fn write_marker(path: &Path, digest: &str) -> Result<(), PullError> {
    let marker = marker_path(path);
    let tmp = append_ext(&marker, "partial");
    fs::write(&tmp, format!("{digest}\n")).map_err(PullError::io("write", &tmp))?;
    fs::rename(&tmp, &marker).map_err(PullError::io("rename into place", &marker))
}

/// Removes `path`'s marker if there is one.
pub(crate) fn remove_marker(path: &Path) -> Result<(), PullError> {
    remove_if_exists(&marker_path(path))
}

/// Removes a file, ignoring "not found".
pub(crate) fn remove_if_exists(path: &Path) -> Result<(), PullError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(PullError::io("remove", path)(e)),
        _ => Ok(()),
    }
}

/// True for 64 lowercase-or-uppercase hex characters.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Normalises a user-given digest, or explains what is wrong with it.
pub(crate) fn normalize_sha256(s: &str) -> Result<String, PullError> {
    let d = s.trim().to_ascii_lowercase();
    let d = d.strip_prefix("sha256:").unwrap_or(&d).to_string();
    if is_sha256_hex(&d) {
        Ok(d)
    } else {
        Err(PullError::InvalidSpec {
            spec: s.to_string(),
            reason: "a sha256 must be 64 hex characters".into(),
        })
    }
}

/// Hashes a whole file, reporting progress.
pub fn sha256_file(path: &Path, progress: &dyn Progress) -> Result<String, PullError> {
    let mut f = fs::File::open(path).map_err(PullError::io("open", path))?;
    let len = f.metadata().map(|m| m.len()).ok();
    progress.start(len, &format!("verifying {}", display_name(path)));
    let mut h = Sha256::new();
    let mut buf = vec![0u8; BUF];
    loop {
        let n = f.read(&mut buf).map_err(PullError::io("read", path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        progress.inc(n as u64);
    }
    progress.finish();
    Ok(hex::encode(h.finalize()))
}

/// Hashes the first `len` bytes of a file (to continue hashing a resumed download).
pub(crate) fn sha256_prefix(path: &Path, len: u64) -> Result<Sha256, PullError> {
    let f = fs::File::open(path).map_err(PullError::io("open", path))?;
    let mut h = Sha256::new();
    let mut w = HashWriter::new(io::sink(), &mut h);
    let copied = io::copy(&mut f.take(len), &mut w).map_err(PullError::io("read", path))?;
    if copied != len {
        return Err(PullError::io("read", path)(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "file shrank while being read",
        )));
    }
    Ok(h)
}

/// What is known about a file we expect.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Expect<'a> {
    pub size: Option<u64>,
    pub sha256: Option<&'a str>,
}

/// Decides whether an existing file can be used as is.
///
/// * marker matches (and size matches): yes, without hashing;
/// * no marker (or a stale one): hash; on a match write the marker and say yes;
/// * no expected digest: yes if a marker exists; otherwise hash, record, and say yes.
///
/// Returns `Ok(false)` when the file is missing or does not match.
pub(crate) fn check_existing(
    path: &Path,
    expect: Expect<'_>,
    progress: &dyn Progress,
) -> Result<bool, PullError> {
    let Ok(meta) = fs::metadata(path) else {
        return Ok(false);
    };
    if !meta.is_file() {
        return Ok(false);
    }
    if let Some(size) = expect.size {
        if meta.len() != size {
            tracing::info!(path = %path.display(), have = meta.len(), want = size, "cached file has the wrong size");
            return Ok(false);
        }
    }
    let marker = read_marker(path);
    match (expect.sha256, marker) {
        (Some(want), Some(have)) if want.eq_ignore_ascii_case(&have) => Ok(true),
        (None, Some(_)) => Ok(true),
        (want, _) => {
            let actual = sha256_file(path, progress)?;
            match want {
                Some(w) if !w.eq_ignore_ascii_case(&actual) => {
                    tracing::warn!(path = %path.display(), expected = w, actual = %actual, "cached file does not match its checksum");
                    remove_marker(path)?;
                    Ok(false)
                }
                _ => {
                    write_marker(path, &actual)?;
                    Ok(true)
                }
            }
        }
    }
}

/// Compares a computed digest with an expected one; on mismatch deletes `file`
/// and returns an error naming both.
pub(crate) fn ensure_digest(
    what: &str,
    expected: &str,
    actual: &str,
    file: &Path,
) -> Result<(), PullError> {
    if expected.eq_ignore_ascii_case(actual) {
        Ok(())
    } else {
        remove_if_exists(file)?;
        Err(PullError::ChecksumMismatch {
            what: what.to_string(),
            expected: expected.to_ascii_lowercase(),
            actual: actual.to_string(),
        })
    }
}

/// A writer that hashes everything written through it.
pub(crate) struct HashWriter<'h, W> {
    inner: W,
    hasher: &'h mut Sha256,
}

impl<'h, W: Write> HashWriter<'h, W> {
    pub(crate) fn new(inner: W, hasher: &'h mut Sha256) -> Self {
        HashWriter { inner, hasher }
    }
}

impl<W: Write> Write for HashWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The file name of a path, for progress labels.
pub(crate) fn display_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;

    const HELLO: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn marker_is_appended_not_replacing_extension() {
        assert_eq!(
            marker_path(Path::new("/a/model.gguf")),
            PathBuf::from("/a/model.gguf.sha256")
        );
        assert_eq!(
            marker_path(Path::new("/a/bbc-news")),
            PathBuf::from("/a/bbc-news.sha256")
        );
    }

    #[test]
    fn check_existing_hashes_once_then_trusts_marker() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.bin");
        fs::write(&f, b"hello").unwrap();
        let exp = Expect {
            size: Some(5),
            sha256: Some(HELLO),
        };
        assert!(read_marker(&f).is_none());
        assert!(check_existing(&f, exp, &NoProgress).unwrap());
        assert_eq!(read_marker(&f).as_deref(), Some(HELLO));
        // Same size, different content: the marker is trusted (no re-hash).
        fs::write(&f, b"jello").unwrap();
        assert!(check_existing(&f, exp, &NoProgress).unwrap());
        // Wrong size: rejected without hashing.
        assert!(!check_existing(
            &f,
            Expect {
                size: Some(6),
                ..exp
            },
            &NoProgress
        )
        .unwrap());
        // Stale marker (different expected digest): re-hash, mismatch, marker removed.
        let other = "0".repeat(64);
        assert!(!check_existing(
            &f,
            Expect {
                size: None,
                sha256: Some(&other)
            },
            &NoProgress
        )
        .unwrap());
        assert!(read_marker(&f).is_none());
    }

    #[test]
    fn check_existing_missing_file_is_false() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!check_existing(&dir.path().join("nope"), Expect::default(), &NoProgress).unwrap());
    }

    #[test]
    fn normalize_accepts_prefix_and_case() {
        assert_eq!(
            normalize_sha256(&format!("sha256:{}", HELLO.to_uppercase())).unwrap(),
            HELLO
        );
        assert!(normalize_sha256("abc").is_err());
    }

    #[test]
    fn prefix_hash_continues_correctly() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x");
        fs::write(&f, b"hello world").unwrap();
        let mut h = sha256_prefix(&f, 5).unwrap();
        h.update(b" world");
        assert_eq!(
            hex::encode(h.finalize()),
            sha256_file(&f, &NoProgress).unwrap()
        );
        assert!(sha256_prefix(&f, 50).is_err());
    }

    #[test]
    fn ensure_digest_deletes_on_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x");
        fs::write(&f, b"hello").unwrap();
        ensure_digest("x", HELLO, HELLO, &f).unwrap();
        assert!(f.exists());
        let err = ensure_digest("thing", &"a".repeat(64), HELLO, &f).unwrap_err();
        assert!(!f.exists());
        let msg = err.to_string();
        assert!(
            msg.contains(&"a".repeat(64)) && msg.contains(HELLO) && msg.contains("thing"),
            "{msg}"
        );
    }
}
