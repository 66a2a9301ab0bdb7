//! Offline simulation of cascades and routers over an [`Outcomes`] table.
//!
//! A cascade walks its tiers in order and accepts the first answer that did not error
//! and whose confidence ≥ that tier's threshold; the last tier always answers (an error
//! there scores 0). The cost and latency of every tier tried add up.

use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};
use crate::outcomes::Outcomes;
use crate::stats::{percentile_sorted, CiOptions, Estimate};

/// An ordered list of tiers with a confidence threshold for each but the last.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cascade {
    /// Tier names, tried in this order.
    pub tiers: Vec<String>,
    /// `thresholds[i]` applies to `tiers[i]`; one fewer than tiers.
    pub thresholds: Vec<f64>,
}

impl Cascade {
    /// A cascade; errors unless there is ≥ 1 tier and exactly one threshold per tier but the last.
    pub fn new(tiers: Vec<String>, thresholds: Vec<f64>) -> Result<Cascade> {
        if tiers.is_empty() || thresholds.len() + 1 != tiers.len() || thresholds.iter().any(|t| t.is_nan()) {
            return Err(EvalError::Invalid(format!(
                "a cascade of {} tiers needs {} thresholds, got {:?}",
                tiers.len(),
                tiers.len().saturating_sub(1),
                thresholds
            )));
        }
        Ok(Cascade { tiers, thresholds })
    }

    /// One tier alone.
    pub fn single(tier: impl Into<String>) -> Cascade {
        Cascade {
            tiers: vec![tier.into()],
            thresholds: vec![],
        }
    }

    /// Display name, e.g. `small@0.80 > large`.
    pub fn label(&self) -> String {
        let mut parts: Vec<String> = self
            .tiers
            .iter()
            .zip(&self.thresholds)
            .map(|(t, th)| format!("{t}@{th:.2}"))
            .collect();
        parts.push(self.tiers.last().cloned().unwrap_or_default());
        parts.join(" > ")
    }
}

/// How items are answered: a cascade, a router alone, or a router that starts a cascade.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Strategy {
    /// Every item starts at the cascade's first tier.
    Cascade(Cascade),
    /// Each item is answered by its routed tier alone (needs [`Route`](crate::Route)s).
    Router,
    /// Each item starts the cascade at its routed tier: the first cascade tier at or
    /// above it in the ladder (the last cascade tier if none is).
    RouterCascade(Cascade),
}

impl Strategy {
    /// Display name.
    pub fn label(&self) -> String {
        match self {
            Strategy::Cascade(c) => c.label(),
            Strategy::Router => "router".into(),
            Strategy::RouterCascade(c) => format!("router > {}", c.label()),
        }
    }

    /// Tiers the strategy may call (for a router: every tier of the ladder).
    pub fn tiers<'a>(&'a self, outcomes: &'a Outcomes) -> &'a [String] {
        match self {
            Strategy::Cascade(c) | Strategy::RouterCascade(c) => &c.tiers,
            Strategy::Router => &outcomes.tiers,
        }
    }

    /// Whether this is a single tier alone.
    pub fn single_tier(&self) -> Option<&str> {
        match self {
            Strategy::Cascade(c) if c.tiers.len() == 1 => Some(&c.tiers[0]),
            _ => None,
        }
    }
}

/// Share of items answered by one tier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TierShare {
    /// Tier name.
    pub tier: String,
    /// Share of all items whose final answer came from this tier.
    pub share: f64,
}

/// What a strategy achieves on a set of outcomes: one point of the calibration grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimResult {
    /// Display name ([`Strategy::label`]).
    pub label: String,
    /// The configuration.
    pub strategy: Strategy,
    /// Number of items.
    pub n: usize,
    /// Mean correctness with confidence interval.
    pub quality: Estimate,
    /// Mean cost × 1000, US dollars per 1,000 runs.
    pub cost_per_1k: f64,
    /// Median end-to-end latency (all tiers tried), ms.
    pub p50_ms: f64,
    /// 95th-percentile latency, ms.
    pub p95_ms: f64,
    /// Mean latency, ms.
    pub mean_ms: f64,
    /// Share of items not answered by the tier they started at.
    pub escalation_rate: f64,
    /// Share of items whose final answer was an error.
    pub error_rate: f64,
    /// Share answered per tier, in the strategy's tier order.
    pub answered: Vec<TierShare>,
}

