//! `rightsize keys …` (on the store) and `rightsize ps|load|unload` (on a running server).

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

#[derive(Args, Debug)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub action: KeysAction,
    /// Store: SQLite file or postgres:// URL (default: <cache>/rightsize.db, as `serve` uses).
    #[arg(long, global = true, env = "RIGHTSIZE_STORE")]
    pub store: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum KeysAction {
    /// Create a key; the secret is printed once.
    Create {
        #[arg(long)]
        name: String,
        /// Comma-separated: inference, admin.
        #[arg(long, default_value = "inference", value_delimiter = ',')]
        scope: Vec<String>,
        /// Default priority class of this key's requests.
        #[arg(long, default_value = "interactive")]
        priority: String,
        #[command(flatten)]
        guard: GuardFlags,
        #[command(flatten)]
        limits: LimitFlags,
    },
    /// Set or clear the quotas of an existing key (by id or name); flags not given stay.
    Limits {
        key: String,
        #[command(flatten)]
        limits: LimitFlags,
        /// Remove all of the key's quotas.
        #[arg(long)]
        clear: bool,
    },
    /// Set or clear the guardrail policy of an existing key (by id or name).
    Guard {
        key: String,
        #[command(flatten)]
        guard: GuardFlags,
        /// Remove the key's policy.
        #[arg(long)]
        clear: bool,
    },
    /// List keys (never secrets).
    List,
    /// Revoke a key by id or name.
    Revoke { key: String },
}

/// A key's quotas (README: Quotas), shared by every server on the store; 0 removes a limit.
#[derive(Args, Debug)]
pub struct LimitFlags {
    /// Requests per minute.
    #[arg(long)]
    rpm: Option<i64>,
    /// Tokens (prompt + completion) per minute.
    #[arg(long)]
    tpm: Option<i64>,
    /// Cost in USD per UTC day (as recorded for each request and task run).
    #[arg(long)]
    daily_usd: Option<f64>,
}

impl LimitFlags {
    /// `base` with the flags given applied (0: no limit), checked.
    fn apply(&self, base: store::KeyLimits) -> Result<store::KeyLimits> {
        let int = |v: Option<i64>, old: Option<i64>| v.map_or(old, |n| (n != 0).then_some(n));
        let limits = store::KeyLimits {
            rpm: int(self.rpm, base.rpm),
            tpm: int(self.tpm, base.tpm),
            daily_usd: self.daily_usd.map_or(base.daily_usd, |x| (x != 0.0).then_some(x)),
        };
        limits.check()?;
        Ok(limits)
    }
}

fn show_limits(l: &store::KeyLimits) -> String {
    let mut parts = Vec::new();
    if let Some(n) = l.rpm {
        parts.push(format!("rpm={n}"));
    }
    if let Some(n) = l.tpm {
        parts.push(format!("tpm={n}"));
    }
    if let Some(x) = l.daily_usd {
        parts.push(format!("usd/day={x}"));
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(",")
    }
}

/// A key's guardrails (README: Guardrails); the task's own `[guardrails]` win field by field.
#[derive(Args, Debug)]
pub struct GuardFlags {
    /// PII in inputs: redact, mask, hash, block or pseudonymize.
    #[arg(long)]
    pii: Option<String>,
    /// Prompt injection: flag or block.
    #[arg(long)]
    injection: Option<String>,
    /// Redact PII the model writes into a chat answer / reject task answers holding PII.
    #[arg(long)]
    output_pii: bool,
    /// The whole policy as JSON (the keys of a task's `[guardrails]`); flags override it.
    #[arg(long)]
    guard: Option<String>,
}

