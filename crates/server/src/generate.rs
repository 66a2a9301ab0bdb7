//! Turning OpenAI requests into engine requests, and engine events into OpenAI responses
//! (one JSON body, or SSE chunks ending in `data: [DONE]`).

use crate::error::ApiError;
use crate::models::Loaded;
use crate::openai::*;
use crate::state::AppState;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use engine::{ChatMessage, Constraint, Event, GenerateRequest, Priority, SamplingParams};
use futures::stream::Stream;
use serde_json::json;
use std::time::{Duration, Instant};

/// Response header (non-streaming generations): milliseconds the engine spent on the request —
/// tokenizing and templating (`submit`), waiting for a slot, prefill and decode. The rest of
/// the client's latency is the gateway (HTTP, auth, JSON, audit) and the network.
pub const ENGINE_MS_HEADER: &str = "x-rightsize-engine-ms";

pub fn sampling_params(s: &Sampling, ctx_limit: usize) -> Result<SamplingParams, ApiError> {
    if let Some(n) = s.n {
        if n != 1 {
            return Err(ApiError::bad_request("only `n` = 1 is supported").param("n"));
        }
    }
    let max = s.max_completion_tokens.or(s.max_tokens);
    if let Some(m) = max {
        if m == 0 || m as usize > ctx_limit {
            return Err(ApiError::bad_request(format!("`max_tokens` must be between 1 and the model's context ({ctx_limit})")).param("max_tokens"));
        }
    }
    let d = SamplingParams::default();
    let p = SamplingParams {
        temperature: s.temperature.unwrap_or(1.0),
        top_p: s.top_p.unwrap_or(1.0),
        top_k: s.top_k.unwrap_or(0),
        min_p: s.min_p.unwrap_or(0.0),
        repetition_penalty: s.repetition_penalty.unwrap_or(1.0),
        presence_penalty: s.presence_penalty.unwrap_or(0.0),
        frequency_penalty: s.frequency_penalty.unwrap_or(0.0),
        seed: s.seed,
        max_tokens: max.map(|m| m as usize).unwrap_or(ctx_limit),
        stop: s.stop.as_ref().map(|x| match x {
            StringOrList::One(s) => vec![s.clone()],
            StringOrList::Many(v) => v.clone(),
        }).unwrap_or_default(),
        ignore_eos: s.ignore_eos.unwrap_or(false),
        ..d
    };
    p.validate().map_err(|m| {
        let param = m.split('`').nth(1).unwrap_or("").to_owned();
        ApiError::bad_request(m).param(&param)
    })?;
    Ok(p)
}

/// The request's class: the body's `priority`, else the `x-rightsize-priority` header, else
/// the caller's default — which is also its ceiling: a `batch` key asking for `interactive`
/// gets 403.
pub fn priority(requested: Option<&str>, headers: &axum::http::HeaderMap, default: Priority) -> Result<Priority, ApiError> {
    let v = requested.or_else(|| headers.get("x-rightsize-priority").and_then(|h| h.to_str().ok()));
    let p = match v {
        None => default,
        Some("interactive") => Priority::Interactive,
        Some("batch") => Priority::Batch,
        Some(other) => return Err(ApiError::bad_request(format!("unknown priority `{other}` (interactive or batch)")).param("priority")),
    };
    if p == Priority::Interactive && default == Priority::Batch {
        return Err(ApiError::forbidden("this API key's priority ceiling is `batch`: it cannot send `interactive` requests").param("priority"));
    }
    Ok(p)
}

pub fn chat_messages(msgs: &[InMessage]) -> Result<Vec<ChatMessage>, ApiError> {
    if msgs.is_empty() {
        return Err(ApiError::bad_request("`messages` must not be empty").param("messages"));
    }
    msgs.iter()
        .enumerate()
        .map(|(i, m)| {
            if !engine::template::ROLES.contains(&m.role.as_str()) && m.role != "developer" {
                return Err(ApiError::bad_request(format!("messages[{i}]: unknown role `{}`", m.role)).param("messages"));
            }
            let role = if m.role == "developer" { "system" } else { m.role.as_str() };
            let content = match &m.content {
                None => String::new(),
                Some(Content::Text(t)) => t.clone(),
                Some(Content::Parts(parts)) => {
                    let mut s = String::new();
                    for p in parts {
                        if p.kind != "text" {
                            return Err(ApiError::bad_request(format!("messages[{i}]: content part type `{}` is not supported", p.kind)).param("messages"));
                        }
                        s.push_str(p.text.as_deref().unwrap_or(""));
                    }
                    s
                }
            };
            Ok(ChatMessage::new(role, content))
        })
        .collect()
}

