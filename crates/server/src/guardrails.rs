//! The guard engine at the HTTP edge: `POST /v1/guard/pii` (the PII detector alone — find,
//! redact, mask, hash or block), and the input guards of chat, completions and embeddings
//! requests under the server's `[guard]` policy and each API key's own (tasks apply theirs
//! in the mesh, over the same [`guard::Guards`]).

use crate::error::ApiError;
use crate::models::{Loaded, ModelPool};
use crate::openai::{Body, InMessage};
use crate::state::{AppState, Caller};
use axum::extract::State;
use axum::Json;
use guard::{EncoderLease, GuardError, Guardrails, InputError, Mode, Screened};
use serde::{Deserialize, Serialize};
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

/// Where the PII is (byte offsets), how much of each kind, and the text under the mode.
#[derive(Debug, Serialize)]
pub struct PiiResponse {
    pub entities: Vec<guard::PiiSpan>,
    pub counts: BTreeMap<guard::PiiKind, usize>,
    pub text: String,
}

pub async fn pii(State(state): State<AppState>, Body(r): Body<PiiRequest>) -> Result<Json<PiiResponse>, ApiError> {
    match state.guards.scan(r.input, r.mode.unwrap_or(Mode::Redact)).await {
        Ok((entities, red)) => Ok(Json(PiiResponse {
            entities,
            counts: red.counts,
            text: red.text,
        })),
        Err(e @ GuardError::Blocked { .. }) => Err(ApiError::unprocessable(e.to_string()).param("input")),
        Err(e @ GuardError::Worker(_)) => Err(ApiError::internal(e.to_string())),
        Err(e) => Err(ApiError::bad_request(e.to_string())),
    }
}

/// The guardrails in force for `caller`: the key's policy, then the server's `[guard]`.
pub fn effective(state: &AppState, caller: &Caller) -> Guardrails {
    match &caller.guard {
        Some(k) => k.or(&state.cfg.guard),
        None => state.cfg.guard.clone(),
    }
}

/// The pool as the guard engine's encoder lender (MiniLM for the injection check).
struct PoolLender<'a>(&'a ModelPool);

impl guard::EncoderLender for PoolLender<'_> {
    type Error = ApiError;
    async fn lend(&self, id: &str) -> Result<EncoderLease, ApiError> {
        let lease = self.0.acquire(id, None).await?;
        match &*lease {
            Loaded::Encoder { .. } => Ok(Arc::new(crate::tasks::Enc(lease)) as EncoderLease),
            Loaded::Decoder(_) => Err(ApiError::internal(format!("`{id}` is not an encoder"))),
        }
    }
}

/// The input guards of a chat request, in place: the injection check on the user messages,
/// the PII policy on every message. `None` when no guardrail is in force.
pub async fn screen_messages(
    state: &AppState,
    rails: &Guardrails,
    messages: &mut [InMessage],
) -> Result<Option<Screened>, ApiError> {
    let scored = if rails.injection.is_some() {
        messages
            .iter()
            .filter(|m| m.role == "user")
            .flat_map(|m| m.texts().into_iter().cloned())
            .collect()
    } else {
        Vec::new()
    };
    let texts = messages.iter_mut().flat_map(InMessage::texts_mut).collect();
    screen_texts(state, rails, scored, texts, "messages").await
}

/// The injection check on `scored`, then the PII policy on each of `texts`, in place. Blocks
/// are 422 naming kinds and counts (or the score), never the text; `param` names the field.
pub async fn screen_texts(
    state: &AppState,
    rails: &Guardrails,
    scored: Vec<String>,
    texts: Vec<&mut String>,
    param: &str,
) -> Result<Option<Screened>, ApiError> {
    if rails.is_empty() {
        return Ok(None);
    }
    match state
        .guards
        .screen(rails, scored, texts, &PoolLender(&state.pool))
        .await
    {
        Ok(s) => Ok(Some(s)),
        Err(e) => {
            state.metrics.guard_events("request", &e.events());
            Err(refused(e, param))
        }
    }
}

/// A refusal of the input guards as the client sees it.
fn refused(e: InputError<ApiError>, param: &str) -> ApiError {
    match e {
        InputError::Lend(e) => e,
        e @ (InputError::Injection { .. } | InputError::Pii { .. }) => {
            ApiError::unprocessable(format!("blocked by guardrails: {e}"))
                .param(param)
                .code("guardrail_blocked")
        }
        InputError::Scoring(e @ GuardError::InputTooLarge { .. }) => {
            ApiError::too_large(e.to_string()).param("messages")
        }
        e @ InputError::Scoring(_) => ApiError::internal(e.to_string()),
        InputError::Policy(e @ GuardError::Worker(_)) => ApiError::internal(e.to_string()),
        InputError::Policy(e) => ApiError::bad_request(e.to_string()).param(param),
    }
}
