//! `rightsize serve` configuration (TOML). See `config/rightsize.example.toml`.

use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to bind; loopback unless you mean it.
    #[serde(default = "default_bind")]
    pub bind: String,
    /// Memory budget for resident models: bytes, or a string like "8GiB" / "60%" of RAM.
    #[serde(default = "default_budget")]
    pub memory_budget: String,
    /// Allow requests without an API key. Refused when `bind` is not loopback.
    #[serde(default = "yes")]
    pub open_local: bool,
    /// Names (`host` with any port, or `host:port`) this server answers to besides
    /// localhost, 127.0.0.0/8 and [::1]; other `Host` headers get 403 (DNS rebinding). `"*"`:
    /// any (only with `open_local = false`). A non-loopback `bind` needs at least one.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Web origins (`scheme://host[:port]`) whose pages may call the server; a request with
    /// any other `Origin` header gets 403. Empty by default: no web page may.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// The longest `keep_alive` a request may set (admin callers only), in seconds; longer
    /// ones, and "forever" (negative), are capped to it.
    #[serde(default = "default_max_keep_alive")]
    pub max_keep_alive_s: u64,
    /// SQLite file (or postgres:// URL) for keys and records; default `<cache>/rightsize.db`.
    #[serde(default)]
    pub store: Option<String>,
    /// Largest request body in bytes.
    #[serde(default = "default_body_limit")]
    pub max_body_bytes: usize,
    /// Most messages in one chat request (checked before guardrails and templating).
    #[serde(default = "default_max_messages")]
    pub max_messages: usize,
    /// Most characters of input (all strings together) in one embeddings request.
    #[serde(default = "default_max_embedding_chars")]
    pub max_embedding_chars: usize,
    /// Embedding requests computed at once per model; more get 429 with Retry-After.
    #[serde(default = "default_max_embedding_in_flight")]
    pub max_embedding_in_flight: usize,
    /// Default request deadline in seconds.
    #[serde(default = "default_timeout")]
    pub request_timeout_s: u64,
    /// How long a request may wait for room in the memory budget before 503.
    #[serde(default = "default_wait")]
    pub load_wait_s: u64,
    /// Log prompt text (off by default).
    #[serde(default)]
    pub log_prompts: bool,
    #[serde(default, rename = "model")]
    pub models: Vec<ModelConfig>,
    /// Directory of task files (`*.toml`); tasks are served at `/v1/tasks/{name}` and as
    /// `model: "task:NAME"`. Default: `./tasks` when it exists.
    #[serde(default)]
    pub tasks_dir: Option<String>,
    /// USD per core-hour of local compute: turns measured core-seconds into task cost.
    #[serde(default = "default_core_hour")]
    pub cpu_core_hour_usd: f64,
    /// The audit log: one hash-chained record per request and task run, in the store.
    #[serde(default)]
    pub audit: AuditConfig,
    /// Guardrails for every request (`[guard]`: pii, injection, output_pii, ...); an API
    /// key's policy overrides these field by field, a task's `[guardrails]` override both.
    #[serde(default)]
    pub guard: guard::Guardrails,
    /// The PII detector (`[pii]`): extra regex recognisers (`[[pii.custom]]` name + pattern;
    /// a `(?P<pii>...)` group narrows the span) and built-in kinds to switch off
    /// (`disabled = ["ipv4"]`). Custom kinds are used like built-in ones everywhere:
    /// `pii_kinds`, counts, stats, `/v1/guard/pii`.
    #[serde(default)]
    pub pii: guard::PiiConfig,
    /// Continuous evaluation (`[shadow]`): shadow runs on the top tier, drift alerts,
    /// scheduled re-evaluation of task data sets. Off by default.
    #[serde(default)]
    pub shadow: crate::shadow::ShadowConfig,
}

