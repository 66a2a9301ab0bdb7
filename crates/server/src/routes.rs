//! The route table and handlers. Handlers stay thin: parse, authorise, run the input guards,
//! hand to `generate` (or `embeddings`, `tasks`) — each through one [`Exchange`], which writes
//! the audit record and the metrics.

use crate::error::ApiError;
use crate::exchange::Exchange;
use crate::generate::{self, Delivery, Job, Shape};
use crate::guardrails;
use crate::models::Loaded;
use crate::openai::*;
use crate::state::{AppState, Caller, KeyLookup};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::json;

/// The axum application: every route, behind the access gate and (for the API) auth.
pub fn app(state: AppState) -> Router {
    let api = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/embeddings", post(crate::embeddings::embeddings))
        .route("/v1/models", get(list_models))
        .route("/v1/models/{id}", get(get_model))
        .route("/v1/guard/pii", post(guardrails::pii))
        .route("/v1/tasks", get(crate::tasks::list))
        .route("/v1/tasks/{name}", get(crate::tasks::show).post(crate::tasks::run))
        .route("/v1/tasks/{name}/stats", get(crate::tasks::stats))
        .route("/admin/models", get(ps))
        .route("/admin/models/{id}/load", post(load))
        .route("/admin/models/{id}/unload", post(unload))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .merge(api)
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(DefaultBodyLimit::max(state.cfg.max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), crate::access::gate))
        .with_state(state)
}

async fn auth(State(state): State<AppState>, mut req: Request, next: Next) -> Result<Response, ApiError> {
    let bearer = req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|s| !s.is_empty());
    // Host/Origin/Content-Type were checked by `crate::access::gate`. Open local mode: no
    // bearer, or one the store does not know (official clients always send one), is an
    // anonymous caller with the `inference` scope; a revoked or refused key never passes.
    let caller = match bearer {
        Some(secret) if state.admin_token.matches(secret) => Caller::local_admin(),
        Some(secret) => match state.keys.as_ref().map_or(KeyLookup::Unknown, |k| k.check(secret)) {
            KeyLookup::Active(c) => c,
            KeyLookup::Revoked => return Err(ApiError::unauthorized("invalid or revoked API key")),
            KeyLookup::Refused { key_id, reason } => {
                tracing::warn!(key = %key_id, "request refused: {reason}");
                return Err(ApiError::forbidden(reason).code("key_refused"));
            }
            KeyLookup::Unknown if state.cfg.open_local => Caller::anonymous(),
            KeyLookup::Unknown => return Err(ApiError::unauthorized("invalid or revoked API key")),
        },
        None if state.cfg.open_local => Caller::anonymous(),
        None => {
            return Err(ApiError::unauthorized(
                "an API key is required: `Authorization: Bearer <key>`",
            ))
        }
    };
    if req.uri().path().starts_with("/admin") && !caller.admin {
        return Err(ApiError::forbidden(match caller.key_id {
            Some(_) => "this key lacks the `admin` scope",
            None => "/admin needs an admin key (`rightsize keys create --scope admin`); the local `rightsize ps/load/unload` send this server's admin token by themselves",
        }));
    }
    crate::quota::check(&state, &caller).await?;
    req.extensions_mut().insert(caller);
    Ok(next.run(req).await)
}

fn ctx_limit(state: &AppState, model: &str) -> Result<usize, ApiError> {
    let m = state
        .cfg
        .models
        .iter()
        .find(|m| m.id == model)
        .ok_or_else(|| ApiError::not_found_model(model))?;
    Ok(m.ctx as usize)
}

/// A chat request's input as the audit log sees it: the messages as compact JSON
/// `[{"role":…,"content":…}]`, content parts' text joined (see `crate::audit`).
fn chat_audit_input(msgs: &[InMessage]) -> String {
    let msgs: Vec<engine::ChatMessage> = msgs
        .iter()
        .map(|m| engine::ChatMessage::new(m.role.clone(), m.text()))
        .collect();
    serde_json::to_string(&msgs).unwrap_or_default()
}

