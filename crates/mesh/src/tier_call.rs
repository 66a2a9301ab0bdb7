//! Calling one tier of a task: the answer, its confidence signals, tokens and cost.
//!
//! Named `tier_call` beside `tier_spec`: `tier_spec` is what a task file declares about a
//! tier; this module is what happens when a run (or a judge) calls that tier once. Its errors
//! are [`TierError`]s (in `error.rs`), whose [`Failure`](crate::error::Failure) kind the cascade reads.

use crate::confidence;
use crate::error::TierError;
use crate::task::{OutputKind, Task};
use crate::tier_spec::{Prices, TierSpec};
use crate::Mesh;
use engine::{ChatMessage, Constraint, GenerateRequest, Priority, Prompt, SamplingParams};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What a tier produced.
#[derive(Debug, Clone)]
pub(crate) struct TierOutput {
    pub output: Value,
    pub confidence: Option<f64>,
    pub margin: Option<f64>,
    pub min_logprob: Option<f64>,
    pub signals: Value,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub cost_usd: f64,
}

/// The rendered request a tier answers.
pub(crate) struct Rendered<'a> {
    pub messages: Vec<ChatMessage>,
    pub inputs: &'a BTreeMap<String, String>,
    pub priority: Priority,
}

/// `run` cut off after the tier's `timeout_ms`, if it has one.
pub(crate) async fn run_timed(
    mesh: &Mesh,
    task: &Task,
    tier: &TierSpec,
    r: &Rendered<'_>,
) -> Result<TierOutput, TierError> {
    let fut = run(mesh, task, tier, r);
    match tier.timeout_ms {
        Some(ms) => tokio::time::timeout(Duration::from_millis(ms), fut)
            .await
            .unwrap_or_else(|_| Err(TierError::Timeout(ms))),
        None => fut.await,
    }
}

pub(crate) async fn run(mesh: &Mesh, task: &Task, tier: &TierSpec, r: &Rendered<'_>) -> Result<TierOutput, TierError> {
    use crate::tier_spec::TierKind::*;
    match tier.kind {
        Classifier => classifier(mesh, task, tier, r).await,
        Local => match task.spec.output.kind {
            OutputKind::Label => local_label(mesh, task, tier, r).await,
            _ => local_generate(mesh, task, tier, r).await,
        },
        Remote => remote(mesh, task, tier, r).await,
    }
}

async fn classifier(mesh: &Mesh, task: &Task, tier: &TierSpec, r: &Rendered<'_>) -> Result<TierOutput, TierError> {
    let id = tier.encoder.clone().unwrap_or_default();
    let enc = mesh.models.encoder(&id).await?;
    let head = mesh.head(task, &id, &enc).await?;
    let text = crate::examples::encoder_text(&task.spec.inputs, r.inputs);
    let t = Instant::now();
    let (probs, tokens) = tokio::task::spawn_blocking(move || -> Result<(Vec<f64>, usize), TierError> {
        let out = enc.embed_with_usage(&[text.as_str()])?;
        let p = head.predict_proba(&out.embeddings)?;
        Ok((p[0].iter().map(|&x| x as f64).collect(), out.total_tokens()))
    })
    .await
    .map_err(|source| TierError::Panicked {
        what: "classifier",
        source,
    })??;
    let (best, p, margin) = confidence::label(&probs);
    let labels = &task.spec.output.labels;
    Ok(TierOutput {
        output: json!(labels[best]),
        confidence: Some(p),
        margin: Some(margin),
        min_logprob: None,
        signals: json!({ "probs": label_probs(labels, &probs) }),
        tokens_in: tokens as u64,
        tokens_out: 0,
        cost_usd: mesh.prices.all_cores(t.elapsed().as_secs_f64()),
    })
}

/// `{label: probability}` for a trace.
fn label_probs(labels: &[String], probs: &[f64]) -> Value {
    Value::Object(labels.iter().zip(probs).map(|(l, p)| (l.clone(), json!(p))).collect())
}

