//! Evaluation runs: every tier of a task's ladder alone over a data set, concurrently (so the
//! engine batches them), scored per output kind. The result is an `eval::Outcomes` table from
//! which every cascade and threshold is simulated offline.

use crate::error::MeshError;
use crate::run::RunOptions;
use crate::task::{OutputKind, Task};
use crate::Mesh;
use engine::Priority;
use eval::{metrics::MatchOptions, Dataset, Expected, Metric, Outcomes, TierOutcome};
use futures::stream::{self, StreamExt};
use serde_json::Value;

/// How an answer is scored against the expected one, per output kind: labels by exact match
/// (trimmed, case-insensitive), JSON by field-level F1, text by whether the expected answer
/// appears in it as a whole word or phrase (case-insensitive).
pub fn score(kind: OutputKind, output: &Value, expected: &Expected) -> f64 {
    let text = match output {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    let metric = match kind {
        OutputKind::Label => Metric::Exact { opts: MatchOptions::LENIENT },
        OutputKind::Json => Metric::JsonF1,
        OutputKind::Text => Metric::Regex { pattern: Some(format!(r"(?i)(^|\W){}($|\W)", regex::escape(expected.as_text().trim().trim_end_matches('.')))) },
    };
    metric.score(&text, expected).unwrap_or(0.0)
}

impl Mesh {
    /// Run each tier of `task` alone on every item (`concurrency` items in flight, batch
    /// priority so live traffic goes first). `progress` is called after each item.
    pub async fn evaluate(&self, task: &Task, data: &Dataset, concurrency: usize, progress: &(dyn Fn(usize, &str) + Sync)) -> Result<Outcomes, MeshError> {
        let tiers: Vec<String> = task.tiers().map(|t| t.id()).collect();
        let mut columns: Vec<Vec<TierOutcome>> = Vec::new();
        for (ti, tier) in tiers.iter().enumerate() {
            let runs = stream::iter(data.items.iter().map(|item| {
                let opts = RunOptions { version: Some(task.spec.version), priority: Priority::Batch, only_tier: Some(ti), no_record: true, ..Default::default() };
                async move {
                    let r = self.run(&task.spec.name, &item.input, opts).await;
                    progress(1, tier);
                    r
                }
            }))
            .buffered(concurrency.max(1))
            .collect::<Vec<_>>()
            .await;
            let mut col = Vec::with_capacity(runs.len());
            for (item, r) in data.items.iter().zip(runs) {
                col.push(match r {
                    Ok(a) => {
                        let at = &a.tiers[0];
                        match (&at.error, &at.output) {
                            (None, Some(out)) => TierOutcome::scored(score(task.spec.output.kind, out, &item.expected), at.confidence, at.cost_usd, at.latency_ms),
                            _ => TierOutcome::failed(at.cost_usd, at.latency_ms),
                        }
                    }
                    Err(MeshError::BadInput(m)) => return Err(MeshError::BadInput(format!("item `{}`: {m}", item.id))),
                    Err(_) => TierOutcome::failed(0.0, 0.0),
                });
            }
            columns.push(col);
        }
        let ids: Vec<String> = data.items.iter().map(|i| i.id.clone()).collect();
        Outcomes::from_columns(tiers, ids, columns).map_err(|e| MeshError::BadInput(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_answers_match_the_expected_phrase_as_words() {
        let e = Expected::Text("Rome".into());
        assert_eq!(score(OutputKind::Text, &Value::String("The capital of Italy is Rome.".into()), &e), 1.0);
        assert_eq!(score(OutputKind::Text, &Value::String("Romeo".into()), &e), 0.0);
        let n = Expected::Text("8".into());
        assert_eq!(score(OutputKind::Text, &Value::String("18".into()), &n), 0.0);
        assert_eq!(score(OutputKind::Label, &Value::String(" Billing".into()), &Expected::Text("billing".into())), 1.0);
    }
}
