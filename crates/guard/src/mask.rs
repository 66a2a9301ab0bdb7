//! Masking rules (mode [`Mode::Mask`](crate::Mode::Mask)): keep just enough to let a
//! person recognise their own data, hide the rest with `*`, keep separators and length
//! where the layout is not itself sensitive.
//!
//! | kind | example | rule |
//! |---|---|---|
//! | email | `j***@example.com` | first character of the local part, `***`, domain kept |
//! | phone | `+** ** **** **58` | last 2 digits kept, `+` and separators kept |
//! | credit_card | `**** **** **** 4242` | last 4 digits kept, separators kept |
//! | iban | `DE** **** **** **** **30 00` | country code and last 4 kept |
//! | ssn | `***-**-6789` | last 4 digits kept |
//! | ip_address | `192.*.*.*`, `2001:*` | first octet / first group kept |
//! | secret | `sk-p****` | first 4 characters, then a fixed `****` (length hidden) |
//! | date_of_birth, custom | `**/**/****` | every letter and digit masked |

use crate::pii::PiiKind;

/// Masks every ASCII alphanumeric except the last `keep` of them.
fn keep_last(value: &str, keep: usize) -> String {
    let total = value.chars().filter(char::is_ascii_alphanumeric).count();
    let mut seen = 0;
    value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                seen += 1;
                if seen + keep > total {
                    return c;
                }
                return '*';
            }
            c
        })
        .collect()
}

/// The masked form of `value` found as `kind`.
pub fn mask(kind: &PiiKind, value: &str) -> String {
    match kind {
        PiiKind::Email => match value.rsplit_once('@') {
            Some((local, domain)) => {
                let first: String = local.chars().take(1).collect();
                format!("{first}***@{domain}")
            }
            None => "***".into(),
        },
        PiiKind::Phone => keep_last(value, 2),
        PiiKind::CreditCard | PiiKind::Ssn => keep_last(value, 4),
        PiiKind::Iban => {
            let head: String = value.chars().take(2).collect();
            let rest: String = value.chars().skip(2).collect();
            format!("{head}{}", keep_last(&rest, 4))
        }
        PiiKind::IpAddress => {
            if value.contains(':') {
                let first = value.split(':').next().filter(|g| !g.is_empty()).unwrap_or("");
                format!("{first}:*")
            } else {
                let first = value.split('.').next().unwrap_or("");
                format!("{first}.*.*.*")
            }
        }
        PiiKind::Secret => {
            let head: String = value.chars().take(4).collect();
            format!("{head}****")
        }
        PiiKind::DateOfBirth | PiiKind::Custom(_) => keep_last(value, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_per_kind() {
        assert_eq!(mask(&PiiKind::Email, "jane.doe@example.com"), "j***@example.com");
        assert_eq!(mask(&PiiKind::CreditCard, "4242 4242 4242 4242"), "**** **** **** 4242");
        assert_eq!(mask(&PiiKind::Phone, "+44 20 7946 0958"), "+** ** **** **58");
        assert_eq!(
            mask(&PiiKind::Iban, "DE89 3704 0044 0532 0130 00"),
            "DE** **** **** **** **30 00"
        );
        assert_eq!(mask(&PiiKind::Ssn, "123-45-6789"), "***-**-6789");
        assert_eq!(mask(&PiiKind::IpAddress, "192.168.1.20"), "192.*.*.*");
        assert_eq!(mask(&PiiKind::IpAddress, "2001:db8::1"), "2001:*");
        assert_eq!(mask(&PiiKind::Secret, "sk-proj-abcdefghijklmnop"), "sk-p****");
        assert_eq!(mask(&PiiKind::DateOfBirth, "12 March 1985"), "** ***** ****");
    }
}
