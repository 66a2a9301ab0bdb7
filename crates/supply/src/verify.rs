//! Checksums and the verified marker.
//!
//! After a file's sha256 has been checked, `<file>.sha256` is written next to it
//! holding the hex digest on its first line and, on the second, the file's **stamp** as
//! it was when hashed (`size=<bytes> mtime_ns=<ns>`). A file whose marker matches the
//! expected digest and whose stamp matches the file as it is now is trusted without hashing
//! it again: hashing a 1 GB model on every start would cost seconds. When the stamp differs
//! (the file was rewritten, or the marker predates stamps) the file is hashed again
//! ([`verified_digest`]): a file changed in place is caught, not trusted from its marker.

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
    read_marker_stamped(path).map(|(digest, _)| digest)
}

/// What a file looked like when it was hashed: its size and modification time. A file
/// rewritten in place (even at the same size) gets a new mtime, so a changed stamp means
/// "hash it again".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i128,
}

impl Stamp {
    /// The stamp of a regular file as it is now; `None` for anything else.
    pub fn of(path: &Path) -> Option<Stamp> {
        let meta = fs::metadata(path).ok().filter(|m| m.is_file())?;
        let mtime = meta.modified().ok()?;
        let mtime_ns = match mtime.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => d.as_nanos() as i128,
            Err(e) => -(e.duration().as_nanos() as i128),
        };
        Some(Stamp {
            size: meta.len(),
            mtime_ns,
        })
    }

    fn parse(line: &str) -> Option<Stamp> {
        let (mut size, mut mtime_ns) = (None, None);
        for field in line.split_whitespace() {
            match field.split_once('=') {
                Some(("size", v)) => size = v.parse().ok(),
                Some(("mtime_ns", v)) => mtime_ns = v.parse().ok(),
                _ => {}
            }
        }
        Some(Stamp {
            size: size?,
            mtime_ns: mtime_ns?,
        })
    }
}

/// The digest in `path`'s marker and the stamp recorded with it (markers written before
/// stamps existed have none).
pub fn read_marker_stamped(path: &Path) -> Option<(String, Option<Stamp>)> {
    let text = fs::read_to_string(marker_path(path)).ok()?;
    let mut lines = text.lines();
    let digest = lines.next()?.trim().to_ascii_lowercase();
    let stamp = lines.next().and_then(Stamp::parse);
    is_sha256_hex(&digest).then_some((digest, stamp))
}

/// Records `digest` as the verified sha256 of `path` (atomically), with the file's current
/// [`Stamp`] (a directory's marker has none). Call it right after hashing the file.
pub fn write_marker(path: &Path, digest: &str) -> Result<(), PullError> {
    let marker = marker_path(path);
    let tmp = append_ext(&marker, "partial");
    let text = match Stamp::of(path) {
        Some(s) => format!("{digest}\nsize={} mtime_ns={}\n", s.size, s.mtime_ns),
        None => format!("{digest}\n"),
    };
    fs::write(&tmp, text).map_err(PullError::io("write", &tmp))?;
    fs::rename(&tmp, &marker).map_err(PullError::io("rename into place", &marker))
}

