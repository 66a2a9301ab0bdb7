//! [`PiiKind`]: what a span is. Built-in kinds plus custom recogniser names, written in
//! snake_case everywhere (Display, FromStr, serde).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::GuardError;

/// The kind of a PII span. `Custom` carries the name of a configured
/// [`CustomRecognizer`](crate::CustomRecognizer).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum PiiKind {
    Email,
    Phone,
    CreditCard,
    Iban,
    Ssn,
    IpAddress,
    Secret,
    DateOfBirth,
    Custom(String),
}

impl PiiKind {
    /// The built-in kinds, in a stable order.
    pub const BUILTIN: [PiiKind; 8] = [
        PiiKind::Email,
        PiiKind::Phone,
        PiiKind::CreditCard,
        PiiKind::Iban,
        PiiKind::Ssn,
        PiiKind::IpAddress,
        PiiKind::Secret,
        PiiKind::DateOfBirth,
    ];

    /// The snake_case name (`credit_card`, or the custom recogniser's name).
    pub fn name(&self) -> &str {
        match self {
            PiiKind::Email => "email",
            PiiKind::Phone => "phone",
            PiiKind::CreditCard => "credit_card",
            PiiKind::Iban => "iban",
            PiiKind::Ssn => "ssn",
            PiiKind::IpAddress => "ip_address",
            PiiKind::Secret => "secret",
            PiiKind::DateOfBirth => "date_of_birth",
            PiiKind::Custom(name) => name,
        }
    }

    /// The upper-case tag used in placeholders: `EMAIL`, `CREDIT_CARD`.
    pub fn tag(&self) -> String {
        self.name().to_ascii_uppercase()
    }

    fn builtin(name: &str) -> Option<PiiKind> {
        PiiKind::BUILTIN.into_iter().find(|k| k.name() == name)
    }
}

/// A custom name must be a snake_case identifier (`[a-z][a-z0-9_]*`, at most 64 bytes).
pub(crate) fn valid_custom_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && name.len() <= 64
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
        && PiiKind::builtin(name).is_none()
}

impl fmt::Display for PiiKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for PiiKind {
    type Err = GuardError;

    /// Built-in names parse to their kind; any other snake_case identifier is a custom kind.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(k) = PiiKind::builtin(s) {
            return Ok(k);
        }
        if valid_custom_name(s) {
            Ok(PiiKind::Custom(s.to_string()))
        } else {
            Err(GuardError::InvalidName(s.to_string()))
        }
    }
}

impl From<PiiKind> for String {
    fn from(k: PiiKind) -> String {
        k.name().to_string()
    }
}

impl TryFrom<String> for PiiKind {
    type Error = GuardError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_display_fromstr_and_serde() {
        for k in PiiKind::BUILTIN {
            assert_eq!(k.to_string().parse::<PiiKind>().unwrap(), k);
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.name()));
            assert_eq!(serde_json::from_str::<PiiKind>(&json).unwrap(), k);
        }
        assert_eq!(PiiKind::CreditCard.tag(), "CREDIT_CARD");
        assert_eq!(
            "employee_id".parse::<PiiKind>().unwrap(),
            PiiKind::Custom("employee_id".into())
        );
        assert!("Bad Name".parse::<PiiKind>().is_err());
        assert!(serde_json::from_str::<PiiKind>("\"E-MAIL\"").is_err());
    }

    #[test]
    fn custom_names_cannot_shadow_builtins() {
        assert!(!valid_custom_name("email"));
        assert!(!valid_custom_name("9lives"));
        assert!(!valid_custom_name(""));
        assert!(valid_custom_name("badge_no2"));
    }
}