/// `audit = { enabled = true, content = "hashes", retention_days = 90 }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Append a record for every request and task run before answering (the request fails
    /// with 503 when the record cannot be written).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// What the record keeps of the input and output text.
    #[serde(default)]
    pub content: AuditContent,
    /// Records older than this many days are pruned (hourly); 0 keeps them forever.
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    /// The server key for keyed hashes (audit `hashes`, PII `hash` mode): a file outside the
    /// database, created (mode 0600) when missing. Default `<cache>/server.key`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            content: AuditContent::default(),
            retention_days: default_retention_days(),
            key_file: None,
        }
    }
}

/// What an audit record keeps of the text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditContent {
    /// `sha256:<hex>` of the input and output only: no text in the store.
    #[default]
    Hashes,
    /// The text itself.
    Full,
}

fn default_retention_days() -> u32 {
    90
}

fn default_core_hour() -> f64 {
    mesh::Prices::default().cpu_core_hour_usd
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Name clients use in `model`.
    pub id: String,
    /// Catalog id or path to the file (decoder) / directory (encoder). Default: `id`.
    #[serde(default)]
    pub source: Option<String>,
    /// Seconds to stay resident after last use; negative: forever.
    #[serde(default = "default_keep_alive")]
    pub keep_alive_s: i64,
    #[serde(default)]
    pub pin: bool,
    /// Most sequences decoded together.
    #[serde(default = "default_max_sequences")]
    pub max_sequences: u32,
    /// Tokens one request may use (prompt + completion). The KV cache holds
    /// `ctx × max_sequences` cells.
    #[serde(default = "default_ctx")]
    pub ctx: u32,
    /// Most requests waiting for a sequence slot before 429.
    #[serde(default = "default_queue")]
    pub max_queue: usize,
    /// Batch requests get 429 once this many wait (default: `max_queue`); the rest of the
    /// queue is kept for interactive arrivals.
    #[serde(default)]
    pub max_queue_batch: Option<usize>,
    #[serde(default)]
    pub threads: u32,
    /// Let llama.cpp repack quantised weights for its CPU GEMV kernels (a copy of those
    /// tensors in anonymous memory, counted in the model's bytes; faster decode, slower load
    /// and prefill). Default false: the weights are the file mapping only.
    #[serde(default)]
    pub repack: bool,
    /// Restore the KV cells of chat prompts' fixed beginnings (template preamble, earlier
    /// turns) instead of computing them again (process-wide, 64 MiB for all models). Off by
    /// default: it cuts the prefill at the prefix, which moves llama.cpp's numbers slightly,
    /// so task thresholds calibrated without it should be re-checked (`rightsize eval`).
    #[serde(default)]
    pub prefix_cache: bool,
    /// Parse the model file when the server starts and keep it asleep (weights and KV not
    /// resident; the parsed vocabulary, ~15–40 MiB, counted in the budget), so even its first
    /// request skips llama.cpp's file parse. Off by default: models load on first use.
    #[serde(default)]
    pub prepare: bool,
}

fn default_bind() -> String {
    "127.0.0.1:8080".into()
}
fn default_budget() -> String {
    "60%".into()
}
fn yes() -> bool {
    true
}
fn default_body_limit() -> usize {
    4 << 20
}
fn default_max_messages() -> usize {
    1024
}
fn default_max_embedding_chars() -> usize {
    200_000
}
fn default_max_embedding_in_flight() -> usize {
    2
}
fn default_timeout() -> u64 {
    300
}
fn default_wait() -> u64 {
    30
}
fn default_max_keep_alive() -> u64 {
    3600
}
fn default_keep_alive() -> i64 {
    300
}
fn default_max_sequences() -> u32 {
    8
}
fn default_ctx() -> u32 {
    2048
}
fn default_queue() -> usize {
    64
}

/// The default mesh: the catalog's three chat models and the MiniLM encoder.
pub const DEFAULT_CONFIG: &str = r#"
bind = "127.0.0.1:8080"
memory_budget = "60%"

[[model]]
id = "smollm2-135m"
pin = true

[[model]]
id = "qwen2.5-0.5b"

[[model]]
id = "qwen2.5-1.5b"

[[model]]
id = "minilm-l6"
pin = true
"#;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("invalid config: {0}")]
    Parse(String),
}

