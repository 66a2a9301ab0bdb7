//! Output guards: checks on what a model produced before it leaves the server — length,
//! banned patterns, closed label sets, JSON Schema, and PII. A [`Violation`] names the
//! rule that failed and where, never the offending text.

use std::collections::BTreeMap;
use std::fmt;

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

use crate::error::{describe_counts, GuardError, Result};
use crate::json_depth::nesting_depth;
use crate::pii::{Detector, PiiConfig, PiiKind};

/// Deepest JSON nesting the schema check accepts; deeper output is a violation found
/// by a linear scan, without parsing it (below serde_json's own recursion limit of 128,
/// so the parser never sees input it would refuse for depth).
pub const MAX_JSON_DEPTH: usize = 100;
/// Schema violations reported per output, at most.
pub const MAX_SCHEMA_ERRORS: usize = 16;
/// Compiled size limit for a banned pattern.
pub const BANNED_PATTERN_SIZE_LIMIT: usize = 1 << 20;

/// What an output must satisfy. Every field is optional; an empty policy passes all.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OutputPolicy {
    /// At most this many characters (Unicode scalar values).
    pub max_chars: Option<usize>,
    /// Regexes that must not match anywhere in the output.
    pub banned_patterns: Vec<String>,
    /// The output, trimmed, must be exactly one of these.
    pub labels: Option<Vec<String>>,
    /// The output must be JSON valid against this schema.
    pub json_schema: Option<serde_json::Value>,
    /// The output must contain no PII.
    pub pii: bool,
}

/// A failed rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Violation {
    TooLong {
        chars: usize,
        max: usize,
    },
    BannedPattern {
        index: usize,
        pattern: String,
    },
    NotALabel {
        allowed: usize,
    },
    InvalidJson {
        line: usize,
        column: usize,
        category: String,
    },
    TooDeep {
        max_depth: usize,
    },
    /// JSON pointer of the failing value and the schema keyword it failed.
    Schema {
        instance_path: String,
        keyword: String,
    },
    Pii {
        counts: BTreeMap<PiiKind, usize>,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::TooLong { chars, max } => {
                write!(f, "output has {chars} characters, at most {max} allowed")
            }
            Violation::BannedPattern { index, pattern } => {
                write!(f, "output matches banned pattern #{index} ({pattern})")
            }
            Violation::NotALabel { allowed } => {
                write!(f, "output is not one of the {allowed} allowed labels")
            }
            Violation::InvalidJson { line, column, category } => write!(
                f,
                "output is not valid JSON ({category} error at line {line}, column {column})"
            ),
            Violation::TooDeep { max_depth } => {
                write!(f, "output JSON nests deeper than {max_depth} levels")
            }
            Violation::Schema { instance_path, keyword } => {
                write!(f, "output fails schema keyword '{keyword}' at '{instance_path}'")
            }
            Violation::Pii { counts } => {
                write!(f, "output contains PII: {}", describe_counts(counts))
            }
        }
    }
}

/// An [`OutputPolicy`] compiled once: banned patterns, schema validator, detector.
#[derive(Debug)]
pub struct OutputGuard {
    policy: OutputPolicy,
    banned: Vec<Regex>,
    validator: Option<jsonschema::Validator>,
    default_detector: Detector,
}

