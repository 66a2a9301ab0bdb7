//! Tasks over HTTP: `POST /v1/tasks/{name}`, `GET /v1/tasks[/{name}[/stats]]`, and
//! `model: "task:NAME"` through the chat API. The mesh does the work; this maps errors.

use crate::audit;
use crate::error::ApiError;
use crate::exchange::{Done, Exchange, Output, Work};
use crate::models::{Loaded, ModelPool};
use crate::openai::{Body, ChatChoice, ChatCompletion, ChatRequest, InMessage, OutMessage, Rightsize, Usage};
use crate::state::{AppState, Caller};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::future::BoxFuture;
use mesh::{EncoderLease, EngineLease, MeshError, Models, RunOptions};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The pool as the mesh sees it: a lease per tier call keeps the model resident.
pub struct PoolModels(pub ModelPool);

struct Decoder(pool::Lease<Loaded>);
impl std::ops::Deref for Decoder {
    type Target = engine::Engine;
    fn deref(&self) -> &engine::Engine {
        match &*self.0 {
            Loaded::Decoder(e) => e,
            Loaded::Encoder { .. } => unreachable!("checked when the lease was taken"),
        }
    }
}
pub(crate) struct Enc(pub(crate) pool::Lease<Loaded>);
impl std::ops::Deref for Enc {
    type Target = encoder::Encoder;
    fn deref(&self) -> &encoder::Encoder {
        match &*self.0 {
            Loaded::Encoder { model, .. } => model,
            Loaded::Decoder(_) => unreachable!("checked when the lease was taken"),
        }
    }
}

impl Models for PoolModels {
    fn decoder<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<EngineLease, mesh::ModelError>> {
        Box::pin(async move {
            let lease = self.0.acquire(id, None).await.map_err(model_error)?;
            match &*lease {
                Loaded::Decoder(_) => Ok(Box::new(Decoder(lease)) as EngineLease),
                Loaded::Encoder { .. } => Err(mesh::ModelError::NotADecoder(id.into())),
            }
        })
    }
    fn encoder<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<EncoderLease, mesh::ModelError>> {
        Box::pin(async move {
            let lease = self.0.acquire(id, None).await.map_err(model_error)?;
            match &*lease {
                Loaded::Encoder { .. } => Ok(Arc::new(Enc(lease)) as EncoderLease),
                Loaded::Decoder(_) => Err(mesh::ModelError::NotAnEncoder(id.into())),
            }
        })
    }
}

/// The pool's error as the mesh sees it, with the same text: an unknown id by name, any
/// other failure (no room, a failed load) as the pool's own error.
fn model_error(e: pool::PoolError) -> mesh::ModelError {
    match e {
        pool::PoolError::Unknown(id) => mesh::ModelError::Unknown(id),
        e => mesh::ModelError::Source(Box::new(e)),
    }
}

impl From<MeshError> for ApiError {
    fn from(e: MeshError) -> Self {
        match &e {
            MeshError::UnknownTask(_) | MeshError::UnknownVersion(..) => ApiError::not_found(e.to_string()),
            MeshError::Unavailable { .. } => ApiError::unavailable(e.to_string()).code("task_unavailable"),
            MeshError::BadInput(_) => ApiError::bad_request(e.to_string()).param("input"),
            MeshError::Exhausted { .. } | MeshError::TierFailed { .. } => ApiError::unavailable(e.to_string()),
            MeshError::Blocked { .. } => ApiError::unprocessable(e.to_string())
                .param("input")
                .code("guardrail_blocked"),
            MeshError::OutputRejected { .. } => ApiError::unprocessable(e.to_string()).code("output_guardrail"),
            MeshError::TooLarge(_) => ApiError::too_large(e.to_string()),
            // Never fits: a retry cannot help, so not a 503 with Retry-After.
            MeshError::InputTooLong { .. } => ApiError::bad_request(e.to_string())
                .param("input")
                .code("context_length_exceeded"),
            MeshError::Overloaded { .. } => ApiError::overloaded(e.to_string(), 1),
            MeshError::Store(_) => ApiError::internal(e.to_string()),
        }
    }
}

fn mesh(state: &AppState) -> Result<&Arc<mesh::Mesh>, ApiError> {
    state
        .mesh
        .as_ref()
        .ok_or_else(|| ApiError::not_found("this server has no tasks (set `tasks_dir`)"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskRequest {
    #[serde(default)]
    pub input: BTreeMap<String, Value>,
    pub version: Option<i64>,
    pub priority: Option<String>,
}

/// Inputs are strings; numbers and booleans are accepted and written as text.
fn inputs(raw: BTreeMap<String, Value>) -> Result<BTreeMap<String, String>, ApiError> {
    raw.into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k, s)),
            Value::Number(_) | Value::Bool(_) => Ok((k, v.to_string())),
            _ => Err(ApiError::bad_request(format!("input `{k}` must be a string")).param("input")),
        })
        .collect()
}

