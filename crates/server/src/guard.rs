//! Guardrails at the HTTP edge: `POST /v1/guard/pii` (the PII detector alone — find,
//! redact, mask, hash or block), and the input/output guards of chat requests under the
//! server's `[guard]` policy and each API key's own (tasks apply theirs in the mesh).

use crate::error::ApiError;
use crate::models::Loaded;
use crate::openai::{Body, Content, InMessage};
use crate::state::{AppState, Caller};
use axum::extract::State;
use axum::Json;
use guard::{Detector, GuardError, Guardrails, InjectionAction, Mode, Policy, Vault};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PiiRequest {
    pub input: String,
    /// redact (default), mask, hash, block or pseudonymize.
    #[serde(default)]
    pub mode: Option<Mode>,
}

pub async fn pii(State(state): State<AppState>, Body(r): Body<PiiRequest>) -> Result<Json<Value>, ApiError> {
    let d = state.pii.clone();
    let policy = Policy::new(r.mode.unwrap_or(Mode::Redact)).with_salt(state.secret.pii_salt());
    let large = r.input.len() > OFF_THREAD_BYTES;
    let work = move || {
        let spans = d.detect(&r.input);
        match d.apply(&r.input, &policy) {
            Ok(red) => Ok(Json(json!({
                "entities": spans.iter().map(|s| json!({"kind": s.kind, "start": s.start, "end": s.end})).collect::<Vec<_>>(),
                "counts": red.counts,
                "text": red.text,
            }))),
            Err(e @ GuardError::Blocked { .. }) => Err(ApiError::unprocessable(e.to_string()).param("input")),
            Err(e) => Err(ApiError::bad_request(e.to_string())),
        }
    };
    off_thread_if(large, work).await?
}

// ---------------------------------------------------------------------------------------
// Guardrails in the request path (chat completions; tasks go through the mesh).

/// The guardrails in force for `caller`: the key's policy, then the server's `[guard]`.
pub fn effective(state: &AppState, caller: &Caller) -> Guardrails {
    match &caller.guard {
        Some(k) => k.or(&state.cfg.guard),
        None => state.cfg.guard.clone(),
    }
}

/// What the input guards did to a chat request, and what the output needs.
#[derive(Debug)]
pub struct ChatGuard {
    /// Placeholders to put back into the answer (pseudonymisation).
    pub vault: Option<Vault>,
    /// PII in the answer is redacted before it leaves (`output_pii`).
    pub output_pii: bool,
    /// The server's detector (with its `[pii]` recognisers).
    pub detector: Arc<Detector>,
    /// Counters for metrics and the response's `rightsize.guard` (kinds and counts only).
    pub events: BTreeMap<String, u64>,
    pub injection_score: Option<f32>,
    /// Streaming: text held back while a placeholder may be split across tokens.
    pending: String,
}

impl ChatGuard {
    /// The answer as the client gets it, from the text the model wrote: PII the model
    /// produced itself is redacted (when `output_pii`), then placeholders are restored.
    /// Returns the text for the audit (before restoring) and the text for the client.
    pub fn finish(&mut self, text: &str) -> (String, String) {
        let mut seen = text.to_owned();
        if self.output_pii {
            if let Ok(red) = self.detector.apply(text, &Policy::new(Mode::Redact)) {
                for (k, n) in red.counts {
                    *self.events.entry(format!("output.pii.{}", k.name())).or_insert(0) += n as u64;
                }
                seen = red.text;
            }
        }
        let out = match &self.vault {
            Some(v) => v.restore(&seen),
            None => seen.clone(),
        };
        (seen, out)
    }

    /// Streaming: the part of `piece` that can be sent now, with placeholders restored. A
    /// `<` that may open a placeholder split across tokens is held back (at most 48 bytes).
    pub fn stream_piece(&mut self, piece: &str) -> String {
        let Some(vault) = &self.vault else { return piece.to_owned() };
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
        match &self.vault {
            Some(v) => v.restore(&rest),
            None => rest,
        }
    }

    pub fn report(&self) -> Value {
        json!({ "events": self.events, "injection_score": self.injection_score })
    }
}

/// Injection check (on user messages) and PII policy (on every message) of a chat request,
/// in place.
pub async fn guard_messages(state: &AppState, rails: &Guardrails, messages: &mut [InMessage]) -> Result<ChatGuard, ApiError> {
    let scored: Vec<String> = messages.iter().filter(|m| m.role == "user").flat_map(|m| texts_of(m).into_iter().cloned()).collect();
    let texts: Vec<&mut String> = messages.iter_mut().flat_map(texts_of_mut).collect();
    guard_texts(state, rails, scored, texts, "messages").await
}

