//! Dates of birth: a calendar-valid date (ISO, numeric d/m/y or m/d/y, or with a month
//! name) is reported only in birth context ([`dob_context`]). Plain dates are not PII.

use std::sync::OnceLock;

use regex::{Captures, Regex};

use super::context::dob_context;
use super::recognizers::isolated;
use super::validate::date_valid;
use super::{Candidate, PiiKind};

const MONTHS: &str = "jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?";

fn patterns() -> &'static [Regex; 4] {
    static R: OnceLock<[Regex; 4]> = OnceLock::new();
    R.get_or_init(|| {
        let c = |p: String| Regex::new(&p).expect("built-in date pattern compiles");
        [
            c(r"\b(\d{4})[\-/.](\d{1,2})[\-/.](\d{1,2})\b".into()),
            c(r"\b(\d{1,2})[\-/.](\d{1,2})[\-/.](\d{4}|\d{2})\b".into()),
            c(format!(
                r"(?i)\b(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?({MONTHS})\.?,?\s+(\d{{4}})\b"
            )),
            c(format!(
                r"(?i)\b({MONTHS})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?,?\s+(\d{{4}})\b"
            )),
        ]
    })
}

fn num(c: &Captures, i: usize) -> u32 {
    c.get(i).and_then(|m| m.as_str().parse().ok()).unwrap_or(0)
}

fn month(c: &Captures, i: usize) -> u32 {
    let name = c.get(i).map(|m| m.as_str().to_ascii_lowercase()).unwrap_or_default();
    [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ]
    .iter()
    .position(|m| name.starts_with(m))
    .map_or(0, |i| i as u32 + 1)
}

fn valid(which: usize, c: &Captures) -> bool {
    match which {
        0 => date_valid(num(c, 3), num(c, 2), num(c, 1)),
        1 => {
            let y = num(c, 3);
            let y = if c.get(3).is_some_and(|m| m.as_str().len() == 2) {
                1900 + y
            } else {
                y
            };
            date_valid(num(c, 1), num(c, 2), y) || date_valid(num(c, 2), num(c, 1), y)
        }
        2 => date_valid(num(c, 1), month(c, 2), num(c, 3)),
        _ => date_valid(num(c, 2), month(c, 1), num(c, 3)),
    }
}

pub(crate) fn dates_of_birth(text: &str, out: &mut Vec<Candidate>) {
    let mut dates: Vec<(usize, usize)> = Vec::new();
    for (which, re) in patterns().iter().enumerate() {
        for c in re.captures_iter(text) {
            let Some(m) = c.get(0) else { continue };
            if valid(which, &c) && isolated(text, m.start(), m.end(), &['-', '/', '.']) {
                dates.push((m.start(), m.end()));
            }
        }
    }
    dates.sort_unstable();
    let mut prev_end = 0;
    for (start, end) in dates {
        if start < prev_end {
            continue;
        }
        if dob_context(text, start, end, prev_end) {
            out.push(Candidate::new(PiiKind::DateOfBirth, start, end, 4));
        }
        prev_end = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        dates_of_birth(text, &mut out);
        out.iter().map(|c| text[c.start..c.end].to_string()).collect()
    }

    #[test]
    fn dates_in_birth_context_only() {
        assert_eq!(found("DOB: 1985-03-12"), vec!["1985-03-12"]);
        assert_eq!(found("born on March 3rd, 1990 in Leeds"), vec!["March 3rd, 1990"]);
        assert_eq!(found("Date of birth 14 February 1979"), vec!["14 February 1979"]);
        assert_eq!(found("birthday: 07/31/1992"), vec!["07/31/1992"]);
        assert!(found("Invoice date 12/03/2023, due March 3, 2024").is_empty());
        assert!(found("DOB: 31/31/1990").is_empty());
        assert_eq!(found("born 1985-03-12, hired 2010-05-01"), vec!["1985-03-12"]);
    }
}
