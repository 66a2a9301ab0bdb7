//! API keys. The secret is shown once at creation; only its SHA-256 is stored (secrets are
//! 256 random bits, so a fast hash is enough: there is nothing to brute-force).

use crate::{now_secs, Store, StoreError};
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{Any, Row, Transaction};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyScope {
    Inference,
    Admin,
}

/// A stored key (never the secret).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    /// First characters of the secret, to recognise it in lists.
    pub prefix: String,
    pub scopes: Vec<KeyScope>,
    /// Default priority class of the key's requests: `interactive` or `batch`.
    pub priority: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    /// The key's guardrail policy (JSON of `guard::Guardrails`, opaque here): applied to its
    /// requests and, field by field under each task's own `[guardrails]`, to its task runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guard: Option<String>,
    /// Per-key quotas (none by default), counted in the store (see `Store::quota_admit`).
    pub limits: KeyLimits,
}

/// A key's quotas; `None` is no limit. Counted per fixed window: the UTC minute for requests
/// and tokens, the UTC day for cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct KeyLimits {
    /// Requests per minute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpm: Option<i64>,
    /// Tokens (prompt + completion) per minute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tpm: Option<i64>,
    /// Cost (USD, as recorded for each request and task run) per UTC day.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daily_usd: Option<f64>,
}

impl KeyLimits {
    pub fn is_empty(&self) -> bool {
        self.rpm.is_none() && self.tpm.is_none() && self.daily_usd.is_none()
    }

    /// Limits must be at least 1 (rpm, tpm) or a positive finite amount (USD).
    pub fn check(&self) -> Result<(), StoreError> {
        if self.rpm.is_some_and(|n| n < 1) || self.tpm.is_some_and(|n| n < 1) {
            return Err(StoreError::Invalid(
                "requests and tokens per minute must be at least 1".into(),
            ));
        }
        if self.daily_usd.is_some_and(|x| !(x.is_finite() && x > 0.0)) {
            return Err(StoreError::Invalid(
                "the daily cost limit must be a positive number of USD".into(),
            ));
        }
        Ok(())
    }
}

/// The quota columns (schema migration 2).
pub(crate) const LIMIT_COLUMNS: &[(&str, &str, &str)] = &[
    ("api_keys", "limit_rpm", "BIGINT"),
    ("api_keys", "limit_tpm", "BIGINT"),
    ("api_keys", "limit_daily_usd", "DOUBLE PRECISION"),
];

const KEY_COLUMNS: &str =
    "id, name, prefix, scopes, priority, created_at, revoked_at, guard, limit_rpm, limit_tpm, limit_daily_usd";

/// Schema migration 1: at most one active (not revoked) key per name, enforced by a unique
/// partial index so that two concurrent `create_key`s cannot both win. Stores made before it
/// may hold several active keys with one name: the oldest keeps it, the others are renamed
/// `<name>-<id>` (logged) — they still work, and ids never change.
pub(crate) async fn unique_active_names(tx: &mut Transaction<'static, Any>) -> Result<(), StoreError> {
    let rows = sqlx::query(
        "SELECT id, name FROM api_keys k WHERE revoked_at IS NULL AND EXISTS (SELECT 1 FROM api_keys o WHERE o.name = k.name AND o.revoked_at IS NULL
         AND (o.created_at < k.created_at OR (o.created_at = k.created_at AND o.id < k.id)))",
    )
    .fetch_all(&mut **tx)
    .await?;
    for r in &rows {
        let (id, name): (String, String) = (r.try_get("id")?, r.try_get("name")?);
        let renamed = format!("{name}-{id}");
        tracing::warn!(key = %id, from = %name, to = %renamed, "two active API keys shared a name: renamed the newer one");
        sqlx::query("UPDATE api_keys SET name = $1 WHERE id = $2")
            .bind(&renamed)
            .bind(&id)
            .execute(&mut **tx)
            .await?;
    }
    sqlx::query("CREATE UNIQUE INDEX IF NOT EXISTS api_keys_active_name ON api_keys (name) WHERE revoked_at IS NULL")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

impl ApiKey {
    pub fn has(&self, s: KeyScope) -> bool {
        self.scopes.contains(&s)
    }
}

/// A key just created, with its secret (shown once).
#[derive(Debug, Clone)]
pub struct NewKey {
    pub key: ApiKey,
    pub secret: String,
}

pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn parse_scopes(s: &str) -> Vec<KeyScope> {
    s.split(',')
        .filter_map(|x| match x.trim() {
            "inference" => Some(KeyScope::Inference),
            "admin" => Some(KeyScope::Admin),
            _ => None,
        })
        .collect()
}

