//! Turning OpenAI requests into engine requests, and engine events into OpenAI responses
//! (one JSON body, or SSE chunks ending in `data: [DONE]`).

use crate::error::ApiError;
use crate::exchange::{Done, Exchange, Output, Work};
use crate::models::Loaded;
use crate::openai::*;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use engine::{ChatMessage, Constraint, Event, GenerateRequest, Priority, SamplingParams};
use futures::stream::Stream;
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
            return Err(ApiError::bad_request(format!(
                "`max_tokens` must be between 1 and the model's context ({ctx_limit})"
            ))
            .param("max_tokens"));
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
        stop: s
            .stop
            .as_ref()
            .map(|x| match x {
                StringOrList::One(s) => vec![s.clone()],
                StringOrList::Many(v) => v.clone(),
            })
            .unwrap_or_default(),
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
pub fn priority(
    requested: Option<&str>,
    headers: &axum::http::HeaderMap,
    default: Priority,
) -> Result<Priority, ApiError> {
    let v = requested.or_else(|| headers.get("x-rightsize-priority").and_then(|h| h.to_str().ok()));
    let p = match v {
        None => default,
        Some("interactive") => Priority::Interactive,
        Some("batch") => Priority::Batch,
        Some(other) => {
            return Err(
                ApiError::bad_request(format!("unknown priority `{other}` (interactive or batch)")).param("priority"),
            )
        }
    };
    if p == Priority::Interactive && default == Priority::Batch {
        return Err(ApiError::forbidden(
            "this API key's priority ceiling is `batch`: it cannot send `interactive` requests",
        )
        .param("priority"));
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
                return Err(
                    ApiError::bad_request(format!("messages[{i}]: unknown role `{}`", m.role)).param("messages"),
                );
            }
            if let Some(Content::Parts(parts)) = &m.content {
                if let Some(p) = parts.iter().find(|p| p.kind != "text") {
                    return Err(ApiError::bad_request(format!(
                        "messages[{i}]: content part type `{}` is not supported",
                        p.kind
                    ))
                    .param("messages"));
                }
            }
            let role = if m.role == "developer" {
                "system"
            } else {
                m.role.as_str()
            };
            Ok(ChatMessage::new(role, m.text()))
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
    let Some(v) = headers.get("x-request-timeout") else {
        return Ok(server_max);
    };
    let secs = v
        .to_str()
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0);
    match secs {
        Some(s) => Ok(Duration::try_from_secs_f64(s).map_or(server_max, |d| d.min(server_max))),
        None => Err(
            ApiError::bad_request("`x-request-timeout` must be a positive number of seconds")
                .param("x-request-timeout"),
        ),
    }
}

/// What kind of response to build.
#[derive(Clone, Copy)]
pub enum Shape {
    Chat,
    Completion,
}

/// How the answer is sent: one body, or SSE chunks (with a closing usage chunk when asked).
#[derive(Clone, Copy)]
pub struct Delivery {
    pub stream: bool,
    pub include_usage: bool,
}

impl Delivery {
    pub fn new(stream: bool, options: Option<&StreamOptions>) -> Self {
        Self {
            stream,
            include_usage: options.is_some_and(|o| o.include_usage),
        }
    }
}

/// A generation to run for an [`Exchange`].
pub struct Job {
    pub req: GenerateRequest,
    pub shape: Shape,
    pub delivery: Delivery,
    pub keep_alive: Option<Duration>,
    /// Completions with `echo`: the prompt, sent before the answer.
    pub echo_prefix: Option<String>,
    /// Deadline of the whole request (the server's `request_timeout_s`, or shorter per request).
    pub timeout: Duration,
}

impl Job {
    /// The fields chat and completions share: priority, deadline, keep-alive.
    pub fn new(
        ex: &Exchange,
        shape: Shape,
        mut req: GenerateRequest,
        sampling: &Sampling,
        delivery: Delivery,
    ) -> Result<Job, ApiError> {
        req.priority = priority(sampling.priority.as_deref(), &ex.headers, ex.caller.default_priority)?;
        let timeout = deadline(&ex.headers, Duration::from_secs(ex.state.cfg.request_timeout_s))?;
        // A model's keep-alive holds for every caller: setting it is an admin's (capped at
        // `max_keep_alive_s` in `run`).
        let keep_alive = sampling
            .keep_alive
            .as_ref()
            .map(parse_keep_alive)
            .transpose()?
            .flatten();
        if keep_alive.is_some() && !ex.caller.admin {
            return Err(ApiError::forbidden(
                "`keep_alive` sets how long the model stays resident for every caller: it needs an admin key",
            )
            .param("keep_alive"));
        }
        Ok(Job {
            req,
            shape,
            delivery,
            keep_alive,
            echo_prefix: None,
            timeout,
        })
    }
}

