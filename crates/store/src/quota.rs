//! Per-key quotas counted in the store, so every server process on one store shares them.
//!
//! Windows are fixed and in UTC: the minute (requests, tokens) and the day (cost). A request
//! is admitted when, at its start, the key's tokens this minute and cost today are under their
//! limits, and its request is counted (atomically, with the limit in the same statement, so
//! concurrent requests on any number of processes never admit more than `rpm` in a minute).
//! Its tokens and cost are added when it ends ([`Store::quota_charge`]), so the token and cost
//! limits can be overshot by what the requests already in flight use. A fixed window also lets
//! up to twice a per-minute limit through around a minute boundary.

use crate::keys::KeyLimits;
use crate::{Store, StoreError};
use serde::Serialize;
use sqlx::Row;

pub(crate) const QUOTA_SCHEMA: &[&str] = &["CREATE TABLE IF NOT EXISTS key_usage (
        key_id TEXT NOT NULL, window_kind TEXT NOT NULL, window_start BIGINT NOT NULL,
        requests BIGINT NOT NULL, tokens BIGINT NOT NULL, cost_usd DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (key_id, window_kind, window_start)
    )"];

const MINUTE: i64 = 60;
const DAY: i64 = 86_400;

/// Whether a request may start.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    Admitted,
    /// Over `limit` (e.g. `requests per minute`) until its window ends, `retry_after_s` from now.
    Refused {
        limit: &'static str,
        retry_after_s: u64,
    },
}

/// A key's use in the current windows.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Usage {
    /// Requests admitted this minute (counted only for keys with a requests-per-minute limit).
    pub requests_minute: i64,
    pub tokens_minute: i64,
    pub cost_day_usd: f64,
}

fn windows(now_s: i64) -> (i64, i64) {
    (now_s - now_s.rem_euclid(MINUTE), now_s - now_s.rem_euclid(DAY))
}

impl Store {
    /// The key's use in the windows holding `now_s` (seconds since the Unix epoch).
    pub async fn quota_usage(&self, key_id: &str, now_s: i64) -> Result<Usage, StoreError> {
        let (minute, day) = windows(now_s);
        let rows = sqlx::query(
            "SELECT window_kind, requests, tokens, cost_usd FROM key_usage
             WHERE key_id = $1 AND ((window_kind = 'minute' AND window_start = $2) OR (window_kind = 'day' AND window_start = $3))",
        )
        .bind(key_id)
        .bind(minute)
        .bind(day)
        .fetch_all(self.pool())
        .await?;
        let mut u = Usage::default();
        for r in &rows {
            if r.try_get::<String, _>("window_kind")? == "minute" {
                u.requests_minute = r.try_get("requests")?;
                u.tokens_minute = r.try_get("tokens")?;
            } else {
                u.cost_day_usd = r.try_get("cost_usd")?;
            }
        }
        Ok(u)
    }

    /// Admit a request of `key_id` at `now_s` under `limits` (see the module docs), counting it
    /// when admitted and `limits.rpm` is set. No limits: admitted without touching the store.
    pub async fn quota_admit(&self, key_id: &str, limits: &KeyLimits, now_s: i64) -> Result<Admission, StoreError> {
        if limits.is_empty() {
            return Ok(Admission::Admitted);
        }
        let (minute, day) = windows(now_s);
        let to_minute_end = (minute + MINUTE - now_s).max(1) as u64;
        if limits.tpm.is_some() || limits.daily_usd.is_some() {
            let used = self.quota_usage(key_id, now_s).await?;
            if limits.tpm.is_some_and(|n| used.tokens_minute >= n) {
                return Ok(Admission::Refused {
                    limit: "tokens per minute",
                    retry_after_s: to_minute_end,
                });
            }
            if limits.daily_usd.is_some_and(|x| used.cost_day_usd >= x) {
                return Ok(Admission::Refused {
                    limit: "USD per day",
                    retry_after_s: (day + DAY - now_s).max(1) as u64,
                });
            }
        }
        if let Some(rpm) = limits.rpm {
            // Counted only while under the limit: the row comes back only if it was written.
            let counted: Option<i64> = sqlx::query_scalar(
                "INSERT INTO key_usage (key_id, window_kind, window_start, requests, tokens, cost_usd) VALUES ($1, 'minute', $2, 1, 0, 0)
                 ON CONFLICT (key_id, window_kind, window_start) DO UPDATE SET requests = key_usage.requests + 1
                 WHERE key_usage.requests < $3 RETURNING requests",
            )
            .bind(key_id)
            .bind(minute)
            .bind(rpm)
            .fetch_optional(self.pool())
            .await?;
            if counted.is_none() {
                return Ok(Admission::Refused {
                    limit: "requests per minute",
                    retry_after_s: to_minute_end,
                });
            }
        }
        Ok(Admission::Admitted)
    }

    /// Add what a finished request or task run used to its key's windows at `now_s`.
    pub async fn quota_charge(&self, key_id: &str, tokens: i64, cost_usd: f64, now_s: i64) -> Result<(), StoreError> {
        let cost = if cost_usd.is_finite() { cost_usd.max(0.0) } else { 0.0 };
        let tokens = tokens.max(0);
        if tokens == 0 && cost == 0.0 {
            return Ok(());
        }
        let (minute, day) = windows(now_s);
        sqlx::query(
            "INSERT INTO key_usage (key_id, window_kind, window_start, requests, tokens, cost_usd)
             VALUES ($1, 'minute', $2, 0, $3, 0), ($1, 'day', $4, 0, 0, $5)
             ON CONFLICT (key_id, window_kind, window_start)
             DO UPDATE SET tokens = key_usage.tokens + excluded.tokens, cost_usd = key_usage.cost_usd + excluded.cost_usd",
        )
        .bind(key_id)
        .bind(minute)
        .bind(tokens)
        .bind(day)
        .bind(cost)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Delete windows that can no longer matter at `now_s`: minutes older than an hour, days
    /// older than two. Returns the rows deleted.
    pub async fn quota_prune(&self, now_s: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query("DELETE FROM key_usage WHERE (window_kind = 'minute' AND window_start < $1) OR (window_kind = 'day' AND window_start < $2)")
            .bind(now_s - 3600)
            .bind(now_s - 2 * DAY)
            .execute(self.pool())
            .await?
            .rows_affected())
    }
}
