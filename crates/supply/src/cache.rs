//! The on-disk cache and its layout.
//!
//! ```text
//! <root>/models/<id>/model.gguf          a decoder model (+ model.gguf.sha256 marker)
//! <root>/models/<encoder-id>/...         an encoder folder (marker on its key file)
//! <root>/data/<id>/...                   a data set folder (marker: <root>/data/<id>.sha256)
//! <root>/downloads/                      wheels and files being downloaded (*.partial)
//! ```
//!
//! The root is `$RIGHTSIZE_CACHE` if set, else `~/.cache/rightsize`.
//! Other crates rely on this layout; change it only together with them.

use crate::catalog::{Catalog, CatalogEntry, EntryKind, Source};
use crate::error::PullError;
use crate::progress::Progress;
use crate::verify::{self, Expect};
use std::fs;
use std::path::{Path, PathBuf};

/// Environment variable naming the cache root.
pub const CACHE_ENV: &str = "RIGHTSIZE_CACHE";

/// File name of a decoder model inside its folder.
pub const MODEL_FILE: &str = "model.gguf";

/// The cache root and the paths inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cache {
    root: PathBuf,
}

/// Whether an entry is in the cache. Cheap to compute: never hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Nothing under the entry's path.
    Missing,
    /// Present; `verified` when a marker vouches for the expected checksum
    /// (a pull, or [`Cache::verify`], writes it).
    Present {
        /// Bytes on disk (the file, or everything under the folder).
        bytes: u64,
        /// True when the marker matches the expected digest and size.
        verified: bool,
    },
}

impl CacheStatus {
    /// True unless `Missing`.
    pub fn is_present(&self) -> bool {
        !matches!(self, CacheStatus::Missing)
    }
}

/// A model found under `<root>/models/`, catalog or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedModel {
    /// Folder name.
    pub id: String,
    /// `model.gguf` for a decoder, the folder for anything else.
    pub path: PathBuf,
    /// Bytes on disk.
    pub bytes: u64,
    /// Whether a verified marker is present.
    pub verified: bool,
}

