//! Evaluation runs: one row per `rightsize eval`, so runs can be compared over time and
//! across task versions, data sets and model files. Each row names exactly what was measured
//! (task version, data set path and sha256, the sha256 of every model file the ladder used),
//! what was chosen, its dev and test quality and cost, and keeps the whole report as JSON.

use crate::{Store, StoreError};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use std::collections::BTreeMap;

pub(crate) const EVALS_SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS eval_runs (
        id TEXT PRIMARY KEY,
        ts_ms BIGINT NOT NULL,
        task TEXT NOT NULL,
        version BIGINT NOT NULL,
        dataset TEXT NOT NULL,
        dataset_sha256 TEXT NOT NULL,
        model_hashes TEXT NOT NULL,
        chosen TEXT NOT NULL,
        strategy TEXT NOT NULL,
        meets_bar BIGINT NOT NULL,
        dev_quality DOUBLE PRECISION NOT NULL,
        test_quality DOUBLE PRECISION,
        dev_cost_per_1k DOUBLE PRECISION NOT NULL,
        test_cost_per_1k DOUBLE PRECISION,
        report TEXT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS eval_runs_task_ts ON eval_runs (task, ts_ms)",
];

/// One stored evaluation run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EvalRunRecord {
    pub id: String,
    pub ts_ms: i64,
    pub task: String,
    pub version: i64,
    /// The data set file as given, and the sha256 of its bytes.
    pub dataset: String,
    pub dataset_sha256: String,
    /// Model id → sha256 of its file, for every model the ladder (and router) used.
    pub model_hashes: BTreeMap<String, String>,
    /// The chosen configuration's label (e.g. `router > classifier@0.80 > local:qwen2.5-0.5b`)
    /// and its full description.
    pub chosen: String,
    pub strategy: serde_json::Value,
    pub meets_bar: bool,
    pub dev_quality: f64,
    pub test_quality: Option<f64>,
    /// US dollars per 1,000 runs of the chosen configuration.
    pub dev_cost_per_1k: f64,
    pub test_cost_per_1k: Option<f64>,
    /// The whole report (`null` in listings, which leave it out).
    pub report: serde_json::Value,
}

fn to_json<T: Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Invalid(e.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Invalid(e.to_string()))
}

const COLUMNS: &str = "id, ts_ms, task, version, dataset, dataset_sha256, model_hashes, chosen, strategy, meets_bar, dev_quality, test_quality, dev_cost_per_1k, test_cost_per_1k";

impl Store {
    pub async fn record_eval(&self, r: &EvalRunRecord) -> Result<(), StoreError> {
        if r.id.is_empty() || r.task.is_empty() {
            return Err(StoreError::Invalid("an eval run needs an id and a task".into()));
        }
        sqlx::query(&format!("INSERT INTO eval_runs ({COLUMNS}, report) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"))
            .bind(&r.id)
            .bind(r.ts_ms)
            .bind(&r.task)
            .bind(r.version)
            .bind(&r.dataset)
            .bind(&r.dataset_sha256)
            .bind(to_json(&r.model_hashes)?)
            .bind(&r.chosen)
            .bind(to_json(&r.strategy)?)
            .bind(i64::from(r.meets_bar))
            .bind(r.dev_quality)
            .bind(r.test_quality)
            .bind(r.dev_cost_per_1k)
            .bind(r.test_cost_per_1k)
            .bind(to_json(&r.report)?)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Eval runs of a task (or every task), newest first, at most `limit`, without their
    /// reports (see [`Store::eval_run`]).
    pub async fn eval_runs(&self, task: Option<&str>, limit: i64) -> Result<Vec<EvalRunRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM eval_runs WHERE ($1 = '' OR task = $1) ORDER BY ts_ms DESC, id DESC LIMIT $2"
        ))
        .bind(task.unwrap_or(""))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|r| row(r, serde_json::Value::Null)).collect()
    }

    /// One eval run with its report.
    pub async fn eval_run(&self, id: &str) -> Result<Option<EvalRunRecord>, StoreError> {
        let Some(r) = sqlx::query(&format!("SELECT {COLUMNS}, report FROM eval_runs WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?
        else {
            return Ok(None);
        };
        let report = from_json(&r.try_get::<String, _>("report")?)?;
        row(&r, report).map(Some)
    }
}

fn row(r: &sqlx::any::AnyRow, report: serde_json::Value) -> Result<EvalRunRecord, StoreError> {
    Ok(EvalRunRecord {
        id: r.try_get("id")?,
        ts_ms: r.try_get("ts_ms")?,
        task: r.try_get("task")?,
        version: r.try_get("version")?,
        dataset: r.try_get("dataset")?,
        dataset_sha256: r.try_get("dataset_sha256")?,
        model_hashes: from_json(&r.try_get::<String, _>("model_hashes")?)?,
        chosen: r.try_get("chosen")?,
        strategy: from_json(&r.try_get::<String, _>("strategy")?)?,
        meets_bar: r.try_get::<i64, _>("meets_bar")? != 0,
        dev_quality: r.try_get("dev_quality")?,
        test_quality: r.try_get("test_quality")?,
        dev_cost_per_1k: r.try_get("dev_cost_per_1k")?,
        test_cost_per_1k: r.try_get("test_cost_per_1k")?,
        report,
    })
}
