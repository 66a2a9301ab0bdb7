//! Evaluation of the PII detector against a labelled set (bundled:
//! `data/pii_eval.jsonl`). Each line is `{"text": …, "spans": [{"kind", "text"}],
//! "near_miss": kind?}`; spans are given by their text, and a prediction counts as a
//! true positive when its kind and covered text match a gold span (multiset match).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::error::{GuardError, Result};
use crate::pii::{Detector, PiiKind};

/// The bundled labelled PII set.
pub const PII_EVAL_JSONL: &str = include_str!("../data/pii_eval.jsonl");

/// A gold span: kind and exact text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GoldSpan {
    pub kind: PiiKind,
    pub text: String,
}

/// One labelled line. `near_miss` names a kind the text is designed to tempt a
/// detector into reporting falsely (it must not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvalLine {
    pub text: String,
    #[serde(default)]
    pub spans: Vec<GoldSpan>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub near_miss: Option<PiiKind>,
}

/// Parses JSONL (blank lines ignored). Every gold span's text must occur in its line.
pub fn parse_eval_jsonl(jsonl: &str) -> Result<Vec<EvalLine>> {
    let mut out = Vec::new();
    for (i, line) in jsonl.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let l: EvalLine = serde_json::from_str(line).map_err(|e| GuardError::Dataset {
            line: i + 1,
            reason: e.to_string(),
        })?;
        if let Some(s) = l.spans.iter().find(|s| !l.text.contains(&s.text) || s.text.is_empty()) {
            return Err(GuardError::Dataset {
                line: i + 1,
                reason: format!("{} span text does not occur in the line", s.kind),
            });
        }
        out.push(l);
    }
    Ok(out)
}

/// The bundled set, parsed.
pub fn load_pii_eval() -> Result<Vec<EvalLine>> {
    parse_eval_jsonl(PII_EVAL_JSONL)
}

/// True/false positives and false negatives for one kind (or overall).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Score {
    pub tp: usize,
    pub fp: usize,
    pub fn_: usize,
}

impl Score {
    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }
    pub fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
    fn add(&mut self, o: Score) {
        self.tp += o.tp;
        self.fp += o.fp;
        self.fn_ += o.fn_;
    }
}

/// With nothing to find and nothing found, precision and recall are 1.
fn ratio(num: usize, den: usize) -> f64 {
    if den == 0 {
        1.0
    } else {
        num as f64 / den as f64
    }
}

/// A disagreement, for debugging the detector or the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub line: usize,
    pub kind: PiiKind,
    pub text: String,
    /// `true`: predicted but not in gold (false positive); `false`: missed.
    pub spurious: bool,
}

/// Per-kind and overall scores.
#[derive(Debug, Clone, Default)]
pub struct EvalReport {
    pub per_kind: BTreeMap<PiiKind, Score>,
    pub overall: Score,
    pub lines: usize,
    pub gold_spans: usize,
    pub near_miss_lines: usize,
    /// Near-miss lines where the near-missed kind was nevertheless reported.
    pub near_miss_failures: usize,
    pub mismatches: Vec<Mismatch>,
}

/// Runs `detector` over `lines` and scores exact (kind, text) matches.
pub fn evaluate(detector: &Detector, lines: &[EvalLine]) -> EvalReport {
    let mut r = EvalReport {
        lines: lines.len(),
        ..Default::default()
    };
    for (i, line) in lines.iter().enumerate() {
        let mut gold: Vec<(PiiKind, &str)> = line.spans.iter().map(|s| (s.kind.clone(), s.text.as_str())).collect();
        let pred: Vec<(PiiKind, &str)> = detector
            .detect(&line.text)
            .into_iter()
            .map(|s| (s.kind.clone(), s.text(&line.text)))
            .collect();
        r.gold_spans += gold.len();
        if let Some(k) = &line.near_miss {
            r.near_miss_lines += 1;
            if pred.iter().any(|(pk, t)| pk == k && !gold.contains(&(pk.clone(), *t))) {
                r.near_miss_failures += 1;
            }
        }
        for p in pred {
            let entry = r.per_kind.entry(p.0.clone()).or_default();
            if let Some(pos) = gold.iter().position(|g| *g == p) {
                gold.swap_remove(pos);
                entry.tp += 1;
            } else {
                entry.fp += 1;
                r.mismatches.push(Mismatch {
                    line: i + 1,
                    kind: p.0,
                    text: p.1.into(),
                    spurious: true,
                });
            }
        }
        for g in gold {
            r.per_kind.entry(g.0.clone()).or_default().fn_ += 1;
            r.mismatches.push(Mismatch {
                line: i + 1,
                kind: g.0,
                text: g.1.into(),
                spurious: false,
            });
        }
    }
    let mut overall = Score::default();
    for s in r.per_kind.values() {
        overall.add(*s);
    }
    r.overall = overall;
    r
}

impl EvalReport {
    /// A markdown table: one row per kind, then overall.
    pub fn to_markdown(&self) -> String {
        let mut s = String::from(
            "| kind | gold | TP | FP | FN | precision | recall | F1 |\n|---|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        let mut row = |name: &str, sc: &Score| {
            let _ = writeln!(
                s,
                "| {name} | {} | {} | {} | {} | {:.3} | {:.3} | {:.3} |",
                sc.tp + sc.fn_,
                sc.tp,
                sc.fp,
                sc.fn_,
                sc.precision(),
                sc.recall(),
                sc.f1()
            );
        };
        for (k, sc) in &self.per_kind {
            row(k.name(), sc);
        }
        row("**overall**", &self.overall);
        let _ = write!(
            s,
            "\n{} lines, {} gold spans, {} near-miss lines ({} with a false report of the near-missed kind).\n",
            self.lines, self.gold_spans, self.near_miss_lines, self.near_miss_failures
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pii::PiiConfig;

    #[test]
    fn scores_count_exact_kind_and_text() {
        let lines = parse_eval_jsonl(concat!(
            r#"{"text": "mail a@x.com or b@y.org", "spans": [{"kind": "email", "text": "a@x.com"}]}"#,
            "\n",
            r#"{"text": "nothing here", "spans": [{"kind": "phone", "text": "nothing"}]}"#,
            "\n",
            r#"{"text": "card 4242 4242 4242 4241", "near_miss": "credit_card"}"#,
            "\n",
        ))
        .unwrap();
        let d = Detector::new(PiiConfig::default()).unwrap();
        let r = evaluate(&d, &lines);
        assert_eq!(r.per_kind[&PiiKind::Email], Score { tp: 1, fp: 1, fn_: 0 });
        assert_eq!(r.per_kind[&PiiKind::Phone], Score { tp: 0, fp: 0, fn_: 1 });
        assert_eq!(r.overall, Score { tp: 1, fp: 1, fn_: 1 });
        assert_eq!((r.near_miss_lines, r.near_miss_failures), (1, 0));
        assert!((r.overall.f1() - 0.5).abs() < 1e-9);
        assert!(r
            .to_markdown()
            .contains("| email | 1 | 1 | 1 | 0 | 0.500 | 1.000 | 0.667 |"));
    }

    #[test]
    fn bad_lines_are_reported_with_their_number() {
        let e = parse_eval_jsonl("{\"text\": \"x\", \"spans\": [{\"kind\": \"email\", \"text\": \"y\"}]}").unwrap_err();
        assert!(matches!(e, GuardError::Dataset { line: 1, .. }));
        assert!(parse_eval_jsonl("\n{not json").is_err());
    }
}