impl ServerConfig {
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let cfg: ServerConfig = toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn load(path: Option<&std::path::Path>) -> Result<Self, ConfigError> {
        match path {
            Some(p) => Self::from_toml(&std::fs::read_to_string(p).map_err(|e| ConfigError::Read(p.to_owned(), e))?),
            None => Self::from_toml(DEFAULT_CONFIG),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Parse(m));
        if self.models.is_empty() {
            return bad("no [[model]] entries".into());
        }
        let mut seen = std::collections::HashSet::new();
        for m in &self.models {
            if !seen.insert(&m.id) {
                return bad(format!("model `{}` is listed twice", m.id));
            }
            if m.max_sequences == 0 || m.ctx < 64 {
                return bad(format!("model `{}`: max_sequences must be > 0 and ctx >= 64", m.id));
            }
        }
        if self.max_messages == 0 || self.max_embedding_chars == 0 || self.max_embedding_in_flight == 0 {
            return bad("max_messages, max_embedding_chars and max_embedding_in_flight must be at least 1".into());
        }
        parse_budget(&self.memory_budget, 1).map_err(ConfigError::Parse)?;
        self.shadow.check().map_err(ConfigError::Parse)?;
        guard::Detector::new(self.pii.clone()).map_err(|e| ConfigError::Parse(format!("[pii]: {e}")))?;
        if self.open_local && self.allowed_hosts.iter().any(|h| h == "*") {
            return bad(
                "allowed_hosts = [\"*\"] needs `open_local = false`: a keyless server must check Host (DNS rebinding)"
                    .into(),
            );
        }
        if let Some(h) = self
            .allowed_hosts
            .iter()
            .find(|h| h.is_empty() || h.contains(['/', ' ']))
        {
            return bad(format!(
                "allowed_hosts: `{h}` is not a host name (e.g. \"gpu-box.lan\" or \"gpu-box.lan:8080\")"
            ));
        }
        if let Some(o) = self.allowed_origins.iter().find(|o| {
            !o.split_once("://").is_some_and(|(s, h)| {
                !s.is_empty() && !h.trim_end_matches('/').is_empty() && !h.trim_end_matches('/').contains('/')
            })
        }) {
            return bad(format!(
                "allowed_origins: `{o}` is not an origin (scheme://host[:port], e.g. \"http://localhost:3000\")"
            ));
        }
        // Written so that NaN is refused too.
        #[allow(clippy::neg_cmp_op_on_partial_ord)]
        if !(self.cpu_core_hour_usd >= 0.0) {
            return bad("cpu_core_hour_usd must be 0 or more".into());
        }
        Ok(())
    }

    /// The tasks directory: the configured one, else `./tasks` when it exists.
    pub fn tasks_dir(&self) -> Option<std::path::PathBuf> {
        match &self.tasks_dir {
            Some(d) => Some(d.into()),
            None => Some(std::path::PathBuf::from("tasks")).filter(|p| p.is_dir()),
        }
    }

    /// Whether `bind` is a loopback address.
    pub fn is_loopback(&self) -> bool {
        self.bind
            .parse::<std::net::SocketAddr>()
            .map(|a| a.ip().is_loopback())
            .unwrap_or_else(|_| self.bind.starts_with("localhost:"))
    }
}

