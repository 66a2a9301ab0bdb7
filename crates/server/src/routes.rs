//! The route table and handlers. Handlers stay thin: parse, authorise, hand to `generate`.

use crate::audit;
use crate::error::ApiError;
use crate::generate::{self, Job, Shape};
use crate::models::Loaded;
use crate::openai::*;
use crate::state::{AppState, Caller, KeyLookup};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use base64::Engine as _;
use serde_json::json;
use std::time::{Duration, Instant};

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/models", get(list_models))
        .route("/v1/models/{id}", get(get_model))
        .route("/v1/guard/pii", post(crate::guard::pii))
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
        None => return Err(ApiError::unauthorized("an API key is required: `Authorization: Bearer <key>`")),
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
    let m = state.cfg.models.iter().find(|m| m.id == model).ok_or_else(|| ApiError::not_found_model(model))?;
    Ok(m.ctx as usize)
}

/// The fields chat and completions share: priority, streaming, keep-alive.
#[allow(clippy::too_many_arguments)]
fn job(
    model: String,
    mut req: engine::GenerateRequest,
    stream: bool,
    stream_options: Option<StreamOptions>,
    sampling: &Sampling,
    headers: &HeaderMap,
    caller: &Caller,
    shape: Shape,
    echo_prefix: Option<String>,
    ctx: audit::Ctx,
    audit_input: String,
    state_timeout: std::time::Duration,
) -> Result<Job, ApiError> {
    req.priority = generate::priority(sampling.priority.as_deref(), headers, caller.default_priority)?;
    let timeout = generate::deadline(headers, state_timeout)?;
    // A model's keep-alive holds for every caller: setting it is an admin's (capped at
    // `max_keep_alive_s` in `generate::run`).
    let keep_alive = sampling.keep_alive.as_ref().map(parse_keep_alive).transpose()?.flatten();
    if keep_alive.is_some() && !caller.admin {
        return Err(ApiError::forbidden("`keep_alive` sets how long the model stays resident for every caller: it needs an admin key").param("keep_alive"));
    }
    Ok(Job {
        timeout,
        model,
        req,
        stream,
        include_usage: stream_options.is_some_and(|o| o.include_usage),
        shape,
        keep_alive,
        echo_prefix,
        audit: ctx,
        audit_input,
        guard: None,
    })
}

/// A chat request's input as the audit log sees it: the messages as compact JSON
/// `[{"role":…,"content":…}]`, content parts' text joined (see `crate::audit`).
fn chat_audit_input(msgs: &[InMessage]) -> String {
    let msgs: Vec<engine::ChatMessage> = msgs
        .iter()
        .map(|m| {
            let content = match &m.content {
                None => String::new(),
                Some(Content::Text(t)) => t.clone(),
                Some(Content::Parts(p)) => p.iter().filter_map(|x| x.text.as_deref()).collect(),
            };
            engine::ChatMessage::new(m.role.clone(), content)
        })
        .collect();
    serde_json::to_string(&msgs).unwrap_or_default()
}

async fn chat(State(state): State<AppState>, Extension(caller): Extension<Caller>, headers: HeaderMap, Body(r): Body<ChatRequest>) -> Result<Response, ApiError> {
    // Before any per-message work (guardrails, templating): a small body must not buy
    // seconds of CPU.
    if r.messages.len() > state.cfg.max_messages {
        let ctx = audit::Ctx::new(&headers, &caller);
        let e = ApiError::bad_request(format!("`messages` holds {} messages; this server takes at most {} (`max_messages`)", r.messages.len(), state.cfg.max_messages))
            .param("messages")
            .code("too_many_messages");
        let input = crate::guard::redact_for_audit(&state, &chat_audit_input(&r.messages)).await;
        return audit::failed(&state, &ctx, &audit::requested_model(&state, &r.model), &input, Err(e)).await;
    }
    if let Some(task) = r.model.strip_prefix("task:") {
        let task = task.to_owned();
        return crate::tasks::chat(state, caller, headers, &task, r).await;
    }
    let ctx = audit::Ctx::new(&headers, &caller);
    let model = audit::requested_model(&state, &r.model);
    let mut r = r;
    // Input guardrails rewrite the messages first: nothing after this point (the model, the
    // audit, the logs) sees what they removed.
    let rails = crate::guard::effective(&state, &caller);
    let guarded = if rails.is_empty() { Ok(None) } else { crate::guard::guard_messages(&state, &rails, &mut r.messages).await.map(Some) };
    let input = match &guarded {
        Ok(_) => chat_audit_input(&r.messages),
        Err(_) => crate::guard::redact_for_audit(&state, &chat_audit_input(&r.messages)).await,
    };
    let res = match guarded {
        Ok(g) => chat_inner(state.clone(), caller, headers, ctx.clone(), input.clone(), r, g).await,
        Err(e) => Err(e),
    };
    audit::failed(&state, &ctx, &model, &input, res).await
}

