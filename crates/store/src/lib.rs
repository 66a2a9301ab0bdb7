//! # store — durable records
//!
//! Why: keys, task runs and the audit trail must survive restarts and be shared by every
//! instance. SQLite (embedded, one file, nothing to run) is the default; a `postgres://` URL
//! switches to Postgres when more than one instance serves. Both go through `sqlx`'s `Any`
//! driver with portable SQL, so one code path is tested on both.

mod audit;
mod evals;
mod keys;
mod quota;
mod runs;
mod shadow;

pub use audit::{
    canonical_json, chain_hash, content_hash, now_ms, AuditEntry, AuditLine, AuditRecord, BadRecord, VerifyReport,
    GENESIS_HASH,
};
pub use evals::EvalRunRecord;
pub use keys::{hash_secret, ApiKey, KeyLimits, KeyScope, NewKey};
pub use quota::{Admission, Usage};
pub use runs::{day_of, DayStats, RunRecord};
pub use shadow::{DriftRule, DriftSummary, ReevalRecord, ShadowDay, ShadowRecord};

use sqlx::any::AnyPoolOptions;
use sqlx::{Any, AnyPool, Transaction};
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
    #[error("an active API key is already named `{0}`: choose another name, or revoke that key first")]
    DuplicateName(String),
    #[error("audit record {seq} already exists beyond the chain head ({head}): it was written outside rightsize; run `rightsize audit verify`")]
    AuditBeyondHead { seq: i64, head: i64 },
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

const SCHEMA: &[&str] = &["CREATE TABLE IF NOT EXISTS api_keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        prefix TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        scopes TEXT NOT NULL,
        priority TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        revoked_at BIGINT
    )"];

impl Store {
    /// Open (and create/migrate) the store. `target` is a `postgres://` URL, a `sqlite:` URL,
    /// or a plain file path for SQLite. Safe when several processes open one store at once:
    /// the schema is created and upgraded under a lock (see [`migrate`]).
    pub async fn open(target: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let url = if target.starts_with("postgres://")
            || target.starts_with("postgresql://")
            || target.starts_with("sqlite:")
        {
            target.to_owned()
        } else {
            if let Some(dir) = Path::new(target).parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| StoreError::Open {
                    url: target.into(),
                    source: sqlx::Error::Io(e),
                })?;
            }
            format!("sqlite://{target}?mode=rwc")
        };
        let pool = AnyPoolOptions::new()
            .max_connections(if url.starts_with("sqlite") { 1 } else { 8 })
            .connect(&url)
            .await
            .map_err(|source| StoreError::Open {
                url: target.into(),
                source,
            })?;
        let postgres = url.starts_with("postgres");
        if !postgres {
            // Switching to WAL needs an exclusive lock that SQLite's busy timeout does not wait
            // for: another process opening the same new file at once makes it fail, so retry.
            busy_retry(|| async { sqlx::query("PRAGMA journal_mode=WAL").execute(&pool).await.map(|_| ()) }).await?;
            sqlx::query("PRAGMA synchronous=FULL").execute(&pool).await?;
        }
        busy_retry(|| migrate(&pool, postgres)).await?;
        Ok(Self { pool, url })
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn is_postgres(&self) -> bool {
        self.url.starts_with("postgres")
    }
}

/// Arbitrary, fixed: the Postgres advisory lock that serialises schema changes.
const SCHEMA_LOCK: i64 = 7_596_553_827_186_419_322;