fn row_to_key(r: &sqlx::any::AnyRow) -> Result<ApiKey, sqlx::Error> {
    Ok(ApiKey {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        prefix: r.try_get("prefix")?,
        scopes: parse_scopes(&r.try_get::<String, _>("scopes")?),
        priority: r.try_get("priority")?,
        created_at: r.try_get("created_at")?,
        revoked_at: r.try_get("revoked_at")?,
        guard: r.try_get("guard")?,
        limits: KeyLimits {
            rpm: r.try_get("limit_rpm")?,
            tpm: r.try_get("limit_tpm")?,
            daily_usd: r.try_get("limit_daily_usd")?,
        },
    })
}

impl Store {
    /// Create a key. `scopes` must not be empty; `priority` is `interactive` or `batch`.
    pub async fn create_key(&self, name: &str, scopes: &[KeyScope], priority: &str) -> Result<NewKey, StoreError> {
        if scopes.is_empty() {
            return Err(StoreError::Invalid("a key needs at least one scope".into()));
        }
        if !matches!(priority, "interactive" | "batch") {
            return Err(StoreError::Invalid(format!(
                "priority `{priority}` is not interactive or batch"
            )));
        }
        let mut raw = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut raw);
        let secret = format!("rsk-{}", hex::encode(raw));
        let mut id_raw = [0u8; 6];
        rand::thread_rng().fill_bytes(&mut id_raw);
        let key = ApiKey {
            id: format!("key_{}", hex::encode(id_raw)),
            name: name.to_owned(),
            prefix: secret[..10].to_owned(),
            scopes: scopes.to_vec(),
            priority: priority.to_owned(),
            created_at: now_secs(),
            revoked_at: None,
            guard: None,
            limits: KeyLimits::default(),
        };
        let scopes_s = scopes
            .iter()
            .map(|s| if *s == KeyScope::Admin { "admin" } else { "inference" })
            .collect::<Vec<_>>()
            .join(",");
        sqlx::query("INSERT INTO api_keys (id, name, prefix, hash, scopes, priority, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(&key.id)
            .bind(&key.name)
            .bind(&key.prefix)
            .bind(hash_secret(&secret))
            .bind(scopes_s)
            .bind(&key.priority)
            .bind(key.created_at)
            .execute(self.pool())
            .await
            .map_err(|e| match e {
                // The unique index on active names (the only one a fresh random id and hash meet).
                sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::DuplicateName(name.to_owned()),
                e => e.into(),
            })?;
        Ok(NewKey { key, secret })
    }

