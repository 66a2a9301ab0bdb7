//! A judge's verdicts against a reference metric: agreement and Cohen's kappa (pooled over
//! every judged answer and per tier), and what judging cost — evaluation cost, kept out of
//! the tiers' serving cost.

use serde::{Deserialize, Serialize};

use super::labels::{judge_agreement, Agreement};

/// A score at or above this is a pass, for the judge (P(yes)) and the reference alike.
pub const PASS: f64 = 0.5;

/// One tier's answers: judge against reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TierAgreement {
    /// The tier whose answers were judged.
    pub tier: String,
    /// `None` when the tier answered no item.
    pub agreement: Option<Agreement>,
}

/// The `judge` block of a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeReport {
    /// The judging tier, e.g. `local:qwen2.5-1.5b`.
    pub judge: String,
    /// The metric the verdicts are compared with (the task's default, e.g. `exact`).
    pub reference: String,
    /// Answers judged (every tier's answered items).
    pub calls: usize,
    /// What judging cost in total, US dollars (not part of any tier's cost).
    pub cost_usd: f64,
    /// Over every judged answer; `None` when there was none.
    pub agreement: Option<Agreement>,
    /// Per tier, in ladder order.
    pub per_tier: Vec<TierAgreement>,
}

impl JudgeReport {
    /// From `(judge score, reference score)` pairs per tier; each side passes at [`PASS`].
    pub fn new(judge: &str, reference: &str, per_tier: &[(String, Vec<(f64, f64)>)], cost_usd: f64) -> JudgeReport {
        let agree = |pairs: &[(f64, f64)]| -> Option<Agreement> {
            let (j, r): (Vec<bool>, Vec<bool>) = pairs.iter().map(|&(j, r)| (j >= PASS, r >= PASS)).unzip();
            judge_agreement(&j, &r).ok()
        };
        let all: Vec<(f64, f64)> = per_tier.iter().flat_map(|(_, p)| p.iter().copied()).collect();
        JudgeReport {
            judge: judge.into(),
            reference: reference.into(),
            calls: all.len(),
            cost_usd,
            agreement: agree(&all),
            per_tier: per_tier
                .iter()
                .map(|(t, p)| TierAgreement {
                    tier: t.clone(),
                    agreement: agree(p),
                })
                .collect(),
        }
    }

    /// The one line the terminal and the HTML report show.
    pub fn line(&self) -> String {
        let agreement = match &self.agreement {
            Some(a) => format!(
                "agreement {:.1}% · Cohen's kappa {:.2} over {} answers",
                a.agreement * 100.0,
                a.kappa,
                a.n
            ),
            None => "no answer to compare".into(),
        };
        format!(
            "judge {} vs {}: {agreement} · judging cost {} (evaluation cost, not in the tiers' cost)",
            self.judge,
            self.reference,
            crate::fmt_cost(self.cost_usd)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_tiers_and_thresholds_both_sides() {
        // Tier a: judge 0.9/0.2/0.7 vs reference 1/0/0 → agree 2 of 3. Tier b: 0.6 vs 1 → agree.
        let r = JudgeReport::new(
            "local:j",
            "contains",
            &[
                ("a".into(), vec![(0.9, 1.0), (0.2, 0.0), (0.7, 0.0)]),
                ("b".into(), vec![(0.6, 1.0)]),
                ("c".into(), vec![]),
            ],
            0.25,
        );
        let a = r.agreement.unwrap();
        // Pooled: judge passes 3 of 4, reference 2 of 4, agree 3 → p_e = 0.75·0.5 + 0.25·0.5 = 0.5, kappa 0.5.
        assert_eq!((r.calls, a.n), (4, 4));
        assert!(
            (a.agreement - 0.75).abs() < 1e-12 && (a.kappa - 0.5).abs() < 1e-12,
            "{a:?}"
        );
        assert!((r.per_tier[0].agreement.unwrap().agreement - 2.0 / 3.0).abs() < 1e-12);
        assert!(r.per_tier[2].agreement.is_none());
        let line = r.line();
        assert!(
            line.contains("agreement 75.0%") && line.contains("kappa 0.50") && line.contains("$0.25"),
            "{line}"
        );
        assert!(JudgeReport::new("j", "exact", &[], 0.0).line().contains("no answer"));
    }
}