async fn chat(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Body(mut r): Body<ChatRequest>,
) -> Result<Response, ApiError> {
    // Before any per-message work (guardrails, templating): a small body must not buy
    // seconds of CPU.
    if r.messages.len() > state.cfg.max_messages {
        let mut ex = Exchange::request(&state, &caller, &headers, &r.model);
        ex.set_input(chat_audit_input(&r.messages), false);
        let e = ApiError::bad_request(format!(
            "`messages` holds {} messages; this server takes at most {} (`max_messages`)",
            r.messages.len(),
            state.cfg.max_messages
        ))
        .param("messages")
        .code("too_many_messages");
        return ex.fail(e).await;
    }
    if let Some(task) = r.model.strip_prefix("task:") {
        let task = task.to_owned();
        return crate::tasks::chat(state, caller, headers, &task, r).await;
    }
    let mut ex = Exchange::request(&state, &caller, &headers, &r.model);
    // Input guardrails rewrite the messages first: nothing after this point (the model, the
    // audit, the logs) sees what they removed.
    let rails = guardrails::effective(&state, &caller);
    let screened = guardrails::screen_messages(&state, &rails, &mut r.messages).await;
    ex.set_input(chat_audit_input(&r.messages), screened.is_ok());
    let job = screened.and_then(|g| {
        ex.guard = g;
        chat_job(&ex, r)
    });
    match job {
        Ok(job) => generate::run(ex, job).await,
        Err(e) => ex.fail(e).await,
    }
}

/// The generation a chat request asks for.
fn chat_job(ex: &Exchange, r: ChatRequest) -> Result<Job, ApiError> {
    let limit = ctx_limit(&ex.state, &r.model)?;
    if r.stream && ex.guard.as_ref().is_some_and(|g| g.output_pii) {
        return Err(
            ApiError::bad_request("the `output_pii` guardrail checks the whole answer: use `stream: false`")
                .param("stream"),
        );
    }
    if r.tools.is_some() {
        return Err(ApiError::bad_request("`tools` are not supported yet").param("tools"));
    }
    let messages = generate::chat_messages(&r.messages)?;
    let params = generate::sampling_params(&r.sampling, limit)?;
    let top = match (r.logprobs, r.top_logprobs) {
        (_, Some(n)) if n > 20 => {
            return Err(ApiError::bad_request("`top_logprobs` must be at most 20").param("top_logprobs"))
        }
        (true, n) => Some(n.unwrap_or(0) as usize),
        (false, Some(_)) => {
            return Err(ApiError::bad_request("`top_logprobs` needs `logprobs: true`").param("top_logprobs"))
        }
        (false, None) => None,
    };
    let mut req = engine::GenerateRequest::new(engine::Prompt::Chat(messages), params);
    req.constraint = generate::constraint(&r.response_format);
    req.logprobs = top;
    Job::new(
        ex,
        Shape::Chat,
        req,
        &r.sampling,
        Delivery::new(r.stream, r.stream_options.as_ref()),
    )
}

async fn completions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Body(mut r): Body<CompletionRequest>,
) -> Result<Response, ApiError> {
    let mut ex = Exchange::request(&state, &caller, &headers, &r.model);
    let mut prompts = std::mem::replace(&mut r.prompt, StringOrList::Many(Vec::new())).into_vec();
    let rails = guardrails::effective(&state, &caller);
    let scored = if rails.injection.is_some() {
        prompts.clone()
    } else {
        Vec::new()
    };
    let screened = guardrails::screen_texts(&state, &rails, scored, prompts.iter_mut().collect(), "prompt").await;
    // The prompt as the audit log sees it: the text (several prompts: a compact JSON list).
    let input = match prompts.as_slice() {
        [one] => one.clone(),
        many => serde_json::to_string(many).unwrap_or_default(),
    };
    ex.set_input(input, screened.is_ok());
    let job = screened.and_then(|g| {
        ex.guard = g;
        completion_job(&ex, prompts, r)
    });
    match job {
        Ok(job) => generate::run(ex, job).await,
        Err(e) => ex.fail(e).await,
    }
}

/// The generation a (legacy) completions request asks for.
fn completion_job(ex: &Exchange, prompts: Vec<String>, r: CompletionRequest) -> Result<Job, ApiError> {
    let limit = ctx_limit(&ex.state, &r.model)?;
    if r.stream && ex.guard.as_ref().is_some_and(|g| g.output_pii) {
        return Err(
            ApiError::bad_request("the `output_pii` guardrail checks the whole answer: use `stream: false`")
                .param("stream"),
        );
    }
    let [prompt] = <[String; 1]>::try_from(prompts)
        .map_err(|_| ApiError::bad_request("exactly one prompt is supported").param("prompt"))?;
    if prompt.is_empty() {
        return Err(ApiError::bad_request("`prompt` must not be empty").param("prompt"));
    }
    let mut params = generate::sampling_params(&r.sampling, limit)?;
    if r.sampling.max_tokens.is_none() {
        params.max_tokens = 16; // OpenAI's default for legacy completions
    }
    if r.logprobs.is_some_and(|n| n > 5) {
        return Err(ApiError::bad_request("`logprobs` must be at most 5").param("logprobs"));
    }
    let mut req = engine::GenerateRequest::new(engine::Prompt::Text(prompt.clone()), params);
    req.logprobs = r.logprobs.map(|n| n as usize);
    let mut job = Job::new(
        ex,
        Shape::Completion,
        req,
        &r.sampling,
        Delivery::new(r.stream, r.stream_options.as_ref()),
    )?;
    job.echo_prefix = r.echo.then_some(prompt);
    Ok(job)
}

