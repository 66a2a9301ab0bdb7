//! Threshold calibration: a grid search over cascades, simulated offline.
//!
//! Candidate thresholds for a tier are 0.0 plus the quantiles of the confidences that
//! tier reported (errors excluded), so the grid follows the data and adapts to any
//! confidence scale. Every configuration evaluated is returned; choosing is
//! [`select`](crate::select)'s job, plotting is the report's.

use serde::{Deserialize, Serialize};

use crate::cascade::{simulate, Cascade, SimResult, Strategy};
use crate::error::{EvalError, Result};
use crate::outcomes::Outcomes;
use crate::stats::{percentile_sorted, CiOptions};

/// Which ordered subsets of the ladder become cascades.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Subsets {
    /// Runs of adjacent tiers (small>medium, medium>large, small>medium>large, ...).
    Contiguous,
    /// Every subsequence in ladder order (also small>large).
    All,
}

/// Grid-search settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrateOptions {
    /// Longest cascade considered (default 4).
    pub max_tiers: usize,
    /// Which subsets (default [`Subsets::All`]).
    pub subsets: Subsets,
    /// Quantiles of observed confidence used as thresholds, besides 0.0 (default 10:
    /// the 0th, 10th, ..., 100th percentiles, deduplicated).
    pub quantiles: usize,
    /// Also evaluate the router alone and router-started cascades, when every item has a
    /// route (default true).
    pub router: bool,
    /// Refuse grids larger than this many configurations (default 200,000).
    pub max_configs: usize,
    /// Interval settings for every point.
    pub ci: CiOptions,
}

impl Default for CalibrateOptions {
    fn default() -> Self {
        CalibrateOptions {
            max_tiers: 4,
            subsets: Subsets::All,
            quantiles: 10,
            router: true,
            max_configs: 200_000,
            ci: CiOptions::default(),
        }
    }
}

/// Candidate thresholds of one tier: 0.0 and the `quantiles` + 1 evenly spaced
/// quantiles (0 %, 100/q %, ..., 100 %) of its non-error confidences, sorted, unique.
pub fn candidate_thresholds(outcomes: &Outcomes, tier: usize, quantiles: usize) -> Vec<f64> {
    let mut conf: Vec<f64> = outcomes
        .items
        .iter()
        .filter_map(|i| i.tiers.get(tier))
        .filter(|o| !o.error)
        .filter_map(|o| o.confidence)
        .collect();
    conf.sort_by(f64::total_cmp);
    let mut out = vec![0.0];
    if !conf.is_empty() {
        let q = quantiles.max(1);
        out.extend((0..=q).map(|k| percentile_sorted(&conf, k as f64 / q as f64)));
    }
    out.sort_by(f64::total_cmp);
    out.dedup_by(|a, b| (*a - *b).abs() < 1e-12);
    out
}

/// Ordered tier subsets (as ladder indices) of length 1..=max_tiers.
pub fn tier_subsets(n_tiers: usize, max_tiers: usize, subsets: Subsets) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    match subsets {
        Subsets::Contiguous => {
            for len in 1..=max_tiers.min(n_tiers) {
                out.extend((0..=n_tiers - len).map(|s| (s..s + len).collect()));
            }
        }
        Subsets::All => {
            for mask in 1u64..(1u64 << n_tiers.min(20)) {
                if (mask.count_ones() as usize) <= max_tiers {
                    out.push((0..n_tiers).filter(|t| mask >> t & 1 == 1).collect());
                }
            }
            out.sort_by(|a: &Vec<usize>, b| a.len().cmp(&b.len()).then(a.cmp(b)));
        }
    }
    out
}