impl GuardFlags {
    /// The policy as stored (validated JSON) — `base` (a key's current policy) with these
    /// flags applied — or `None` when it is empty.
    fn policy(&self, base: Option<&str>) -> Result<Option<String>> {
        let mut g: guard::Guardrails = match (&self.guard, base) {
            (Some(j), _) => serde_json::from_str(j).context("--guard is not a valid guardrail policy")?,
            (None, Some(b)) => {
                serde_json::from_str(b).context("the key's stored policy does not parse; replace it with --guard")?
            }
            (None, None) => guard::Guardrails::default(),
        };
        let word = |w: &str| serde_json::Value::String(w.to_owned());
        if let Some(m) = &self.pii {
            g.pii = Some(
                serde_json::from_value(word(m))
                    .map_err(|_| anyhow::anyhow!("--pii `{m}`: use redact, mask, hash, block or pseudonymize"))?,
            );
        }
        if let Some(a) = &self.injection {
            g.injection = Some(
                serde_json::from_value(word(a)).map_err(|_| anyhow::anyhow!("--injection `{a}`: use flag or block"))?,
            );
        }
        if self.output_pii {
            g.output_pii = Some(true);
        }
        if let Err((field, msg)) = g.check() {
            bail!("guardrail policy: `{field}`: {msg}");
        }
        Ok((!g.is_empty()).then(|| serde_json::to_string(&g).expect("policy serialises")))
    }
}

pub fn keys(args: KeysArgs) -> Result<()> {
    let at = args.store.unwrap_or_else(|| {
        supply::Cache::from_env()
            .root()
            .join("rightsize.db")
            .display()
            .to_string()
    });
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let store = store::Store::open(&at).await?;
        match args.action {
            KeysAction::Create {
                name,
                scope,
                priority,
                guard,
                limits,
            } => {
                let policy = guard.policy(None)?;
                let limits = limits.apply(store::KeyLimits::default())?;
                let scopes = scope
                    .iter()
                    .map(|s| match s.as_str() {
                        "inference" => Ok(store::KeyScope::Inference),
                        "admin" => Ok(store::KeyScope::Admin),
                        other => bail!("unknown scope `{other}` (inference, admin)"),
                    })
                    .collect::<Result<Vec<_>>>()?;
                let k = store.create_key(&name, &scopes, &priority).await?;
                if let Some(p) = &policy {
                    store.set_key_guard(&k.key.id, Some(p)).await?;
                }
                if !limits.is_empty() {
                    store.set_key_limits(&k.key.id, limits).await?;
                }
                eprintln!("created {} ({}); the secret is shown once:", k.key.id, k.key.name);
                println!("{}", k.secret);
            }
            KeysAction::Limits { key, limits, clear } => {
                let current = store
                    .list_keys()
                    .await?
                    .into_iter()
                    .find(|k| (k.id == key || k.name == key) && k.revoked_at.is_none())
                    .with_context(|| format!("no active key `{key}`"))?;
                let limits = if clear {
                    store::KeyLimits::default()
                } else {
                    limits.apply(current.limits)?
                };
                store.set_key_limits(&current.id, limits).await?;
                println!("{key}: {}", show_limits(&limits));
            }
            KeysAction::Guard { key, guard, clear } => {
                let current = store
                    .list_keys()
                    .await?
                    .into_iter()
                    .find(|k| (k.id == key || k.name == key) && k.revoked_at.is_none())
                    .with_context(|| format!("no active key `{key}`"))?;
                let policy = if clear {
                    None
                } else {
                    guard.policy(current.guard.as_deref())?
                };
                store.set_key_guard(&key, policy.as_deref()).await?;
                println!("{key}: {}", policy.as_deref().unwrap_or("no guardrail policy"));
            }
            KeysAction::List => {
                println!(
                    "{:<18} {:<16} {:<12} {:<20} {:<12} {:<8} {:<28} GUARD",
                    "ID", "NAME", "PREFIX", "SCOPES", "PRIORITY", "STATUS", "LIMITS"
                );
                for k in store.list_keys().await? {
                    let scopes: Vec<String> = k.scopes.iter().map(|s| format!("{s:?}").to_lowercase()).collect();
                    let status = if k.revoked_at.is_some() { "revoked" } else { "active" };
                    println!(
                        "{:<18} {:<16} {:<12} {:<20} {:<12} {:<8} {:<28} {}",
                        k.id,
                        k.name,
                        k.prefix,
                        scopes.join(","),
                        k.priority,
                        status,
                        show_limits(&k.limits),
                        k.guard.as_deref().unwrap_or("")
                    );
                }
            }
            KeysAction::Revoke { key } => {
                let k = store.revoke_key(&key).await?;
                println!("revoked {} ({})", k.id, k.name);
            }
        }
        Ok(())
    })
}

