//! Tier specs: who can answer a task, as written in its file (`[[ladder]]`), and what an
//! answer costs ([`Prices`]).
//!
//! Named `tier_spec` beside `tier_call`: this module is the data a task file declares and
//! checks at load time; `tier_call` is what happens when a run calls one of these tiers.

use crate::task::OutputKind;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TierKind {
    /// MiniLM embedding + a head trained on the task's examples (label tasks only).
    Classifier,
    /// A decoder model from the local pool.
    Local,
    /// Any OpenAI-compatible endpoint.
    Remote,
}

/// One rung of a ladder, as written in a task file (`[[ladder]]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierSpec {
    pub kind: TierKind,
    /// Accept this tier's answer when its confidence is at least this (0..=1).
    #[serde(default)]
    pub threshold: f64,
    /// Label tasks: also require this margin between the best and the runner-up label.
    #[serde(default)]
    pub min_margin: Option<f64>,
    /// Give up on this tier after this long (an error: the next tier answers).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// `classifier`: the encoder model id (e.g. `minilm-l6`).
    #[serde(default)]
    pub encoder: Option<String>,
    /// `local`: the model id in the pool; `remote`: the model name sent to the endpoint.
    #[serde(default)]
    pub model: Option<String>,
    /// `remote`: name in traces and stats (default: the model).
    #[serde(default)]
    pub name: Option<String>,
    /// `remote`: base URL up to `/v1`, e.g. `https://api.openai.com/v1`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// `remote`: environment variable holding the API key (the key never goes in the file).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// `remote`: retries of a failed call (connection errors, 429, 5xx, timeouts).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// `remote`: first backoff between retries; doubles each time.
    #[serde(default = "default_backoff")]
    pub backoff_ms: u64,
    /// `remote`: consecutive failed calls that open the circuit breaker.
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: u32,
    /// `remote`: how long an open breaker skips the tier before one trial call.
    #[serde(default = "default_breaker_cooldown")]
    pub breaker_cooldown_ms: u64,
    /// `remote`: declared price in USD per million input / output tokens.
    #[serde(default)]
    pub price_input_per_mtok: f64,
    #[serde(default)]
    pub price_output_per_mtok: f64,
}

fn default_retries() -> u32 {
    2
}
fn default_backoff() -> u64 {
    200
}
fn default_breaker_failures() -> u32 {
    3
}
fn default_breaker_cooldown() -> u64 {
    30_000
}

impl TierSpec {
    /// The tier's name in traces and stats: `classifier:minilm-l6`, `local:qwen2.5-0.5b`,
    /// `remote:gpt-4o-mini`.
    pub fn id(&self) -> String {
        match self.kind {
            TierKind::Classifier => format!("classifier:{}", self.encoder.as_deref().unwrap_or("?")),
            TierKind::Local => format!("local:{}", self.model.as_deref().unwrap_or("?")),
            TierKind::Remote => format!(
                "remote:{}",
                self.name.as_deref().or(self.model.as_deref()).unwrap_or("?")
            ),
        }
    }

    /// Checks the fields for this kind; `(field, message)` on error.
    pub(crate) fn check(&self, output: OutputKind, _last: bool) -> Result<(), (String, String)> {
        let err = |f: &str, m: &str| Err((f.to_owned(), m.to_owned()));
        if !(0.0..=1.0).contains(&self.threshold) {
            return err("threshold", "must be between 0 and 1");
        }
        if self.min_margin.is_some_and(|m| !(0.0..=1.0).contains(&m)) {
            return err("min_margin", "must be between 0 and 1");
        }
        if self.timeout_ms == Some(0) {
            return err("timeout_ms", "must be more than 0");
        }
        let only = |f: &str, set: bool, kinds: &str| {
            if set {
                Err((f.to_owned(), format!("only applies to {kinds} tiers")))
            } else {
                Ok(())
            }
        };
        match self.kind {
            TierKind::Classifier => {
                if self.encoder.as_deref().unwrap_or("").is_empty() {
                    return err("encoder", "a classifier tier needs `encoder` (e.g. \"minilm-l6\")");
                }
                if output != OutputKind::Label {
                    return err("kind", "a classifier tier can only answer a `label` task");
                }
                only("model", self.model.is_some(), "local and remote")?;
                only("base_url", self.base_url.is_some(), "remote")?;
            }
            TierKind::Local => {
                if self.model.as_deref().unwrap_or("").is_empty() {
                    return err("model", "a local tier needs `model` (a model id served by the pool)");
                }
                only("encoder", self.encoder.is_some(), "classifier")?;
                only("base_url", self.base_url.is_some(), "remote")?;
                only("api_key_env", self.api_key_env.is_some(), "remote")?;
            }
            TierKind::Remote => {
                let url = self.base_url.as_deref().unwrap_or("");
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return err(
                        "base_url",
                        "a remote tier needs `base_url` starting with http:// or https://",
                    );
                }
                if self.model.as_deref().unwrap_or("").is_empty() {
                    return err("model", "a remote tier needs `model`");
                }
                if self.price_input_per_mtok < 0.0 || self.price_output_per_mtok < 0.0 {
                    return err("price_input_per_mtok", "prices cannot be negative");
                }
                if self.breaker_failures == 0 {
                    return err("breaker_failures", "must be 1 or more");
                }
                only("encoder", self.encoder.is_some(), "classifier")?;
            }
        }
        Ok(())
    }
}

/// Prices that turn measured work into money, the one unit reports use.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Prices {
    /// USD per core-hour of local compute (decoders and encoders).
    pub cpu_core_hour_usd: f64,
}

impl Default for Prices {
    /// About the on-demand price of one vCPU-hour of a general-purpose cloud VM.
    fn default() -> Self {
        Self {
            cpu_core_hour_usd: 0.05,
        }
    }
}

impl Prices {
    pub fn local(&self, core_seconds: f64) -> f64 {
        core_seconds * self.cpu_core_hour_usd / 3600.0
    }
    /// Encoder work (candle computes on every core): `wall_seconds` × the cores this process
    /// may use is the compute it took.
    pub fn all_cores(&self, wall_seconds: f64) -> f64 {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
        self.local(wall_seconds * cores)
    }
    pub fn remote(spec: &TierSpec, tokens_in: u64, tokens_out: u64) -> f64 {
        (tokens_in as f64 * spec.price_input_per_mtok + tokens_out as f64 * spec.price_output_per_mtok) / 1e6
    }
}
