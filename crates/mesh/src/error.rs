//! Errors: task files (named by file, line and field), task runs, the models a tier leases
//! ([`ModelError`]) and one tier call ([`TierError`]).

use std::path::{Path, PathBuf};

/// A task file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("{}: {source}", file.display())]
    Io { file: PathBuf, source: std::io::Error },
    #[error("{}{}: `{field}`: {message}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        file: PathBuf,
        line: Option<usize>,
        field: String,
        message: String,
    },
    #[error("task `{name}` version {version} is defined twice: {} and {}", first.display(), second.display())]
    Duplicate {
        name: String,
        version: i64,
        first: PathBuf,
        second: PathBuf,
    },
    /// A valid task file whose data file (`examples`, `dataset`) is not on this machine (a
    /// git-ignored data set not built yet): the task is unavailable, the others still load.
    #[error("{}{}: `{field}`: file {} not found", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default(), missing.display())]
    MissingData {
        file: PathBuf,
        line: Option<usize>,
        field: String,
        missing: PathBuf,
        name: String,
        version: i64,
    },
}

impl TaskError {
    pub(crate) fn invalid(file: &Path, line: Option<usize>, field: &str, message: &str) -> Self {
        TaskError::Invalid {
            file: file.to_owned(),
            line,
            field: field.to_owned(),
            message: message.to_owned(),
        }
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
    Exhausted {
        task: String,
        attempts: Vec<crate::run::Attempt>,
    },
    #[error("task `{task}`: tier {tier} failed and the policy is on_error = \"fail\": {message}")]
    TierFailed {
        task: String,
        tier: String,
        message: String,
    },
    /// A guardrail refused the input (PII under `block`, a prompt injection under `block`).
    #[error("blocked by guardrails: {reason}")]
    Blocked {
        reason: String,
        events: std::collections::BTreeMap<String, u64>,
    },
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

/// Why [`Models`](crate::Models) gave no model for a tier. The mesh does not know the pool's
/// types (they meet only through the trait), so the pool's own error travels boxed: its text
/// is what the trace shows, and a caller that knows the pool can downcast it.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// No model by this id is served.
    #[error("unknown model `{0}`")]
    Unknown(String),
    /// A decoder was asked for and `id` is an encoder.
    #[error("`{0}` is an encoder, not a decoder")]
    NotADecoder(String),
    /// An encoder was asked for and `id` is a decoder.
    #[error("`{0}` is a decoder, not an encoder")]
    NotAnEncoder(String),
    /// The source of models could not provide it (no room, a failed load, ...).
    #[error(transparent)]
    Source(Box<dyn std::error::Error + Send + Sync>),
}

/// Why one tier call gave no answer. Its text is the attempt's `error` in the trace (and in
/// the run's error); its [`Failure`] decides the run's error status.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TierError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Engine(#[from] engine::EngineError),
    #[error(transparent)]
    Encoder(#[from] encoder::EncoderError),
    #[error(transparent)]
    Remote(#[from] crate::remote::RemoteError),
    /// Rendering the prompt or loading / training the classifier head failed.
    #[error(transparent)]
    Mesh(#[from] Box<MeshError>),
    /// The blocking thread doing the tier's model work failed.
    #[error("{what} panicked: {source}")]
    Panicked {
        what: &'static str,
        source: tokio::task::JoinError,
    },
    #[error("timed out after {0} ms")]
    Timeout(u64),
    #[error("circuit breaker open (retry in {retry_in_ms} ms)")]
    BreakerOpen { retry_in_ms: u128 },
    #[error("answer is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// The task's JSON schema does not compile (checked when the task loads, so rare).
    #[error("{0}")]
    BadSchema(#[source] Box<jsonschema::ValidationError<'static>>),
    #[error("answer violates the schema at `{path}`: {0}", path = .0.instance_path)]
    SchemaViolation(#[source] Box<jsonschema::ValidationError<'static>>),
    /// A validator's pattern does not compile.
    #[error("{0}")]
    BadValidator(#[from] regex::Error),
    /// A remote label answer that names none of the labels (its first 80 characters).
    #[error("answer {0} is not one of the labels")]
    NotALabel(String),
}

/// The kind of a tier failure, for the run's error status: an input that can never fit the
/// model's context is the caller's error (retrying cannot help), a full queue is worth a retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The prompt is longer than the model's context allows.
    TooLong,
    /// The model's queue is full.
    Overloaded,
    Other,
}

impl TierError {
    pub(crate) fn failure(&self) -> Failure {
        match self {
            TierError::Engine(engine::EngineError::PromptTooLong { .. }) => Failure::TooLong,
            TierError::Engine(engine::EngineError::QueueFull(_)) => Failure::Overloaded,
            _ => Failure::Other,
        }
    }
}

impl From<MeshError> for TierError {
    fn from(e: MeshError) -> Self {
        TierError::Mesh(Box::new(e))
    }
}
