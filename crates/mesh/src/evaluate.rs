//! Evaluation runs: every tier of a task's ladder alone over a data set, concurrently (so the
//! engine batches them), scored with the task's metric (`[eval]`, see `metric.rs`; by default
//! per output kind). The result is an `eval::Outcomes` table from which every cascade and
//! threshold is simulated offline, plus what scoring cost and, with a judge, how its verdicts
//! agree with the default metric.

use crate::error::MeshError;
use crate::judge::Judge;
use crate::metric::{default_metric, MetricName, Scoring};
use crate::run::RunOptions;
use crate::task::{OutputKind, Task};
use crate::Mesh;
use engine::Priority;
use eval::{metrics::embedding_match, Dataset, Expected, JudgeReport, Metric, Outcomes, TierOutcome};
use futures::stream::{self, StreamExt};
use serde::Serialize;
use serde_json::Value;
use std::time::Instant;

/// Scores an answer with the default metric of its output kind: labels by exact match
/// (trimmed, case-insensitive), JSON by field-level F1, text by whether the expected answer
/// appears in it as a whole word or phrase (case-insensitive).
pub fn score(kind: OutputKind, output: &Value, expected: &Expected) -> f64 {
    default_metric(kind)
        .score(&output_text(output), expected)
        .unwrap_or(0.0)
}

/// An answer as text: a string as it is, any other JSON compact.
pub fn output_text(output: &Value) -> String {
    match output {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

/// How the answers were scored and what scoring cost (evaluation cost: in no tier's cost).
#[derive(Debug, Clone, Serialize)]
pub struct MetricReport {
    pub name: MetricName,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoder: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub judge: Option<String>,
    pub cost_usd: f64,
}

impl MetricReport {
    /// One line for the terminal.
    pub fn line(&self) -> String {
        let how = match (&self.encoder, self.threshold, &self.judge) {
            (Some(e), Some(t), _) => format!(" ({e}, cosine ≥ {t:.2})"),
            (_, _, Some(j)) => format!(" ({j})"),
            _ => String::new(),
        };
        format!(
            "scored by {}{how} · scoring cost {} (evaluation cost, not in the tiers' cost)",
            self.name.as_str(),
            eval::fmt_cost(self.cost_usd)
        )
    }
}

/// What an evaluation run found.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub outcomes: Outcomes,
    pub metric: MetricReport,
    /// With `metric = "judge"`: the judge against the default metric, and its cost.
    pub judge: Option<JudgeReport>,
}

/// How one answer is scored, with what scoring needs prepared.
// One value per evaluation, not per item: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum How {
    Text(Metric),
    /// Embeddings of every item's expected answer, computed once.
    Embedding {
        encoder: String,
        threshold: f64,
        expected: Vec<Vec<f32>>,
    },
    Judge(Judge),
}

/// Scores one tier's answers at a time, keeping what scoring cost.
struct Scorer<'a> {
    mesh: &'a Mesh,
    kind: OutputKind,
    data: &'a Dataset,
    how: How,
    report: MetricReport,
    /// Per judged tier: (P(yes), default-metric score) of each answered item.
    judged: Vec<(String, Vec<(f64, f64)>)>,
}

