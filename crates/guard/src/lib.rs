//! # guard — guardrails for small-model serving
//!
//! A small model that answers support tickets will see e-mail addresses, card numbers
//! and API keys pasted by users, will be sent documents that try to give it new orders,
//! and will sometimes produce output that breaks a contract (too long, not one of the
//! labels, not the JSON the caller asked for). This crate is the layer that catches
//! those, cheaply, on CPU, before and after the model:
//!
//! * **PII** — [`Detector`] finds e-mails, phone numbers, payment cards (Luhn), IBANs
//!   (mod-97), US SSNs, IPv4/IPv6, secrets (known key prefixes and high-entropy tokens)
//!   and dates of birth (only in birth context), plus regex [`CustomRecognizer`]s from
//!   configuration. [`Policy`] decides per kind: redact `[EMAIL]`, mask
//!   `j***@example.com`, hash `[EMAIL:3f9a1c2b]`, block ([`GuardError::Blocked`], kinds
//!   and counts only), or pseudonymise `<EMAIL_1>` reversibly through a [`Vault`] so the
//!   model never sees the value but the user gets it back in the answer.
//!   Detection is regexes (linear time, the `regex` crate) plus validators and short
//!   context windows; precision/recall on the bundled labelled set are measured by
//!   [`evaluate`] in the tests.
//! * **Prompt injection** — [`InjectionDetector`]: all-MiniLM-L6-v2 embeddings (crate
//!   `encoder`) plus a few lexical cues (override verbs aimed at instructions, requests
//!   for the system prompt, chat-role markers, notes addressed to "the AI", …), scored
//!   by a small head trained on the bundled labelled set ([`load_dataset`]); long inputs
//!   are scored window by window.
//! * **One engine** — [`Guards`] holds a process's detector, `hash` key and injection head
//!   (under `<cache>/heads`); [`Guards::screen`] runs the input guards of a request or task
//!   run in place and returns a [`Screened`] (report, vault) for the way out. The encoder
//!   the head needs is lent per check ([`EncoderLender`]).
//! * **Output** — [`OutputGuard`] compiles an [`OutputPolicy`] once (length, banned
//!   regexes, closed label set, JSON Schema with a nesting-depth limit checked before
//!   parsing, PII) and returns every [`Violation`].
//!
//! ## Rules that hold everywhere
//! * Errors and violations name rules, kinds, counts and positions — never the
//!   detected values. [`Vault`] and [`Policy`] print no values or salts in `Debug`, and
//!   the vault is not serialisable.
//! * Every pattern, built-in or configured, is a `regex` (no backtracking); configured
//!   ones are compiled once with a size limit and fail with a typed error naming the
//!   pattern. Untrusted JSON is depth-checked with a linear scan before it is parsed.
//! * Spans are byte offsets into the original text, sorted and non-overlapping.

mod error;
mod eval;
mod guards;
mod injection;
mod json_depth;
pub mod mask;
mod output;
mod pii;
mod policy;
mod redact;
mod report;
mod screen;
mod vault;

pub use error::{GuardError, Result};
pub use eval::{
    evaluate, load_pii_eval, parse_eval_jsonl, EvalLine, EvalReport, GoldSpan, Mismatch, Score, PII_EVAL_JSONL,
};
pub use guards::{EncoderLease, EncoderLender, Guards, INJECTION_ENCODER, OFF_THREAD_BYTES};
pub use injection::{
    default_train_config, evaluate_injection, feature_names, injection_features, lexical_features, load_dataset,
    parse_dataset, BinaryReport, Example, InjectionDetector, InjectionHead, Label, Split, BENIGN_LABEL,
    FEATURES_VERSION, FEATURE_SCALE, INJECTION_JSONL, INJECTION_LABEL, INJECTION_META_FILE, MAX_SCORED_BYTES,
    N_FEATURES, WINDOW_CHARS, WINDOW_STRIDE,
};
pub use json_depth::nesting_depth;
pub use output::{check_output, OutputGuard, OutputPolicy, Violation, MAX_JSON_DEPTH, MAX_SCHEMA_ERRORS};
pub use pii::{validate, CustomRecognizer, Detector, PiiConfig, PiiKind, PiiSpan, CUSTOM_PATTERN_SIZE_LIMIT};
pub use policy::{Guardrails, InjectionAction, OnViolation, DEFAULT_INJECTION_THRESHOLD};
pub use redact::{Mode, Policy, Redacted};
pub use report::GuardReport;
pub use screen::{kinds_and_counts, restore_json, InputError, Screened};
pub use vault::Vault;

#[cfg(test)]
mod tests {
    #[test]
    fn public_types_are_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<crate::Detector>();
        check::<crate::Vault>();
        check::<crate::OutputGuard>();
        check::<crate::InjectionDetector>();
        check::<crate::GuardError>();
        check::<crate::Guards>();
        check::<crate::Screened>();
    }
}