impl OutputGuard {
    /// Compiles the policy. A banned pattern that does not compile is
    /// [`GuardError::InvalidPattern`] (named `banned_patterns[i]`); a bad schema is
    /// [`GuardError::InvalidSchema`].
    pub fn new(policy: OutputPolicy) -> Result<OutputGuard> {
        let banned = policy
            .banned_patterns
            .iter()
            .enumerate()
            .map(|(i, p)| {
                RegexBuilder::new(p)
                    .size_limit(BANNED_PATTERN_SIZE_LIMIT)
                    .build()
                    .map_err(|e| GuardError::InvalidPattern {
                        name: format!("banned_patterns[{i}]"),
                        reason: e.to_string(),
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        let validator = match &policy.json_schema {
            Some(schema) => {
                Some(jsonschema::validator_for(schema).map_err(|e| GuardError::InvalidSchema(e.to_string()))?)
            }
            None => None,
        };
        let default_detector = Detector::new(PiiConfig::default())?;
        Ok(OutputGuard {
            policy,
            banned,
            validator,
            default_detector,
        })
    }

    pub fn policy(&self) -> &OutputPolicy {
        &self.policy
    }

    /// Every violated rule, in policy order; empty when the output passes. With
    /// `pii: true`, `detector` (or the built-in recognisers when `None`) looks for PII.
    pub fn check(&self, output: &str, detector: Option<&Detector>) -> Vec<Violation> {
        let mut v = Vec::new();
        if let Some(max) = self.policy.max_chars {
            let chars = output.chars().count();
            if chars > max {
                v.push(Violation::TooLong { chars, max });
            }
        }
        for (index, re) in self.banned.iter().enumerate() {
            if re.is_match(output) {
                v.push(Violation::BannedPattern {
                    index,
                    pattern: self.policy.banned_patterns[index].clone(),
                });
            }
        }
        if let Some(labels) = &self.policy.labels {
            let t = output.trim();
            if !labels.iter().any(|l| l == t) {
                v.push(Violation::NotALabel { allowed: labels.len() });
            }
        }
        if let Some(validator) = &self.validator {
            check_json(validator, output, &mut v);
        }
        if self.policy.pii {
            let counts = detector.unwrap_or(&self.default_detector).counts(output);
            if !counts.is_empty() {
                v.push(Violation::Pii { counts });
            }
        }
        v
    }
}

fn check_json(validator: &jsonschema::Validator, output: &str, v: &mut Vec<Violation>) {
    if nesting_depth(output, MAX_JSON_DEPTH).is_err() {
        v.push(Violation::TooDeep {
            max_depth: MAX_JSON_DEPTH,
        });
        return;
    }
    let value: serde_json::Value = match serde_json::from_str(output) {
        Ok(value) => value,
        Err(e) => {
            let category = format!("{:?}", e.classify()).to_lowercase();
            v.push(Violation::InvalidJson {
                line: e.line(),
                column: e.column(),
                category,
            });
            return;
        }
    };
    for e in validator.iter_errors(&value).take(MAX_SCHEMA_ERRORS) {
        let keyword = e.schema_path.as_str().rsplit('/').next().unwrap_or("").to_string();
        v.push(Violation::Schema {
            instance_path: e.instance_path.as_str().to_string(),
            keyword,
        });
    }
}

/// Compiles `policy` and checks `output` once. Prefer [`OutputGuard`] when checking many
/// outputs against one policy.
pub fn check_output(output: &str, policy: &OutputPolicy, detector: Option<&Detector>) -> Result<Vec<Violation>> {
    Ok(OutputGuard::new(policy.clone())?.check(output, detector))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_rule_reports() {
        let p = OutputPolicy {
            max_chars: Some(10),
            banned_patterns: vec![r"(?i)as an ai".into()],
            labels: Some(vec!["yes".into(), "no".into()]),
            ..Default::default()
        };
        let g = OutputGuard::new(p).unwrap();
        assert!(g.check(" yes\n", None).is_empty());
        let v = g.check("As an AI, I think maybe", None);
        assert_eq!(v.len(), 3, "{v:?}");
        assert!(matches!(v[0], Violation::TooLong { chars: 23, max: 10 }));
        assert!(matches!(v[1], Violation::BannedPattern { index: 0, .. }));
        assert!(matches!(v[2], Violation::NotALabel { allowed: 2 }));
    }

    #[test]
    fn schema_and_json_errors_carry_no_values() {
        let schema = json!({"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]});
        let p = OutputPolicy {
            json_schema: Some(schema),
            ..Default::default()
        };
        let g = OutputGuard::new(p).unwrap();
        assert!(g.check(r#"{"age": 41}"#, None).is_empty());
        let v = g.check(r#"{"age": "jane@example.com"}"#, None);
        assert_eq!(
            v,
            vec![Violation::Schema {
                instance_path: "/age".into(),
                keyword: "type".into()
            }]
        );
        assert!(!v[0].to_string().contains("jane"));
        let v = g.check("{\"age\": 4", None);
        assert!(
            matches!(&v[0], Violation::InvalidJson { category, .. } if category == "eof"),
            "{v:?}"
        );
    }

    #[test]
    fn pii_rule_counts_without_values() {
        let p = OutputPolicy {
            pii: true,
            ..Default::default()
        };
        let v = check_output("reach me at ann@example.org", &p, None).unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].to_string(), "output contains PII: email×1");
    }

    #[test]
    fn bad_policy_is_a_clear_error() {
        let p = OutputPolicy {
            banned_patterns: vec!["ok".into(), "(".into()],
            ..Default::default()
        };
        let e = OutputGuard::new(p).unwrap_err();
        assert!(
            e.to_string().starts_with("invalid pattern for banned_patterns[1]"),
            "{e}"
        );
        let p = OutputPolicy {
            json_schema: Some(json!({"type": 12})),
            ..Default::default()
        };
        assert!(matches!(OutputGuard::new(p).unwrap_err(), GuardError::InvalidSchema(_)));
    }
}