pub fn constraint(rf: &Option<ResponseFormat>) -> Option<Constraint> {
    match rf {
        None | Some(ResponseFormat::Text) => None,
        Some(ResponseFormat::JsonObject) => Some(Constraint::JsonObject),
        Some(ResponseFormat::JsonSchema { json_schema }) => Some(Constraint::JsonSchema(json_schema.schema.clone())),
    }
}

/// The request's deadline: `x-request-timeout` (seconds, e.g. `2.5`) when given, never longer
/// than the server's `request_timeout_s`. Past it the sequence is cancelled and the client gets
/// 504 (or an error event when streaming).
pub fn deadline(headers: &axum::http::HeaderMap, server_max: Duration) -> Result<Duration, ApiError> {
    let Some(v) = headers.get("x-request-timeout") else { return Ok(server_max) };
    let secs = v.to_str().ok().and_then(|s| s.trim().parse::<f64>().ok()).filter(|s| s.is_finite() && *s > 0.0);
    match secs {
        Some(s) => Ok(Duration::try_from_secs_f64(s).map_or(server_max, |d| d.min(server_max))),
        None => Err(ApiError::bad_request("`x-request-timeout` must be a positive number of seconds").param("x-request-timeout")),
    }
}

/// What kind of response to build.
pub enum Shape {
    Chat,
    Completion,
}

pub struct Job {
    pub model: String,
    pub req: GenerateRequest,
    pub stream: bool,
    pub include_usage: bool,
    pub shape: Shape,
    pub keep_alive: Option<Duration>,
    pub echo_prefix: Option<String>,
    /// Who asked, for the audit record written before the answer is returned.
    pub audit: crate::audit::Ctx,
    /// The input as the audit record sees it (see `crate::audit`).
    pub audit_input: String,
    /// Deadline of the whole request (the server's `request_timeout_s`, or shorter per request).
    pub timeout: Duration,
    /// Chat guardrails: placeholders to restore, output PII to redact, counters to report.
    pub guard: Option<crate::guard::ChatGuard>,
}

