//! Task runs: one row per run, the raw material of per-task unit economics (cost per run,
//! latency percentiles, escalation and error rates per day).

use crate::{Store, StoreError};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use std::collections::BTreeMap;

pub(crate) const RUNS_SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS task_runs (
        id TEXT PRIMARY KEY,
        ts_ms BIGINT NOT NULL,
        day TEXT NOT NULL,
        task TEXT NOT NULL,
        version BIGINT NOT NULL,
        tier TEXT,
        tier_path TEXT NOT NULL,
        confidences TEXT NOT NULL,
        escalated BIGINT NOT NULL,
        outcome TEXT NOT NULL,
        latency_ms DOUBLE PRECISION NOT NULL,
        cost_usd DOUBLE PRECISION NOT NULL,
        tokens BIGINT NOT NULL,
        error TEXT
    )",
    "CREATE INDEX IF NOT EXISTS task_runs_task_day ON task_runs (task, day)",
];

/// Columns added after the first release: (table, column, type), added when missing.
pub(crate) const RUNS_COLUMNS: &[(&str, &str, &str)] = &[("task_runs", "guard", "TEXT"), ("api_keys", "guard", "TEXT")];

/// One task run as recorded.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunRecord {
    pub id: String,
    pub ts_ms: i64,
    pub task: String,
    pub version: i64,
    /// The tier whose answer was returned (none when the run failed).
    pub tier: Option<String>,
    pub tier_path: Vec<String>,
    /// Confidence per tier tried (`null` where the tier errored).
    pub confidences: Vec<Option<f64>>,
    pub escalated: bool,
    /// `ok`, `below_threshold` (best answer returned, no tier confident) or `error`.
    pub outcome: String,
    pub latency_ms: f64,
    pub cost_usd: f64,
    pub tokens: i64,
    pub error: Option<String>,
    /// Guardrail counters of the run (`redacted.email`, `blocked.credit_card`,
    /// `injection.flagged`, `output.too_long`, ...): kinds and counts, never values.
    #[serde(default)]
    pub guard: BTreeMap<String, u64>,
}

/// Per task and day.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DayStats {
    pub task: String,
    pub day: String,
    pub runs: u64,
    pub cost_usd: f64,
    pub cost_per_run_usd: f64,
    pub p50_latency_ms: f64,
    pub p95_latency_ms: f64,
    pub escalation_rate: f64,
    pub error_rate: f64,
    /// Runs answered by each tier.
    pub by_tier: BTreeMap<String, u64>,
    /// Runs refused by an input guardrail.
    pub blocked: u64,
    /// Guardrail counters summed over the day's runs (see [`RunRecord::guard`]).
    pub guard: BTreeMap<String, u64>,
}

