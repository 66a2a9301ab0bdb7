//! The audit trail at the HTTP edge: one hash-chained record (`store::AuditRecord`) per
//! request and task run, appended before the answer is returned. The record is built and
//! written by the request's [`crate::exchange::Exchange`]; this module holds the rules.
//!
//! Why: an operator must be able to show, for any answer the server gave, who asked (API key
//! id), which request it was (`x-request-id`, echoed to the client), what answered it (model
//! and its file's sha256, or the task version and tier path), what it cost, and — per policy —
//! what was asked and answered, with a chain that shows the trail was not changed afterwards
//! (`rightsize audit verify`).
//!
//! Rules:
//! - A successful answer is returned only after its record is durable (`audit_append`
//!   commits before it returns). If the record cannot be written the request fails with 503
//!   (`audit_unavailable`); a stream ends with an error event instead of `data: [DONE]`. So
//!   every acknowledged request is in the log, even if the process is killed right after.
//! - Failed requests (errors after the body was parsed: 4xx/5xx from the handler, stream
//!   errors, clients that hang up mid-stream) are recorded best-effort with
//!   `status = "error:<http status>"` / `"cancelled"` and an empty output; they fail anyway.
//!   Requests refused before the handler (no or bad API key, unparsable body) are not recorded.
//! - Content policy (`audit.content`): `hashes` (default) keeps only `hmac-sha256:<hex>`
//!   ([`crate::secret::ServerSecret::content_hash`], keyed by the server key file, which is
//!   never in the database) of the input and output, so no prompt text reaches the store and
//!   a short value cannot be recovered by hashing guesses;
//!   `full` keeps the text. What is hashed, so an auditor holding the request and the key can recompute it (`rightsize audit hash`):
//!   chat: the messages as compact JSON `[{"role":…,"content":…}]` (roles as sent, content
//!   parts' text joined); completions: the prompt; embeddings: the inputs as a compact JSON
//!   array; tasks: the inputs as a compact JSON object (keys sorted). Output: the
//!   generated text (without an echoed prompt); for tasks the output (a string as is, anything
//!   else as compact JSON); for embeddings always the hash of the `data` array's compact JSON
//!   (vectors are not text).
//! - `guard` holds guard outcomes (PII kinds and counts, injection score/flag, output rules
//!   failed); with guardrails on, `input`/`output` are what the model saw and wrote (rewritten
//!   input, answer before placeholders were restored), never the removed values.

use crate::config::{AuditContent, ModelConfig};
use crate::error::ApiError;
use crate::state::AppState;
use std::collections::HashMap;
use std::time::Duration;
use store::AuditRecord;

/// Longest `x-request-id` a client may choose.
pub const MAX_REQUEST_ID: usize = 128;

/// Whether a client's `x-request-id` is kept: 1 to [`MAX_REQUEST_ID`] characters of
/// `[A-Za-z0-9._:-]`. Any other is replaced by a generated id (see `serve_on`), so what the
/// logs and the audit carry is bounded and holds no free text.
pub fn valid_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// A model (or task) name from a request as the audit keeps it: a configured model (or a
/// tier id over one, `local:ID`) as is; anything else, which is free text the client typed,
/// as `unknown:` and its keyed hash, under either content policy.
pub fn requested_model(state: &AppState, model: &str) -> String {
    let id = model
        .strip_prefix("local:")
        .or_else(|| model.strip_prefix("classifier:"))
        .unwrap_or(model);
    if state.cfg.models.iter().any(|m| m.id == id) {
        model.to_owned()
    } else {
        unknown_name(state, model)
    }
}

/// `unknown:<keyed hash>` of a name that is not configured (equal names correlate).
pub fn unknown_name(state: &AppState, name: &str) -> String {
    format!("unknown:{}", state.secret.content_hash(name))
}

/// The text as the policy keeps it.
pub fn content(state: &AppState, text: &str) -> String {
    match state.cfg.audit.content {
        AuditContent::Hashes => state.secret.content_hash(text),
        AuditContent::Full => text.to_owned(),
    }
}