#[allow(clippy::too_many_arguments)]
async fn chat_inner(state: AppState, caller: Caller, headers: HeaderMap, ctx: audit::Ctx, input: String, r: ChatRequest, guard: Option<crate::guard::ChatGuard>) -> Result<Response, ApiError> {
    let limit = ctx_limit(&state, &r.model)?;
    if r.stream && guard.as_ref().is_some_and(|g| g.output_pii) {
        return Err(ApiError::bad_request("the `output_pii` guardrail checks the whole answer: use `stream: false`").param("stream"));
    }
    if r.tools.is_some() {
        return Err(ApiError::bad_request("`tools` are not supported yet").param("tools"));
    }
    let messages = generate::chat_messages(&r.messages)?;
    let params = generate::sampling_params(&r.sampling, limit)?;
    let top = match (r.logprobs, r.top_logprobs) {
        (_, Some(n)) if n > 20 => return Err(ApiError::bad_request("`top_logprobs` must be at most 20").param("top_logprobs")),
        (true, n) => Some(n.unwrap_or(0) as usize),
        (false, Some(_)) => return Err(ApiError::bad_request("`top_logprobs` needs `logprobs: true`").param("top_logprobs")),
        (false, None) => None,
    };
    let mut req = engine::GenerateRequest::new(engine::Prompt::Chat(messages), params);
    req.constraint = generate::constraint(&r.response_format);
    req.logprobs = top;
    let mut job = job(r.model, req, r.stream, r.stream_options, &r.sampling, &headers, &caller, Shape::Chat, None, ctx, input, Duration::from_secs(state.cfg.request_timeout_s))?;
    job.guard = guard;
    generate::run(state, job).await
}

async fn completions(State(state): State<AppState>, Extension(caller): Extension<Caller>, headers: HeaderMap, Body(mut r): Body<CompletionRequest>) -> Result<Response, ApiError> {
    let ctx = audit::Ctx::new(&headers, &caller);
    let model = audit::requested_model(&state, &r.model);
    let mut prompts = std::mem::replace(&mut r.prompt, StringOrList::Many(Vec::new())).into_vec();
    let rails = crate::guard::effective(&state, &caller);
    let guarded = if rails.is_empty() { Ok(None) } else { crate::guard::guard_texts(&state, &rails, prompts.clone(), prompts.iter_mut().collect(), "prompt").await.map(Some) };
    // The prompt as the audit log sees it: the text (several prompts: a compact JSON list).
    let input = match prompts.as_slice() {
        [one] => one.clone(),
        many => serde_json::to_string(many).unwrap_or_default(),
    };
    let res = match guarded {
        Ok(g) => completions_inner(state.clone(), caller, headers, ctx.clone(), input.clone(), prompts, r, g).await,
        Err(e) => {
            let input = crate::guard::redact_for_audit(&state, &input).await;
            return audit::failed(&state, &ctx, &model, &input, Err(e)).await;
        }
    };
    audit::failed(&state, &ctx, &model, &input, res).await
}

#[allow(clippy::too_many_arguments)]
async fn completions_inner(state: AppState, caller: Caller, headers: HeaderMap, ctx: audit::Ctx, input: String, prompts: Vec<String>, r: CompletionRequest, guard: Option<crate::guard::ChatGuard>) -> Result<Response, ApiError> {
    let limit = ctx_limit(&state, &r.model)?;
    if r.stream && guard.as_ref().is_some_and(|g| g.output_pii) {
        return Err(ApiError::bad_request("the `output_pii` guardrail checks the whole answer: use `stream: false`").param("stream"));
    }
    if prompts.len() != 1 {
        return Err(ApiError::bad_request("exactly one prompt is supported").param("prompt"));
    }
    let prompt = prompts.into_iter().next().unwrap_or_default();
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
    let echo = r.echo.then_some(prompt);
    let mut job = job(r.model, req, r.stream, r.stream_options, &r.sampling, &headers, &caller, Shape::Completion, echo, ctx, input, Duration::from_secs(state.cfg.request_timeout_s))?;
    job.guard = guard;
    generate::run(state, job).await
}