/// A submitted generation: the sequence, the lease that keeps its model resident, and the
/// response's id.
struct Started {
    job: Job,
    seq: engine::Sequence,
    lease: pool::Lease<Loaded>,
    id: String,
    created: u64,
}

/// Run `job` and answer: one body, or an SSE stream. Every ending goes through `ex`.
pub async fn run(mut ex: Exchange, job: Job) -> Result<Response, ApiError> {
    ex.timings.started = Instant::now();
    ex.class = match job.req.priority {
        Priority::Interactive => "interactive",
        Priority::Batch => "batch",
    };
    let started = match submit(&mut ex, job).await {
        Ok(s) => s,
        Err(e) => return ex.fail(e).await,
    };
    if !started.job.delivery.stream {
        let res = whole(&mut ex, started).await;
        return ex.finish(res).await;
    }
    Ok(Sse::new(sse_stream(ex, started))
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// Lease the model and submit the request to its engine.
async fn submit(ex: &mut Exchange, mut job: Job) -> Result<Started, ApiError> {
    let state = ex.state.clone();
    let keep_alive = job
        .keep_alive
        .map(|k| k.min(Duration::from_secs(state.cfg.max_keep_alive_s)));
    let lease = state.pool.acquire(ex.model(), keep_alive).await?;
    ex.timings.lease = ex.timings.started.elapsed();
    if matches!(&*lease, Loaded::Encoder { .. }) {
        return Err(
            ApiError::bad_request(format!("`{}` is an embedding model; use /v1/embeddings", ex.model())).param("model"),
        );
    }
    // Templating, tokenizing and compiling a schema (the first one builds the vocabulary
    // trie) are CPU work: keep them off the async workers.
    let req = std::mem::replace(
        &mut job.req,
        GenerateRequest::new(engine::Prompt::Tokens(Vec::new()), SamplingParams::default()),
    );
    let model = lease.model().clone();
    let t_spawn = Instant::now();
    let (submitted, submit_time) = tokio::task::spawn_blocking(move || match &*model {
        Loaded::Decoder(e) => {
            let t = Instant::now();
            let r = e.submit(req);
            (r, t.elapsed())
        }
        Loaded::Encoder { .. } => (
            Err(engine::EngineError::InvalidRequest("not a generative model".into())),
            Duration::ZERO,
        ),
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    ex.timings.submit = submit_time;
    ex.timings.hop = t_spawn.elapsed().saturating_sub(submit_time);
    let seq = submitted.map_err(|e| {
        state.metrics.rejected(ex.model(), ex.class, &e);
        ApiError::from(e)
    })?;
    let id = format!(
        "{}-{}",
        if matches!(job.shape, Shape::Chat) {
            "chatcmpl"
        } else {
            "cmpl"
        },
        uuid::Uuid::new_v4().simple()
    );
    Ok(Started {
        job,
        seq,
        lease,
        id,
        created: now_secs(),
    })
}

/// The whole answer in one body, recorded before it leaves.
async fn whole(ex: &mut Exchange, s: Started) -> Result<Response, ApiError> {
    let Started {
        job,
        seq,
        lease,
        id,
        created,
    } = s;
    let out = tokio::time::timeout(job.timeout, seq.collect())
        .await
        .map_err(|_| ApiError::timeout("request deadline passed"))??;
    drop(lease);
    let logprobs = out
        .tokens
        .iter()
        .filter_map(|t| t.logprob.as_ref())
        .map(TokenLogprob::from)
        .collect::<Vec<_>>();
    let has_lp = out.tokens.iter().any(|t| t.logprob.is_some());
    // Output guardrails: the audit keeps what the model wrote (placeholders, redactions),
    // the client gets the originals back.
    let (seen, text) = match ex.guard.as_mut() {
        Some(g) => ex.state.guards.answer(g, &out.text),
        None => (out.text.clone(), out.text.clone()),
    };
    let f = &out.finish;
    let cost_usd = crate::audit::local_cost(&ex.state, f.compute_s);
    let done = Done {
        output: Output::Text(seen),
        tokens_in: f.prompt_tokens,
        tokens_out: f.completion_tokens,
        cost_usd,
        work: Work::Generation(f),
    };
    // The record is durable before the answer leaves: no acknowledged request is missing.
    ex.ok(done).await?;
    let (usage, reason, model) = (
        Usage::new(f.prompt_tokens, f.completion_tokens),
        finish_reason(f.reason),
        ex.model().to_owned(),
    );
    let mut resp = match job.shape {
        Shape::Chat => axum::Json(ChatCompletion {
            id,
            object: "chat.completion",
            created,
            model,
            choices: [ChatChoice {
                index: 0,
                message: OutMessage {
                    role: "assistant",
                    content: text,
                },
                logprobs: has_lp.then_some(ChoiceLogprobs { content: logprobs }),
                finish_reason: reason,
            }],
            usage,
            system_fingerprint: Some("rightsize"),
            rightsize: ex.guard.as_ref().map(|g| Rightsize::Guard { guard: g.into() }),
        })
        .into_response(),
        Shape::Completion => {
            let text = format!("{}{}", job.echo_prefix.unwrap_or_default(), text);
            let logprobs = has_lp.then(|| LegacyLogprobs::from(&logprobs[..]));
            let choices = vec![TextChoice {
                index: 0,
                text,
                logprobs,
                finish_reason: Some(reason),
            }];
            axum::Json(TextCompletion {
                id: &id,
                object: "text_completion",
                created,
                model: &model,
                choices,
                usage: Some(usage),
            })
            .into_response()
        }
    };
    timing_headers(&mut resp, &ex.timings, f);
    Ok(resp)
}

/// The engine's own time (tokenize/template/submit + queue + prefill + decode), so a client
/// can tell the gateway's overhead from the model's work; and where the rest went.
fn timing_headers(resp: &mut Response, t: &crate::exchange::Timings, f: &engine::Finish) {
    let engine = t.submit + f.total_time;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let h = resp.headers_mut();
    if let Ok(v) = format!("{:.3}", ms(engine)).parse() {
        h.insert(ENGINE_MS_HEADER, v);
    }
    let timing = format!(
        "lease;dur={:.3}, hop;dur={:.3}, submit;dur={:.3}, queue;dur={:.3}, ttft;dur={:.3}, engine;dur={:.3}, audit;dur={:.3}, total;dur={:.3}",
        ms(t.lease), ms(t.hop), ms(t.submit), ms(f.queue_time), ms(f.time_to_first_token), ms(engine), ms(t.audit), ms(t.started.elapsed())
    );
    if let Ok(v) = timing.parse() {
        h.insert("server-timing", v);
    }
}

/// The SSE events of one stream: chat chunks or legacy completion chunks.
struct Chunks {
    id: String,
    created: u64,
    model: String,
    chat: bool,
}

impl Chunks {
    fn event(body: &impl serde::Serialize) -> SseEvent {
        SseEvent::default().data(serde_json::to_string(body).unwrap_or_default())
    }

    fn delta(&self, delta: Delta, reason: Option<&'static str>, lp: Option<TokenLogprob>) -> SseEvent {
        let (id, created, model) = (self.id.as_str(), self.created, self.model.as_str());
        if self.chat {
            let logprobs = lp.map(|l| ChoiceLogprobs { content: vec![l] });
            let choices = [ChunkChoice {
                index: 0,
                delta,
                logprobs,
                finish_reason: reason,
            }];
            Self::event(&ChatChunk {
                id,
                object: "chat.completion.chunk",
                created,
                model,
                system_fingerprint: "rightsize",
                choices,
            })
        } else {
            let logprobs = lp.map(|l| LegacyLogprobs::from(std::slice::from_ref(&l)));
            let choices = vec![TextChoice {
                index: 0,
                text: delta.content.unwrap_or_default(),
                logprobs,
                finish_reason: reason,
            }];
            Self::event(&TextCompletion {
                id,
                object: "text_completion",
                created,
                model,
                choices,
                usage: None,
            })
        }
    }

    fn text(&self, text: String, lp: Option<TokenLogprob>) -> SseEvent {
        self.delta(
            Delta {
                role: None,
                content: Some(text),
            },
            None,
            lp,
        )
    }

    fn usage(&self, usage: Usage) -> SseEvent {
        let object = if self.chat {
            "chat.completion.chunk"
        } else {
            "text_completion"
        };
        Self::event(&TextCompletion {
            id: &self.id,
            object,
            created: self.created,
            model: &self.model,
            choices: Vec::new(),
            usage: Some(usage),
        })
    }

    /// An error event ends the stream instead of an answer.
    fn error(message: &str, kind: &str) -> SseEvent {
        Self::event(&StreamError {
            error: StreamErrorBody { message, kind },
        })
    }
}

/// The answer as SSE chunks ending in `data: [DONE]`. Dropped before its end (the client
/// went away), the exchange records it as cancelled.
fn sse_stream(mut ex: Exchange, s: Started) -> impl Stream<Item = Result<SseEvent, std::convert::Infallible>> {
    let Started {
        job,
        mut seq,
        lease,
        id,
        created,
    } = s;
    let chunks = Chunks {
        id,
        created,
        model: ex.model().to_owned(),
        chat: matches!(job.shape, Shape::Chat),
    };
    async_stream::stream! {
        let _lease = lease; // the model stays resident while the stream lives
        ex.stream_started();
        if chunks.chat {
            yield Ok(chunks.delta(Delta { role: Some("assistant"), content: Some(String::new()) }, None, None));
        } else if let Some(prefix) = &job.echo_prefix {
            yield Ok(chunks.text(prefix.clone(), None));
        }
        let deadline = tokio::time::Instant::now() + job.timeout;
        loop {
            let ev = match tokio::time::timeout_at(deadline, seq.next()).await {
                Ok(Some(ev)) => ev,
                Ok(None) => {
                    // The engine went away mid-sequence (the model was unloaded).
                    ex.stream_failed(503, false).await;
                    break;
                }
                Err(_) => {
                    seq.cancel();
                    ex.stream_failed(504, false).await;
                    yield Ok(Chunks::error("request deadline passed", "timeout_error"));
                    break;
                }
            };
            match ev {
                Event::Token(t) => {
                    let lp = t.logprob.as_ref().map(TokenLogprob::from);
                    ex.partial.push_str(&t.text);
                    let piece = match ex.guard.as_mut() {
                        Some(g) => g.stream_piece(&t.text),
                        None => t.text.clone(),
                    };
                    if !piece.is_empty() || lp.is_some() {
                        yield Ok(chunks.text(piece, lp));
                    }
                }
                Event::Done(f) => {
                    ex.partial.push_str(&f.tail);
                    let tail = match ex.guard.as_mut() {
                        Some(g) => format!("{}{}", g.stream_piece(&f.tail), g.stream_flush()),
                        None => f.tail.clone(),
                    };
                    if !tail.is_empty() {
                        yield Ok(chunks.text(tail, None));
                    }
                    // Durable before the finish chunk and `[DONE]`; if it cannot be written the
                    // stream ends in an error event and the client sees no completed answer.
                    let cost_usd = crate::audit::local_cost(&ex.state, f.compute_s);
                    let output = Output::Text(ex.partial.clone());
                    let done = Done { output, tokens_in: f.prompt_tokens, tokens_out: f.completion_tokens, cost_usd, work: Work::Generation(&f) };
                    if let Err(e) = ex.ok(done).await {
                        yield Ok(Chunks::error(&e.message, e.kind));
                        return;
                    }
                    yield Ok(chunks.delta(Delta::default(), Some(finish_reason(f.reason)), None));
                    if job.delivery.include_usage {
                        yield Ok(chunks.usage(Usage::new(f.prompt_tokens, f.completion_tokens)));
                    }
                    break;
                }
                Event::Error(e) => {
                    ex.stream_failed(500, true).await;
                    yield Ok(Chunks::error(&e, "server_error"));
                    break;
                }
            }
        }
        yield Ok(SseEvent::default().data("[DONE]"));
    }
}
