//! Regression gate: compare a run with a stored baseline.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::cascade::SimResult;
use crate::error::{EvalError, Result};

/// The headline numbers of one evaluation run, stored as the baseline for later runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Task name.
    pub task: String,
    /// Configuration label.
    pub config: String,
    /// Split the numbers are from (normally "test").
    pub split: String,
    /// Items evaluated.
    pub n: usize,
    /// Mean quality.
    pub quality: f64,
    /// Interval lower bound.
    pub quality_lo: f64,
    /// Interval upper bound.
    pub quality_hi: f64,
    /// US dollars per 1,000 runs.
    pub cost_per_1k: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 95th-percentile latency, ms.
    pub p95_ms: f64,
    /// Escalation rate.
    pub escalation_rate: f64,
}

impl RunSummary {
    /// Summary of a simulation result.
    pub fn from_result(task: &str, split: &str, r: &SimResult) -> RunSummary {
        RunSummary {
            task: task.into(),
            config: r.label.clone(),
            split: split.into(),
            n: r.n,
            quality: r.quality.mean,
            quality_lo: r.quality.lo,
            quality_hi: r.quality.hi,
            cost_per_1k: r.cost_per_1k,
            p50_ms: r.p50_ms,
            p95_ms: r.p95_ms,
            escalation_rate: r.escalation_rate,
        }
    }

    /// Reads a summary written by [`RunSummary::save`].
    pub fn load(path: &Path) -> Result<RunSummary> {
        let text = std::fs::read_to_string(path).map_err(|e| EvalError::io(path, e))?;
        Ok(serde_json::from_str(&text)?)
    }

    /// Writes the summary as pretty JSON.
    pub fn save(&self, path: &Path) -> Result<()> {
        std::fs::write(path, serde_json::to_string_pretty(self)? + "\n").map_err(|e| EvalError::io(path, e))
    }
}

/// Gate thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GateOptions {
    /// Largest allowed absolute quality drop (0.02 = two points).
    pub tolerance: f64,
    /// Largest allowed cost ratio current / baseline (e.g. 1.5); `None` = cost unchecked.
    pub max_cost_factor: Option<f64>,
}

/// The verdict of [`gate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateResult {
    /// No check failed.
    pub passed: bool,
    /// One line per failed check (empty when passed).
    pub reasons: Vec<String>,
    /// Informational lines (different config, split or sample size).
    pub notes: Vec<String>,
}

/// Fails when quality dropped by more than `tolerance` (absolute).
pub fn gate(baseline: &RunSummary, current: &RunSummary, tolerance: f64) -> GateResult {
    gate_with(
        baseline,
        current,
        &GateOptions {
            tolerance,
            max_cost_factor: None,
        },
    )
}

/// [`gate`] with an optional cost check: fails when cost per 1k rose by more than
/// `max_cost_factor` (a zero-cost baseline fails on any cost).
pub fn gate_with(baseline: &RunSummary, current: &RunSummary, opts: &GateOptions) -> GateResult {
    let mut reasons = Vec::new();
    let drop = baseline.quality - current.quality;
    if drop > opts.tolerance + 1e-12 {
        reasons.push(format!(
            "quality dropped {:.4} → {:.4} (−{:.4}, tolerance {:.4})",
            baseline.quality, current.quality, drop, opts.tolerance
        ));
    }
    if let Some(f) = opts.max_cost_factor {
        let (b, c) = (baseline.cost_per_1k, current.cost_per_1k);
        let too_dear = if b > 0.0 { c > b * f * (1.0 + 1e-12) } else { c > 0.0 };
        if too_dear {
            let ratio = if b > 0.0 {
                format!("×{:.2}", c / b)
            } else {
                "from zero".into()
            };
            reasons.push(format!("cost per 1k rose ${b:.4} → ${c:.4} ({ratio}, limit ×{f:.2})"));
        }
    }
    let mut notes = Vec::new();
    if baseline.config != current.config {
        notes.push(format!(
            "configuration changed: `{}` → `{}`",
            baseline.config, current.config
        ));
    }
    if baseline.split != current.split || baseline.n != current.n {
        notes.push(format!(
            "compared {} items ({}) with {} items ({})",
            current.n, current.split, baseline.n, baseline.split
        ));
    }
    GateResult {
        passed: reasons.is_empty(),
        reasons,
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(quality: f64, cost: f64) -> RunSummary {
        RunSummary {
            task: "t".into(),
            config: "a".into(),
            split: "test".into(),
            n: 100,
            quality,
            quality_lo: 0.0,
            quality_hi: 1.0,
            cost_per_1k: cost,
            p50_ms: 1.0,
            p95_ms: 2.0,
            escalation_rate: 0.1,
        }
    }

    #[test]
    fn gate_quality_and_cost() {
        assert!(gate(&run(0.90, 1.0), &run(0.89, 5.0), 0.02).passed);
        let g = gate(&run(0.90, 1.0), &run(0.87, 1.0), 0.02);
        assert!(
            !g.passed && g.reasons[0].contains("quality dropped 0.9000 → 0.8700"),
            "{:?}",
            g.reasons
        );
        let opts = GateOptions {
            tolerance: 0.02,
            max_cost_factor: Some(1.5),
        };
        assert!(gate_with(&run(0.9, 1.0), &run(0.9, 1.5), &opts).passed);
        let g = gate_with(&run(0.9, 1.0), &run(0.95, 1.6), &opts);
        assert!(!g.passed && g.reasons[0].contains("×1.60"), "{:?}", g.reasons);
        assert!(!gate_with(&run(0.9, 0.0), &run(0.9, 0.1), &opts).passed);
        assert!(gate_with(&run(0.9, 0.0), &run(0.9, 0.0), &opts).passed);
        let mut other = run(0.9, 1.0);
        other.config = "b".into();
        assert_eq!(gate(&run(0.9, 1.0), &other, 0.0).notes.len(), 1);
    }

    #[test]
    fn summary_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("baseline.json");
        run(0.9, 1.0).save(&p).unwrap();
        assert_eq!(RunSummary::load(&p).unwrap(), run(0.9, 1.0));
    }
}
