//! The labelled prompt-injection set (`data/injection.jsonl`, embedded in the binary)
//! and binary precision / recall.

use serde::{Deserialize, Serialize};

use super::InjectionDetector;
use crate::error::{GuardError, Result};

/// The bundled labelled set.
pub const INJECTION_JSONL: &str = include_str!("../../data/injection.jsonl");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Label {
    Injection,
    Benign,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    Train,
    Test,
}

/// One labelled text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    pub text: String,
    pub label: Label,
    pub split: Split,
}

/// Parses `{"text", "label", "split"}` JSONL (blank lines ignored).
pub fn parse_dataset(jsonl: &str) -> Result<Vec<Example>> {
    jsonl
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| GuardError::Dataset {
                line: i + 1,
                reason: e.to_string(),
            })
        })
        .collect()
}

/// The bundled dataset.
pub fn load_dataset() -> Result<Vec<Example>> {
    parse_dataset(INJECTION_JSONL)
}

/// Confusion counts at a threshold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BinaryReport {
    pub tp: usize,
    pub fp: usize,
    pub tn: usize,
    pub fn_: usize,
}

impl BinaryReport {
    pub fn precision(&self) -> f64 {
        if self.tp + self.fp == 0 {
            1.0
        } else {
            self.tp as f64 / (self.tp + self.fp) as f64
        }
    }
    pub fn recall(&self) -> f64 {
        if self.tp + self.fn_ == 0 {
            1.0
        } else {
            self.tp as f64 / (self.tp + self.fn_) as f64
        }
    }
}

/// Scores `examples` and counts decisions at `threshold`.
pub fn evaluate_injection(det: &InjectionDetector, examples: &[Example], threshold: f32) -> Result<BinaryReport> {
    let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
    let mut r = BinaryReport::default();
    for (e, s) in examples.iter().zip(det.score_batch(&texts)?) {
        match (e.label, s >= threshold) {
            (Label::Injection, true) => r.tp += 1,
            (Label::Injection, false) => r.fn_ += 1,
            (Label::Benign, true) => r.fp += 1,
            (Label::Benign, false) => r.tn += 1,
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_parses_with_line_numbers() {
        let ok = parse_dataset("{\"text\":\"hi\",\"label\":\"benign\",\"split\":\"train\"}\n\n").unwrap();
        assert_eq!(ok[0].label, Label::Benign);
        let e = parse_dataset("\n{\"text\":\"hi\",\"label\":\"evil\",\"split\":\"train\"}").unwrap_err();
        assert!(matches!(e, GuardError::Dataset { line: 2, .. }));
        let r = BinaryReport {
            tp: 3,
            fp: 1,
            tn: 5,
            fn_: 3,
        };
        assert_eq!((r.precision(), r.recall()), (0.75, 0.5));
    }
}
