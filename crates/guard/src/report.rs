//! [`GuardReport`]: what the guards did to one request or task run, as the answer, the
//! audit record and the metrics see it. Kinds, counts, scores and rules — never values.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::redact::Mode;

/// What the guardrails did on one run. Names kinds, counts, scores and rules — never values.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct GuardReport {
    /// PII spans acted on in the inputs, per kind.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub pii: BTreeMap<String, usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pii_mode: Option<Mode>,
    /// Highest injection probability over the inputs (when the check is on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub injection_score: Option<f32>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub injection_flagged: bool,
    /// `tier: rule` for every output that failed a guard (task runs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub output_violations: Vec<String>,
    /// PII the model wrote itself, redacted on the way out, per kind (plain requests under
    /// `output_pii`; a task reports it as an output violation instead).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub output_pii: BTreeMap<String, usize>,
}

impl GuardReport {
    pub fn is_empty(&self) -> bool {
        *self == GuardReport::default()
    }

    /// Counters for stats and metrics: `redacted.email`, `pseudonymized.phone`,
    /// `injection.flagged`, `output.too_long`, `output.pii.email`, ...
    pub fn events(&self) -> BTreeMap<String, u64> {
        let mut ev = BTreeMap::new();
        if let Some(mode) = self.pii_mode {
            for (kind, n) in &self.pii {
                *ev.entry(format!("{}.{kind}", mode.past_tense())).or_insert(0) += *n as u64;
            }
        }
        if self.injection_flagged {
            ev.insert("injection.flagged".into(), 1);
        }
        for v in &self.output_violations {
            let rule = v.rsplit(": ").next().unwrap_or(v);
            *ev.entry(format!("output.{rule}")).or_insert(0) += 1;
        }
        for (kind, n) in &self.output_pii {
            *ev.entry(format!("output.pii.{kind}")).or_insert(0) += *n as u64;
        }
        ev
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_name_modes_rules_and_output_kinds() {
        let r = GuardReport {
            pii: BTreeMap::from([("email".into(), 2)]),
            pii_mode: Some(Mode::Pseudonymize),
            injection_flagged: true,
            output_violations: vec!["local:smol: too_long".into()],
            output_pii: BTreeMap::from([("phone".into(), 1)]),
            ..Default::default()
        };
        let ev = r.events();
        assert_eq!(ev["pseudonymized.email"], 2);
        assert_eq!(ev["injection.flagged"], 1);
        assert_eq!(ev["output.too_long"], 1);
        assert_eq!(ev["output.pii.phone"], 1);
        assert!(GuardReport::default().is_empty());
        assert_eq!(serde_json::to_string(&GuardReport::default()).unwrap(), "{}");
    }
}
