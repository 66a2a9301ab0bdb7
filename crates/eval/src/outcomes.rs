//! What one pass of each tier over the data set records: per item, per tier, a
//! [`TierOutcome`]. Everything else (cascades, routers, calibration) is computed from
//! this table offline.

use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};

/// One tier's answer to one item, run alone.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TierOutcome {
    /// Correctness in [0, 1] (1/0 for right/wrong, or a fractional score such as F1).
    pub score: f64,
    /// The tier's confidence in its answer (the signal a cascade thresholds), if any.
    #[serde(default)]
    pub confidence: Option<f64>,
    /// What the call cost, in US dollars.
    pub cost_usd: f64,
    /// How long the call took, in milliseconds.
    pub latency_ms: f64,
    /// The call failed (timeout, invalid output...): never accepted before the last tier.
    #[serde(default)]
    pub error: bool,
}

impl TierOutcome {
    /// A right (`correct`) or wrong answer.
    pub fn new(correct: bool, confidence: Option<f64>, cost_usd: f64, latency_ms: f64) -> Self {
        TierOutcome {
            score: if correct { 1.0 } else { 0.0 },
            confidence,
            cost_usd,
            latency_ms,
            error: false,
        }
    }

    /// An answer with a fractional score.
    pub fn scored(score: f64, confidence: Option<f64>, cost_usd: f64, latency_ms: f64) -> Self {
        TierOutcome {
            score,
            confidence,
            cost_usd,
            latency_ms,
            error: false,
        }
    }

    /// A failed call (score 0); its cost and latency still count.
    pub fn failed(cost_usd: f64, latency_ms: f64) -> Self {
        TierOutcome {
            score: 0.0,
            confidence: None,
            cost_usd,
            latency_ms,
            error: true,
        }
    }

    /// Whether a cascade accepts this answer at `threshold`: no error and confidence ≥
    /// threshold. A missing confidence counts as 0, so it passes only a threshold ≤ 0.
    pub fn accepted_at(&self, threshold: f64) -> bool {
        !self.error && self.confidence.unwrap_or(0.0) >= threshold
    }

    fn check(&self) -> std::result::Result<(), String> {
        if !(0.0..=1.0).contains(&self.score) {
            return Err(format!("score {} is outside [0, 1]", self.score));
        }
        if self.confidence.is_some_and(|c| !c.is_finite()) {
            return Err("confidence is not a finite number".into());
        }
        if !(self.cost_usd >= 0.0 && self.cost_usd.is_finite() && self.latency_ms >= 0.0 && self.latency_ms.is_finite())
        {
            return Err(format!(
                "cost {} / latency {} must be finite and ≥ 0",
                self.cost_usd, self.latency_ms
            ));
        }
        Ok(())
    }
}

/// A router's decision for one item: the ladder tier to start at, and what routing cost.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Route {
    /// Index into [`Outcomes::tiers`].
    pub start: usize,
    /// Cost of the routing decision itself (e.g. a classifier call), US dollars.
    #[serde(default)]
    pub cost_usd: f64,
    /// Latency of the routing decision, milliseconds.
    #[serde(default)]
    pub latency_ms: f64,
}

/// All tiers' outcomes for one item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemOutcomes {
    /// The data set item's id.
    pub id: String,
    /// One outcome per tier, in [`Outcomes::tiers`] order.
    pub tiers: Vec<TierOutcome>,
    /// The router's prediction, when a router was run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<Route>,
}

/// The outcome table: tiers (ladder order, cheapest first) × items. Serialisable, so a
/// run can be stored and re-simulated later without calling any model.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Outcomes {
    /// Tier names in ladder order.
    pub tiers: Vec<String>,
    /// One row per item.
    pub items: Vec<ItemOutcomes>,
}

impl Outcomes {
    /// An empty table over these tiers.
    pub fn new(tiers: Vec<String>) -> Self {
        Outcomes {
            tiers,
            items: Vec::new(),
        }
    }

    /// Builds a table from one column per tier (what "run each tier over the data set"
    /// produces): `columns[t][i]` is tier `t` on item `ids[i]`.
    pub fn from_columns(tiers: Vec<String>, ids: Vec<String>, columns: Vec<Vec<TierOutcome>>) -> Result<Self> {
        if columns.len() != tiers.len() || columns.iter().any(|c| c.len() != ids.len()) {
            return Err(EvalError::Invalid(format!(
                "need {} columns of {} outcomes",
                tiers.len(),
                ids.len()
            )));
        }
        let mut out = Outcomes::new(tiers);
        for (i, id) in ids.into_iter().enumerate() {
            out.push(id, columns.iter().map(|c| c[i]).collect())?;
        }
        Ok(out)
    }

