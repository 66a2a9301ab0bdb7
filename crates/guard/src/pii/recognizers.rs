//! Built-in recognisers for structured identifiers: email, card, IBAN, SSN, IP (phone
//! numbers are in `phone.rs`). Each is a linear-time `regex` for candidates, then a
//! boundary check, a validator from [`validate`](super::validate) and, for SSNs and
//! IPs, a context rule.

use std::sync::OnceLock;

use regex::Regex;

use super::context::{ssn_suppressed, version_context, window_before};
use super::validate::{card_valid, iban_length, iban_valid, ipv4_valid, ipv6_valid, ssn_valid};
use super::{Candidate, PiiKind};

pub(crate) fn compiled(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pattern).expect("built-in recogniser pattern compiles"))
}

macro_rules! pattern {
    ($name:ident, $re:expr) => {
        fn $name() -> &'static Regex {
            static R: OnceLock<Regex> = OnceLock::new();
            compiled(&R, $re)
        }
    };
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// True when no letter, digit or `_` touches `start..end`, and no `joiner` sits between
/// the span and another letter or digit (so "1.2.3.4.5" or "555-1234-9" stay whole).
pub(crate) fn isolated(text: &str, start: usize, end: usize, joiners: &[char]) -> bool {
    left_isolated(text, start, joiners) && right_isolated(text, end, joiners)
}

fn side_ok(mut chars: impl Iterator<Item = char>, joiners: &[char]) -> bool {
    match chars.next() {
        Some(c) if is_word(c) => false,
        Some(c) if joiners.contains(&c) => !chars.next().is_some_and(char::is_alphanumeric),
        _ => true,
    }
}

/// The left half of [`isolated`].
pub(crate) fn left_isolated(text: &str, start: usize, joiners: &[char]) -> bool {
    side_ok(text[..start].chars().rev(), joiners)
}

/// The right half of [`isolated`].
pub(crate) fn right_isolated(text: &str, end: usize, joiners: &[char]) -> bool {
    side_ok(text[end..].chars(), joiners)
}

pattern!(
    email_re,
    r"[A-Za-z0-9_%+\-][A-Za-z0-9._%+\-]*@[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,24}"
);

/// E-mail addresses. Not reported: URL user-info (`https://token@host`, the token is
/// judged on its own) and scp-style remotes (`git@github.com:org/repo`).
pub(crate) fn emails(text: &str, out: &mut Vec<Candidate>) {
    for m in email_re().find_iter(text) {
        let word_start = text[..m.start()].rfind(char::is_whitespace).map_or(0, |i| i + 1);
        let in_url = text[word_start..m.start()].contains("://");
        let mut after = text[m.end()..].chars();
        let scp = after.next() == Some(':') && after.next().is_some_and(|c| !c.is_whitespace());
        if !in_url && !scp && isolated(text, m.start(), m.end(), &['-', '.']) {
            out.push(Candidate::new(PiiKind::Email, m.start(), m.end(), 5));
        }
    }
}

pattern!(card_re, r"\b\d(?:[ \-]?\d){12,18}\b");

/// Card numbers: 13–19 digits in groups separated by single spaces or dashes, valid by
/// [`card_valid`]. When the whole run fails (a CVC typed right after the number), the
/// longest valid prefix made of whole groups is taken.
pub(crate) fn cards(text: &str, out: &mut Vec<Candidate>) {
    for m in card_re().find_iter(text) {
        let s = m.as_str();
        let mut ends: Vec<usize> = s
            .char_indices()
            .filter(|&(_, c)| c == ' ' || c == '-')
            .map(|(i, _)| i)
            .collect();
        ends.push(s.len());
        if !left_isolated(text, m.start(), &['-', '.', ',']) {
            continue;
        }
        let found = ends
            .iter()
            .rev()
            .find(|&&e| card_valid(&s[..e]) && (e < s.len() || right_isolated(text, m.end(), &['-', '.', ','])));
        if let Some(&e) = found {
            out.push(Candidate::new(PiiKind::CreditCard, m.start(), m.start() + e, 5));
        }
    }
}

pattern!(iban_re, r"\b[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]){11,30}");

/// IBANs: a country code, check digits and the country's registered length of
/// alphanumerics (single spaces allowed between), mod-97 valid. Either case (a user
/// typing `de89…` still typed an IBAN); the checksum keeps words out.
pub(crate) fn ibans(text: &str, out: &mut Vec<Candidate>) {
    for m in iban_re().find_iter(text) {
        let s = m.as_str();
        let Some(len) = iban_length(&s[..2].to_ascii_uppercase()) else {
            continue;
        };
        let mut taken = 0;
        let mut end = None;
        for (i, c) in s.char_indices() {
            if c != ' ' {
                taken += 1;
                if taken == len {
                    end = Some(i + 1);
                    break;
                }
            }
        }
        let Some(end) = end else { continue };
        let (start, end) = (m.start(), m.start() + end);
        if iban_valid(&text[start..end]) && isolated(text, start, end, &[]) {
            out.push(Candidate::new(PiiKind::Iban, start, end, 5));
        }
    }
}

