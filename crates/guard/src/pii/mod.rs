//! PII detection: [`Detector`] finds [`PiiSpan`]s with the built-in recognisers plus
//! [`CustomRecognizer`]s from configuration, and resolves overlaps.

mod context;
mod dates;
mod kind;
mod phone;
mod recognizers;
mod secrets;
pub mod validate;

use std::collections::{BTreeMap, BTreeSet};

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

use crate::error::{GuardError, Result};
use crate::redact::{apply_policy, apply_policy_in, Policy, Redacted};
use crate::vault::Vault;

pub use kind::PiiKind;

/// A finding: the kind and the byte range `start..end` in the original text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PiiSpan {
    pub kind: PiiKind,
    pub start: usize,
    pub end: usize,
}

impl PiiSpan {
    /// The covered text (empty if the span does not fit `text`).
    pub fn text<'a>(&self, text: &'a str) -> &'a str {
        text.get(self.start..self.end).unwrap_or("")
    }
}

/// A regex recogniser from configuration. Its matches are reported with kind
/// `PiiKind::Custom(name)`; when the pattern has a capture group named `pii`, only that
/// group is the span (`(?i)employee\s+id\s*(?P<pii>E\d{6})`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomRecognizer {
    pub name: String,
    pub pattern: String,
}

/// Detector configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PiiConfig {
    /// Extra regex recognisers.
    pub custom: Vec<CustomRecognizer>,
    /// Built-in kinds not to look for at all.
    pub disabled: BTreeSet<PiiKind>,
}

/// Compiled size limit for a custom pattern: generous for real recognisers, small
/// enough that a pattern like `(a{1000}){1000}` is refused instead of eating memory.
pub const CUSTOM_PATTERN_SIZE_LIMIT: usize = 1 << 20;

/// A candidate before overlap resolution; `rank` breaks ties between equally long spans
/// (higher is more specific).
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    pub kind: PiiKind,
    pub start: usize,
    pub end: usize,
    pub rank: u8,
}

impl Candidate {
    pub(crate) fn new(kind: PiiKind, start: usize, end: usize, rank: u8) -> Candidate {
        Candidate { kind, start, end, rank }
    }
}

/// Finds PII in text. Built-in patterns are compiled once per process; custom ones when
/// the detector is made. `Send + Sync`, cheap to share.
#[derive(Debug, Clone)]
pub struct Detector {
    custom: Vec<(PiiKind, Regex, bool)>,
    disabled: BTreeSet<PiiKind>,
}

type Recognizer = fn(&str, &mut Vec<Candidate>);

const BUILTIN: [(PiiKind, Recognizer); 8] = [
    (PiiKind::Email, recognizers::emails),
    (PiiKind::Phone, phone::phones),
    (PiiKind::CreditCard, recognizers::cards),
    (PiiKind::Iban, recognizers::ibans),
    (PiiKind::Ssn, recognizers::ssns),
    (PiiKind::IpAddress, recognizers::ips),
    (PiiKind::Secret, secrets::secrets),
    (PiiKind::DateOfBirth, dates::dates_of_birth),
];

impl Detector {
    /// Compiles the custom recognisers. Errors name the recogniser whose name is not a
    /// snake_case identifier (or repeats / shadows a kind) or whose pattern fails.
    pub fn new(config: PiiConfig) -> Result<Detector> {
        if let Some(k) = config.disabled.iter().find(|k| matches!(k, PiiKind::Custom(_))) {
            let names: Vec<&str> = PiiKind::BUILTIN.iter().map(PiiKind::name).collect();
            return Err(GuardError::Config(format!(
                "`disabled` names {k:?}, which is not a built-in kind ({})",
                names.join(", ")
            )));
        }
        let mut custom = Vec::new();
        let mut seen = BTreeSet::new();
        for rec in config.custom {
            let kind = match rec.name.parse::<PiiKind>() {
                Ok(k @ PiiKind::Custom(_)) if seen.insert(rec.name.clone()) => k,
                _ => return Err(GuardError::InvalidName(rec.name)),
            };
            let re = RegexBuilder::new(&rec.pattern)
                .size_limit(CUSTOM_PATTERN_SIZE_LIMIT)
                .build()
                .map_err(|e| GuardError::InvalidPattern {
                    name: rec.name.clone(),
                    reason: e.to_string(),
                })?;
            let has_group = re.capture_names().any(|n| n == Some("pii"));
            custom.push((kind, re, has_group));
        }
        Ok(Detector {
            custom,
            disabled: config.disabled,
        })
    }