async fn local_label(mesh: &Mesh, task: &Task, tier: &TierSpec, r: &Rendered<'_>) -> Result<TierOutput, TierError> {
    let model = tier.model.clone().unwrap_or_default();
    let lease = mesh.models.decoder(&model).await?;
    let prompt = Prompt::Chat(r.messages.clone());
    let labels = task.spec.output.labels.clone();
    let priority = r.priority;
    let (prompt_len, scores) = tokio::task::spawn_blocking(move || -> Result<_, TierError> {
        let n = lease.prompt_tokens(&prompt)?.len();
        Ok((n, lease.score_continuations(&prompt, &labels, priority)?))
    })
    .await
    .map_err(|source| TierError::Panicked {
        what: "scoring",
        source,
    })??;
    let probs = engine::normalise_scores(&scores);
    let (best, p, margin) = confidence::label(&probs);
    let labels = &task.spec.output.labels;
    let compute: f64 = scores.iter().map(|s| s.compute_s).sum();
    Ok(TierOutput {
        output: json!(labels[best]),
        confidence: Some(p),
        margin: Some(margin),
        min_logprob: None,
        signals: json!({
            "probs": label_probs(labels, &probs),
            "label_logprobs": scores.iter().map(|s| s.logprob).collect::<Vec<_>>(),
        }),
        // Every label is scored after its own copy of the prompt.
        // The prompt is read once for every label (shared prefill), then each label on top.
        tokens_in: (prompt_len + scores.iter().map(|s| s.n_tokens).sum::<usize>()) as u64,
        tokens_out: 0,
        cost_usd: mesh.prices.local(compute),
    })
}

async fn local_generate(mesh: &Mesh, task: &Task, tier: &TierSpec, r: &Rendered<'_>) -> Result<TierOutput, TierError> {
    let model = tier.model.clone().unwrap_or_default();
    let lease = mesh.models.decoder(&model).await?;
    let out = &task.spec.output;
    let policy = &task.spec.escalation;
    let samples = if out.kind == OutputKind::Text {
        policy.samples
    } else {
        1
    };
    let mut seqs = Vec::with_capacity(samples);
    for k in 0..samples {
        let params = SamplingParams {
            temperature: if samples > 1 { policy.sample_temperature } else { 0.0 },
            seed: Some(k as u64 + 1),
            max_tokens: out.max_tokens,
            ..SamplingParams::default()
        };
        let constraint = task.schema.clone().map(Constraint::JsonSchema);
        let req = GenerateRequest {
            prompt: Prompt::Chat(r.messages.clone()),
            params,
            constraint,
            logprobs: Some(0),
            priority: r.priority,
        };
        seqs.push(lease.submit(req)?);
    }
    let mut done = Vec::with_capacity(samples);
    for s in seqs {
        done.push(s.collect().await?);
    }
    drop(lease);
    let tokens_in: u64 = done.iter().map(|c| c.finish.prompt_tokens as u64).sum();
    let tokens_out: u64 = done.iter().map(|c| c.finish.completion_tokens as u64).sum();
    let cost_usd = mesh.prices.local(done.iter().map(|c| c.finish.compute_s).sum());
    let pieces = |c: &engine::Completion| -> Vec<(String, f32)> {
        c.tokens
            .iter()
            .filter_map(|t| t.logprob.as_ref().map(|l| (l.token.clone(), l.logprob)))
            .collect()
    };
    let base = TierOutput {
        output: Value::Null,
        confidence: None,
        margin: None,
        min_logprob: None,
        signals: json!({}),
        tokens_in,
        tokens_out,
        cost_usd,
    };
    if out.kind == OutputKind::Json {
        let c = &done[0];
        return json_answer(task, &c.text, &pieces(c), base);
    }
    let texts: Vec<String> = done.iter().map(|c| c.text.trim().to_owned()).collect();
    let lps: Vec<f32> = pieces(&done[0]).iter().map(|p| p.1).collect();
    let (mean_conf, min_lp) = confidence::text(&lps).unwrap_or((0.0, f64::NEG_INFINITY));
    if samples > 1 {
        let (i, share) = confidence::agreement(&texts);
        return Ok(TierOutput {
            output: json!(texts[i]),
            confidence: Some(share),
            min_logprob: Some(min_lp),
            signals: json!({ "agreement": share, "samples": texts }),
            ..base
        });
    }
    Ok(TierOutput {
        output: json!(texts[0]),
        confidence: Some(mean_conf),
        min_logprob: Some(min_lp),
        signals: json!({ "mean_token_prob": mean_conf, "min_logprob": min_lp }),
        ..base
    })
}

