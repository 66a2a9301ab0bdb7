//! Context rules: words near a candidate that confirm it (a date is a date of birth only
//! near "DOB" / "born" / "birthday") or suppress it (a phone-shaped number after "order",
//! "invoice", "tracking" or "#" is a reference number; a dotted quad after "version" is
//! a version). Windows are short, stay on one line and are measured in bytes, clipped to
//! character boundaries.

use std::sync::OnceLock;

use regex::Regex;

/// How far before a candidate context words are looked for.
pub const BEFORE_WINDOW: usize = 40;

fn sentence_end() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    re(&R, r"[a-z]{4}[.!]\s")
}

/// The text of up to `max` bytes before `start`, not before `floor`, cut at the last
/// line break, `;` or `|` (field separators in logs and forms), or sentence end (a
/// lower-case letter, `.`/`!`/`?`, a space — so "D.O.B. " does not cut).
pub fn window_before(text: &str, start: usize, max: usize, floor: usize) -> &str {
    let mut from = start.saturating_sub(max).max(floor);
    while !text.is_char_boundary(from) {
        from += 1;
    }
    let mut w = &text[from..start];
    if let Some(i) = w.rfind(['\n', ';', '|']) {
        w = &w[i + 1..];
    }
    match sentence_end().find_iter(w).last() {
        Some(m) => &w[m.end()..],
        None => w,
    }
}

fn re(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pattern).expect("built-in context pattern compiles"))
}

fn reference_words() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    re(
        &R,
        r"(?i)(?:\b(?:order|orders|invoice|inv|ref|reference|tracking|track|shipment|parcel|consignment|ticket|case|po|sku|serial|s/n|part|model|account|acct|transaction|txn|confirmation|booking|reservation|policy|claim|batch|lot|receipt|rma|isbn|issn)\b)",
    )
}

fn phone_words() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    re(
        &R,
        r"(?i)\b(?:phone|phones|tel|telephone|call|called|calling|mobile|cell|cellphone|fax|whatsapp|sms|text|contact|reach|ring|dial|hotline|landline|helpline)\b",
    )
}

/// Phone suppression rule, looking at the [`BEFORE_WINDOW`] bytes before the number
/// (same line, same sentence):
/// * a reference word (`order`, `invoice`, `ref`, `tracking`, `ticket`, `account`, …)
///   directly labels the number — only `#`, `no.`, `number`, `id`, `:` between — and
///   is not itself part of a phone label ("Phone number on the order:"), or
/// * a reference word or `#` occurs and no phone word (`phone`, `tel`, `call`,
///   `mobile`, …) does.
///
/// So "Order #123-456-7890", "tracking number 0123 4567 8901" and "Ticket 800-555-0199
/// merged into 800-555-0200" are not phone numbers, while "Order 5521: please call 020
/// 7946 0958", "Phone number on the order: 415-555-0182" and "Phone #: 555-123-4567" are.
pub fn phone_suppressed(text: &str, start: usize) -> bool {
    reference_before(text, start, phone_words())
}

fn iban_prefix() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    re(&R, r"\b[A-Za-z]{2}\d{2}(?: [A-Za-z0-9]{4})+ $")
}

/// Digits that continue an IBAN-shaped prefix ("NL91 ABNA 0417 1643 01", a mistyped
/// IBAN) are not a phone number.
pub fn after_iban_prefix(text: &str, start: usize) -> bool {
    iban_prefix().is_match(window_before(text, start, BEFORE_WINDOW, 0))
}

fn ssn_words() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    re(&R, r"(?i)(?:\b(?:ssn|ss#|social\s+security|taxpayer|tin)\b)")
}

/// SSN suppression, the same rule as [`phone_suppressed`] with SSN words (`SSN`,
/// `social security`) in place of phone words: "Lot 123-45-6789" is a lot number.
pub fn ssn_suppressed(text: &str, start: usize) -> bool {
    reference_before(text, start, ssn_words())
}

fn label_tail() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    re(&R, r"(?i)^(?:\s*(?:#|no\.?|nr\.?|num(?:ber)?|id|:|-))*\s*$")
}

fn reference_before(text: &str, start: usize, positive: &Regex) -> bool {
    let w = window_before(text, start, BEFORE_WINDOW, 0);
    let last_ref = reference_words().find_iter(w).last();
    let last_positive = positive.find_iter(w).last();
    if let Some(r) = last_ref {
        if label_tail().is_match(&w[r.end()..]) {
            // "Phone number on the order: …": a label about a phone, no digits in between.
            let phone_label = last_positive
                .is_some_and(|p| p.end() <= r.start() && !w[p.end()..r.start()].bytes().any(|b| b.is_ascii_digit()));
            return !phone_label;
        }
    }
    last_positive.is_none() && (last_ref.is_some() || w.contains('#'))
}

fn dob_words() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    re(
        &R,
        r"(?i)(?:\b(?:dob|d\.o\.b|date\s+of\s+birth|birth\s*date|birth\s+day|born|birthday|bday|b-day|geboren|geb|née|né|fecha\s+de\s+nacimiento|data\s+di\s+nascita|date\s+de\s+naissance)\b)",
    )
}