/// The sha256 of `path` as it is now, vouched for by its marker: `Ok(None)` when there is no
/// marker (nothing was ever verified); the marker's digest without hashing when its stamp
/// matches the file; otherwise the file is hashed again — a match refreshes the stamp (a
/// copy or `touch`), a mismatch is [`PullError::ChangedSinceVerified`] naming the file.
/// This is what a model load relies on (and what the audit trail records).
pub fn verified_digest(path: &Path, progress: &dyn Progress) -> Result<Option<String>, PullError> {
    let Some((digest, stamp)) = read_marker_stamped(path) else {
        return Ok(None);
    };
    let now = Stamp::of(path);
    if now.is_none() {
        return Err(PullError::io("read", path)(io::Error::new(
            io::ErrorKind::NotFound,
            "not a regular file",
        )));
    }
    if stamp.is_some() && stamp == now {
        return Ok(Some(digest));
    }
    tracing::info!(path = %path.display(), "file changed since its sha256 was verified (or the marker has no stamp): hashing it again");
    let actual = sha256_file(path, progress)?;
    if actual != digest {
        return Err(PullError::ChangedSinceVerified {
            path: path.to_path_buf(),
            expected: digest,
            actual,
        });
    }
    if let Err(e) = write_marker(path, &actual) {
        tracing::warn!(error = %e, "could not refresh the marker's stamp; the file will be hashed again next time");
    }
    Ok(Some(actual))
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
/// * marker matches (and size matches) and its stamp matches the file: yes, without hashing;
/// * no marker, a stale one, or one whose stamp differs from the file (rewritten since, or
///   written before stamps): hash; on a match write the marker and say yes;
/// * no expected digest: yes if a marker exists; otherwise hash, record, and say yes.
///
/// Returns `Ok(false)` when the file is missing or does not match.
pub(crate) fn check_existing(path: &Path, expect: Expect<'_>, progress: &dyn Progress) -> Result<bool, PullError> {
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
    let marker = read_marker_stamped(path)
        .filter(|(_, stamp)| stamp.is_some() && *stamp == Stamp::of(path))
        .map(|(d, _)| d);
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
pub(crate) fn ensure_digest(what: &str, expected: &str, actual: &str, file: &Path) -> Result<(), PullError> {
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
        let hashed = Counting::default();
        assert!(check_existing(&f, exp, &hashed).unwrap());
        assert_eq!(hashed.starts(), 0, "stamp matches: trusted without hashing");
        // Same size, different content, but the mtime put back: the stamp matches, so the
        // marker is trusted (no re-hash) — the stamp is the only thing checked.
        let mtime = fs::metadata(&f).unwrap().modified().unwrap();
        fs::write(&f, b"jello").unwrap();
        set_mtime(&f, mtime);
        assert!(check_existing(&f, exp, &hashed).unwrap());
        assert_eq!(hashed.starts(), 0);
        // Rewritten (new mtime): hashed again, the mismatch found, the marker removed.
        set_mtime(&f, mtime + std::time::Duration::from_secs(7));
        assert!(!check_existing(&f, exp, &hashed).unwrap());
        assert_eq!(hashed.starts(), 1);
        assert!(read_marker(&f).is_none());
        fs::write(&f, b"jello").unwrap();
        write_marker(&f, HELLO).unwrap();
        // Wrong size: rejected without hashing.
        assert!(!check_existing(&f, Expect { size: Some(6), ..exp }, &NoProgress).unwrap());
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

    /// Counts hashing passes (`sha256_file` reports one `start` per file).
    #[derive(Default)]
    struct Counting(std::sync::atomic::AtomicUsize);

    impl Counting {
        fn starts(&self) -> usize {
            self.0.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    impl Progress for Counting {
        fn start(&self, _total: Option<u64>, _label: &str) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        fn inc(&self, _n: u64) {}
        fn finish(&self) {}
    }

    fn set_mtime(path: &Path, t: std::time::SystemTime) {
        fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }

    #[test]
    fn marker_records_the_stamp_of_the_file_it_vouches_for() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("model.gguf");
        fs::write(&f, b"hello").unwrap();
        write_marker(&f, HELLO).unwrap();
        let text = fs::read_to_string(marker_path(&f)).unwrap();
        let (digest, stamp) = read_marker_stamped(&f).unwrap();
        assert_eq!(digest, HELLO, "{text}");
        assert_eq!(stamp, Stamp::of(&f), "{text}");
        assert_eq!(stamp.unwrap().size, 5);
        assert_eq!(
            read_marker(&f).as_deref(),
            Some(HELLO),
            "the digest line reads as before"
        );
        // A directory's marker (a data set) has no stamp.
        let d = dir.path().join("data");
        fs::create_dir(&d).unwrap();
        write_marker(&d, HELLO).unwrap();
        assert_eq!(read_marker_stamped(&d), Some((HELLO.to_string(), None)));
    }

    #[test]
    fn verified_digest_trusts_a_matching_stamp_and_refuses_a_file_changed_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("model.gguf");
        let hashed = Counting::default();
        // Never verified: nothing to vouch for, nothing hashed.
        fs::write(&f, b"hello").unwrap();
        assert_eq!(verified_digest(&f, &hashed).unwrap(), None);
        // Verified (as a pull leaves it): the marker's digest, without hashing.
        assert!(check_existing(
            &f,
            Expect {
                size: Some(5),
                sha256: Some(HELLO)
            },
            &hashed
        )
        .unwrap());
        assert_eq!(hashed.starts(), 1);
        for _ in 0..3 {
            assert_eq!(verified_digest(&f, &hashed).unwrap().as_deref(), Some(HELLO));
        }
        assert_eq!(hashed.starts(), 1, "an untouched file is not hashed again");

        // One byte changed, same size, new mtime: hashed again and refused, naming the file.
        let mtime = fs::metadata(&f).unwrap().modified().unwrap();
        fs::write(&f, b"jello").unwrap();
        set_mtime(&f, mtime + std::time::Duration::from_secs(3));
        let err = verified_digest(&f, &hashed).unwrap_err();
        assert_eq!(hashed.starts(), 2);
        let jello = sha256_file(&f, &NoProgress).unwrap();
        match &err {
            PullError::ChangedSinceVerified { path, expected, actual } => {
                assert_eq!((path, expected.as_str(), actual), (&f, HELLO, &jello));
            }
            other => panic!("{other}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains(&f.display().to_string()) && msg.contains("changed since it was verified"),
            "{msg}"
        );
        // Still refused next time: the marker is not rewritten to fit the changed file.
        assert!(verified_digest(&f, &hashed).is_err());
        assert_eq!(read_marker(&f).as_deref(), Some(HELLO));

        // The right bytes again with a new mtime (a copy, a `touch`): hashed once, accepted,
        // and the stamp refreshed so the next load trusts it without hashing.
        fs::write(&f, b"hello").unwrap();
        set_mtime(&f, mtime + std::time::Duration::from_secs(9));
        let before = hashed.starts();
        assert_eq!(verified_digest(&f, &hashed).unwrap().as_deref(), Some(HELLO));
        assert_eq!(verified_digest(&f, &hashed).unwrap().as_deref(), Some(HELLO));
        assert_eq!(hashed.starts(), before + 1);
    }

    #[test]
    fn a_marker_without_stamp_is_hashed_once_then_stamped() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("model.gguf");
        fs::write(&f, b"hello").unwrap();
        fs::write(marker_path(&f), format!("{HELLO}\n")).unwrap(); // written before stamps
        let hashed = Counting::default();
        assert_eq!(verified_digest(&f, &hashed).unwrap().as_deref(), Some(HELLO));
        assert_eq!(verified_digest(&f, &hashed).unwrap().as_deref(), Some(HELLO));
        assert_eq!(hashed.starts(), 1);
        assert_eq!(read_marker_stamped(&f).unwrap().1, Stamp::of(&f));
        // A stamp-less marker that does not match the file is refused, not re-recorded.
        fs::write(marker_path(&f), format!("{}\n", "0".repeat(64))).unwrap();
        assert!(matches!(
            verified_digest(&f, &hashed),
            Err(PullError::ChangedSinceVerified { .. })
        ));
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
        assert_eq!(hex::encode(h.finalize()), sha256_file(&f, &NoProgress).unwrap());
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