/// Simulates `strategy` over `outcomes`.
pub fn simulate(outcomes: &Outcomes, strategy: &Strategy, ci: &CiOptions) -> Result<SimResult> {
    if outcomes.is_empty() {
        return Err(EvalError::Empty("no items in the outcomes".into()));
    }
    let routes = || -> Result<Vec<crate::Route>> {
        outcomes
            .items
            .iter()
            .map(|i| {
                i.route
                    .ok_or_else(|| EvalError::Invalid(format!("item `{}` has no route", i.id)))
            })
            .collect()
    };
    let (path, thresholds, starts, routes): (Vec<usize>, Vec<f64>, Vec<usize>, Vec<crate::Route>) = match strategy {
        Strategy::Cascade(c) => (
            resolve(outcomes, c)?,
            c.thresholds.clone(),
            vec![0; outcomes.len()],
            vec![],
        ),
        Strategy::Router => {
            // Every ladder tier is on the path; each walk starts at the routed tier and stops there.
            let r = routes()?;
            (
                (0..outcomes.tiers.len()).collect(),
                vec![],
                r.iter().map(|x| x.start).collect(),
                r,
            )
        }
        Strategy::RouterCascade(c) => {
            let path = resolve(outcomes, c)?;
            let r = routes()?;
            let starts = r
                .iter()
                .map(|x| path.iter().position(|&t| t >= x.start).unwrap_or(path.len() - 1))
                .collect();
            (path, c.thresholds.clone(), starts, r)
        }
    };
    let alone = matches!(strategy, Strategy::Router);
    let n = outcomes.len();
    let (mut scores, mut costs, mut lats) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let mut answered = vec![0usize; path.len()];
    let (mut escalated, mut errors) = (0usize, 0usize);
    for (i, item) in outcomes.items.iter().enumerate() {
        let (mut cost, mut lat) = routes.get(i).map_or((0.0, 0.0), |r| (r.cost_usd, r.latency_ms));
        let mut pos = starts[i];
        loop {
            let o = &item.tiers[path[pos]];
            cost += o.cost_usd;
            lat += o.latency_ms;
            if alone || pos + 1 == path.len() || o.accepted_at(thresholds[pos]) {
                break;
            }
            pos += 1;
        }
        let o = &item.tiers[path[pos]];
        scores.push(if o.error { 0.0 } else { o.score });
        errors += o.error as usize;
        escalated += (pos != starts[i]) as usize;
        answered[pos] += 1;
        costs.push(cost);
        lats.push(lat);
    }
    let nf = n as f64;
    lats.sort_by(f64::total_cmp);
    Ok(SimResult {
        label: strategy.label(),
        strategy: strategy.clone(),
        n,
        quality: Estimate::of_scores(&scores, ci),
        cost_per_1k: costs.iter().sum::<f64>() / nf * 1000.0,
        p50_ms: percentile_sorted(&lats, 0.5),
        p95_ms: percentile_sorted(&lats, 0.95),
        mean_ms: lats.iter().sum::<f64>() / nf,
        escalation_rate: escalated as f64 / nf,
        error_rate: errors as f64 / nf,
        answered: path
            .iter()
            .zip(&answered)
            .map(|(&t, &a)| TierShare {
                tier: outcomes.tiers[t].clone(),
                share: a as f64 / nf,
            })
            .collect(),
    })
}

/// [`simulate`] of a plain cascade.
pub fn simulate_cascade(outcomes: &Outcomes, cascade: &Cascade, ci: &CiOptions) -> Result<SimResult> {
    simulate(outcomes, &Strategy::Cascade(cascade.clone()), ci)
}