/// UTC calendar day of a unix time in milliseconds (`YYYY-MM-DD`).
pub fn day_of(ts_ms: i64) -> String {
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = ts_ms.div_euclid(86_400_000) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn parse_json<T: serde::de::DeserializeOwned>(s: String) -> Result<T, StoreError> {
    serde_json::from_str(&s).map_err(|e| StoreError::Invalid(e.to_string()))
}

fn guard_counts(row: &sqlx::any::AnyRow) -> Result<BTreeMap<String, u64>, StoreError> {
    match row.try_get::<Option<String>, _>("guard")? {
        Some(s) => parse_json(s),
        None => Ok(BTreeMap::new()),
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p / 100.0 * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

impl Store {
    pub async fn record_run(&self, r: &RunRecord) -> Result<(), StoreError> {
        let path = serde_json::to_string(&r.tier_path).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let conf = serde_json::to_string(&r.confidences).map_err(|e| StoreError::Invalid(e.to_string()))?;
        sqlx::query(
            "INSERT INTO task_runs (id, ts_ms, day, task, version, tier, tier_path, confidences, escalated, outcome, latency_ms, cost_usd, tokens, error, guard)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(&r.id)
        .bind(r.ts_ms)
        .bind(day_of(r.ts_ms))
        .bind(&r.task)
        .bind(r.version)
        .bind(r.tier.clone())
        .bind(path)
        .bind(conf)
        .bind(i64::from(r.escalated))
        .bind(&r.outcome)
        .bind(r.latency_ms)
        .bind(r.cost_usd)
        .bind(r.tokens)
        .bind(r.error.clone())
        .bind((!r.guard.is_empty()).then(|| serde_json::to_string(&r.guard).unwrap_or_default()))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Runs of a task (or all tasks), newest first, at most `limit`.
    pub async fn runs(&self, task: Option<&str>, limit: i64) -> Result<Vec<RunRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, ts_ms, task, version, tier, tier_path, confidences, escalated, outcome, latency_ms, cost_usd, tokens, error, guard
             FROM task_runs WHERE ($1 = '' OR task = $1) ORDER BY ts_ms DESC LIMIT $2",
        )
        .bind(task.unwrap_or(""))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(RunRecord {
                    id: row.try_get("id")?,
                    ts_ms: row.try_get("ts_ms")?,
                    task: row.try_get("task")?,
                    version: row.try_get("version")?,
                    tier: row.try_get("tier")?,
                    tier_path: parse_json(row.try_get("tier_path")?)?,
                    confidences: parse_json(row.try_get("confidences")?)?,
                    escalated: row.try_get::<i64, _>("escalated")? != 0,
                    outcome: row.try_get("outcome")?,
                    latency_ms: row.try_get("latency_ms")?,
                    cost_usd: row.try_get("cost_usd")?,
                    tokens: row.try_get("tokens")?,
                    error: row.try_get("error")?,
                    guard: guard_counts(row)?,
                })
            })
            .collect()
    }

    /// Per task and day since `since_ms`: runs, cost, latency percentiles, escalation and
    /// error rates. Percentiles are computed here, not in SQL, so SQLite and Postgres agree.
    pub async fn run_stats(&self, task: Option<&str>, since_ms: i64) -> Result<Vec<DayStats>, StoreError> {
        let rows = sqlx::query(
            "SELECT task, day, tier, escalated, outcome, latency_ms, cost_usd, guard FROM task_runs
             WHERE ($1 = '' OR task = $1) AND ts_ms >= $2 ORDER BY task, day",
        )
        .bind(task.unwrap_or(""))
        .bind(since_ms)
        .fetch_all(self.pool())
        .await?;
        let mut groups: std::collections::BTreeMap<(String, String), Vec<&sqlx::any::AnyRow>> = Default::default();
        for row in &rows {
            groups
                .entry((row.try_get("task")?, row.try_get("day")?))
                .or_default()
                .push(row);
        }
        let mut out = Vec::new();
        for ((task, day), rows) in groups {
            let n = rows.len() as f64;
            let mut lat: Vec<f64> = rows
                .iter()
                .map(|r| r.try_get::<f64, _>("latency_ms"))
                .collect::<Result<_, _>>()?;
            lat.sort_by(f64::total_cmp);
            let cost: f64 = rows
                .iter()
                .map(|r| r.try_get::<f64, _>("cost_usd"))
                .sum::<Result<f64, _>>()?;
            let esc = rows
                .iter()
                .map(|r| r.try_get::<i64, _>("escalated"))
                .filter(|e| matches!(e, Ok(1)))
                .count() as f64;
            let err = rows
                .iter()
                .map(|r| r.try_get::<String, _>("outcome"))
                .filter(|o| matches!(o.as_deref(), Ok("error")))
                .count() as f64;
            let blocked = rows
                .iter()
                .map(|r| r.try_get::<String, _>("outcome"))
                .filter(|o| matches!(o.as_deref(), Ok("blocked")))
                .count() as u64;
            let mut by_tier = BTreeMap::new();
            let mut guard = BTreeMap::new();
            for r in &rows {
                if let Some(t) = r.try_get::<Option<String>, _>("tier")? {
                    *by_tier.entry(t).or_insert(0) += 1;
                }
                for (k, n) in guard_counts(r)? {
                    *guard.entry(k).or_insert(0) += n;
                }
            }
            out.push(DayStats {
                task,
                day,
                runs: rows.len() as u64,
                cost_usd: cost,
                cost_per_run_usd: cost / n,
                p50_latency_ms: percentile(&lat, 50.0),
                p95_latency_ms: percentile(&lat, 95.0),
                escalation_rate: esc / n,
                error_rate: err / n,
                by_tier,
                blocked,
                guard,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn days_are_utc_calendar_days() {
        assert_eq!(super::day_of(0), "1970-01-01");
        assert_eq!(super::day_of(1_795_219_200_000), "2026-11-21");
        assert_eq!(super::day_of(951_782_400_000), "2000-02-29");
    }
}