    /// Adds an item row (validated).
    pub fn push(&mut self, id: impl Into<String>, tiers: Vec<TierOutcome>) -> Result<()> {
        self.push_item(ItemOutcomes {
            id: id.into(),
            tiers,
            route: None,
        })
    }

    /// Adds an item row with its route, if any (validated).
    pub fn push_item(&mut self, item: ItemOutcomes) -> Result<()> {
        self.check_item(&item)?;
        self.items.push(item);
        Ok(())
    }

    /// Validates the whole table (use after deserialising).
    pub fn validate(&self) -> Result<()> {
        self.items.iter().try_for_each(|i| self.check_item(i))
    }

    fn check_item(&self, item: &ItemOutcomes) -> Result<()> {
        let bad = |msg: String| EvalError::Invalid(format!("item `{}`: {msg}", item.id));
        if item.tiers.len() != self.tiers.len() {
            return Err(bad(format!(
                "{} outcomes for {} tiers",
                item.tiers.len(),
                self.tiers.len()
            )));
        }
        for (t, o) in item.tiers.iter().enumerate() {
            o.check().map_err(|m| bad(format!("tier `{}`: {m}", self.tiers[t])))?;
        }
        if let Some(r) = item.route {
            if r.start >= self.tiers.len() {
                return Err(bad(format!(
                    "route starts at tier index {} of {}",
                    r.start,
                    self.tiers.len()
                )));
            }
        }
        Ok(())
    }

    /// Index of a tier by name.
    pub fn tier_index(&self, name: &str) -> Result<usize> {
        self.tiers
            .iter()
            .position(|t| t == name)
            .ok_or_else(|| EvalError::UnknownTier {
                tier: name.into(),
                known: self.tiers.join(", "),
            })
    }

    /// The rows whose id passes `keep` (e.g. the dev or the test split's ids).
    pub fn retain_ids(&self, keep: impl Fn(&str) -> bool) -> Outcomes {
        Outcomes {
            tiers: self.tiers.clone(),
            items: self.items.iter().filter(|i| keep(&i.id)).cloned().collect(),
        }
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// No items.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether every item has a route (router strategies need one).
    pub fn has_routes(&self) -> bool {
        !self.items.is_empty() && self.items.iter().all(|i| i.route.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_and_filters() {
        let tiers = vec!["s".to_string(), "l".to_string()];
        let ok = TierOutcome::new(true, Some(0.9), 0.001, 10.0);
        let mut o = Outcomes::new(tiers.clone());
        o.push("a", vec![ok, ok]).unwrap();
        assert!(o
            .push("b", vec![ok])
            .unwrap_err()
            .to_string()
            .contains("item `b`: 1 outcomes for 2 tiers"));
        let bad = TierOutcome::scored(1.5, None, 0.0, 0.0);
        assert!(o
            .push("c", vec![ok, bad])
            .unwrap_err()
            .to_string()
            .contains("tier `l`: score 1.5"));
        let route = Some(Route {
            start: 2,
            cost_usd: 0.0,
            latency_ms: 0.0,
        });
        assert!(o
            .push_item(ItemOutcomes {
                id: "d".into(),
                tiers: vec![ok, ok],
                route
            })
            .is_err());
        o.push("e", vec![ok, TierOutcome::failed(0.0, 5.0)]).unwrap();
        assert_eq!(o.retain_ids(|id| id == "e").items.len(), 1);
        assert_eq!(o.tier_index("l").unwrap(), 1);
        assert!(o.tier_index("m").unwrap_err().to_string().contains("known tiers: s, l"));
        let cols = Outcomes::from_columns(tiers, vec!["a".into()], vec![vec![ok], vec![ok]]).unwrap();
        assert_eq!(cols.items[0].tiers.len(), 2);
        assert!(!TierOutcome::new(true, None, 0.0, 0.0).accepted_at(0.1));
        assert!(TierOutcome::new(true, None, 0.0, 0.0).accepted_at(0.0));
        assert!(!TierOutcome::failed(0.0, 0.0).accepted_at(0.0));
    }
}
