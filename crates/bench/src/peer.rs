//! The llama.cpp peer: locating its binaries and running `llama-bench`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::BenchError;

/// The two peer binaries, as installed by `bench/build-peer.sh`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerBins {
    /// Folder holding both binaries.
    pub dir: PathBuf,
    pub llama_server: PathBuf,
    pub llama_bench: PathBuf,
    /// Contents of `dir/VERSION` (sdist version, vendored llama.cpp commit), when present.
    pub version: Option<String>,
}

impl PeerBins {
    /// Find the peer in `$RIGHTSIZE_PEER_DIR`, else `${RIGHTSIZE_CACHE:-~/.cache/rightsize}/peer/bin`.
    /// The error tells the user to run `bench/build-peer.sh`.
    pub fn locate() -> Result<PeerBins, BenchError> {
        let dir = peer_dir(
            std::env::var_os("RIGHTSIZE_PEER_DIR"),
            std::env::var_os("RIGHTSIZE_CACHE"),
            std::env::var_os("HOME"),
        );
        Self::locate_in(&dir)
    }

    /// Use the binaries in `dir`; both must be present.
    pub fn locate_in(dir: &Path) -> Result<PeerBins, BenchError> {
        let llama_server = dir.join("llama-server");
        let llama_bench = dir.join("llama-bench");
        let missing: Vec<&str> = [("llama-server", &llama_server), ("llama-bench", &llama_bench)]
            .into_iter()
            .filter(|(_, p)| !p.is_file())
            .map(|(n, _)| n)
            .collect();
        if !missing.is_empty() {
            return Err(BenchError::PeerMissing {
                dir: dir.to_path_buf(),
                missing: missing.join(", "),
            });
        }
        let version = std::fs::read_to_string(dir.join("VERSION"))
            .ok()
            .map(|s| s.trim().to_string());
        Ok(PeerBins {
            dir: dir.to_path_buf(),
            llama_server,
            llama_bench,
            version,
        })
    }

    /// One-line description of the peer build, e.g. `llama-cpp-python 0.3.36 (llama.cpp 0c1e570)`.
    pub fn describe(&self) -> String {
        let field = |k: &str| {
            self.version.as_deref().and_then(|v| {
                v.lines()
                    .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('=')).map(str::to_string))
            })
        };
        match (field("sdist_version"), field("llama_cpp_commit")) {
            (Some(v), Some(c)) => {
                format!("llama-cpp-python {v} (llama.cpp {})", &c[..c.len().min(7)])
            }
            (Some(v), None) => format!("llama-cpp-python {v}"),
            _ => format!("llama.cpp peer in {}", self.dir.display()),
        }
    }
}

/// Where the peer lives: `peer_dir_env` if set, else `<cache>/peer/bin` with
/// `<cache>` = `cache_env` or `<home>/.cache/rightsize`.
pub fn peer_dir(peer_dir_env: Option<OsString>, cache_env: Option<OsString>, home: Option<OsString>) -> PathBuf {
    if let Some(d) = peer_dir_env.filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let cache = match cache_env.filter(|c| !c.is_empty()) {
        Some(c) => PathBuf::from(c),
        None => PathBuf::from(home.unwrap_or_else(|| "/root".into()))
            .join(".cache")
            .join("rightsize"),
    };
    cache.join("peer").join("bin")
}

/// One test line of `llama-bench -o json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaBenchEntry {
    pub n_prompt: u64,
    pub n_gen: u64,
    #[serde(default)]
    pub n_depth: u64,
    #[serde(default)]
    pub n_threads: u64,
    /// Mean tokens per second over the repetitions.
    pub avg_ts: f64,
    #[serde(default)]
    pub stddev_ts: f64,
    #[serde(default)]
    pub model_type: String,
    #[serde(default)]
    pub build_commit: String,
    #[serde(default)]
    pub build_number: i64,
}

/// Prefill and decode throughput from one `llama-bench` run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaBenchResult {
    /// Prompt processing (`pp<n_prompt>`) tokens/s; 0.0 when `n_prompt` was 0.
    pub prefill_tps: f64,
    /// Generation (`tg<n_gen>`) tokens/s; 0.0 when `n_gen` was 0.
    pub decode_tps: f64,
    pub entries: Vec<LlamaBenchEntry>,
    /// The JSON array exactly as llama-bench printed it.
    pub raw: serde_json::Value,
}