pattern!(ssn_re, r"\b\d{3}[ \-]\d{2}[ \-]\d{4}\b|\b\d{9}\b");
pattern!(
    ssn_words,
    r"(?i)\b(?:ssn|ss#|social\s+security(?:\s+(?:number|no\.?|#))?)"
);

/// US SSNs: `AAA-GG-SSSS` or `AAA GG SSSS` (one separator kind), or nine bare digits
/// after "SSN" / "social security"; valid by [`ssn_valid`]; not after a reference word
/// ([`ssn_suppressed`]).
pub(crate) fn ssns(text: &str, out: &mut Vec<Candidate>) {
    for m in ssn_re().find_iter(text) {
        let s = m.as_str();
        let shape_ok = if s.len() == 9 {
            ssn_words().is_match(window_before(text, m.start(), 32, 0))
        } else {
            s.as_bytes()[3] == s.as_bytes()[6]
        };
        if shape_ok
            && ssn_valid(s)
            && isolated(text, m.start(), m.end(), &['-', '.'])
            && !ssn_suppressed(text, m.start())
        {
            out.push(Candidate::new(PiiKind::Ssn, m.start(), m.end(), 5));
        }
    }
}

pattern!(ipv4_re, r"\b\d{1,3}(?:\.\d{1,3}){3}\b");
pattern!(
    ipv6_re,
    r"(?i)(?:[0-9a-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9a-f]{1,4})?"
);

/// IPv4 (every octet ≤ 255, not after "version"/"v") and IPv6 (as `std::net` parses).
pub(crate) fn ips(text: &str, out: &mut Vec<Candidate>) {
    for m in ipv4_re().find_iter(text) {
        if ipv4_valid(m.as_str()) && isolated(text, m.start(), m.end(), &['.']) && !version_context(text, m.start()) {
            out.push(Candidate::new(PiiKind::IpAddress, m.start(), m.end(), 4));
        }
    }
    for m in ipv6_re().find_iter(text) {
        let (start, mut end) = (m.start(), m.end());
        let mut s = m.as_str();
        if !ipv6_valid(s) && s.ends_with(':') && !s.ends_with("::") {
            s = &s[..s.len() - 1];
            end -= 1;
        }
        if ipv6_valid(s) && isolated(text, start, end, &[':', '.']) {
            out.push(Candidate::new(PiiKind::IpAddress, start, end, 4));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(f: fn(&str, &mut Vec<Candidate>), text: &str) -> Vec<String> {
        let mut out = Vec::new();
        f(text, &mut out);
        out.iter().map(|c| text[c.start..c.end].to_string()).collect()
    }

    #[test]
    fn cards_need_luhn_and_take_valid_prefix() {
        assert_eq!(
            found(cards, "card 4242 4242 4242 4242 exp"),
            vec!["4242 4242 4242 4242"]
        );
        assert_eq!(found(cards, "4242-4242-4242-4242 123"), vec!["4242-4242-4242-4242"]);
        assert!(found(cards, "card 4242 4242 4242 4241").is_empty());
    }

    #[test]
    fn ibans_are_cut_at_country_length() {
        assert_eq!(
            found(ibans, "IBAN DE89 3704 0044 0532 0130 00 BIC X"),
            vec!["DE89 3704 0044 0532 0130 00"]
        );
        assert_eq!(found(ibans, "GB82WEST12345698765432."), vec!["GB82WEST12345698765432"]);
        assert!(found(ibans, "DE88 3704 0044 0532 0130 00").is_empty());
        assert_eq!(
            found(ibans, "iban de89370400440532013000"),
            vec!["de89370400440532013000"]
        );
    }

    #[test]
    fn ssns_and_ips() {
        assert_eq!(found(ssns, "SSN 123-45-6789."), vec!["123-45-6789"]);
        assert_eq!(found(ssns, "social security number 123456789"), vec!["123456789"]);
        assert!(found(ssns, "000-12-3456 and 123-45 6789 and 123456789").is_empty());
        assert_eq!(
            found(ips, "from 10.0.0.7 and [2001:db8::1]:443"),
            vec!["10.0.0.7", "2001:db8::1"]
        );
        assert!(found(ips, "999.1.1.1, v1.2.3.4, 12:30:45, std::vec, 1.2.3.4.5").is_empty());
    }

    #[test]
    fn emails_are_bounded() {
        assert_eq!(
            found(emails, "mail j.doe+x@mail.example.co.uk."),
            vec!["j.doe+x@mail.example.co.uk"]
        );
        assert!(found(emails, "user@localhost and @handle").is_empty());
        assert!(found(emails, "git@github.com:acme/repo and https://tok@github.com/x").is_empty());
        assert_eq!(found(emails, "Email: a@b.io: thanks"), vec!["a@b.io"]);
    }
}