#[derive(Args, Debug)]
pub struct RemoteArgs {
    /// Server URL.
    #[arg(long, default_value = "http://127.0.0.1:8080", env = "RIGHTSIZE_URL")]
    pub url: String,
    /// API key with the admin scope. Without one, a server on this machine is called with the
    /// admin token it wrote at start (`<cache>/admin-token-<port>`).
    #[arg(long, env = "RIGHTSIZE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

/// The admin token of the local server at `url` (its `<cache>/admin-token-<port>`), when the
/// URL names this machine and the file is readable. Never sent anywhere else.
fn local_admin_token(url: &str) -> Option<String> {
    let u = reqwest::Url::parse(url).ok()?;
    let host = u.host_str()?.trim_start_matches('[').trim_end_matches(']');
    let local =
        host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !local {
        return None;
    }
    let path = server::access::token_path(supply::Cache::from_env().root(), u.port_or_known_default()?);
    std::fs::read_to_string(path)
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
}

fn call(r: &RemoteArgs, method: reqwest::Method, path: &str) -> Result<serde_json::Value> {
    let client = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(600))
        .build()?;
    let mut req = client.request(method, format!("{}{path}", r.url.trim_end_matches('/')));
    if let Some(k) = r.api_key.clone().or_else(|| local_admin_token(&r.url)) {
        req = req.bearer_auth(k);
    }
    let resp = req
        .send()
        .with_context(|| format!("cannot reach the server at {}", r.url))?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().unwrap_or(serde_json::Value::Null);
    if !status.is_success() {
        bail!(
            "{status}: {}",
            body["error"]["message"].as_str().unwrap_or("request failed")
        );
    }
    Ok(body)
}

pub fn ps(r: RemoteArgs) -> Result<()> {
    let v = call(&r, reqwest::Method::GET, "/admin/models")?;
    let mb = |b: &serde_json::Value| format!("{:.0} MiB", b.as_f64().unwrap_or(0.0) / 1048576.0);
    println!("budget {} used {}", mb(&v["budget_bytes"]), mb(&v["used_bytes"]));
    println!(
        "{:<16} {:>10} {:>8} {:>7} {:>7} {:>9} {:>7}",
        "MODEL", "BYTES", "RUNNING", "QUEUED", "PINNED", "IDLE", "STATE"
    );
    for m in v["models"].as_array().into_iter().flatten() {
        println!(
            "{:<16} {:>10} {:>8} {:>7} {:>7} {:>8.0}s {:>7}",
            m["id"].as_str().unwrap_or(""),
            mb(&m["bytes"]),
            m["running"].as_u64().unwrap_or(0),
            m["queued"].as_u64().unwrap_or(0),
            m["pinned"].as_bool().unwrap_or(false),
            m["idle_s"].as_f64().unwrap_or(0.0),
            m["state"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

pub fn load(r: RemoteArgs, model: &str) -> Result<()> {
    call(&r, reqwest::Method::POST, &format!("/admin/models/{model}/load"))?;
    println!("{model} loaded");
    Ok(())
}

pub fn unload(r: RemoteArgs, model: &str, forget: bool) -> Result<()> {
    let v = call(
        &r,
        reqwest::Method::POST,
        &format!("/admin/models/{model}/unload?forget={forget}"),
    )?;
    println!(
        "{model} {}",
        if v["unloaded"].as_bool().unwrap_or(false) {
            "unloaded"
        } else {
            "was not resident"
        }
    );
    Ok(())
}
