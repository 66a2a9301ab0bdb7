//! Continuous evaluation records: shadow runs and scheduled re-evaluations.
//!
//! Why: a task's thresholds are calibrated once, but what it serves drifts (a new task
//! version, a retrained head, a remote model that changed behind its name, new kinds of
//! input). Two signals catch that without labels on live traffic: the **agreement** between
//! the served answer and the top tier's answer to the same input (a shadow run), tracked per
//! task over a rolling window; and the **quality** of the served cascade on the task's stored
//! data set, re-measured on a schedule. Both are kept here so the server, `GET .../stats` and
//! `rightsize stats` judge drift from the same rows with the same rule ([`DriftRule`]).
//!
//! Nothing a user typed is stored: a shadow row holds ids, tiers, a score and a short error;
//! a re-eval row holds numbers and the data set's path and content hash.

use crate::{day_of, Store, StoreError};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;
use std::collections::BTreeMap;

pub(crate) const SHADOW_SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS shadow_runs (
        run_id TEXT PRIMARY KEY,
        ts_ms BIGINT NOT NULL,
        day TEXT NOT NULL,
        task TEXT NOT NULL,
        version BIGINT NOT NULL,
        served_tier TEXT NOT NULL,
        shadow_tier TEXT NOT NULL,
        agreement DOUBLE PRECISION,
        latency_ms DOUBLE PRECISION NOT NULL,
        cost_usd DOUBLE PRECISION NOT NULL,
        error TEXT
    )",
    "CREATE INDEX IF NOT EXISTS shadow_runs_task_ts ON shadow_runs (task, ts_ms)",
    "CREATE TABLE IF NOT EXISTS reevals (
        id TEXT PRIMARY KEY,
        ts_ms BIGINT NOT NULL,
        task TEXT NOT NULL,
        version BIGINT NOT NULL,
        dataset TEXT NOT NULL,
        dataset_hash TEXT NOT NULL,
        config TEXT NOT NULL,
        n BIGINT NOT NULL,
        quality DOUBLE PRECISION NOT NULL,
        summary TEXT NOT NULL,
        tiers TEXT NOT NULL,
        baseline_quality DOUBLE PRECISION,
        baseline_version BIGINT,
        alert BIGINT NOT NULL,
        reason TEXT,
        seconds DOUBLE PRECISION NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS reevals_task_ts ON reevals (task, ts_ms)",
];

/// One shadow run: a live run's answer compared with the top tier's answer to its inputs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ShadowRecord {
    /// The live run it shadows (`task_runs.id`, the audit trail's run).
    pub run_id: String,
    pub ts_ms: i64,
    pub task: String,
    pub version: i64,
    pub served_tier: String,
    pub shadow_tier: String,
    /// How well the served answer matches the shadow answer (0..1, scored as if the shadow
    /// answer were the expected one); `None` when the shadow run failed.
    pub agreement: Option<f64>,
    pub latency_ms: f64,
    pub cost_usd: f64,
    pub error: Option<String>,
}

/// One scheduled re-evaluation of a task's served cascade on its data set.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReevalRecord {
    pub id: String,
    pub ts_ms: i64,
    pub task: String,
    pub version: i64,
    /// The data set's path and the sha256 of its content (only equal hashes are compared).
    pub dataset: String,
    pub dataset_hash: String,
    /// The cascade measured, e.g. `classifier:minilm-l6@0.80 > local:qwen2.5-0.5b`.
    pub config: String,
    pub n: i64,
    pub quality: f64,
    /// The run's headline numbers (an `eval::RunSummary`), kept for the next comparison.
    pub summary: serde_json::Value,
    /// Quality of each tier alone (which tier moved, when the cascade did).
    pub tiers: BTreeMap<String, f64>,
    /// What it was compared with: the last re-eval that raised no alert.
    pub baseline_quality: Option<f64>,
    pub baseline_version: Option<i64>,
    pub alert: bool,
    pub reason: Option<String>,
    pub seconds: f64,
}

/// When shadow agreement counts as drift: the mean agreement of the last `window` scored
/// samples is below `min_agreement`, and the window holds at least `min_samples`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct DriftRule {
    pub window: usize,
    pub min_samples: usize,
    pub min_agreement: f64,
}

impl DriftRule {
    /// The reason for an alert, or `None` when the rolling agreement is fine (or too thin).
    pub fn judge(&self, task: &str, rolling_samples: usize, rolling: Option<f64>) -> Option<String> {
        let a = rolling?;
        (rolling_samples >= self.min_samples.max(1) && a < self.min_agreement).then(|| {
            format!(
                "{task}: shadow agreement {a:.3} over the last {rolling_samples} samples is below {:.3}",
                self.min_agreement
            )
        })
    }
}