/// Evaluates every cascade of the grid (single tiers included) and, when routes are
/// present and `opts.router`, the router alone and each multi-tier cascade started by the
/// router. Returns all points, in generation order.
pub fn calibrate(outcomes: &Outcomes, opts: &CalibrateOptions) -> Result<Vec<SimResult>> {
    if outcomes.is_empty() || outcomes.tiers.is_empty() {
        return Err(EvalError::Empty("calibration needs items and tiers".into()));
    }
    outcomes.validate()?;
    let cands: Vec<Vec<f64>> = (0..outcomes.tiers.len())
        .map(|t| candidate_thresholds(outcomes, t, opts.quantiles))
        .collect();
    let subsets = tier_subsets(outcomes.tiers.len(), opts.max_tiers.max(1), opts.subsets);
    let routed = opts.router && outcomes.has_routes();
    let mut total = 0usize;
    for s in &subsets {
        let grid: usize = s[..s.len() - 1].iter().map(|&t| cands[t].len()).product();
        total = total.saturating_add(if routed && s.len() > 1 { 2 * grid } else { grid });
    }
    if total > opts.max_configs {
        return Err(EvalError::Invalid(format!(
            "{total} configurations exceed max_configs {}: lower quantiles or max_tiers, or use contiguous subsets",
            opts.max_configs
        )));
    }
    let mut points = Vec::with_capacity(total + 1);
    if routed {
        points.push(simulate(outcomes, &Strategy::Router, &opts.ci)?);
    }
    for s in &subsets {
        let tiers: Vec<String> = s.iter().map(|&t| outcomes.tiers[t].clone()).collect();
        let lists: Vec<&[f64]> = s[..s.len() - 1].iter().map(|&t| cands[t].as_slice()).collect();
        for thresholds in product(&lists) {
            let c = Cascade {
                tiers: tiers.clone(),
                thresholds,
            };
            if routed && s.len() > 1 {
                points.push(simulate(outcomes, &Strategy::RouterCascade(c.clone()), &opts.ci)?);
            }
            points.push(simulate(outcomes, &Strategy::Cascade(c), &opts.ci)?);
        }
    }
    Ok(points)
}

/// Cartesian product of the lists (one empty combination for no lists).
fn product(lists: &[&[f64]]) -> Vec<Vec<f64>> {
    let mut out = vec![Vec::new()];
    for list in lists {
        out = out
            .iter()
            .flat_map(|prefix| list.iter().map(move |&x| [prefix.as_slice(), &[x]].concat()))
            .collect();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcomes::TierOutcome;

    fn ladder() -> Outcomes {
        // small is right exactly when its confidence is ≥ 0.6; medium and large are always right.
        let mut o = Outcomes::new(vec!["small".into(), "medium".into(), "large".into()]);
        for i in 0..20 {
            let conf = i as f64 / 20.0;
            let s = TierOutcome::new(conf >= 0.6, Some(conf), 0.001, 50.0);
            let m = TierOutcome::new(i % 4 != 0, Some(0.5), 0.004, 200.0);
            let l = TierOutcome::new(true, Some(0.9), 0.02, 900.0);
            o.push(i.to_string(), vec![s, m, l]).unwrap();
        }
        o
    }

    #[test]
    fn candidates_subsets_and_product() {
        let o = ladder();
        let c = candidate_thresholds(&o, 0, 4);
        assert_eq!(c.len(), 5); // 0.0 (= the 0 % quantile), 25 %, 50 %, 75 %, 100 %
        assert_eq!((c[0], *c.last().unwrap()), (0.0, 0.95));
        assert_eq!(candidate_thresholds(&o, 1, 10), [0.0, 0.5]);
        assert_eq!(
            tier_subsets(3, 4, Subsets::Contiguous),
            [vec![0], vec![1], vec![2], vec![0, 1], vec![1, 2], vec![0, 1, 2]]
        );
        assert_eq!(
            tier_subsets(3, 2, Subsets::All),
            [vec![0], vec![1], vec![2], vec![0, 1], vec![0, 2], vec![1, 2]]
        );
        assert_eq!(tier_subsets(5, 4, Subsets::All).len(), 5 + 10 + 10 + 5);
        assert_eq!(product(&[&[1.0, 2.0], &[3.0]]), [vec![1.0, 3.0], vec![2.0, 3.0]]);
    }

    #[test]
    fn grid_finds_the_perfect_cheap_cascade() {
        let o = ladder();
        let opts = CalibrateOptions {
            quantiles: 20,
            ..Default::default()
        };
        let points = calibrate(&o, &opts).unwrap();
        // The 60 % quantile of 0.00..0.95 is 0.57: small keeps exactly its 8 right answers
        // (confidence ≥ 0.6) and sends the 12 others to large, so every answer is right.
        let best = points
            .iter()
            .filter(|p| p.quality.mean == 1.0)
            .min_by(|a, b| a.cost_per_1k.total_cmp(&b.cost_per_1k))
            .unwrap();
        assert_eq!(best.label, "small@0.57 > large");
        // 8 × $0.001 + 12 × $0.021 = $0.26 over 20 items → $13.00 per 1k.
        assert!((best.cost_per_1k - 13.0).abs() < 1e-9, "{}", best.cost_per_1k);
        assert!((best.escalation_rate - 0.6).abs() < 1e-12);
        assert_eq!(points.iter().filter(|p| p.strategy.single_tier().is_some()).count(), 3);
        let small = CalibrateOptions {
            max_configs: 10,
            ..Default::default()
        };
        assert!(calibrate(&o, &small)
            .unwrap_err()
            .to_string()
            .contains("exceed max_configs"));
    }
}