impl Cache {
    /// A cache rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Cache {
        Cache { root: root.into() }
    }

    /// `$RIGHTSIZE_CACHE` if set and non-empty, else [`Cache::default_root`].
    pub fn from_env() -> Cache {
        match std::env::var_os(CACHE_ENV) {
            Some(v) if !v.is_empty() => Cache::new(v),
            _ => Cache::new(Cache::default_root()),
        }
    }

    /// `~/.cache/rightsize` (`$HOME/.cache/rightsize`; `./.rightsize-cache` when
    /// no home directory is known).
    pub fn default_root() -> PathBuf {
        match std::env::var_os("HOME").or_else(|| std::env::var_os("USERPROFILE")) {
            Some(home) if !home.is_empty() => PathBuf::from(home).join(".cache").join("rightsize"),
            _ => PathBuf::from(".rightsize-cache"),
        }
    }

    /// The cache root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/models/<id>`.
    pub fn model_dir(&self, id: &str) -> PathBuf {
        self.root.join("models").join(id)
    }

    /// `<root>/models/<id>/model.gguf`.
    pub fn model_file(&self, id: &str) -> PathBuf {
        self.model_dir(id).join(MODEL_FILE)
    }

    /// `<root>/data/<id>`.
    pub fn dataset_dir(&self, id: &str) -> PathBuf {
        self.root.join("data").join(id)
    }

    /// `<root>/downloads`, where wheels and partial downloads live.
    pub fn downloads_dir(&self) -> PathBuf {
        self.root.join("downloads")
    }

    /// Where an entry lives once pulled: the `.gguf` file for a decoder,
    /// the folder for an encoder or a data set. This is what `pull` returns.
    pub fn entry_path(&self, entry: &CatalogEntry) -> PathBuf {
        match entry.kind {
            EntryKind::Gguf => self.model_file(&entry.id),
            EntryKind::Encoder => self.model_dir(&entry.id),
            EntryKind::Dataset => self.dataset_dir(&entry.id),
        }
    }

    /// The file that carries the verified marker for an entry, and what it should hold.
    pub(crate) fn marker_target(&self, entry: &CatalogEntry) -> (PathBuf, Option<String>) {
        let path = self.entry_path(entry);
        match (&entry.kind, &entry.source) {
            (EntryKind::Gguf, _) => (path, entry.sha256.clone()),
            (_, Source::PypiFolder { key_file: Some(k), .. }) => (path.join(k), entry.sha256.clone()),
            (
                _,
                Source::PypiFolder {
                    wheel, key_file: None, ..
                },
            ) => (path, wheel.sha256.clone()),
            _ => (path, entry.sha256.clone()),
        }
    }

    /// Is the entry in the cache, and is it verified? Never hashes.
    pub fn status(&self, entry: &CatalogEntry) -> CacheStatus {
        let path = self.entry_path(entry);
        let Ok(meta) = fs::metadata(&path) else {
            return CacheStatus::Missing;
        };
        let bytes = if meta.is_dir() { dir_size(&path) } else { meta.len() };
        let (target, want) = self.marker_target(entry);
        let marker = verify::read_marker(&target);
        let size_ok = match (entry.kind, entry.size) {
            (EntryKind::Dataset, _) | (_, None) => true,
            (_, Some(size)) => fs::metadata(&target).map(|m| m.len() == size).unwrap_or(false),
        };
        let digest_ok = match (want, marker) {
            (Some(w), Some(m)) => w.eq_ignore_ascii_case(&m),
            (None, Some(_)) => true,
            (_, None) => false,
        };
        CacheStatus::Present {
            bytes,
            verified: size_ok && digest_ok,
        }
    }

    /// Checks the cached copy of an entry against its checksum, hashing it when no
    /// marker vouches for it, and writes the marker on success. No network.
    /// Returns false when the entry is missing or does not match.
    pub fn verify(&self, entry: &CatalogEntry, progress: &dyn Progress) -> Result<bool, PullError> {
        let (target, want) = self.marker_target(entry);
        match (&entry.kind, &entry.source) {
            (EntryKind::Gguf, _) | (_, Source::PypiFolder { key_file: Some(_), .. }) => verify::check_existing(
                &target,
                Expect {
                    size: entry.size,
                    sha256: want.as_deref(),
                },
                progress,
            ),
            // A folder without a key file is verified only by the marker written
            // when it was extracted from a checked wheel.
            _ => Ok(target.is_dir()
                && match (want, verify::read_marker(&target)) {
                    (Some(w), Some(m)) => w.eq_ignore_ascii_case(&m),
                    (None, Some(_)) => true,
                    (_, None) => false,
                }),
        }
    }

    /// Every model folder under `<root>/models/`, sorted by id. A folder counts
    /// when it holds `model.gguf` or is non-empty (an encoder).
    pub fn list_models(&self) -> Vec<CachedModel> {
        let Ok(rd) = fs::read_dir(self.root.join("models")) else {
            return Vec::new();
        };
        let mut out: Vec<CachedModel> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .filter_map(|e| {
                let id = e.file_name().to_string_lossy().into_owned();
                let dir = e.path();
                let gguf = dir.join(MODEL_FILE);
                if gguf.is_file() {
                    Some(CachedModel {
                        bytes: fs::metadata(&gguf).map(|m| m.len()).unwrap_or(0),
                        verified: verify::read_marker(&gguf).is_some(),
                        path: gguf,
                        id,
                    })
                } else {
                    let bytes = dir_size(&dir);
                    (bytes > 0).then(|| CachedModel {
                        verified: has_any_marker(&dir),
                        path: dir,
                        bytes,
                        id,
                    })
                }
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }
}

/// Finds the model file (or folder) to load for `id_or_path`:
///
/// 1. a catalog id that is cached → its path (a decoder's `model.gguf`, an encoder's folder);
///    a catalog id that is not cached → [`PullError::NotCached`];
/// 2. an id pulled earlier from Hugging Face or a local file → `<root>/models/<id>/model.gguf`;
/// 3. an existing file or folder → that path;
/// 4. anything else → [`PullError::LocalNotFound`] if it looks like a path, else
///    [`PullError::UnknownModel`].
///
/// Does not hash; a cached decoder whose size differs from the catalog's is
/// reported as [`PullError::CorruptCache`].
pub fn resolve_model(cache: &Cache, id_or_path: &str) -> Result<PathBuf, PullError> {
    resolve_model_in(cache, &Catalog::builtin(), id_or_path)
}

/// [`resolve_model`] against a given catalog.
pub fn resolve_model_in(cache: &Cache, catalog: &Catalog, id_or_path: &str) -> Result<PathBuf, PullError> {
    if let Some(entry) = catalog.get(id_or_path) {
        let path = cache.entry_path(entry);
        return match cache.status(entry) {
            CacheStatus::Missing => Err(PullError::NotCached { id: entry.id.clone() }),
            CacheStatus::Present { bytes, .. } => {
                if let (EntryKind::Gguf, Some(size)) = (entry.kind, entry.size) {
                    if bytes != size {
                        return Err(PullError::CorruptCache {
                            id: entry.id.clone(),
                            path,
                            expected: size,
                            actual: bytes,
                        });
                    }
                }
                Ok(path)
            }
        };
    }
    if crate::spec::valid_id(id_or_path) {
        let file = cache.model_file(id_or_path);
        if file.is_file() {
            return Ok(file);
        }
    }
    let p = Path::new(id_or_path);
    if p.exists() {
        return Ok(p.to_path_buf());
    }
    if crate::spec::looks_like_path(id_or_path) {
        return Err(PullError::LocalNotFound { path: p.to_path_buf() });
    }
    Err(PullError::UnknownModel {
        id: id_or_path.to_string(),
        known: catalog.ids(),
    })
}

/// The verified sha256 of a model as [`resolve_model`] found it — a decoder's file, or an
/// encoder folder's key file (`model.safetensors`, else the first file with a marker) —
/// checked against the file as it is now ([`verify::verified_digest`]): the marker's digest
/// when the file's size and mtime still match the stamp recorded with it, else the file is
/// hashed again and a mismatch is [`PullError::ChangedSinceVerified`]. `Ok(None)` when no
/// marker vouches for it (a file never verified).
pub fn verified_model_digest(path: &Path, progress: &dyn Progress) -> Result<Option<String>, PullError> {
    if !path.is_dir() {
        return verify::verified_digest(path, progress);
    }
    let key = path.join("model.safetensors");
    if verify::read_marker(&key).is_some() {
        return verify::verified_digest(&key, progress);
    }
    let Ok(rd) = fs::read_dir(path) else {
        return Ok(None);
    };
    let mut marked: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sha256"))
        .map(|p| p.with_extension(""))
        .filter(|p| p.is_file() && verify::read_marker(p).is_some())
        .collect();
    marked.sort();
    match marked.first() {
        Some(key) => verify::verified_digest(key, progress),
        None => Ok(None),
    }
}

/// Total size of the regular files under `dir`.
pub(crate) fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => total += e.metadata().map(|m| m.len()).unwrap_or(0),
                _ => {}
            }
        }
    }
    total
}

