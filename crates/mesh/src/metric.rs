//! The `[eval]` table of a task file: how `rightsize eval` scores an answer against the
//! expected one. Without it the metric follows the output kind: labels by exact match
//! (trimmed, case-insensitive), JSON by field-level F1, text by whether the expected answer
//! appears in it as words (`contains`).
//!
//! ```toml
//! [eval]
//! metric = "judge"            # exact | json_f1 | contains | regex | numeric | embedding | judge
//! judge = "qwen2.5-1.5b"      # a pool model id, or an [eval.judge] table shaped like a ladder tier
//! rubric = "Question: {{ question }}\nReference: {{ expected }}\nAnswer: {{ output }}\nIs the answer correct?"
//! ```

use crate::task::{check_vars, OutputKind};
use crate::tier_spec::{TierKind, TierSpec};
use eval::metrics::{MatchOptions, Tolerance};
use eval::Metric;
use serde::{Deserialize, Serialize};

/// The encoder of `metric = "embedding"` unless `encoder` names another.
pub const DEFAULT_ENCODER: &str = "minilm-l6";
/// Cosine at or above which an answer counts as right, unless `embedding_threshold` says.
pub const DEFAULT_EMBEDDING_THRESHOLD: f64 = 0.8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricName {
    Exact,
    JsonF1,
    Contains,
    Regex,
    Numeric,
    Embedding,
    Judge,
}

impl MetricName {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricName::Exact => "exact",
            MetricName::JsonF1 => "json_f1",
            MetricName::Contains => "contains",
            MetricName::Regex => "regex",
            MetricName::Numeric => "numeric",
            MetricName::Embedding => "embedding",
            MetricName::Judge => "judge",
        }
    }

    /// The metric of a task without `metric`.
    pub fn default_for(kind: OutputKind) -> MetricName {
        match kind {
            OutputKind::Label => MetricName::Exact,
            OutputKind::Json => MetricName::JsonF1,
            OutputKind::Text => MetricName::Contains,
        }
    }
}

/// `[eval]`, as written. Each option belongs to one metric and is refused with any other.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSpec {
    #[serde(default)]
    pub metric: Option<MetricName>,
    /// `regex`: the pattern an answer must contain a match of (default: each item's expected
    /// text is the pattern).
    #[serde(default)]
    pub pattern: Option<String>,
    /// `numeric`: the first number of the answer may differ from the expected number by this...
    #[serde(default)]
    pub abs_tolerance: Option<f64>,
    /// ...or by this share of it.
    #[serde(default)]
    pub rel_tolerance: Option<f64>,
    /// `embedding`: right when the cosine of answer and expected embeddings is at least this.
    #[serde(default)]
    pub embedding_threshold: Option<f64>,
    /// `embedding`: the pool encoder (default `minilm-l6`).
    #[serde(default)]
    pub encoder: Option<String>,
    /// `judge`: a pool model id (a local tier), or a table shaped like a `local` or `remote`
    /// ladder tier.
    #[serde(default)]
    pub judge: Option<toml::Value>,
    /// `judge`: minijinja template of the question put to the judge, over the task's inputs,
    /// `output` (the answer) and `expected`; the judge answers yes or no.
    #[serde(default)]
    pub rubric: Option<String>,
}

/// How answers are scored, resolved from `[eval]` and the output kind.
#[derive(Debug, Clone)]
pub enum Scoring {
    /// A metric of the answer's text alone.
    Text(MetricName, Metric),
    /// Cosine of the pool encoder's embeddings of answer and expected ≥ threshold: 1, else 0.
    Embedding { encoder: String, threshold: f64 },
    /// P(yes) of a judge asked the rubric (see `judge.rs`).
    Judge { tier: TierSpec, rubric: String },
}

impl Scoring {
    /// The default metric of an output kind.
    pub fn default_for(kind: OutputKind) -> Scoring {
        Scoring::Text(MetricName::default_for(kind), default_metric(kind))
    }

    pub fn name(&self) -> MetricName {
        match self {
            Scoring::Text(n, _) => *n,
            Scoring::Embedding { .. } => MetricName::Embedding,
            Scoring::Judge { .. } => MetricName::Judge,
        }
    }
}

/// The metric of a task without `[eval]`: exact for labels, field-level F1 for JSON,
/// `contains` for text.
pub fn default_metric(kind: OutputKind) -> Metric {
    // Every default is a text metric: the fallback is never taken.
    text_metric(MetricName::default_for(kind), &EvalSpec::default()).unwrap_or(Metric::Contains)
}

/// The text metric of `name` with `spec`'s options (`None` for embedding and judge).
fn text_metric(name: MetricName, spec: &EvalSpec) -> Option<Metric> {
    Some(match name {
        MetricName::Exact => Metric::Exact {
            opts: MatchOptions::LENIENT,
        },
        MetricName::JsonF1 => Metric::JsonF1,
        MetricName::Contains => Metric::Contains,
        MetricName::Regex => Metric::Regex {
            pattern: spec.pattern.clone(),
        },
        MetricName::Numeric => Metric::Numeric {
            tol: Tolerance {
                abs: spec.abs_tolerance.unwrap_or(0.0),
                rel: spec.rel_tolerance.unwrap_or(0.0),
            },
        },
        MetricName::Embedding | MetricName::Judge => return None,
    })
}

