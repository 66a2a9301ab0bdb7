//! What the user typed after `rightsize pull`, and the ids it produces.
//!
//! * `smollm2-135m` — a catalog id;
//! * `hf:owner/repo/path/to/file.gguf[@revision]` — a Hugging Face file;
//! * `./path/model.gguf` — a local file.

use crate::catalog::Catalog;
use crate::error::PullError;
use std::path::{Path, PathBuf};

/// The revision used when an `hf:` spec names none.
pub const DEFAULT_REVISION: &str = "main";

/// A parsed pull spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullSpec {
    /// A catalog id.
    Catalog(String),
    /// A file in a Hugging Face repository.
    HuggingFace {
        /// `owner/name`.
        repo: String,
        /// Branch, tag or commit (`main` by default).
        revision: String,
        /// Path of the file in the repository.
        path: String,
    },
    /// A file on the local disk.
    Local(PathBuf),
}

impl PullSpec {
    /// Parses a spec: `hf:` prefix first, then catalog ids, then existing paths.
    pub fn parse(spec: &str, catalog: &Catalog) -> Result<PullSpec, PullError> {
        let invalid = |reason: &str| PullError::InvalidSpec {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        if let Some(rest) = spec.strip_prefix("hf:") {
            let (location, revision) = match rest.rsplit_once('@') {
                Some((loc, rev)) if !rev.is_empty() => (loc, rev),
                Some(_) => return Err(invalid("empty revision after `@`")),
                None => (rest, DEFAULT_REVISION),
            };
            let segs: Vec<&str> = location.split('/').collect();
            if segs.len() < 3 || segs.iter().any(|s| s.is_empty() || *s == "." || *s == "..") {
                return Err(invalid("expected hf:owner/repo/path/to/file[@revision]"));
            }
            return Ok(PullSpec::HuggingFace {
                repo: format!("{}/{}", segs[0], segs[1]),
                revision: revision.to_string(),
                path: segs[2..].join("/"),
            });
        }
        if catalog.get(spec).is_some() {
            return Ok(PullSpec::Catalog(spec.to_string()));
        }
        let p = Path::new(spec);
        if p.exists() {
            if !p.is_file() {
                return Err(PullError::LocalNotFound { path: p.to_path_buf() });
            }
            return Ok(PullSpec::Local(p.to_path_buf()));
        }
        if looks_like_path(spec) {
            return Err(PullError::LocalNotFound { path: p.to_path_buf() });
        }
        Err(PullError::UnknownModel {
            id: spec.to_string(),
            known: catalog.ids(),
        })
    }
}

/// True for a usable cache id: 1 to 100 of `[A-Za-z0-9._-]`, not starting with `.`.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 100
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Checks a user-given id.
pub(crate) fn check_id(id: &str) -> Result<(), PullError> {
    if valid_id(id) {
        Ok(())
    } else {
        Err(PullError::InvalidSpec {
            spec: id.to_string(),
            reason: "an id is 1 to 100 of letters, digits, `.`, `_`, `-`, not starting with `.`".into(),
        })
    }
}

/// An id derived from a file name: its stem, lowercased, other characters as `-`.
/// `SmolLM2-135M-Instruct.Q4_1.gguf` → `smollm2-135m-instruct.q4_1`.
pub fn id_from_file_name(path: &str) -> String {
    let name = path.rsplit(['/', '\\']).next().unwrap_or(path);
    let stem = name
        .strip_suffix(".gguf")
        .or_else(|| name.strip_suffix(".GGUF"))
        .unwrap_or(name);
    let mut id: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    while id.starts_with('.') {
        id.remove(0);
    }
    id.truncate(100);
    if id.is_empty() {
        "model".into()
    } else {
        id
    }
}

/// True when a string is meant as a path rather than an id.
pub(crate) fn looks_like_path(s: &str) -> bool {
    s.contains('/')
        || s.contains('\\')
        || s.starts_with('.')
        || s.starts_with('~')
        || s.to_ascii_lowercase().ends_with(".gguf")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cat() -> Catalog {
        Catalog::builtin()
    }

    #[test]
    fn parses_hf_with_and_without_revision() {
        assert_eq!(
            PullSpec::parse("hf:owner/repo/sub/dir/m.gguf@v1.2", &cat()).unwrap(),
            PullSpec::HuggingFace {
                repo: "owner/repo".into(),
                revision: "v1.2".into(),
                path: "sub/dir/m.gguf".into()
            }
        );
        assert_eq!(
            PullSpec::parse("hf:o/r/m.gguf", &cat()).unwrap(),
            PullSpec::HuggingFace {
                repo: "o/r".into(),
                revision: "main".into(),
                path: "m.gguf".into()
            }
        );
    }

    #[test]
    fn rejects_bad_hf_specs() {
        for s in ["hf:o/r", "hf:o//m.gguf", "hf:o/r/m.gguf@", "hf:o/r/../m.gguf"] {
            assert!(
                matches!(PullSpec::parse(s, &cat()), Err(PullError::InvalidSpec { .. })),
                "{s}"
            );
        }
    }

    #[test]
    fn catalog_ids_then_paths_then_unknown() {
        assert_eq!(
            PullSpec::parse("qwen2.5-0.5b", &cat()).unwrap(),
            PullSpec::Catalog("qwen2.5-0.5b".into())
        );
        assert!(matches!(
            PullSpec::parse("./nope/m.gguf", &cat()),
            Err(PullError::LocalNotFound { .. })
        ));
        let err = PullSpec::parse("llama-70b", &cat()).unwrap_err();
        assert!(matches!(err, PullError::UnknownModel { .. }));
        assert!(err.to_string().contains("smollm2-135m"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.gguf");
        std::fs::write(&f, b"x").unwrap();
        assert_eq!(
            PullSpec::parse(f.to_str().unwrap(), &cat()).unwrap(),
            PullSpec::Local(f)
        );
        assert!(matches!(
            PullSpec::parse(dir.path().to_str().unwrap(), &cat()),
            Err(PullError::LocalNotFound { .. })
        ));
    }

    #[test]
    fn ids() {
        assert_eq!(
            id_from_file_name("a/b/SmolLM2-135M-Instruct.Q4_1.gguf"),
            "smollm2-135m-instruct.q4_1"
        );
        assert_eq!(id_from_file_name("weird name!.gguf"), "weird-name-");
        assert_eq!(id_from_file_name(".gguf"), "model");
        assert!(valid_id("qwen2.5-0.5b"));
        assert!(!valid_id("../x"));
        assert!(!valid_id(".hidden"));
        assert!(!valid_id(""));
        assert!(check_id("a/b").is_err());
    }
}