fn dob_abbrev() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    re(&R, r"(?:^|[\s(\[])b\.\s*$")
}

fn dob_after() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    re(&R, r"(?i)^\s*[(\[]\s*(?:dob|d\.o\.b\.?|born|birthday)\b")
}

/// Date-of-birth rule: a date is reported only when a birth word (`DOB`, `date of
/// birth`, `born`, `birthday`, `geboren`, …) occurs in the [`BEFORE_WINDOW`] bytes
/// before it, after the end of any earlier date (`prev_date_end`), or the date directly
/// follows the abbreviation "b." ("(b. 1990-01-01)"), or it is followed by "(DOB)".
pub fn dob_context(text: &str, start: usize, end: usize, prev_date_end: usize) -> bool {
    let w = window_before(text, start, BEFORE_WINDOW, prev_date_end);
    if dob_words().is_match(w) || dob_abbrev().is_match(w) {
        return true;
    }
    let mut to = (end + 16).min(text.len());
    while !text.is_char_boundary(to) {
        to -= 1;
    }
    dob_after().is_match(&text[end..to])
}

fn version_words() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    re(
        &R,
        r"(?i)(?:\b(?:version|ver|build|release|firmware|fw|sdk|kernel|driver|patch|oid)\b\W*$|[vV]$)",
    )
}

/// IPv4 suppression: a dotted quad right after "version", "build", "firmware", "v"…
/// is a version number ("firmware 2.4.0.17", "v1.2.3.4").
pub fn version_context(text: &str, start: usize) -> bool {
    version_words().is_match(window_before(text, start, 24, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str, needle: &str) -> usize {
        text.find(needle).unwrap()
    }

    #[test]
    fn phone_context() {
        let t = "Order #123-456-7890 shipped";
        assert!(phone_suppressed(t, at(t, "123")));
        let t = "Order 5521: please call 020 7946 0958";
        assert!(!phone_suppressed(t, at(t, "020")));
        let t = "Phone: 020 7946 0958";
        assert!(!phone_suppressed(t, at(t, "020")));
        let t = "Phone #: 555-123-4567";
        assert!(!phone_suppressed(t, at(t, "555")));
        let t = "see #555-123-4567";
        assert!(phone_suppressed(t, at(t, "555")));
        let t = "Phone number on the order: 415-555-0182";
        assert!(!phone_suppressed(t, at(t, "415")));
        let t = "Ticket 800-555-0199 merged into 800-555-0200";
        assert!(phone_suppressed(t, at(t, "800-555-0200")));
        let t = "invoice no. 0044 1234 5678 issued";
        assert!(phone_suppressed(t, at(t, "0044")));
        let t = "NL91 ABNA 0417 1643 01";
        assert!(after_iban_prefix(t, at(t, "0417")));
        assert!(!after_iban_prefix("call 0417 1643 01", 5));
        let t = "Lot 123-45-6789 expires";
        assert!(ssn_suppressed(t, at(t, "123")));
        let t = "Order 881, SSN 123-45-6789";
        assert!(!ssn_suppressed(t, at(t, "123")));
        let t = "tracking number 0123 4567 8901";
        assert!(phone_suppressed(t, at(t, "0123")));
    }

    #[test]
    fn dob_needs_context_after_previous_date() {
        let t = "DOB: 12/03/1985";
        assert!(dob_context(t, at(t, "12/"), t.len(), 0));
        let t = "Invoice date 12/03/2023";
        assert!(!dob_context(t, at(t, "12/"), t.len(), 0));
        let t = "born 1985-03-12, joined 2010-05-01";
        let s = at(t, "2010");
        assert!(!dob_context(t, s, t.len(), at(t, ", joined")));
        let t = "Happy birthday team! The release is on 2024-06-01.";
        assert!(!dob_context(t, at(t, "2024"), t.len() - 1, 0));
        let t = "Name: Tom | D.O.B. 02.11.1964";
        assert!(dob_context(t, at(t, "02."), t.len(), 0));
        let t = "Patient (b. 1990-01-01) admitted 2024-02-02";
        assert!(dob_context(t, at(t, "1990"), at(t, "1990") + 10, 0));
        assert!(!dob_context(t, at(t, "2024"), t.len(), at(t, ") admitted")));
        let t = "1985-03-12 (DOB) on file";
        assert!(dob_context(t, 0, 10, 0));
    }

    #[test]
    fn version_words_suppress_dotted_quads() {
        let t = "firmware 2.4.0.17";
        assert!(version_context(t, at(t, "2.4")));
        let t = "upgrade to v1.2.3.4";
        assert!(version_context(t, at(t, "1.2")));
        let t = "host 10.0.0.7";
        assert!(!version_context(t, at(t, "10.")));
    }

    #[test]
    fn windows_respect_char_boundaries() {
        let t = "ééééééééééééééééééééééééééé born 01/02/1990";
        assert!(dob_context(t, at(t, "01/"), t.len(), 0));
    }
}
