//! JSON field-level precision / recall / F1.
//!
//! Both sides are flattened to `path = value` pairs (objects by key, `a.b`; arrays by
//! index, `a[0]`; an empty object or array is itself a leaf). A predicted pair is a true
//! positive when the expected side has the same path with an equal value: strings after
//! trim + lowercase, numbers by value (`1` = `1.0`), booleans and null exactly.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A leaf value, normalised for comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FlatValue {
    /// Trimmed, lowercased string.
    Str(String),
    /// Any JSON number.
    Num(f64),
    /// true / false.
    Bool(bool),
    /// null.
    Null,
    /// `{}` or `[]`.
    Empty,
}

/// Flattens a JSON value to sorted `(path, value)` pairs. A scalar at the top has path `""`.
pub fn flatten_json(v: &Value) -> Vec<(String, FlatValue)> {
    let mut out = Vec::new();
    walk(v, String::new(), &mut out);
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn walk(v: &Value, path: String, out: &mut Vec<(String, FlatValue)>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                walk(child, p, out);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for (i, child) in a.iter().enumerate() {
                walk(child, format!("{path}[{i}]"), out);
            }
        }
        Value::Object(_) | Value::Array(_) => out.push((path, FlatValue::Empty)),
        Value::String(s) => out.push((path, FlatValue::Str(s.trim().to_lowercase()))),
        Value::Number(n) => out.push((path, FlatValue::Num(n.as_f64().unwrap_or(f64::NAN)))),
        Value::Bool(b) => out.push((path, FlatValue::Bool(*b))),
        Value::Null => out.push((path, FlatValue::Null)),
    }
}

/// Field-level counts and scores of one prediction (or a micro-average of many).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct FieldScore {
    /// Predicted pairs that match an expected pair.
    pub tp: usize,
    /// Number of predicted pairs.
    pub predicted: usize,
    /// Number of expected pairs.
    pub expected: usize,
    /// tp / predicted (1 when both sides are empty, 0 when only the prediction is).
    pub precision: f64,
    /// tp / expected (1 when both sides are empty).
    pub recall: f64,
    /// Harmonic mean of precision and recall (0 when both are 0).
    pub f1: f64,
}

impl FieldScore {
    /// Scores from counts.
    pub fn from_counts(tp: usize, predicted: usize, expected: usize) -> FieldScore {
        let ratio = |num: usize, den: usize| {
            if den == 0 {
                if predicted + expected == 0 {
                    1.0
                } else {
                    0.0
                }
            } else {
                num as f64 / den as f64
            }
        };
        let (precision, recall) = (ratio(tp, predicted), ratio(tp, expected));
        let f1 = if precision + recall == 0.0 {
            0.0
        } else {
            2.0 * precision * recall / (precision + recall)
        };
        FieldScore {
            tp,
            predicted,
            expected,
            precision,
            recall,
            f1,
        }
    }

    /// Micro-average: sums the counts of many items, then scores.
    pub fn micro(scores: &[FieldScore]) -> FieldScore {
        let sum = |f: fn(&FieldScore) -> usize| scores.iter().map(f).sum();
        FieldScore::from_counts(sum(|s| s.tp), sum(|s| s.predicted), sum(|s| s.expected))
    }
}

/// Field-level score of a predicted value against an expected value.
pub fn json_fields(predicted: &Value, expected: &Value) -> FieldScore {
    let p = flatten_json(predicted);
    let e = flatten_json(expected);
    let tp = p
        .iter()
        .filter(|(path, v)| {
            e.binary_search_by(|(ep, _)| ep.as_str().cmp(path.as_str()))
                .is_ok_and(|i| e[i].1 == *v)
        })
        .count();
    FieldScore::from_counts(tp, p.len(), e.len())
}

/// [`json_fields`] on model output text. Text that is not JSON (after stripping a
/// Markdown code fence) counts as predicting nothing: precision 0, recall 0.
pub fn json_fields_text(output: &str, expected: &Value) -> FieldScore {
    let t = output.trim();
    let t = t
        .strip_prefix("```json")
        .or_else(|| t.strip_prefix("```"))
        .and_then(|s| s.trim_end().strip_suffix("```"))
        .unwrap_or(t);
    match serde_json::from_str::<Value>(t.trim()) {
        Ok(v) => json_fields(&v, expected),
        Err(_) => FieldScore::from_counts(0, 0, flatten_json(expected).len().max(1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flattens_paths_and_normalises_values() {
        let f = flatten_json(&json!({"a": {"b": " Hi "}, "l": [1, {"x": null}], "e": []}));
        let paths: Vec<&str> = f.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["a.b", "e", "l[0]", "l[1].x"]);
        assert_eq!(f[0].1, FlatValue::Str("hi".into()));
        assert_eq!(f[1].1, FlatValue::Empty);
    }

    #[test]
    fn field_precision_recall_f1() {
        let exp = json!({"name": "Ada Lovelace", "age": 36, "tags": ["math", "poetry"]});
        let pred = json!({"name": " ada lovelace", "age": 36.0, "tags": ["math"], "extra": true});
        let s = json_fields(&pred, &exp);
        // Predicted: name ✓, age ✓, tags[0] ✓, extra ✗ → P = 3/4; expected 4 → R = 3/4.
        assert_eq!((s.tp, s.predicted, s.expected), (3, 4, 4));
        assert!((s.precision - 0.75).abs() < 1e-12 && (s.recall - 0.75).abs() < 1e-12 && (s.f1 - 0.75).abs() < 1e-12);
        let s = json_fields(&json!({"age": "36"}), &exp);
        assert_eq!(s.tp, 0, "a string is not a number");
        assert_eq!(json_fields(&json!({}), &json!({})).f1, 1.0);
        let s = json_fields_text("```json\n{\"age\": 36}\n```", &exp);
        assert_eq!((s.tp, s.precision, s.recall), (1, 1.0, 0.25));
        let s = json_fields_text("sorry, no", &exp);
        assert_eq!((s.precision, s.recall, s.f1), (0.0, 0.0, 0.0));
        let m = FieldScore::micro(&[FieldScore::from_counts(1, 2, 2), FieldScore::from_counts(3, 3, 4)]);
        assert_eq!((m.tp, m.predicted, m.expected), (4, 5, 6));
    }
}