fn has_any_marker(dir: &Path) -> bool {
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".sha256"))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_stable() {
        let c = Cache::new("/r");
        assert_eq!(
            c.model_file("smollm2-135m"),
            PathBuf::from("/r/models/smollm2-135m/model.gguf")
        );
        assert_eq!(c.model_dir("minilm-l6"), PathBuf::from("/r/models/minilm-l6"));
        assert_eq!(c.dataset_dir("bbc-news"), PathBuf::from("/r/data/bbc-news"));
        let cat = Catalog::builtin();
        assert_eq!(
            c.entry_path(cat.get("minilm-l6").unwrap()),
            PathBuf::from("/r/models/minilm-l6")
        );
        assert_eq!(
            c.entry_path(cat.get("bbc-news").unwrap()),
            PathBuf::from("/r/data/bbc-news")
        );
        assert_eq!(
            c.entry_path(cat.get("qwen2.5-0.5b").unwrap()),
            PathBuf::from("/r/models/qwen2.5-0.5b/model.gguf")
        );
        let (t, _) = c.marker_target(cat.get("minilm-l6").unwrap());
        assert_eq!(t, PathBuf::from("/r/models/minilm-l6/model.safetensors"));
    }

    #[test]
    fn status_reports_missing_present_and_verified() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::new(dir.path());
        let mut e = Catalog::builtin().get("smollm2-135m").unwrap().clone();
        e.size = Some(5);
        e.sha256 = Some("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824".into());
        assert_eq!(c.status(&e), CacheStatus::Missing);
        fs::create_dir_all(c.model_dir(&e.id)).unwrap();
        fs::write(c.model_file(&e.id), b"hello").unwrap();
        assert_eq!(
            c.status(&e),
            CacheStatus::Present {
                bytes: 5,
                verified: false
            }
        );
        assert!(c.verify(&e, &crate::NoProgress).unwrap());
        assert_eq!(
            c.status(&e),
            CacheStatus::Present {
                bytes: 5,
                verified: true
            }
        );
        let list = c.list_models();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].id, "smollm2-135m");
        assert!(list[0].verified);
    }

    #[test]
    fn from_env_default_root_ends_with_rightsize() {
        assert!(
            Cache::default_root().ends_with(".cache/rightsize") || Cache::default_root().ends_with(".rightsize-cache")
        );
    }
}