/// "8GiB", "512MB", "60%", or plain bytes.
pub fn parse_budget(s: &str, total_ram: u64) -> Result<u64, String> {
    let s = s.trim();
    let err = || format!("memory_budget `{s}` is not bytes, a size like \"8GiB\", or a share like \"60%\"");
    if let Some(p) = s.strip_suffix('%') {
        let p: f64 = p.trim().parse().map_err(|_| err())?;
        if !(0.0..=100.0).contains(&p) || p == 0.0 {
            return Err(err());
        }
        return Ok((total_ram as f64 * p / 100.0) as u64);
    }
    let units = [
        ("GiB", 1u64 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
        ("GB", 1_000_000_000),
        ("MB", 1_000_000),
        ("KB", 1000),
        ("B", 1),
    ];
    for (u, m) in units {
        if let Some(n) = s.strip_suffix(u) {
            let n: f64 = n.trim().parse().map_err(|_| err())?;
            return Ok((n * m as f64) as u64);
        }
    }
    s.parse().map_err(|_| err())
}

/// Physical memory from /proc/meminfo (0 if unknown).
pub fn total_ram() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_parses() {
        let c = ServerConfig::load(None).unwrap();
        assert_eq!(c.models.len(), 4);
        assert!(c.is_loopback());
        assert!(c.open_local);
    }

    #[test]
    fn budgets() {
        assert_eq!(parse_budget("8GiB", 0).unwrap(), 8 << 30);
        assert_eq!(parse_budget("50%", 1000).unwrap(), 500);
        assert_eq!(parse_budget("1234", 0).unwrap(), 1234);
        assert!(parse_budget("lots", 0).is_err());
        assert!(parse_budget("0%", 10).is_err());
    }

    #[test]
    fn bad_configs_name_the_problem() {
        let e = ServerConfig::from_toml("[[model]]\nid='a'\n[[model]]\nid='a'").unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
        let e = ServerConfig::from_toml("[[model]]\nid='a'\nbogus=1").unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        assert!(ServerConfig::from_toml("bind='127.0.0.1:1'").is_err());
    }

    #[test]
    fn audit_defaults_and_choices() {
        let c = ServerConfig::load(None).unwrap();
        assert!(c.audit.enabled);
        assert_eq!(c.audit.content, AuditContent::Hashes);
        assert_eq!(c.audit.retention_days, 90);
        let c =
            ServerConfig::from_toml("audit = { content = \"full\", retention_days = 7 }\n[[model]]\nid='a'").unwrap();
        assert!(c.audit.enabled);
        assert_eq!(c.audit.content, AuditContent::Full);
        assert_eq!(c.audit.retention_days, 7);
        let c = ServerConfig::from_toml("[audit]\nenabled = false\n[[model]]\nid='a'").unwrap();
        assert!(!c.audit.enabled);
        assert!(ServerConfig::from_toml("audit = { content = \"text\" }\n[[model]]\nid='a'").is_err());
    }

    #[test]
    fn access_settings() {
        let c = ServerConfig::load(None).unwrap();
        assert!(c.allowed_hosts.is_empty() && c.allowed_origins.is_empty());
        assert_eq!(c.max_keep_alive_s, 3600);
        let c = ServerConfig::from_toml("allowed_hosts = [\"gpu-box.lan\"]\nallowed_origins = [\"http://localhost:3000\"]\nmax_keep_alive_s = 60\n[[model]]\nid='a'").unwrap();
        assert_eq!(
            (c.allowed_hosts.len(), c.allowed_origins.len(), c.max_keep_alive_s),
            (1, 1, 60)
        );
        let e = ServerConfig::from_toml("allowed_hosts = [\"*\"]\n[[model]]\nid='a'").unwrap_err();
        assert!(e.to_string().contains("open_local = false"), "{e}");
        assert!(ServerConfig::from_toml("open_local = false\nallowed_hosts = [\"*\"]\n[[model]]\nid='a'").is_ok());
        for bad in ["localhost:3000", "http://", "http://a/b", "*"] {
            let e = ServerConfig::from_toml(&format!("allowed_origins = [\"{bad}\"]\n[[model]]\nid='a'")).unwrap_err();
            assert!(e.to_string().contains("allowed_origins"), "{bad}: {e}");
        }
        assert!(ServerConfig::from_toml("allowed_hosts = [\"http://x\"]\n[[model]]\nid='a'").is_err());
    }

    #[test]
    fn loopback_detection() {
        let mut c = ServerConfig::load(None).unwrap();
        c.bind = "0.0.0.0:8080".into();
        assert!(!c.is_loopback());
        c.bind = "[::1]:8080".into();
        assert!(c.is_loopback());
    }
}