    /// All PII spans in `text`: non-overlapping, sorted by start, byte offsets into
    /// `text`. Overlaps keep the longer span; equal lengths keep the more specific
    /// recogniser (custom > validated identifiers > phone > entropy-only secrets).
    pub fn detect(&self, text: &str) -> Vec<PiiSpan> {
        let mut cands = Vec::new();
        for (kind, f) in BUILTIN {
            if !self.disabled.contains(&kind) {
                f(text, &mut cands);
            }
        }
        for (kind, re, has_group) in &self.custom {
            for c in re.captures_iter(text) {
                let m = if *has_group { c.name("pii") } else { c.get(0) };
                if let Some(m) = m.filter(|m| !m.is_empty()) {
                    cands.push(Candidate::new(kind.clone(), m.start(), m.end(), 6));
                }
            }
        }
        resolve(cands)
    }

    /// Counts of each kind found in `text`.
    pub fn counts(&self, text: &str) -> BTreeMap<PiiKind, usize> {
        let mut counts = BTreeMap::new();
        for s in self.detect(text) {
            *counts.entry(s.kind).or_insert(0) += 1;
        }
        counts
    }

    /// Detects and applies `policy` (redact / mask / hash / pseudonymise, or refuse with
    /// [`GuardError::Blocked`]).
    pub fn apply(&self, text: &str, policy: &Policy) -> Result<Redacted> {
        apply_policy(text, &self.detect(text), policy)
    }

    /// Like [`Detector::apply`], pseudonymising into `vault` so that the messages of one
    /// request share placeholders; the returned `Redacted::vault` is `None`.
    pub fn apply_in(&self, text: &str, policy: &Policy, vault: &mut Vault) -> Result<Redacted> {
        apply_policy_in(text, &self.detect(text), policy, vault)
    }
}

/// Greedy overlap resolution in O(n log n): longest first, then most specific, then
/// leftmost; accepted intervals are kept in a map keyed by start.
fn resolve(mut cands: Vec<Candidate>) -> Vec<PiiSpan> {
    cands.sort_by(|a, b| {
        (b.end - b.start)
            .cmp(&(a.end - a.start))
            .then(b.rank.cmp(&a.rank))
            .then(a.start.cmp(&b.start))
    });
    let mut taken: BTreeMap<usize, (usize, PiiKind)> = BTreeMap::new();
    for c in cands {
        if c.end <= c.start {
            continue;
        }
        let left_overlaps = taken
            .range(..=c.start)
            .next_back()
            .is_some_and(|(_, (end, _))| *end > c.start);
        let right_overlaps = taken.range(c.start..c.end).next().is_some();
        if !left_overlaps && !right_overlaps {
            taken.insert(c.start, (c.end, c.kind));
        }
    }
    taken
        .into_iter()
        .map(|(start, (end, kind))| PiiSpan { kind, start, end })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlaps_keep_longer_then_more_specific() {
        let c = |k, s, e, r| Candidate::new(k, s, e, r);
        let spans = resolve(vec![
            c(PiiKind::Phone, 0, 10, 2),
            c(PiiKind::CreditCard, 0, 19, 5),
            c(PiiKind::Secret, 30, 40, 1),
            c(PiiKind::Email, 30, 40, 5),
            c(PiiKind::Ssn, 25, 31, 5),
        ]);
        let kinds: Vec<_> = spans.iter().map(|s| (s.kind.clone(), s.start)).collect();
        assert_eq!(kinds, vec![(PiiKind::CreditCard, 0), (PiiKind::Email, 30)]);
    }

    #[test]
    fn custom_recognisers_and_errors() {
        let cfg = PiiConfig {
            custom: vec![CustomRecognizer {
                name: "employee_id".into(),
                pattern: r"(?i)employee\s+(?P<pii>E\d{6})".into(),
            }],
            ..Default::default()
        };
        let d = Detector::new(cfg).unwrap();
        let t = "Employee E123456 reported it";
        let spans = d.detect(t);
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].text(t), "E123456");
        assert_eq!(spans[0].kind, PiiKind::Custom("employee_id".into()));

        let bad = |name: &str, pattern: &str| {
            Detector::new(PiiConfig {
                custom: vec![CustomRecognizer {
                    name: name.into(),
                    pattern: pattern.into(),
                }],
                ..Default::default()
            })
            .unwrap_err()
        };
        let e = bad("ticket", "(unclosed");
        assert!(
            matches!(&e, GuardError::InvalidPattern { name, .. } if name == "ticket"),
            "{e}"
        );
        assert!(matches!(bad("email", "x"), GuardError::InvalidName(_)));
        assert!(matches!(
            bad("big", "(?:a{1000}){1000}"),
            GuardError::InvalidPattern { .. }
        ));
    }

    #[test]
    fn disabled_kinds_are_not_reported() {
        let mut disabled = BTreeSet::new();
        disabled.insert(PiiKind::Email);
        let d = Detector::new(PiiConfig {
            disabled,
            ..Default::default()
        })
        .unwrap();
        assert!(d.detect("write to ann@example.org").is_empty());
    }
}
