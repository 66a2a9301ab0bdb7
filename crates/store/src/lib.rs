//! # store — durable records
//!
//! Why: keys, task runs and the audit trail must survive restarts and be shared by every
//! instance. SQLite (embedded, one file, nothing to run) is the default; a `postgres://` URL
//! switches to Postgres when more than one instance serves. Both go through `sqlx`'s `Any`
//! driver with portable SQL, so one code path is tested on both.

mod audit;
mod evals;
mod keys;
mod runs;
mod shadow;

pub use audit::{canonical_json, chain_hash, content_hash, now_ms, AuditEntry, AuditLine, AuditRecord, BadRecord, VerifyReport, GENESIS_HASH};
pub use keys::{hash_secret, ApiKey, KeyScope, NewKey};
pub use runs::{day_of, DayStats, RunRecord};
pub use evals::EvalRunRecord;
pub use shadow::{DriftRule, DriftSummary, ReevalRecord, ShadowDay, ShadowRecord};

use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store at {url}: {source}")]
    Open { url: String, source: sqlx::Error },
    #[error("store query failed: {0}")]
    Query(#[from] sqlx::Error),
    #[error("no API key matches `{0}`")]
    NoSuchKey(String),
    #[error("invalid value: {0}")]
    Invalid(String),
}

/// A handle to the store (cheap to clone).
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    url: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print credentials that may be in a postgres URL.
        let shown = self.url.split('@').next_back().unwrap_or("");
        f.debug_struct("Store").field("at", &shown).finish()
    }
}

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS api_keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        prefix TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        scopes TEXT NOT NULL,
        priority TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        revoked_at BIGINT
    )",
];

impl Store {
    /// Open (and create/migrate) the store. `target` is a `postgres://` URL, a `sqlite:` URL,
    /// or a plain file path for SQLite.
    pub async fn open(target: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let url = if target.starts_with("postgres://") || target.starts_with("postgresql://") || target.starts_with("sqlite:") {
            target.to_owned()
        } else {
            if let Some(dir) = Path::new(target).parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| StoreError::Open { url: target.into(), source: sqlx::Error::Io(e) })?;
            }
            format!("sqlite://{target}?mode=rwc")
        };
        let pool = AnyPoolOptions::new()
            .max_connections(if url.starts_with("sqlite") { 1 } else { 8 })
            .connect(&url)
            .await
            .map_err(|source| StoreError::Open { url: target.into(), source })?;
        if url.starts_with("sqlite") {
            sqlx::query("PRAGMA journal_mode=WAL").execute(&pool).await?;
            sqlx::query("PRAGMA synchronous=FULL").execute(&pool).await?;
        }
        for stmt in SCHEMA.iter().chain(runs::RUNS_SCHEMA) {
            sqlx::query(stmt).execute(&pool).await?;
        }
        for stmt in audit::AUDIT_SCHEMA.iter().chain(shadow::SHADOW_SCHEMA).chain(evals::EVALS_SCHEMA) {
            sqlx::query(stmt).execute(&pool).await?;
        }
        let postgres = url.starts_with("postgres");
        for (table, column, ty) in runs::RUNS_COLUMNS {
            add_column(&pool, postgres, table, column, ty).await?;
        }
        Ok(Self { pool, url })
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn is_postgres(&self) -> bool {
        self.url.starts_with("postgres")
    }
}

/// `ALTER TABLE .. ADD COLUMN` when the column is missing (stores made by older releases).
async fn add_column(pool: &AnyPool, postgres: bool, table: &str, column: &str, ty: &str) -> Result<(), StoreError> {
    if postgres {
        sqlx::query(&format!("ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {ty}")).execute(pool).await?;
        return Ok(());
    }
    match sqlx::query(&format!("ALTER TABLE {table} ADD COLUMN {column} {ty}")).execute(pool).await {
        Err(e) if e.to_string().contains("duplicate column") => Ok(()),
        r => r.map(|_| ()).map_err(StoreError::from),
    }
}

pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}