pub async fn run(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Body(r): Body<TaskRequest>,
) -> Result<Response, ApiError> {
    let mut ex = Exchange::task(&state, &caller, &headers);
    ex.set_input(serde_json::to_string(&r.input).unwrap_or_default(), false);
    let version = r.version;
    let res = async {
        let mesh = mesh(&state)?;
        let opts = RunOptions {
            version: r.version,
            priority: crate::generate::priority(r.priority.as_deref(), &headers, caller.default_priority)?,
            guard: Some(crate::guardrails::effective(&state, &caller)),
            ..Default::default()
        };
        run_counted(&state, mesh, &name, &inputs(r.input)?, opts).await
    }
    .await;
    let answer = end(ex, &name, version, res).await?;
    Ok(Json(answer).into_response())
}

/// Record a task run (kind `task`) before its answer is returned; a failed run is recorded
/// best effort and fails anyway.
async fn end(
    mut ex: Exchange,
    name: &str,
    version: Option<i64>,
    res: Result<mesh::TaskAnswer, ApiError>,
) -> Result<mesh::TaskAnswer, ApiError> {
    let a = match res {
        Ok(a) => a,
        Err(e) => {
            (ex.task, ex.task_version) = audit_name(&ex.state, name, version);
            return ex.fail(e).await;
        }
    };
    // What the tiers saw and said (placeholders, redactions), never the originals.
    let output = match a.seen_output.as_ref().unwrap_or(&a.output) {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    if let Some(seen) = &a.seen_inputs {
        ex.set_input(serde_json::to_string(seen).unwrap_or_default(), true);
    }
    (ex.task, ex.task_version, ex.model) = (Some(a.task.clone()), Some(a.version), Some(a.tier.clone()));
    ex.tier_path = a.tiers.iter().map(|t| t.tier.clone()).collect();
    let mut report = guard::Screened::default();
    report.report = a.guard.clone();
    ex.guard = Some(report);
    let tokens_in = a.tiers.iter().map(|t| t.tokens_in as usize).sum();
    let tokens_out = a.tiers.iter().map(|t| t.tokens_out as usize).sum();
    ex.ok(Done {
        output: Output::Text(output),
        tokens_in,
        tokens_out,
        cost_usd: a.cost_usd,
        work: Work::Task { accepted: a.accepted },
    })
    .await?;
    Ok(a)
}

/// A failed run's task as the record names it, and the version that would have run when the
/// task exists. A name that is no task is free text from the client: its keyed hash only.
fn audit_name(state: &AppState, name: &str, version: Option<i64>) -> (Option<String>, Option<i64>) {
    let found = state.mesh.as_ref().map(|m| m.task(name, None));
    let known = found.as_ref().and_then(|r| r.as_ref().ok()).map(|t| t.spec.version);
    // A configured task whose data is missing is still a name the operator wrote.
    let named = known.is_some() || matches!(found, Some(Err(mesh::MeshError::Unavailable { .. })));
    let task = if named {
        name.to_owned()
    } else {
        audit::unknown_name(state, name)
    };
    (Some(task), version.or(known))
}

pub async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let mesh = mesh(&state)?;
    let mut data: Vec<Value> = mesh.registry.latest().map(|t| summary(&mesh.registry, &t)).collect();
    // Valid task files that cannot run here (a data file is missing), with the reason.
    data.extend(
        mesh.registry
            .unavailable()
            .iter()
            .map(|u| json!({ "name": u.name, "version": u.version, "available": false, "unavailable": u.reason })),
    );
    Ok(Json(json!({ "object": "list", "data": data })))
}

fn summary(reg: &mesh::Registry, t: &mesh::Task) -> Value {
    json!({
        "name": t.spec.name, "version": t.spec.version, "versions": reg.versions(&t.spec.name), "available": true,
        "description": t.spec.description, "owner": t.spec.owner, "inputs": t.spec.inputs,
        "output": t.spec.output.kind, "ladder": t.tiers().map(|x| json!({"tier": x.id(), "threshold": x.threshold})).collect::<Vec<_>>(),
    })
}

#[derive(Debug, Deserialize)]
pub struct VersionQuery {
    pub version: Option<i64>,
    pub days: Option<i64>,
}

pub async fn show(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<VersionQuery>,
) -> Result<Json<Value>, ApiError> {
    let mesh = mesh(&state)?;
    let t = mesh.task(&name, q.version)?;
    let mut v = summary(&mesh.registry, &t);
    v["spec"] = serde_json::to_value(&t.spec).unwrap_or(Value::Null);
    Ok(Json(v))
}

