//! Guardrails on a task run: prompt-injection and PII checks on the inputs before any tier
//! sees them, output checks on every tier's answer (a failure escalates or fails, per
//! policy), and pseudonymisation placeholders put back into the final answer.
//!
//! The injection head is trained once from the labelled set bundled with `guard` on the
//! pool's MiniLM (borrowed per call, never a second copy) and saved under
//! `<cache>/heads/injection`; the PII detector and compiled output guards are built once.

use crate::error::MeshError;
use crate::task::{OutputKind, Task};
use crate::Mesh;
use guard::{GuardError, Guardrails, InjectionAction, InjectionHead, Mode, OutputGuard, Vault, Violation};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The encoder the injection detector runs on (a pool model id).
pub const INJECTION_ENCODER: &str = "minilm-l6";

/// What the guardrails did on one run. Names kinds, counts, scores and rules — never values.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct GuardReport {
    /// PII spans acted on in the inputs, per kind.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub pii: BTreeMap<String, usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pii_mode: Option<Mode>,
    /// Highest injection probability over the inputs (when the check is on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub injection_score: Option<f32>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub injection_flagged: bool,
    /// `tier: rule` for every output that failed a guard.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub output_violations: Vec<String>,
}

impl GuardReport {
    pub fn is_empty(&self) -> bool {
        *self == GuardReport::default()
    }

    /// Counters for stats and metrics: `redacted.email`, `pseudonymized.phone`,
    /// `injection.flagged`, `output.too_long`, ...
    pub fn events(&self) -> BTreeMap<String, u64> {
        let mut ev = BTreeMap::new();
        if let Some(mode) = self.pii_mode {
            for (kind, n) in &self.pii {
                *ev.entry(format!("{}.{kind}", mode.past_tense())).or_insert(0) += *n as u64;
            }
        }
        if self.injection_flagged {
            ev.insert("injection.flagged".into(), 1);
        }
        for v in &self.output_violations {
            let rule = v.rsplit(": ").next().unwrap_or(v);
            *ev.entry(format!("output.{rule}")).or_insert(0) += 1;
        }
        ev
    }
}

/// Inputs as the tiers will see them.
pub struct Guarded {
    pub inputs: BTreeMap<String, String>,
    pub vault: Option<Vault>,
    pub report: GuardReport,
    /// Whether any input was rewritten (the audit then stores these, not the originals).
    pub rewritten: bool,
}

impl Mesh {
    /// Injection check, then PII policy, on every input value. A block is
    /// [`MeshError::Blocked`] naming kinds and counts or the score, never the text.
    pub(crate) async fn guard_inputs(&self, g: &Guardrails, inputs: &BTreeMap<String, String>) -> Result<Guarded, MeshError> {
        let mut report = GuardReport::default();
        if let Some(action) = g.injection {
            let texts: Vec<String> = inputs.values().cloned().collect();
            let score = self.injection_score(texts).await?;
            report.injection_score = Some(score);
            if score >= g.injection_threshold() {
                if action == InjectionAction::Block {
                    let reason = format!("the input looks like a prompt injection (score {score:.2} ≥ {:.2})", g.injection_threshold());
                    return Err(MeshError::Blocked { reason, events: BTreeMap::from([("injection.blocked".to_owned(), 1)]) });
                }
                report.injection_flagged = true;
            }
        }
        let Some(policy) = g.pii_policy(&self.salt) else {
            return Ok(Guarded { inputs: inputs.clone(), vault: None, report, rewritten: false });
        };
        report.pii_mode = g.pii;
        let mut vault = Vault::new();
        let mut out = BTreeMap::new();
        let mut rewritten = false;
        for (k, v) in inputs {
            let red = match self.detector.apply_in(v, &policy, &mut vault) {
                Ok(r) => r,
                Err(GuardError::Blocked { counts }) => {
                    let events = counts.iter().map(|(kind, n)| (format!("blocked.{}", kind.name()), *n as u64)).collect();
                    let kinds: Vec<String> = counts.iter().map(|(kind, n)| format!("{}×{n}", kind.name())).collect();
                    return Err(MeshError::Blocked { reason: format!("input `{k}` contains {}", kinds.join(", ")), events });
                }
                Err(e) => return Err(MeshError::BadInput(format!("guardrails: {e}"))),
            };
            for (kind, n) in red.counts {
                *report.pii.entry(kind.name().to_owned()).or_insert(0) += n;
            }
            rewritten |= red.text != *v;
            out.insert(k.clone(), red.text);
        }
        let vault = (!vault.is_empty()).then_some(vault);
        Ok(Guarded { inputs: out, vault, report, rewritten })
    }

