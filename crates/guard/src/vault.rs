//! [`Vault`]: the in-memory map behind reversible pseudonymisation.
//!
//! Pseudonymisation replaces each distinct value with a placeholder such as `<EMAIL_1>`
//! (the same value always gets the same placeholder within one vault), sends the
//! placeholder text to the model, and [`Vault::restore`] puts the originals back into
//! the model's answer. The vault holds the raw values: it is deliberately not
//! `Serialize`, and its `Debug` prints only the number of entries, so it cannot end up
//! in logs or traces by accident. Keep one vault per request and drop it afterwards.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::OnceLock;

use regex::Regex;

use crate::pii::PiiKind;

/// Placeholder ↔ original value, for one request.
#[derive(Clone, Default)]
pub struct Vault {
    originals: HashMap<String, String>,
    placeholders: HashMap<(PiiKind, String), String>,
    next: BTreeMap<PiiKind, usize>,
}

fn placeholder_re() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    R.get_or_init(|| Regex::new(r"<[A-Z][A-Z0-9_]*_[0-9]+>").expect("placeholder pattern"))
}

impl Vault {
    pub fn new() -> Vault {
        Vault::default()
    }

    /// Number of distinct values held.
    pub fn len(&self) -> usize {
        self.originals.len()
    }

    pub fn is_empty(&self) -> bool {
        self.originals.is_empty()
    }

    /// The placeholder for `value` of `kind`: the existing one, or the next free
    /// `<KIND_n>`. Numbers already present in `source` are skipped, so a placeholder the
    /// user typed themselves can never be restored into someone's value.
    pub(crate) fn placeholder(&mut self, kind: &PiiKind, value: &str, source: &str) -> String {
        let key = (kind.clone(), value.to_string());
        if let Some(p) = self.placeholders.get(&key) {
            return p.clone();
        }
        let tag = kind.tag();
        let n = self.next.entry(kind.clone()).or_insert(0);
        let p = loop {
            *n += 1;
            let p = format!("<{tag}_{n}>");
            if !source.contains(&p) && !self.originals.contains_key(&p) {
                break p;
            }
        };
        self.originals.insert(p.clone(), value.to_string());
        self.placeholders.insert(key, p.clone());
        p
    }

    /// Whether `placeholder` (e.g. `<EMAIL_1>`) is held.
    pub fn contains(&self, placeholder: &str) -> bool {
        self.originals.contains_key(placeholder)
    }

    /// Replaces every known placeholder in `text` with its original value, in one pass
    /// (a restored value is never expanded again). Unknown placeholders stay as they are.
    pub fn restore(&self, text: &str) -> String {
        placeholder_re()
            .replace_all(text, |c: &regex::Captures| {
                let p = &c[0];
                self.originals.get(p).cloned().unwrap_or_else(|| p.to_string())
            })
            .into_owned()
    }
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("entries", &self.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_value_same_placeholder_and_restore() {
        let mut v = Vault::new();
        let a = v.placeholder(&PiiKind::Email, "a@x.com", "");
        let b = v.placeholder(&PiiKind::Email, "b@x.com", "");
        assert_eq!(a, "<EMAIL_1>");
        assert_eq!(b, "<EMAIL_2>");
        assert_eq!(v.placeholder(&PiiKind::Email, "a@x.com", ""), a);
        assert_eq!(v.placeholder(&PiiKind::Phone, "a@x.com", ""), "<PHONE_1>");
        assert_eq!(
            v.restore("Mail <EMAIL_2> and <EMAIL_1>; keep <EMAIL_9>."),
            "Mail b@x.com and a@x.com; keep <EMAIL_9>."
        );
    }

    #[test]
    fn placeholders_typed_by_the_user_are_skipped() {
        let mut v = Vault::new();
        let p = v.placeholder(&PiiKind::Email, "a@x.com", "I wrote <EMAIL_1> myself");
        assert_eq!(p, "<EMAIL_2>");
    }

    #[test]
    fn debug_prints_no_values() {
        let mut v = Vault::new();
        v.placeholder(&PiiKind::Secret, "sk-live-supersecret", "");
        let d = format!("{v:?}");
        assert!(!d.contains("supersecret") && !d.contains("SECRET_1"), "{d}");
        assert!(d.contains("entries: 1"));
    }
}
