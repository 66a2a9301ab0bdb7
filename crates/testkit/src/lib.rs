//! # testkit — test-only helpers (a dev-dependency, never in the binary)
//!
//! One policy for a test whose prerequisite is missing (a pulled model, the llama.cpp peer,
//! the Postgres scratch database): [`skip_or_fail`].
//!
//! * Under CI (`CI=true`, as `.ci/run` and `scripts/test.sh` set it) the set-up provides
//!   every prerequisite, so a missing one is a failure: the test panics with the reason.
//! * Otherwise (a developer's machine) the test prints `SKIPPED: <reason>` and returns, and
//!   the reason is appended as one line to the skip log, so `scripts/test.sh` can say at the
//!   end how many tests did not really run.
//!
//! The skip log is `$RIGHTSIZE_SKIP_LOG` when set, else `<workspace>/target/skipped.txt`.
//!
//! And what the tests of several crates look up alike: where the set-up pulled the real
//! models ([`cache_root`], [`model_file`], [`minilm_dir`]), the Python with the `openai`
//! client ([`python`]) and, with the `minilm` feature, the MiniLM encoder itself, loaded once
//! per test binary and shared by its tests ([`minilm`], [`require_minilm!`]).

use std::io::Write;
use std::path::PathBuf;

/// Environment variable naming the skip log.
pub const SKIP_LOG_ENV: &str = "RIGHTSIZE_SKIP_LOG";

/// The model cache the tests read: `$RIGHTSIZE_CACHE` when set and not empty, else
/// `~/.cache/rightsize` (where `supply::Cache::from_env` looks, without depending on it).
pub fn cache_root() -> PathBuf {
    match std::env::var_os("RIGHTSIZE_CACHE") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/rightsize"),
    }
}

/// A pulled catalog model's GGUF file in [`cache_root`] (it may be missing).
pub fn model_file(id: &str) -> PathBuf {
    cache_root().join("models").join(id).join("model.gguf")
}

/// The all-MiniLM-L6-v2 directory: the first of `$RIGHTSIZE_CACHE/models/minilm-l6` and
/// `~/.cache/rightsize/models/minilm-l6` that holds the weights, else `None`.
pub fn minilm_dir() -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(cache) = std::env::var_os("RIGHTSIZE_CACHE") {
        candidates.push(PathBuf::from(cache).join("models/minilm-l6"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(home).join(".cache/rightsize/models/minilm-l6"));
    }
    candidates.into_iter().find(|d| d.join("model.safetensors").is_file())
}

/// The real all-MiniLM-L6-v2 encoder (loaded once per test binary), or `None` when
/// [`minilm_dir`] finds no model.
#[cfg(feature = "minilm")]
pub fn minilm() -> Option<std::sync::Arc<encoder::Encoder>> {
    static ENC: std::sync::OnceLock<Option<std::sync::Arc<encoder::Encoder>>> = std::sync::OnceLock::new();
    ENC.get_or_init(|| {
        let dir = minilm_dir()?;
        let enc = encoder::Encoder::load(&dir, encoder::EncoderOptions::default())
            .expect("loading the cached minilm-l6 model");
        Some(std::sync::Arc::new(enc))
    })
    .clone()
}

/// The shared MiniLM encoder ([`minilm`]), or [`skip_or_fail`] and `return` from the calling test.
#[cfg(feature = "minilm")]
#[macro_export]
macro_rules! require_minilm {
    () => {
        match $crate::minilm() {
            Some(e) => e,
            None => {
                $crate::skip_or_fail("minilm-l6 not found under $RIGHTSIZE_CACHE/models or ~/.cache/rightsize/models");
                return;
            }
        }
    };
}

/// The Python with the official `openai` client: `$RIGHTSIZE_PYTHON` (scripts/setup.sh's
/// virtual environment, which scripts/test.sh exports), else that environment at its default
/// place (`target/py`), else `python3`.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("RIGHTSIZE_PYTHON").filter(|p| !p.is_empty()) {
        return p.into();
    }
    let venv = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/py/bin/python"));
    if venv.is_file() {
        venv
    } else {
        "python3".into()
    }
}

