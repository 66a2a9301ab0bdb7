//! The server secret: one key, kept in a file outside the database, for every keyed hash the
//! server writes.
//!
//! Why: a plain `sha256(text)` of a short value (a card number, a yes/no answer, an email) can
//! be recovered by hashing guesses, so a hash stored in the audit log or put in place of PII is
//! keyed: HMAC-SHA256 with this secret. Whoever reads the database alone cannot test guesses;
//! an auditor who holds the key file can recompute any hash (`rightsize audit hash`).
//!
//! - One key for chat, completions, embeddings and tasks (the `hash` PII mode and the audit's
//!   `hashes` content policy), and for every process that shares the key file — so equal values
//!   correlate across requests, processes and restarts, and nowhere else.
//! - The file holds 64 hex digits, mode 0600, created once (atomically: concurrent starts agree
//!   on one key). Default `<cache>/server.key`; `audit.key_file` moves it (several hosts on one
//!   Postgres store must share it to produce comparable hashes).
//! - The key is never logged or printed (`Debug` shows nothing of it).

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read the server key {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("cannot create the server key {0}: {1}")]
    Create(PathBuf, std::io::Error),
    #[error("the server key {0} is not 64 hex digits (delete it to make a new one; hashes made with the old key will no longer match)")]
    Malformed(PathBuf),
}

#[derive(Clone)]
pub struct ServerSecret {
    key: [u8; 32],
    /// [`Self::pii_salt`], derived once.
    pii_salt: String,
}

impl std::fmt::Debug for ServerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerSecret(..)")
    }
}

impl ServerSecret {
    /// The key in `path`, created there (mode 0600) when the file does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, SecretError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::create(path),
            Err(e) => Err(SecretError::Read(path.to_owned(), e)),
        }
    }

    fn parse(path: &Path, text: &str) -> Result<Self, SecretError> {
        let bytes = hex::decode(text.trim()).map_err(|_| SecretError::Malformed(path.to_owned()))?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| SecretError::Malformed(path.to_owned()))?;
        Ok(Self::from_key(key))
    }

    /// Write a fresh key to a temporary file and hard-link it into place: `link` fails when the
    /// name exists, so of several processes starting at once exactly one key wins and the
    /// others read it.
    fn create(path: &Path) -> Result<Self, SecretError> {
        let err = |e| SecretError::Create(path.to_owned(), e);
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(err)?;
        let key: [u8; 32] = rand::random();
        let tmp = dir.join(format!(
            ".server.key.{}.{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let written = opts.open(&tmp).and_then(|mut f| {
            f.write_all(hex::encode(key).as_bytes())?;
            f.sync_all()
        });
        let linked = written.and_then(|_| std::fs::hard_link(&tmp, path));
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(Self::from_key(key)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let text = std::fs::read_to_string(path).map_err(|e| SecretError::Read(path.to_owned(), e))?;
                Self::parse(path, &text)
            }
            Err(e) => Err(err(e)),
        }
    }

    /// A key for tests and embedded use that never touches the disk.
    pub fn ephemeral() -> Self {
        Self::from_key(rand::random())
    }

    fn from_key(key: [u8; 32]) -> Self {
        let pii_salt = hex::encode(mac(&key, &[b"rightsize pii hash v1"]));
        Self { key, pii_salt }
    }

    /// `hmac-sha256:<hex>` of a text: what the audit log keeps under `content = "hashes"`.
    pub fn content_hash(&self, text: &str) -> String {
        format!(
            "hmac-sha256:{}",
            hex::encode(mac(&self.key, &[b"rightsize audit content v1\0", text.as_bytes()]))
        )
    }

    /// The key for the `hash` PII mode, derived from the server key so the key itself never
    /// reaches the guard crate (the same for chat and tasks).
    pub fn pii_salt(&self) -> &str {
        &self.pii_salt
    }
}

fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// Where the key lives: `audit.key_file`, else `<cache>/server.key`.
pub fn key_path(cfg: &crate::ServerConfig, cache_root: &Path) -> PathBuf {
    cfg.audit
        .key_file
        .clone()
        .unwrap_or_else(|| cache_root.join("server.key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_private_and_shared_by_concurrent_starts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/server.key");
        let keys: Vec<ServerSecret> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| s.spawn(|| ServerSecret::load_or_create(&path).unwrap()))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(
            keys.iter().all(|k| k.key == keys[0].key),
            "every concurrent start agrees on one key"
        );
        assert_eq!(
            ServerSecret::load_or_create(&path).unwrap().key,
            keys[0].key,
            "a restart reads the same key"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let left: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left.len(), 1, "no temporary files left: {left:?}");
    }

    #[test]
    fn hashes_are_keyed() {
        let (a, b) = (ServerSecret::ephemeral(), ServerSecret::ephemeral());
        let plain = format!(
            "sha256:{}",
            hex::encode(<Sha256 as sha2::Digest>::digest(b"4111 1111 1111 1111"))
        );
        assert_eq!(
            a.content_hash("4111 1111 1111 1111"),
            a.content_hash("4111 1111 1111 1111")
        );
        assert_ne!(
            a.content_hash("4111 1111 1111 1111"),
            b.content_hash("4111 1111 1111 1111"),
            "another key, another hash"
        );
        assert!(
            !a.content_hash("4111 1111 1111 1111").contains(&plain[7..]),
            "not the unkeyed sha256"
        );
        assert!(a.content_hash("x").starts_with("hmac-sha256:"));
        assert_ne!(a.pii_salt(), b.pii_salt());
        assert_eq!(a.pii_salt().len(), 64);
    }

    #[test]
    fn a_malformed_key_file_is_an_error_not_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.key");
        std::fs::write(&path, "not hex").unwrap();
        let e = ServerSecret::load_or_create(&path).unwrap_err();
        assert!(e.to_string().contains("not 64 hex digits"), "{e}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "not hex",
            "the file is left as it was"
        );
        assert_eq!(
            format!("{:?}", ServerSecret::ephemeral()),
            "ServerSecret(..)",
            "Debug shows nothing of the key"
        );
    }
}
