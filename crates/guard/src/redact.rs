//! Applying a [`Policy`] to detected spans: redact, mask, hash, block or pseudonymise,
//! per kind.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::{describe_counts, GuardError, Result};
use crate::mask::mask;
use crate::pii::{PiiKind, PiiSpan};
use crate::vault::Vault;

/// What to do with a span.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// `[EMAIL]`.
    Redact,
    /// `j***@example.com`, `**** **** **** 4242` (rules in [`crate::mask`]).
    Mask,
    /// `[EMAIL:3f9a1c2b]`: first 8 hex digits of HMAC-SHA256 keyed by the salt over (kind,
    /// value). Stable for a salt, so equal values can be correlated without being revealed.
    Hash,
    /// Refuse the whole text with [`GuardError::Blocked`].
    Block,
    /// `<EMAIL_1>`, reversible through the request's [`Vault`].
    Pseudonymize,
}

impl Mode {
    /// What happened to a span under this mode (`redacted`, `pseudonymized`): the prefix of
    /// the guard counters in answers, stats and metrics (`redacted.email`).
    pub fn past_tense(self) -> &'static str {
        match self {
            Mode::Redact => "redacted",
            Mode::Mask => "masked",
            Mode::Hash => "hashed",
            Mode::Block => "blocked",
            Mode::Pseudonymize => "pseudonymized",
        }
    }
}

/// Which kinds to act on and how. Kinds outside `enabled` are left in the text.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Policy {
    pub default_mode: Mode,
    /// Per-kind overrides of `default_mode`.
    pub modes: BTreeMap<PiiKind, Mode>,
    /// `None`: every kind the detector finds.
    pub enabled: Option<BTreeSet<PiiKind>>,
    /// Salt for [`Mode::Hash`]; must be non-empty when any kind hashes.
    pub hash_salt: String,
}

impl Default for Policy {
    fn default() -> Self {
        Policy::new(Mode::Redact)
    }
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("default_mode", &self.default_mode)
            .field("modes", &self.modes)
            .field("enabled", &self.enabled)
            .field("hash_salt", &if self.hash_salt.is_empty() { "" } else { "<set>" })
            .finish()
    }
}

impl Policy {
    /// Every kind, one mode.
    pub fn new(default_mode: Mode) -> Policy {
        Policy {
            default_mode,
            modes: BTreeMap::new(),
            enabled: None,
            hash_salt: String::new(),
        }
    }

    /// Overrides the mode of one kind.
    pub fn with_mode(mut self, kind: PiiKind, mode: Mode) -> Policy {
        self.modes.insert(kind, mode);
        self
    }

    /// Acts only on these kinds.
    pub fn only(mut self, kinds: impl IntoIterator<Item = PiiKind>) -> Policy {
        self.enabled = Some(kinds.into_iter().collect());
        self
    }

    pub fn with_salt(mut self, salt: impl Into<String>) -> Policy {
        self.hash_salt = salt.into();
        self
    }

    /// The mode for `kind`, or `None` when the kind is not enabled.
    pub fn mode_for(&self, kind: &PiiKind) -> Option<Mode> {
        if self.enabled.as_ref().is_some_and(|e| !e.contains(kind)) {
            return None;
        }
        Some(self.modes.get(kind).copied().unwrap_or(self.default_mode))
    }

    fn validate(&self) -> Result<()> {
        let hashes = self.default_mode == Mode::Hash || self.modes.values().any(|m| *m == Mode::Hash);
        if hashes && self.hash_salt.is_empty() {
            return Err(GuardError::Config("hash mode needs a non-empty hash_salt".into()));
        }
        Ok(())
    }
}

/// The result of applying a policy.
#[derive(Debug, Clone)]
pub struct Redacted {
    /// The text with every enabled span replaced.
    pub text: String,
    /// How many spans of each enabled kind were replaced.
    pub counts: BTreeMap<PiiKind, usize>,
    /// Present when something was pseudonymised (with [`crate::Detector::apply`]).
    pub vault: Option<Vault>,
}

/// HMAC-SHA256 keyed by the salt (a secret, e.g. derived from the server key): without it a
/// short value cannot be recovered from its tag by hashing guesses.
fn hash_tag(salt: &str, kind: &PiiKind, value: &str) -> String {
    use hmac::Mac;
    let mut h = <hmac::Hmac<Sha256> as Mac>::new_from_slice(salt.as_bytes()).expect("HMAC takes any key length");
    h.update(kind.name().as_bytes());
    h.update(&[0]);
    h.update(value.as_bytes());
    let digest = h.finalize().into_bytes();
    format!("[{}:{}]", kind.tag(), hex::encode(&digest[..4]))
}

/// Applies `policy` to `spans` of `text` (as returned by `Detector::detect`), using a
/// fresh vault; `Redacted::vault` is `Some` when anything was pseudonymised.
pub(crate) fn apply_policy(text: &str, spans: &[PiiSpan], policy: &Policy) -> Result<Redacted> {
    let mut vault = Vault::new();
    let mut out = apply_policy_in(text, spans, policy, &mut vault)?;
    if !vault.is_empty() {
        out.vault = Some(vault);
    }
    Ok(out)
}

