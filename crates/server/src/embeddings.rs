//! `POST /v1/embeddings`: inputs through the input guards, then the encoder a few at a time
//! on the blocking pool, under a per-model cap on requests computing at once
//! (`max_embedding_in_flight`), a cap on characters per request (`max_embedding_chars`) and
//! the request deadline, checked between encoder batches.

use crate::error::ApiError;
use crate::exchange::{Done, Exchange, Output, Work};
use crate::generate;
use crate::models::Loaded;
use crate::openai::*;
use crate::state::{AppState, Caller};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub async fn embeddings(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Body(mut r): Body<EmbeddingRequest>,
) -> Result<Response, ApiError> {
    let mut ex = Exchange::request(&state, &caller, &headers, &r.model);
    // The inputs as the audit log sees them: a compact JSON list of the strings. Until the
    // guards have run, a failure record keeps them PII-redacted (`audit.content = "full"`).
    let inputs = match std::mem::replace(&mut r.input, EmbeddingInput::Many(Vec::new())) {
        EmbeddingInput::One(s) => Ok(vec![s]),
        EmbeddingInput::Many(v) => Ok(v),
        EmbeddingInput::Tokens(t) => {
            ex.set_input(serde_json::to_string(&t).unwrap_or_default(), false);
            Err(ApiError::bad_request("token-array input is not supported; send strings").param("input"))
        }
    };
    let res = match inputs {
        Ok(inputs) => {
            ex.set_input(serde_json::to_string(&inputs).unwrap_or_default(), false);
            embed(&mut ex, inputs, r).await
        }
        Err(e) => Err(e),
    };
    ex.finish(res).await
}

/// Sets its flag when dropped: the handler's future is gone (answered, past its deadline, or
/// the client hung up), so blocking work for it can stop.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Inputs embedded per encoder call (between two deadline checks).
const EMBED_CHUNK: usize = 8;

/// One of the `max_embedding_in_flight` slots of `model`, or 429 with Retry-After.
fn embedding_slot(state: &AppState, model: &str) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    let max = state.cfg.max_embedding_in_flight;
    let sem = {
        let mut slots = state.embedding_slots.lock().unwrap_or_else(|e| e.into_inner());
        slots
            .entry(model.to_owned())
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(max)))
            .clone()
    };
    sem.try_acquire_owned().map_err(|_| {
        ApiError::overloaded(
            format!(
                "{max} embedding requests for `{model}` are already running (`max_embedding_in_flight`); retry later"
            ),
            1,
        )
    })
}

/// What a request may cost: 1 to 2048 inputs, characters in (the encoder's work grows with
/// them), the output format and size.
fn check(state: &AppState, inputs: &[String], r: &EmbeddingRequest) -> Result<bool, ApiError> {
    if !state.pool.knows(&r.model) {
        return Err(ApiError::not_found_model(&r.model));
    }
    if inputs.is_empty() || inputs.len() > 2048 {
        return Err(ApiError::bad_request("`input` must hold 1 to 2048 strings").param("input"));
    }
    let chars: usize = inputs.iter().map(|s| s.chars().count()).sum();
    if chars > state.cfg.max_embedding_chars {
        return Err(ApiError::bad_request(format!(
            "`input` holds {chars} characters; this server embeds at most {} per request (`max_embedding_chars`)",
            state.cfg.max_embedding_chars
        ))
        .param("input")
        .code("input_too_large"));
    }
    let base64 = match r.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(o) => return Err(ApiError::bad_request(format!("unknown encoding_format `{o}`")).param("encoding_format")),
    };
    if r.dimensions == Some(0) {
        return Err(dims_error());
    }
    Ok(base64)
}

fn dims_error() -> ApiError {
    ApiError::bad_request("`dimensions` must be between 1 and the model's size").param("dimensions")
}

fn timed_out() -> ApiError {
    ApiError::timeout("request deadline passed")
}