/// Injection check on `scored`, then the PII policy on each of `texts`, in place. Blocks are
/// 422 naming kinds and counts (or the score), never the text.
pub async fn guard_texts(state: &AppState, rails: &Guardrails, scored: Vec<String>, texts: Vec<&mut String>, param: &str) -> Result<ChatGuard, ApiError> {
    let mut g = ChatGuard { vault: None, output_pii: rails.output_pii.unwrap_or(false), detector: state.pii.clone(), events: BTreeMap::new(), injection_score: None, pending: String::new() };
    if rails.injection.is_some() {
        let score = injection_score(state, scored).await?;
        g.injection_score = Some(score);
        if score >= rails.injection_threshold() {
            if rails.injection == Some(InjectionAction::Block) {
                state.metrics.guard_events("request", &BTreeMap::from([("injection.blocked".to_owned(), 1)]));
                return Err(ApiError::unprocessable(format!("blocked by guardrails: the input looks like a prompt injection (score {score:.2} ≥ {:.2})", rails.injection_threshold()))
                    .param(param)
                    .code("guardrail_blocked"));
            }
            g.events.insert("injection.flagged".into(), 1);
        }
    }
    if let Some(policy) = rails.pii_policy(state.secret.pii_salt()) {
        let past = rails.pii.unwrap_or(Mode::Redact).past_tense();
        let mut texts = texts;
        let owned: Vec<String> = texts.iter_mut().map(|t| std::mem::take(&mut **t)).collect();
        let detector = state.pii.clone();
        let large = owned.iter().map(String::len).sum::<usize>() > OFF_THREAD_BYTES;
        // The texts come back rewritten, or as they were when a guard refuses them (so the
        // audit can redact the originals).
        type Blocked = (ApiError, Option<BTreeMap<String, u64>>);
        let work = move || -> (Vec<String>, Result<(Vault, BTreeMap<String, u64>), Blocked>) {
            let mut vault = Vault::new();
            let mut events = BTreeMap::new();
            let mut out = Vec::with_capacity(owned.len());
            for t in &owned {
                let red = match detector.apply_in(t, &policy, &mut vault) {
                    Ok(r) => r,
                    Err(GuardError::Blocked { counts }) => {
                        let ev: BTreeMap<String, u64> = counts.iter().map(|(k, n)| (format!("blocked.{}", k.name()), *n as u64)).collect();
                        let what: Vec<String> = counts.iter().map(|(k, n)| format!("{}×{n}", k.name())).collect();
                        let e = ApiError::unprocessable(format!("blocked by guardrails: the input contains {}", what.join(", "))).code("guardrail_blocked");
                        return (owned, Err((e, Some(ev))));
                    }
                    Err(e) => return (owned, Err((ApiError::bad_request(e.to_string()), None))),
                };
                for (k, n) in red.counts {
                    *events.entry(format!("{past}.{}", k.name())).or_insert(0) += n as u64;
                }
                out.push(red.text);
            }
            (out, Ok((vault, events)))
        };
        let (back, applied) = off_thread_if(large, work).await?;
        for (t, text) in texts.into_iter().zip(back) {
            *t = text;
        }
        let (vault, events) = match applied {
            Ok(a) => a,
            Err((e, blocked)) => {
                if let Some(ev) = blocked {
                    state.metrics.guard_events("request", &ev);
                }
                return Err(e.param(param));
            }
        };
        for (k, n) in events {
            *g.events.entry(k).or_insert(0) += n;
        }
        g.vault = (!vault.is_empty()).then_some(vault);
    }
    Ok(g)
}

fn texts_of(m: &InMessage) -> Vec<&String> {
    match &m.content {
        Some(Content::Text(t)) => vec![t],
        Some(Content::Parts(p)) => p.iter().filter_map(|x| x.text.as_ref()).collect(),
        None => Vec::new(),
    }
}

fn texts_of_mut(m: &mut InMessage) -> Vec<&mut String> {
    match &mut m.content {
        Some(Content::Text(t)) => vec![t],
        Some(Content::Parts(p)) => p.iter_mut().filter_map(|x| x.text.as_mut()).collect(),
        None => Vec::new(),
    }
}

/// Highest injection probability over `texts`, on the pool's MiniLM (the head is trained
/// once from the bundled set and cached under `<cache>/heads/injection`).
async fn injection_score(state: &AppState, texts: Vec<String>) -> Result<f32, ApiError> {
    let lease = state.pool.acquire(mesh::guarding::INJECTION_ENCODER, None).await?;
    let cell = state.injection.clone();
    let root = supply::Cache::from_env().root().to_owned();
    tokio::task::spawn_blocking(move || {
        let Loaded::Encoder { model, .. } = &*lease else {
            return Err(ApiError::internal(format!("`{}` is not an encoder", mesh::guarding::INJECTION_ENCODER)));
        };
        let head = mesh::guarding::injection_head(&cell, &root, model).map_err(|e| ApiError::internal(e.to_string()))?;
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let scores = head.score_batch(model, &refs).map_err(|e| match e {
            GuardError::InputTooLarge { .. } => ApiError::too_large(e.to_string()).param("messages"),
            e => ApiError::internal(e.to_string()),
        })?;
        Ok(scores.into_iter().fold(0.0f32, f32::max))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
}

/// Texts longer than this (bytes, all together) are checked for PII on the blocking pool, not
/// on the async workers.
pub const OFF_THREAD_BYTES: usize = 16 * 1024;

/// Run PII work (CPU, linear in the text) here when it is small, on the blocking pool when
/// `large`, so a big body never stalls the async workers.
async fn off_thread_if<T: Send + 'static>(large: bool, work: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    if large {
        tokio::task::spawn_blocking(work).await.map_err(|e| ApiError::internal(e.to_string()))
    } else {
        Ok(work())
    }
}

/// `text` with PII redacted when the audit keeps full text (for requests that failed before
/// their guardrails could rewrite them); unchanged under `hashes`. Large texts are redacted
/// on the blocking pool.
pub async fn redact_for_audit(state: &AppState, text: &str) -> String {
    match state.cfg.audit.content {
        crate::config::AuditContent::Full => {
            let (d, large, text) = (state.pii.clone(), text.len() > OFF_THREAD_BYTES, text.to_owned());
            off_thread_if(large, move || d.apply(&text, &Policy::new(Mode::Redact)).map(|r| r.text).unwrap_or_default()).await.unwrap_or_default()
        }
        crate::config::AuditContent::Hashes => text.to_owned(),
    }
}
