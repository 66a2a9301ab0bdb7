//! Secrets: API keys with known prefixes, values assigned to secret-named fields
//! (`password=…`, `api_key: …`), private-key blocks, and unprefixed high-entropy tokens.
//!
//! Decisions: 40-hex git commit SHAs, other hex-only digests and UUIDs are identifiers,
//! not secrets. Unprefixed tokens must pass [`high_entropy_secret`].

use std::sync::OnceLock;

use regex::Regex;

use super::recognizers::{compiled, isolated};
use super::validate::high_entropy_secret;
use super::{Candidate, PiiKind};

fn prefixed() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    compiled(
        &R,
        r"(?x)
          sk-(?:proj|ant|svcacct|admin)-[A-Za-z0-9_\-]{20,}
        | sk-[A-Za-z0-9]{20,}
        | (?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}
        | gh[pousr]_[A-Za-z0-9]{30,}
        | github_pat_[A-Za-z0-9_]{22,}
        | (?:AKIA|ASIA)[0-9A-Z]{16}
        | xox[abprse]-[A-Za-z0-9\-]{10,}
        | AIza[0-9A-Za-z_\-]{35}
        | glpat-[A-Za-z0-9_\-]{20,}
        | hf_[A-Za-z0-9]{30,}
        | npm_[A-Za-z0-9]{36}
        | SG\.[A-Za-z0-9_\-]{16,}\.[A-Za-z0-9_\-]{16,}
        | eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}
        | -----BEGIN\ [A-Z\ ]*PRIVATE\ KEY-----(?s:.)*?-----END\ [A-Z\ ]*PRIVATE\ KEY-----
        ",
    )
}

fn assigned() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    compiled(
        &R,
        r#"(?i)\b(?:password|passwd|pwd|passphrase|secret|client[_\-]?secret|api[_\-]?key|apikey|access[_\-]?key|secret[_\-]?key|private[_\-]?key|auth[_\-]?token|access[_\-]?token|refresh[_\-]?token|bearer|aws_secret_access_key)["']?\s*(?:[:=]|=>)\s*["']?([^\s"'`,;<>]{8,256})"#,
    )
}

fn token() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    compiled(&R, r"[A-Za-z0-9+_\-]{20,}={0,2}")
}

/// Values that are placeholders rather than secrets: masks (`********`), template
/// variables (`${TOKEN}`, `{{key}}`, `<your-key>`), SHOUTING_PLACEHOLDERS, null-ish words.
fn placeholder(v: &str) -> bool {
    let first = v.chars().next().unwrap_or('*');
    let lower = v.to_ascii_lowercase();
    matches!(first, '$' | '{' | '<' | '%' | '[' | '(')
        || !v.chars().any(char::is_alphanumeric)
        || v.chars().all(|c| c == v.chars().next().unwrap_or('*'))
        || v.chars().all(|c| c.is_ascii_uppercase() || c == '_' || c == '-')
        || [
            "undefined",
            "redacted",
            "changeme",
            "password",
            "required",
            "optional",
            "expired",
        ]
        .iter()
        .any(|w| lower.trim_end_matches('.') == *w)
        || lower.starts_with("your")
        || lower.starts_with("xxxx")
}

pub(crate) fn secrets(text: &str, out: &mut Vec<Candidate>) {
    let prefixed_joiners = ['-', '.'];
    for m in prefixed().find_iter(text) {
        if isolated(text, m.start(), m.end(), &prefixed_joiners) {
            out.push(Candidate::new(PiiKind::Secret, m.start(), m.end(), 5));
        }
    }
    for c in assigned().captures_iter(text) {
        if let Some(v) = c.get(1) {
            if !placeholder(v.as_str()) && v.as_str().len() >= 8 {
                out.push(Candidate::new(PiiKind::Secret, v.start(), v.end(), 3));
            }
        }
    }
    for m in token().find_iter(text) {
        if high_entropy_secret(m.as_str()) && isolated(text, m.start(), m.end(), &['.', '/']) {
            out.push(Candidate::new(PiiKind::Secret, m.start(), m.end(), 1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        secrets(text, &mut out);
        let mut v: Vec<String> = out.iter().map(|c| text[c.start..c.end].to_string()).collect();
        v.sort();
        v.dedup();
        v
    }

    #[test]
    fn prefixed_keys() {
        for k in [
            "sk-proj-Abc123Def456Ghi789Jkl012Mno",
            "sk_live_51HxYzAbCdEf0123456789",
            "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
            "AKIAIOSFODNN7EXAMPLE",
            "xoxb-2384723-23423498-dkfjJKDF8sd",
            "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY",
            "glpat-xR3vT9kLm2Qp8sW4nZ7y",
            "hf_AbCdEfGhIjKlMnOpQrStUvWxYz012345",
        ] {
            assert_eq!(found(&format!("key: {k} end")), vec![k.to_string()], "{k}");
        }
    }

    #[test]
    fn assignments_and_placeholders() {
        assert_eq!(found("password=hunter2hunter2"), vec!["hunter2hunter2"]);
        assert!(found("password=******** api_key=YOUR_API_KEY token=${TOKEN}").is_empty());
    }

    #[test]
    fn identifiers_are_not_secrets() {
        assert!(found("commit 9fceb02d0ae598e95dc970b74767f19372d61af8 merged").is_empty());
        assert!(found("request 123e4567-e89b-12d3-a456-426614174000 failed").is_empty());
        assert!(found("see AbstractSingletonProxyFactoryBean2 docs").is_empty());
        assert_eq!(
            found("token x7Gq2LmP9vR4tK8wZ3nBq1Ws"),
            vec!["x7Gq2LmP9vR4tK8wZ3nBq1Ws"]
        );
    }
}