async fn embed(ex: &mut Exchange, mut inputs: Vec<String>, r: EmbeddingRequest) -> Result<Response, ApiError> {
    ex.timings.started = Instant::now();
    let state = ex.state.clone();
    let base64 = check(&state, &inputs, &r)?;
    let deadline =
        ex.timings.started + generate::deadline(&ex.headers, Duration::from_secs(state.cfg.request_timeout_s))?;
    let permit = embedding_slot(&state, &r.model)?;
    // Input guardrails, as for chat: what they remove never reaches the model or the audit.
    let rails = crate::guardrails::effective(&state, &ex.caller);
    let scored = if rails.injection.is_some() {
        inputs.clone()
    } else {
        Vec::new()
    };
    ex.guard = crate::guardrails::screen_texts(&state, &rails, scored, inputs.iter_mut().collect(), "input").await?;
    ex.set_input(serde_json::to_string(&inputs).unwrap_or_default(), true);
    let lease = tokio::time::timeout_at(deadline.into(), state.pool.acquire(&r.model, None))
        .await
        .map_err(|_| timed_out())??;
    let Loaded::Encoder { model: enc, .. } = &*lease else {
        return Err(ApiError::bad_request(format!("`{}` is not an embedding model", r.model)).param("model"));
    };
    if r.dimensions.is_some_and(|d| d > enc.dim()) {
        return Err(dims_error());
    }
    // The work stops between batches once the deadline passes or this request is gone; the
    // slot and the lease are held until it has.
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_on_drop = StopOnDrop(stop.clone());
    let work = tokio::task::spawn_blocking(move || {
        let (_permit, lease) = (permit, lease);
        let mut out = encoder::EmbedOutput::default();
        let Loaded::Encoder { model: enc, .. } = &*lease else {
            return Ok(out);
        };
        let keep_going = || !stop.load(Ordering::Relaxed) && Instant::now() < deadline;
        // A few inputs at a time: on a small CPU one encoder batch of long inputs takes
        // seconds, and the deadline is checked between them.
        for chunk in inputs.chunks(EMBED_CHUNK) {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            let part = enc.embed_until(&refs, &keep_going)?;
            out.embeddings.extend(part.embeddings);
            out.token_counts.extend(part.token_counts);
        }
        Ok(out)
    });
    let out = tokio::time::timeout_at(deadline.into(), work)
        .await
        .map_err(|_| timed_out())?
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| match e {
            encoder::EncoderError::Stopped { .. } => timed_out(),
            e => ApiError::internal(e.to_string()),
        })?;
    let tokens = out.total_tokens();
    let data: Vec<Embedding> = out
        .embeddings
        .into_iter()
        .enumerate()
        .map(|(index, v)| Embedding {
            object: "embedding",
            index,
            embedding: vector(v, r.dimensions, base64),
        })
        .collect();
    // Vectors are not text: the record keeps the hash of `data` under either content policy.
    let hash = state
        .secret
        .content_hash(&serde_json::to_string(&data).unwrap_or_default());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
    let cost_usd = crate::audit::local_cost(&state, ex.timings.started.elapsed().as_secs_f64() * cores);
    ex.ok(Done {
        output: Output::Hash(hash),
        tokens_in: tokens,
        tokens_out: 0,
        cost_usd,
        work: Work::Embedding,
    })
    .await?;
    let rightsize = ex.guard.as_ref().map(|g| Rightsize::Guard { guard: g.into() });
    let usage = EmbeddingUsage {
        prompt_tokens: tokens,
        total_tokens: tokens,
    };
    Ok(Json(EmbeddingList {
        object: "list",
        data,
        model: r.model,
        usage,
        rightsize,
    })
    .into_response())
}

/// One vector as the client asked for it: cut to `dimensions` (and normalised again), as
/// floats or base64 of its little-endian `f32`s.
fn vector(mut v: Vec<f32>, dimensions: Option<usize>, base64: bool) -> Vector {
    if let Some(d) = dimensions {
        v.truncate(d);
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        v.iter_mut().for_each(|x| *x /= n);
    }
    if base64 {
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        Vector::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
    } else {
        Vector::Float(v.into_iter().map(f64::from).collect())
    }
}