    /// Highest injection probability over `texts` (blocking work on a blocking thread).
    async fn injection_score(&self, texts: Vec<String>) -> Result<f32, MeshError> {
        let enc = self.models.encoder(INJECTION_ENCODER).await.map_err(|e| MeshError::BadInput(format!("injection check: {e}")))?;
        let cell = self.injection.clone();
        let root = self.cache_root.clone();
        tokio::task::spawn_blocking(move || {
            let head = injection_head(&cell, &root, &enc)?;
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let scores = head.score_batch(&enc, &refs).map_err(guard_err)?;
            Ok(scores.into_iter().fold(0.0f32, f32::max))
        })
        .await
        .map_err(|e| MeshError::BadInput(format!("injection check: {e}")))?
    }

    /// The output guard for a task under `g` (compiled once per task version and policy).
    pub(crate) fn output_guard(&self, task: &Task, g: &Guardrails) -> Result<Option<Arc<OutputGuard>>, MeshError> {
        let labels = (task.spec.output.kind == OutputKind::Label).then(|| task.spec.output.labels.clone());
        let schema = if task.spec.output.kind == OutputKind::Json { task.schema.clone() } else { None };
        let policy = g.output_policy(labels, schema);
        if policy == guard::OutputPolicy::default() {
            return Ok(None);
        }
        let key = format!("{}\u{1f}{}\u{1f}{}", task.spec.name, task.spec.version, serde_json::to_string(&policy).unwrap_or_default());
        if let Some(og) = self.output_guards.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(Some(og.clone()));
        }
        let og = Arc::new(OutputGuard::new(policy).map_err(|e| MeshError::BadInput(format!("guardrails: {e}")))?);
        self.output_guards.lock().unwrap_or_else(|e| e.into_inner()).insert(key, og.clone());
        Ok(Some(og))
    }
}

/// Every rule `output` breaks (strings are checked as they are, other JSON as compact text).
pub(crate) fn output_violations(og: &OutputGuard, output: &Value) -> Vec<Violation> {
    match output {
        Value::String(s) => og.check(s, None),
        v => og.check(&v.to_string(), None),
    }
}

/// Puts pseudonymised values back into every string of `v`.
pub(crate) fn restore(v: &Value, vault: &Vault) -> Value {
    match v {
        Value::String(s) => Value::String(vault.restore(s)),
        Value::Array(a) => Value::Array(a.iter().map(|x| restore(x, vault)).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, x)| (k.clone(), restore(x, vault))).collect()),
        x => x.clone(),
    }
}

fn guard_err(e: GuardError) -> MeshError {
    match e {
        GuardError::InputTooLarge { .. } => MeshError::TooLarge(e.to_string()),
        e => MeshError::BadInput(format!("injection check: {e}")),
    }
}

/// Where the injection head lives: keyed by the bundled set, the feature set and the encoder.
fn injection_dir(root: &Path, enc: &encoder::Encoder) -> PathBuf {
    let mut h = Sha256::new();
    h.update(guard::INJECTION_JSONL.as_bytes());
    h.update(guard::FEATURES_VERSION.to_le_bytes());
    h.update(enc.model_id().as_bytes());
    root.join("heads").join("injection").join(&hex::encode(h.finalize())[..12])
}

/// Where a process keeps its injection head once loaded: one cell, shared by the server's
/// request guards and its mesh's task guards, so the head is loaded (or trained) once.
pub type InjectionCell = Arc<std::sync::OnceLock<Arc<InjectionHead>>>;

/// The head in `cell`, loaded or trained on first use (blocking).
pub fn injection_head(cell: &std::sync::OnceLock<Arc<InjectionHead>>, root: &Path, enc: &encoder::Encoder) -> Result<Arc<InjectionHead>, MeshError> {
    if let Some(h) = cell.get() {
        return Ok(h.clone());
    }
    let h = Arc::new(load_or_train_injection(root, enc)?);
    Ok(cell.get_or_init(|| h).clone())
}

/// Load the saved injection head or train it on the bundled train split (blocking).
fn load_or_train_injection(root: &Path, enc: &encoder::Encoder) -> Result<InjectionHead, MeshError> {
    let dir = injection_dir(root, enc);
    if let Ok(h) = InjectionHead::load(&dir, enc) {
        return Ok(h);
    }
    let train: Vec<guard::Example> = guard::load_dataset().map_err(guard_err)?.into_iter().filter(|e| e.split == guard::Split::Train).collect();
    let head = InjectionHead::train_with(enc, &train, guard::default_train_config()).map_err(guard_err)?;
    if let Err(e) = std::fs::create_dir_all(&dir).map_err(|e| e.to_string()).and_then(|_| head.save(&dir).map_err(|e| e.to_string())) {
        tracing::warn!(dir = %dir.display(), error = %e, "could not save the injection head; it will be retrained next start");
    }
    Ok(head)
}
