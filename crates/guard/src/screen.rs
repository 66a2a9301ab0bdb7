//! The input guards of one request or task run, and the way back out: [`Guards::screen`]
//! scores the texts for prompt injection, then applies the PII policy to each in place;
//! the [`Screened`] it returns carries the report, the pseudonymisation vault and (when
//! streaming) the text held back while a placeholder may be split across tokens.
//!
//! Refusals are [`InputError`]s naming kinds and counts or the score, never the text; each
//! caller maps them onto its own errors (HTTP statuses, the mesh's `Blocked`).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use crate::error::GuardError;
use crate::guards::{off_thread_if, EncoderLender, Guards, OFF_THREAD_BYTES};
use crate::pii::{Detector, PiiKind};
use crate::policy::{Guardrails, InjectionAction};
use crate::redact::{Mode, Policy};
use crate::report::GuardReport;
use crate::vault::Vault;

/// Why the input guards refused (or could not check) the texts.
#[derive(Debug, thiserror::Error)]
pub enum InputError<E> {
    /// The lender could not lend the injection encoder (its own error).
    #[error("the injection encoder is not available")]
    Lend(E),
    /// The injection check scored the input at or above the threshold, under `block`.
    #[error("the input looks like a prompt injection (score {score:.2} ≥ {threshold:.2})")]
    Injection { score: f32, threshold: f32 },
    /// Text number `index` holds PII of kinds the policy blocks.
    #[error("the input contains {}", kinds_and_counts(.counts))]
    Pii {
        index: usize,
        counts: BTreeMap<PiiKind, usize>,
    },
    /// The injection check failed (head, encoder, an input too large to score).
    #[error("injection check: {0}")]
    Scoring(GuardError),
    /// The PII policy could not be applied (for example `hash` mode without a salt).
    #[error("guardrails: {0}")]
    Policy(GuardError),
}

/// Why the policy refused a text, before it becomes the caller's [`InputError`] (the work
/// runs on a blocking thread, which cannot carry the lender's error type).
enum Refused {
    Pii {
        index: usize,
        counts: BTreeMap<PiiKind, usize>,
    },
    Policy(GuardError),
}

impl<E> From<Refused> for InputError<E> {
    fn from(r: Refused) -> Self {
        match r {
            Refused::Pii { index, counts } => InputError::Pii { index, counts },
            Refused::Policy(e) => InputError::Policy(e),
        }
    }
}

impl<E> InputError<E> {
    /// Counters of a refusal (`injection.blocked`, `blocked.email`, ...); empty for failures
    /// that refused nothing.
    pub fn events(&self) -> BTreeMap<String, u64> {
        match self {
            InputError::Injection { .. } => BTreeMap::from([("injection.blocked".to_owned(), 1)]),
            InputError::Pii { counts, .. } => counts
                .iter()
                .map(|(k, n)| (format!("blocked.{}", k.name()), *n as u64))
                .collect(),
            _ => BTreeMap::new(),
        }
    }
}