/// Like [`apply_policy`] but pseudonymises into `vault` (one vault across the messages
/// of a request keeps placeholders consistent); `Redacted::vault` is `None`.
pub(crate) fn apply_policy_in(text: &str, spans: &[PiiSpan], policy: &Policy, vault: &mut Vault) -> Result<Redacted> {
    policy.validate()?;
    let acted: Vec<(&PiiSpan, Mode)> = spans
        .iter()
        .filter_map(|s| policy.mode_for(&s.kind).map(|m| (s, m)))
        .filter(|(s, _)| text.get(s.start..s.end).is_some())
        .collect();
    let mut blocked = BTreeMap::new();
    for (s, m) in &acted {
        if *m == Mode::Block {
            *blocked.entry(s.kind.clone()).or_insert(0) += 1;
        }
    }
    if !blocked.is_empty() {
        tracing::debug!(found = %describe_counts(&blocked), "PII policy blocked a text");
        return Err(GuardError::Blocked { counts: blocked });
    }
    let mut counts = BTreeMap::new();
    let mut result = String::with_capacity(text.len());
    let mut pos = 0;
    for (s, mode) in acted {
        if s.start < pos {
            continue; // overlapping input spans: keep the first
        }
        let value = &text[s.start..s.end];
        result.push_str(&text[pos..s.start]);
        match mode {
            // Block never gets here (returned above); redacting is the safe fallback.
            Mode::Redact | Mode::Block => result.push_str(&format!("[{}]", s.kind.tag())),
            Mode::Mask => result.push_str(&mask(&s.kind, value)),
            Mode::Hash => result.push_str(&hash_tag(&policy.hash_salt, &s.kind, value)),
            Mode::Pseudonymize => result.push_str(&vault.placeholder(&s.kind, value, text)),
        }
        *counts.entry(s.kind.clone()).or_insert(0) += 1;
        pos = s.end;
    }
    result.push_str(&text[pos..]);
    Ok(Redacted {
        text: result,
        counts,
        vault: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(kind: PiiKind, text: &str, needle: &str) -> PiiSpan {
        let start = text.find(needle).unwrap();
        PiiSpan {
            kind,
            start,
            end: start + needle.len(),
        }
    }

    #[test]
    fn per_kind_modes_and_enabled_kinds() {
        let t = "a@x.com paid with 4242 4242 4242 4242 from 10.0.0.1";
        let spans = vec![
            span(PiiKind::Email, t, "a@x.com"),
            span(PiiKind::CreditCard, t, "4242 4242 4242 4242"),
            span(PiiKind::IpAddress, t, "10.0.0.1"),
        ];
        let p = Policy::new(Mode::Redact)
            .with_mode(PiiKind::CreditCard, Mode::Mask)
            .only([PiiKind::Email, PiiKind::CreditCard]);
        let r = apply_policy(t, &spans, &p).unwrap();
        assert_eq!(r.text, "[EMAIL] paid with **** **** **** 4242 from 10.0.0.1");
        assert_eq!(r.counts.len(), 2);
        assert!(r.vault.is_none());
    }

    #[test]
    fn hash_is_salted_and_stable() {
        let t = "a@x.com";
        let spans = vec![span(PiiKind::Email, t, t)];
        let h = |salt: &str| {
            apply_policy(t, &spans, &Policy::new(Mode::Hash).with_salt(salt))
                .unwrap()
                .text
        };
        assert_eq!(h("s1"), h("s1"));
        assert_ne!(h("s1"), h("s2"));
        assert!(h("s1").starts_with("[EMAIL:") && h("s1").len() == "[EMAIL:12345678]".len());
        // Keyed: HMAC(salt, kind \0 value), not a plain hash a guesser could recompute.
        use hmac::Mac;
        let mut m = <hmac::Hmac<Sha256> as Mac>::new_from_slice(b"s1").unwrap();
        m.update(b"email\0a@x.com");
        assert_eq!(
            h("s1"),
            format!("[EMAIL:{}]", &hex::encode(m.finalize().into_bytes())[..8])
        );
        let e = apply_policy(t, &spans, &Policy::new(Mode::Hash)).unwrap_err();
        assert!(matches!(e, GuardError::Config(_)));
    }

    #[test]
    fn block_names_kinds_not_values() {
        let t = "card 4242 4242 4242 4242, mail a@x.com";
        let spans = vec![
            span(PiiKind::CreditCard, t, "4242 4242 4242 4242"),
            span(PiiKind::Email, t, "a@x.com"),
        ];
        let p = Policy::new(Mode::Redact).with_mode(PiiKind::CreditCard, Mode::Block);
        let e = apply_policy(t, &spans, &p).unwrap_err();
        let msg = e.to_string();
        assert_eq!(msg, "blocked: input contains credit_card×1");
        assert!(!msg.contains("4242"));
    }

    #[test]
    fn debug_hides_salt() {
        let p = Policy::new(Mode::Hash).with_salt("pepper-123");
        assert!(!format!("{p:?}").contains("pepper"));
    }
}