/// Create and upgrade the schema in one transaction that holds a lock, so processes starting
/// together on one store (or several test binaries on one Postgres) take turns instead of
/// racing `CREATE TABLE IF NOT EXISTS` (Postgres: a duplicate key in `pg_type`) or half-applied
/// upgrades. Postgres: a transaction-scoped advisory lock; SQLite: `BEGIN IMMEDIATE` (the write
/// lock, waited for with the busy timeout; [`busy_retry`] retries past it).
///
/// Two parts: the baseline (every `CREATE … IF NOT EXISTS` and added column, idempotent: what
/// stores made by releases before `schema_version` already have, so those open and upgrade),
/// then the versioned [`MIGRATIONS`] above the number recorded in `schema_version`, each once.
async fn migrate(pool: &AnyPool, postgres: bool) -> Result<(), StoreError> {
    let mut tx = if postgres {
        pool.begin().await?
    } else {
        pool.begin_with("BEGIN IMMEDIATE").await?
    };
    if postgres {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(SCHEMA_LOCK)
            .execute(&mut *tx)
            .await?;
    }
    for stmt in SCHEMA.iter().chain(runs::RUNS_SCHEMA) {
        sqlx::query(stmt).execute(&mut *tx).await?;
    }
    for stmt in audit::AUDIT_SCHEMA
        .iter()
        .chain(shadow::SHADOW_SCHEMA)
        .chain(evals::EVALS_SCHEMA)
    {
        sqlx::query(stmt).execute(&mut *tx).await?;
    }
    for (table, column, ty) in runs::RUNS_COLUMNS {
        add_column(&mut tx, postgres, table, column, ty).await?;
    }
    sqlx::query("CREATE TABLE IF NOT EXISTS schema_version (id INTEGER PRIMARY KEY, version BIGINT NOT NULL)")
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO schema_version (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING")
        .execute(&mut *tx)
        .await?;
    let at: i64 = sqlx::query_scalar("SELECT version FROM schema_version WHERE id = 1")
        .fetch_one(&mut *tx)
        .await?;
    let latest = MIGRATIONS.len() as i64;
    if at > latest {
        return Err(StoreError::Invalid(format!(
            "the store's schema is version {at}, newer than this release knows ({latest}): upgrade rightsize"
        )));
    }
    for (n, step) in MIGRATIONS.iter().enumerate().skip(at as usize) {
        tracing::info!(version = n + 1, "store: applying schema migration");
        step.apply(&mut tx, postgres).await?;
    }
    if at < latest {
        sqlx::query("UPDATE schema_version SET version = $1 WHERE id = 1")
            .bind(latest)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// One versioned schema change. Append new ones at the end; never change one that shipped.
enum Migration {
    /// Statements run in order.
    Sql(&'static [&'static str]),
    /// Columns added to a table.
    Columns(&'static [(&'static str, &'static str, &'static str)]),
    /// 1: at most one active key per name (older stores may hold duplicates: see the fn).
    UniqueActiveKeyNames,
}

/// Versioned changes; `schema_version.version` = how many have been applied.
const MIGRATIONS: &[Migration] = &[
    Migration::UniqueActiveKeyNames,
    Migration::Columns(keys::LIMIT_COLUMNS),
    Migration::Sql(quota::QUOTA_SCHEMA),
];

impl Migration {
    async fn apply(&self, tx: &mut Transaction<'static, Any>, postgres: bool) -> Result<(), StoreError> {
        match self {
            Migration::Sql(stmts) => {
                for stmt in *stmts {
                    sqlx::query(stmt).execute(&mut **tx).await?;
                }
            }
            Migration::Columns(cols) => {
                for (table, column, ty) in *cols {
                    add_column(tx, postgres, table, column, ty).await?;
                }
            }
            Migration::UniqueActiveKeyNames => keys::unique_active_names(tx).await?,
        }
        Ok(())
    }
}

/// Retry `f` while SQLite reports the database busy or locked (another process holds the
/// write lock past the busy timeout), for up to a minute.
async fn busy_retry<F, Fut, E>(mut f: F) -> Result<(), StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: Into<StoreError>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match f().await.map_err(Into::into) {
            Err(StoreError::Query(sqlx::Error::Database(e)))
                if is_busy(e.as_ref()) && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(20 + rand::random::<u64>() % 80)).await;
            }
            r => return r,
        }
    }
}

/// SQLITE_BUSY (5) or SQLITE_LOCKED (6), with or without an extended code.
fn is_busy(e: &dyn sqlx::error::DatabaseError) -> bool {
    let code = e.code().and_then(|c| c.parse::<i64>().ok()).unwrap_or(0);
    matches!(code & 0xff, 5 | 6) || e.message().contains("database is locked")
}

/// `ALTER TABLE .. ADD COLUMN` when the column is missing (stores made by older releases).
async fn add_column(
    tx: &mut Transaction<'static, Any>,
    postgres: bool,
    table: &str,
    column: &str,
    ty: &str,
) -> Result<(), StoreError> {
    if postgres {
        sqlx::query(&format!("ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {ty}"))
            .execute(&mut **tx)
            .await?;
        return Ok(());
    }
    let have: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pragma_table_info($1) WHERE name = $2")
        .bind(table)
        .bind(column)
        .fetch_one(&mut **tx)
        .await?;
    if have == 0 {
        sqlx::query(&format!("ALTER TABLE {table} ADD COLUMN {column} {ty}"))
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