impl<'a> Scorer<'a> {
    async fn new(mesh: &'a Mesh, task: &Task, data: &'a Dataset) -> Result<Scorer<'a>, MeshError> {
        let scoring = task.scoring()?;
        let mut report = MetricReport {
            name: scoring.name(),
            encoder: None,
            threshold: None,
            judge: None,
            cost_usd: 0.0,
        };
        let how = match scoring {
            Scoring::Text(_, m) => How::Text(m),
            Scoring::Embedding { encoder, threshold } => {
                let (expected, cost) = mesh
                    .embed_texts(&encoder, data.items.iter().map(|i| i.expected.as_text()).collect())
                    .await?;
                (report.encoder, report.threshold, report.cost_usd) = (Some(encoder.clone()), Some(threshold), cost);
                How::Embedding {
                    encoder,
                    threshold,
                    expected,
                }
            }
            Scoring::Judge { tier, rubric } => {
                report.judge = Some(tier.id());
                How::Judge(Judge::new(task, tier, &rubric))
            }
        };
        Ok(Scorer {
            mesh,
            kind: task.spec.output.kind,
            data,
            how,
            report,
            judged: Vec::new(),
        })
    }

    /// Scores of one tier's answers, by item (`None`: no answer; its score stays 0).
    async fn column(
        &mut self,
        tier: &str,
        answers: &[Option<String>],
        concurrency: usize,
        progress: &(dyn Fn(usize, &str) + Sync),
    ) -> Result<Vec<f64>, MeshError> {
        let items = &self.data.items;
        let answered: Vec<(usize, &str)> = answers
            .iter()
            .enumerate()
            .filter_map(|(i, a)| Some((i, a.as_deref()?)))
            .collect();
        let mut scores = vec![0.0; answers.len()];
        match &self.how {
            How::Text(m) => {
                for &(i, a) in &answered {
                    scores[i] = m
                        .score(a, &items[i].expected)
                        .map_err(|e| MeshError::BadInput(format!("scoring item `{}`: {e}", items[i].id)))?;
                }
            }
            How::Embedding {
                encoder,
                threshold,
                expected,
            } => {
                let (vectors, cost) = self
                    .mesh
                    .embed_texts(encoder, answered.iter().map(|(_, a)| a.to_string()).collect())
                    .await?;
                self.report.cost_usd += cost;
                for (&(i, _), v) in answered.iter().zip(&vectors) {
                    scores[i] = if embedding_match(v, &expected[i], *threshold) {
                        1.0
                    } else {
                        0.0
                    };
                }
            }
            How::Judge(judge) => {
                let (label, mesh) = (format!("judging {tier}"), self.mesh);
                let verdicts = stream::iter(answered.iter().map(|&(i, a)| {
                    let label = &label;
                    async move {
                        let v = judge.verdict(mesh, &items[i].input, a, &items[i].expected).await;
                        progress(0, label);
                        v.map_err(|e| {
                            MeshError::BadInput(format!("judge {} on item `{}`: {e}", judge.id(), items[i].id))
                        })
                    }
                }))
                .buffered(concurrency.max(1))
                .collect::<Vec<_>>()
                .await;
                let mut pairs = Vec::with_capacity(answered.len());
                for (&(i, a), v) in answered.iter().zip(verdicts) {
                    let (p_yes, cost) = v?;
                    self.report.cost_usd += cost;
                    scores[i] = p_yes;
                    pairs.push((
                        p_yes,
                        score(self.kind, &Value::String(a.to_owned()), &items[i].expected),
                    ));
                }
                self.judged.push((tier.to_owned(), pairs));
            }
        }
        Ok(scores)
    }

    fn finish(self, outcomes: Outcomes) -> Evaluation {
        let judge = self.report.judge.as_ref().map(|j| {
            JudgeReport::new(
                j,
                MetricName::default_for(self.kind).as_str(),
                &self.judged,
                self.report.cost_usd,
            )
        });
        Evaluation {
            outcomes,
            metric: self.report,
            judge,
        }
    }
}

impl Mesh {
    /// [`Mesh::evaluate_full`], the outcome table only.
    pub async fn evaluate(
        &self,
        task: &Task,
        data: &Dataset,
        concurrency: usize,
        progress: &(dyn Fn(usize, &str) + Sync),
    ) -> Result<Outcomes, MeshError> {
        Ok(self.evaluate_full(task, data, concurrency, progress).await?.outcomes)
    }

