//! Guardrails on a task run, over the process's one guard engine ([`guard::Guards`], shared
//! with the server): prompt-injection and PII checks on the inputs before any tier sees
//! them, output checks on every tier's answer (a failure escalates or fails, per policy), and
//! pseudonymisation placeholders put back into the final answer.
//!
//! The injection head runs on the pool's MiniLM, lent per check by [`Models`] (never a
//! second copy); compiled output guards are kept per task version and policy.

use crate::error::MeshError;
use crate::models::Models;
use crate::task::{OutputKind, Task};
use crate::Mesh;
use guard::{EncoderLease, GuardError, GuardReport, Guardrails, InputError, OutputGuard, Vault, Violation};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Inputs as the tiers will see them.
pub struct Guarded {
    pub inputs: BTreeMap<String, String>,
    pub vault: Option<Vault>,
    pub report: GuardReport,
    /// Whether any input was rewritten (the audit then stores these, not the originals).
    pub rewritten: bool,
}

/// The mesh's models as the guard engine's encoder lender.
struct Lender<'a>(&'a dyn Models);

impl guard::EncoderLender for Lender<'_> {
    type Error = MeshError;
    async fn lend(&self, id: &str) -> Result<EncoderLease, MeshError> {
        self.0
            .encoder(id)
            .await
            .map_err(|e| MeshError::BadInput(format!("injection check: {e}")))
    }
}

impl Mesh {
    /// Injection check, then PII policy, on every input value. A block is
    /// [`MeshError::Blocked`] naming kinds and counts or the score, never the text.
    pub(crate) async fn guard_inputs(
        &self,
        g: &Guardrails,
        inputs: &BTreeMap<String, String>,
    ) -> Result<Guarded, MeshError> {
        let mut values: Vec<String> = inputs.values().cloned().collect();
        let scored = if g.injection.is_some() {
            values.clone()
        } else {
            Vec::new()
        };
        let screened = self
            .guards
            .screen(g, scored, values.iter_mut().collect(), &Lender(&*self.models))
            .await;
        let s = screened.map_err(|e| refused(e, inputs))?;
        let inputs = inputs.keys().cloned().zip(values).collect();
        Ok(Guarded {
            inputs,
            vault: s.vault,
            report: s.report,
            rewritten: s.rewritten,
        })
    }

    /// The output guard for a task under `g` (compiled once per task version and policy).
    pub(crate) fn output_guard(&self, task: &Task, g: &Guardrails) -> Result<Option<Arc<OutputGuard>>, MeshError> {
        let labels = (task.spec.output.kind == OutputKind::Label).then(|| task.spec.output.labels.clone());
        let schema = if task.spec.output.kind == OutputKind::Json {
            task.schema.clone()
        } else {
            None
        };
        let policy = g.output_policy(labels, schema);
        if policy == guard::OutputPolicy::default() {
            return Ok(None);
        }
        let key = format!(
            "{}\u{1f}{}\u{1f}{}",
            task.spec.name,
            task.spec.version,
            serde_json::to_string(&policy).unwrap_or_default()
        );
        if let Some(og) = self.output_guards.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(Some(og.clone()));
        }
        let og = Arc::new(OutputGuard::new(policy).map_err(|e| MeshError::BadInput(format!("guardrails: {e}")))?);
        self.output_guards
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, og.clone());
        Ok(Some(og))
    }
}

/// A refusal of the input guards as a run error: blocks name the input and the kinds (or
/// the score), never the text.
fn refused(e: InputError<MeshError>, inputs: &BTreeMap<String, String>) -> MeshError {
    let events = e.events();
    match e {
        InputError::Lend(e) => e,
        InputError::Injection { .. } => MeshError::Blocked {
            reason: e.to_string(),
            events,
        },
        InputError::Pii { index, counts } => {
            let name = inputs.keys().nth(index).map(String::as_str).unwrap_or_default();
            MeshError::Blocked {
                reason: format!("input `{name}` contains {}", guard::kinds_and_counts(&counts)),
                events,
            }
        }
        InputError::Scoring(e @ GuardError::InputTooLarge { .. }) => MeshError::TooLarge(e.to_string()),
        e @ (InputError::Scoring(_) | InputError::Policy(_)) => MeshError::BadInput(e.to_string()),
    }
}

/// Every rule `output` breaks (strings are checked as they are, other JSON as compact text).
pub(crate) fn output_violations(og: &OutputGuard, output: &Value) -> Vec<Violation> {
    match output {
        Value::String(s) => og.check(s, None),
        v => og.check(&v.to_string(), None),
    }
}
