//! `rightsize audit verify|export|prune`: the hash-chained audit log the server writes (one
//! record per request and task run; see `server::audit`).

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::io::Write;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub cmd: AuditCmd,
}

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Check the hash chain; exits non-zero naming the first changed, removed or reordered record.
    Verify {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArg,
    },
    /// Write the records as JSON lines (with seq, prev_hash, hash), oldest first.
    Export {
        /// Only records at or after this time (milliseconds since the Unix epoch).
        #[arg(long)]
        since_ms: Option<i64>,
        /// Write to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArg,
    },
    /// Delete records older than N days (the server also does this hourly, per
    /// `audit.retention_days`). Verifies the chain first and refuses when it is broken.
    Prune {
        #[arg(long)]
        older_than_days: u32,
        #[command(flatten)]
        store: StoreArg,
    },
    /// Print the keyed hash the server stores for a text under `audit.content = "hashes"`
    /// (HMAC-SHA256 with the server key), to check a record against a request you hold.
    Hash {
        /// The text (default: stdin, as is).
        text: Option<String>,
        /// The server key file (default: the config's `audit.key_file`, else <cache>/server.key).
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// Server config whose `audit.key_file` to use.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Args, Debug, Clone)]
pub struct StoreArg {
    /// Store (SQLite file or postgres:// URL; default `<cache>/rightsize.db`).
    #[arg(long)]
    pub store: Option<String>,
}

impl StoreArg {
    async fn open(&self) -> Result<store::Store> {
        let at = self.store.clone().unwrap_or_else(|| {
            supply::Cache::from_env()
                .root()
                .join("rightsize.db")
                .display()
                .to_string()
        });
        // Never create an empty store by mistake: a typo would otherwise "verify" fine.
        let is_url = at.starts_with("postgres://") || at.starts_with("postgresql://") || at.starts_with("sqlite:");
        if !is_url && !std::path::Path::new(&at).exists() {
            bail!("no store at {at} (pass --store)");
        }
        store::Store::open(&at)
            .await
            .with_context(|| format!("opening the store at {at}"))
    }
}

pub fn audit(a: AuditArgs) -> Result<()> {
    if let AuditCmd::Hash { text, key_file, config } = &a.cmd {
        let cfg = server::ServerConfig::load(config.as_deref())?;
        let path = key_file
            .clone()
            .unwrap_or_else(|| server::secret::key_path(&cfg, supply::Cache::from_env().root()));
        if !path.exists() {
            bail!(
                "no server key at {} (the server creates it on its first start; pass --key-file)",
                path.display()
            );
        }
        let key = server::secret::ServerSecret::load_or_create(&path)?;
        let text = match text {
            Some(t) => t.clone(),
            None => std::io::read_to_string(std::io::stdin())?,
        };
        println!("{}", key.content_hash(&text));
        return Ok(());
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        match a.cmd {
            AuditCmd::Verify { json, store } => {
                let s = store.open().await?;
                let rep = s.audit_verify().await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&rep)?);
                } else {
                    print_report(&rep);
                }
                if let Some(b) = &rep.first_bad {
                    bail!("the audit chain is broken at record {}: {}", b.seq, b.reason);
                }
                Ok(())
            }
            AuditCmd::Export { since_ms, out, store } => {
                let s = store.open().await?;
                let n = match &out {
                    Some(path) => {
                        let f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
                        let mut w = std::io::BufWriter::new(f);
                        let n = s.audit_export(&mut w, since_ms).await?;
                        w.into_inner().map_err(|e| e.into_error()).and_then(|f| f.sync_all()).with_context(|| format!("writing {}", path.display()))?;
                        n
                    }
                    None => {
                        let stdout = std::io::stdout();
                        let mut w = std::io::BufWriter::new(stdout.lock());
                        let n = s.audit_export(&mut w, since_ms).await?;
                        w.flush()?;
                        n
                    }
                };
                eprintln!("exported {n} audit records{}", out.map(|p| format!(" to {}", p.display())).unwrap_or_default());
                Ok(())
            }
            AuditCmd::Hash { .. } => unreachable!("answered above"),
            AuditCmd::Prune { older_than_days, store } => {
                let s = store.open().await?;
                let rep = s.audit_verify().await?;
                if let Some(b) = &rep.first_bad {
                    print_report(&rep);
                    bail!("refusing to prune: the audit chain is broken at record {}: {} (pruning could delete the evidence)", b.seq, b.reason);
                }
                let cutoff = store::now_ms() - i64::from(older_than_days) * 86_400_000;
                let n = s.audit_prune(cutoff).await?;
                println!("pruned {n} audit records older than {older_than_days} days");
                Ok(())
            }
        }
    })
}

fn print_report(rep: &store::VerifyReport) {
    match &rep.first_bad {
        None => {
            println!(
                "audit chain OK: {} records (seq {}..={}, anchor {})",
                rep.records,
                rep.anchor_seq + 1,
                rep.head_seq,
                rep.anchor_seq
            );
            println!("head {} {}", rep.head_seq, rep.head_hash);
        }
        Some(b) => {
            println!("audit chain BROKEN: first bad record seq {}: {}", b.seq, b.reason);
            println!(
                "{} records before it verified (after anchor {})",
                rep.records, rep.anchor_seq
            );
        }
    }
}
