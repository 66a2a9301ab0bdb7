//! Per-item scoring and aggregate metrics.
//!
//! Per-item scorers return a score in [0, 1] (1 = correct); that score is what goes into
//! [`TierOutcome::score`](crate::TierOutcome). Aggregates (label report, field-level
//! F1, judge agreement) live in the submodules.

mod json;
mod judge;
mod labels;

pub use json::{flatten_json, json_fields, json_fields_text, FieldScore, FlatValue};
pub use judge::{JudgeReport, TierAgreement, PASS};
pub use labels::{judge_agreement, label_metrics, Agreement, LabelReport, LabelStats};

use serde::{Deserialize, Serialize};

use crate::dataset::Expected;
use crate::error::{EvalError, Result};

/// Options of [`exact_match`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MatchOptions {
    /// Ignore leading and trailing whitespace.
    pub trim: bool,
    /// Compare case-insensitively (Unicode lowercase).
    pub case_insensitive: bool,
}

impl MatchOptions {
    /// Trim and case-insensitive: the usual choice for labels.
    pub const LENIENT: MatchOptions = MatchOptions {
        trim: true,
        case_insensitive: true,
    };
}

/// Whether `output` equals `expected` under `opts`.
pub fn exact_match(output: &str, expected: &str, opts: MatchOptions) -> bool {
    let (mut a, mut b) = (output, expected);
    if opts.trim {
        (a, b) = (a.trim(), b.trim());
    }
    if opts.case_insensitive {
        a.to_lowercase() == b.to_lowercase()
    } else {
        a == b
    }
}

/// Compiles a pattern, with an error that names it.
pub fn compile_regex(pattern: &str) -> Result<regex::Regex> {
    regex::Regex::new(pattern).map_err(|source| EvalError::Regex {
        pattern: pattern.to_string(),
        source,
    })
}

/// Whether `output` contains a match of `re` (anchor with `^…$` for a full match).
pub fn regex_match(re: &regex::Regex, output: &str) -> bool {
    re.is_match(output)
}

/// Whether `expected` appears in `output` as a whole word or phrase, case-insensitively
/// (surrounding whitespace and a trailing period of `expected` are ignored): `Rome` is in
/// "The capital is Rome." but not in "Romeo".
pub fn contains_phrase(output: &str, expected: &str) -> bool {
    let phrase = regex::escape(expected.trim().trim_end_matches('.'));
    regex::Regex::new(&format!(r"(?i)(^|\W){phrase}($|\W)")).is_ok_and(|re| re.is_match(output))
}

/// Absolute and relative tolerance of [`numeric_match`].
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Tolerance {
    /// Accept |output − expected| ≤ abs.
    pub abs: f64,
    /// Accept |output − expected| ≤ rel · |expected|.
    pub rel: f64,
}

/// Whether `output` is within either tolerance of `expected` (exact equality always passes).
pub fn numeric_match(output: f64, expected: f64, tol: Tolerance) -> bool {
    let d = (output - expected).abs();
    output == expected || d <= tol.abs || d <= tol.rel * expected.abs()
}

/// The first number in free text (`"about 1,234.5 kg"` → 1234.5; thousands commas dropped).
pub fn parse_number(text: &str) -> Option<f64> {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| {
        regex::Regex::new(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:[eE][-+]?\d+)?").expect("valid")
    });
    re.find_iter(text)
        .map(|m| m.as_str())
        .filter(|s| s.chars().any(|c| c.is_ascii_digit()))
        .find_map(|s| s.replace(',', "").parse().ok())
}

/// Cosine similarity; `None` when the lengths differ, a vector is empty or has zero norm.
pub fn cosine(a: &[f32], b: &[f32]) -> Option<f64> {
    if a.len() != b.len() || a.is_empty() {
        return None;
    }
    let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64, y as f64);
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    (na > 0.0 && nb > 0.0).then(|| dot / (na.sqrt() * nb.sqrt()))
}

/// Embedding similarity: cosine of precomputed vectors ≥ threshold (false if undefined).
pub fn embedding_match(output: &[f32], expected: &[f32], threshold: f64) -> bool {
    cosine(output, expected).is_some_and(|c| c >= threshold)
}

/// A per-item metric as a task would configure it (serde: `{"kind": "exact", ...}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Metric {
    /// [`exact_match`] of the output against the expected text.
    Exact {
        /// Match options.
        #[serde(flatten)]
        opts: MatchOptions,
    },
    /// Field-level F1 of the output parsed as JSON against the expected object.
    JsonF1,
    /// [`contains_phrase`]: the expected answer appears in the output as words.
    Contains,
    /// Regex match; the pattern is `pattern`, or else the item's expected text.
    Regex {
        /// Fixed pattern for all items.
        #[serde(default)]
        pattern: Option<String>,
    },
    /// First number of the output against the expected number.
    Numeric {
        /// Tolerances.
        #[serde(flatten)]
        tol: Tolerance,
    },
    /// Cosine of embeddings ≥ threshold; score with [`embedding_match`] (needs vectors).
    Embedding {
        /// Threshold on the cosine.
        threshold: f64,
    },
}