pub async fn run(state: AppState, mut job: Job) -> Result<Response, ApiError> {
    let t0 = Instant::now();
    let class = match job.req.priority {
        Priority::Interactive => "interactive",
        Priority::Batch => "batch",
    };
    let keep_alive = job.keep_alive.map(|k| k.min(Duration::from_secs(state.cfg.max_keep_alive_s)));
    let lease = state.pool.acquire(&job.model, keep_alive).await?;
    let t_lease = t0.elapsed();
    if matches!(&*lease, Loaded::Encoder { .. }) {
        return Err(ApiError::bad_request(format!("`{}` is an embedding model; use /v1/embeddings", job.model)).param("model"));
    }
    // Templating, tokenizing and compiling a schema (the first one builds the vocabulary
    // trie) are CPU work: keep them off the async workers.
    let req = std::mem::replace(&mut job.req, GenerateRequest::new(engine::Prompt::Tokens(Vec::new()), SamplingParams::default()));
    let model = lease.model().clone();
    let t_spawn = Instant::now();
    let (submitted, submit_time) = tokio::task::spawn_blocking(move || match &*model {
        Loaded::Decoder(e) => {
            let t = Instant::now();
            let r = e.submit(req);
            (r, t.elapsed())
        }
        Loaded::Encoder { .. } => (Err(engine::EngineError::InvalidRequest("not a generative model".into())), Duration::ZERO),
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    // The hop onto the blocking pool and back, beside the engine's own submit time.
    let t_hop = t_spawn.elapsed().saturating_sub(submit_time);
    let seq = submitted.map_err(|e| {
        state.metrics.rejected(&job.model, class, &e);
        ApiError::from(e)
    })?;
    let id = format!("{}-{}", if matches!(job.shape, Shape::Chat) { "chatcmpl" } else { "cmpl" }, uuid::Uuid::new_v4().simple());
    let created = now_secs();
    let timeout = job.timeout;
    let metrics = state.metrics.clone();
    if !job.stream {
        let out = tokio::time::timeout(timeout, seq.collect()).await.map_err(|_| ApiError::timeout("request deadline passed"))??;
        metrics.finished(&job.model, class, &out.finish, t0.elapsed());
        let usage = Usage::new(out.finish.prompt_tokens, out.finish.completion_tokens);
        let logprobs = out.tokens.iter().filter_map(|t| t.logprob.as_ref()).map(TokenLogprob::from).collect::<Vec<_>>();
        let has_lp = out.tokens.iter().any(|t| t.logprob.is_some());
        let reason = finish_reason(out.finish.reason);
        drop(lease);
        // Output guardrails: the audit keeps what the model wrote (placeholders, redactions),
        // the client gets the originals back.
        let (seen, text) = match job.guard.as_mut() {
            Some(g) => g.finish(&out.text),
            None => (out.text.clone(), out.text.clone()),
        };
        // The record is durable before the answer leaves: no acknowledged request is missing.
        let rec = store::AuditRecord {
            tokens_in: out.finish.prompt_tokens as i64,
            tokens_out: out.finish.completion_tokens as i64,
            cost_usd: crate::audit::local_cost(&state, out.finish.compute_s),
            guard: job.guard.as_ref().map(|g| g.report()).unwrap_or_else(|| json!({})),
            ..job.audit.record(&state, "request", Some(&job.model), &job.audit_input, &seen)
        };
        let t_audit = Instant::now();
        crate::audit::record(&state, rec).await?;
        let t_audit = t_audit.elapsed();
        if let Some(g) = &job.guard {
            state.metrics.guard_events("request", &g.events);
        }
        let body = match job.shape {
            Shape::Chat => json!({
                "id": id, "object": "chat.completion", "created": created, "model": job.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "logprobs": if has_lp { json!({"content": logprobs}) } else { serde_json::Value::Null },
                             "finish_reason": reason}],
                "usage": usage, "system_fingerprint": "rightsize",
                "rightsize": job.guard.as_ref().map(|g| json!({"guard": g.report()})),
            }),
            Shape::Completion => json!({
                "id": id, "object": "text_completion", "created": created, "model": job.model,
                "choices": [{"index": 0, "text": format!("{}{}", job.echo_prefix.unwrap_or_default(), text),
                             "logprobs": if has_lp { legacy_logprobs(&logprobs) } else { serde_json::Value::Null },
                             "finish_reason": reason}],
                "usage": usage,
            }),
        };
        // The engine's own time (tokenize/template/submit + queue + prefill + decode), so a
        // client can tell the gateway's overhead from the model's work; and where the rest went.
        let engine = submit_time + out.finish.total_time;
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let mut resp = axum::Json(body).into_response();
        let h = resp.headers_mut();
        if let Ok(v) = format!("{:.3}", ms(engine)).parse() {
            h.insert(ENGINE_MS_HEADER, v);
        }
        let timing = format!(
            "lease;dur={:.3}, hop;dur={:.3}, submit;dur={:.3}, queue;dur={:.3}, ttft;dur={:.3}, engine;dur={:.3}, audit;dur={:.3}, total;dur={:.3}",
            ms(t_lease), ms(t_hop), ms(submit_time), ms(out.finish.queue_time), ms(out.finish.time_to_first_token), ms(engine), ms(t_audit), ms(t0.elapsed())
        );
        if let Ok(v) = timing.parse() {
            h.insert("server-timing", v);
        }
        return Ok(resp);
    }
    let stream = sse_stream(state, seq, lease, id, created, job, timeout, metrics, class, t0);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

fn legacy_logprobs(lps: &[TokenLogprob]) -> serde_json::Value {
    json!({
        "tokens": lps.iter().map(|l| l.token.clone()).collect::<Vec<_>>(),
        "token_logprobs": lps.iter().map(|l| l.logprob).collect::<Vec<_>>(),
        "top_logprobs": lps.iter().map(|l| l.top_logprobs.iter().map(|t| (t.token.clone(), json!(t.logprob))).collect::<serde_json::Map<String, serde_json::Value>>()).collect::<Vec<_>>(),
    })
}

#[allow(clippy::too_many_arguments)]
fn sse_stream(
    state: AppState,
    mut seq: engine::Sequence,
    lease: pool::Lease<Loaded>,
    id: String,
    created: u64,
    job: Job,
    timeout: Duration,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    class: &'static str,
    t0: Instant,
) -> impl Stream<Item = Result<SseEvent, std::convert::Infallible>> {
    /// Counts the request as cancelled if the stream is dropped (client gone) before Done,
    /// and then records it in the audit log (best effort: nobody is waiting for it).
    struct Finished {
        done: bool,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
        model: String,
        class: &'static str,
        /// Set once the stream has written (or started writing) its own audit record.
        audited: bool,
        state: AppState,
        ctx: crate::audit::Ctx,
        input: String,
        text: String,
    }
    impl Drop for Finished {
        fn drop(&mut self) {
            if !self.done {
                self.metrics.cancelled(&self.model, self.class);
            }
            if !self.audited && self.state.audit.is_some() {
                let rec = store::AuditRecord {
                    status: "cancelled".into(),
                    ..self.ctx.record(&self.state, "request", Some(&self.model), &self.input, &self.text)
                };
                let state = self.state.clone();
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    rt.spawn(async move { crate::audit::record_failure(&state, rec).await });
                }
            }
        }
    }
    let mut job = job;
    let mut sg = job.guard.take();
    async_stream::stream! {
        let _lease = lease; // the model stays resident while the stream lives
        let mut finished = Finished {
            done: false, metrics: metrics.clone(), model: job.model.clone(), class,
            audited: false, state: state.clone(), ctx: job.audit.clone(), input: job.audit_input.clone(), text: String::new(),
        };
        // An error event ends the stream instead of `[DONE]` (nothing after it is an answer).
        let error_event = |message: &str, kind: &str| SseEvent::default().data(json!({"error": {"message": message, "type": kind}}).to_string());
        let chat = matches!(job.shape, Shape::Chat);
        let chunk = |delta: serde_json::Value, reason: Option<&str>, lp: Option<serde_json::Value>| -> SseEvent {
            let body = if chat {
                json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": job.model,
                       "system_fingerprint": "rightsize",
                       "choices": [{"index": 0, "delta": delta, "logprobs": lp, "finish_reason": reason}]})
            } else {
                json!({"id": id, "object": "text_completion", "created": created, "model": job.model,
                       "choices": [{"index": 0, "text": delta.get("content").cloned().unwrap_or(json!("")), "logprobs": lp, "finish_reason": reason}]})
            };
            SseEvent::default().data(body.to_string())
        };
        if chat {
            yield Ok(chunk(json!({"role": "assistant", "content": ""}), None, None));
        } else if let Some(prefix) = &job.echo_prefix {
            yield Ok(chunk(json!({"content": prefix}), None, None));
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let ev = match tokio::time::timeout_at(deadline, seq.next()).await {
                Ok(Some(ev)) => ev,
                Ok(None) => {
                    // The engine went away mid-sequence (the model was unloaded).
                    finished.audited = true;
                    let rec = store::AuditRecord { status: "error:503".into(), ..finished.ctx.record(&state, "request", Some(&job.model), &finished.input, &finished.text) };
                    crate::audit::record_failure(&state, rec).await;
                    break;
                }
                Err(_) => {
                    seq.cancel();
                    finished.audited = true;
                    let rec = store::AuditRecord { status: "error:504".into(), ..finished.ctx.record(&state, "request", Some(&job.model), &finished.input, &finished.text) };
                    crate::audit::record_failure(&state, rec).await;
                    yield Ok(error_event("request deadline passed", "timeout_error"));
                    break;
                }
            };
            match ev {
                Event::Token(t) => {
                    let lp = t.logprob.as_ref().map(|l| if chat { json!({"content": [TokenLogprob::from(l)]}) } else { legacy_logprobs(&[TokenLogprob::from(l)]) });
                    finished.text.push_str(&t.text);
                    let piece = match sg.as_mut() {
                        Some(g) => g.stream_piece(&t.text),
                        None => t.text.clone(),
                    };
                    if !piece.is_empty() || lp.is_some() {
                        yield Ok(chunk(json!({"content": piece}), None, lp));
                    }
                }
                Event::Done(f) => {
                    finished.text.push_str(&f.tail);
                    let tail = match sg.as_mut() {
                        Some(g) => format!("{}{}", g.stream_piece(&f.tail), g.stream_flush()),
                        None => f.tail.clone(),
                    };
                    if !tail.is_empty() {
                        yield Ok(chunk(json!({"content": tail}), None, None));
                    }
                    if let Some(g) = &sg {
                        state.metrics.guard_events("request", &g.events);
                    }
                    metrics.finished(&job.model, class, &f, t0.elapsed());
                    finished.done = true;
                    // Durable before the finish chunk and `[DONE]`; if it cannot be written the
                    // stream ends in an error event and the client sees no completed answer.
                    finished.audited = true;
                    let rec = store::AuditRecord {
                        tokens_in: f.prompt_tokens as i64,
                        tokens_out: f.completion_tokens as i64,
                        cost_usd: crate::audit::local_cost(&state, f.compute_s),
                        guard: sg.as_ref().map(|g| g.report()).unwrap_or_else(|| json!({})),
                        ..finished.ctx.record(&state, "request", Some(&job.model), &finished.input, &finished.text)
                    };
                    if let Err(e) = crate::audit::record(&state, rec).await {
                        yield Ok(error_event(&e.message, e.kind));
                        return;
                    }
                    yield Ok(chunk(json!({}), Some(finish_reason(f.reason)), None));
                    if job.include_usage {
                        let u = Usage::new(f.prompt_tokens, f.completion_tokens);
                        let body = json!({"id": id, "object": if chat { "chat.completion.chunk" } else { "text_completion" }, "created": created, "model": job.model, "choices": [], "usage": u});
                        yield Ok(SseEvent::default().data(body.to_string()));
                    }
                    break;
                }
                Event::Error(e) => {
                    finished.done = true;
                    finished.audited = true;
                    let rec = store::AuditRecord { status: "error:500".into(), ..finished.ctx.record(&state, "request", Some(&job.model), &finished.input, &finished.text) };
                    crate::audit::record_failure(&state, rec).await;
                    yield Ok(error_event(&e, "server_error"));
                    break;
                }
            }
        }
        yield Ok(SseEvent::default().data("[DONE]"));
    }
}