async fn embeddings(State(state): State<AppState>, Extension(caller): Extension<Caller>, headers: HeaderMap, Body(mut r): Body<EmbeddingRequest>) -> Result<Response, ApiError> {
    let ctx = audit::Ctx::new(&headers, &caller);
    let model = audit::requested_model(&state, &r.model);
    // The inputs as the audit log sees them: a compact JSON list of the strings.
    let (inputs, input) = match std::mem::replace(&mut r.input, EmbeddingInput::Many(Vec::new())) {
        EmbeddingInput::One(s) => (Ok(vec![s.clone()]), serde_json::to_string(&[s]).unwrap_or_default()),
        EmbeddingInput::Many(v) => {
            let text = serde_json::to_string(&v).unwrap_or_default();
            (Ok(v), text)
        }
        EmbeddingInput::Tokens(t) => (Err(ApiError::bad_request("token-array input is not supported; send strings").param("input")), serde_json::to_string(&t).unwrap_or_default()),
    };
    // Set once the guardrails have run: the inputs as the model saw them. A request that
    // fails before is recorded with its input PII-redacted (under `audit.content = "full"`).
    let mut seen = None;
    let res = match inputs {
        Ok(inputs) => embeddings_inner(&state, &caller, &headers, &ctx, &mut seen, inputs, r).await,
        Err(e) => Err(e),
    };
    let input = match seen {
        Some(s) => s,
        None if res.is_err() => crate::guard::redact_for_audit(&state, &input).await,
        None => input,
    };
    audit::failed(&state, &ctx, &model, &input, res).await
}

/// Sets its flag when dropped: the handler's future is gone (answered, past its deadline, or
/// the client hung up), so blocking work for it can stop.
struct StopOnDrop(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Inputs embedded per encoder call (between two deadline checks).
const EMBED_CHUNK: usize = 8;

/// One of the `max_embedding_in_flight` slots of `model`, or 429 with Retry-After.
fn embedding_slot(state: &AppState, model: &str) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    let max = state.cfg.max_embedding_in_flight;
    let sem = {
        let mut slots = state.embedding_slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.entry(model.to_owned()).or_insert_with(|| std::sync::Arc::new(tokio::sync::Semaphore::new(max))).clone()
    };
    sem.try_acquire_owned()
        .map_err(|_| ApiError::overloaded(format!("{max} embedding requests for `{model}` are already running (`max_embedding_in_flight`); retry later"), 1))
}

