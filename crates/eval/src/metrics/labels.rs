//! Classification report (accuracy, per-label P/R/F1, macro-F1, confusion matrix) and
//! judge agreement (agreement rate, Cohen's kappa).

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;

use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};

/// Precision, recall and F1 of one label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelStats {
    /// The label.
    pub label: String,
    /// Correct predictions of this label / all predictions of it (0 if never predicted).
    pub precision: f64,
    /// Correct predictions of this label / items whose expected label it is (0 if none).
    pub recall: f64,
    /// Harmonic mean (0 when precision + recall is 0).
    pub f1: f64,
    /// Items whose expected label it is.
    pub support: usize,
}

/// The full report of [`label_metrics`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelReport {
    /// Number of items.
    pub n: usize,
    /// Share of items predicted exactly right.
    pub accuracy: f64,
    /// Unweighted mean of per-label F1 over `labels`.
    pub macro_f1: f64,
    /// Every label seen, expected or predicted, sorted.
    pub labels: Vec<String>,
    /// One entry per label, in `labels` order.
    pub per_label: Vec<LabelStats>,
    /// `confusion[i][j]`: items with expected `labels[i]` predicted as `labels[j]`.
    pub confusion: Vec<Vec<usize>>,
}

/// Classification report over `(expected, predicted)` pairs. Labels are compared as
/// given (normalise them first, e.g. trim + lowercase). The label set is the union of
/// expected and predicted labels, as scikit-learn does, so an invalid predicted label
/// appears with F1 0 and lowers the macro-F1.
pub fn label_metrics<S: AsRef<str>>(pairs: &[(S, S)]) -> LabelReport {
    let labels: Vec<String> = pairs
        .iter()
        .flat_map(|(e, p)| [e.as_ref(), p.as_ref()])
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(str::to_string)
        .collect();
    let index: HashMap<&str, usize> = labels.iter().enumerate().map(|(i, l)| (l.as_str(), i)).collect();
    let k = labels.len();
    let mut confusion = vec![vec![0usize; k]; k];
    for (e, p) in pairs {
        confusion[index[e.as_ref()]][index[p.as_ref()]] += 1;
    }
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let per_label: Vec<LabelStats> = (0..k)
        .map(|i| {
            let tp = confusion[i][i];
            let support: usize = confusion[i].iter().sum();
            let predicted: usize = confusion.iter().map(|row| row[i]).sum();
            let (precision, recall) = (ratio(tp, predicted), ratio(tp, support));
            let f1 = if precision + recall == 0.0 {
                0.0
            } else {
                2.0 * precision * recall / (precision + recall)
            };
            LabelStats {
                label: labels[i].clone(),
                precision,
                recall,
                f1,
                support,
            }
        })
        .collect();
    let correct: usize = (0..k).map(|i| confusion[i][i]).sum();
    let macro_f1 = if k == 0 {
        0.0
    } else {
        per_label.iter().map(|s| s.f1).sum::<f64>() / k as f64
    };
    LabelReport {
        n: pairs.len(),
        accuracy: ratio(correct, pairs.len()),
        macro_f1,
        labels,
        per_label,
        confusion,
    }
}

/// How well a judge agrees with exact labels on the same items.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    /// Number of items.
    pub n: usize,
    /// Share of items where judge and reference agree (observed agreement p_o).
    pub agreement: f64,
    /// Agreement expected by chance from the two marginals (p_e).
    pub chance: f64,
    /// Cohen's kappa, (p_o − p_e) / (1 − p_e). When p_e = 1 (both sides constant and
    /// equal) kappa is defined here as 1.
    pub kappa: f64,
}

/// Agreement rate and Cohen's kappa of `judge` verdicts against `reference` labels
/// (e.g. the judge's pass/fail against exact-match correctness), item by item.
pub fn judge_agreement<T: Eq + Hash>(judge: &[T], reference: &[T]) -> Result<Agreement> {
    if judge.len() != reference.len() {
        return Err(EvalError::Invalid(format!(
            "judge has {} verdicts but reference has {}",
            judge.len(),
            reference.len()
        )));
    }
    let n = judge.len();
    if n == 0 {
        return Err(EvalError::Empty("no judged items".into()));
    }
    let agree = judge.iter().zip(reference).filter(|(a, b)| a == b).count();
    let mut marg: HashMap<&T, (usize, usize)> = HashMap::new();
    for (a, b) in judge.iter().zip(reference) {
        marg.entry(a).or_default().0 += 1;
        marg.entry(b).or_default().1 += 1;
    }
    let nf = n as f64;
    let po = agree as f64 / nf;
    let pe: f64 = marg.values().map(|&(a, b)| (a as f64 / nf) * (b as f64 / nf)).sum();
    let kappa = if (1.0 - pe).abs() < 1e-12 {
        1.0
    } else {
        (po - pe) / (1.0 - pe)
    };
    Ok(Agreement {
        n,
        agreement: po,
        chance: pe,
        kappa,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_report_by_hand() {
        // expected → predicted: a→a, a→a, a→b, b→b, b→a, c→c, c→x
        let pairs = [
            ("a", "a"),
            ("a", "a"),
            ("a", "b"),
            ("b", "b"),
            ("b", "a"),
            ("c", "c"),
            ("c", "x"),
        ];
        let r = label_metrics(&pairs);
        assert_eq!(r.labels, ["a", "b", "c", "x"]);
        assert!((r.accuracy - 4.0 / 7.0).abs() < 1e-12);
        assert_eq!(r.confusion[0], [2, 1, 0, 0]);
        assert_eq!(r.confusion[2], [0, 0, 1, 1]);
        let a = &r.per_label[0];
        // a: tp 2, predicted 3, support 3 → P = R = F1 = 2/3.
        assert!((a.precision - 2.0 / 3.0).abs() < 1e-12 && (a.recall - 2.0 / 3.0).abs() < 1e-12 && a.support == 3);
        let b = &r.per_label[1]; // tp 1, predicted 2, support 2 → 0.5
        assert!((b.f1 - 0.5).abs() < 1e-12);
        let c = &r.per_label[2]; // tp 1, predicted 1, support 2 → P 1, R 0.5, F1 2/3
        assert!((c.precision - 1.0).abs() < 1e-12 && (c.f1 - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!((r.per_label[3].f1, r.per_label[3].support), (0.0, 0));
        assert!((r.macro_f1 - (2.0 / 3.0 + 0.5 + 2.0 / 3.0 + 0.0) / 4.0).abs() < 1e-12);
        assert_eq!(label_metrics::<&str>(&[]).accuracy, 0.0);
    }

    #[test]
    fn kappa_by_hand() {
        // 10 items; judge yes 6 / reference yes 5; agree on 4 yes + 3 no = 0.7.
        let judge = [1, 1, 1, 1, 1, 1, 0, 0, 0, 0];
        let refr = [1, 1, 1, 1, 0, 0, 1, 0, 0, 0];
        let a = judge_agreement(&judge, &refr).unwrap();
        // p_e = 0.6·0.5 + 0.4·0.5 = 0.5; kappa = (0.7 − 0.5) / 0.5 = 0.4.
        assert!((a.agreement - 0.7).abs() < 1e-12 && (a.chance - 0.5).abs() < 1e-12 && (a.kappa - 0.4).abs() < 1e-12);
        assert_eq!(judge_agreement(&[true, true], &[true, true]).unwrap().kappa, 1.0);
        assert!(judge_agreement(&[true], &[true, false]).is_err());
        assert!(judge_agreement::<bool>(&[], &[]).is_err());
    }
}
