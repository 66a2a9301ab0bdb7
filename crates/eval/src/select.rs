//! Right-sizing: the cheapest configuration that meets the quality bar.

use serde::{Deserialize, Serialize};

use crate::cascade::{simulate, SimResult, Strategy};
use crate::error::{EvalError, Result};
use crate::outcomes::Outcomes;
use crate::stats::CiOptions;

/// What "good enough" means.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct QualityBar {
    /// Minimum quality, e.g. 0.85 for "accuracy ≥ 85 %".
    pub min_quality: f64,
    /// Require the interval's lower bound (not just the mean) to reach the bar: fewer
    /// false passes on small dev sets (default false).
    #[serde(default)]
    pub use_lower_bound: bool,
}

impl QualityBar {
    /// A bar on the mean.
    pub fn mean(min_quality: f64) -> QualityBar {
        QualityBar {
            min_quality,
            use_lower_bound: false,
        }
    }

    /// Whether a point meets the bar.
    pub fn met_by(&self, p: &SimResult) -> bool {
        let q = if self.use_lower_bound {
            p.quality.lo
        } else {
            p.quality.mean
        };
        q >= self.min_quality - 1e-12
    }
}

/// The outcome of [`select`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    /// The chosen configuration's dev-split result.
    pub chosen: SimResult,
    /// Whether it meets the bar (false: nothing did; this is the best-quality one).
    pub meets_bar: bool,
    /// The bar applied.
    pub bar: QualityBar,
    /// How many configurations met the bar.
    pub n_meeting: usize,
    /// How many were considered.
    pub n_considered: usize,
    /// One human sentence on why this one.
    pub reason: String,
}

/// Chooses the cheapest configuration meeting `bar` (ties: lower p95 latency, then
/// higher quality, then fewer tiers, then label). If none meets it, returns the
/// best-quality one (ties: cheaper) with `meets_bar: false`.
pub fn select(points: &[SimResult], bar: &QualityBar) -> Result<Selection> {
    if points.is_empty() {
        return Err(EvalError::Empty("no configurations to choose from".into()));
    }
    let tiers = |p: &SimResult| match &p.strategy {
        Strategy::Cascade(c) | Strategy::RouterCascade(c) => c.tiers.len(),
        Strategy::Router => usize::MAX,
    };
    let meeting: Vec<&SimResult> = points.iter().filter(|p| bar.met_by(p)).collect();
    let what = if bar.use_lower_bound { "lower bound" } else { "quality" };
    let (chosen, meets_bar, reason) = if let Some(best) = meeting.iter().copied().min_by(|a, b| {
        a.cost_per_1k
            .total_cmp(&b.cost_per_1k)
            .then(a.p95_ms.total_cmp(&b.p95_ms))
            .then(b.quality.mean.total_cmp(&a.quality.mean))
            .then(tiers(a).cmp(&tiers(b)))
            .then(a.label.cmp(&b.label))
    }) {
        let r = format!(
            "cheapest of {} configurations with {what} ≥ {:.3}: quality {:.3}, ${:.4} per 1k runs",
            meeting.len(),
            bar.min_quality,
            best.quality.mean,
            best.cost_per_1k
        );
        (best, true, r)
    } else {
        let best = points
            .iter()
            .max_by(|a, b| {
                a.quality
                    .mean
                    .total_cmp(&b.quality.mean)
                    .then(b.cost_per_1k.total_cmp(&a.cost_per_1k))
            })
            .expect("non-empty");
        let r = format!(
            "no configuration reaches {what} {:.3}; best available is {:.3} ({}), below the bar",
            bar.min_quality, best.quality.mean, best.label
        );
        (best, false, r)
    };
    Ok(Selection {
        chosen: chosen.clone(),
        meets_bar,
        bar: *bar,
        n_meeting: meeting.len(),
        n_considered: points.len(),
        reason,
    })
}

/// Evaluates a chosen strategy on another set of outcomes (the test split): the
/// held-out number to report. Same as [`simulate`].
pub fn evaluate_on(strategy: &Strategy, outcomes: &Outcomes, ci: &CiOptions) -> Result<SimResult> {
    simulate(outcomes, strategy, ci)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::cascade::Cascade;
    use crate::stats::{CiMethod, Estimate};

    pub(crate) fn point(label: &str, quality: f64, cost: f64, p95: f64) -> SimResult {
        let tiers: Vec<String> = label.split('>').map(|s| s.trim().to_string()).collect();
        let thresholds = vec![0.5; tiers.len() - 1];
        SimResult {
            label: label.into(),
            strategy: Strategy::Cascade(Cascade { tiers, thresholds }),
            n: 100,
            quality: Estimate {
                mean: quality,
                lo: quality - 0.05,
                hi: quality + 0.05,
                n: 100,
                method: CiMethod::Wilson,
            },
            cost_per_1k: cost,
            p50_ms: p95 / 2.0,
            p95_ms: p95,
            mean_ms: p95 / 2.0,
            escalation_rate: 0.0,
            error_rate: 0.0,
            answered: vec![],
        }
    }

    #[test]
    fn cheapest_meeting_the_bar_with_latency_tiebreak() {
        let pts = [
            point("a", 0.80, 1.0, 100.0),
            point("b", 0.86, 3.0, 900.0),
            point("c", 0.90, 3.0, 500.0),
            point("d", 0.95, 9.0, 800.0),
        ];
        let s = select(&pts, &QualityBar::mean(0.85)).unwrap();
        assert_eq!((s.chosen.label.as_str(), s.meets_bar, s.n_meeting), ("c", true, 3));
        let s = select(
            &pts,
            &QualityBar {
                min_quality: 0.86,
                use_lower_bound: true,
            },
        )
        .unwrap();
        assert_eq!(s.chosen.label, "d", "only d's lower bound (0.90) reaches 0.86");
        let s = select(&pts, &QualityBar::mean(0.99)).unwrap();
        assert_eq!((s.chosen.label.as_str(), s.meets_bar), ("d", false));
        assert!(s.reason.contains("below the bar"), "{}", s.reason);
        assert!(select(&[], &QualityBar::mean(0.5)).is_err());
    }
}