#[allow(clippy::too_many_arguments)]
async fn embeddings_inner(state: &AppState, caller: &Caller, headers: &HeaderMap, ctx: &audit::Ctx, seen: &mut Option<String>, mut inputs: Vec<String>, r: EmbeddingRequest) -> Result<Response, ApiError> {
    let t0 = Instant::now();
    if !state.pool.knows(&r.model) {
        return Err(ApiError::not_found_model(&r.model));
    }
    if inputs.is_empty() || inputs.len() > 2048 {
        return Err(ApiError::bad_request("`input` must hold 1 to 2048 strings").param("input"));
    }
    // What a request may cost: characters in (the encoder's work grows with them), and a
    // bounded number computing at once per model.
    let chars: usize = inputs.iter().map(|s| s.chars().count()).sum();
    if chars > state.cfg.max_embedding_chars {
        return Err(ApiError::bad_request(format!("`input` holds {chars} characters; this server embeds at most {} per request (`max_embedding_chars`)", state.cfg.max_embedding_chars))
            .param("input")
            .code("input_too_large"));
    }
    let base64 = match r.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(o) => return Err(ApiError::bad_request(format!("unknown encoding_format `{o}`")).param("encoding_format")),
    };
    let dims_error = || ApiError::bad_request("`dimensions` must be between 1 and the model's size").param("dimensions");
    if r.dimensions == Some(0) {
        return Err(dims_error());
    }
    let deadline = t0 + generate::deadline(headers, Duration::from_secs(state.cfg.request_timeout_s))?;
    let timed_out = || ApiError::timeout("request deadline passed");
    let permit = embedding_slot(state, &r.model)?;
    // Input guardrails, as for chat: what they remove never reaches the model or the audit.
    let rails = crate::guard::effective(state, caller);
    let guard = if rails.is_empty() { None } else { Some(crate::guard::guard_texts(state, &rails, inputs.clone(), inputs.iter_mut().collect(), "input").await?) };
    let input = serde_json::to_string(&inputs).unwrap_or_default();
    *seen = Some(input.clone());
    let lease = tokio::time::timeout_at(deadline.into(), state.pool.acquire(&r.model, None)).await.map_err(|_| timed_out())??;
    let Loaded::Encoder { model: enc, .. } = &*lease else {
        return Err(ApiError::bad_request(format!("`{}` is not an embedding model", r.model)).param("model"));
    };
    if r.dimensions.is_some_and(|d| d > enc.dim()) {
        return Err(dims_error());
    }
    // The work stops between batches once the deadline passes or this request is gone; the
    // slot and the lease are held until it has.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let _stop_on_drop = StopOnDrop(stop.clone());
    let work = tokio::task::spawn_blocking(move || {
        let (_permit, lease) = (permit, lease);
        let mut out = encoder::EmbedOutput::default();
        let Loaded::Encoder { model: enc, .. } = &*lease else { return Ok(out) };
        let keep_going = || !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline;
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
    let vectors = out.embeddings;
    let data: Vec<serde_json::Value> = vectors
        .into_iter()
        .enumerate()
        .map(|(i, mut v)| {
            if let Some(d) = r.dimensions {
                v.truncate(d);
                let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                v.iter_mut().for_each(|x| *x /= n);
            }
            let emb = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": emb})
        })
        .collect();
    state.metrics.embedded(&r.model, tokens, t0.elapsed());
    if let Some(g) = &guard {
        state.metrics.guard_events("request", &g.events);
    }
    // Vectors are not text: the record keeps the hash of `data` under either content policy.
    let data = serde_json::Value::Array(data);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
    let rec = store::AuditRecord {
        output: state.secret.content_hash(&data.to_string()),
        tokens_in: tokens as i64,
        cost_usd: audit::local_cost(state, t0.elapsed().as_secs_f64() * cores),
        guard: guard.as_ref().map(|g| g.report()).unwrap_or_else(|| json!({})),
        ..ctx.record(state, "request", Some(&r.model), &input, "")
    };
    audit::record(state, rec).await?;
    let mut body = json!({"object": "list", "data": data, "model": r.model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}});
    if let Some(g) = &guard {
        body["rightsize"] = json!({"guard": g.report()});
    }
    Ok(Json(body).into_response())
}

fn model_json(id: &str) -> serde_json::Value {
    json!({"id": id, "object": "model", "created": 0, "owned_by": "rightsize"})
}

async fn list_models(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({"object": "list", "data": state.cfg.models.iter().map(|m| model_json(&m.id)).collect::<Vec<_>>()}))
}

async fn get_model(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<serde_json::Value>, ApiError> {
    state.cfg.models.iter().find(|m| m.id == id).map(|m| Json(model_json(&m.id))).ok_or_else(|| ApiError::not_found_model(&id))
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

async fn unload(State(state): State<AppState>, Path(id): Path<String>, Query(q): Query<UnloadQuery>) -> Result<Json<serde_json::Value>, ApiError> {
    match state.pool.unload(&id, q.forget) {
        Ok(was) => Ok(Json(json!({"id": id, "unloaded": was}))),
        Err(pool::PoolError::Unknown(_)) => Err(ApiError::not_found_model(&id)),
        Err(e) => Err(ApiError::overloaded(e.to_string(), 1)),
    }
}

async fn ready(State(state): State<AppState>) -> Response {
    // Ready when every pinned model is resident.
    let resident: Vec<String> = state.pool.list().into_iter().filter(|r| r.state == pool::State::Ready).map(|r| r.id).collect();
    let missing: Vec<&str> = state.cfg.models.iter().filter(|m| m.pin && !resident.contains(&m.id)).map(|m| m.id.as_str()).collect();
    if missing.is_empty() {
        Json(json!({"status": "ready"})).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "loading", "waiting_for": missing}))).into_response()
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
    m.pool_events.with_label_values(&["load"]).set(c.loads.load(Relaxed) as i64);
    m.pool_events.with_label_values(&["wake"]).set(c.wakes.load(Relaxed) as i64);
    m.pool_events.with_label_values(&["eviction"]).set(c.evictions.load(Relaxed) as i64);
    m.pool_events.with_label_values(&["expiration"]).set(c.expirations.load(Relaxed) as i64);
    ([("content-type", "text/plain; version=0.0.4")], m.render()).into_response()
}