/// The status of a failed request: `error:<http status>`. The message is not kept: it may
/// quote the input.
pub fn error_status(e: &ApiError) -> String {
    format!("error:{}", e.status.as_u16())
}

/// USD for `core_s` core-seconds of local compute (the task mesh's price).
pub fn local_cost(state: &AppState, core_s: f64) -> f64 {
    mesh::Prices {
        cpu_core_hour_usd: state.cfg.cpu_core_hour_usd,
    }
    .local(core_s)
}

/// The sha256 of the file behind a model id (or a tier id such as `local:qwen2.5-0.5b`),
/// when the cache holds a verified marker for it.
pub fn model_hash(state: &AppState, model: &str) -> Option<String> {
    let id = model
        .strip_prefix("local:")
        .or_else(|| model.strip_prefix("classifier:"))
        .unwrap_or(model);
    state.model_hashes.get(id).cloned()
}

/// Model id → verified sha256 (`supply::verified_model_digest`: a decoder's `model.gguf`, an
/// encoder folder's key file): the marker's digest while the file's size and mtime match the
/// stamp recorded when it was hashed, else the file is hashed again. A file changed since it
/// was verified gets no hash here (and the pool refuses to load it, `crate::models`).
pub fn model_hashes(cache: &supply::Cache, models: &[ModelConfig]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for m in models {
        let Ok(path) = supply::resolve_model(cache, m.source.as_deref().unwrap_or(&m.id)) else {
            continue;
        };
        match supply::verified_model_digest(&path, &supply::NoProgress) {
            Ok(Some(d)) => {
                out.insert(m.id.clone(), d);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(model = %m.id, error = %e, "model file does not match its verified sha256: it will not be loaded")
            }
        }
    }
    out
}

/// Append `rec`; it is durable when this returns `Ok`. On failure the request must fail:
/// 503 in OpenAI's error shape. Without an audit store this records nothing.
pub async fn record(state: &AppState, rec: AuditRecord) -> Result<(), ApiError> {
    // Every finished request and task run passes here: count its use against its key's quota.
    crate::quota::charge(state, &rec).await;
    let Some(store) = &state.audit else { return Ok(()) };
    match store.audit_append(&rec).await {
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::error!(request_id = %rec.request_id, error = %e, "could not write the audit record; failing the request");
            let mut err = match e {
                // Not transient: every append fails until an operator removes that row.
                store::StoreError::AuditBeyondHead { seq, .. } => ApiError::unavailable(format!(
                    "the audit log holds a record written from outside rightsize past its head (seq {seq}), so no record can be appended until an operator removes it (`rightsize audit verify` names it); the request was not completed"
                )),
                _ => ApiError::unavailable("the audit log could not be written; the request was not completed"),
            };
            err.code = Some("audit_unavailable");
            Err(err)
        }
    }
}

/// Append the record of a request that failed anyway: a failure to write it is only logged.
pub async fn record_failure(state: &AppState, rec: AuditRecord) {
    let _ = record(state, rec).await;
}

/// Retention: once at start, then hourly, delete records older than `audit.retention_days`.
/// The chain is verified first, and nothing is pruned while it is broken: retention must not
/// delete the evidence of tampering (`rightsize audit verify` names the bad record).
pub fn spawn_retention(state: &AppState) {
    let Some(store) = state.audit.clone() else { return };
    let days = state.cfg.audit.retention_days;
    if days == 0 {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            prune(&store, days).await;
        }
    });
}

async fn prune(store: &store::Store, days: u32) {
    match store.audit_verify().await {
        Ok(rep) if !rep.ok() => {
            let bad = rep
                .first_bad
                .as_ref()
                .map(|b| format!("record {}: {}", b.seq, b.reason))
                .unwrap_or_default();
            tracing::error!(first_bad = %bad, "the audit chain does not verify; retention is paused until it is investigated");
            return;
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(error = %e, "could not verify the audit chain; retention skipped this time");
            return;
        }
    }
    let cutoff = store::now_ms() - i64::from(days) * 86_400_000;
    match store.audit_prune(cutoff).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(records = n, days, "audit retention pruned old records"),
        Err(e) => tracing::warn!(error = %e, "audit retention failed"),
    }
}