pub async fn stats(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<VersionQuery>,
) -> Result<Json<Value>, ApiError> {
    let mesh = mesh(&state)?;
    mesh.task(&name, None)?;
    let store = mesh
        .store()
        .ok_or_else(|| ApiError::unavailable("no store configured"))?;
    let days = q.days.unwrap_or(30).clamp(1, 3650);
    let since = store::now_ms() - days * 86_400_000;
    let rows = store
        .run_stats(Some(&name), since)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let shadow = crate::shadow::stats(&state, store, &name, since).await?;
    Ok(Json(json!({ "task": name, "days": rows, "shadow": shadow })))
}

/// `model: "task:NAME"` in the chat API. One-input tasks take the last user message as that
/// input; others take it as a JSON object of inputs. The answer is the message content (JSON
/// text for json tasks), with the trace under `rightsize`.
pub async fn chat(
    state: AppState,
    caller: Caller,
    headers: HeaderMap,
    name: &str,
    r: ChatRequest,
) -> Result<Response, ApiError> {
    let mut ex = Exchange::task(&state, &caller, &headers);
    let res = chat_run(&mut ex, name, r).await;
    let a = end(ex, name, None, res).await?;
    let content = match &a.output {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    let tokens_in: u64 = a.tiers.iter().map(|t| t.tokens_in).sum();
    let tokens_out: u64 = a.tiers.iter().map(|t| t.tokens_out).sum();
    Ok(Json(ChatCompletion {
        id: format!("chatcmpl-{}", a.run_id),
        object: "chat.completion",
        created: (store::now_ms() / 1000) as u64,
        model: format!("task:{name}"),
        choices: [ChatChoice {
            index: 0,
            message: OutMessage {
                role: "assistant",
                content,
            },
            logprobs: None,
            finish_reason: "stop",
        }],
        usage: Usage::new(tokens_in as usize, tokens_out as usize),
        system_fingerprint: None,
        rightsize: Some(Rightsize::Task(serde_json::to_value(&a).unwrap_or_default())),
    })
    .into_response())
}

/// Runs the task behind `model: "task:NAME"`; the exchange's input is the task inputs as
/// compact JSON for the audit record (the user message itself while they are not known yet).
async fn chat_run(ex: &mut Exchange, name: &str, r: ChatRequest) -> Result<mesh::TaskAnswer, ApiError> {
    let last = r.messages.iter().rev().find(|m| m.role == "user").map(InMessage::text);
    if let Some(text) = &last {
        ex.set_input(text.clone(), false);
    }
    let state = ex.state.clone();
    let mesh = mesh(&state)?;
    if r.stream {
        return Err(ApiError::bad_request("streaming is not supported for task models").param("stream"));
    }
    // The task decides how it samples, but a bad value is still the caller's error.
    crate::generate::sampling_params(&r.sampling, u32::MAX as usize)?;
    r.sampling
        .keep_alive
        .as_ref()
        .map(crate::openai::parse_keep_alive)
        .transpose()?;
    let task = mesh.task(name, None)?;
    let text = last.ok_or_else(|| ApiError::bad_request("a task needs a user message").param("messages"))?;
    let raw: BTreeMap<String, Value> = if task.spec.inputs.len() == 1 {
        BTreeMap::from([(task.spec.inputs[0].clone(), Value::String(text))])
    } else {
        serde_json::from_str(&text).map_err(|_| {
            ApiError::bad_request(format!(
                "task `{name}` takes several inputs ({}): send them as a JSON object",
                task.spec.inputs.join(", ")
            ))
            .param("messages")
        })?
    };
    let opts = RunOptions {
        priority: crate::generate::priority(r.sampling.priority.as_deref(), &ex.headers, ex.caller.default_priority)?,
        guard: Some(crate::guardrails::effective(&state, &ex.caller)),
        ..Default::default()
    };
    let inputs = inputs(raw)?;
    ex.set_input(serde_json::to_string(&inputs).unwrap_or_default(), false);
    run_counted(&state, mesh, name, &inputs, opts).await
}

/// Run a task and count it (and its guardrail outcomes, blocks included) in the metrics.
async fn run_counted(
    state: &AppState,
    mesh: &mesh::Mesh,
    name: &str,
    inputs: &BTreeMap<String, String>,
    opts: RunOptions,
) -> Result<mesh::TaskAnswer, ApiError> {
    match mesh.run(name, inputs, opts.clone()).await {
        Ok(a) => {
            crate::shadow::after_run(state, inputs, &opts, &a); // maybe a background shadow run
            state.metrics.task_run(&a.task, &a.tier, a.escalated);
            state.metrics.guard_events(&a.task, &a.guard.events());
            Ok(a)
        }
        Err(e) => {
            if let MeshError::Blocked { events, .. } = &e {
                state.metrics.guard_events(name, events);
            }
            Err(e.into())
        }
    }
}