/// Shadow samples of one task on one day.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ShadowDay {
    pub day: String,
    pub samples: u64,
    /// Shadow runs that failed (no agreement).
    pub errors: u64,
    /// Mean agreement of the day's scored samples.
    pub agreement: Option<f64>,
    pub cost_usd: f64,
}

/// A task's continuous-evaluation state, as `stats` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DriftSummary {
    pub task: String,
    pub samples: u64,
    pub days: Vec<ShadowDay>,
    pub window: usize,
    pub rolling_samples: usize,
    pub rolling_agreement: Option<f64>,
    pub min_agreement: f64,
    /// The newest re-evaluation, if any.
    pub reeval: Option<ReevalRecord>,
    pub drift_alert: bool,
    /// Why (one line per signal that fired).
    pub reasons: Vec<String>,
}

fn json_err(e: serde_json::Error) -> StoreError {
    StoreError::Invalid(e.to_string())
}

fn reeval_of(row: &AnyRow) -> Result<ReevalRecord, StoreError> {
    Ok(ReevalRecord {
        id: row.try_get("id")?,
        ts_ms: row.try_get("ts_ms")?,
        task: row.try_get("task")?,
        version: row.try_get("version")?,
        dataset: row.try_get("dataset")?,
        dataset_hash: row.try_get("dataset_hash")?,
        config: row.try_get("config")?,
        n: row.try_get("n")?,
        quality: row.try_get("quality")?,
        summary: serde_json::from_str(&row.try_get::<String, _>("summary")?).map_err(json_err)?,
        tiers: serde_json::from_str(&row.try_get::<String, _>("tiers")?).map_err(json_err)?,
        baseline_quality: row.try_get("baseline_quality")?,
        baseline_version: row.try_get("baseline_version")?,
        alert: row.try_get::<i64, _>("alert")? != 0,
        reason: row.try_get("reason")?,
        seconds: row.try_get("seconds")?,
    })
}

const REEVAL_COLS: &str = "id, ts_ms, task, version, dataset, dataset_hash, config, n, quality, summary, tiers, baseline_quality, baseline_version, alert, reason, seconds";

