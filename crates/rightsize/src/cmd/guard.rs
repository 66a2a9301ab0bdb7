//! `rightsize guard pii [TEXT]`: find and redact PII in text (or stdin).

use anyhow::Result;
use clap::{Args, Subcommand};

#[derive(Args, Debug)]
pub struct GuardArgs {
    #[command(subcommand)]
    pub cmd: GuardCmd,
}

#[derive(Subcommand, Debug)]
pub enum GuardCmd {
    /// Print the text with PII replaced; the counts per kind go to stderr. Exit 2 when `block`.
    Pii {
        /// Text to check (default: stdin).
        text: Option<String>,
        /// redact, mask, hash or block.
        #[arg(long, default_value = "redact")]
        mode: String,
        /// Server config (TOML) whose `[pii]` recognisers to add to the built-in ones.
        #[arg(long)]
        config: Option<std::path::PathBuf>,
    },
}

pub fn guard(a: GuardArgs) -> Result<std::process::ExitCode> {
    let GuardCmd::Pii { text, mode, config } = a.cmd;
    let cfg = server::ServerConfig::load(config.as_deref())?;
    let detector = guard::Detector::new(if config.is_some() {
        cfg.pii.clone()
    } else {
        guard::PiiConfig::default()
    })?;
    let text = match text {
        Some(t) => t,
        None => std::io::read_to_string(std::io::stdin())?,
    };
    let mode: guard::Mode = serde_json::from_value(serde_json::Value::String(mode.clone()))
        .map_err(|_| anyhow::anyhow!("unknown mode `{mode}` (redact, mask, hash, block)"))?;
    let policy = guard::Policy::new(mode);
    // `hash` mode hashes with the server's key, so the CLI's tags match the server's.
    let policy = if mode == guard::Mode::Hash {
        let key = server::secret::key_path(&cfg, supply::Cache::from_env().root());
        policy.with_salt(server::secret::ServerSecret::load_or_create(&key)?.pii_salt())
    } else {
        policy
    };
    match detector.apply(&text, &policy) {
        Ok(r) => {
            print!("{}", r.text);
            for (k, n) in &r.counts {
                eprintln!("{k}: {n}");
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        Err(e @ guard::GuardError::Blocked { .. }) => {
            eprintln!("{e}");
            Ok(std::process::ExitCode::from(2))
        }
        Err(e) => Err(e.into()),
    }
}