impl Metric {
    /// Scores one output in [0, 1]. [`Metric::Embedding`] cannot score text: it errors.
    pub fn score(&self, output: &str, expected: &Expected) -> Result<f64> {
        let b = |x: bool| if x { 1.0 } else { 0.0 };
        Ok(match self {
            Metric::Exact { opts } => b(exact_match(output, &expected.as_text(), *opts)),
            Metric::JsonF1 => json_fields_text(output, &expected.to_value()).f1,
            Metric::Contains => b(contains_phrase(output, &expected.as_text())),
            Metric::Regex { pattern } => {
                let p = pattern.clone().unwrap_or_else(|| expected.as_text());
                b(regex_match(&compile_regex(&p)?, output))
            }
            Metric::Numeric { tol } => {
                let want = match expected {
                    Expected::Number(n) => *n,
                    other => parse_number(&other.as_text())
                        .ok_or_else(|| EvalError::Invalid(format!("expected `{}` is not a number", other.as_text())))?,
                };
                b(parse_number(output).is_some_and(|got| numeric_match(got, want, *tol)))
            }
            Metric::Embedding { .. } => {
                return Err(EvalError::Invalid(
                    "embedding metric needs vectors: use embedding_match".into(),
                ))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_regex_numeric_embedding() {
        assert!(exact_match(" Yes\n", "yes", MatchOptions::LENIENT));
        assert!(!exact_match(
            " Yes\n",
            "yes",
            MatchOptions {
                trim: true,
                case_insensitive: false
            }
        ));
        assert!(!exact_match("yes ", "yes", MatchOptions::default()));
        let re = compile_regex(r"^\d{3}-\d{4}$").unwrap();
        assert!(regex_match(&re, "555-1234") && !regex_match(&re, "x555-1234"));
        assert!(compile_regex("(")
            .unwrap_err()
            .to_string()
            .starts_with("invalid regex `(`"));
        let tol = Tolerance { abs: 0.5, rel: 0.0 };
        assert!(numeric_match(10.4, 10.0, tol) && !numeric_match(10.6, 10.0, tol));
        let tol = Tolerance { abs: 0.0, rel: 0.01 };
        assert!(numeric_match(1009.0, 1000.0, tol) && !numeric_match(1011.0, 1000.0, tol));
        assert_eq!(parse_number("about 1,234.5 kg"), Some(1234.5));
        assert_eq!(parse_number("it is -3e2."), Some(-300.0));
        assert_eq!(parse_number("x = .5"), Some(0.5));
        assert_eq!(parse_number("none"), None);
        assert!((cosine(&[1.0, 0.0], &[1.0, 1.0]).unwrap() - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-6);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 1.0]), None);
        assert!(embedding_match(&[1.0, 0.0], &[1.0, 1.0], 0.7) && !embedding_match(&[1.0, 0.0], &[1.0, 1.0], 0.75));
        assert!(!embedding_match(&[1.0], &[1.0, 1.0], 0.0));
        assert!(contains_phrase("The capital of Italy is Rome.", "Rome") && contains_phrase("rome", " Rome. "));
        assert!(
            !contains_phrase("Romeo", "Rome") && !contains_phrase("18", "8") && contains_phrase("1 + 1 = 2", "1 + 1")
        );
    }

    #[test]
    fn metric_enum_scores_and_deserialises() {
        let m: Metric = serde_json::from_str(r#"{"kind":"exact","trim":true,"case_insensitive":true}"#).unwrap();
        assert_eq!(m.score("POSITIVE ", &Expected::Text("positive".into())).unwrap(), 1.0);
        let m: Metric = serde_json::from_str(r#"{"kind":"numeric","abs":0.01,"rel":0}"#).unwrap();
        assert_eq!(m.score("The answer is 42.", &Expected::Number(42.0)).unwrap(), 1.0);
        assert_eq!(m.score("41", &Expected::Number(42.0)).unwrap(), 0.0);
        let m = Metric::Regex { pattern: None };
        assert_eq!(
            m.score("id: AB12", &Expected::Text(r"[A-Z]{2}\d{2}".into())).unwrap(),
            1.0
        );
        let m = Metric::JsonF1;
        let exp: Expected = serde_json::from_str(r#"{"a":1,"b":"x"}"#).unwrap();
        assert_eq!(m.score(r#"{"a":1,"b":"y"}"#, &exp).unwrap(), 0.5);
        assert!(Metric::Embedding { threshold: 0.8 }.score("a", &exp).is_err());
        let m: Metric = serde_json::from_str(r#"{"kind":"contains"}"#).unwrap();
        assert_eq!(m.score("It is Paris.", &Expected::Text("paris".into())).unwrap(), 1.0);
    }
}
