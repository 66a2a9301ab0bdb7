//! Errors: task files (named by file, line and field) and task runs.

use std::path::{Path, PathBuf};

/// A task file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("{}: {source}", file.display())]
    Io { file: PathBuf, source: std::io::Error },
    #[error("{}{}: `{field}`: {message}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid { file: PathBuf, line: Option<usize>, field: String, message: String },
    #[error("task `{name}` version {version} is defined twice: {} and {}", first.display(), second.display())]
    Duplicate { name: String, version: i64, first: PathBuf, second: PathBuf },
    /// A valid task file whose data file (`examples`, `dataset`) is not on this machine (a
    /// git-ignored data set not built yet): the task is unavailable, the others still load.
    #[error("{}{}: `{field}`: file {} not found", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default(), missing.display())]
    MissingData { file: PathBuf, line: Option<usize>, field: String, missing: PathBuf, name: String, version: i64 },
}

impl TaskError {
    pub(crate) fn invalid(file: &Path, line: Option<usize>, field: &str, message: &str) -> Self {
        TaskError::Invalid { file: file.to_owned(), line, field: field.to_owned(), message: message.to_owned() }
    }
}

/// A task run that could not produce an answer.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    #[error("no task named `{0}`")]
    UnknownTask(String),
    #[error("task `{0}` has no version {1}")]
    UnknownVersion(String, i64),
    /// The task file is valid but cannot run on this machine (a data file is missing).
    #[error("task `{task}` is unavailable: {reason}")]
    Unavailable { task: String, reason: String },
    /// Missing or unexpected input variables, or a template that fails on them.
    #[error("{0}")]
    BadInput(String),
    /// Every tier failed (errors, timeouts, open breakers), or none reached its threshold
    /// under `on_exhausted = "fail"`.
    #[error("task `{task}`: no tier produced an acceptable answer ({})", summary(attempts))]
    Exhausted { task: String, attempts: Vec<crate::run::Attempt> },
    #[error("task `{task}`: tier {tier} failed and the policy is on_error = \"fail\": {message}")]
    TierFailed { task: String, tier: String, message: String },
    /// A guardrail refused the input (PII under `block`, a prompt injection under `block`).
    #[error("blocked by guardrails: {reason}")]
    Blocked { reason: String, events: std::collections::BTreeMap<String, u64> },
    /// An input is larger than a guard will check.
    #[error("{0}")]
    TooLarge(String),
    /// The rendered prompt is longer than the context of every tier that was tried: the
    /// input can never fit (the message names the limit).
    #[error("task `{task}`: the input is too long for its tiers ({message})")]
    InputTooLong { task: String, message: String },
    /// Every tier that was tried failed because a queue was full (or the input never fits
    /// the others): worth a retry later.
    #[error("task `{task}`: the models are busy ({message}); retry later")]
    Overloaded { task: String, message: String },
    /// A tier's answer failed an output guard and the policy is `on_violation = "fail"`.
    #[error("task `{task}`: the answer of tier {tier} failed the output guardrails ({rules})")]
    OutputRejected { task: String, tier: String, rules: String },
    #[error("recording the run: {0}")]
    Store(#[from] store::StoreError),
}

fn summary(attempts: &[crate::run::Attempt]) -> String {
    attempts
        .iter()
        .map(|a| match (&a.error, a.confidence) {
            (Some(e), _) => format!("{}: {e}", a.tier),
            (None, Some(c)) => format!("{}: confidence {c:.2}", a.tier),
            (None, None) => a.tier.clone(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}