/// True when running under CI: `CI` is set to `true` or `1` (any case).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Where skipped tests are recorded.
pub fn skip_log() -> PathBuf {
    match std::env::var_os(SKIP_LOG_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/skipped.txt")),
    }
}

/// A prerequisite of the calling test is missing. Under CI: panics with `reason`. Otherwise:
/// prints `SKIPPED: <reason>`, appends `<test thread name>: <reason>` to [`skip_log`], and
/// returns, so the caller can `return` from the test.
#[track_caller]
pub fn skip_or_fail(reason: &str) {
    if in_ci() {
        panic!("{reason} (CI=true: a missing prerequisite fails the test instead of skipping it; the set-up, scripts/test.sh, provides it)");
    }
    eprintln!("SKIPPED: {reason}");
    let test = std::thread::current().name().unwrap_or("?").to_owned();
    let line = format!("{test}: {}\n", reason.replace('\n', " "));
    let path = skip_log();
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    // One write per line in append mode: lines from parallel tests do not interleave.
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(&path) {
        let _ = f.write_all(line.as_bytes());
    }
}

/// `Some(value)`, or [`skip_or_fail`] with `reason()` and `None`.
#[track_caller]
pub fn require<T>(value: Option<T>, reason: impl FnOnce() -> String) -> Option<T> {
    if value.is_none() {
        skip_or_fail(&reason());
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    // The tests change process-wide environment variables: one at a time.
    static ENV: Mutex<()> = Mutex::new(());

    fn with_env<R>(ci: Option<&str>, log: &std::path::Path, f: impl FnOnce() -> R) -> R {
        let _g = ENV.lock().unwrap_or_else(|p| p.into_inner());
        let old = (std::env::var_os("CI"), std::env::var_os(SKIP_LOG_ENV));
        // SAFETY (edition 2021: safe fns): serialised by ENV; no other test reads these.
        match ci {
            Some(v) => std::env::set_var("CI", v),
            None => std::env::remove_var("CI"),
        }
        std::env::set_var(SKIP_LOG_ENV, log);
        let r = f();
        match old.0 {
            Some(v) => std::env::set_var("CI", v),
            None => std::env::remove_var("CI"),
        }
        match old.1 {
            Some(v) => std::env::set_var(SKIP_LOG_ENV, v),
            None => std::env::remove_var(SKIP_LOG_ENV),
        }
        r
    }

    #[test]
    fn outside_ci_a_skip_is_printed_and_logged_once_per_call() {
        let dir = tempfile_dir();
        let log = dir.join("skipped.txt");
        with_env(None, &log, || {
            skip_or_fail("model x not found");
            assert_eq!(require(None::<u8>, || "peer missing".into()), None);
            assert_eq!(require(Some(3), || unreachable!()), Some(3));
        });
        let text = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].ends_with(": model x not found"), "{text}");
        assert!(lines[0].contains("outside_ci_a_skip"), "the test's name: {text}");
        assert!(lines[1].ends_with(": peer missing"), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn under_ci_a_skip_fails_with_the_reason() {
        let dir = tempfile_dir();
        let log = dir.join("skipped.txt");
        for ci in ["true", "TRUE", "1"] {
            let r = with_env(Some(ci), &log, || {
                std::panic::catch_unwind(|| skip_or_fail("postgres not reachable"))
            });
            let msg = r.expect_err("CI must fail the test");
            let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
            assert!(
                msg.contains("postgres not reachable") && msg.contains("CI=true"),
                "{msg}"
            );
        }
        assert!(!log.exists(), "nothing logged as skipped under CI");
        // CI=false is not CI.
        with_env(Some("false"), &log, || skip_or_fail("x"));
        assert!(log.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir()
            .join(format!("testkit-{}-{:?}", std::process::id(), std::thread::current().id()).replace(['(', ')'], ""));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