fn model_json(id: &str) -> serde_json::Value {
    json!({"id": id, "object": "model", "created": 0, "owned_by": "rightsize"})
}

async fn list_models(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({"object": "list", "data": state.cfg.models.iter().map(|m| model_json(&m.id)).collect::<Vec<_>>()}))
}

async fn get_model(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<serde_json::Value>, ApiError> {
    state
        .cfg
        .models
        .iter()
        .find(|m| m.id == id)
        .map(|m| Json(model_json(&m.id)))
        .ok_or_else(|| ApiError::not_found_model(&id))
}

async fn ps(State(state): State<AppState>) -> Json<serde_json::Value> {
    let models: Vec<serde_json::Value> = state
        .pool
        .list()
        .into_iter()
        .map(|r| {
            let (running, queued) = match state.pool.peek(&r.id).as_deref() {
                Some(Loaded::Decoder(e)) => {
                    let s = e.stats();
                    (s.running, s.queued)
                }
                _ => (0, 0),
            };
            json!({"id": r.id, "bytes": r.bytes, "in_use": r.in_use, "running": running, "queued": queued,
                   "pinned": r.pinned, "idle_s": r.idle_s, "keep_alive_s": r.keep_alive_s, "state": r.state, "loading": r.state == pool::State::Loading, "load_s": r.load_s})
        })
        .collect();
    Json(json!({"budget_bytes": state.pool.budget(), "used_bytes": state.pool.used(), "models": models}))
}

async fn load(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<serde_json::Value>, ApiError> {
    state.pool.preload(&id).await?;
    Ok(Json(json!({"id": id, "loaded": true})))
}

#[derive(serde::Deserialize)]
struct UnloadQuery {
    /// Drop what an asleep model keeps too (its parsed vocabulary), not only weights and KV.
    #[serde(default)]
    forget: bool,
}

async fn unload(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<UnloadQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    match state.pool.unload(&id, q.forget) {
        Ok(was) => Ok(Json(json!({"id": id, "unloaded": was}))),
        Err(pool::PoolError::Unknown(_)) => Err(ApiError::not_found_model(&id)),
        Err(e) => Err(ApiError::overloaded(e.to_string(), 1)),
    }
}

async fn ready(State(state): State<AppState>) -> Response {
    // Ready when every pinned model is resident.
    let resident: Vec<String> = state
        .pool
        .list()
        .into_iter()
        .filter(|r| r.state == pool::State::Ready)
        .map(|r| r.id)
        .collect();
    let missing: Vec<&str> = state
        .cfg
        .models
        .iter()
        .filter(|m| m.pin && !resident.contains(&m.id))
        .map(|m| m.id.as_str())
        .collect();
    if missing.is_empty() {
        Json(json!({"status": "ready"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "loading", "waiting_for": missing})),
        )
            .into_response()
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let m = &state.metrics;
    // Evicted models must disappear from the gauges, not keep their last value.
    m.resident_bytes.reset();
    m.queue_depth.reset();
    m.running.reset();
    m.preemptions.reset();
    m.prefix_tokens.reset();
    for r in state.pool.list() {
        m.resident_bytes.with_label_values(&[&r.id]).set(r.bytes as i64);
        if let Some(Loaded::Decoder(e)) = state.pool.peek(&r.id).as_deref() {
            let s = e.stats();
            m.queue_depth.with_label_values(&[&r.id]).set(s.queued as i64);
            m.running.with_label_values(&[&r.id]).set(s.running as i64);
            m.preemptions.with_label_values(&[&r.id]).set(s.preemptions as i64);
            m.prefix_tokens.with_label_values(&[&r.id]).set(s.prefix_tokens as i64);
        }
    }
    let c = state.pool.counters();
    use std::sync::atomic::Ordering::Relaxed;
    m.pool_events
        .with_label_values(&["load"])
        .set(c.loads.load(Relaxed) as i64);
    m.pool_events
        .with_label_values(&["wake"])
        .set(c.wakes.load(Relaxed) as i64);
    m.pool_events
        .with_label_values(&["eviction"])
        .set(c.evictions.load(Relaxed) as i64);
    m.pool_events
        .with_label_values(&["expiration"])
        .set(c.expirations.load(Relaxed) as i64);
    ([("content-type", "text/plain; version=0.0.4")], m.render()).into_response()
}
