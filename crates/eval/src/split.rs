//! Deterministic dev/test assignment and the leak check.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::dataset::{Item, Split};
use crate::error::{EvalError, Result};

/// How items without an explicit split are assigned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitConfig {
    /// Share of (hash-assigned) items that go to the test split, in `[0, 1]`.
    pub test_fraction: f64,
    /// Mixed into the hash; change it to draw a different (still deterministic) split.
    pub salt: String,
}

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig {
            test_fraction: 0.5,
            salt: String::new(),
        }
    }
}

pub(crate) fn hash_split(normalized: &str, cfg: &SplitConfig) -> Split {
    let digest = Sha256::new()
        .chain_update(cfg.salt.as_bytes())
        .chain_update([0u8])
        .chain_update(normalized.as_bytes())
        .finalize();
    let x = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
    let unit = (x >> 11) as f64 / (1u64 << 53) as f64; // uniform in [0, 1)
    if unit < cfg.test_fraction {
        Split::Test
    } else {
        Split::Dev
    }
}

/// A data set split in two.
#[derive(Debug, Clone, Default)]
pub struct Splits {
    /// Items used for choosing.
    pub dev: Vec<Item>,
    /// Held-out items used for reporting.
    pub test: Vec<Item>,
}

/// Fails with [`EvalError::Leak`] if any normalised input lands in both splits; see
/// [`Dataset::check_no_leak`](crate::Dataset::check_no_leak).
pub fn check_no_leak(items: &[Item], cfg: &SplitConfig) -> Result<()> {
    let mut by_input: HashMap<String, (Option<&str>, Option<&str>)> = HashMap::new();
    for item in items {
        let e = by_input.entry(item.normalized_input()).or_default();
        match item.resolved_split(cfg) {
            Split::Dev => e.0 = e.0.or(Some(&item.id)),
            Split::Test => e.1 = e.1.or(Some(&item.id)),
        }
    }
    let mut both: Vec<(&str, &str)> = by_input.values().filter_map(|(d, t)| Some(((*d)?, (*t)?))).collect();
    if both.is_empty() {
        return Ok(());
    }
    both.sort();
    let examples = both
        .iter()
        .take(5)
        .map(|(d, t)| format!("{d}/{t}"))
        .collect::<Vec<_>>()
        .join(", ");
    Err(EvalError::Leak {
        count: both.len(),
        examples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::{Dataset, Expected};
    use std::collections::BTreeMap;

    fn item(id: &str, text: &str, split: Option<Split>) -> Item {
        let input = BTreeMap::from([("text".to_string(), text.to_string())]);
        Item {
            id: id.into(),
            input,
            expected: Expected::Text("x".into()),
            split,
        }
    }

    #[test]
    fn split_is_deterministic_normalised_and_near_the_fraction() {
        let cfg = SplitConfig::default();
        let a = item("a", "  Hello   World ", None);
        let b = item("b", "hello world", None);
        assert_eq!(a.normalized_input(), b.normalized_input());
        assert_eq!(a.resolved_split(&cfg), b.resolved_split(&cfg));
        let items: Vec<Item> = (0..2000)
            .map(|i| item(&i.to_string(), &format!("question {i}"), None))
            .collect();
        let ds = Dataset::from_items("gen", items);
        let s1 = ds.split(&cfg);
        let s2 = ds.split(&cfg);
        assert_eq!(
            s1.test.iter().map(|i| &i.id).collect::<Vec<_>>(),
            s2.test.iter().map(|i| &i.id).collect::<Vec<_>>()
        );
        assert!((900..1100).contains(&s1.test.len()), "{}", s1.test.len());
        let s = ds.split(&SplitConfig {
            test_fraction: 0.2,
            salt: String::new(),
        });
        assert!((330..470).contains(&s.test.len()), "{}", s.test.len());
        assert_eq!(
            ds.split(&SplitConfig {
                test_fraction: 0.0,
                salt: "x".into()
            })
            .test
            .len(),
            0
        );
        assert_eq!(
            ds.split(&SplitConfig {
                test_fraction: 1.0,
                salt: "x".into()
            })
            .dev
            .len(),
            0
        );
        ds.check_no_leak(&cfg).unwrap();
    }

    #[test]
    fn leak_detection_includes_explicit_splits() {
        let cfg = SplitConfig::default();
        let ok = vec![item("a", "same", None), item("b", " SAME ", None)];
        check_no_leak(&ok, &cfg).unwrap();
        let leak = vec![
            item("a", "same", Some(Split::Dev)),
            item("b", "Same", Some(Split::Test)),
            item("c", "other", None),
        ];
        let e = check_no_leak(&leak, &cfg).unwrap_err();
        assert!(
            matches!(&e, EvalError::Leak { count: 1, examples } if examples == "a/b"),
            "{e}"
        );
        // A hash-assigned duplicate of an explicit item leaks when the hash disagrees.
        let auto = item("x", "same", None).resolved_split(&cfg);
        let other = if auto == Split::Dev { Split::Test } else { Split::Dev };
        assert!(check_no_leak(&[item("x", "same", None), item("y", "same", Some(other))], &cfg).is_err());
    }
}