/// Parse the stdout of `llama-bench -o json`. A prefill entry has `n_gen == 0`,
/// a decode entry `n_prompt == 0`; the first of each kind is reported.
pub fn parse_llama_bench_json(stdout: &str) -> Result<LlamaBenchResult, BenchError> {
    let parse_err = |message: String| BenchError::Parse {
        what: "llama-bench JSON".into(),
        message,
    };
    // llama-bench prints only JSON to stdout, but be tolerant of a stray prefix.
    let start = stdout
        .find('[')
        .ok_or_else(|| parse_err("no JSON array in output".into()))?;
    let raw: serde_json::Value = serde_json::from_str(stdout[start..].trim()).map_err(|e| parse_err(e.to_string()))?;
    let entries: Vec<LlamaBenchEntry> = serde_json::from_value(raw.clone()).map_err(|e| parse_err(e.to_string()))?;
    if entries.is_empty() {
        return Err(parse_err("empty result array".into()));
    }
    let prefill_tps = entries
        .iter()
        .find(|e| e.n_prompt > 0 && e.n_gen == 0)
        .map_or(0.0, |e| e.avg_ts);
    let decode_tps = entries
        .iter()
        .find(|e| e.n_gen > 0 && e.n_prompt == 0)
        .map_or(0.0, |e| e.avg_ts);
    Ok(LlamaBenchResult {
        prefill_tps,
        decode_tps,
        entries,
        raw,
    })
}

/// Run `llama-bench -o json -m MODEL -t N -p P -n G -r R` and parse its result.
pub fn run_llama_bench(
    bins: &PeerBins,
    model: &Path,
    threads: u32,
    n_prompt: u32,
    n_gen: u32,
    reps: u32,
) -> Result<LlamaBenchResult, BenchError> {
    if !model.is_file() {
        return Err(BenchError::PeerFailed {
            tool: "llama-bench".into(),
            message: format!("no model at {}", model.display()),
        });
    }
    let mut cmd = Command::new(&bins.llama_bench);
    cmd.arg("-o").arg("json").arg("-m").arg(model);
    cmd.arg("-t").arg(threads.to_string());
    cmd.arg("-p").arg(n_prompt.to_string());
    cmd.arg("-n").arg(n_gen.to_string());
    cmd.arg("-r").arg(reps.max(1).to_string());
    tracing::debug!(?cmd, "running llama-bench");
    let out = cmd.output().map_err(|e| BenchError::PeerFailed {
        tool: "llama-bench".into(),
        message: format!("spawn {}: {e}", bins.llama_bench.display()),
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: String = stderr
            .lines()
            .rev()
            .take(15)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        return Err(BenchError::PeerFailed {
            tool: "llama-bench".into(),
            message: format!("{}: {tail}", out.status),
        });
    }
    let result = parse_llama_bench_json(&String::from_utf8_lossy(&out.stdout))?;
    if (n_prompt > 0 && result.prefill_tps <= 0.0) || (n_gen > 0 && result.decode_tps <= 0.0) {
        return Err(BenchError::Parse {
            what: "llama-bench JSON".into(),
            message: "missing prefill or decode entry".into(),
        });
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_dir_precedence() {
        assert_eq!(
            peer_dir(Some("/x/peer".into()), Some("/c".into()), Some("/h".into())),
            PathBuf::from("/x/peer")
        );
        assert_eq!(
            peer_dir(None, Some("/c".into()), Some("/h".into())),
            PathBuf::from("/c/peer/bin")
        );
        assert_eq!(
            peer_dir(Some("".into()), None, Some("/h".into())),
            PathBuf::from("/h/.cache/rightsize/peer/bin")
        );
    }

    #[test]
    fn locate_in_empty_dir_says_how_to_build() {
        let dir = tempfile::tempdir().unwrap();
        let err = PeerBins::locate_in(dir.path()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, BenchError::PeerMissing { .. }));
        assert!(msg.contains("bench/build-peer.sh"), "{msg}");
        assert!(msg.contains("llama-server, llama-bench"), "{msg}");
        assert!(msg.contains("RIGHTSIZE_PEER_DIR"), "{msg}");
    }

    #[test]
    fn locate_in_reads_version() {
        let dir = tempfile::tempdir().unwrap();
        for b in ["llama-server", "llama-bench"] {
            std::fs::write(dir.path().join(b), "").unwrap();
        }
        std::fs::write(
            dir.path().join("VERSION"),
            "sdist_version=0.3.36\nllama_cpp_commit=0c1e57098bba43\n",
        )
        .unwrap();
        let bins = PeerBins::locate_in(dir.path()).unwrap();
        assert_eq!(bins.describe(), "llama-cpp-python 0.3.36 (llama.cpp 0c1e570)");
        std::fs::remove_file(dir.path().join("llama-bench")).unwrap();
        let msg = PeerBins::locate_in(dir.path()).unwrap_err().to_string();
        assert!(msg.contains("missing llama-bench"), "{msg}");
    }

    #[test]
    fn parse_garbage_is_an_error() {
        assert!(parse_llama_bench_json("not json").is_err());
        assert!(parse_llama_bench_json("[]").is_err());
    }
}
