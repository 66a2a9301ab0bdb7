//! Phone numbers: maximal runs of digits and separators, classified by shape
//! (international, North American, national with trunk prefix), with context rules.

use std::sync::OnceLock;

use regex::Regex;

use super::context::{after_iban_prefix, phone_suppressed};
use super::recognizers::{compiled, isolated};
use super::{Candidate, PiiKind};

fn phone_run() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    compiled(&R, r"[+(]?\d[\d().\- ]*\d")
}

fn nanp() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    compiled(
        &R,
        r"^(?:1[ .\-]?)?(?:\([2-9]\d{2}\)[ .\-]?|[2-9]\d{2}[ .\-])\d{3}[ .\-]\d{4}$",
    )
}

/// Whether a maximal run of digits and separators is shaped like a phone number:
/// * international: `+` or `00`, a 1–3 digit country code not starting with 0, 8–15
///   digits after the prefix, groups of at most 8 digits;
/// * North American: `(202) 555-0143`, `202-555-0143`, `1-800-555-0199` (separators
///   required, area code 2–9);
/// * national with trunk prefix: first group starts with `0` (2–5 digits), at least two
///   groups of 2–8 digits, 10–12 digits in all (`020 7946 0958`, `06 12 34 56 78`).
fn phone_shaped(run: &str) -> bool {
    let opens = run.matches('(').count();
    let closes = run.matches(')').count();
    if opens > 1 || opens != closes || run.find('(') > run.find(')') {
        return false;
    }
    let bare: String = run.chars().filter(|&c| c != '(' && c != ')').collect();
    let (intl, body) = match bare.strip_prefix('+') {
        Some(rest) => (true, rest.to_string()),
        None => match bare.strip_prefix("00") {
            Some(rest) => (true, rest.to_string()),
            None => (false, bare.clone()),
        },
    };
    let groups: Vec<&str> = body.split([' ', '.', '-']).collect();
    if groups
        .iter()
        .any(|g| g.is_empty() || !g.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    let digits: usize = groups.iter().map(|g| g.len()).sum();
    if intl {
        let cc = groups[0];
        return (8..=15).contains(&digits)
            && (groups.len() == 1 || ((1..=3).contains(&cc.len()) && !cc.starts_with('0')))
            && groups.iter().skip(1).all(|g| g.len() <= 8);
    }
    if nanp().is_match(run) {
        return true;
    }
    groups.len() >= 2
        && groups[0].starts_with('0')
        && (2..=5).contains(&groups[0].len())
        && groups.iter().skip(1).all(|g| (2..=8).contains(&g.len()))
        && (10..=12).contains(&digits)
}

/// A number one separator away from another number ("3704 0044 0532…" inside a longer
/// digit string) is part of something else.
fn glued_to_number(text: &str, start: usize, end: usize) -> bool {
    let sep = |c: char| matches!(c, ' ' | '-' | '.' | '/');
    let mut back = text[..start].chars().rev();
    let mut fwd = text[end..].chars();
    (back.next().is_some_and(sep) && back.next().is_some_and(|c| c.is_ascii_digit()))
        || (fwd.next().is_some_and(sep) && fwd.next().is_some_and(|c| c.is_ascii_digit()))
}

/// Phone numbers: a maximal run of digits, spaces, dots, dashes and parentheses that is
/// [`phone_shaped`], not glued to other numbers or words, and not after a reference word
/// ([`phone_suppressed`]: "Order #123-456-7890" is an order number).
pub(crate) fn phones(text: &str, out: &mut Vec<Candidate>) {
    for m in phone_run().find_iter(text) {
        if phone_shaped(m.as_str())
            && isolated(text, m.start(), m.end(), &['-', '.', '/', '+'])
            && !glued_to_number(text, m.start(), m.end())
            && !phone_suppressed(text, m.start())
            && !after_iban_prefix(text, m.start())
        {
            out.push(Candidate::new(PiiKind::Phone, m.start(), m.end(), 2));
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
    fn phones_in_many_formats() {
        for p in [
            "+44 20 7946 0958",
            "+1-202-555-0143",
            "(555) 123-4567",
            "0049 30 1234567",
            "+33 1 23 45 67 89",
            "+1 (415) 555-2671",
            "020 7946 0958",
            "415.555.2671",
            "+91 98765 43210",
            "+49 6221 54 12345",
            "06 12 34 56 78",
            "+44 (0)20 7946 0958",
        ] {
            assert_eq!(found(phones, &format!("call me on {p}, thanks")), vec![p], "{p}");
        }
        assert!(found(phones, "Order #123-456-7890").is_empty());
        assert!(found(phones, "build 10.0.19045").is_empty());
        assert!(found(phones, "card 4242 4242 4242 4241").is_empty());
        assert!(found(phones, "SSN 000-12-3456, IBAN DE88 3704 0044 0532 0130 00").is_empty());
        assert!(found(phones, "ISBN 978-3-16-148410-0, born 02.11.1964").is_empty());
    }
}