/// `email×2, phone×1`.
pub fn kinds_and_counts(counts: &BTreeMap<PiiKind, usize>) -> String {
    counts
        .iter()
        .map(|(k, n)| format!("{}×{n}", k.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the input guards did, and what the answer needs on its way out.
#[derive(Debug, Default)]
pub struct Screened {
    /// Placeholders to put back into the answer (pseudonymisation).
    pub vault: Option<Vault>,
    pub report: GuardReport,
    /// Whether any text was rewritten (an audit then stores the rewritten texts).
    pub rewritten: bool,
    /// The policy's `output_pii`: PII in a plain answer is redacted before it leaves.
    pub output_pii: bool,
    /// Streaming: text held back while a placeholder may be split across tokens.
    pending: String,
}

impl Guards {
    /// Injection check on `scored`, then the PII policy of `rails` on each of `texts`, in
    /// place. On a refusal the texts are left as they came (so an audit can redact them).
    pub async fn screen<L: EncoderLender>(
        self: &Arc<Self>,
        rails: &Guardrails,
        scored: Vec<String>,
        texts: Vec<&mut String>,
        lender: &L,
    ) -> Result<Screened, InputError<L::Error>> {
        let mut s = Screened {
            output_pii: rails.output_pii.unwrap_or(false),
            ..Default::default()
        };
        if let Some(action) = rails.injection {
            let score = self.injection_score(scored, lender).await?;
            let threshold = rails.injection_threshold();
            s.report.injection_score = Some(score);
            if score >= threshold {
                if action == InjectionAction::Block {
                    return Err(InputError::Injection { score, threshold });
                }
                s.report.injection_flagged = true;
            }
        }
        let Some(policy) = rails.pii_policy(self.salt()) else {
            return Ok(s);
        };
        s.report.pii_mode = rails.pii;
        let mut texts = texts;
        let owned: Vec<String> = texts.iter_mut().map(|t| std::mem::take(&mut **t)).collect();
        let large = owned.iter().map(String::len).sum::<usize>() > OFF_THREAD_BYTES;
        let detector = self.detector().clone();
        let (back, applied) = off_thread_if(large, move || apply_all(&detector, &policy, owned))
            .await
            .map_err(InputError::Policy)?;
        for (t, text) in texts.into_iter().zip(back) {
            *t = text;
        }
        let applied = applied?;
        s.report.pii = applied.counts;
        s.rewritten = applied.rewritten;
        s.vault = (!applied.vault.is_empty()).then_some(applied.vault);
        Ok(s)
    }

    /// The answer as the client gets it, from the text the model wrote: PII the model
    /// produced itself is redacted (under `output_pii`), then placeholders are restored.
    /// Returns the text for the audit (before restoring) and the text for the client.
    pub fn answer(&self, s: &mut Screened, text: &str) -> (String, String) {
        let mut seen = text.to_owned();
        if s.output_pii {
            if let Ok(red) = self.detector().apply(text, &Policy::new(Mode::Redact)) {
                for (k, n) in red.counts {
                    *s.report.output_pii.entry(k.name().to_owned()).or_insert(0) += n;
                }
                seen = red.text;
            }
        }
        let out = s.restore(&seen);
        (seen, out)
    }
}

/// The texts after the policy, and what it did.
struct Applied {
    vault: Vault,
    counts: BTreeMap<String, usize>,
    rewritten: bool,
}

/// `policy` on each text, sharing one vault. The texts come back rewritten, or as they were
/// when the policy refuses one of them.
fn apply_all(detector: &Detector, policy: &Policy, texts: Vec<String>) -> (Vec<String>, Result<Applied, Refused>) {
    let mut a = Applied {
        vault: Vault::new(),
        counts: BTreeMap::new(),
        rewritten: false,
    };
    let mut out = Vec::with_capacity(texts.len());
    for (index, t) in texts.iter().enumerate() {
        let red = match detector.apply_in(t, policy, &mut a.vault) {
            Ok(r) => r,
            Err(GuardError::Blocked { counts }) => return (texts, Err(Refused::Pii { index, counts })),
            Err(e) => return (texts, Err(Refused::Policy(e))),
        };
        for (k, n) in red.counts {
            *a.counts.entry(k.name().to_owned()).or_insert(0) += n;
        }
        a.rewritten |= red.text != *t;
        out.push(red.text);
    }
    (out, Ok(a))
}

impl Screened {
    /// `text` with the pseudonymised values put back.
    pub fn restore(&self, text: &str) -> String {
        match &self.vault {
            Some(v) => v.restore(text),
            None => text.to_owned(),
        }
    }

    /// Every string of `v` with the pseudonymised values put back.
    pub fn restore_json(&self, v: &Value) -> Value {
        match &self.vault {
            Some(vault) => restore_json(v, vault),
            None => v.clone(),
        }
    }

    /// Streaming: the part of `piece` that can be sent now, with placeholders restored. A
    /// `<` that may open a placeholder split across tokens is held back (at most 48 bytes).
    pub fn stream_piece(&mut self, piece: &str) -> String {
        let Some(vault) = &self.vault else {
            return piece.to_owned();
        };
        self.pending.push_str(piece);
        let hold = match self.pending.rfind('<') {
            Some(i) if !self.pending[i..].contains('>') && self.pending.len() - i < 48 => i,
            _ => self.pending.len(),
        };
        let rest = self.pending.split_off(hold);
        let out = vault.restore(&self.pending);
        self.pending = rest;
        out
    }

    /// Streaming: whatever is still held back.
    pub fn stream_flush(&mut self) -> String {
        let rest = std::mem::take(&mut self.pending);
        self.restore(&rest)
    }
}

/// Puts pseudonymised values back into every string of `v`.
pub fn restore_json(v: &Value, vault: &Vault) -> Value {
    match v {
        Value::String(s) => Value::String(vault.restore(s)),
        Value::Array(a) => Value::Array(a.iter().map(|x| restore_json(x, vault)).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, x)| (k.clone(), restore_json(x, vault))).collect()),
        x => x.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pii::PiiConfig;

    fn guards() -> Arc<Guards> {
        let d = Arc::new(Detector::new(PiiConfig::default()).unwrap());
        Arc::new(Guards::new(d, "salt", std::path::Path::new("/nonexistent")))
    }

    /// Lends nothing: the tests below never turn the injection check on.
    struct NoEncoder;
    impl EncoderLender for NoEncoder {
        type Error = ();
        fn lend<'a>(
            &'a self,
            _: &'a str,
        ) -> impl std::future::Future<Output = Result<crate::guards::EncoderLease, ()>> + Send + 'a {
            std::future::ready(Err(()))
        }
    }

    fn rails(toml: &str) -> Guardrails {
        toml::from_str(toml).unwrap()
    }

    #[tokio::test]
    async fn pseudonymised_texts_share_a_vault_and_come_back_restored() {
        let g = guards();
        let (mut a, mut b) = ("mail a@x.com".to_owned(), "again a@x.com".to_owned());
        let mut s = g
            .screen(
                &rails("pii = \"pseudonymize\""),
                vec![],
                vec![&mut a, &mut b],
                &NoEncoder,
            )
            .await
            .unwrap();
        assert_eq!((a.as_str(), b.as_str()), ("mail <EMAIL_1>", "again <EMAIL_1>"));
        assert!(s.rewritten);
        assert_eq!(s.report.pii["email"], 2);
        assert_eq!(s.report.events()["pseudonymized.email"], 2);
        assert_eq!(g.answer(&mut s, "to <EMAIL_1>").1, "to a@x.com");
        let streamed = [s.stream_piece("to <EMA"), s.stream_piece("IL_1> ok"), s.stream_flush()].concat();
        assert_eq!(streamed, "to a@x.com ok");
    }

    #[tokio::test]
    async fn a_block_names_kinds_and_leaves_the_texts_as_they_were() {
        let g = guards();
        let mut a = "call +1 415 555 0100 or a@x.com".to_owned();
        let e = g
            .screen(&rails("pii = \"block\""), vec![], vec![&mut a], &NoEncoder)
            .await
            .unwrap_err();
        assert!(matches!(e, InputError::Pii { index: 0, .. }), "{e:?}");
        assert!(e.events().contains_key("blocked.email"));
        assert!(e.to_string().starts_with("the input contains "), "{e}");
        assert_eq!(a, "call +1 415 555 0100 or a@x.com");
    }

    #[tokio::test]
    async fn hash_mode_uses_the_engine_salt_and_output_pii_is_redacted_and_counted() {
        let g = guards();
        let mut a = "a@x.com".to_owned();
        let mut s = g
            .screen(
                &rails("pii = \"hash\"\noutput_pii = true"),
                vec![],
                vec![&mut a],
                &NoEncoder,
            )
            .await
            .unwrap();
        let expected = g.detector().apply("a@x.com", &g.policy(Mode::Hash)).unwrap().text;
        assert_eq!(a, expected);
        let (seen, out) = g.answer(&mut s, "write to b@y.org");
        assert_eq!((seen.as_str(), out.as_str()), ("write to [EMAIL]", "write to [EMAIL]"));
        assert_eq!(s.report.events()["output.pii.email"], 1);
    }

    #[tokio::test]
    async fn a_lender_failure_is_passed_through() {
        let mut a = "hello".to_owned();
        let e = guards()
            .screen(
                &rails("injection = \"flag\""),
                vec!["hello".into()],
                vec![&mut a],
                &NoEncoder,
            )
            .await
            .unwrap_err();
        assert!(matches!(e, InputError::Lend(())));
    }
}