fn resolve(outcomes: &Outcomes, c: &Cascade) -> Result<Vec<usize>> {
    Cascade::new(c.tiers.clone(), c.thresholds.clone())?;
    c.tiers.iter().map(|t| outcomes.tier_index(t)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcomes::{ItemOutcomes, Route, TierOutcome};

    /// 4 items × 2 tiers. small: $0.001, 100 ms; large: $0.010, 1000 ms.
    fn table() -> Outcomes {
        let s = |ok, c| TierOutcome::new(ok, Some(c), 0.001, 100.0);
        let l = |ok| TierOutcome::new(ok, Some(0.99), 0.010, 1000.0);
        let mut o = Outcomes::new(vec!["small".into(), "large".into()]);
        o.push("1", vec![s(true, 0.9), l(true)]).unwrap(); // small keeps, right
        o.push("2", vec![s(false, 0.8), l(true)]).unwrap(); // small keeps at 0.7, wrong
        o.push("3", vec![s(false, 0.3), l(true)]).unwrap(); // escalates, large right
        o.push("4", vec![TierOutcome::failed(0.001, 100.0), l(false)]).unwrap(); // error → escalates, large wrong
        o
    }

    #[test]
    fn hand_computed_cascade() {
        let c = Cascade::new(vec!["small".into(), "large".into()], vec![0.7]).unwrap();
        assert_eq!(c.label(), "small@0.70 > large");
        let r = simulate_cascade(&table(), &c, &CiOptions::default()).unwrap();
        // Answers: 1 small ✓, 2 small ✗, 3 large ✓, 4 large ✗ → quality 0.5.
        assert_eq!(r.quality.mean, 0.5);
        // Cost: 0.001 + 0.001 + 0.011 + 0.011 = 0.024 over 4 → $6 per 1k.
        assert!((r.cost_per_1k - 6.0).abs() < 1e-9, "{}", r.cost_per_1k);
        // Latencies 100, 100, 1100, 1100 → p50 600, p95 1100.
        assert_eq!((r.p50_ms, r.p95_ms, r.mean_ms), (600.0, 1100.0, 600.0));
        assert_eq!(r.escalation_rate, 0.5);
        assert_eq!(r.error_rate, 0.0);
        assert_eq!(r.answered.iter().map(|s| s.share).collect::<Vec<_>>(), [0.5, 0.5]);

        // Threshold 0.85: item 2 escalates too → 3/4 right, cost (0.001 + 3·0.011)/4·1000 = 8.5.
        let c = Cascade::new(vec!["small".into(), "large".into()], vec![0.85]).unwrap();
        let r = simulate_cascade(&table(), &c, &CiOptions::default()).unwrap();
        assert_eq!((r.quality.mean, r.escalation_rate), (0.75, 0.75));
        assert!((r.cost_per_1k - 8.5).abs() < 1e-9, "{}", r.cost_per_1k);
        // Threshold 0: the small tier answers all but the errored item.
        let c = Cascade::new(vec!["small".into(), "large".into()], vec![0.0]).unwrap();
        let r = simulate_cascade(&table(), &c, &CiOptions::default()).unwrap();
        assert_eq!((r.quality.mean, r.escalation_rate), (0.25, 0.25));
    }

    #[test]
    fn single_tiers_and_errors_on_last_tier() {
        let o = table();
        let r = simulate_cascade(&o, &Cascade::single("small"), &CiOptions::default()).unwrap();
        assert_eq!((r.quality.mean, r.error_rate, r.escalation_rate), (0.25, 0.25, 0.0));
        assert!((r.cost_per_1k - 1.0).abs() < 1e-9);
        let r = simulate_cascade(&o, &Cascade::single("large"), &CiOptions::default()).unwrap();
        assert_eq!(r.quality.mean, 0.75);
        assert!(simulate_cascade(&o, &Cascade::single("huge"), &CiOptions::default()).is_err());
        assert!(Cascade::new(vec!["a".into(), "b".into()], vec![]).is_err());
    }

    #[test]
    fn router_alone_and_router_cascade() {
        let mut o = Outcomes::new(vec![]);
        let base = table();
        o.tiers = base.tiers.clone();
        for (i, it) in base.items.into_iter().enumerate() {
            let start = [0, 1, 0, 1][i];
            o.push_item(ItemOutcomes {
                route: Some(Route {
                    start,
                    cost_usd: 0.0001,
                    latency_ms: 5.0,
                }),
                ..it
            })
            .unwrap();
        }
        let ci = CiOptions::default();
        let r = simulate(&o, &Strategy::Router, &ci).unwrap();
        // 1 small ✓, 2 large ✓, 3 small ✗, 4 large ✗ → 0.5; cost (0.001+0.010)·2/4 + 0.0001 → 5.6 per 1k.
        assert_eq!((r.quality.mean, r.escalation_rate), (0.5, 0.0));
        assert!((r.cost_per_1k - 5.6).abs() < 1e-9, "{}", r.cost_per_1k);
        assert_eq!(r.label, "router");
        let c = Cascade::new(vec!["small".into(), "large".into()], vec![0.7]).unwrap();
        let r = simulate(&o, &Strategy::RouterCascade(c), &ci).unwrap();
        // 1 small ✓; 2 starts large ✓; 3 small conf 0.3 → large ✓; 4 starts large ✗ → 0.75.
        assert_eq!((r.quality.mean, r.escalation_rate), (0.75, 0.25));
        // Latencies 105, 1005, 1105, 1005 → p95 = 1005 + 0.85·100.
        assert!((r.p95_ms - 1090.0).abs() < 1e-9, "{}", r.p95_ms);
        assert!(simulate(&table(), &Strategy::Router, &ci)
            .unwrap_err()
            .to_string()
            .contains("has no route"));
    }
}