/// `(field, message)`: the field relative to `[eval]`.
type Bad = (String, String);

fn bad(field: &str, message: impl Into<String>) -> Bad {
    (field.to_owned(), message.into())
}

impl EvalSpec {
    /// Checks every option and resolves the scoring (`inputs`: the task's, for the rubric).
    pub fn scoring(&self, kind: OutputKind, inputs: &[String]) -> Result<Scoring, Bad> {
        use MetricName::*;
        let name = self.metric.unwrap_or(MetricName::default_for(kind));
        let owners = [
            ("pattern", self.pattern.is_some(), Regex),
            ("abs_tolerance", self.abs_tolerance.is_some(), Numeric),
            ("rel_tolerance", self.rel_tolerance.is_some(), Numeric),
            ("embedding_threshold", self.embedding_threshold.is_some(), Embedding),
            ("encoder", self.encoder.is_some(), Embedding),
            ("judge", self.judge.is_some(), Judge),
            ("rubric", self.rubric.is_some(), Judge),
        ];
        if let Some((field, _, owner)) = owners.iter().find(|(_, set, owner)| *set && *owner != name) {
            return Err(bad(
                field,
                format!(
                    "only applies to metric = \"{}\" (the metric is \"{}\")",
                    owner.as_str(),
                    name.as_str()
                ),
            ));
        }
        if let Some(p) = &self.pattern {
            eval::metrics::compile_regex(p).map_err(|e| bad("pattern", e.to_string()))?;
        }
        for (field, tol) in [
            ("abs_tolerance", self.abs_tolerance),
            ("rel_tolerance", self.rel_tolerance),
        ] {
            if tol.is_some_and(|t| !(t.is_finite() && t >= 0.0)) {
                return Err(bad(field, "must be a number of 0 or more"));
            }
        }
        if let Some(m) = text_metric(name, self) {
            return Ok(Scoring::Text(name, m));
        }
        match name {
            Embedding => {
                let threshold = self.embedding_threshold.unwrap_or(DEFAULT_EMBEDDING_THRESHOLD);
                if !(0.0..=1.0).contains(&threshold) {
                    return Err(bad("embedding_threshold", "must be between 0 and 1"));
                }
                let encoder = self.encoder.clone().unwrap_or_else(|| DEFAULT_ENCODER.into());
                if encoder.trim().is_empty() {
                    return Err(bad("encoder", "must name a pool encoder, e.g. \"minilm-l6\""));
                }
                Ok(Scoring::Embedding { encoder, threshold })
            }
            _ => {
                let tier = self.judge_tier()?;
                let rubric = self.rubric.clone().ok_or_else(|| bad("rubric", "metric = \"judge\" needs `rubric`: the question put to the judge, a template over the inputs, `output` and `expected`"))?;
                if let Some(clash) = inputs.iter().find(|i| *i == "output" || *i == "expected") {
                    return Err(bad(
                        "rubric",
                        format!("the task has an input named `{clash}`, which the rubric's own `{clash}` would hide"),
                    ));
                }
                let mut allowed = inputs.to_vec();
                allowed.extend(["output".to_string(), "expected".to_string()]);
                check_vars("rubric", &rubric, &allowed, "an input, `output` or `expected`")
                    .map_err(|m| bad("rubric", m))?;
                Ok(Scoring::Judge { tier, rubric })
            }
        }
    }

    /// The judge as a ladder tier: a model id is a local tier of that model.
    fn judge_tier(&self) -> Result<TierSpec, Bad> {
        let need = "metric = \"judge\" needs `judge`: a pool model id such as \"qwen2.5-1.5b\", or an [eval.judge] table shaped like a local or remote ladder tier";
        let table = match &self.judge {
            None => return Err(bad("judge", need)),
            Some(toml::Value::String(m)) if !m.trim().is_empty() => toml::Table::from_iter([
                ("kind".to_string(), "local".into()),
                ("model".to_string(), m.clone().into()),
            ]),
            Some(toml::Value::Table(t)) => t.clone(),
            Some(_) => return Err(bad("judge", need)),
        };
        let tier: TierSpec = toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| {
            let field = crate::task::named_field(e.message())
                .map(|f| format!("judge.{f}"))
                .unwrap_or_else(|| "judge".into());
            (field, e.message().trim().to_owned())
        })?;
        if tier.kind == TierKind::Classifier {
            return Err(bad("judge.kind", "a judge is a `local` or `remote` tier"));
        }
        tier.check(OutputKind::Label, true)
            .map_err(|(f, m)| (format!("judge.{f}"), m))?;
        Ok(tier)
    }
}

#[cfg(test)]
mod tests;