/// Parse, check against the schema and validators, and score a JSON answer.
fn json_answer(task: &Task, text: &str, tokens: &[(String, f32)], base: TierOutput) -> Result<TierOutput, TierError> {
    let value: Value = serde_json::from_str(text.trim()).map_err(TierError::NotJson)?;
    if let Some(schema) = &task.schema {
        let v = jsonschema::validator_for(schema).map_err(|e| TierError::BadSchema(Box::new(e)))?;
        let first = v.iter_errors(&value).next().map(|err| Box::new(err.to_owned()));
        if let Some(err) = first {
            return Err(TierError::SchemaViolation(err));
        }
    }
    let confidence = if tokens.is_empty() {
        None
    } else {
        Some(confidence::json_fields(text, tokens))
    };
    let mut failed = Vec::new();
    for val in &task.spec.output.validators {
        let re = regex::Regex::new(&val.pattern)?;
        let field = value
            .get(&val.field)
            .map(|f| f.as_str().map(str::to_owned).unwrap_or_else(|| f.to_string()));
        if !field.is_some_and(|f| re.is_match(&f)) {
            failed.push(val.field.clone());
        }
    }
    let conf = if failed.is_empty() {
        confidence.as_ref().map(|c| c.0)
    } else {
        Some(0.0)
    };
    Ok(TierOutput {
        output: value,
        confidence: conf,
        signals: json!({ "fields": confidence.map(|c| c.1), "validators_failed": failed }),
        ..base
    })
}

async fn remote(mesh: &Mesh, task: &Task, tier: &TierSpec, r: &Rendered<'_>) -> Result<TierOutput, TierError> {
    let breaker = mesh.breaker(tier);
    if let Err(wait) = breaker.allow() {
        return Err(TierError::BreakerOpen {
            retry_in_ms: wait.as_millis(),
        });
    }
    let messages: Vec<Value> = r
        .messages
        .iter()
        .map(|m| json!({ "role": m.role, "content": m.content }))
        .collect();
    let out = &task.spec.output;
    let extra = match out.kind {
        OutputKind::Label => {
            json!({ "response_format": { "type": "json_schema", "json_schema": { "name": "label", "strict": true, "schema": {
            "type": "object", "properties": { "label": { "type": "string", "enum": out.labels } }, "required": ["label"], "additionalProperties": false } } } })
        }
        OutputKind::Json => {
            json!({ "response_format": { "type": "json_schema", "json_schema": { "name": task.spec.name, "schema": task.schema } } })
        }
        OutputKind::Text => json!({}),
    };
    let answer = match crate::remote::chat(&mesh.http, tier, Value::Array(messages), out.max_tokens, extra).await {
        Ok(a) => {
            breaker.success();
            a
        }
        Err(e) => {
            breaker.failure();
            return Err(e.into());
        }
    };
    let base = TierOutput {
        output: Value::Null,
        confidence: None,
        margin: None,
        min_logprob: None,
        signals: json!({ "attempts": answer.attempts }),
        tokens_in: answer.tokens_in,
        tokens_out: answer.tokens_out,
        cost_usd: Prices::remote(tier, answer.tokens_in, answer.tokens_out),
    };
    match out.kind {
        OutputKind::Json => json_answer(task, &answer.text, &answer.tokens, base),
        OutputKind::Label => {
            let v: Value = serde_json::from_str(answer.text.trim()).map_err(TierError::NotJson)?;
            let label = v["label"].as_str().filter(|l| out.labels.iter().any(|x| x == l));
            let label = label.ok_or_else(|| TierError::NotALabel(answer.text.chars().take(80).collect()))?;
            let conf = (!answer.tokens.is_empty()).then(|| confidence::json_fields(&answer.text, &answer.tokens).0);
            Ok(TierOutput {
                output: json!(label),
                confidence: conf,
                ..base
            })
        }
        OutputKind::Text => {
            let lps: Vec<f32> = answer.tokens.iter().map(|t| t.1).collect();
            let c = confidence::text(&lps);
            Ok(TierOutput {
                output: json!(answer.text.trim()),
                confidence: c.map(|c| c.0),
                min_logprob: c.map(|c| c.1),
                ..base
            })
        }
    }
}