    /// Run each tier of `task` alone on every item (`concurrency` items in flight, batch
    /// priority so live traffic goes first), then score its answers with the task's metric.
    /// `progress` is called after each item (and with 0 after each judge verdict).
    pub async fn evaluate_full(
        &self,
        task: &Task,
        data: &Dataset,
        concurrency: usize,
        progress: &(dyn Fn(usize, &str) + Sync),
    ) -> Result<Evaluation, MeshError> {
        let mut scorer = Scorer::new(self, task, data).await?;
        let tiers: Vec<String> = task.tiers().map(|t| t.id()).collect();
        let mut columns: Vec<Vec<TierOutcome>> = Vec::new();
        for (ti, tier) in tiers.iter().enumerate() {
            let runs = stream::iter(data.items.iter().map(|item| {
                let opts = RunOptions {
                    version: Some(task.spec.version),
                    priority: Priority::Batch,
                    only_tier: Some(ti),
                    no_record: true,
                    ..Default::default()
                };
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
            let mut answers = Vec::with_capacity(runs.len());
            for (item, r) in data.items.iter().zip(runs) {
                let (outcome, answer) = match r {
                    Ok(a) => {
                        let at = &a.tiers[0];
                        match (&at.error, &at.output) {
                            (None, Some(out)) => (
                                TierOutcome::scored(0.0, at.confidence, at.cost_usd, at.latency_ms),
                                Some(output_text(out)),
                            ),
                            _ => (TierOutcome::failed(at.cost_usd, at.latency_ms), None),
                        }
                    }
                    Err(MeshError::BadInput(m)) => return Err(MeshError::BadInput(format!("item `{}`: {m}", item.id))),
                    Err(_) => (TierOutcome::failed(0.0, 0.0), None),
                };
                col.push(outcome);
                answers.push(answer);
            }
            let scores = scorer.column(tier, &answers, concurrency, progress).await?;
            for (o, s) in col.iter_mut().zip(scores) {
                o.score = s;
            }
            columns.push(col);
        }
        let ids: Vec<String> = data.items.iter().map(|i| i.id.clone()).collect();
        let outcomes = Outcomes::from_columns(tiers, ids, columns).map_err(|e| MeshError::BadInput(e.to_string()))?;
        Ok(scorer.finish(outcomes))
    }

    /// Embeddings of `texts` from a pool encoder (one batched call) and what they cost.
    async fn embed_texts(&self, encoder: &str, texts: Vec<String>) -> Result<(Vec<Vec<f32>>, f64), MeshError> {
        let enc = self
            .models
            .encoder(encoder)
            .await
            .map_err(|e| MeshError::BadInput(format!("metric encoder `{encoder}`: {e}")))?;
        let t = Instant::now();
        let vectors =
            tokio::task::spawn_blocking(move || enc.embed(&texts.iter().map(String::as_str).collect::<Vec<_>>()))
                .await
                .map_err(|e| MeshError::BadInput(format!("embedding panicked: {e}")))?
                .map_err(|e| MeshError::BadInput(format!("embedding answers: {e}")))?;
        Ok((vectors, self.prices.all_cores(t.elapsed().as_secs_f64())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_answers_match_the_expected_phrase_as_words() {
        let e = Expected::Text("Rome".into());
        assert_eq!(
            score(
                OutputKind::Text,
                &Value::String("The capital of Italy is Rome.".into()),
                &e
            ),
            1.0
        );
        assert_eq!(score(OutputKind::Text, &Value::String("Romeo".into()), &e), 0.0);
        let n = Expected::Text("8".into());
        assert_eq!(score(OutputKind::Text, &Value::String("18".into()), &n), 0.0);
        assert_eq!(
            score(
                OutputKind::Label,
                &Value::String(" Billing".into()),
                &Expected::Text("billing".into())
            ),
            1.0
        );
        assert_eq!(output_text(&serde_json::json!({"a": 1})), r#"{"a":1}"#);
    }

    #[test]
    fn metric_line_names_how_and_cost() {
        let m = MetricReport {
            name: MetricName::Embedding,
            encoder: Some("minilm-l6".into()),
            threshold: Some(0.8),
            judge: None,
            cost_usd: 0.00012,
        };
        assert_eq!(m.line(), "scored by embedding (minilm-l6, cosine ≥ 0.80) · scoring cost $0.000120 (evaluation cost, not in the tiers' cost)");
    }
}