impl Store {
    pub async fn record_shadow(&self, r: &ShadowRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO shadow_runs (run_id, ts_ms, day, task, version, served_tier, shadow_tier, agreement, latency_ms, cost_usd, error)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&r.run_id)
        .bind(r.ts_ms)
        .bind(day_of(r.ts_ms))
        .bind(&r.task)
        .bind(r.version)
        .bind(&r.served_tier)
        .bind(&r.shadow_tier)
        .bind(r.agreement)
        .bind(r.latency_ms)
        .bind(r.cost_usd)
        .bind(r.error.clone())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Shadow runs of a task, newest first, at most `limit`.
    pub async fn shadow_runs(&self, task: &str, limit: i64) -> Result<Vec<ShadowRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT run_id, ts_ms, task, version, served_tier, shadow_tier, agreement, latency_ms, cost_usd, error
             FROM shadow_runs WHERE task = $1 ORDER BY ts_ms DESC, run_id LIMIT $2",
        )
        .bind(task)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ShadowRecord {
                    run_id: row.try_get("run_id")?,
                    ts_ms: row.try_get("ts_ms")?,
                    task: row.try_get("task")?,
                    version: row.try_get("version")?,
                    served_tier: row.try_get("served_tier")?,
                    shadow_tier: row.try_get("shadow_tier")?,
                    agreement: row.try_get("agreement")?,
                    latency_ms: row.try_get("latency_ms")?,
                    cost_usd: row.try_get("cost_usd")?,
                    error: row.try_get("error")?,
                })
            })
            .collect()
    }

    /// Mean agreement of the task's last `window` scored shadow samples, and how many there were.
    pub async fn shadow_rolling(&self, task: &str, window: usize) -> Result<(usize, Option<f64>), StoreError> {
        let rows = sqlx::query(
            "SELECT agreement FROM shadow_runs WHERE task = $1 AND agreement IS NOT NULL ORDER BY ts_ms DESC LIMIT $2",
        )
        .bind(task)
        .bind(window as i64)
        .fetch_all(self.pool())
        .await?;
        let xs: Vec<f64> = rows
            .iter()
            .map(|r| r.try_get::<f64, _>("agreement"))
            .collect::<Result<_, _>>()?;
        let mean = (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64);
        Ok((xs.len(), mean))
    }

    pub async fn record_reeval(&self, r: &ReevalRecord) -> Result<(), StoreError> {
        sqlx::query(&format!("INSERT INTO reevals ({REEVAL_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"))
            .bind(&r.id)
            .bind(r.ts_ms)
            .bind(&r.task)
            .bind(r.version)
            .bind(&r.dataset)
            .bind(&r.dataset_hash)
            .bind(&r.config)
            .bind(r.n)
            .bind(r.quality)
            .bind(serde_json::to_string(&r.summary).map_err(json_err)?)
            .bind(serde_json::to_string(&r.tiers).map_err(json_err)?)
            .bind(r.baseline_quality)
            .bind(r.baseline_version)
            .bind(i64::from(r.alert))
            .bind(r.reason.clone())
            .bind(r.seconds)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Re-evaluations of a task, newest first, at most `limit`.
    pub async fn reevals(&self, task: &str, limit: i64) -> Result<Vec<ReevalRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {REEVAL_COLS} FROM reevals WHERE task = $1 ORDER BY ts_ms DESC, id LIMIT $2"
        ))
        .bind(task)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(reeval_of).collect()
    }

    /// What a new re-eval is compared with: the newest one of `task` on the same data set
    /// content that raised no alert (whatever its version, so a worse new version alerts,
    /// and an alert lasts while the drop does).
    pub async fn reeval_baseline(&self, task: &str, dataset_hash: &str) -> Result<Option<ReevalRecord>, StoreError> {
        let row = sqlx::query(&format!("SELECT {REEVAL_COLS} FROM reevals WHERE task = $1 AND dataset_hash = $2 AND alert = 0 ORDER BY ts_ms DESC, id LIMIT 1"))
            .bind(task)
            .bind(dataset_hash)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(reeval_of).transpose()
    }

    /// Tasks with any shadow run or re-eval.
    pub async fn drift_tasks(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT DISTINCT task FROM shadow_runs UNION SELECT DISTINCT task FROM reevals")
            .fetch_all(self.pool())
            .await?;
        let mut tasks: Vec<String> = rows
            .iter()
            .map(|r| r.try_get::<String, _>("task"))
            .collect::<Result<_, _>>()?;
        tasks.sort();
        Ok(tasks)
    }

    /// A task's shadow samples per day since `since_ms`, its rolling agreement, its newest
    /// re-eval, and whether either signal is an alert under `rule`.
    pub async fn drift(&self, task: &str, since_ms: i64, rule: &DriftRule) -> Result<DriftSummary, StoreError> {
        let rows = sqlx::query(
            "SELECT day, agreement, cost_usd FROM shadow_runs WHERE task = $1 AND ts_ms >= $2 ORDER BY day",
        )
        .bind(task)
        .bind(since_ms)
        .fetch_all(self.pool())
        .await?;
        let mut by_day: BTreeMap<String, (u64, u64, Vec<f64>, f64)> = BTreeMap::new();
        for r in &rows {
            let e = by_day.entry(r.try_get("day")?).or_default();
            e.0 += 1;
            match r.try_get::<Option<f64>, _>("agreement")? {
                Some(a) => e.2.push(a),
                None => e.1 += 1,
            }
            e.3 += r.try_get::<f64, _>("cost_usd")?;
        }
        let days: Vec<ShadowDay> = by_day
            .into_iter()
            .map(|(day, (samples, errors, xs, cost_usd))| ShadowDay {
                day,
                samples,
                errors,
                agreement: (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64),
                cost_usd,
            })
            .collect();
        let (rolling_samples, rolling_agreement) = self.shadow_rolling(task, rule.window).await?;
        let reeval = self.reevals(task, 1).await?.pop();
        let mut reasons: Vec<String> = rule
            .judge(task, rolling_samples, rolling_agreement)
            .into_iter()
            .collect();
        if let Some(r) = reeval.as_ref().filter(|r| r.alert) {
            reasons.push(
                r.reason
                    .clone()
                    .unwrap_or_else(|| format!("{task}: re-evaluation quality dropped")),
            );
        }
        Ok(DriftSummary {
            task: task.to_owned(),
            samples: days.iter().map(|d| d.samples).sum(),
            days,
            window: rule.window,
            rolling_samples,
            rolling_agreement,
            min_agreement: rule.min_agreement,
            reeval,
            drift_alert: !reasons.is_empty(),
            reasons,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::DriftRule;

    #[test]
    fn drift_needs_enough_samples_below_the_bar() {
        let rule = DriftRule {
            window: 50,
            min_samples: 10,
            min_agreement: 0.8,
        };
        assert!(rule.judge("t", 9, Some(0.1)).is_none(), "too few samples to judge");
        assert!(rule.judge("t", 10, Some(0.8)).is_none(), "at the bar is fine");
        assert!(rule.judge("t", 0, None).is_none());
        let r = rule.judge("t", 10, Some(0.5)).unwrap();
        assert!(
            r.contains("0.500") && r.contains("10 samples") && r.contains("0.800"),
            "{r}"
        );
    }
}