    pub async fn list_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, id"))
            .fetch_all(self.pool())
            .await?;
        Ok(rows.iter().map(row_to_key).collect::<Result<_, _>>()?)
    }

    /// Revoke by id or name.
    pub async fn revoke_key(&self, id_or_name: &str) -> Result<ApiKey, StoreError> {
        // Names are reused once a key is revoked: pick the active one, then revoke it by id.
        let active = self
            .list_keys()
            .await?
            .into_iter()
            .find(|k| (k.id == id_or_name || k.name == id_or_name) && k.revoked_at.is_none());
        let Some(mut key) = active else {
            return Err(StoreError::NoSuchKey(id_or_name.to_owned()));
        };
        let at = now_secs();
        let n = sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(at)
            .bind(&key.id)
            .execute(self.pool())
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NoSuchKey(id_or_name.to_owned()));
        }
        key.revoked_at = Some(at);
        Ok(key)
    }

    /// Set (or with `None` clear) a key's guardrail policy, by id or name. The caller
    /// validates `policy` (JSON); the server picks it up at its next key refresh.
    pub async fn set_key_guard(&self, id_or_name: &str, policy: Option<&str>) -> Result<(), StoreError> {
        let n = sqlx::query("UPDATE api_keys SET guard = $1 WHERE (id = $2 OR name = $3) AND revoked_at IS NULL")
            .bind(policy.map(str::to_owned))
            .bind(id_or_name)
            .bind(id_or_name)
            .execute(self.pool())
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NoSuchKey(id_or_name.to_owned()));
        }
        Ok(())
    }

    /// Set a key's quotas (by id or name), replacing all three (`None`: no limit). The server
    /// picks them up at its next key refresh.
    pub async fn set_key_limits(&self, id_or_name: &str, limits: KeyLimits) -> Result<(), StoreError> {
        limits.check()?;
        let n = sqlx::query("UPDATE api_keys SET limit_rpm = $1, limit_tpm = $2, limit_daily_usd = $3 WHERE (id = $4 OR name = $5) AND revoked_at IS NULL")
            .bind(limits.rpm)
            .bind(limits.tpm)
            .bind(limits.daily_usd)
            .bind(id_or_name)
            .bind(id_or_name)
            .execute(self.pool())
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NoSuchKey(id_or_name.to_owned()));
        }
        Ok(())
    }

    /// Active keys by secret hash (the server keeps these in memory and refreshes them).
    pub async fn active_keys(&self) -> Result<Vec<(String, ApiKey)>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT hash, {KEY_COLUMNS} FROM api_keys WHERE revoked_at IS NULL"
        ))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get::<String, _>("hash")?, row_to_key(r)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Every key, revoked ones too, by secret hash: the server's key cache must know revoked
    /// keys to refuse them where unknown bearers pass (open local mode).
    pub async fn keys_by_hash(&self) -> Result<Vec<(String, ApiKey)>, StoreError> {
        let rows = sqlx::query(&format!("SELECT hash, {KEY_COLUMNS} FROM api_keys"))
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get::<String, _>("hash")?, row_to_key(r)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// The active key for a presented secret.
    pub async fn verify_key(&self, secret: &str) -> Result<Option<ApiKey>, StoreError> {
        let h = hash_secret(secret);
        Ok(self
            .active_keys()
            .await?
            .into_iter()
            .find(|(hash, _)| *hash == h)
            .map(|(_, k)| k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn temp_store() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path().join("sub/rs.db").to_str().unwrap())
            .await
            .unwrap();
        (s, dir)
    }

    #[tokio::test]
    async fn keys_are_stored_hashed_and_verify() {
        let (s, dir) = temp_store().await;
        let k = s.create_key("ci", &[KeyScope::Inference], "batch").await.unwrap();
        assert!(k.secret.starts_with("rsk-") && k.secret.len() == 68);
        assert_eq!(s.verify_key(&k.secret).await.unwrap().unwrap().id, k.key.id);
        assert!(s.verify_key("rsk-wrong").await.unwrap().is_none());
        // The secret itself is nowhere in the database file.
        drop(s);
        let bytes = std::fs::read(dir.path().join("sub/rs.db")).unwrap();
        let wal = std::fs::read(dir.path().join("sub/rs.db-wal")).unwrap_or_default();
        let hay = [bytes, wal].concat();
        assert!(!hay.windows(k.secret.len()).any(|w| w == k.secret.as_bytes()));
        assert!(hay.windows(64).any(|w| w == hash_secret(&k.secret).as_bytes()));
    }

    #[tokio::test]
    async fn revoked_keys_stop_verifying() {
        let (s, _d) = temp_store().await;
        let a = s
            .create_key("a", &[KeyScope::Inference, KeyScope::Admin], "interactive")
            .await
            .unwrap();
        let b = s.create_key("b", &[KeyScope::Inference], "interactive").await.unwrap();
        let revoked = s.revoke_key("a").await.unwrap();
        assert!(revoked.revoked_at.is_some());
        let all = s.keys_by_hash().await.unwrap();
        assert_eq!(all.len(), 2);
        assert!(all
            .iter()
            .any(|(h, k)| *h == hash_secret(&a.secret) && k.revoked_at.is_some()));
        assert!(all
            .iter()
            .any(|(h, k)| *h == hash_secret(&b.secret) && k.revoked_at.is_none()));
        assert!(s.verify_key(&a.secret).await.unwrap().is_none());
        assert!(s.verify_key(&b.secret).await.unwrap().is_some());
        assert!(matches!(s.revoke_key("a").await, Err(StoreError::NoSuchKey(_))));
        let all = s.list_keys().await.unwrap();
        assert_eq!(all.len(), 2);
        assert!(all.iter().find(|k| k.name == "a").unwrap().has(KeyScope::Admin));
        assert!(!all.iter().find(|k| k.name == "b").unwrap().has(KeyScope::Admin));
        s.set_key_guard("b", Some("{\"pii\":\"redact\"}")).await.unwrap();
        assert_eq!(
            s.verify_key(&b.secret).await.unwrap().unwrap().guard.as_deref(),
            Some("{\"pii\":\"redact\"}")
        );
        assert!(
            matches!(s.set_key_guard("a", None).await, Err(StoreError::NoSuchKey(_))),
            "revoked keys cannot be changed"
        );
    }

    #[tokio::test]
    async fn bad_input_is_refused() {
        let (s, _d) = temp_store().await;
        assert!(matches!(
            s.create_key("x", &[], "interactive").await,
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            s.create_key("x", &[KeyScope::Admin], "urgent").await,
            Err(StoreError::Invalid(_))
        ));
        assert!(Store::open("/proc/nope/rs.db").await.is_err());
    }
}
