//! [`Guardrails`]: one policy shape for a task's `[guardrails]` table, an API key's policy
//! and the server's `[guard]` default — what to do with PII and injections in inputs, and
//! what an output must satisfy. Task settings win field by field over the key's, the
//! key's over the server's ([`Guardrails::or`]).

use serde::{Deserialize, Serialize};

use crate::output::OutputPolicy;
use crate::pii::PiiKind;
use crate::redact::{Mode, Policy};

/// What a detected prompt injection does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InjectionAction {
    /// Run anyway; the answer, the audit record and the stats say it was flagged.
    Flag,
    /// Refuse the request (HTTP 422).
    Block,
}

/// What a failed output guard does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnViolation {
    /// Discard the tier's answer and try the next tier (tasks); for plain chat, where there
    /// is no next tier, PII in the output is redacted and other violations fail.
    #[default]
    Escalate,
    /// Fail the request with an error naming the rules (never the text).
    Fail,
}

/// Default injection threshold on the detector's probability.
pub const DEFAULT_INJECTION_THRESHOLD: f32 = 0.5;

/// Input and output guardrails. Every field is optional; the empty policy does nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Guardrails {
    /// PII in inputs: `redact`, `mask`, `hash`, `block` or `pseudonymize` (placeholders go
    /// to the model, originals come back in the answer and are never stored).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pii: Option<Mode>,
    /// Act only on these kinds (default: every kind the detector knows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pii_kinds: Option<Vec<PiiKind>>,
    /// Prompt injection in inputs: `flag` or `block`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub injection: Option<InjectionAction>,
    /// Probability at or above which an input counts as an injection (default 0.5).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub injection_threshold: Option<f32>,
    /// The output must contain no PII (pseudonymisation placeholders are not PII).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_pii: Option<bool>,
    /// The output must be at most this many characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_max_chars: Option<usize>,
    /// Regexes the output must not match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_banned: Option<Vec<String>>,
    /// What a failed output guard does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_violation: Option<OnViolation>,
}

impl Guardrails {
    /// `self`, with every unset field taken from `fallback`.
    pub fn or(&self, fallback: &Guardrails) -> Guardrails {
        Guardrails {
            pii: self.pii.or(fallback.pii),
            pii_kinds: self.pii_kinds.clone().or_else(|| fallback.pii_kinds.clone()),
            injection: self.injection.or(fallback.injection),
            injection_threshold: self.injection_threshold.or(fallback.injection_threshold),
            output_pii: self.output_pii.or(fallback.output_pii),
            output_max_chars: self.output_max_chars.or(fallback.output_max_chars),
            output_banned: self.output_banned.clone().or_else(|| fallback.output_banned.clone()),
            on_violation: self.on_violation.or(fallback.on_violation),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Guardrails::default()
    }

    /// Checks values a deserialiser cannot: returns the field and the problem.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if let Some(t) = self.injection_threshold {
            if !(0.0..=1.0).contains(&t) {
                return Err(("injection_threshold", "must be between 0 and 1".into()));
            }
        }
        if self.output_max_chars == Some(0) {
            return Err(("output_max_chars", "must be at least 1".into()));
        }
        for (i, p) in self.output_banned.iter().flatten().enumerate() {
            if let Err(e) = regex::RegexBuilder::new(p)
                .size_limit(crate::output::BANNED_PATTERN_SIZE_LIMIT)
                .build()
            {
                return Err(("output_banned", format!("pattern #{i} does not compile: {e}")));
            }
        }
        Ok(())
    }

    pub fn injection_threshold(&self) -> f32 {
        self.injection_threshold.unwrap_or(DEFAULT_INJECTION_THRESHOLD)
    }

    /// The PII policy for inputs (`None` when PII handling is off). `salt` keys `hash` mode.
    pub fn pii_policy(&self, salt: &str) -> Option<Policy> {
        let mut p = Policy::new(self.pii?).with_salt(salt);
        if let Some(kinds) = &self.pii_kinds {
            p = p.only(kinds.iter().cloned());
        }
        Some(p)
    }

    /// The output checks: this policy's length, banned patterns and PII rule, plus the
    /// task's own label set or schema (already enforced by decoding; checked again here).
    pub fn output_policy(&self, labels: Option<Vec<String>>, json_schema: Option<serde_json::Value>) -> OutputPolicy {
        OutputPolicy {
            max_chars: self.output_max_chars,
            banned_patterns: self.output_banned.clone().unwrap_or_default(),
            labels,
            json_schema,
            pii: self.output_pii.unwrap_or(false),
        }
    }

    pub fn on_violation(&self) -> OnViolation {
        self.on_violation.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_fields_win_and_unset_ones_fall_back() {
        let task: Guardrails = toml::from_str("pii = \"pseudonymize\"\noutput_max_chars = 10").unwrap();
        let key: Guardrails =
            toml::from_str("pii = \"block\"\ninjection = \"block\"\ninjection_threshold = 0.7").unwrap();
        let g = task.or(&key);
        assert_eq!(g.pii, Some(Mode::Pseudonymize));
        assert_eq!(g.injection, Some(InjectionAction::Block));
        assert_eq!(g.injection_threshold(), 0.7);
        assert_eq!(g.output_max_chars, Some(10));
        assert!(Guardrails::default().is_empty() && !g.is_empty());
    }

    #[test]
    fn bad_values_name_their_field() {
        let bad: Guardrails = toml::from_str("injection_threshold = 1.5").unwrap();
        assert_eq!(bad.check().unwrap_err().0, "injection_threshold");
        let bad: Guardrails = toml::from_str("output_banned = [\"(unclosed\"]").unwrap();
        assert_eq!(bad.check().unwrap_err().0, "output_banned");
        assert!(toml::from_str::<Guardrails>("pii = \"shred\"").is_err());
        assert!(toml::from_str::<Guardrails>("piii = \"redact\"").is_err());
    }

    #[test]
    fn pii_policy_respects_kinds() {
        let g: Guardrails = toml::from_str("pii = \"redact\"\npii_kinds = [\"email\"]").unwrap();
        let p = g.pii_policy("s").unwrap();
        assert_eq!(p.mode_for(&PiiKind::Email), Some(Mode::Redact));
        assert_eq!(p.mode_for(&PiiKind::Phone), None);
        assert!(Guardrails::default().pii_policy("s").is_none());
    }
}
